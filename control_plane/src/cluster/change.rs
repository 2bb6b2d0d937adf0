//! The one write path: a [`Change`] collects everything one request changes without touching
//! anything; [`Cluster::commit`] writes it to the store in one transaction and only then applies
//! it to the copy in memory, working out which workers must hear about it.

use super::*;
use crate::store::Batch;

/// Everything one request changes; built without side effects, then committed.
pub(super) struct Change {
    pub(super) batch: Batch,
    pub(super) first_seq: u64,
    pub(super) active: Option<StoredGeneration>,
    pub(super) latest_generation: Option<u64>,
    pub(super) last_good: Option<u64>,
    pub(super) placements: Option<BTreeMap<String, StoredPlacement>>,
    /// New rows for workers, and whether their lease is renewed.
    pub(super) workers: BTreeMap<String, (StoredWorker, bool)>,
    /// Workers to tell even if their placements did not change (a new generation).
    pub(super) force_notify: HashSet<String>,
    pub(super) specs: Vec<(u64, SpecMap)>,
    pub(super) bad: Vec<u64>,
    /// When the new active generation became active (its progress deadline starts there).
    pub(super) activated_at: Option<u64>,
}

impl Change {
    /// Every worker with instances learns the new active generation, even where its own
    /// instances did not change.
    pub(super) fn notify_every_placed_worker(&mut self) {
        self.force_notify = self
            .placements
            .iter()
            .flat_map(|p| p.values())
            .filter_map(|p| p.worker_id.clone())
            .collect();
    }

    pub(super) fn event(
        &mut self,
        generation: u64,
        kind: EventKind,
        worker: &str,
        instance: &str,
        message: String,
    ) {
        let seq = self.first_seq + self.batch.events.len() as u64;
        self.batch.events.push(Event {
            seq,
            timestamp_ms: now_ms(),
            kind,
            generation,
            worker_id: worker.to_string(),
            instance_id: instance.to_string(),
            message,
        });
    }
}

impl Cluster {
    pub(super) fn change(&self) -> Change {
        Change {
            batch: Batch::default(),
            first_seq: self.last_seq + 1,
            active: None,
            latest_generation: None,
            last_good: None,
            placements: None,
            workers: BTreeMap::new(),
            force_notify: HashSet::new(),
            specs: Vec::new(),
            bad: Vec::new(),
            activated_at: None,
        }
    }

    pub(super) fn target<'a>(&'a self, change: &'a Change) -> Option<&'a StoredGeneration> {
        change.active.as_ref().or(self.active.as_ref())
    }

    pub(super) fn spec_at<'a>(
        &'a self,
        change: &'a Change,
        generation: u64,
        vm: &str,
    ) -> Option<&'a VmSpec> {
        change
            .specs
            .iter()
            .rev()
            .find(|(g, _)| *g == generation)
            .map(|(_, m)| m)
            .or_else(|| self.specs.get(&generation))
            .and_then(|m| m.get(vm))
    }

    pub(super) fn worker_stored<'a>(
        &'a self,
        change: &'a Change,
        id: &str,
    ) -> Option<&'a StoredWorker> {
        change
            .workers
            .get(id)
            .map(|(w, _)| w)
            .or_else(|| self.workers.get(id).map(|w| &w.stored))
    }

    pub(super) fn is_bad(&self, change: &Change, generation: u64) -> bool {
        self.bad.contains(&generation) || change.bad.contains(&generation)
    }

    /// Writes the change in one transaction, then applies it to memory.
    pub(super) fn commit(&mut self, mut change: Change) -> Result<Outcome, RemoteError> {
        // Placement rows and the workers that must hear about them, by difference.
        let mut touched: HashSet<String> = std::mem::take(&mut change.force_notify);
        if let Some(new) = &change.placements {
            for (id, row) in new {
                let old = self.placements.get(id);
                if old != Some(row) {
                    change.batch.placements_upsert.push(row.clone());
                    // What the worker runs changed: where, which spec, or a restart asked for.
                    let moved_or_changed = old.is_none_or(|o| {
                        o.worker_id != row.worker_id
                            || o.generation != row.generation
                            || o.restarts != row.restarts
                    });
                    if moved_or_changed {
                        touched.extend(row.worker_id.clone());
                        touched.extend(old.and_then(|o| o.worker_id.clone()));
                    }
                }
            }
            for (id, old) in &self.placements {
                if !new.contains_key(id) {
                    change.batch.placements_delete.push(id.clone());
                    touched.extend(old.worker_id.clone());
                }
            }
        }
        let mut notify = Vec::new();
        let mut revision = None;
        if !touched.is_empty() {
            let r = self.revision + 1;
            revision = Some(r);
            let mut touched: Vec<String> = touched.into_iter().collect();
            touched.sort();
            for id in touched {
                if !change.workers.contains_key(&id) {
                    if let Some(w) = self.workers.get(&id) {
                        change.workers.insert(id.clone(), (w.stored.clone(), false));
                    }
                }
                if let Some((row, _)) = change.workers.get_mut(&id) {
                    row.revision = r;
                    notify.push((id, r));
                }
            }
            change.batch.meta.push(("revision", r.to_string()));
        }
        change.batch.workers = change.workers.values().map(|(w, _)| w.clone()).collect();
        if let Some(g) = &change.active {
            change
                .batch
                .meta
                .push(("active_generation", g.generation.to_string()));
        }
        if let Some(g) = change.last_good {
            change
                .batch
                .meta
                .push(("last_good_generation", g.to_string()));
        }
        if let Some(t) = change.activated_at {
            change.batch.meta.push(("activated_at_ms", t.to_string()));
        }
        self.store.apply(&change.batch).map_err(internal)?;

        self.last_seq += change.batch.events.len() as u64;
        if let Some(r) = revision {
            self.revision = r;
        }
        if let Some(g) = change.active {
            self.specs.insert(g.generation, spec_map(&g.specs));
            self.active = Some(g);
        }
        for (g, m) in change.specs {
            self.specs.insert(g, m);
        }
        self.bad.extend(change.bad);
        if let Some(g) = change.latest_generation {
            self.latest_generation = g;
        }
        if let Some(g) = change.last_good {
            self.last_good = g;
        }
        if let Some(t) = change.activated_at {
            self.activated_at = t;
        }
        if let Some(p) = change.placements {
            self.placements = p;
        }
        let lease_until = Instant::now() + self.config.lease;
        for (id, (stored, renew)) in change.workers {
            let lease = match (renew, self.workers.get(&id)) {
                (false, Some(w)) => w.lease_until,
                _ => lease_until,
            };
            let reported = self.workers.get(&id).is_some_and(|w| w.reported);
            self.workers
                .insert(id, Worker::new(stored, lease, reported));
        }
        // Drop specs no placement and no live generation refers to any more.
        let mut keep: HashSet<u64> = self.placements.values().map(|p| p.generation).collect();
        keep.insert(self.active_generation());
        self.specs.retain(|g, _| keep.contains(g));
        self.version += 1;
        Ok(Outcome {
            events: change.batch.events,
            notify,
        })
    }

    pub(super) fn worker_row<'a>(
        &self,
        change: &'a mut Change,
        id: &str,
    ) -> Option<&'a mut StoredWorker> {
        if !change.workers.contains_key(id) {
            let stored = self.workers.get(id)?.stored.clone();
            change.workers.insert(id.to_string(), (stored, false));
        }
        change.workers.get_mut(id).map(|(w, _)| w)
    }
}
