//! The rollout controller: looks at where each VM's instances stand against the active
//! generation, moves the next ones, and judges the rollout complete or failed (rolling back
//! when asked). The decisions themselves are the pure functions in [`super::rollout`].

use super::rollout::CanaryGate;
use super::*;

impl Cluster {
    /// Whether an instance serves right now: its worker is alive and reports it running its
    /// spec's closure and healthy (or, with no health checks, not unhealthy). With `proven`,
    /// it must also have been up for the rollout's `minHealthyTime`.
    pub(super) fn serving(&self, change: &Change, p: &StoredPlacement, proven: bool) -> bool {
        let Some(wid) = &p.worker_id else {
            return false;
        };
        let Some(worker) = self.workers.get(wid) else {
            return false;
        };
        if worker.stored.state == WorkerState::Lost {
            return false;
        }
        let Some(spec) = self.spec_at(change, p.generation, &p.vm_name) else {
            return false;
        };
        worker
            .report(&p.instance_id)
            .is_some_and(|r| rollout::serves(r, spec, proven))
    }

    pub(super) fn classify(
        &self,
        change: &Change,
        placements: &BTreeMap<String, StoredPlacement>,
        ids: &[String],
        target: &StoredGeneration,
        vm: &VmSpec,
        now: u64,
    ) -> VmRollout {
        let t = target.generation;
        let mut out = VmRollout::default();
        for p in ids
            .iter()
            .filter_map(|id| placements.get(id))
            .filter(|p| p.worker_id.is_some())
        {
            out.total += 1;
            if self.serving(change, p, false) {
                out.available += 1;
            }
            let moved = p.generation == t
                || self
                    .spec_at(change, p.generation, &vm.name)
                    .is_none_or(|old| !old.runtime_differs(vm));
            if !moved {
                out.pending.push(p.instance_id.clone());
                continue;
            }
            if self.serving(change, p, true) {
                out.proven += 1;
                continue;
            }
            out.in_progress.push(p.instance_id.clone());
            if out.failure.is_some() || p.generation != t {
                continue;
            }
            let report = p
                .worker_id
                .as_ref()
                .and_then(|w| self.workers.get(w))
                .and_then(|w| w.report(&p.instance_id))
                .filter(|r| r.closure == vm.closure);
            out.failure = rollout::instance_failure(&p.instance_id, report, p.since_ms, now, vm);
        }
        out
    }

