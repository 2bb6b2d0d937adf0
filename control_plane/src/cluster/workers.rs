//! Workers: registration, reports (which double as heartbeats), leases, cordon/drain, operator
//! restarts, and the assignment each worker reads.

use super::*;

pub(super) fn validate_worker_id(id: &str) -> Result<(), RemoteError> {
    let ok = !id.is_empty()
        && id.len() <= 253
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(err(
            ErrorCode::Invalid,
            format!("worker id `{id}` must be 1-253 letters, digits, `.`, `_` or `-`"),
        ))
    }
}

/// Reports above these sizes are cut, not refused: a chatty console must not cost a heartbeat.
const MAX_LOG_TAIL: usize = 16 * 1024;
const MAX_MESSAGE: usize = 2 * 1024;
const MAX_REPORTS: usize = 10_000;

pub(super) fn truncate_front(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = s.len() - max;
        while !s.is_char_boundary(cut) {
            cut += 1;
        }
        s.replace_range(..cut, "…");
    }
}

impl Cluster {
    pub fn set_worker_state(
        &mut self,
        id: &str,
        state: WorkerState,
    ) -> Result<(String, Outcome), RemoteError> {
        let worker = self.known_worker(id)?;
        let from = worker.stored.state;
        if from == WorkerState::Lost {
            return Err(err(
                ErrorCode::Invalid,
                format!("worker {id} is lost; it can be cordoned or drained once it reports again"),
            ));
        }
        if from == state {
            return Ok((
                format!("worker {id} is already {}", state.as_str()),
                Outcome::default(),
            ));
        }
        let mut change = self.change();
        if let Some(row) = self.worker_row(&mut change, id) {
            row.state = state;
        }
        let what = match state {
            WorkerState::Cordoned => format!("worker {id} is cordoned: it keeps its instances and gets no new ones"),
            WorkerState::Draining => format!("worker {id} is draining: its instances move, at most maxUnavailable of each VM at a time"),
            _ => format!("worker {id} is ready again"),
        };
        change.event(
            self.active_generation(),
            EventKind::WorkerState,
            id,
            "",
            what.clone(),
        );
        self.reschedule(&mut change);
        self.progress(&mut change);
        let outcome = self.commit(change)?;
        Ok((what, outcome))
    }

    /// Restarts one instance where it runs.
    pub fn restart_instance(&mut self, instance: &str) -> Result<(String, Outcome), RemoteError> {
        let Some(p) = self.placements.get(instance) else {
            return Err(err(
                ErrorCode::NotFound,
                format!("there is no instance {instance}"),
            ));
        };
        let Some(worker) = p.worker_id.clone() else {
            return Err(err(
                ErrorCode::Invalid,
                format!("{instance} is not placed on any worker, so there is nothing to restart"),
            ));
        };
        let mut change = self.change();
        let mut placements = self.placements.clone();
        if let Some(row) = placements.get_mut(instance) {
            row.restarts += 1;
        }
        change.placements = Some(placements);
        let what = format!("{instance} restarts on {worker}, as an operator asked");
        change.event(
            self.active_generation(),
            EventKind::InstancePhase,
            &worker,
            instance,
            what.clone(),
        );
        let outcome = self.commit(change)?;
        Ok((what, outcome))
    }

    // ---- workers ----

