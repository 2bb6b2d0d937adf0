//! Orchestration figures, printed (a program, not a timed test):
//!
//! 1. `publishState` → running for a process workload (busybox httpd), against launching the
//!    same command by hand in the same run: time until the HTTP port answers, and until the
//!    control plane reports the instance running.
//! 2. The same for a TCG microVM (the test toplevel), by hand = the same virtiofsd + QEMU
//!    command line: time until the guest's stage-2 boot line is on the console.
//! 3. cloud-hypervisor (when `cloud-hypervisor` is on PATH and /dev/kvm is usable): the
//!    project's PVH test guest, publishState → the guest's first console line, against
//!    launching `cloud-hypervisor --kernel … --serial tty` by hand in the same run; the same
//!    guest under QEMU/TCG by hand; the idle VMM's resident memory.
//! 4. Reconcile of N process workloads (default 200) on one worker: time until the control
//!    plane reports all running, and the worker's resident memory.
//!
//! Run: `cargo bench -p worker --bench orchestration` (env `BENCH_ROUNDS`, `BENCH_INSTANCES`).

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use schema::client::MasterClient;
use schema::model::{content_hash, Backend, ClusterSettings, EventKind, VmSpec};
use test_support::pvh_guest;
use test_support::vm_image::{build_test_vm, BOOT_LINE};
use test_support::{ControlPlane, Options};
use worker::driver::qemu::{Accel, QemuDriver};
use worker::driver::{
    find_program, spawn_detached, spawn_virtiofsd, terminate_group, Launch, Toplevel,
};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

async fn publish(master: &MasterClient, generation: u64, specs: &[VmSpec]) {
    let settings = ClusterSettings::default();
    master
        .publish_state(
            &format!("bench-{generation}"),
            generation,
            &content_hash(&settings, specs),
            specs,
            &settings,
        )
        .await
        .expect("publishState");
}

/// Waits for `count` distinct instances to be reported `running` (instance-phase events).
async fn wait_running(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Vec<schema::model::Event>>,
    count: usize,
    timeout: Duration,
) -> bool {
    let mut running = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while running.len() < count {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(events)) => {
                for e in events {
                    if e.kind == EventKind::InstancePhase && e.message.contains(" is running") {
                        running.insert(e.instance_id);
                    }
                }
            }
            _ => return false,
        }
    }
    true
}

fn poll_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

/// Spawns `cmd` with its serial console on stdout and answers the time to the first line;
/// with `idle_after`, also the process's resident memory once that line has been printed.
/// The process is killed after.
fn first_line(mut cmd: Command, idle_after: Option<&str>) -> (Duration, u64) {
    use std::io::{BufRead, BufReader};
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    test_support::die_with_parent(&mut cmd);
    let t = Instant::now();
    let mut child = cmd.spawn().expect("spawn by hand");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("first line");
    let first = t.elapsed();
    assert!(!line.is_empty(), "no console output");
    let mut rss = 0;
    if let Some(wanted) = idle_after {
        while !line.contains(wanted) {
            line.clear();
            if out.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
        }
        rss = worker::procfs::rss_bytes(child.id()).unwrap_or(0);
    }
    let _ = child.kill();
    let _ = child.wait();
    (first, rss)
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, run());
}

