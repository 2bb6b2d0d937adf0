//! Benchmark program (not a test): detection-to-recovery times over repeated runs, against the
//! configured lease and deadlines. Real control plane, real workers, real workloads.
//!
//! `cargo bench -p worker --bench recovery [-- RUNS]` (default 5 runs of each scenario).
//!
//! 1. A worker is killed (SIGKILL): time until the control plane declares it lost, and until
//!    its workload runs on the other worker.
//! 2. A generation's service fails its health check: time until the generation is declared
//!    failed, and until the previous generation serves again.
//! 3. A worker is cut off by the network (a relay stops passing bytes) while its workload, with
//!    `stopAfterDisconnectMs` at 3/4 of the lease, runs: time until the worker stops its copy,
//!    and until the copy on the other worker runs. The first must come before the second.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use schema::client::MasterClient;
use schema::model::*;
use test_support::{eventually, ControlPlane, Options};

const LEASE_MS: u64 = 2_000;
const HEALTHY_DEADLINE_MS: u64 = 4_000;

fn local<F: std::future::Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    tokio::task::LocalSet::new().block_on(&rt, f)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn publish(master: &MasterClient, generation: u64, specs: &[VmSpec]) {
    let settings = ClusterSettings::default();
    master
        .publish_state(
            &format!("c{generation}"),
            generation,
            &content_hash(&settings, specs),
            specs,
            &settings,
        )
        .await
        .expect("publishState");
}

async fn until<T, Fut: std::future::Future<Output = Option<T>>>(
    what: &str,
    f: impl FnMut() -> Fut,
) -> T {
    eventually(Duration::from_secs(90), what, f).await
}

