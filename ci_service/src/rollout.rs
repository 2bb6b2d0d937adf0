//! Watching a published generation converge, to record how long each phase took: `schedule`
//! (placed on a worker), `fetch` (the worker has the closure), `boot` (running the new spec)
//! and `healthy` (its checks pass).
//!
//! [`Tracker`] is plain data: it is fed cluster status snapshots with the time they were
//! taken and says when the rollout is done. [`watch`] polls the control plane and records what
//! the tracker saw.

use std::collections::BTreeMap;
use std::time::Duration;

use schema::client::MasterClient;
use schema::model::{Blueprint, ClusterStatus, Health, Phase, VmSpec};

use crate::store::{Rollout, Store};

/// How often the status is sampled: the resolution of the phase timings.
pub const POLL: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Times {
    placed: Option<u64>,
    fetched: Option<u64>,
    running: Option<u64>,
    healthy: Option<u64>,
    /// The spec changed but not the closure: it is on the new spec once it restarted.
    same_closure: bool,
    /// Uptime and restarts at the first sample, to tell when a same-closure instance restarted.
    first_uptime_ms: Option<u64>,
    first_restarts: Option<u32>,
    restarted: bool,
    needs_checks: bool,
}

/// Where a rollout is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Watching,
    Converged(String),
    Superseded(u64),
    Stalled(String),
}

/// Follows the instances a generation changed.
#[derive(Debug, Clone)]
pub struct Tracker {
    generation: u64,
    published_ms: u64,
    deadline_ms: u64,
    instances: BTreeMap<String, Times>,
    unplaced: BTreeMap<String, String>,
    started: bool,
}

impl Tracker {
    /// `old` is the blueprint that was active before (None for the first generation): only
    /// instances that are new or whose spec needs a restart are followed.
    pub fn new(
        generation: u64,
        new: &Blueprint,
        old: Option<&Blueprint>,
        published_ms: u64,
        timeout: Duration,
    ) -> Tracker {
        let old_specs: BTreeMap<&str, &VmSpec> = old
            .map(|b| b.vms.iter().map(|v| (v.name.as_str(), v)).collect())
            .unwrap_or_default();
        let mut instances = BTreeMap::new();
        let mut deadline = 0u64;
        for spec in &new.vms {
            let before = old_specs.get(spec.name.as_str());
            let old_ids: Vec<String> = before
                .map(|b| b.instance_ids().collect())
                .unwrap_or_default();
            let respec = before.is_none_or(|b| b.runtime_differs(spec));
            for id in spec.instance_ids() {
                let is_new = !old_ids.contains(&id);
                if !(is_new || respec) {
                    continue;
                }
                let same_closure = !is_new && before.is_some_and(|b| b.closure == spec.closure);
                instances.insert(
                    id,
                    Times {
                        same_closure,
                        needs_checks: !spec.health_checks.is_empty(),
                        ..Times::default()
                    },
                );
                let grace = spec
                    .health_checks
                    .iter()
                    .map(|c| u64::from(c.grace_period_ms))
                    .max()
                    .unwrap_or(0);
                deadline = deadline.max(spec.rollout.healthy_deadline_ms + grace);
            }
        }
        // Room for fetching and booting on top of the spec's own deadline.
        let deadline = (deadline + 30_000).min(timeout.as_millis() as u64);
        Tracker {
            generation,
            published_ms,
            deadline_ms: published_ms + deadline,
            instances,
            unplaced: BTreeMap::new(),
            started: false,
        }
    }

    /// Instances followed.
    pub fn followed(&self) -> usize {
        self.instances.len()
    }

