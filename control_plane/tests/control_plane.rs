//! The control plane as a real process on a free port with a real SQLite file, driven by real
//! Cap'n Proto clients: simulated workers (worker token) and an operator (operator token).

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use schema::client::{AssignmentUpdate, ClientError, GatewayClient};
use schema::model::*;
use schema::net::{connect_master, connect_worker, Connection, NetError};
use schema::ErrorCode;
use test_support::sim::publish;
use test_support::{eventually, local, ControlPlane, Options};
use tokio::sync::mpsc;

const CLOSURE: &str = "/nix/store/0c9hj2bl0ajiyqslkmbhizbgshrdw9jl-web";
const CLOSURE2: &str = "/nix/store/1c9hj2bl0ajiyqslkmbhizbgshrdw9jl-web";

/// A worker as the control plane sees it: registers, reports, and records assignment pushes.
struct SimWorker {
    id: String,
    gw: GatewayClient,
    pushes: mpsc::UnboundedReceiver<u64>,
    _conn: Connection,
}

fn info(id: &str, cpu: u32, mem: u64, labels: &[(&str, &str)]) -> WorkerInfo {
    WorkerInfo {
        id: id.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        cpu,
        memory_mb: mem,
        backends: vec![Backend::Process, Backend::Qemu],
        hostname: "test".into(),
        version: "test".into(),
    }
}

async fn sim_worker(cp: &ControlPlane, info: WorkerInfo) -> SimWorker {
    let (gw, conn) = connect_worker(&cp.addr, &cp.worker_token)
        .await
        .expect("worker login");
    let gw = GatewayClient::new(gw);
    let (callback, pushes) = test_support::sim::callback();
    gw.register(&info, callback).await.expect("register");
    SimWorker {
        id: info.id,
        gw,
        pushes,
        _conn: conn,
    }
}

impl SimWorker {
    async fn instances(&self) -> Vec<String> {
        match self
            .gw
            .get_assignment(&self.id, 0)
            .await
            .expect("assignment")
        {
            AssignmentUpdate::Changed(a) => {
                let mut ids: Vec<String> = a.instances.into_iter().map(|(id, _)| id).collect();
                ids.sort();
                ids
            }
            AssignmentUpdate::Unchanged(_) => Vec::new(),
        }
    }

    /// Reports every assigned instance as running its closure, healthy.
    async fn report_running(&self) {
        let reports = match self
            .gw
            .get_assignment(&self.id, 0)
            .await
            .expect("assignment")
        {
            AssignmentUpdate::Changed(a) => a
                .instances
                .into_iter()
                .map(|(id, spec)| test_support::sim::running(&id, &spec, 0))
                .collect(),
            AssignmentUpdate::Unchanged(_) => Vec::new(),
        };
        self.gw
            .push_data(&self.id, 1, &reports, &WorkerMetrics::default())
            .await
            .expect("push");
    }
}

fn spec(name: &str, replicas: u32, cpu: u32) -> VmSpec {
    VmSpec {
        replicas,
        cpu,
        memory_mb: 128,
        ..VmSpec::process(name, CLOSURE)
    }
}

fn remote(e: ClientError) -> schema::RemoteError {
    match e {
        ClientError::Remote(r) => r,
        other => panic!("expected an error answer, got {other}"),
    }
}

/// Generation u64::MAX was once accepted, stored as −1, and blocked every later publish until
/// a restart, after which generations no longer increased.
#[test]
fn a_generation_no_store_keeps_exactly_is_refused_and_publishing_goes_on() {
    let mut cp = ControlPlane::start();
    local(async {
        let op = cp.operator().await;
        publish(&op, 1, &[spec("web", 1, 1)])
            .await
            .expect("publish 1");
        for huge in [u64::MAX, 1 << 53, i64::MAX as u64 + 1] {
            let e = remote(
                publish(&op, huge, &[spec("web", 1, 1)])
                    .await
                    .expect_err("huge"),
            );
            assert_eq!(e.code, schema::ErrorCode::Invalid, "{e:?}");
            assert!(
                e.message.contains("is above 9007199254740991") && e.message.contains("latest (1)"),
                "{e:?}"
            );
        }
        let largest = (1u64 << 53) - 1;
        publish(&op, largest, &[spec("web", 1, 1)])
            .await
            .expect("the largest generation");
    });
    cp.restart();
    local(async {
        let op = cp.operator().await;
        let status = op.cluster_status().await.expect("status");
        assert_eq!(status.active_generation, (1u64 << 53) - 1, "stored exactly");
        let e = remote(
            publish(&op, 2, &[spec("web", 1, 1)])
                .await
                .expect_err("stale"),
        );
        assert_eq!(e.code, schema::ErrorCode::Stale, "{e:?}");
    });
}