async fn run() {
    let rounds = env_usize("BENCH_ROUNDS", 5);
    let instances = env_usize("BENCH_INSTANCES", 200);
    let web = tokio::task::spawn_blocking(|| build_web_closure("bench"))
        .await
        .expect("closure");
    let image = tokio::task::spawn_blocking(build_test_vm)
        .await
        .expect("image");
    let ch = find_program("cloud-hypervisor").filter(|_| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_ok()
    });
    let pvh = match &ch {
        Some(_) => Some(
            tokio::task::spawn_blocking(|| pvh_guest::toplevel(pvh_guest::Mode::Button))
                .await
                .expect("pvh toplevel"),
        ),
        None => None,
    };
    let backends = match &ch {
        Some(_) => "process,qemu,cloud-hypervisor",
        None => "process,qemu",
    };
    let ch_arg = ch
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "cloud-hypervisor".into());
    let cp = ControlPlane::start_with(Options {
        lease_ms: 10_000,
        heartbeat_ms: 1_000,
    });
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("w1");
    let mut guard = KillOnDrop::new();
    guard.watch_state(&state);
    let worker = WorkerProcess::start(
        &cp.addr,
        &cp.worker_token,
        "w1",
        &state,
        &[
            "--backends",
            backends,
            "--cloud-hypervisor",
            &ch_arg,
            "--accel",
            "tcg",
            "--cpu",
            "1000",
            "--memory-mb",
            "200000",
        ],
    );
    let master = cp.operator().await;
    let (_sub, mut events) = master.watch(0).await.expect("watch");
    let mut generation = 0;
    // Warm-up: the worker registers and the closure is known valid.
    generation += 1;
    publish(&master, generation, &[]).await;

    // 1. process workload
    let mut by_hand_port = Vec::new();
    let mut orch_port = Vec::new();
    let mut orch_running = Vec::new();
    for round in 0..rounds {
        let port = free_port();
        let mut spec = VmSpec::process("web", &web);
        spec.exec = "bin/web".into();
        spec.memory_mb = 64;
        spec.env.insert("PORT".into(), port.to_string());
        // By hand: the same command the driver runs.
        let dir = tmp.path().join(format!("hand-{round}"));
        std::fs::create_dir_all(&dir).expect("dir");
        let t = Instant::now();
        let cmd = worker::driver::process::command("web-0", &dir, &spec).expect("command");
        let proc = spawn_detached(cmd, "web", None).expect("spawn by hand");
        let launch = Launch {
            pgid: proc.pid,
            main: proc,
            helpers: vec![],
            started_at_ms: 0,
        };
        assert!(poll_until(Duration::from_secs(10), || http_get(port).is_some()));
        by_hand_port.push(t.elapsed());
        terminate_group(&launch, Duration::from_secs(2));

        // Orchestrated.
        while events.try_recv().is_ok() {}
        generation += 1;
        let t = Instant::now();
        publish(&master, generation, std::slice::from_ref(&spec)).await;
        let mut port_at = None;
        let running = wait_running(&mut events, 1, Duration::from_secs(30));
        tokio::pin!(running);
        let reported = loop {
            tokio::select! {
                r = &mut running => break r,
                _ = tokio::time::sleep(Duration::from_millis(1)), if port_at.is_none() => {
                    if http_get(port).is_some() { port_at = Some(t.elapsed()); }
                }
            }
        };
        let running_at = t.elapsed();
        assert!(reported, "web-0 never reported running");
        while port_at.is_none() {
            if http_get(port).is_some() {
                port_at = Some(t.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        orch_port.push(port_at.unwrap_or_default());
        orch_running.push(running_at);
        generation += 1;
        publish(&master, generation, &[]).await;
        let gone = state.join("instances/web-0");
        let deadline = Instant::now() + Duration::from_secs(20);
        while gone.exists() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    println!("process workload (busybox httpd), median of {rounds}:");
    println!(
        "  by hand, spawn -> HTTP answers:            {}",
        ms(median(by_hand_port.clone()))
    );
    println!(
        "  publishState -> HTTP answers:              {}",
        ms(median(orch_port.clone()))
    );
    println!(
        "  publishState -> control plane says running: {}",
        ms(median(orch_running))
    );
    println!(
        "  orchestration overhead (port):             {}",
        ms(median(orch_port).saturating_sub(median(by_hand_port)))
    );

    // 2. TCG microVM
    let vm_rounds = rounds.min(3);
    let driver = QemuDriver {
        qemu: "qemu-system-x86_64".into(),
        virtiofsd: "/usr/lib/qemu/virtiofsd".into(),
        accel: Accel::Tcg,
    };
    let mut hand_boot = Vec::new();
    let mut orch_boot = Vec::new();
    let mut orch_vm_running = Vec::new();
    let vm_spec = VmSpec {
        backend: Backend::Qemu,
        ..VmSpec::process("vm", &image.toplevel)
    };
    let has_boot_line = |log: &Path| {
        std::fs::read_to_string(log)
            .map(|t| t.contains(BOOT_LINE))
            .unwrap_or(false)
    };
    for round in 0..vm_rounds {
        let dir = tmp.path().join(format!("vm-hand-{round}"));
        std::fs::create_dir_all(&dir).expect("dir");
        let t = Instant::now();
        let toplevel = Toplevel::read(&image.toplevel).expect("toplevel");
        let (virtiofsd, socket) =
            spawn_virtiofsd(&driver.virtiofsd, &dir).expect("virtiofsd by hand");
        let mut cmd = Command::new(&driver.qemu);
        cmd.args(driver.args(&dir, &vm_spec, &toplevel, &socket))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let qemu = spawn_detached(cmd, "qemu", Some(virtiofsd.pid)).expect("qemu by hand");
        let launch = Launch {
            pgid: virtiofsd.pid,
            main: qemu,
            helpers: vec![virtiofsd],
            started_at_ms: 0,
        };
        let log = dir.join("console.log");
        assert!(poll_until(Duration::from_secs(120), || has_boot_line(&log)));
        hand_boot.push(t.elapsed());
        terminate_group(&launch, Duration::ZERO);

        while events.try_recv().is_ok() {}
        generation += 1;
        let t = Instant::now();
        publish(&master, generation, std::slice::from_ref(&vm_spec)).await;
        let log = state.join("instances/vm-0/console.log");
        let mut boot_at = None;
        let running = wait_running(&mut events, 1, Duration::from_secs(120));
        tokio::pin!(running);
        let reported = loop {
            tokio::select! {
                r = &mut running => break r,
                _ = tokio::time::sleep(Duration::from_millis(2)), if boot_at.is_none() => {
                    if has_boot_line(&log) { boot_at = Some(t.elapsed()); }
                }
            }
        };
        let running_at = t.elapsed();
        assert!(reported, "vm-0 never reported running");
        while boot_at.is_none() {
            if has_boot_line(&log) {
                boot_at = Some(t.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        orch_boot.push(boot_at.unwrap_or_default());
        orch_vm_running.push(running_at);
        generation += 1;
        publish(&master, generation, &[]).await;
        let gone = state.join("instances/vm-0");
        let deadline = Instant::now() + Duration::from_secs(60);
        while gone.exists() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    println!("TCG microVM (Debian cloud kernel + busybox initrd, virtiofs store), median of {vm_rounds}:");
    println!(
        "  by hand, launch -> stage-2 boot line:            {}",
        ms(median(hand_boot.clone()))
    );
    println!(
        "  publishState -> stage-2 boot line:               {}",
        ms(median(orch_boot.clone()))
    );
    println!(
        "  publishState -> control plane says running:      {}",
        ms(median(orch_vm_running))
    );
    println!(
        "  orchestration overhead (boot line):              {}",
        ms(median(orch_boot).saturating_sub(median(hand_boot)))
    );

    // 3. cloud-hypervisor, the project's PVH guest.
    match (&ch, &pvh) {
        (Some(ch), Some(top)) => {
            let kernel = Path::new(top).join("kernel");
            let cmdline = format!("console=ttyS0 init={top}/init procurator.pvh=button");
            let mut hand = Vec::new();
            let mut hand_rss = Vec::new();
            let mut tcg = Vec::new();
            let mut orch = Vec::new();
            let mut orch_running = Vec::new();
            let mut orch_rss = Vec::new();
            let ch_spec = VmSpec {
                backend: Backend::CloudHypervisor,
                memory_mb: 64,
                ..VmSpec::process("vm", top)
            };
            for _ in 0..rounds {
                // By hand: the VMM with the guest on its command line, serial on stdout.
                let mut cmd = Command::new(ch);
                cmd.arg("--kernel")
                    .arg(&kernel)
                    .args(["--cmdline", &cmdline, "--memory", "size=64M"])
                    .args(["--cpus", "boot=1", "--serial", "tty", "--console", "off"]);
                let (first, rss) = first_line(cmd, Some(pvh_guest::WAITING_LINE));
                hand.push(first);
                hand_rss.push(rss);
                // The same guest under QEMU/TCG, by hand.
                let mut cmd = Command::new("qemu-system-x86_64");
                cmd.args(["-M", "microvm,accel=tcg", "-m", "64", "-nodefaults"])
                    .args(["-no-user-config", "-display", "none", "-serial", "stdio"])
                    .arg("-kernel")
                    .arg(&kernel)
                    .args(["-append", &cmdline]);
                tcg.push(first_line(cmd, None).0);

                while events.try_recv().is_ok() {}
                generation += 1;
                let log = state.join("instances/vm-0/console.log");
                let has_line = |log: &Path| {
                    std::fs::read(log)
                        .map(|b| b.contains(&b'\n'))
                        .unwrap_or(false)
                };
                let t = Instant::now();
                publish(&master, generation, std::slice::from_ref(&ch_spec)).await;
                let mut line_at = None;
                let running = wait_running(&mut events, 1, Duration::from_secs(60));
                tokio::pin!(running);
                let reported = loop {
                    tokio::select! {
                        r = &mut running => break r,
                        _ = tokio::time::sleep(Duration::from_millis(1)), if line_at.is_none() => {
                            if has_line(&log) { line_at = Some(t.elapsed()); }
                        }
                    }
                };
                orch_running.push(t.elapsed());
                assert!(reported, "the cloud-hypervisor VM never reported running");
                while line_at.is_none() {
                    if has_line(&log) {
                        line_at = Some(t.elapsed());
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                orch.push(line_at.unwrap_or_default());
                let launch = recorded_launch(&state, "vm-0").expect("launch.json");
                let log_text = |log: &Path| std::fs::read_to_string(log).unwrap_or_default();
                assert!(poll_until(Duration::from_secs(10), || log_text(&log)
                    .contains(pvh_guest::WAITING_LINE)));
                orch_rss.push(worker::procfs::rss_bytes(launch.main.pid).unwrap_or(0));
                generation += 1;
                publish(&master, generation, &[]).await;
                let gone = state.join("instances/vm-0");
                let deadline = Instant::now() + Duration::from_secs(30);
                while gone.exists() && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            let mib = |v: Vec<u64>| {
                let mut v = v;
                v.sort();
                v[v.len() / 2] as f64 / 1048576.0
            };
            println!("cloud-hypervisor, PVH test guest (64 MiB), median of {rounds}:");
            println!(
                "  by hand, cloud-hypervisor --kernel … --serial tty -> first line: {}",
                ms(median(hand.clone()))
            );
            println!(
                "  same guest under QEMU/TCG (microvm) by hand -> first line:    {}",
                ms(median(tcg))
            );
            println!(
                "  publishState -> first console line:                           {}",
                ms(median(orch.clone()))
            );
            println!(
                "  publishState -> control plane says running:                   {}",
                ms(median(orch_running))
            );
            println!(
                "  orchestration overhead (first line):                          {}",
                ms(median(orch).saturating_sub(median(hand)))
            );
            println!(
                "  idle VMM resident memory: by hand {:.1} MiB, worker-started {:.1} MiB (+ virtiofsd)",
                mib(hand_rss),
                mib(orch_rss)
            );
        }
        _ => println!(
            "cloud-hypervisor: skipped (`cloud-hypervisor` not on PATH or /dev/kvm not usable)"
        ),
    }

    // 4. Many process workloads on one worker.
    let mut many = VmSpec::process("many", &web);
    many.exec = "bin/busybox".into();
    many.args = vec!["sleep".into(), "1000000".into()];
    many.memory_mb = 16;
    many.replicas = instances as u32;
    while events.try_recv().is_ok() {}
    generation += 1;
    let t = Instant::now();
    publish(&master, generation, std::slice::from_ref(&many)).await;
    let all = wait_running(&mut events, instances, Duration::from_secs(300)).await;
    let elapsed = t.elapsed();
    assert!(all, "not all {instances} instances reported running");
    let rss = worker::procfs::rss_bytes(worker.child.id()).unwrap_or(0);
    println!("reconcile of {instances} process workloads on one worker:");
    println!("  publishState -> all reported running: {}", ms(elapsed));
    println!(
        "  worker resident memory:               {:.1} MiB",
        rss as f64 / 1048576.0
    );
    generation += 1;
    publish(&master, generation, &[]).await;
    let t = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::read_dir(state.join("instances"))
        .map(|d| d.count())
        .unwrap_or(0)
        > 0
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "  publishState (empty) -> all stopped:  {}",
        ms(t.elapsed())
    );
}
