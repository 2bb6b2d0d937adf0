//! Rollout decisions as pure functions of plain data: whether an instance serves, whether it
//! failed its rollout, how the canary gate stands, how many instances may move now, and what
//! phase a VM's rollout is in. The controller (the `progress` module beside this one) gathers the data from the
//! cluster and applies the answers; these functions decide and are tested here, by table.

use schema::model::{Health, InstanceReport, Phase, RolloutPhase, RolloutStrategy, VmSpec};

/// Where one VM's rollout to the active generation stands.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VmRollout {
    /// Instances that still run an older spec and must restart to move.
    pub pending: Vec<String>,
    /// Moved, not yet healthy for `minHealthyTime`.
    pub in_progress: Vec<String>,
    /// Moved and proven.
    pub proven: usize,
    pub total: usize,
    /// Instances that serve right now (running, healthy), any generation.
    pub available: usize,
    /// The first instance that failed the rollout, and why.
    pub failure: Option<String>,
}

impl VmRollout {
    /// Nothing left to move or to prove.
    pub fn done(&self) -> bool {
        self.pending.is_empty() && self.in_progress.is_empty()
    }
}

/// Whether a reported instance serves its spec: running the spec's closure and healthy (or,
/// with no health checks, not unhealthy). With `proven`, it must also have been up for the
/// rollout's `minHealthyTime`.
pub fn serves(report: &InstanceReport, spec: &VmSpec, proven: bool) -> bool {
    let healthy = if spec.health_checks.is_empty() {
        report.health != Health::Unhealthy
    } else {
        report.health == Health::Healthy
    };
    report.closure == spec.closure
        && report.phase == Phase::Running
        && healthy
        && (!proven || report.uptime_ms >= spec.rollout.min_healthy_time_ms)
}

/// Why an instance moved to `vm`'s spec fails the rollout, if it does: it failed or crash-loops
/// on the new closure, or it was not healthy by `healthyDeadline` after `since_ms`. `report` is
/// the instance's report for the new closure, if any.
pub fn instance_failure(
    instance: &str,
    report: Option<&InstanceReport>,
    since_ms: u64,
    now_ms: u64,
    vm: &VmSpec,
) -> Option<String> {
    if let Some(r) = report.filter(|r| matches!(r.phase, Phase::Failed | Phase::CrashLoop)) {
        let detail = if r.message.is_empty() {
            String::new()
        } else {
            format!(": {}", r.message)
        };
        return Some(format!("{instance} is {}{detail}", r.phase));
    }
    if since_ms > 0 && now_ms.saturating_sub(since_ms) > vm.rollout.healthy_deadline_ms {
        let state = match report {
            Some(r) => format!("{}, {}", r.phase, r.health),
            None => "not reported".to_string(),
        };
        return Some(format!(
            "{instance} was not healthy within healthyDeadline {} ({state})",
            secs(vm.rollout.healthy_deadline_ms)
        ));
    }
    None
}

/// Why the rollout of `vm` missed its `progressDeadline`, if it did.
pub fn progress_overdue(
    vm: &VmSpec,
    state: &VmRollout,
    activated_at_ms: u64,
    now_ms: u64,
) -> Option<String> {
    if state.done() || now_ms.saturating_sub(activated_at_ms) <= vm.rollout.progress_deadline_ms {
        return None;
    }
    Some(format!(
        "the rollout of {} did not finish within progressDeadline {} ({} of {} instances done)",
        vm.name,
        secs(vm.rollout.progress_deadline_ms),
        state.proven,
        state.total
    ))
}

/// What the canary gate lets a VM's rollout do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CanaryGate {
    /// No gate: a rolling rollout, or a promoted canary.
    Open,
    /// Canaries still to start: at most this many more may move.
    Canaries(usize),
    /// The canaries moved and are not proven yet: wait.
    Proving,
    /// The canaries are proven and `autoPromote` is on: promote, then move the rest.
    Promote,
    /// The canaries are proven; an operator must promote.
    WaitingForPromotion,
}

pub fn canary_gate(vm: &VmSpec, promoted: bool, state: &VmRollout) -> CanaryGate {
    if vm.rollout.strategy != RolloutStrategy::Canary || promoted {
        return CanaryGate::Open;
    }
    let canaries = vm.rollout.canary_count as usize;
    let moved = state.total - state.pending.len();
    if moved < canaries {
        CanaryGate::Canaries(canaries - moved)
    } else if !state.in_progress.is_empty() {
        CanaryGate::Proving
    } else if vm.rollout.auto_promote {
        CanaryGate::Promote
    } else {
        CanaryGate::WaitingForPromotion
    }
}

