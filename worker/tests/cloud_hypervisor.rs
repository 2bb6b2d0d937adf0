//! The cloud-hypervisor driver against the API stand-in (`examples/ch_standin.rs`, which
//! documents what it reproduces and what it fakes): create/boot/info/power-button/shutdown/
//! delete, error bodies and status codes, and the process exit as the truth of "stopped".

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{wait_for, KillOnDrop};
use schema::model::{Backend, VmSpec};
use worker::driver::cloud_hypervisor::{api, vm_state, CloudHypervisorDriver};
use worker::driver::{Driver, Launch, Stopped, CONSOLE_LOG};
use worker::procfs::ProcRef;

fn standin() -> PathBuf {
    // Examples are built next to the test binaries' `deps` folder by `cargo test`.
    let exe = std::env::current_exe().expect("test exe");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let path = profile.join("examples").join("ch_standin");
    assert!(
        path.exists(),
        "{} missing: run through `cargo test`",
        path.display()
    );
    path
}

/// A toplevel-shaped folder whose kernel is an ELF file (the stand-in checks it; it runs no
/// guest code).
fn fake_toplevel(root: &Path, kernel_from: &Path) -> String {
    let top = root.join("toplevel");
    std::fs::create_dir_all(&top).expect("toplevel");
    std::fs::copy(kernel_from, top.join("kernel")).expect("kernel");
    std::fs::write(top.join("initrd"), b"initrd").expect("initrd");
    std::fs::write(top.join("init"), b"#!/bin/sh\n").expect("init");
    std::fs::write(top.join("kernel-params"), b"quiet\n").expect("params");
    top.display().to_string()
}

fn spec(closure: &str) -> VmSpec {
    VmSpec {
        backend: Backend::CloudHypervisor,
        memory_mb: 128,
        ..VmSpec::process("vm", closure)
    }
}

