//! `pcr-test` as a user runs it, against a real control plane process.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

use schema::model::ClusterStatus;
use test_support::{cargo_bin, ControlPlane};

fn pcr(cp: &ControlPlane, args: &[&str]) -> Output {
    Command::new(cargo_bin("pcr-test"))
        .args(args)
        .env("PROCURATOR_MASTER", &cp.addr)
        .env(
            "PROCURATOR_TOKEN_FILE",
            cp.dir.path().join("operator.token"),
        )
        .env_remove("PROCURATOR_TOKEN")
        .output()
        .expect("run pcr-test")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "pcr-test failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn failed(out: &Output) -> String {
    assert!(!out.status.success(), "pcr-test should have failed");
    assert!(out.stdout.is_empty(), "nothing on stdout when failing");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn publish_status_and_errors_as_a_user_sees_them() {
    let cp = ControlPlane::start();
    let out = ok(&pcr(
        &cp,
        &[
            "state", "publish", "-c", "abc123", "-g", "2", "-i", "h1", "-n", "3",
        ],
    ));
    assert_eq!(
        out,
        "published generation 2 (0 instances placed, 3 unplaced)\n"
    );

    let status: ClusterStatus =
        serde_json::from_str(&ok(&pcr(&cp, &["control", "status", "--json"])))
            .expect("status JSON");
    assert_eq!(status.active_generation, 2);
    assert_eq!(status.commit, "abc123");
    assert_eq!(status.instances.len(), 3);
    assert!(status
        .instances
        .iter()
        .all(|i| i.unplaced_reason == "no workers are registered"));

    let table = ok(&pcr(&cp, &["control", "status"]));
    assert!(
        table.starts_with("cluster test · generation 2 · commit abc123"),
        "{table}"
    );
    assert!(table.contains("test0-0"), "{table}");

    // Same generation, same intent: idempotent.
    let out = ok(&pcr(
        &cp,
        &[
            "state", "publish", "-c", "abc123", "-g", "2", "-i", "h1", "-n", "3",
        ],
    ));
    assert!(out.contains("already active"), "{out}");

    // Stale: one sentence naming both numbers, non-zero exit.
    let err = failed(&pcr(
        &cp,
        &["state", "publish", "-c", "def", "-g", "1", "-n", "1"],
    ));
    assert_eq!(
        err,
        "error: publishState rejected: generation 1 is not newer than active generation 2\n"
    );

    let err = failed(&pcr(&cp, &["--token", "wrong", "control", "status"]));
    assert!(
        err.starts_with("error: the control plane refused the login: invalid token"),
        "{err}"
    );

    let out = Command::new(cargo_bin("pcr"))
        .args(["--master", "127.0.0.1:1", "--token", "x", "vms", "list"])
        .output()
        .expect("run pcr");
    let err = failed(&out);
    assert!(
        err.starts_with("error: cannot connect to the control plane at 127.0.0.1:1"),
        "{err}"
    );
}

#[test]
fn publish_a_blueprint_file_and_refuse_a_broken_one() {
    let cp = ControlPlane::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.json");
    std::fs::write(
        &good,
        r#"{"cluster": {"name": "demo", "strategy": "pack"},
            "vms": {"web": {"backend": "process", "replicas": 2, "cpu": 1, "memoryMb": 64,
                            "closure": "/nix/store/0c9hj2bl0ajiyqslkmbhizbgshrdw9jl-web",
                            "healthChecks": [{"type": "http", "port": 8080, "path": "/healthz"}]}}}"#,
    )
    .expect("write");
    let out = ok(&pcr(
        &cp,
        &[
            "state",
            "publish",
            "-c",
            "c1",
            "-g",
            "1",
            "--blueprint",
            good.to_str().expect("utf8"),
        ],
    ));
    assert!(out.starts_with("published generation 1"), "{out}");
    let vms = ok(&pcr(&cp, &["vms", "list"]));
    assert!(vms.contains("web-0") && vms.contains("web-1"), "{vms}");
    let shown = ok(&pcr(&cp, &["generations", "show", "1"]));
    assert!(shown.contains("\"healthChecks\""), "{shown}");

    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"vms": {"web": {"backend": "docker", "closure": "/nix/store/0c9hj2bl0ajiyqslkmbhizbgshrdw9jl-web"}}}"#,
    )
    .expect("write");
    let err = failed(&pcr(
        &cp,
        &[
            "state",
            "publish",
            "-c",
            "c2",
            "-g",
            "2",
            "--blueprint",
            bad.to_str().expect("utf8"),
        ],
    ));
    assert!(err.contains("is not a usable blueprint"), "{err}");
    assert!(err.contains("unknown variant `docker`"), "{err}");
    // Nothing was published.
    let gens = ok(&pcr(&cp, &["generations", "list"]));
    assert_eq!(gens.lines().count(), 2, "{gens}");
}