    /// Registers a worker, or re-registers one that reconnects (same id: updated, never
    /// duplicated). Answers the worker's assignment revision.
    pub fn register(&mut self, info: WorkerInfo) -> Result<(u64, Outcome), RemoteError> {
        validate_worker_id(&info.id)?;
        if info.cpu == 0 || info.memory_mb == 0 {
            return Err(err(
                ErrorCode::Invalid,
                format!(
                    "worker {} must offer at least 1 CPU and 1 MiB of memory",
                    info.id
                ),
            ));
        }
        if info.backends.is_empty() {
            return Err(err(
                ErrorCode::Invalid,
                format!("worker {} supports no backend", info.id),
            ));
        }
        let now = now_ms();
        let generation = self.active_generation();
        let mut change = self.change();
        let id = info.id.clone();
        let existing = self.workers.get(&id).map(|w| w.stored.clone());
        let mut reschedule = true;
        let row = match existing {
            Some(mut stored) => {
                reschedule = stored.info != info || stored.state == WorkerState::Lost;
                if stored.state == WorkerState::Lost {
                    stored.state = WorkerState::Ready;
                    change.event(
                        generation,
                        EventKind::WorkerReturned,
                        &id,
                        "",
                        format!("worker {id} is back"),
                    );
                }
                stored.info = info;
                stored.last_heartbeat_ms = now;
                stored
            }
            None => {
                change.event(
                    generation,
                    EventKind::WorkerRegistered,
                    &id,
                    "",
                    format!(
                        "worker {id} registered: {} CPUs, {} MiB, backends {}",
                        info.cpu,
                        info.memory_mb,
                        info.backend_names(", ")
                    ),
                );
                StoredWorker {
                    info,
                    state: WorkerState::Ready,
                    registered_at_ms: now,
                    last_heartbeat_ms: now,
                    observed_generation: 0,
                    reports: Vec::new(),
                    metrics: WorkerMetrics::default(),
                    revision: 0,
                }
            }
        };
        change.workers.insert(id.clone(), (row, true));
        if reschedule {
            self.reschedule(&mut change);
            self.progress(&mut change);
        }
        let outcome = self.commit(change)?;
        // A new session: what the worker reported before is no longer what it runs.
        if let Some(w) = self.workers.get_mut(&id) {
            w.reported = false;
            self.version += 1;
        }
        let revision = self
            .workers
            .get(&id)
            .map(|w| w.stored.revision)
            .unwrap_or(0);
        Ok((revision, outcome))
    }

    pub(super) fn known_worker(&self, id: &str) -> Result<&Worker, RemoteError> {
        self.workers.get(id).ok_or_else(|| {
            err(
                ErrorCode::NotFound,
                format!("unknown worker `{id}`; a worker must register before anything else"),
            )
        })
    }

    /// A worker's report; also its heartbeat. Answers the worker's assignment revision.
    pub fn push_data(
        &mut self,
        worker_id: &str,
        observed_generation: u64,
        mut reports: Vec<InstanceReport>,
        metrics: WorkerMetrics,
    ) -> Result<(u64, Outcome), RemoteError> {
        let worker = self.known_worker(worker_id)?;
        if reports.len() > MAX_REPORTS {
            return Err(err(
                ErrorCode::Invalid,
                format!(
                    "pushData carries {} instance reports; at most {MAX_REPORTS}",
                    reports.len()
                ),
            ));
        }
        for r in &mut reports {
            truncate_front(&mut r.log_tail, MAX_LOG_TAIL);
            truncate_front(&mut r.message, MAX_MESSAGE);
        }
        let generation = self.active_generation();
        let mut change = self.change();
        let mut news = false;
        for r in &reports {
            let before = worker.report(&r.instance_id);
            let (phase, health) = before.map(|b| (b.phase, b.health)).unwrap_or_default();
            if before.is_none()
                || phase != r.phase
                || before.is_some_and(|b| b.closure != r.closure)
            {
                news = true;
                let detail = if r.message.is_empty() {
                    String::new()
                } else {
                    format!(": {}", r.message)
                };
                change.event(
                    generation,
                    EventKind::InstancePhase,
                    worker_id,
                    &r.instance_id,
                    format!("{} on {worker_id} is {}{detail}", r.instance_id, r.phase),
                );
            }
            if before.is_some_and(|_| health != r.health) && r.health != Health::Unknown {
                news = true;
                change.event(
                    generation,
                    EventKind::InstanceHealth,
                    worker_id,
                    &r.instance_id,
                    format!("{} on {worker_id} is {}", r.instance_id, r.health),
                );
            }
        }
        let was_lost = worker.stored.state == WorkerState::Lost;
        let mut row = worker.stored.clone();
        row.last_heartbeat_ms = now_ms();
        row.observed_generation = observed_generation;
        row.reports = reports;
        row.metrics = metrics;
        if was_lost {
            row.state = WorkerState::Ready;
            change.event(
                generation,
                EventKind::WorkerReturned,
                worker_id,
                "",
                format!("worker {worker_id} is back"),
            );
        }
        change.workers.insert(worker_id.to_string(), (row, true));
        if was_lost {
            self.reschedule(&mut change);
        }
        let outcome = self.commit(change)?;
        if let Some(w) = self.workers.get_mut(worker_id) {
            if !w.reported {
                w.reported = true;
                // The status was computed while this worker's reports counted for nothing.
                self.version += 1;
            }
        }
        // The rollout controller looks at reports on its next tick, not on every heartbeat.
        // Uptime grows with every report, so a rollout waiting for minHealthyTime needs a look
        // even when nothing else changed.
        if news || was_lost || self.rollout_waiting() {
            self.dirty = true;
        }
        let revision = self
            .workers
            .get(worker_id)
            .map(|w| w.stored.revision)
            .unwrap_or(0);
        Ok((revision, outcome))
    }