/// How many more instances may start moving now: `maxParallel` minus those still proving,
/// within `limit` (what the canary gate allows).
pub fn move_slots(vm: &VmSpec, state: &VmRollout, limit: usize) -> usize {
    (vm.rollout.max_parallel.max(1) as usize)
        .saturating_sub(state.in_progress.len())
        .min(limit)
}

/// Whether one more serving instance may be taken down, with `unavailable` down already.
pub fn may_take_down(vm: &VmSpec, unavailable: usize) -> bool {
    unavailable < vm.rollout.max_unavailable.max(1) as usize
}

/// The phase a VM's rollout is in, and the sentence that explains it.
pub fn phase(
    vm: &VmSpec,
    generation_failed: bool,
    promoted: bool,
    state: &VmRollout,
) -> (RolloutPhase, String) {
    let waiting = vm.rollout.strategy == RolloutStrategy::Canary
        && !promoted
        && !state.pending.is_empty()
        && state.in_progress.is_empty()
        && state.total - state.pending.len() >= vm.rollout.canary_count as usize;
    if generation_failed {
        (RolloutPhase::Failed, "the generation failed".to_string())
    } else if waiting && !vm.rollout.auto_promote {
        (
            RolloutPhase::WaitingForPromotion,
            format!(
                "canary healthy; `pcr-test rollout promote {}` continues",
                vm.name
            ),
        )
    } else if state.done() {
        (RolloutPhase::Complete, String::new())
    } else {
        (
            RolloutPhase::Progressing,
            format!(
                "{} waiting, {} starting",
                state.pending.len(),
                state.in_progress.len()
            ),
        )
    }
}