fn driver() -> Arc<CloudHypervisorDriver> {
    Arc::new(CloudHypervisorDriver {
        binary: standin(),
        virtiofsd: PathBuf::from("/usr/lib/qemu/virtiofsd"),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_creates_boots_and_powers_off_a_vm() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let closure = fake_toplevel(tmp.path(), Path::new("/bin/busybox"));
    let dir = tmp.path().join("vm-0");
    std::fs::create_dir_all(&dir).expect("dir");
    let driver = driver();
    let mut guard = KillOnDrop::new();
    let (d, dir2, s) = (driver.clone(), dir.clone(), spec(&closure));
    let launch = tokio::task::spawn_blocking(move || d.start("vm-0", &dir2, &s))
        .await
        .expect("join")
        .expect("start through the API");
    guard.launches.push(launch.clone());
    assert_eq!(launch.helpers.len(), 1, "virtiofsd runs beside the VMM");

    let socket = dir.join("api.sock");
    let (d, dir2, l) = (driver.clone(), dir.clone(), launch.clone());
    let booted = tokio::task::spawn_blocking(move || d.booted(&dir2, &l))
        .await
        .expect("join");
    assert!(booted, "state Running and the boot line on the serial file");
    assert_eq!(vm_state(&socket).expect("vm.info"), "Running");
    let console = std::fs::read_to_string(dir.join(CONSOLE_LOG)).expect("serial file");
    assert!(
        console.contains(&format!("init={closure}/init quiet")),
        "cmdline carries init= and kernel-params: {console}"
    );
    let info = api(&socket, "GET", "vm.info", None).expect("vm.info");
    let info: serde_json::Value = serde_json::from_str(&info).expect("json");
    assert_eq!(info["config"]["memory"]["shared"], true);
    assert_eq!(info["config"]["fs"][0]["tag"], "nixstore");

    let (d, dir2, l) = (driver.clone(), dir.clone(), launch.clone());
    let stopped = tokio::task::spawn_blocking(move || d.stop(&dir2, &l, Duration::from_secs(10)))
        .await
        .expect("join")
        .expect("stop");
    assert_eq!(stopped, Stopped::Clean);
    assert!(!launch.main.is_alive(), "the VMM exited on guest power-off");
    let exit = worker::driver::take_exit(&launch.main).expect("exit status seen");
    assert!(
        exit.success(),
        "cloud-hypervisor exits 0 when the guest powers off: {exit}"
    );
    assert!(
        launch.helpers.iter().all(|h| !h.is_alive()),
        "virtiofsd ended too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_refuses_a_bzimage_kernel_before_launching_anything() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bzimage = std::fs::read_dir("/boot")
        .expect("/boot")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().contains("vmlinuz-"))
        .expect("a /boot/vmlinuz-*");
    let closure = fake_toplevel(tmp.path(), &bzimage);
    let dir = tmp.path().join("vm-0");
    std::fs::create_dir_all(&dir).expect("dir");
    let d = driver();
    let err = tokio::task::spawn_blocking(move || d.start("vm-0", &dir, &spec(&closure)))
        .await
        .expect("join")
        .expect_err("bzImage refused");
    let text = err.to_string();
    assert!(text.contains("ELF vmlinux"), "{text}");
}

/// Raw API calls: the state machine, status codes and error bodies the driver relies on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_state_machine_status_codes_and_error_bodies() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let closure = fake_toplevel(tmp.path(), Path::new("/bin/busybox"));
    let socket = tmp.path().join("api.sock");
    let mut cmd = Command::new(standin());
    cmd.arg("--api-socket")
        .arg(format!("path={}", socket.display()))
        .stderr(Stdio::null());
    let proc = worker::driver::spawn_detached(cmd, "stand-in", None).expect("spawn");
    let mut guard = KillOnDrop::new();
    guard.launches.push(Launch {
        pgid: proc.pid,
        main: proc,
        helpers: vec![],
        started_at_ms: 0,
    });
    let s = socket.clone();
    tokio::task::spawn_blocking(move || {
        wait_for(Duration::from_secs(10), "the API socket", || {
            api(&s, "GET", "vmm.ping", None).ok()
        });
        let err = |method: &str, endpoint: &str, body: Option<&str>| {
            api(&s, method, endpoint, body)
                .expect_err("an error answer")
                .to_string()
        };
        let ping: serde_json::Value =
            serde_json::from_str(&api(&s, "GET", "vmm.ping", None).expect("ping")).expect("json");
        assert!(ping["version"].is_string());

        assert_eq!(
            err("GET", "vm.info", None),
            "GET vm.info answered 404: Error from API: The VM info is not available: VM is not created"
        );
        assert_eq!(
            err("PUT", "vm.boot", None),
            "PUT vm.boot answered 404: Error from API: The VM could not boot: VM is not created"
        );
        assert!(err("PUT", "vm.create", Some("{not json")).starts_with(
            "PUT vm.create answered 400: Failed to deserialize JSON"
        ));
        assert_eq!(err("PUT", "vm.nonsense", None), "PUT vm.nonsense answered 404: Not Found");
        assert_eq!(err("GET", "vm.boot", None), "GET vm.boot answered 400: Bad Request");

        let config = serde_json::json!({
            "cpus": {"boot_vcpus": 1, "max_vcpus": 1},
            "memory": {"size": 134217728, "shared": true},
            "payload": {"kernel": format!("{closure}/kernel"), "initramfs": format!("{closure}/initrd"), "cmdline": "console=ttyS0"},
            "serial": {"mode": "Off"}, "console": {"mode": "Off"},
        })
        .to_string();
        assert_eq!(api(&s, "PUT", "vm.create", Some(&config)).expect("create"), "");
        assert_eq!(
            err("PUT", "vm.create", Some(&config)),
            "PUT vm.create answered 500: Error from API: The VM could not be created: VM is already created"
        );
        assert_eq!(vm_state(&s).expect("info"), "Created");
        assert_eq!(
            err("PUT", "vm.shutdown", None),
            "PUT vm.shutdown answered 500: Error from API: The VM could not shutdown: VM is not running"
        );
        api(&s, "PUT", "vm.boot", None).expect("boot");
        assert_eq!(vm_state(&s).expect("info"), "Running");
        assert_eq!(
            err("PUT", "vm.boot", None),
            "PUT vm.boot answered 500: Error from API: The VM could not boot: invalid VM state transition: Running to Running"
        );
        api(&s, "PUT", "vm.pause", None).expect("pause");
        assert_eq!(vm_state(&s).expect("info"), "Paused");
        api(&s, "PUT", "vm.resume", None).expect("resume");
        // Shutdown tears the VM down but keeps its config: it can boot again.
        api(&s, "PUT", "vm.shutdown", None).expect("shutdown");
        assert_eq!(vm_state(&s).expect("info"), "Created");
        api(&s, "PUT", "vm.boot", None).expect("boot again");
        api(&s, "PUT", "vm.delete", None).expect("delete");
        assert!(err("GET", "vm.info", None).contains("404"));
        api(&s, "PUT", "vm.delete", None).expect("delete without a VM is fine");
        api(&s, "PUT", "vmm.shutdown", None).expect("vmm.shutdown");
        wait_for(Duration::from_secs(10), "the VMM to exit", || {
            (!proc.is_alive()).then_some(())
        });
    })
    .await
    .expect("api checks");
    let _: ProcRef = proc;
}