    /// Periodic work: leases, and the rollout controller when reports arrived or a deadline
    /// may have passed.
    pub fn tick(&mut self, now: Instant) -> Result<Outcome, RemoteError> {
        let expired: Vec<String> = self
            .workers
            .values()
            .filter(|w| w.stored.state != WorkerState::Lost && w.lease_until <= now)
            .map(|w| w.stored.info.id.clone())
            .collect();
        let draining = self
            .workers
            .values()
            .any(|w| w.stored.state == WorkerState::Draining);
        if expired.is_empty() && !self.dirty && !self.rollout_waiting() && !draining {
            return Ok(Outcome::default());
        }
        self.dirty = false;
        let generation = self.active_generation();
        let mut change = self.change();
        for id in &expired {
            let silent_for = self
                .workers
                .get(id)
                .map(|w| now_ms().saturating_sub(w.stored.last_heartbeat_ms))
                .unwrap_or(0);
            if let Some(row) = self.worker_row(&mut change, id) {
                row.state = WorkerState::Lost;
            }
            change.event(
                generation,
                EventKind::WorkerLost,
                id,
                "",
                format!(
                    "worker {id} is lost: no report for {} (lease {}); its instances move",
                    secs(silent_for),
                    secs(self.config.lease.as_millis() as u64)
                ),
            );
        }
        if !expired.is_empty() || draining {
            self.reschedule(&mut change);
        }
        self.progress(&mut change);
        let unchanged = change.batch.is_empty()
            && change.workers.is_empty()
            && change
                .placements
                .as_ref()
                .is_none_or(|p| *p == self.placements);
        if unchanged {
            return Ok(Outcome::default());
        }
        self.commit(change)
    }

    /// Kept for callers that only expire leases.
    pub fn expire_leases(&mut self, now: Instant) -> Result<Outcome, RemoteError> {
        self.tick(now)
    }

    /// The instances a worker should run, unless it already has revision `last_seen`.
    pub fn assignment(
        &self,
        worker_id: &str,
        last_seen: u64,
    ) -> Result<Option<Assignment>, RemoteError> {
        let worker = self.known_worker(worker_id)?;
        if worker.stored.revision == last_seen {
            return Ok(None);
        }
        let instances = self
            .placements
            .values()
            .filter(|p| p.worker_id.as_deref() == Some(worker_id))
            .filter_map(|p| {
                let mut spec = self
                    .specs
                    .get(&p.generation)
                    .and_then(|m| m.get(&p.vm_name))?
                    .clone();
                if p.restarts > 0 {
                    // A new value is a runtime difference: the worker restarts the instance.
                    spec.env
                        .insert(RESTART_ENV.to_string(), p.restarts.to_string());
                }
                Some((p.instance_id.clone(), spec))
            })
            .collect();
        Ok(Some(Assignment {
            generation: self.active_generation(),
            revision: worker.stored.revision,
            instances,
        }))
    }

    pub fn worker_revision(&self, worker_id: &str) -> Option<u64> {
        self.workers.get(worker_id).map(|w| w.stored.revision)
    }
}
