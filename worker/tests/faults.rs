//! Faults injected into a real cluster: control plane and workers as separate processes,
//! workloads built by real `nix build`. A killed worker and a paused worker lose their
//! workload to another worker within the lease, and stop their copy when they return; a
//! generation whose service fails its health check is rolled back to the previous one. A
//! worker cut off from the control plane (hung, killed, or behind a cut network link) stops
//! the workloads that set `stopAfterDisconnectMs` before they could run twice.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use schema::client::MasterClient;
use schema::model::*;
use test_support::{eventually, ControlPlane, Options};

const LEASE_MS: u64 = 2_000;

fn local<F: std::future::Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio::task::LocalSet::new().block_on(&rt, f)
}

async fn publish(master: &MasterClient, generation: u64, specs: &[VmSpec]) {
    let settings = ClusterSettings::default();
    master
        .publish_state(
            &format!("commit-{generation}"),
            generation,
            &content_hash(&settings, specs),
            specs,
            &settings,
        )
        .await
        .unwrap();
}

async fn running_on(master: &MasterClient, id: &str, worker: &str, closure: &str) {
    eventually(
        Duration::from_secs(60),
        &format!("{id} running on {worker}"),
        || async {
            let s = master.cluster_status().await.ok()?;
            let i = s.instances.into_iter().find(|i| i.instance_id == id)?;
            (i.worker_id == worker && i.phase == Phase::Running && i.observed_closure == closure)
                .then_some(())
        },
    )
    .await
}

fn sleeper_spec(name: &str, closure: &str) -> VmSpec {
    let mut spec = VmSpec::process(name, closure);
    spec.exec = "bin/sleeper".into();
    spec.memory_mb = 64;
    spec
}