/// (detected, recovered) after killing the worker that runs the workload.
fn killed_worker(closure: &str) -> (Duration, Duration) {
    let cp = ControlPlane::start_with(Options {
        lease_ms: LEASE_MS,
        heartbeat_ms: 250,
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let (s1, s2) = (dir.path().join("w1"), dir.path().join("w2"));
    let mut cleanup = KillOnDrop::new();
    cleanup.watch_state(&s1);
    cleanup.watch_state(&s2);
    let mut w1 = WorkerProcess::start(&cp.addr, &cp.worker_token, "w1", &s1, &[]);
    let mut spec = VmSpec::process("job", closure);
    spec.exec = "bin/sleeper".into();
    spec.memory_mb = 64;
    local(async {
        let master = cp.operator().await;
        workers_registered(&master, 1).await;
        publish(&master, 1, std::slice::from_ref(&spec)).await;
        until("job on w1", || async {
            let s = master.cluster_status().await.ok()?;
            (s.instances.first()?.phase == Phase::Running).then_some(())
        })
        .await;
    });
    let _w2 = WorkerProcess::start(&cp.addr, &cp.worker_token, "w2", &s2, &[]);
    local(async {
        let master = cp.operator().await;
        workers_registered(&master, 2).await;
        let (t0, at) = (Instant::now(), unix_ms());
        w1.kill9();
        until("job on w2", || async {
            let s = master.cluster_status().await.ok()?;
            let i = s.instances.first()?;
            (i.worker_id == "w2" && i.phase == Phase::Running).then_some(())
        })
        .await;
        let recovered = t0.elapsed();
        let lost = master
            .events(0, 1000)
            .await
            .expect("events")
            .into_iter()
            .find(|e| e.kind == EventKind::WorkerLost)
            .map(|e| Duration::from_millis(e.timestamp_ms.saturating_sub(at)))
            .unwrap_or_default();
        (lost, recovered)
    })
}

/// (detected, recovered) after publishing a generation whose health check fails.
fn failing_rollout(good: &str, bad: &str, port: u16) -> (Duration, Duration) {
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
        spec.rollout.healthy_deadline_ms = HEALTHY_DEADLINE_MS;
        spec.restart.initial_backoff_ms = 100;
        spec
    };
    let cp = ControlPlane::start_with(Options {
        lease_ms: 10_000,
        heartbeat_ms: 250,
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("w1");
    let mut cleanup = KillOnDrop::new();
    cleanup.watch_state(&state);
    let _w1 = WorkerProcess::start(&cp.addr, &cp.worker_token, "w1", &state, &[]);
    local(async {
        let master = cp.operator().await;
        workers_registered(&master, 1).await;
        publish(&master, 1, &[web(good, "/")]).await;
        until("generation 1", || async {
            (master.cluster_status().await.ok()?.last_good_generation == 1).then_some(())
        })
        .await;
        let (t0, at) = (Instant::now(), unix_ms());
        publish(&master, 2, &[web(bad, "/healthz")]).await;
        until("generation 1 serving again", || async {
            let s = master.cluster_status().await.ok()?;
            let i = s.instances.first()?;
            (s.active_generation == 1 && i.observed_closure == good && i.health == Health::Healthy)
                .then_some(())
        })
        .await;
        let recovered = t0.elapsed();
        let failed = master
            .events(0, 1000)
            .await
            .expect("events")
            .into_iter()
            .find(|e| e.kind == EventKind::Rollback)
            .map(|e| Duration::from_millis(e.timestamp_ms.saturating_sub(at)))
            .unwrap_or_default();
        (failed, recovered)
    })
}

/// (copy stopped by the cut-off worker, copy running on the other worker) after the cut.
fn partitioned_worker(closure: &str) -> (Duration, Duration) {
    let cp = ControlPlane::start_with(Options {
        lease_ms: LEASE_MS,
        heartbeat_ms: 250,
    });
    let relay = Relay::start(&cp.addr);
    let dir = tempfile::tempdir().expect("tempdir");
    let (s1, s2) = (dir.path().join("w1"), dir.path().join("w2"));
    let mut cleanup = KillOnDrop::new();
    cleanup.watch_state(&s1);
    cleanup.watch_state(&s2);
    let _w1 = WorkerProcess::start(&relay.addr, &cp.worker_token, "w1", &s1, &[]);
    let mut spec = VmSpec::process("single", closure);
    spec.exec = "bin/sleeper".into();
    spec.memory_mb = 64;
    spec.stop_after_disconnect_ms = (LEASE_MS * 3 / 4) as u32;
    local(async {
        let master = cp.operator().await;
        workers_registered(&master, 1).await;
        publish(&master, 1, std::slice::from_ref(&spec)).await;
    });
    let original = wait_for(Duration::from_secs(60), "single-0 on w1", || {
        copies("single-0", closure).first().copied()
    });
    let _w2 = WorkerProcess::start(&cp.addr, &cp.worker_token, "w2", &s2, &[]);
    local(async {
        let master = cp.operator().await;
        workers_registered(&master, 2).await;
    });
    let t0 = Instant::now();
    relay.cut(true);
    let mut stopped = None;
    let started = wait_for(Duration::from_secs(60), "single-0 on w2", || {
        let now = copies("single-0", closure);
        assert!(now.len() <= 1, "two copies of single-0 at once: {now:?}");
        if stopped.is_none() && !now.contains(&original) {
            stopped = Some(t0.elapsed());
        }
        (now.len() == 1 && now[0] != original).then(|| t0.elapsed())
    });
    (stopped.expect("stopped before the new copy"), started)
}

fn report(name: &str, samples: &mut [(Duration, Duration)]) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mut det: Vec<f64> = samples.iter().map(|s| ms(s.0)).collect();
    let mut rec: Vec<f64> = samples.iter().map(|s| ms(s.1)).collect();
    det.sort_by(|a, b| a.total_cmp(b));
    rec.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{name}: detected median {:.0} ms, max {:.0} ms; recovered median {:.0} ms, max {:.0} ms ({} runs)",
        det[det.len() / 2],
        det[det.len() - 1],
        rec[rec.len() / 2],
        rec[rec.len() - 1],
        samples.len()
    );
}

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5);
    println!("detection → recovery, {runs} runs each (lease {LEASE_MS} ms, healthyDeadline {HEALTHY_DEADLINE_MS} ms)\n");
    let sleeper = build_sleeper();
    let mut killed: Vec<_> = (0..runs).map(|_| killed_worker(&sleeper)).collect();
    report(
        "worker killed (SIGKILL) → workload running elsewhere",
        &mut killed,
    );
    let (good, bad) = (build_web_closure("good"), build_web_closure("bad"));
    let mut failing: Vec<_> = (0..runs)
        .map(|_| failing_rollout(&good, &bad, free_port()))
        .collect();
    report(
        "generation failing its health check → previous generation healthy",
        &mut failing,
    );
    let mut cut: Vec<_> = (0..runs).map(|_| partitioned_worker(&sleeper)).collect();
    report(
        &format!(
            "worker cut off by the network, stopAfterDisconnectMs {} → its copy stopped (\"detected\"), the copy elsewhere running (\"recovered\"); never two at once",
            LEASE_MS * 3 / 4
        ),
        &mut cut,
    );
}
