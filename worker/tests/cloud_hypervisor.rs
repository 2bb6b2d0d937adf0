//! The cloud-hypervisor driver against the real cloud-hypervisor, booting Procurator's own
//! minimal PVH guests (`test_support::pvh_guest`, built here with `as` and `ld`).
//!
//! The binary is found as a user's worker finds it: `cloud-hypervisor` on `PATH` (the test
//! command puts `../shared/tools/cloud-hypervisor` there when it exists). Without it, or
//! without read-write `/dev/kvm`, each test prints one line saying what is missing and passes
//! without checking anything.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{wait_for, KillOnDrop};
use schema::model::{Backend, VmSpec};
use test_support::pvh_guest::{guests, Mode, BOOT_LINE, BUTTON_LINE};
use worker::config::{drivers, BackendSettings};
use worker::driver::cloud_hypervisor::{api, vm_state, CloudHypervisorDriver, EVENTS};
use worker::driver::{find_program, Driver, Launch, Stopped, CONSOLE_LOG};

const VIRTIOFSD: &str = "/usr/lib/qemu/virtiofsd";

/// The real binary, or `None` after printing why these tests cannot run here.
fn real_vmm(test: &str) -> Option<PathBuf> {
    let missing = if find_program("cloud-hypervisor").is_none() {
        Some("`cloud-hypervisor` is not on PATH (see README: Testing with cloud-hypervisor)")
    } else if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        Some("/dev/kvm is missing or not read-write for this user")
    } else if !Path::new(VIRTIOFSD).is_file() {
        Some("virtiofsd is missing (/usr/lib/qemu/virtiofsd, package qemu-system-common)")
    } else {
        None
    };
    match missing {
        Some(why) => {
            eprintln!("SKIPPED {test}: {why}");
            None
        }
        None => find_program("cloud-hypervisor"),
    }
}

/// A toplevel-shaped folder around a guest kernel.
fn toplevel(root: &Path, kernel: &Path) -> String {
    let top = root.join("toplevel");
    std::fs::create_dir_all(&top).expect("toplevel");
    std::fs::copy(kernel, top.join("kernel")).expect("kernel");
    std::fs::write(top.join("initrd"), b"initrd").expect("initrd");
    std::fs::write(top.join("init"), b"#!/bin/sh\n").expect("init");
    std::fs::write(top.join("kernel-params"), b"quiet\n").expect("params");
    top.display().to_string()
}

fn spec(closure: &str) -> VmSpec {
    VmSpec {
        backend: Backend::CloudHypervisor,
        memory_mb: 64,
        ..VmSpec::process("vm", closure)
    }
}

/// A driver, an instance folder with the guest of `mode`, and a guard for what gets started.
struct Setup {
    _tmp: tempfile::TempDir,
    driver: Arc<CloudHypervisorDriver>,
    dir: PathBuf,
    closure: String,
    guard: KillOnDrop,
}

/// `linux_boots` as the worker's probe would find it on a host where Linux runs under KVM.
fn setup(binary: PathBuf, kernel: &Path) -> Setup {
    let tmp = tempfile::tempdir().expect("tempdir");
    let closure = toplevel(tmp.path(), kernel);
    let dir = tmp.path().join("vm-0");
    std::fs::create_dir_all(&dir).expect("dir");
    Setup {
        driver: Arc::new(CloudHypervisorDriver {
            binary,
            virtiofsd: PathBuf::from(VIRTIOFSD),
            linux_boots: true,
        }),
        dir,
        closure,
        guard: KillOnDrop::new(),
        _tmp: tmp,
    }
}

impl Setup {
    async fn start(&mut self) -> Launch {
        let (d, dir, s) = (self.driver.clone(), self.dir.clone(), spec(&self.closure));
        let launch = tokio::task::spawn_blocking(move || d.start("vm-0", &dir, &s))
            .await
            .expect("join")
            .expect("start through the API");
        self.guard.launches.push(launch.clone());
        launch
    }

