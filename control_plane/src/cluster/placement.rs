//! Placement: runs the pure [`crate::scheduler`] over the target generation and the workers,
//! keeps instances where they are when they may stay, and moves instances off draining workers
//! no faster than `maxUnavailable` allows.

use super::*;
use crate::scheduler::{schedule, Placement, WorkerView};

pub(super) fn view(stored: &StoredWorker) -> WorkerView {
    let state = stored.state;
    WorkerView {
        id: stored.info.id.clone(),
        labels: stored.info.labels.clone(),
        backends: stored.info.backends.clone(),
        cpu: stored.info.cpu,
        memory_mb: stored.info.memory_mb,
        takes_new: state == WorkerState::Ready,
        // Draining workers keep what the drain has not moved yet; see `drain_evictions`.
        keeps_existing: state != WorkerState::Lost,
        closures: stored
            .reports
            .iter()
            .filter(|r| r.phase == Phase::Running)
            .map(|r| r.closure.clone())
            .collect(),
    }
}

impl Cluster {
    /// Where the scheduler would place `specs` now, against the workers and placements as they
    /// are (`pcr plan`). Changes nothing.
    pub fn plan_placement(
        &self,
        specs: &[VmSpec],
        settings: &ClusterSettings,
    ) -> Result<Placement, RemoteError> {
        validate_specs(specs).map_err(|e| err(ErrorCode::Invalid, e.to_string()))?;
        let views: Vec<WorkerView> = self.workers.values().map(|w| view(&w.stored)).collect();
        let current: BTreeMap<String, String> = self
            .placements
            .values()
            .filter_map(|p| p.worker_id.clone().map(|w| (p.instance_id.clone(), w)))
            .collect();
        Ok(schedule(specs, settings.strategy, &views, &current))
    }

