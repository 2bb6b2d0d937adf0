//! A control plane that clients can exhaust must not die of it: more idle connections than it
//! may open files once ended the process (`accepting connections failed … Too many open
//! files`). Against the real binary under a small open-files limit (`prlimit`), on loopback,
//! with a bounded number of connections.

use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use test_support::{cargo_bin, eventually, spawn_ready};

/// The limit the control plane runs under; it keeps 64 descriptors for itself.
const NOFILE: u64 = 160;

#[test]
fn the_control_plane_survives_more_idle_connections_than_it_may_open_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("control-plane.db");
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--nofile={NOFILE}:{NOFILE}"))
        .arg("--")
        .arg(cargo_bin("pcr-control-plane"))
        .args(["--listen", "127.0.0.1:0"])
        .arg("--db")
        .arg(&db)
        .env("RUST_LOG", "info");
    let (mut proc, addr) = spawn_ready(
        "pcr-control-plane",
        cmd,
        &dir.path().join("control-plane.log"),
        "pcr-control-plane listening on ",
    );
    let token = std::fs::read_to_string(dir.path().join("operator.token"))
        .expect("operator token")
        .trim()
        .to_string();

    // Twice as many idle connections as the process may open files, none of them logging in.
    let idle: Vec<TcpStream> = (0..2 * NOFILE)
        .filter_map(|_| TcpStream::connect(&addr).ok())
        .collect();
    assert!(
        idle.len() as u64 > NOFILE,
        "only {} connections",
        idle.len()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        // A login while the connections are held may be turned away, but the process lives.
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            schema::net::connect_master(&addr, &token),
        )
        .await;
    });
    assert!(
        proc.child.try_wait().expect("try_wait").is_none(),
        "the control plane exited under {} idle connections:\n{}",
        idle.len(),
        proc.log_text()
    );
    drop(idle);
    // Once they are gone, operators get in again.
    local.block_on(&runtime, async {
        let status = eventually(Duration::from_secs(30), "an operator login", || async {
            let (master, _conn) = schema::net::connect_master(&addr, &token).await.ok()?;
            schema::client::MasterClient::new(master)
                .cluster_status()
                .await
                .ok()
        })
        .await;
        assert_eq!(status.active_generation, 0);
    });
    assert!(proc.child.try_wait().expect("try_wait").is_none());
    let log = proc.log_text();
    assert!(
        log.contains("too many connections") || log.contains("cannot accept a connection"),
        "the refusals are not logged:\n{log}"
    );
}