    async fn wait_booted(&self, launch: &Launch) {
        let (d, dir, l) = (self.driver.clone(), self.dir.clone(), launch.clone());
        tokio::task::spawn_blocking(move || {
            wait_for(Duration::from_secs(30), "the guest's boot line", || {
                d.booted(&dir, &l).then_some(())
            })
        })
        .await
        .expect("booted");
    }

    async fn stop(&self, launch: &Launch, grace: Duration) -> Stopped {
        let (d, dir, l) = (self.driver.clone(), self.dir.clone(), launch.clone());
        tokio::task::spawn_blocking(move || d.stop(&dir, &l, grace))
            .await
            .expect("join")
            .expect("stop")
    }

    async fn wait_ended(&self, launch: &Launch) -> worker::driver::Ended {
        let (d, dir, l) = (self.driver.clone(), self.dir.clone(), launch.clone());
        tokio::task::spawn_blocking(move || {
            wait_for(Duration::from_secs(60), "the VM to end", || {
                d.ended(&dir, &l)
            })
        })
        .await
        .expect("ended")
    }

    fn console(&self) -> String {
        std::fs::read_to_string(self.dir.join(CONSOLE_LOG)).unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_boots_and_the_power_button_powers_it_off() {
    let Some(binary) = real_vmm("guest_boots_and_the_power_button_powers_it_off") else {
        return;
    };
    let mut s = setup(binary, guests().path(Mode::Button));
    let launch = s.start().await;
    assert_eq!(launch.helpers.len(), 1, "virtiofsd runs beside the VMM");
    s.wait_booted(&launch).await;
    let console = s.console();
    assert!(console.contains(BOOT_LINE), "{console}");
    assert!(
        console.contains(&format!("init={}/init quiet", s.closure)),
        "the guest got init= and kernel-params: {console}"
    );
    let socket = s.dir.join("api.sock");
    assert_eq!(vm_state(&socket).expect("vm.info"), "Running");
    let info: serde_json::Value =
        serde_json::from_str(&api(&socket, "GET", "vm.info", None).expect("vm.info"))
            .expect("json");
    assert_eq!(info["config"]["memory"]["shared"], true);
    assert_eq!(info["config"]["fs"][0]["tag"], "nixstore");
    assert!(s.driver.ended(&s.dir, &launch).is_none(), "it runs");

    // The press may come before the guest listens (it is then lost): the driver presses again.
    assert_eq!(
        s.stop(&launch, Duration::from_secs(20)).await,
        Stopped::Clean
    );
    assert!(!launch.main.is_alive(), "the VMM exited on guest power-off");
    assert!(s.console().contains(BUTTON_LINE), "{}", s.console());
    assert!(
        launch.helpers.iter().all(|h| !h.is_alive()),
        "virtiofsd ended too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_ignoring_the_power_button_is_shut_down_from_the_vmm() {
    let Some(binary) = real_vmm("guest_ignoring_the_power_button_is_shut_down_from_the_vmm") else {
        return;
    };
    let mut s = setup(binary, guests().path(Mode::Halt));
    let launch = s.start().await;
    s.wait_booted(&launch).await;
    let grace = Duration::from_secs(3);
    let t = Instant::now();
    assert_eq!(s.stop(&launch, grace).await, Stopped::Killed);
    assert!(t.elapsed() >= grace, "the button had its grace period");
    assert!(!launch.main.is_alive() && launch.helpers.iter().all(|h| !h.is_alive()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_power_off_is_a_clean_end() {
    let Some(binary) = real_vmm("guest_power_off_is_a_clean_end") else {
        return;
    };
    let mut s = setup(binary, guests().path(Mode::PowerOff));
    let launch = s.start().await;
    let ended = s.wait_ended(&launch).await;
    assert!(ended.clean, "{ended:?}");
    assert_eq!(ended.how, "powered off");
    assert!(s.console().contains(BOOT_LINE));
}

/// Regression: the driver took cloud-hypervisor's exit status 0 for a clean stop, but it exits 0
/// after a fatal vCPU error too (and reboots a guest that resets, forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_status_0_after_a_guest_crash_is_not_a_clean_end() {
    let Some(binary) = real_vmm("exit_status_0_after_a_guest_crash_is_not_a_clean_end") else {
        return;
    };
    let mut s = setup(binary, guests().path(Mode::TripleFault));
    let launch = s.start().await;
    let ended = s.wait_ended(&launch).await;
    assert!(!ended.clean, "{ended:?}");
    // Under nested PVM the reset is a KVM internal error; under plain KVM a reboot.
    assert!(
        ended.how.contains("fatal vCPU error") || ended.how.contains("reset itself"),
        "{}",
        ended.how
    );
    let events = std::fs::read_to_string(s.dir.join(EVENTS)).expect("events");
    assert!(events.contains("\"booted\""), "{events}");
}

/// Regression: the driver refused every kernel that was not ELF, but cloud-hypervisor boots
/// bzImages (since v39).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bzimage_kernel_is_handed_to_the_vmm() {
    let Some(binary) = real_vmm("bzimage_kernel_is_handed_to_the_vmm") else {
        return;
    };
    let Some(bzimage) = host_bzimage() else {
        eprintln!("SKIPPED bzimage_kernel_is_handed_to_the_vmm: no /boot/vmlinuz-*");
        return;
    };
    let mut s = setup(binary, &bzimage);
    let launch = s.start().await;
    let socket = s.dir.join("api.sock");
    assert_eq!(vm_state(&socket).expect("vm.info"), "Running");
    s.stop(&launch, Duration::ZERO).await;
    assert!(!launch.main.is_alive());
}

/// Where the worker's probe found that Linux does not boot under this host's KVM (nested
/// PVM), a VM with a Linux kernel fails at once with the reason instead of hanging in boot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linux_kernel_is_refused_with_the_reason_where_linux_cannot_boot() {
    let Some(binary) = real_vmm("linux_kernel_is_refused_with_the_reason_where_linux_cannot_boot")
    else {
        return;
    };
    let Some(bzimage) = host_bzimage() else {
        eprintln!("SKIPPED linux_kernel_is_refused_with_the_reason_where_linux_cannot_boot: no /boot/vmlinuz-*");
        return;
    };
    let mut s = setup(binary, &bzimage);
    s.driver = Arc::new(CloudHypervisorDriver {
        binary: s.driver.binary.clone(),
        virtiofsd: PathBuf::from(VIRTIOFSD),
        linux_boots: false,
    });
    let (d, dir, sp) = (s.driver.clone(), s.dir.clone(), spec(&s.closure));
    let err = tokio::task::spawn_blocking(move || d.start("vm-0", &dir, &sp))
        .await
        .expect("join")
        .expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains(
            "it is a Linux kernel, and a Linux kernel did not boot under this host's KVM"
        ) && text.contains("deployment.backend = \"qemu\""),
        "{text}"
    );
    assert!(!s.dir.join("api.sock").exists(), "nothing was launched");
}

fn host_bzimage() -> Option<PathBuf> {
    std::fs::read_dir("/boot")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().contains("vmlinuz-"))
}

/// The real API's answers the driver relies on: status codes, error chains, the lock file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_status_codes_and_error_bodies() {
    let Some(binary) = real_vmm("api_status_codes_and_error_bodies") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let kernel = guests().path(Mode::Halt).to_path_buf();
    let socket = tmp.path().join("api.sock");
    let mut cmd = Command::new(&binary);
    cmd.arg("--api-socket")
        .arg(format!("path={}", socket.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let proc = worker::driver::spawn_detached(cmd, "cloud-hypervisor", None).expect("spawn");
    let mut guard = KillOnDrop::new();
    guard.launches.push(Launch {
        pgid: proc.pid,
        main: proc,
        helpers: vec![],
        started_at_ms: 0,
    });
    let (s, b) = (socket.clone(), binary.clone());
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
            "PUT vm.boot answered 404: Error from API: The VM could not boot: VM config is missing"
        );
        assert_eq!(err("PUT", "vm.nonsense", None), "PUT vm.nonsense answered 404: Not Found");
        assert_eq!(err("GET", "vm.boot", None), "GET vm.boot answered 400: Bad Request");
        // Without a payload the config is accepted; booting it fails.
        let bare = r#"{"memory":{"size":67108864},"serial":{"mode":"Off"},"console":{"mode":"Off"}}"#;
        api(&s, "PUT", "vm.create", Some(bare)).expect("create without payload");
        let boot = err("PUT", "vm.boot", None);
        assert!(
            boot.starts_with("PUT vm.boot answered 400: Error from API: The VM could not boot")
                && boot.ends_with("No bootitem provided: neither firmware nor kernel"),
            "{boot}"
        );
        api(&s, "PUT", "vm.delete", None).expect("delete");

        let config = serde_json::json!({
            "memory": {"size": 67108864},
            "payload": {"kernel": kernel.display().to_string()},
            "serial": {"mode": "Off"}, "console": {"mode": "Off"},
        })
        .to_string();
        assert_eq!(api(&s, "PUT", "vm.create", Some(&config)).expect("create"), "");
        assert_eq!(
            err("PUT", "vm.create", Some(&config)),
            "PUT vm.create answered 500: Error from API: The VM could not be created: VM is already created"
        );
        assert_eq!(vm_state(&s).expect("info"), "Created");
        api(&s, "PUT", "vm.boot", None).expect("boot");
        assert_eq!(vm_state(&s).expect("info"), "Running");
        assert_eq!(
            err("PUT", "vm.boot", None),
            "PUT vm.boot answered 500: Error from API: The VM could not boot: VM is already created"
        );
        api(&s, "PUT", "vm.pause", None).expect("pause");
        assert_eq!(vm_state(&s).expect("info"), "Paused");
        api(&s, "PUT", "vm.resume", None).expect("resume");
        // Shutdown tears the VM down but keeps its config.
        api(&s, "PUT", "vm.shutdown", None).expect("shutdown");
        assert_eq!(vm_state(&s).expect("info"), "Created");
        api(&s, "PUT", "vm.delete", None).expect("delete");
        assert_eq!(
            err("PUT", "vm.pause", None),
            "PUT vm.pause answered 500: Error from API: The VM could not be paused: VM is not running"
        );

        // A second VMM on the same socket is refused (the first holds `<socket>.lock`).
        assert!(s.with_extension("sock.lock").exists());
        let second = Command::new(&b)
            .arg("--api-socket")
            .arg(format!("path={}", s.display()))
            .stdin(Stdio::null())
            .output()
            .expect("second VMM");
        let text = String::from_utf8_lossy(&second.stderr).into_owned()
            + &String::from_utf8_lossy(&second.stdout);
        assert!(text.contains("already in use"), "{text}");

        // vmm.shutdown answers 200 with an empty body (the spec says 204).
        assert_eq!(api(&s, "PUT", "vmm.shutdown", None).expect("vmm.shutdown"), "");
        wait_for(Duration::from_secs(10), "the VMM to exit", || {
            (!proc.is_alive()).then_some(())
        });
        assert!(!s.exists(), "the VMM removes its socket on exit");
    })
    .await
    .expect("api checks");
}