    /// Takes in one status sample taken at `now` (ms).
    pub fn observe(&mut self, status: &ClusterStatus, now: u64) -> Verdict {
        if status.active_generation > self.generation {
            return Verdict::Superseded(status.active_generation);
        }
        let first = !self.started;
        self.started = true;
        let mut crashed = None;
        for inst in &status.instances {
            let Some(t) = self.instances.get_mut(&inst.instance_id) else {
                continue;
            };
            if inst.worker_id.is_empty() {
                if first && !inst.unplaced_reason.is_empty() {
                    self.unplaced
                        .insert(inst.instance_id.clone(), inst.unplaced_reason.clone());
                }
                continue;
            }
            if t.placed.is_none() {
                t.placed = Some(now);
            }
            if t.first_uptime_ms.is_none() {
                t.first_uptime_ms = Some(inst.uptime_ms);
                t.first_restarts = Some(inst.restarts);
            } else if inst.phase != Phase::Running
                || t.first_uptime_ms.is_some_and(|u| inst.uptime_ms < u)
                || t.first_restarts.is_some_and(|r| inst.restarts != r)
            {
                t.restarted = true;
            }
            // The worker may restart an instance before the first sample sees the old process:
            // a process younger than the generation is the restarted one.
            if inst.phase == Phase::Running
                && inst.uptime_ms <= now.saturating_sub(self.published_ms)
            {
                t.restarted = true;
            }
            let on_new_closure = inst.observed_closure == inst.desired_closure;
            let on_new_spec = on_new_closure && (!t.same_closure || t.restarted);
            if on_new_spec
                && matches!(inst.phase, Phase::Starting | Phase::Running)
                && t.fetched.is_none()
            {
                t.fetched = Some(now);
            }
            if on_new_spec && inst.phase == Phase::Running && t.running.is_none() {
                t.fetched.get_or_insert(now);
                t.running = Some(now);
            }
            let healthy = if t.needs_checks {
                inst.health == Health::Healthy
            } else {
                inst.health != Health::Unhealthy
            };
            if t.running.is_some() && inst.phase == Phase::Running && healthy && t.healthy.is_none()
            {
                t.healthy = Some(now);
            }
            if inst.phase == Phase::CrashLoop {
                crashed = Some(format!(
                    "{} is in a crash loop on {}{}",
                    inst.instance_id,
                    inst.worker_id,
                    if inst.message.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", inst.message)
                    }
                ));
            }
        }
        for id in self.unplaced.keys() {
            self.instances.remove(id);
        }
        if let Some(msg) = crashed {
            return Verdict::Stalled(msg);
        }
        let note = if self.unplaced.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = self
                .unplaced
                .iter()
                .map(|(id, why)| format!("{id} unplaced: {why}"))
                .collect();
            format!("; {}", list.join("; "))
        };
        if self.instances.values().all(|t| t.healthy.is_some()) {
            if self.instances.is_empty() && !self.unplaced.is_empty() {
                return Verdict::Stalled(format!("no changed instance could be placed{note}"));
            }
            return Verdict::Converged(format!(
                "{} changed instance{} healthy{note}",
                self.instances.len(),
                if self.instances.len() == 1 { "" } else { "s" }
            ));
        }
        if now >= self.deadline_ms {
            let waiting: Vec<String> = status
                .instances
                .iter()
                .filter(|i| {
                    self.instances
                        .get(&i.instance_id)
                        .is_some_and(|t| t.healthy.is_none())
                })
                .map(|i| format!("{} is {}/{}", i.instance_id, i.phase, i.health))
                .collect();
            return Verdict::Stalled(format!(
                "not converged after {} s: {}{note}",
                (now - self.published_ms) / 1000,
                waiting.join(", ")
            ));
        }
        Verdict::Watching
    }

    /// The phases as (name, start, end) in ms: each starts where the previous ended, and ends
    /// when the last followed instance got through it.
    pub fn phases(&self) -> Vec<(&'static str, u64, u64)> {
        let last = |f: fn(&Times) -> Option<u64>| -> Option<u64> {
            let mut max = None;
            for t in self.instances.values() {
                let v = f(t)?;
                max = Some(max.map_or(v, |m: u64| m.max(v)));
            }
            max
        };
        let mut out = Vec::new();
        let mut start = self.published_ms;
        for (name, end) in [
            ("schedule", last(|t| t.placed)),
            ("fetch", last(|t| t.fetched)),
            ("boot", last(|t| t.running)),
            ("healthy", last(|t| t.healthy)),
        ] {
            let Some(end) = end else { break };
            let end = end.max(start);
            out.push((name, start, end));
            start = end;
        }
        out
    }
}

