//! The worker as a separate process against a real control plane, with process workloads
//! whose closures are built by real `nix build`: the workload runs and passes its HTTP check,
//! is killed and restarted, replaced by a new generation, stopped on removal; a restarted
//! worker re-adopts it; a control plane restart does not stop it.

mod common;

use std::time::Duration;

use common::*;
use schema::client::MasterClient;
use schema::model::{
    content_hash, CheckKind, ClusterSettings, Health, HealthCheck, InstanceStatus, Phase,
    RestartPolicy, VmSpec,
};
use test_support::{eventually, ControlPlane, Options};

const WAIT: Duration = Duration::from_secs(90);

fn web_spec(closure: &str, port: u16) -> VmSpec {
    let mut spec = VmSpec::process("web", closure);
    spec.exec = "bin/web".into();
    spec.memory_mb = 64;
    spec.env.insert("PORT".into(), port.to_string());
    spec.health_checks.push(HealthCheck {
        kind: CheckKind::Http {
            port,
            path: "/".into(),
            expect_status: 200,
        },
        interval_ms: 200,
        timeout_ms: 1_000,
        retries: 2,
        grace_period_ms: 0,
    });
    spec.restart = RestartPolicy {
        initial_backoff_ms: 100,
        max_backoff_ms: 1_000,
        ..RestartPolicy::default()
    };
    spec
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
        .expect("publishState");
}

async fn instance(master: &MasterClient, id: &str) -> Option<InstanceStatus> {
    let status = master.cluster_status().await.ok()?;
    status.instances.into_iter().find(|i| i.instance_id == id)
}

/// Waits until the instance runs `closure`, healthy, as reported by the worker.
async fn healthy_on(master: &MasterClient, id: &str, closure: &str) -> InstanceStatus {
    eventually(
        WAIT,
        &format!("{id} running and healthy on {closure}"),
        || async {
            instance(master, id).await.filter(|i| {
                i.phase == Phase::Running
                    && i.health == Health::Healthy
                    && i.observed_closure == closure
            })
        },
    )
    .await
}

/// Waits until worker w1 reported (heartbeat) after `since_ms` with web-0 running and healthy.
async fn reported_since(master: &MasterClient, since_ms: u64) {
    eventually(WAIT, "a report from w1 with web-0 healthy", || async {
        let status = master.cluster_status().await.ok()?;
        let w = status.workers.iter().find(|w| w.info.id == "w1")?;
        let web = status.instances.iter().find(|i| i.instance_id == "web-0")?;
        (w.healthy
            && w.last_heartbeat_ms > since_ms
            && web.phase == Phase::Running
            && web.health == Health::Healthy)
            .then_some(())
    })
    .await
}

fn fast_control_plane() -> ControlPlane {
    ControlPlane::start_with(Options {
        lease_ms: 3_000,
        heartbeat_ms: 300,
    })
}