#[test]
fn publish_places_by_capacity_labels_and_spread_and_pushes_to_workers() {
    let cp = ControlPlane::start();
    local(async {
        let op = cp.operator().await;
        let mut w1 = sim_worker(&cp, info("w1", 4, 4096, &[])).await;
        let mut w2 = sim_worker(&cp, info("w2", 4, 4096, &[])).await;
        let mut gpu = sim_worker(&cp, info("gpu", 8, 8192, &[("gpu", "true")])).await;

        let mut ml = spec("ml", 1, 6);
        ml.constraints.insert("gpu".into(), "true".into());
        let mut train = spec("train", 1, 16);
        train.constraints.insert("gpu".into(), "true".into());
        let published = publish(&op, 1, &[spec("web", 3, 1), ml, train])
            .await
            .expect("publish");
        assert_eq!((published.placed, published.unplaced), (4, 1));

        // Every worker holding instances was told, without polling.
        for w in [&mut w1, &mut w2, &mut gpu] {
            let rev = tokio::time::timeout(Duration::from_secs(10), w.pushes.recv())
                .await
                .expect("push arrives")
                .expect("channel open");
            assert!(rev >= 1);
        }
        assert_eq!(
            w1.instances()
                .await
                .iter()
                .filter(|i| i.starts_with("web-"))
                .count(),
            1
        );
        assert_eq!(
            w2.instances()
                .await
                .iter()
                .filter(|i| i.starts_with("web-"))
                .count(),
            1
        );
        let on_gpu = gpu.instances().await;
        assert!(on_gpu.contains(&"ml-0".to_string()), "{on_gpu:?}");
        assert_eq!(
            on_gpu.iter().filter(|i| i.starts_with("web-")).count(),
            1,
            "{on_gpu:?}"
        );

        let status = op.cluster_status().await.expect("status");
        assert_eq!(status.active_generation, 1);
        let train = status
            .instances
            .iter()
            .find(|i| i.instance_id == "train-0")
            .expect("train");
        assert_eq!(train.worker_id, "");
        assert_eq!(
            train.unplaced_reason,
            "no worker with label gpu=true has 16 CPUs free (most free: 1)"
        );
        let w1s = status
            .workers
            .iter()
            .find(|w| w.info.id == "w1")
            .expect("w1");
        assert_eq!((w1s.free_cpu, w1s.info.cpu), (3, 4));
        assert_eq!(status.convergence_percent, 0.0);

        // Workers report running: convergence counts only placed instances as converged.
        for w in [&w1, &w2, &gpu] {
            w.report_running().await;
        }
        let status = op.cluster_status().await.expect("status");
        assert_eq!(status.convergence_percent, 80.0);
        let web0 = status
            .instances
            .iter()
            .find(|i| i.instance_id == "web-0")
            .expect("web-0");
        assert_eq!(web0.observed_closure, CLOSURE);
        assert_eq!(web0.phase, Phase::Running);
        assert!(!web0.drifted);

        // A new closure for web: the same workers keep their instances (no moves) and the
        // instances show as drifted until the workers report the new closure.
        let mut web = spec("web", 3, 1);
        web.closure = CLOSURE2.into();
        let before: BTreeMap<String, String> = status
            .instances
            .iter()
            .map(|i| (i.instance_id.clone(), i.worker_id.clone()))
            .collect();
        publish(&op, 2, &[web]).await.expect("publish 2");
        let status = op.cluster_status().await.expect("status");
        for i in &status.instances {
            assert_eq!(
                before.get(&i.instance_id),
                Some(&i.worker_id),
                "{} moved",
                i.instance_id
            );
            assert!(i.drifted, "{} should be drifted", i.instance_id);
        }
    });
}