/// kill -9 (`pause = false`) or SIGSTOP (`pause = true`) of the worker running the workload.
fn lost_worker(pause: bool) {
    // Tests run in parallel and `copies` looks at every process: a name per test.
    let name = if pause { "paused" } else { "killed" };
    let instance = format!("{name}-0");
    let instance = instance.as_str();
    let closure = build_sleeper();
    let cp = ControlPlane::start_with(Options {
        lease_ms: LEASE_MS,
        heartbeat_ms: 250,
    });
    let dir = tempfile::tempdir().unwrap();
    let (s1, s2) = (dir.path().join("w1"), dir.path().join("w2"));
    let mut cleanup = KillOnDrop::new();
    cleanup.watch_state(&s1);
    cleanup.watch_state(&s2);
    let mut w1 = WorkerProcess::start(&cp.addr, &cp.worker_token, "w1", &s1, &[]);
    local(async {
        let master = cp.operator().await;
        workers_registered(&master, 1).await;
        publish(&master, 1, &[sleeper_spec(name, &closure)]).await;
        running_on(&master, instance, "w1", &closure).await;
    });
    let _w2 = WorkerProcess::start(&cp.addr, &cp.worker_token, "w2", &s2, &[]);
    local(async {
        let master = cp.operator().await;
        workers_registered(&master, 2).await;
    });
    let original = copies(instance, &closure);
    assert_eq!(original.len(), 1, "one copy before the fault");

    let t0 = Instant::now();
    if pause {
        // kill(1) pauses the worker without any unsafe code in the test.
        let ok = std::process::Command::new("kill")
            .args(["-STOP", &w1.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "SIGSTOP");
    } else {
        w1.kill9();
    }
    let moved = local(async {
        let master = cp.operator().await;
        running_on(&master, instance, "w2", &closure).await;
        t0.elapsed()
    });
    eprintln!(
        "fault ({}) → {instance} running on w2 after {:?} (lease {LEASE_MS} ms)",
        if pause { "SIGSTOP" } else { "kill -9" },
        moved
    );
    assert!(
        moved < Duration::from_millis(LEASE_MS + 5_000),
        "rescheduling took {moved:?}, more than the lease + 5 s"
    );
    // The old copy is still there: a worker out of reach cannot stop what it runs.
    assert!(copies(instance, &closure).contains(&original[0]));

    // The worker comes back: it learns job-0 is no longer its own and stops its copy.
    let t1 = Instant::now();
    let _w1_again;
    if pause {
        let ok = std::process::Command::new("kill")
            .args(["-CONT", &w1.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "SIGCONT");
    } else {
        _w1_again = WorkerProcess::start(&cp.addr, &cp.worker_token, "w1", &s1, &[]);
    }
    wait_for(Duration::from_secs(30), "the duplicate to stop", || {
        let now = copies(instance, &closure);
        (now.len() == 1 && !now.contains(&original[0])).then_some(())
    });
    eprintln!("worker back → duplicate stopped after {:?}", t1.elapsed());
    local(async {
        let master = cp.operator().await;
        let s = master.cluster_status().await.unwrap();
        let w1s = s.workers.iter().find(|w| w.info.id == "w1").unwrap();
        assert_eq!(w1s.state, WorkerState::Ready);
        let job = s
            .instances
            .iter()
            .find(|i| i.instance_id == instance)
            .unwrap();
        assert_eq!(job.worker_id, "w2");
        let events = master.events(0, 1000).await.unwrap();
        assert!(events
            .iter()
            .any(|e| e.kind == EventKind::WorkerLost && e.worker_id == "w1"));
        assert!(events
            .iter()
            .any(|e| e.kind == EventKind::WorkerReturned && e.worker_id == "w1"));
    });
}

#[test]
fn a_killed_worker_loses_its_workload_within_the_lease_and_stops_the_copy_when_back() {
    lost_worker(false);
}

#[test]
fn a_paused_worker_gets_the_same_guarantees() {
    lost_worker(true);
}

#[test]
fn a_generation_failing_its_health_check_is_rolled_back_with_real_processes() {
    let v1 = build_web_closure("v1");
    let v2 = build_web_closure("v2");
    let v3 = build_web_closure("v3");
    let port = free_port();
    let web = |closure: &str, path: &str| {
        let mut spec = VmSpec::process("web", closure);
        spec.exec = "bin/web".into();
        spec.memory_mb = 64;
        spec.env.insert("PORT".into(), port.to_string());
        spec.health_checks.push(HealthCheck {
            kind: CheckKind::Http {
                port,
                path: path.into(),
                expect_status: 200,
            },
            interval_ms: 200,
            timeout_ms: 1_000,
            retries: 2,
            grace_period_ms: 0,
        });
        spec.rollout.min_healthy_time_ms = 500;
        spec.rollout.healthy_deadline_ms = 4_000;
        spec.restart.initial_backoff_ms = 100;
        spec.restart.max_backoff_ms = 1_000;
        spec
    };
    let cp = ControlPlane::start_with(Options {
        lease_ms: 10_000,
        heartbeat_ms: 250,
    });
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("w1");
    let mut cleanup = KillOnDrop::new();
    cleanup.watch_state(&state);
    let _w1 = WorkerProcess::start(&cp.addr, &cp.worker_token, "w1", &state, &[]);
    local(async {
        let master = cp.operator().await;
        workers_registered(&master, 1).await;
        publish(&master, 1, &[web(&v1, "/")]).await;
        eventually(
            Duration::from_secs(60),
            "generation 1 rolled out",
            || async {
                (master.cluster_status().await.ok()?.last_good_generation == 1).then_some(())
            },
        )
        .await;
        assert_eq!(http_get(port).as_deref(), Some("hello from v1\n"));

        // Generation 2's service answers 404 on its health path: never healthy.
        let t0 = Instant::now();
        publish(&master, 2, &[web(&v2, "/healthz")]).await;
        let s = eventually(
            Duration::from_secs(60),
            "the rollback to generation 1",
            || async {
                let s = master.cluster_status().await.ok()?;
                let i = s.instances.first()?;
                let back = s.active_generation == 1
                    && i.observed_closure == v1
                    && i.phase == Phase::Running
                    && i.health == Health::Healthy;
                back.then_some(s)
            },
        )
        .await;
        eprintln!(
            "failing rollout → generation 1 healthy again after {:?} (healthyDeadline 4 s)",
            t0.elapsed()
        );
        assert_eq!(s.last_good_generation, 1);
        assert_eq!(http_get(port).as_deref(), Some("hello from v1\n"));
        let gens = master.generations(10).await.unwrap();
        let g2 = gens.iter().find(|g| g.generation == 2).unwrap();
        assert_eq!(g2.status, "failed");
        eprintln!("generation 2 failed: {}", g2.reason);
        assert!(
            g2.reason.contains("web-0"),
            "status says why: {}",
            g2.reason
        );

        // A later good generation deploys normally.
        publish(&master, 3, &[web(&v3, "/")]).await;
        eventually(
            Duration::from_secs(60),
            "generation 3 rolled out",
            || async {
                (master.cluster_status().await.ok()?.last_good_generation == 3).then_some(())
            },
        )
        .await;
        assert_eq!(http_get(port).as_deref(), Some("hello from v3\n"));
    });
}

#[test]
fn an_operator_restart_restarts_the_instance_where_it_runs() {
    let closure = build_sleeper();
    let cp = ControlPlane::start_with(Options {
        lease_ms: 10_000,
        heartbeat_ms: 250,
    });
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("w1");
    let mut cleanup = KillOnDrop::new();
    cleanup.watch_state(&state);
    let _w1 = WorkerProcess::start(&cp.addr, &cp.worker_token, "w1", &state, &[]);
    local(async {
        let master = cp.operator().await;
        workers_registered(&master, 1).await;
        publish(&master, 1, &[sleeper_spec("restarted", &closure)]).await;
        running_on(&master, "restarted-0", "w1", &closure).await;
        let before = copies("restarted-0", &closure);
        assert_eq!(before.len(), 1);

        let said = master.restart_instance("restarted-0").await.unwrap();
        assert_eq!(said, "restarted-0 restarts on w1, as an operator asked");
        let after = wait_for(Duration::from_secs(30), "a new process", || {
            let now = copies("restarted-0", &closure);
            (now.len() == 1 && now != before).then_some(now)
        });
        let environ = std::fs::read(format!("/proc/{}/environ", after[0])).unwrap();
        assert!(
            environ
                .split(|b| *b == 0)
                .any(|kv| kv == b"PROCURATOR_RESTART=1"),
            "the restart count reaches the workload"
        );
        running_on(&master, "restarted-0", "w1", &closure).await;
        let e = master
            .restart_instance("nope-0")
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(e, "there is no instance nope-0");
    });
}

/// `stopAfterDisconnectMs`: a worker cut off from the control plane — which hangs (SIGSTOP)
/// or dies (kill -9) — stops the instances that must not run twice once the control plane
/// has not answered for that long, keeps the others, and starts them again once it is back.
#[test]
fn a_worker_cut_off_stops_what_must_not_run_twice_and_keeps_the_rest() {
    const STOP_AFTER_MS: u32 = 1_000;
    let closure = build_sleeper();
    let mut cp = ControlPlane::start_with(Options {
        lease_ms: LEASE_MS,
        heartbeat_ms: 250,
    });
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("w1");
    let mut cleanup = KillOnDrop::new();
    cleanup.watch_state(&state);
    let _w1 = WorkerProcess::start(&cp.addr, &cp.worker_token, "w1", &state, &[]);
    let mut fenced = sleeper_spec("fenced", &closure);
    fenced.stop_after_disconnect_ms = STOP_AFTER_MS;
    let kept = sleeper_spec("kept", &closure);
    let both_running = |cp: &ControlPlane| {
        local(async {
            let master = cp.operator().await;
            running_on(&master, "fenced-0", "w1", &closure).await;
            running_on(&master, "kept-0", "w1", &closure).await;
        })
    };
    local(async {
        let master = cp.operator().await;
        workers_registered(&master, 1).await;
        publish(&master, 1, &[fenced.clone(), kept.clone()]).await;
    });
    both_running(&cp);
    let signal = |sig: &str, pid: u32| {
        let ok = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    };

    for fault in ["SIGSTOP", "kill -9"] {
        let kept_pid = copies("kept-0", &closure);
        assert_eq!(kept_pid.len(), 1, "one copy of kept-0 before {fault}");
        assert_eq!(copies("fenced-0", &closure).len(), 1);
        let t0 = Instant::now();
        let pid = cp.pid().unwrap();
        if fault == "SIGSTOP" {
            signal("-STOP", pid);
        } else {
            cp.kill9();
        }
        wait_for(Duration::from_secs(20), "fenced-0 to stop", || {
            copies("fenced-0", &closure).is_empty().then_some(())
        });
        let stopped = t0.elapsed();
        eprintln!("{fault} of the control plane → fenced-0 stopped after {stopped:?}");
        // The last answer came at most one heartbeat (+ a slow push) before the fault.
        assert!(
            stopped < Duration::from_millis(u64::from(STOP_AFTER_MS) + 3_000),
            "fenced-0 stopped only after {stopped:?}"
        );
        assert_eq!(
            copies("kept-0", &closure),
            kept_pid,
            "kept-0 runs on untouched while the control plane is away"
        );
        if fault == "SIGSTOP" {
            signal("-CONT", pid);
        } else {
            cp.restart();
        }
        // Back: the assignment still says fenced-0 runs on w1, so it starts again. (The
        // status may still show the report from before the fault: look at the processes.)
        let t1 = Instant::now();
        wait_for(Duration::from_secs(30), "fenced-0 to start again", || {
            (copies("fenced-0", &closure).len() == 1).then_some(())
        });
        eprintln!(
            "control plane back → fenced-0 running again after {:?}",
            t1.elapsed()
        );
        both_running(&cp);
        assert_eq!(copies("kept-0", &closure), kept_pid);
    }
}

/// The guarantee for workloads that set `stopAfterDisconnectMs` no longer than the lease: a
/// worker cut off by the network — alive, its workload running — stops its copy before the
/// control plane gives the workload to another worker, so there are never two copies.
#[test]
fn a_partitioned_worker_stops_its_copy_before_it_is_started_elsewhere() {
    let closure = build_sleeper();
    let cp = ControlPlane::start_with(Options {
        lease_ms: LEASE_MS,
        heartbeat_ms: 250,
    });
    let relay = Relay::start(&cp.addr);
    let dir = tempfile::tempdir().unwrap();
    let (s1, s2) = (dir.path().join("w1"), dir.path().join("w2"));
    let mut cleanup = KillOnDrop::new();
    cleanup.watch_state(&s1);
    cleanup.watch_state(&s2);
    // w1 reaches the control plane through the relay, w2 directly.
    let _w1 = WorkerProcess::start(&relay.addr, &cp.worker_token, "w1", &s1, &[]);
    let mut single = sleeper_spec("single", &closure);
    single.stop_after_disconnect_ms = (LEASE_MS * 3 / 4) as u32;
    local(async {
        let master = cp.operator().await;
        workers_registered(&master, 1).await;
        publish(&master, 1, &[single.clone()]).await;
        running_on(&master, "single-0", "w1", &closure).await;
    });
    let _w2 = WorkerProcess::start(&cp.addr, &cp.worker_token, "w2", &s2, &[]);
    local(async {
        let master = cp.operator().await;
        workers_registered(&master, 2).await;
    });
    let original = copies("single-0", &closure);
    assert_eq!(original.len(), 1);

    let t0 = Instant::now();
    relay.cut(true);
    // Watch every copy until the workload runs on w2: never two at once.
    let mut gone_at = None;
    let moved = wait_for(Duration::from_secs(30), "single-0 to run on w2", || {
        let now = copies("single-0", &closure);
        assert!(now.len() <= 1, "two copies of single-0 at once: {now:?}");
        if gone_at.is_none() && !now.contains(&original[0]) {
            gone_at = Some(t0.elapsed());
        }
        (now.len() == 1 && now[0] != original[0]).then(|| t0.elapsed())
    });
    let gone_at = gone_at.unwrap();
    eprintln!(
        "partition → w1 stopped its copy after {gone_at:?}, w2 started one after {moved:?} \
         (stopAfterDisconnectMs {}, lease {LEASE_MS} ms)",
        single.stop_after_disconnect_ms
    );
    assert!(gone_at < moved);
    local(async {
        let master = cp.operator().await;
        running_on(&master, "single-0", "w2", &closure).await;
    });

    // The link heals: w1 is back, and single-0 stays where it is now.
    relay.cut(false);
    local(async {
        let master = cp.operator().await;
        eventually(Duration::from_secs(30), "w1 back", || async {
            let s = master.cluster_status().await.ok()?;
            let w1 = s.workers.iter().find(|w| w.info.id == "w1")?;
            (w1.state == WorkerState::Ready).then_some(())
        })
        .await;
        running_on(&master, "single-0", "w2", &closure).await;
    });
    assert_eq!(copies("single-0", &closure).len(), 1);
}