#[tokio::test(flavor = "current_thread")]
async fn process_workload_runs_heals_is_replaced_and_removed() {
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let v1 = tokio::task::spawn_blocking(|| build_web_closure("v1"))
                .await
                .expect("v1");
            let v2 = tokio::task::spawn_blocking(|| build_web_closure("v2"))
                .await
                .expect("v2");
            let cp = fast_control_plane();
            let tmp = tempfile::tempdir().expect("tempdir");
            let state = tmp.path().join("w1");
            let mut guard = KillOnDrop::new();
            guard.watch_state(&state);
            let worker = WorkerProcess::start(&cp.addr, &cp.worker_token, "w1", &state, &[]);
            let master = cp.operator().await;
            let port = free_port();

            publish(&master, 1, &[web_spec(&v1, port)]).await;
            let status = healthy_on(&master, "web-0", &v1).await;
            assert_eq!(status.worker_id, "w1");
            assert_eq!(http_get(port).as_deref(), Some("hello from v1\n"));
            let first = recorded_launch(&state, "web-0").expect("launch recorded");

            // Killed behind the worker's back: it is restarted and healthy again.
            rustix::process::kill_process(
                rustix::process::Pid::from_raw(first.main.pid as i32).expect("pid"),
                rustix::process::Signal::KILL,
            )
            .expect("kill the workload");
            let restarted = eventually(WAIT, "web-0 restarted", || async {
                instance(&master, "web-0")
                    .await
                    .filter(|i| i.restarts >= 1 && i.health == Health::Healthy)
            })
            .await;
            assert_eq!(restarted.phase, Phase::Running);
            let second = recorded_launch(&state, "web-0").expect("new launch");
            assert_ne!(second.main, first.main, "a new process");
            assert!(second.main.is_alive());

            // A new generation with another closure replaces it.
            publish(&master, 2, &[web_spec(&v2, port)]).await;
            healthy_on(&master, "web-0", &v2).await;
            assert_eq!(http_get(port).as_deref(), Some("hello from v2\n"));
            assert!(!second.main.is_alive(), "the v1 process was stopped");

            // Removed from the blueprint: stopped and forgotten.
            let third = recorded_launch(&state, "web-0").expect("v2 launch");
            publish(&master, 3, &[]).await;
            eventually(WAIT, "web-0 stopped and its folder removed", || async {
                (!third.main.is_alive() && !state.join("instances/web-0").exists()).then_some(())
            })
            .await;
            assert!(http_get(port).is_none());
            let log = worker.log_text();
            assert!(
                log.contains("web-0"),
                "worker log names the instance:\n{log}"
            );
        })
        .await;
}

#[tokio::test(flavor = "current_thread")]
async fn workloads_survive_worker_and_control_plane_restarts() {
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let v1 = tokio::task::spawn_blocking(|| build_web_closure("v1"))
                .await
                .expect("v1");
            let mut cp = fast_control_plane();
            let tmp = tempfile::tempdir().expect("tempdir");
            let state = tmp.path().join("w1");
            let mut guard = KillOnDrop::new();
            guard.watch_state(&state);
            let mut worker = WorkerProcess::start(&cp.addr, &cp.worker_token, "w1", &state, &[]);
            let master = cp.operator().await;
            let port = free_port();
            publish(&master, 1, &[web_spec(&v1, port)]).await;
            healthy_on(&master, "web-0", &v1).await;
            let launch = recorded_launch(&state, "web-0").expect("launch");

            // The worker crashes: the workload keeps serving.
            worker.kill9();
            assert!(launch.main.is_alive());
            assert_eq!(http_get(port).as_deref(), Some("hello from v1\n"));

            // A new worker on the same state directory re-adopts it instead of starting another.
            let since = worker::driver::now_ms();
            let worker2 = WorkerProcess::start(&cp.addr, &cp.worker_token, "w1", &state, &[]);
            reported_since(&master, since).await;
            assert!(
                worker2.log_text().contains("re-adopting"),
                "{}",
                worker2.log_text()
            );
            healthy_on(&master, "web-0", &v1).await;
            assert_eq!(
                recorded_launch(&state, "web-0").expect("launch").main,
                launch.main,
                "same process, re-adopted"
            );
            let status = instance(&master, "web-0").await.expect("status");
            assert_eq!(status.restarts, 0, "nothing was restarted");

            // The control plane crashes and comes back: the workload never stops.
            cp.kill9();
            for _ in 0..10 {
                assert_eq!(http_get(port).as_deref(), Some("hello from v1\n"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            cp.restart();
            let master = cp.operator().await;
            reported_since(&master, worker::driver::now_ms()).await;
            healthy_on(&master, "web-0", &v1).await;
            assert_eq!(
                recorded_launch(&state, "web-0").expect("launch").main,
                launch.main
            );
            assert!(launch.main.is_alive());
            drop(worker2);
        })
        .await;
}