#[test]
fn generations_only_move_forward_and_bad_specs_store_nothing() {
    let cp = ControlPlane::start();
    local(async {
        let op = cp.operator().await;
        let _w = sim_worker(&cp, info("w1", 8, 8192, &[])).await;
        let specs = [spec("web", 1, 1)];
        assert!(publish(&op, 5, &specs).await.expect("publish 5").changed);

        let e = remote(publish(&op, 3, &specs).await.unwrap_err());
        assert_eq!(e.code, ErrorCode::Stale);
        assert_eq!(
            e.message,
            "publishState rejected: generation 3 is not newer than active generation 5"
        );

        // Same generation, same intent: an idempotent success.
        let again = publish(&op, 5, &specs).await.expect("retry");
        assert!(!again.changed);
        assert_eq!(again.generation, 5);

        // Same generation and intent hash, other content: a conflict, not a silent overwrite.
        let settings = ClusterSettings {
            name: "test".into(),
            strategy: PlacementStrategy::Spread,
        };
        let hash = content_hash(&settings, &specs);
        let e = remote(
            op.publish_state("commit5", 5, &hash, &[spec("web", 2, 1)], &settings)
                .await
                .unwrap_err(),
        );
        assert_eq!(e.code, ErrorCode::Conflict);
        assert!(
            e.message.contains("publish them as generation 6"),
            "{}",
            e.message
        );

        let bad: Vec<(Vec<VmSpec>, &str)> = vec![
            (vec![spec("web", 1, 0)], "web: cpu must be at least 1"),
            (
                vec![spec("web", 1, 1), spec("web", 1, 1)],
                "VM name `web` appears twice",
            ),
            (
                vec![VmSpec {
                    closure: "/nix/store/nope".into(),
                    ..spec("web", 1, 1)
                }],
                "does not start with a 32-character nix-base32 hash",
            ),
            (
                vec![VmSpec {
                    memory_mb: 1 << 40,
                    ..spec("web", 1, 1)
                }],
                "more than the limit",
            ),
            (
                vec![VmSpec {
                    exec: "../../../bin/sh".into(),
                    ..spec("web", 1, 1)
                }],
                "must not contain `..`",
            ),
            (
                vec![VmSpec {
                    stop_after_disconnect_ms: 100,
                    ..spec("web", 1, 1)
                }],
                "stopAfterDisconnectMs 100 is shorter than two heartbeats",
            ),
        ];
        for (specs, want) in bad {
            let e = remote(publish(&op, 6, &specs).await.unwrap_err());
            assert_eq!(e.code, ErrorCode::Invalid);
            assert!(e.message.contains(want), "{:?} lacks {want:?}", e.message);
            assert!(e.message.contains("nothing was stored"), "{}", e.message);
        }
        let status = op.cluster_status().await.expect("status");
        assert_eq!(status.active_generation, 5);
        assert_eq!(op.generations(10).await.expect("generations").len(), 1);
        // Generation 6 is still free after all those refusals.
        assert!(
            publish(&op, 6, &[spec("web", 2, 1)])
                .await
                .expect("publish 6")
                .changed
        );
    });
}

/// What a status says runs must be what a worker reported since it (or the control plane) last
/// started: after a restart the stored reports are shown as last seen, counted as unknown, and
/// the cluster is not "converged" until the worker reports again — `pcr up --until-converged`
/// on a resumed cluster once exited "converged" while nothing ran.
#[test]
fn after_a_restart_nothing_counts_as_running_until_its_worker_reports_again() {
    let mut cp = ControlPlane::start();
    local(async {
        let op = cp.operator().await;
        let w1 = sim_worker(&cp, info("w1", 4, 4096, &[])).await;
        publish(&op, 1, &[spec("web", 2, 1)])
            .await
            .expect("publish");
        w1.report_running().await;
        let status = op.cluster_status().await.expect("status");
        assert_eq!(status.convergence_percent, 100.0, "{status:#?}");
    });
    cp.kill9();
    cp.restart();
    local(async {
        let op = cp.operator().await;
        let unknown = |s: &ClusterStatus| {
            assert_eq!(s.convergence_percent, 0.0, "{s:#?}");
            for i in &s.instances {
                assert_eq!(i.phase, Phase::Unknown, "{i:#?}");
                assert_eq!(i.health, Health::Unknown, "{i:#?}");
                assert!(!i.observed_closure.is_empty(), "last seen is kept: {i:#?}");
                assert!(
                    i.message
                        == "running when last reported; waiting for worker w1 to report again",
                    "{i:#?}"
                );
            }
        };
        unknown(&op.cluster_status().await.expect("status after restart"));
        // Registering again is a new session: still nothing known until it reports.
        let w1 = sim_worker(&cp, info("w1", 4, 4096, &[])).await;
        unknown(&op.cluster_status().await.expect("status after register"));
        w1.report_running().await;
        let status = op.cluster_status().await.expect("status after the report");
        assert_eq!(status.convergence_percent, 100.0, "{status:#?}");
        assert!(status.instances.iter().all(|i| i.phase == Phase::Running));
    });
}

