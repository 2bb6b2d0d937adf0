//! Health-gated rollouts, automatic and manual rollback, canaries and drain, driven through a
//! real control plane process by simulated workers over real RPC. The simulated workers run
//! whatever they are assigned and report it the way `pcr-worker` does; a test decides which
//! closures crash or stay unhealthy, and how long a start takes.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use schema::client::{AssignmentUpdate, GatewayClient, MasterClient};
use schema::model::*;
use test_support::sim::publish;
use test_support::{eventually, local, ControlPlane, Options};

fn closure(tag: &str) -> String {
    let alphabet = b"0123456789abcdfghijklmnpqrsvwxyz";
    let hash: String = (0..32)
        .map(|i| {
            alphabet[(tag.bytes().map(|b| b as usize).sum::<usize>() * 7 + i * 11) % 32] as char
        })
        .collect();
    format!("/nix/store/{hash}-{tag}")
}

/// How the simulated workers treat closures.
#[derive(Default)]
struct Behaviour {
    crash: HashSet<String>,
    unhealthy: HashSet<String>,
    start_ms: u64,
}

/// Runs a simulated worker until the test ends; reconnects when the control plane restarts.
fn spawn_sim(addr: String, token: String, id: &str, behaviour: Rc<RefCell<Behaviour>>) {
    let info = WorkerInfo {
        id: id.to_string(),
        cpu: 8,
        memory_mb: 8192,
        backends: vec![Backend::Process],
        ..Default::default()
    };
    tokio::task::spawn_local(async move {
        // instance → (closure, started)
        let mut running: HashMap<String, (String, Instant)> = HashMap::new();
        loop {
            let Ok((gw, _conn)) = schema::net::connect_worker(&addr, &token).await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let gw = GatewayClient::new(gw);
            let (callback, mut pushes) = test_support::sim::callback();
            if gw.register(&info, callback).await.is_err() {
                continue;
            }
            loop {
                let Ok(update) = gw.get_assignment(&info.id, 0).await else {
                    break;
                };
                let AssignmentUpdate::Changed(a) = update else {
                    break;
                };
                let wanted: HashMap<String, String> = a
                    .instances
                    .iter()
                    .map(|(i, s)| (i.clone(), s.closure.clone()))
                    .collect();
                running.retain(|i, (c, _)| wanted.get(i) == Some(c));
                for (i, c) in &wanted {
                    running
                        .entry(i.clone())
                        .or_insert_with(|| (c.clone(), Instant::now()));
                }
                let reports: Vec<InstanceReport> = {
                    let b = behaviour.borrow();
                    running
                        .iter()
                        .map(|(i, (c, started))| {
                            let up = started.elapsed().as_millis() as u64;
                            let (phase, health) = if b.crash.contains(c) {
                                (Phase::CrashLoop, Health::Unhealthy)
                            } else if up < b.start_ms {
                                (Phase::Starting, Health::Starting)
                            } else if b.unhealthy.contains(c) {
                                (Phase::Running, Health::Unhealthy)
                            } else {
                                (Phase::Running, Health::Healthy)
                            };
                            InstanceReport {
                                instance_id: i.clone(),
                                vm_name: i
                                    .rsplit_once('-')
                                    .map(|(v, _)| v.to_string())
                                    .unwrap_or_default(),
                                closure: c.clone(),
                                phase,
                                health,
                                uptime_ms: up,
                                ..Default::default()
                            }
                        })
                        .collect()
                };
                if gw
                    .push_data(&info.id, a.generation, &reports, &WorkerMetrics::default())
                    .await
                    .is_err()
                {
                    break;
                }
                // A worker reports on a heartbeat and at once when its assignment changes.
                let _ = tokio::time::timeout(Duration::from_millis(50), pushes.recv()).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

fn web(tag: &str, replicas: u32) -> VmSpec {
    let mut spec = VmSpec::process("web", &closure(tag));
    spec.replicas = replicas;
    spec.memory_mb = 64;
    spec.health_checks.push(HealthCheck {
        kind: CheckKind::Http {
            port: 8080,
            path: "/healthz".into(),
            expect_status: 200,
        },
        interval_ms: 100,
        timeout_ms: 100,
        retries: 1,
        grace_period_ms: 0,
    });
    spec.rollout.min_healthy_time_ms = 200;
    spec.rollout.healthy_deadline_ms = 3_000;
    spec.rollout.max_parallel = 1;
    spec.rollout.max_unavailable = 1;
    spec
}

async fn rolled_out(op: &MasterClient, generation: u64) -> ClusterStatus {
    eventually(
        Duration::from_secs(30),
        &format!("generation {generation} to roll out"),
        || {
            let op = op.clone();
            async move {
                let s = op.cluster_status().await.ok()?;
                (s.last_good_generation == generation && s.convergence_percent == 100.0)
                    .then_some(s)
            }
        },
    )
    .await
}

fn ops_for(cp: &ControlPlane, ids: &[&str], behaviour: &Rc<RefCell<Behaviour>>) {
    for id in ids {
        spawn_sim(
            cp.addr.clone(),
            cp.worker_token.clone(),
            id,
            Rc::clone(behaviour),
        );
    }
}

#[test]
fn rolling_update_moves_one_at_a_time_and_a_crashing_generation_rolls_back() {
    let cp = ControlPlane::start();
    local(async {
        let op = cp.operator().await;
        let behaviour = Rc::new(RefCell::new(Behaviour {
            start_ms: 150,
            ..Default::default()
        }));
        ops_for(&cp, &["w1", "w2", "w3"], &behaviour);
        eventually(Duration::from_secs(10), "3 workers", || {
            let op = op.clone();
            async move { (op.cluster_status().await.ok()?.workers.len() == 3).then_some(()) }
        })
        .await;

        publish(&op, 1, &[web("a", 3)]).await.expect("publish 1");
        rolled_out(&op, 1).await;

        // Generation 2: a rolling update. Watch it: never more than one instance down.
        publish(&op, 2, &[web("b", 3)]).await.expect("publish 2");
        let mut worst = 0;
        let mut seen_mixed = false;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = op.cluster_status().await.expect("status");
            let down = s
                .instances
                .iter()
                .filter(|i| !(i.phase == Phase::Running && i.health == Health::Healthy))
                .count();
            worst = worst.max(down);
            let gens: HashSet<u64> = s.instances.iter().map(|i| i.generation).collect();
            seen_mixed |= gens.len() > 1;
            if s.last_good_generation == 2 && s.convergence_percent == 100.0 {
                assert!(s
                    .instances
                    .iter()
                    .all(|i| i.observed_closure == closure("b")));
                break;
            }
            assert!(
                Instant::now() < deadline,
                "generation 2 did not roll out: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            worst <= 1,
            "{worst} instances were down at once with maxUnavailable = 1"
        );
        assert!(
            seen_mixed,
            "the rollout should have passed through a mix of generations"
        );

        // Generation 3 crashes: rolled back to 2 automatically, marked failed, not re-applied.
        behaviour.borrow_mut().crash.insert(closure("c"));
        publish(&op, 3, &[web("c", 3)]).await.expect("publish 3");
        let s = eventually(
            Duration::from_secs(30),
            "the rollback to generation 2",
            || {
                let op = op.clone();
                async move {
                    let s = op.cluster_status().await.ok()?;
                    let back = s.active_generation == 2
                        && s.convergence_percent == 100.0
                        && s.instances
                            .iter()
                            .all(|i| i.observed_closure == closure("b"));
                    back.then_some(s)
                }
            },
        )
        .await;
        assert_eq!(s.last_good_generation, 2);
        let gens = op.generations(10).await.expect("generations");
        let g3 = gens
            .iter()
            .find(|g| g.generation == 3)
            .expect("generation 3");
        assert_eq!(g3.status, "failed");
        assert!(g3.reason.contains("is crash-loop"), "{}", g3.reason);
        assert_eq!(
            gens.iter().find(|g| g.generation == 2).expect("g2").status,
            "active"
        );
        let events = op.events(0, 10_000).await.expect("events");
        assert!(events
            .iter()
            .any(|e| e.kind == EventKind::Rollback
                && e.message.contains("rolling back to generation 2")));
        // At most maxParallel instances ever ran the bad closure.
        let bad_moves = events
            .iter()
            .filter(|e| {
                e.kind == EventKind::Rollout && e.message.ends_with("moves to generation 3")
            })
            .count();
        assert_eq!(
            bad_moves, 1,
            "only one instance should have tried generation 3"
        );
        // CI retrying generation 3 gets a clear refusal; a newer good generation deploys.
        let e = publish(&op, 3, &[web("c", 3)])
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(
                "not newer than generation 3 (the latest published; generation 2 is active)"
            ),
            "{e}"
        );
        publish(&op, 4, &[web("d", 3)]).await.expect("publish 4");
        rolled_out(&op, 4).await;
    });
}

#[test]
fn an_instance_unhealthy_past_its_deadline_fails_the_generation() {
    let cp = ControlPlane::start();
    local(async {
        let op = cp.operator().await;
        let behaviour = Rc::new(RefCell::new(Behaviour::default()));
        ops_for(&cp, &["w1", "w2"], &behaviour);
        publish(&op, 1, &[web("a", 2)]).await.expect("publish 1");
        rolled_out(&op, 1).await;
        behaviour.borrow_mut().unhealthy.insert(closure("sick"));
        let mut sick = web("sick", 2);
        sick.rollout.healthy_deadline_ms = 800;
        let t = Instant::now();
        publish(&op, 2, &[sick]).await.expect("publish 2");
        eventually(
            Duration::from_secs(20),
            "the rollback to generation 1",
            || {
                let op = op.clone();
                async move {
                    let s = op.cluster_status().await.ok()?;
                    (s.active_generation == 1 && s.convergence_percent == 100.0).then_some(())
                }
            },
        )
        .await;
        assert!(
            t.elapsed() >= Duration::from_millis(800),
            "rolled back before the deadline"
        );
        let gens = op.generations(10).await.expect("generations");
        let reason = &gens.iter().find(|g| g.generation == 2).expect("g2").reason;
        assert!(
            reason.contains("was not healthy within healthyDeadline 0.8 s (running, unhealthy)"),
            "{reason}"
        );
    });
}

#[test]
fn canary_waits_for_promotion_and_manual_rollback_goes_back() {
    let cp = ControlPlane::start();
    local(async {
        let op = cp.operator().await;
        let behaviour = Rc::new(RefCell::new(Behaviour::default()));
        ops_for(&cp, &["w1", "w2", "w3"], &behaviour);
        publish(&op, 1, &[web("a", 3)]).await.expect("publish 1");
        rolled_out(&op, 1).await;

        let mut canary = web("b", 3);
        canary.rollout.strategy = RolloutStrategy::Canary;
        canary.rollout.canary_count = 1;
        canary.rollout.auto_promote = false;
        publish(&op, 2, &[canary]).await.expect("publish 2");
        let s = eventually(
            Duration::from_secs(20),
            "the canary to wait for promotion",
            || {
                let op = op.clone();
                async move {
                    let s = op.cluster_status().await.ok()?;
                    (s.rollouts.first()?.phase == RolloutPhase::WaitingForPromotion).then_some(s)
                }
            },
        )
        .await;
        let on_b = s
            .instances
            .iter()
            .filter(|i| i.observed_closure == closure("b"))
            .count();
        assert_eq!(on_b, 1, "exactly the canary runs the new closure");
        assert!(
            s.rollouts[0].message.contains("rollout promote web"),
            "{}",
            s.rollouts[0].message
        );

        let said = op.promote("web").await.expect("promote");
        assert!(said.contains("web promoted"), "{said}");
        rolled_out(&op, 2).await;

        // Manual rollback to 1, then the rolled-back generation is not re-applied by itself.
        let said = op.rollback(0).await.expect("rollback");
        assert_eq!(
            said,
            "generation 1 is active again; generation 2 is rolled back"
        );
        let s = eventually(
            Duration::from_secs(20),
            "generation 1 back everywhere",
            || {
                let op = op.clone();
                async move {
                    let s = op.cluster_status().await.ok()?;
                    let back = s
                        .instances
                        .iter()
                        .all(|i| i.observed_closure == closure("a"))
                        && s.convergence_percent == 100.0;
                    back.then_some(s)
                }
            },
        )
        .await;
        assert_eq!(s.active_generation, 1);
        let gens = op.generations(10).await.expect("generations");
        assert_eq!(
            gens.iter().find(|g| g.generation == 2).expect("g2").status,
            "rolled-back"
        );
        // Errors are sentences.
        let e = op.promote("nope").await.unwrap_err().to_string();
        assert_eq!(e, "generation 1 has no VM named nope");
        let e = op.rollback(9).await.unwrap_err().to_string();
        assert_eq!(e, "there is no generation 9");
    });
}

#[test]
fn drain_never_takes_two_instances_down_at_once() {
    let cp = ControlPlane::start();
    local(async {
        let op = cp.operator().await;
        let behaviour = Rc::new(RefCell::new(Behaviour {
            start_ms: 300,
            ..Default::default()
        }));
        ops_for(&cp, &["w1"], &behaviour);
        eventually(Duration::from_secs(10), "w1", || {
            let op = op.clone();
            async move { (op.cluster_status().await.ok()?.workers.len() == 1).then_some(()) }
        })
        .await;
        publish(&op, 1, &[web("a", 3)]).await.expect("publish 1");
        rolled_out(&op, 1).await;
        ops_for(&cp, &["w2", "w3"], &behaviour);
        eventually(Duration::from_secs(10), "w2 and w3", || {
            let op = op.clone();
            async move { (op.cluster_status().await.ok()?.workers.len() == 3).then_some(()) }
        })
        .await;

        let said = op.drain("w1").await.expect("drain");
        assert!(said.contains("draining"), "{said}");
        let mut worst = 0;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = op.cluster_status().await.expect("status");
            let down = s
                .instances
                .iter()
                .filter(|i| !(i.phase == Phase::Running && i.health == Health::Healthy))
                .count();
            worst = worst.max(down);
            let w1 = s.workers.iter().find(|w| w.info.id == "w1").expect("w1");
            if w1.instance_count == 0 && s.convergence_percent == 100.0 {
                assert_eq!(
                    w1.state,
                    WorkerState::Cordoned,
                    "a drained worker stays cordoned"
                );
                break;
            }
            assert!(Instant::now() < deadline, "drain did not finish: {s:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            worst <= 1,
            "{worst} instances of web were down at once during the drain"
        );
        assert_eq!(
            op.uncordon("w1").await.expect("uncordon"),
            "worker w1 is ready again"
        );
        let e = op.cordon("ghost").await.unwrap_err().to_string();
        assert!(e.contains("unknown worker `ghost`"), "{e}");
    });
}

#[test]
fn kill9_in_the_middle_of_a_rollout_continues_where_it_was() {
    let mut cp = ControlPlane::start_with(Options {
        lease_ms: 5_000,
        heartbeat_ms: 200,
    });
    let addr = cp.addr.clone();
    let token = cp.worker_token.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local_set = tokio::task::LocalSet::new();
    let behaviour = Rc::new(RefCell::new(Behaviour::default()));
    local_set.block_on(&rt, async {
        for id in ["w1", "w2", "w3"] {
            spawn_sim(addr.clone(), token.clone(), id, Rc::clone(&behaviour));
        }
        let op = cp.operator().await;
        publish(&op, 1, &[web("a", 3)]).await.expect("publish 1");
        rolled_out(&op, 1).await;
        let mut slow = web("b", 3);
        slow.rollout.min_healthy_time_ms = 1_500;
        publish(&op, 2, &[slow]).await.expect("publish 2");
        eventually(
            Duration::from_secs(10),
            "the first instance to move",
            || {
                let op = op.clone();
                async move {
                    let s = op.cluster_status().await.ok()?;
                    (s.instances.iter().filter(|i| i.generation == 2).count() == 1).then_some(())
                }
            },
        )
        .await;
    });
    cp.kill9();
    cp.restart();
    local_set.block_on(&rt, async {
        let op = cp.operator().await;
        let s = op.cluster_status().await.expect("status after restart");
        assert_eq!(s.active_generation, 2);
        assert_eq!(
            s.instances.iter().filter(|i| i.generation == 2).count(),
            1,
            "progress survived"
        );
        let s = rolled_out(&op, 2).await;
        assert_eq!(s.instances.len(), 3, "nothing doubled");
        assert!(s
            .instances
            .iter()
            .all(|i| i.observed_closure == closure("b")));
        let moves = op
            .events(0, 10_000)
            .await
            .expect("events")
            .into_iter()
            .filter(|e| {
                e.kind == EventKind::Rollout && e.message.ends_with("moves to generation 2")
            })
            .count();
        assert_eq!(moves, 3, "each instance moved exactly once");
    });
}