#[test]
fn backend_is_offered_only_when_a_probe_guest_boots() {
    let Some(binary) = real_vmm("backend_is_offered_only_when_a_probe_guest_boots") else {
        return;
    };
    let settings = |ch: &str| BackendSettings {
        only: Some(vec![Backend::CloudHypervisor]),
        cloud_hypervisor: ch.to_string(),
        ..BackendSettings::default()
    };
    let (offered, notes) = drivers(&settings(&binary.display().to_string()));
    assert_eq!(
        offered.backends(),
        vec![Backend::CloudHypervisor],
        "{notes:?}"
    );
    assert!(notes[0].contains("probe guest booted"), "{notes:?}");
    // Whether Linux boots here is probed too, and said (under nested PVM it does not).
    assert!(notes[0].contains("Linux kernel"), "{notes:?}");
    eprintln!("{}", notes[0]);

    // A binary that runs but boots nothing is not offered, and the note says why.
    let (offered, notes) = drivers(&settings("/bin/true"));
    assert!(offered.backends().is_empty());
    assert!(
        notes[0].starts_with("cloud-hypervisor: unavailable, /bin/true: the probe guest"),
        "{notes:?}"
    );
}

/// The worker as a user runs it (`--cloud-hypervisor PATH`) against a real control plane: a VM
/// of the PVH guest is booted from the assignment, reported running, and powered off by the
/// button when it is removed; where Linux cannot boot under this host's KVM, a Linux VM is
/// reported failed with the reason.
#[tokio::test(flavor = "current_thread")]
async fn worker_runs_a_cloud_hypervisor_vm_from_its_assignment() {
    use schema::model::{content_hash, ClusterSettings, Phase};
    let Some(binary) = real_vmm("worker_runs_a_cloud_hypervisor_vm_from_its_assignment") else {
        return;
    };
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async move {
            let pvh = tokio::task::spawn_blocking(|| test_support::pvh_guest::toplevel(Mode::Button))
                .await
                .expect("pvh toplevel");
            let linux = tokio::task::spawn_blocking(test_support::vm_image::build_test_vm)
                .await
                .expect("linux toplevel")
                .toplevel;
            let cp = test_support::ControlPlane::start_with(test_support::Options {
                lease_ms: 3_000,
                heartbeat_ms: 300,
            });
            let tmp = tempfile::tempdir().expect("tempdir");
            let state = tmp.path().join("w1");
            let mut guard = KillOnDrop::new();
            guard.watch_state(&state);
            let ch = binary.display().to_string();
            let worker = common::WorkerProcess::start(
                &cp.addr,
                &cp.worker_token,
                "w1",
                &state,
                &["--backends", "cloud-hypervisor", "--cloud-hypervisor", &ch],
            );
            let master = cp.operator().await;
            common::workers_registered(&master, 1).await;
            let publish = |generation: u64, specs: Vec<VmSpec>| {
                let master = &master;
                async move {
                    let settings = ClusterSettings::default();
                    master
                        .publish_state(
                            &format!("commit-{generation}"),
                            generation,
                            &content_hash(&settings, &specs),
                            &specs,
                            &settings,
                        )
                        .await
                        .expect("publishState");
                }
            };
            let instance = |id: &'static str| {
                let master = &master;
                async move {
                    master
                        .cluster_status()
                        .await
                        .ok()?
                        .instances
                        .into_iter()
                        .find(|i| i.instance_id == id)
                }
            };
            let wait = Duration::from_secs(90);

            let vm = spec(&pvh);
            publish(1, vec![vm.clone()]).await;
            test_support::eventually(wait, "vm-0 running", || async {
                instance("vm-0").await.filter(|i| i.phase == Phase::Running)
            })
            .await;
            let console =
                std::fs::read_to_string(state.join("instances/vm-0").join(CONSOLE_LOG))
                    .expect("console");
            assert!(console.contains(BOOT_LINE), "{console}");
            let launch = common::recorded_launch(&state, "vm-0").expect("launch");

            if worker.log_text().contains("did not boot under this host's KVM") {
                let mut lin = spec(&linux);
                lin.name = "lin".into();
                publish(2, vec![vm.clone(), lin]).await;
                let failed = test_support::eventually(wait, "lin-0 failed", || async {
                    instance("lin-0")
                        .await
                        .filter(|i| matches!(i.phase, Phase::Failed | Phase::CrashLoop))
                })
                .await;
                assert!(
                    failed.message.contains("it is a Linux kernel, and a Linux kernel did not boot under this host's KVM"),
                    "{}",
                    failed.message
                );
            } else {
                eprintln!("Linux boots under this host's KVM: the refusal is not exercised here");
            }

            publish(3, vec![]).await;
            test_support::eventually(wait, "vm-0 removed", || async {
                instance("vm-0").await.is_none().then_some(())
            })
            .await;
            wait_for(Duration::from_secs(30), "the VMM to exit", || {
                (!launch.main.is_alive()).then_some(())
            });
            let log = worker.log_text();
            assert!(!log.contains("stopped (killed"), "powered off by the button: {log}");
        })
        .await;
}