    /// Places the target generation's instances again. Instances that stay keep their
    /// generation; new ones get the target's. Also moves instances off draining workers.
    pub(super) fn reschedule(&self, change: &mut Change) {
        let Some(target) = self.target(change) else {
            return;
        };
        let (specs, strategy, generation) = (
            target.specs.clone(),
            target.settings.strategy,
            target.generation,
        );
        let base = change
            .placements
            .clone()
            .unwrap_or_else(|| self.placements.clone());
        let views: Vec<WorkerView> = {
            let mut ids: Vec<&String> = self.workers.keys().collect();
            ids.extend(
                change
                    .workers
                    .keys()
                    .filter(|k| !self.workers.contains_key(*k)),
            );
            ids.sort();
            ids.dedup();
            ids.iter()
                .filter_map(|id| self.worker_stored(change, id))
                .map(view)
                .collect()
        };
        let mut current: BTreeMap<String, String> = base
            .values()
            .filter_map(|p| p.worker_id.clone().map(|w| (p.instance_id.clone(), w)))
            .collect();
        let evicted = self.drain_evictions(change, &base, &specs);
        for id in &evicted {
            current.remove(id);
        }
        let Placement {
            mut assigned,
            mut unplaced,
        } = schedule(&specs, strategy, &views, &current);
        // An instance the drain wanted to move but nobody can take stays where it is.
        for id in &evicted {
            if unplaced.remove(id).is_some() {
                if let Some(w) = base.get(id).and_then(|p| p.worker_id.clone()) {
                    assigned.insert(id.clone(), w);
                }
            }
        }
        let now = now_ms();
        let mut placements = BTreeMap::new();
        let mut moves = 0usize;
        for (instance, worker) in assigned {
            let old = base.get(&instance);
            let old_worker = old.and_then(|p| p.worker_id.clone());
            if old_worker.as_deref() != Some(worker.as_str()) {
                if moves < 50 {
                    let msg = match &old_worker {
                        Some(ow) => format!("{instance} moves from {ow} to {worker}"),
                        None => format!("{instance} placed on {worker}"),
                    };
                    change.event(
                        generation,
                        EventKind::PlacementChanged,
                        &worker,
                        &instance,
                        msg,
                    );
                }
                moves += 1;
            }
            // A moved instance restarts anyway, but keeps its generation: moving is not the
            // moment to roll out (the rollout controller decides that).
            let (gen, since) = match old {
                Some(o)
                    if o.generation != 0
                        && self
                            .spec_at(change, o.generation, vm_of(&instance))
                            .is_some() =>
                {
                    (
                        o.generation,
                        if old_worker.as_deref() == Some(worker.as_str()) {
                            o.since_ms
                        } else {
                            now
                        },
                    )
                }
                _ => (generation, now),
            };
            let restarts = old.map(|o| o.restarts).unwrap_or(0);
            placements.insert(
                instance.clone(),
                StoredPlacement {
                    vm_name: vm_of(&instance).to_string(),
                    instance_id: instance,
                    worker_id: Some(worker),
                    reason: String::new(),
                    generation: gen,
                    since_ms: since,
                    restarts,
                },
            );
        }
        if moves > 50 {
            change.event(
                generation,
                EventKind::PlacementChanged,
                "",
                "",
                format!("… and {} more placement changes", moves - 50),
            );
        }
        let mut unplaced_events = 0usize;
        for (instance, reason) in unplaced {
            let old = base.get(&instance);
            let row = StoredPlacement {
                vm_name: vm_of(&instance).to_string(),
                instance_id: instance.clone(),
                worker_id: None,
                reason,
                generation,
                since_ms: 0,
                restarts: old.map(|o| o.restarts).unwrap_or(0),
            };
            let same = old.is_some_and(|o| o.worker_id.is_none() && o.reason == row.reason);
            if !same {
                if unplaced_events < 20 {
                    change.event(
                        generation,
                        EventKind::Unplaced,
                        "",
                        &instance,
                        format!("{instance} cannot be placed: {}", row.reason),
                    );
                }
                unplaced_events += 1;
            }
            placements.insert(instance, row);
        }
        if unplaced_events > 20 {
            change.event(
                generation,
                EventKind::Unplaced,
                "",
                "",
                format!(
                    "… and {} more instances cannot be placed",
                    unplaced_events - 20
                ),
            );
        }
        // Draining workers with nothing left are drained: cordoned, and said so.
        let draining: Vec<String> = views
            .iter()
            .filter(|v| {
                self.worker_stored(change, &v.id)
                    .is_some_and(|w| w.state == WorkerState::Draining)
            })
            .map(|v| v.id.clone())
            .collect();
        for id in draining {
            if !placements
                .values()
                .any(|p| p.worker_id.as_deref() == Some(id.as_str()))
            {
                if let Some(row) = self.worker_row(change, &id) {
                    row.state = WorkerState::Cordoned;
                }
                change.event(
                    generation,
                    EventKind::WorkerState,
                    &id,
                    "",
                    format!("worker {id} is drained and stays cordoned"),
                );
            }
        }
        change.placements = Some(placements);
    }

    /// Instances to move off draining workers now: per VM, only as many as keep the VM within
    /// `maxUnavailable`, and none while an earlier move has not proven healthy.
    pub(super) fn drain_evictions(
        &self,
        change: &Change,
        base: &BTreeMap<String, StoredPlacement>,
        specs: &[VmSpec],
    ) -> Vec<String> {
        let draining: HashSet<&str> = self
            .workers
            .keys()
            .map(String::as_str)
            .chain(change.workers.keys().map(String::as_str))
            .filter(|id| {
                self.worker_stored(change, id)
                    .is_some_and(|w| w.state == WorkerState::Draining)
            })
            .collect();
        if draining.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for spec in specs {
            let instances: Vec<&StoredPlacement> =
                base.values().filter(|p| p.vm_name == spec.name).collect();
            let available = instances
                .iter()
                .filter(|p| self.serving(change, p, false))
                .count();
            let unavailable = instances.len() - available;
            let mut budget =
                (spec.rollout.max_unavailable.max(1) as usize).saturating_sub(unavailable);
            for p in instances {
                let on_draining = p.worker_id.as_deref().is_some_and(|w| draining.contains(w));
                if !on_draining {
                    continue;
                }
                // Down already: moving it costs nothing.
                if !self.serving(change, p, false) {
                    out.push(p.instance_id.clone());
                } else if budget > 0 {
                    budget -= 1;
                    out.push(p.instance_id.clone());
                }
            }
        }
        out
    }
}
