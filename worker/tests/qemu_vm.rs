//! A real Linux microVM through the QEMU driver under TCG: a toplevel built with real nix from
//! the host's Debian cloud kernel and a busybox initramfs boots, reads a file from the
//! virtiofs-shared store, and shuts down cleanly on the ACPI power button.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{wait_for, KillOnDrop};
use schema::model::{Backend, PortForward, VmSpec};
use test_support::vm_image::{build_test_vm, BOOT_LINE, GREETING, POWEROFF_LINE};
use worker::driver::qemu::{Accel, QemuDriver};
use worker::driver::{Driver, Stopped, CONSOLE_LOG};

fn vm_spec(closure: &str) -> VmSpec {
    VmSpec {
        backend: Backend::Qemu,
        memory_mb: 256,
        ..VmSpec::process("vm", closure)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn microvm_boots_reads_the_store_over_virtiofs_and_powers_off_cleanly() {
    let image = tokio::task::spawn_blocking(build_test_vm)
        .await
        .expect("image");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("vm-0");
    std::fs::create_dir_all(&dir).expect("dir");
    let driver = std::sync::Arc::new(QemuDriver {
        qemu: PathBuf::from("qemu-system-x86_64"),
        virtiofsd: PathBuf::from("/usr/lib/qemu/virtiofsd"),
        accel: Accel::Tcg,
    });
    let mut spec = vm_spec(&image.toplevel);
    // A forwarded port: QEMU must accept the user-mode network with it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    spec.ports.push(PortForward {
        name: "http".into(),
        guest: 80,
        host: port,
    });

    let mut guard = KillOnDrop::new();
    let (d, dir2, spec2) = (driver.clone(), dir.clone(), spec.clone());
    let launch = tokio::task::spawn_blocking(move || d.start("vm-0", &dir2, &spec2))
        .await
        .expect("join")
        .expect("qemu starts");
    guard.launches.push(launch.clone());

    let console = dir.join(CONSOLE_LOG);
    let read = || std::fs::read_to_string(&console).unwrap_or_default();
    let (d, dir2, l2) = (driver.clone(), dir.clone(), launch.clone());
    tokio::task::spawn_blocking(move || {
        wait_for(
            Duration::from_secs(120),
            "the guest's stage 2 boot line",
            || {
                let text = std::fs::read_to_string(dir2.join(CONSOLE_LOG)).unwrap_or_default();
                assert!(
                    l2.main.is_alive(),
                    "qemu exited during boot; console:\n{text}"
                );
                text.contains(GREETING).then_some(())
            },
        );
        assert!(d.booted(&dir2, &l2), "kernel boot marker on the console");
    })
    .await
    .expect("boot");
    let text = read();
    assert!(text.contains(BOOT_LINE), "{text}");
    assert!(
        text.contains(&format!("store file says: {GREETING}")),
        "the guest read the greeting from the virtiofs store: {text}"
    );
    assert_eq!(driver.status(&dir).expect("QMP status"), "running");
    // The host side of the forwarded port is QEMU's.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());

    let (d, dir2, l2) = (driver.clone(), dir.clone(), launch.clone());
    let stopped = tokio::task::spawn_blocking(move || d.stop(&dir2, &l2, Duration::from_secs(60)))
        .await
        .expect("join")
        .expect("stop");
    assert_eq!(stopped, Stopped::Clean, "console:\n{}", read());
    assert!(
        read().contains(POWEROFF_LINE),
        "guest saw the power button: {}",
        read()
    );
    assert!(!launch.main.is_alive());
    assert!(
        launch.helpers.iter().all(|h| !h.is_alive()),
        "virtiofsd ended too"
    );
}