#[test]
fn kill9_and_restart_keep_everything_and_reconnecting_workers_are_not_duplicated() {
    let mut cp = ControlPlane::start();
    let before = local(async {
        let op = cp.operator().await;
        let w1 = sim_worker(&cp, info("w1", 4, 4096, &[])).await;
        let _w2 = sim_worker(&cp, info("w2", 4, 4096, &[])).await;
        publish(&op, 1, &[spec("web", 3, 1), spec("api", 1, 2)])
            .await
            .expect("publish");
        w1.report_running().await;
        op.cluster_status().await.expect("status")
    });
    cp.kill9();
    cp.restart();
    local(async {
        let op = cp.operator().await;
        let after = op.cluster_status().await.expect("status after restart");
        assert_eq!(after.active_generation, 1);
        assert_eq!(after.commit, before.commit);
        assert_eq!(after.revision, before.revision);
        assert_eq!(after.workers.len(), 2);
        let placed = |s: &ClusterStatus| -> Vec<(String, String, String)> {
            s.instances
                .iter()
                .map(|i| {
                    (
                        i.instance_id.clone(),
                        i.worker_id.clone(),
                        i.observed_closure.clone(),
                    )
                })
                .collect()
        };
        assert_eq!(placed(&after), placed(&before));
        // Workers come back with the same ids: updated, not duplicated, nothing moves.
        let w1 = sim_worker(&cp, info("w1", 4, 4096, &[])).await;
        let _w2 = sim_worker(&cp, info("w2", 4, 4096, &[])).await;
        let again = op.cluster_status().await.expect("status");
        assert_eq!(again.workers.len(), 2);
        assert_eq!(placed(&again), placed(&before));
        assert!(!w1.instances().await.is_empty());
        // Events survived too.
        let events = op.events(0, 100).await.expect("events");
        assert!(events
            .iter()
            .any(|e| e.kind == EventKind::GenerationPublished));
        // And the generation counter: a stale publish is still stale.
        let e = remote(publish(&op, 1, &[spec("web", 1, 1)]).await.unwrap_err());
        assert_eq!(e.code, ErrorCode::Stale);
    });
}