/// Polls the control plane until the rollout of `generation` is done, recording the phases of
/// run `id` as they complete. Runs on the pipeline thread's `LocalSet`.
pub async fn watch(store: &Store, id: u64, master: &MasterClient, mut tracker: Tracker) -> Verdict {
    let _ = store.set_rollout(id, Rollout::Converging, "");
    let mut recorded = 0;
    let mut failures = 0;
    let verdict = loop {
        let verdict = match master.cluster_status().await {
            Ok(status) => {
                failures = 0;
                tracker.observe(&status, crate::now_ms())
            }
            Err(e) => {
                failures += 1;
                if failures > 100 {
                    break Verdict::Stalled(format!("cannot read the cluster status: {e}"));
                }
                Verdict::Watching
            }
        };
        let phases = tracker.phases();
        for (name, start, end) in &phases[recorded..] {
            let _ = store.record_phase(id, name, *start, *end);
        }
        recorded = phases.len();
        if verdict != Verdict::Watching {
            break verdict;
        }
        tokio::time::sleep(POLL).await;
    };
    let (state, message) = match &verdict {
        Verdict::Converged(m) => (Rollout::Converged, m.clone()),
        Verdict::Superseded(g) => (
            Rollout::Superseded,
            format!("generation {g} was published before this one converged"),
        ),
        Verdict::Stalled(m) => (Rollout::Stalled, m.clone()),
        Verdict::Watching => (Rollout::Converging, String::new()),
    };
    let _ = store.set_rollout(id, state, &message);
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;
    use schema::model::{CheckKind, HealthCheck, InstanceStatus};

    const A: &str = "/nix/store/0c9hj2bl0ajiyqslkmbhizbgshrdw9jl-web";
    const B: &str = "/nix/store/1c9hj2bl0ajiyqslkmbhizbgshrdw9jl-web";
    const API: &str = "/nix/store/2c9hj2bl0ajiyqslkmbhizbgshrdw9jl-api";

    fn spec(name: &str, closure: &str) -> VmSpec {
        let mut s = VmSpec::process(name, closure);
        s.health_checks.push(HealthCheck {
            kind: CheckKind::Tcp { port: 1 },
            interval_ms: 500,
            timeout_ms: 500,
            retries: 3,
            grace_period_ms: 0,
        });
        s
    }

    fn blueprint(vms: Vec<VmSpec>) -> Blueprint {
        Blueprint {
            cluster: Default::default(),
            vms,
        }
    }

    fn inst(
        id: &str,
        desired: &str,
        observed: &str,
        phase: Phase,
        health: Health,
        uptime: u64,
    ) -> InstanceStatus {
        InstanceStatus {
            instance_id: id.into(),
            worker_id: "w1".into(),
            desired_closure: desired.into(),
            observed_closure: observed.into(),
            phase,
            health,
            uptime_ms: uptime,
            ..Default::default()
        }
    }

    fn status(generation: u64, instances: Vec<InstanceStatus>) -> ClusterStatus {
        ClusterStatus {
            active_generation: generation,
            instances,
            ..Default::default()
        }
    }

    #[test]
    fn only_the_changed_service_is_followed_through_its_phases() {
        let old = blueprint(vec![spec("web", A), spec("api", API)]);
        let new = blueprint(vec![spec("web", B), spec("api", API)]);
        let mut t = Tracker::new(2, &new, Some(&old), 1000, Duration::from_secs(600));
        assert_eq!(t.followed(), 1);
        let api = inst("api-0", API, API, Phase::Running, Health::Healthy, 50_000);
        let steps = [
            (1010, Phase::Running, A, Health::Healthy),
            (1100, Phase::Fetching, A, Health::Healthy),
            (1200, Phase::Starting, B, Health::Starting),
            (1300, Phase::Running, B, Health::Starting),
        ];
        for (now, phase, observed, health) in steps {
            let s = status(
                2,
                vec![inst("web-0", B, observed, phase, health, 10), api.clone()],
            );
            assert_eq!(t.observe(&s, now), Verdict::Watching, "at {now}");
        }
        let s = status(
            2,
            vec![
                inst("web-0", B, B, Phase::Running, Health::Healthy, 10),
                api,
            ],
        );
        assert!(matches!(t.observe(&s, 1700), Verdict::Converged(_)));
        assert_eq!(
            t.phases(),
            [
                ("schedule", 1000, 1010),
                ("fetch", 1010, 1200),
                ("boot", 1200, 1300),
                ("healthy", 1300, 1700)
            ]
        );
    }

    #[test]
    fn a_new_environment_counts_once_the_instance_restarted() {
        let old = blueprint(vec![spec("api", API)]);
        let mut changed = spec("api", API);
        changed.env.insert("GREETING".into(), "hi".into());
        let new = blueprint(vec![changed]);
        let mut t = Tracker::new(2, &new, Some(&old), 0, Duration::from_secs(600));
        let running = |uptime| {
            status(
                2,
                vec![inst(
                    "api-0",
                    API,
                    API,
                    Phase::Running,
                    Health::Healthy,
                    uptime,
                )],
            )
        };
        assert_eq!(t.observe(&running(60_000), 10), Verdict::Watching);
        assert_eq!(
            t.observe(&running(61_000), 20),
            Verdict::Watching,
            "still the old process"
        );
        assert!(
            matches!(t.observe(&running(200), 30), Verdict::Converged(_)),
            "uptime went back: restarted"
        );
    }

    /// Regression: an environment-only change restarts the instance within milliseconds; when
    /// the first sample already saw the new process the rollout waited for its deadline.
    #[test]
    fn a_restart_before_the_first_sample_still_counts() {
        let old = blueprint(vec![spec("api", API)]);
        let mut changed = spec("api", API);
        changed.env.insert("GREETING".into(), "hi".into());
        let new = blueprint(vec![changed]);
        let mut t = Tracker::new(2, &new, Some(&old), 1_000, Duration::from_secs(600));
        let s = status(
            2,
            vec![inst(
                "api-0",
                API,
                API,
                Phase::Running,
                Health::Healthy,
                300,
            )],
        );
        assert!(matches!(t.observe(&s, 1_400), Verdict::Converged(_)));
    }

    #[test]
    fn superseded_unplaced_crash_loop_and_deadline() {
        let new = blueprint(vec![spec("web", B)]);
        let mut t = Tracker::new(3, &new, None, 0, Duration::from_secs(600));
        assert_eq!(t.observe(&status(4, vec![]), 1), Verdict::Superseded(4));

        let mut t = Tracker::new(3, &new, None, 0, Duration::from_secs(600));
        let mut unplaced = inst("web-0", B, "", Phase::Unknown, Health::Unknown, 0);
        unplaced.worker_id.clear();
        unplaced.unplaced_reason = "no worker has 1 CPU free".into();
        match t.observe(&status(3, vec![unplaced]), 1) {
            Verdict::Stalled(m) => assert!(
                m.contains("web-0 unplaced: no worker has 1 CPU free"),
                "{m}"
            ),
            v => panic!("{v:?}"),
        }

        let mut t = Tracker::new(3, &new, None, 0, Duration::from_secs(600));
        let crash = inst("web-0", B, B, Phase::CrashLoop, Health::Unhealthy, 0);
        assert!(
            matches!(t.observe(&status(3, vec![crash]), 1), Verdict::Stalled(m) if m.contains("crash loop"))
        );

        let mut t = Tracker::new(3, &new, None, 0, Duration::from_secs(5));
        let slow = inst("web-0", B, B, Phase::Starting, Health::Unknown, 0);
        assert_eq!(
            t.observe(&status(3, vec![slow.clone()]), 4_000),
            Verdict::Watching
        );
        assert!(
            matches!(t.observe(&status(3, vec![slow]), 5_000), Verdict::Stalled(m) if m.contains("web-0 is starting/unknown"))
        );
    }

    #[test]
    fn nothing_to_follow_converges_at_once() {
        let bp = blueprint(vec![spec("web", A)]);
        let mut fewer = bp.clone();
        fewer.vms[0].labels.insert("tier".into(), "x".into());
        let mut t = Tracker::new(2, &fewer, Some(&bp), 0, Duration::from_secs(600));
        assert_eq!(t.followed(), 0);
        assert!(matches!(
            t.observe(&status(2, vec![]), 1),
            Verdict::Converged(_)
        ));
        assert!(t.phases().is_empty());
    }
}