pub(super) fn secs(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use schema::model::{CheckKind, HealthCheck, RolloutPolicy};

    fn vm(strategy: RolloutStrategy, canaries: u32, auto_promote: bool) -> VmSpec {
        let mut spec = VmSpec::process("web", "/nix/store/new");
        spec.rollout = RolloutPolicy {
            strategy,
            canary_count: canaries,
            auto_promote,
            max_parallel: 2,
            max_unavailable: 1,
            min_healthy_time_ms: 1_000,
            healthy_deadline_ms: 10_000,
            progress_deadline_ms: 60_000,
            ..RolloutPolicy::default()
        };
        spec
    }

    fn state(total: usize, pending: usize, in_progress: usize) -> VmRollout {
        VmRollout {
            pending: (0..pending).map(|i| format!("web-p{i}")).collect(),
            in_progress: (0..in_progress).map(|i| format!("web-i{i}")).collect(),
            proven: total - pending - in_progress,
            total,
            available: total,
            failure: None,
        }
    }

    fn report(closure: &str, phase: Phase, health: Health, uptime_ms: u64) -> InstanceReport {
        InstanceReport {
            instance_id: "web-0".into(),
            vm_name: "web".into(),
            closure: closure.into(),
            phase,
            health,
            uptime_ms,
            ..Default::default()
        }
    }

    #[test]
    fn serves_table() {
        let spec = vm(RolloutStrategy::Rolling, 0, true);
        let new = "/nix/store/new";
        // (report, proven, expected)
        let cases = [
            (report(new, Phase::Running, Health::Unknown, 0), false, true),
            (report(new, Phase::Running, Health::Unknown, 0), true, false),
            (
                report(new, Phase::Running, Health::Healthy, 1_000),
                true,
                true,
            ),
            (
                report(new, Phase::Running, Health::Unhealthy, 5_000),
                false,
                false,
            ),
            (
                report(new, Phase::Starting, Health::Healthy, 5_000),
                false,
                false,
            ),
            (
                report("/nix/store/old", Phase::Running, Health::Healthy, 5_000),
                false,
                false,
            ),
        ];
        for (i, (r, proven, want)) in cases.iter().enumerate() {
            assert_eq!(serves(r, &spec, *proven), *want, "case {i}");
        }
    }

    #[test]
    fn health_checks_demand_healthy() {
        let mut spec = vm(RolloutStrategy::Rolling, 0, true);
        spec.health_checks.push(HealthCheck {
            kind: CheckKind::Tcp { port: 80 },
            interval_ms: 1_000,
            timeout_ms: 1_000,
            retries: 1,
            grace_period_ms: 0,
        });
        let r = report("/nix/store/new", Phase::Running, Health::Unknown, 5_000);
        assert!(!serves(&r, &spec, false));
    }

    #[test]
    fn instance_failure_table() {
        let spec = vm(RolloutStrategy::Rolling, 0, true);
        let crashing = InstanceReport {
            message: "exit 1".into(),
            ..report("/nix/store/new", Phase::CrashLoop, Health::Unknown, 0)
        };
        let starting = report("/nix/store/new", Phase::Starting, Health::Unknown, 0);
        // (report, since, now, expected)
        let cases: [(Option<&InstanceReport>, u64, u64, Option<&str>); 5] = [
            (Some(&crashing), 1, 2, Some("web-0 is crash-loop: exit 1")),
            (Some(&starting), 1_000, 5_000, None),
            (
                Some(&starting),
                1_000,
                20_000,
                Some("web-0 was not healthy within healthyDeadline 10.0 s (starting, unknown)"),
            ),
            (
                None,
                1_000,
                20_000,
                Some("web-0 was not healthy within healthyDeadline 10.0 s (not reported)"),
            ),
            // Not started yet (since 0): no deadline runs.
            (None, 0, 20_000, None),
        ];
        for (i, (r, since, now, want)) in cases.iter().enumerate() {
            let got = instance_failure("web-0", *r, *since, *now, &spec);
            assert_eq!(got.as_deref(), *want, "case {i}");
        }
    }

    #[test]
    fn progress_deadline() {
        let spec = vm(RolloutStrategy::Rolling, 0, true);
        assert_eq!(progress_overdue(&spec, &state(3, 1, 0), 0, 60_000), None);
        assert_eq!(progress_overdue(&spec, &state(3, 0, 0), 0, 100_000), None);
        assert_eq!(
            progress_overdue(&spec, &state(3, 1, 1), 0, 60_001).as_deref(),
            Some("the rollout of web did not finish within progressDeadline 60.0 s (1 of 3 instances done)")
        );
    }

    #[test]
    fn canary_gate_table() {
        use CanaryGate::*;
        // (strategy, canaries, autoPromote, promoted, (total, pending, in progress), expected)
        let cases = [
            (RolloutStrategy::Rolling, 0, true, false, (4, 4, 0), Open),
            (RolloutStrategy::Canary, 1, true, true, (4, 3, 0), Open),
            (
                RolloutStrategy::Canary,
                2,
                true,
                false,
                (4, 4, 0),
                Canaries(2),
            ),
            (
                RolloutStrategy::Canary,
                2,
                true,
                false,
                (4, 3, 1),
                Canaries(1),
            ),
            (RolloutStrategy::Canary, 1, true, false, (4, 3, 1), Proving),
            (RolloutStrategy::Canary, 1, true, false, (4, 3, 0), Promote),
            (
                RolloutStrategy::Canary,
                1,
                false,
                false,
                (4, 3, 0),
                WaitingForPromotion,
            ),
        ];
        for (i, (strategy, canaries, auto, promoted, (t, p, ip), want)) in
            cases.into_iter().enumerate()
        {
            let spec = vm(strategy, canaries, auto);
            assert_eq!(
                canary_gate(&spec, promoted, &state(t, p, ip)),
                want,
                "case {i}"
            );
        }
    }

    #[test]
    fn move_slots_table() {
        let spec = vm(RolloutStrategy::Rolling, 0, true); // maxParallel 2
                                                          // (in progress, limit, expected)
        let cases = [
            (0, usize::MAX, 2),
            (1, usize::MAX, 1),
            (2, usize::MAX, 0),
            (0, 1, 1),
        ];
        for (i, (ip, limit, want)) in cases.into_iter().enumerate() {
            assert_eq!(move_slots(&spec, &state(4, 2, ip), limit), want, "case {i}");
        }
        assert!(may_take_down(&spec, 0));
        assert!(!may_take_down(&spec, 1));
    }

    #[test]
    fn phase_table() {
        // (strategy, autoPromote, failed, promoted, (total, pending, in progress), phase)
        let cases = [
            (
                RolloutStrategy::Rolling,
                true,
                true,
                false,
                (2, 0, 0),
                RolloutPhase::Failed,
            ),
            (
                RolloutStrategy::Rolling,
                true,
                false,
                false,
                (2, 0, 0),
                RolloutPhase::Complete,
            ),
            (
                RolloutStrategy::Rolling,
                true,
                false,
                false,
                (2, 1, 1),
                RolloutPhase::Progressing,
            ),
            (
                RolloutStrategy::Canary,
                false,
                false,
                false,
                (3, 2, 0),
                RolloutPhase::WaitingForPromotion,
            ),
            (
                RolloutStrategy::Canary,
                false,
                false,
                true,
                (3, 2, 0),
                RolloutPhase::Progressing,
            ),
            (
                RolloutStrategy::Canary,
                true,
                false,
                false,
                (3, 2, 0),
                RolloutPhase::Progressing,
            ),
        ];
        for (i, (strategy, auto, failed, promoted, (t, p, ip), want)) in
            cases.into_iter().enumerate()
        {
            let spec = vm(strategy, 1, auto);
            assert_eq!(
                phase(&spec, failed, promoted, &state(t, p, ip)).0,
                want,
                "case {i}"
            );
        }
    }
}
