//! The reference cluster (`example/`) deployed the way `pcr up` deploys it — pushed to pcr-ci,
//! checked, built, pushed to the cache, published, placed and booted by a real worker with the
//! process and QEMU backends — on a copy of the host's kernel that differs from any copy the
//! repository could have been written against (a line added to the copy's `version` file: this
//! kernel enforces module signatures, so a guest would refuse a module with a byte changed).
//!
//! This is the regression test for a main job that deployed nothing on a fresh machine: the
//! repository once committed a lock of the host's kernel by NAR hash, so when apt installed
//! another kernel, `nix flake check` refused the example. The repository must hold no hash of
//! anything the host provides, and the example must converge whatever the host's copy is.
//!
//! The example's ports (8080-8082) are rewritten to free ones, and its kernel input points at
//! the test's own copy, so the test leaves the machine's `/var/lib/procurator` alone and runs
//! beside other tests.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use test_support::ControlPlane;

const TIMEOUT: Duration = Duration::from_secs(120);

/// Where the committed example takes the host's kernel from (scripts/example-kernel).
const HOST_KERNEL_INPUT: &str = "path:/var/lib/procurator/example-kernel";

#[test]
fn the_repository_locks_nothing_the_host_provides() {
    let root = workspace();
    let tracked = Command::new("git")
        .args(["ls-files", "--", "example/flake.lock"])
        .current_dir(&root)
        .output()
        .expect("git ls-files");
    assert!(tracked.status.success());
    if String::from_utf8_lossy(&tracked.stdout).trim().is_empty() {
        return;
    }
    // A committed lock may pin inputs from the network, never a path on the host.
    let lock: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("example/flake.lock")).expect("read flake.lock"),
    )
    .expect("flake.lock is JSON");
    for (name, node) in lock["nodes"].as_object().expect("nodes") {
        assert_ne!(
            node["locked"]["type"].as_str(),
            Some("path"),
            "example/flake.lock pins input {name} from this host by content: {node}"
        );
    }
}

/// scripts/example-kernel's copy of the host kernel, with a file of it changed so that no lock
/// written anywhere else matches it. None (after saying so) without a Debian cloud kernel.
fn kernel_copy_unlike_any_other() -> Option<tempfile::TempDir> {
    let dir = example_kernel()?;
    // Any other content has another NAR hash; the kernel and modules themselves stay as they
    // are, since this kernel refuses modules whose signature does not match.
    let version = dir.path().join("kernel/version");
    let mut text = std::fs::read_to_string(&version).expect("read version");
    text.push_str("copied by a test, unlike any other copy\n");
    std::fs::write(&version, text).expect("write version");
    Some(dir)
}

/// The committed example as a repository of its own (as `pcr up` pushes it), its kernel input
/// pointing at `kernel` and its host ports moved to free ones. Answers (web, api, vm) ports.
fn example_source(kernel: &Path) -> (Source, [u16; 3]) {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&workspace().join("example"), dir.path());
    // A lock nix may have written while someone evaluated example/ in place is not committed.
    let _ = std::fs::remove_file(dir.path().join("flake.lock"));
    let flake = dir.path().join("flake.nix");
    let text = std::fs::read_to_string(&flake).expect("flake.nix");
    assert!(
        text.contains(HOST_KERNEL_INPUT),
        "the example no longer takes its kernel from {HOST_KERNEL_INPUT}; update this test"
    );
    let text = text.replace(HOST_KERNEL_INPUT, &format!("path:{}", kernel.display()));
    std::fs::write(&flake, text).expect("write flake.nix");

    let ports = [free_port(), free_port(), free_port()];
    let cluster = dir.path().join("cluster.nix");
    let mut text = std::fs::read_to_string(&cluster).expect("cluster.nix");
    for (from, to) in ["8080", "8081", "8082"].iter().zip(ports) {
        assert!(
            text.contains(from),
            "cluster.nix no longer uses port {from}"
        );
        text = text.replace(from, &to.to_string());
    }
    std::fs::write(&cluster, text).expect("write cluster.nix");
    (Source::from_dir(dir), ports)
}

/// The serial consoles of the microVMs the worker ran under `dir`, for a failure message.
fn consoles(dir: &Path) -> String {
    let out = Command::new("find")
        .arg(dir)
        .args(["-name", "console.log"])
        .output()
        .expect("find");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|path| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!("--- {path} (last 40 lines) ---\n{}", tail.join("\n"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "current_thread")]
async fn the_example_converges_on_a_kernel_copy_no_lock_was_written_against() {
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let Some(kernel) = kernel_copy_unlike_any_other() else {
                return;
            };
            let (src, [web, api, vm]) = example_source(&kernel.path().join("kernel"));

            let cp = ControlPlane::start();
            let cache = Cache::start(dir.path());
            let ci = Ci::start(dir.path(), &cp, Some(&cache));
            let worker = start_worker_with(dir.path(), &cp, &cache, "worker-1", "process,qemu");
            let op = cp.operator().await;
            a_worker_registered(&op).await;

            let bare = ci.create_repo("example", None);
            let commit = src.commit("The example cluster");
            src.push(&bare);
            let id = ci.pipeline_of(&commit).await;
            let detail = ci.finished(id, TIMEOUT).await;
            let log = ci.log(id).await;
            assert_succeeded(&detail, &log);
            // nix flake check's warnings about Procurator's own outputs are explained once, not
            // repeated as if something were wrong.
            assert!(
                !log.contains("unknown flake output 'blueprintJSON'"),
                "the check step still logs nix's warning about blueprintJSON:\n{log}"
            );
            let generation = detail.summary.generation.expect("a published generation");

            let deadline = tokio::time::Instant::now() + TIMEOUT;
            let status = loop {
                let s = op.cluster_status().await.expect("cluster status");
                if s.active_generation == generation && s.convergence_percent >= 100.0 {
                    break s;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the example did not converge within {TIMEOUT:?}: {s:#?}\nworker log:\n{}\n{}",
                    worker.log_text(),
                    consoles(dir.path())
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            let mut vms: Vec<&str> = status
                .instances
                .iter()
                .map(|i| i.vm_name.as_str())
                .collect();
            vms.sort();
            assert_eq!(vms, ["api", "vm", "web"], "{status:#?}");

            let page = http_get(web, "/").unwrap_or_default();
            assert!(
                page.contains("Hello from the Procurator example cluster"),
                "{page}"
            );
            let greeting = http_get(api, "/cgi-bin/greeting").unwrap_or_default();
            assert!(
                greeting.contains("hello from the example api"),
                "{greeting}"
            );
            let inside = http_get(vm, "/").unwrap_or_else(|| {
                panic!(
                    "the microVM does not answer; worker log:\n{}",
                    worker.log_text()
                )
            });
            assert!(inside.contains("Hello from inside a microVM"), "{inside}");
        })
        .await;
}