    /// Moves instances toward the target generation and judges the rollout.
    pub(super) fn progress(&self, change: &mut Change) {
        let Some(target) = self.target(change).cloned() else {
            return;
        };
        let t = target.generation;
        if self.is_bad(change, t) {
            return;
        }
        let now = now_ms();
        let mut placements = change
            .placements
            .take()
            .unwrap_or_else(|| self.placements.clone());
        let mut complete = true;
        let mut failure: Option<(String, bool)> = None;
        let mut promoted = target.promoted.clone();
        let by_vm = group_by_vm(&placements);
        let none: Vec<String> = Vec::new();
        for vm in &target.specs {
            let ids = by_vm.get(&vm.name).unwrap_or(&none);
            let state = self.classify(change, &placements, ids, &target, vm, now);
            // Instances whose spec does not change at runtime move at once, and instances still
            // on a failed generation revert at once: they are down or wrong anyway.
            for id in ids {
                let Some(p) = placements.get_mut(id) else {
                    continue;
                };
                if p.worker_id.is_none() || p.generation == t {
                    continue;
                }
                let same = self
                    .spec_at(change, p.generation, &vm.name)
                    .is_none_or(|old| !old.runtime_differs(vm));
                if same || self.is_bad(change, p.generation) {
                    let restart = !same;
                    p.generation = t;
                    if restart {
                        p.since_ms = now;
                    }
                }
            }
            let state = if state
                .pending
                .iter()
                .any(|id| placements.get(id).is_some_and(|p| p.generation == t))
            {
                self.classify(change, &placements, ids, &target, vm, now)
            } else {
                state
            };
            if let Some(reason) = state.failure.clone() {
                failure = Some((reason, vm.rollout.auto_rollback));
                complete = false;
                break;
            }
            if !state.done() {
                complete = false;
            }
            let activated = change.activated_at.unwrap_or(self.activated_at);
            if let Some(reason) = rollout::progress_overdue(vm, &state, activated, now) {
                failure = Some((reason, vm.rollout.auto_rollback));
                break;
            }
            if state.pending.is_empty() {
                continue;
            }
            // Canary: the first `canaryCount` instances, then wait for them to be proven.
            let limit = match rollout::canary_gate(vm, promoted.contains(&vm.name), &state) {
                CanaryGate::Open => usize::MAX,
                CanaryGate::Canaries(n) => n,
                CanaryGate::Proving | CanaryGate::WaitingForPromotion => continue,
                CanaryGate::Promote => {
                    let moved = state.total - state.pending.len();
                    promoted.push(vm.name.clone());
                    change.event(
                        t,
                        EventKind::Rollout,
                        "",
                        "",
                        format!(
                            "{}: {moved} canary instance(s) healthy; promoted automatically",
                            vm.name
                        ),
                    );
                    usize::MAX
                }
            };
            let mut slots = rollout::move_slots(vm, &state, limit);
            // Down instances first: restarting them costs no availability.
            let mut order = state.pending.clone();
            order.sort_by_key(|id| {
                placements
                    .get(id)
                    .map(|p| self.serving(change, p, false))
                    .unwrap_or(false)
            });
            let mut unavailable = state.total - state.available;
            for id in order {
                if slots == 0 {
                    break;
                }
                let Some(p) = placements.get(id.as_str()) else {
                    continue;
                };
                let serving = self.serving(change, p, false);
                if serving && !rollout::may_take_down(vm, unavailable) {
                    break;
                }
                if serving {
                    unavailable += 1;
                }
                slots -= 1;
                if let Some(p) = placements.get_mut(id.as_str()) {
                    p.generation = t;
                    p.since_ms = now;
                }
                change.event(
                    t,
                    EventKind::Rollout,
                    p_worker(&placements, &id),
                    &id,
                    format!("{id} moves to generation {t}"),
                );
            }
        }
        if promoted != target.promoted {
            change.batch.generation_promoted.push((t, promoted.clone()));
            let mut g = target.clone();
            g.promoted = promoted;
            change.active = Some(g);
        }
        change.placements = Some(placements);
        if let Some((reason, auto)) = failure {
            self.fail(change, &target, &reason, auto);
        } else if complete && self.last_good != t && change.last_good != Some(t) {
            let n = change
                .placements
                .as_ref()
                .map(|p| p.values().filter(|p| p.worker_id.is_some()).count())
                .unwrap_or(0);
            change.last_good = Some(t);
            change.event(
                t,
                EventKind::Rollout,
                "",
                "",
                format!("generation {t} rolled out: {n} instance(s) healthy"),
            );
        }
    }

    /// Records a failed rollout; with `auto`, makes the last good generation active again.
    pub(super) fn fail(
        &self,
        change: &mut Change,
        target: &StoredGeneration,
        reason: &str,
        auto: bool,
    ) {
        let t = target.generation;
        change.bad.push(t);
        change
            .batch
            .generation_status
            .push((t, "failed".into(), reason.to_string()));
        let good = self.last_good;
        if auto && good != 0 && good != t {
            change.event(
                t,
                EventKind::Rollback,
                "",
                "",
                format!("generation {t} failed: {reason}; rolling back to generation {good}"),
            );
            match self.store.generation(good) {
                Ok(Some(mut g)) => {
                    g.status = "active".into();
                    change
                        .batch
                        .generation_status
                        .push((good, "active".into(), String::new()));
                    change.specs.push((good, spec_map(&g.specs)));
                    change.activated_at = Some(now_ms());
                    change.active = Some(g);
                    self.reschedule(change);
                    self.progress(change);
                }
                Ok(None) | Err(_) => {
                    change.event(
                        t,
                        EventKind::Rollback,
                        "",
                        "",
                        format!(
                            "generation {good} cannot be read back; generation {t} stays as it is"
                        ),
                    );
                }
            }
        } else {
            let why = if !auto {
                "autoRollback is off".to_string()
            } else {
                "no earlier generation rolled out completely".to_string()
            };
            change.event(
                t,
                EventKind::Rollout,
                "",
                "",
                format!("generation {t} failed: {reason}; not rolled back ({why})"),
            );
        }
    }

    pub(super) fn rollout_waiting(&self) -> bool {
        self.active
            .as_ref()
            .is_some_and(|g| g.generation != self.last_good && !self.bad.contains(&g.generation))
    }
}