#[test]
fn a_silent_worker_is_lost_and_its_instances_move() {
    let cp = ControlPlane::start_with(Options {
        lease_ms: 1_000,
        heartbeat_ms: 200,
    });
    local(async {
        let op = cp.operator().await;
        let a = sim_worker(&cp, info("a", 4, 4096, &[])).await;
        publish(&op, 1, &[spec("web", 1, 1)])
            .await
            .expect("publish");
        let b = sim_worker(&cp, info("b", 4, 4096, &[])).await;
        assert_eq!(a.instances().await, vec!["web-0".to_string()]);

        // b keeps reporting; a falls silent.
        let heartbeat = tokio::task::spawn_local(async move {
            loop {
                b.gw.push_data(&b.id, 1, &[], &WorkerMetrics::default())
                    .await
                    .expect("push");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        let status = eventually(Duration::from_secs(15), "web-0 to move to b", || {
            let op = op.clone();
            async move {
                let s = op.cluster_status().await.ok()?;
                let web = s.instances.iter().find(|i| i.instance_id == "web-0")?;
                (web.worker_id == "b").then_some(s)
            }
        })
        .await;
        let a_status = status.workers.iter().find(|w| w.info.id == "a").expect("a");
        assert_eq!(a_status.state, WorkerState::Lost);
        let events = op.events(0, 100).await.expect("events");
        assert!(events
            .iter()
            .any(|e| e.kind == EventKind::WorkerLost && e.worker_id == "a"));

        // a comes back: it is ready again, and its assignment no longer holds web-0, so it
        // stops its copy; nothing moves back.
        a.gw.push_data(&a.id, 1, &[], &WorkerMetrics::default())
            .await
            .expect("push");
        assert!(a.instances().await.is_empty());
        let s = op.cluster_status().await.expect("status");
        assert_eq!(
            s.workers
                .iter()
                .find(|w| w.info.id == "a")
                .expect("a")
                .state,
            WorkerState::Ready
        );
        assert_eq!(s.instances[0].worker_id, "b");
        heartbeat.abort();
    });
}

#[test]
fn watch_streams_events_as_they_happen() {
    let cp = ControlPlane::start();
    local(async {
        let op = cp.operator().await;
        let last = op
            .events(0, 1000)
            .await
            .expect("events")
            .last()
            .map(|e| e.seq)
            .unwrap_or(0);
        let (_sub, mut rx) = op.watch(last).await.expect("watch");
        let _w = sim_worker(&cp, info("w1", 4, 4096, &[])).await;
        publish(&op, 1, &[spec("web", 1, 1)])
            .await
            .expect("publish");
        let mut seen = Vec::new();
        while !seen
            .iter()
            .any(|e: &Event| e.kind == EventKind::GenerationPublished)
        {
            let batch = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("events arrive")
                .expect("stream open");
            seen.extend(batch);
        }
        assert_eq!(seen[0].kind, EventKind::WorkerRegistered);
        assert!(
            seen.windows(2).all(|w| w[0].seq < w[1].seq),
            "events in order"
        );
    });
}

#[test]
fn tokens_decide_what_a_connection_may_do() {
    let cp = ControlPlane::start();
    local(async {
        match connect_master(&cp.addr, "wrong").await {
            Err(NetError::Login(e)) => {
                assert_eq!(e.code, ErrorCode::Unauthorized);
                assert!(e.message.starts_with("invalid token"), "{}", e.message);
            }
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("a wrong token got in"),
        }
        assert!(matches!(
            connect_master(&cp.addr, &cp.worker_token).await,
            Err(NetError::NotOperator)
        ));
        // A worker session acts for the worker it registered as, and no other.
        let w = sim_worker(&cp, info("w1", 4, 4096, &[])).await;
        let e = remote(w.gw.get_assignment("w2", 0).await.unwrap_err());
        assert_eq!(e.code, ErrorCode::Unauthorized);
        assert!(
            e.message.contains("registered as worker w1"),
            "{}",
            e.message
        );
        // Unknown workers get a sentence, not a crash.
        let op = cp.operator().await;
        let e = remote(
            op.gateway()
                .push_data("ghost", 0, &[], &WorkerMetrics::default())
                .await
                .unwrap_err(),
        );
        assert_eq!(e.code, ErrorCode::NotFound);
        assert!(
            e.message.contains("unknown worker `ghost`"),
            "{}",
            e.message
        );
        let e = remote(op.worker("ghost").await.unwrap_err());
        assert_eq!(e.code, ErrorCode::NotFound);
    });
}

#[test]
fn oversized_requests_are_refused_and_the_server_stays_up() {
    let cp = ControlPlane::start();
    local(async {
        let op = cp.operator().await;
        // More VMs than a blueprint may hold: a sentence, nothing stored.
        let many: Vec<VmSpec> = (0..10_001).map(|i| spec(&format!("vm{i}"), 1, 1)).collect();
        let e = remote(publish(&op, 1, &many).await.unwrap_err());
        assert_eq!(e.code, ErrorCode::Invalid);
        assert!(
            e.message
                .contains("blueprint has 10001 VMs; at most 10000 are accepted"),
            "{}",
            e.message
        );

        // A message past the 64 MiB read limit is refused before it is parsed; the connection
        // that sent it is closed, nothing is stored, and everyone else carries on.
        let mut huge = spec("web", 1, 1);
        huge.args = vec!["x".repeat(70 * 1024 * 1024)];
        let big = op.clone();
        assert!(
            publish(&big, 1, &[huge]).await.is_err(),
            "a 70 MiB request must not get through"
        );
        let op = cp.operator().await;
        let status = op.cluster_status().await.expect("the server still answers");
        assert_eq!(status.active_generation, 0);
        assert!(
            publish(&op, 1, &[spec("web", 1, 1)])
                .await
                .expect("publish")
                .changed
        );
    });
}

#[test]
fn restarting_an_instance_changes_only_its_workers_assignment() {
    let cp = ControlPlane::start();
    local(async {
        let op = cp.operator().await;
        let w = sim_worker(&cp, info("w1", 4, 4096, &[])).await;
        publish(&op, 1, &[spec("web", 1, 1)]).await.unwrap();
        let before = match w.gw.get_assignment("w1", 0).await.unwrap() {
            AssignmentUpdate::Changed(a) => a,
            AssignmentUpdate::Unchanged(_) => panic!("expected an assignment"),
        };
        assert_eq!(
            op.restart_instance("web-0").await.unwrap(),
            "web-0 restarts on w1, as an operator asked"
        );
        let after = match w.gw.get_assignment("w1", before.revision).await.unwrap() {
            AssignmentUpdate::Changed(a) => a,
            AssignmentUpdate::Unchanged(_) => panic!("a restart must change the assignment"),
        };
        assert_eq!(
            after.instances[0]
                .1
                .env
                .get("PROCURATOR_RESTART")
                .map(String::as_str),
            Some("1")
        );
        assert!(after.instances[0].1.runtime_differs(&before.instances[0].1));
    });
}

/// Regression: the placements query did not read the `restarts` column it was given in
/// migration 3, so a control plane that had restarted an instance could not load its state.
#[test]
fn a_requested_restart_survives_a_control_plane_restart() {
    let mut cp = ControlPlane::start();
    local(async {
        let op = cp.operator().await;
        let _w = sim_worker(&cp, info("w1", 4, 4096, &[])).await;
        publish(&op, 1, &[spec("web", 1, 1)]).await.unwrap();
        op.restart_instance("web-0").await.unwrap();
    });
    cp.kill9();
    cp.restart();
    local(async {
        let op = cp.operator().await;
        let a = match op.gateway().get_assignment("w1", 0).await.unwrap() {
            AssignmentUpdate::Changed(a) => a,
            AssignmentUpdate::Unchanged(_) => panic!("expected an assignment"),
        };
        assert_eq!(
            a.instances[0]
                .1
                .env
                .get("PROCURATOR_RESTART")
                .map(String::as_str),
            Some("1")
        );
    });
}

#[test]
fn plan_placement_answers_where_instances_would_go_and_changes_nothing() {
    let cp = ControlPlane::start();
    local(async {
        let op = cp.operator().await;
        let _w1 = sim_worker(&cp, info("w1", 4, 4096, &[])).await;
        publish(&op, 1, &[spec("web", 2, 1)])
            .await
            .expect("publish");
        let before = op.cluster_status().await.expect("status");
        let settings = ClusterSettings {
            name: "test".into(),
            strategy: PlacementStrategy::Spread,
        };
        // web keeps where it runs; db fits once; big fits nowhere.
        let plan = op
            .plan_placement(
                &[spec("web", 2, 1), spec("db", 1, 2), spec("big", 1, 64)],
                &settings,
            )
            .await
            .expect("plan");
        let placed: Vec<(&str, &str)> = plan
            .assigned
            .iter()
            .map(|(i, w)| (i.as_str(), w.as_str()))
            .collect();
        assert_eq!(placed, [("db-0", "w1"), ("web-0", "w1"), ("web-1", "w1")]);
        assert_eq!(plan.unplaced.keys().collect::<Vec<_>>(), ["big-0"]);
        let after = op.cluster_status().await.expect("status");
        assert_eq!(after.revision, before.revision, "a plan changes nothing");
        assert_eq!(after.instances.len(), 2);

        let e = remote(
            op.plan_placement(&[VmSpec::process("bad", "/tmp/x")], &settings)
                .await
                .expect_err("a bad spec is refused"),
        );
        assert_eq!(e.code, schema::ErrorCode::Invalid);
    });
}
