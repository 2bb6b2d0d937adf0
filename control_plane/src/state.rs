//! The cluster as the control plane knows it, and every request that changes it.
//!
//! Each operation works the same way: check the request, compute a [`Change`] without touching
//! anything (placements via the pure [`crate::scheduler`]), write it to SQLite as one
//! transaction, and only then apply it to the copy in memory. A refused request or a failed
//! commit leaves both untouched. Operations return an [`Outcome`] naming the events to
//! broadcast and the workers to notify; the RPC layer does that I/O.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use schema::model::*;
use schema::{ErrorCode, RemoteError};

use crate::scheduler::{schedule, Placement, WorkerView};
use crate::store::{Batch, Store, StoreError, StoredGeneration, StoredPlacement, StoredWorker};

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// A worker that has not reported for this long is lost and its instances move.
    pub lease: Duration,
    /// How often workers are asked to report.
    pub heartbeat_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            lease: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(2),
        }
    }
}

/// What a successful operation asks the I/O layer to do.
#[derive(Debug, Default)]
pub struct Outcome {
    pub events: Vec<Event>,
    /// Workers whose assignment changed, with their new revision.
    pub notify: Vec<(String, u64)>,
}

/// What `publishState` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishSummary {
    pub generation: u64,
    pub changed: bool,
    pub placed: u32,
    pub unplaced: u32,
    pub revision: u64,
}

struct Worker {
    stored: StoredWorker,
    lease_until: Instant,
    reports: HashMap<String, usize>,
}

impl Worker {
    fn new(stored: StoredWorker, lease_until: Instant) -> Worker {
        let reports = stored
            .reports
            .iter()
            .enumerate()
            .map(|(i, r)| (r.instance_id.clone(), i))
            .collect();
        Worker {
            stored,
            lease_until,
            reports,
        }
    }

    fn report(&self, instance: &str) -> Option<&InstanceReport> {
        self.reports.get(instance).map(|&i| &self.stored.reports[i])
    }

    fn view(&self) -> WorkerView {
        let state = self.stored.state;
        WorkerView {
            id: self.stored.info.id.clone(),
            labels: self.stored.info.labels.clone(),
            backends: self.stored.info.backends.clone(),
            cpu: self.stored.info.cpu,
            memory_mb: self.stored.info.memory_mb,
            takes_new: state == WorkerState::Ready,
            keeps_existing: matches!(state, WorkerState::Ready | WorkerState::Cordoned),
            closures: self
                .stored
                .reports
                .iter()
                .filter(|r| r.phase == Phase::Running)
                .map(|r| r.closure.clone())
                .collect(),
        }
    }
}

/// Everything one request changes; built without side effects, then committed.
struct Change {
    batch: Batch,
    first_seq: u64,
    active: Option<StoredGeneration>,
    latest_generation: Option<u64>,
    placements: Option<BTreeMap<String, StoredPlacement>>,
    revision: Option<u64>,
    /// New rows for workers, and whether their lease is renewed.
    workers: BTreeMap<String, (StoredWorker, bool)>,
    notify: Vec<(String, u64)>,
}

impl Change {
    fn event(
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

pub struct Cluster {
    store: Store,
    config: Config,
    active: Option<StoredGeneration>,
    /// Highest generation ever published (may differ from active after a rollback).
    latest_generation: u64,
    workers: BTreeMap<String, Worker>,
    placements: BTreeMap<String, StoredPlacement>,
    revision: u64,
    last_seq: u64,
}

fn internal(e: StoreError) -> RemoteError {
    RemoteError::new(
        ErrorCode::Internal,
        format!("the control plane could not store the change, so nothing changed: {e}"),
    )
}

fn err(code: ErrorCode, msg: impl Into<String>) -> RemoteError {
    RemoteError::new(code, msg)
}

/// Worker ids are host names: letters, digits, `.`, `_`, `-`.
fn validate_worker_id(id: &str) -> Result<(), RemoteError> {
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

fn truncate_front(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = s.len() - max;
        while !s.is_char_boundary(cut) {
            cut += 1;
        }
        s.replace_range(..cut, "…");
    }
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

fn vm_of(instance: &str) -> &str {
    instance
        .rsplit_once('-')
        .map(|(vm, _)| vm)
        .unwrap_or(instance)
}

impl Cluster {
    /// Loads everything from the store. Workers get a fresh lease: the control plane having been
    /// away is no reason to declare them lost.
    pub fn load(store: Store, config: Config) -> Result<Cluster, StoreError> {
        let latest_generation = store
            .generations(1)?
            .first()
            .map(|g| g.generation)
            .unwrap_or(0);
        let active = match store.meta("active_generation")? {
            Some(g) => store.generation(g.parse().unwrap_or(0))?,
            None => None,
        };
        let revision = store
            .meta("revision")?
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        let lease_until = Instant::now() + config.lease;
        let workers = store
            .workers()?
            .into_iter()
            .map(|stored| (stored.info.id.clone(), Worker::new(stored, lease_until)))
            .collect();
        let placements = store
            .placements()?
            .into_iter()
            .map(|p| (p.instance_id.clone(), p))
            .collect();
        let last_seq = store.last_event_seq()?;
        Ok(Cluster {
            store,
            config,
            active,
            latest_generation,
            workers,
            placements,
            revision,
            last_seq,
        })
    }

    pub fn config(&self) -> Config {
        self.config
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    pub fn active_generation(&self) -> u64 {
        self.active.as_ref().map(|g| g.generation).unwrap_or(0)
    }

    fn change(&self) -> Change {
        Change {
            batch: Batch::default(),
            first_seq: self.last_seq + 1,
            active: None,
            latest_generation: None,
            placements: None,
            revision: None,
            workers: BTreeMap::new(),
            notify: Vec::new(),
        }
    }

    /// Writes the change in one transaction, then applies it to memory.
    fn commit(&mut self, mut change: Change) -> Result<Outcome, RemoteError> {
        change.batch.workers = change.workers.values().map(|(w, _)| w.clone()).collect();
        if let Some(r) = change.revision {
            change.batch.meta.push(("revision", r.to_string()));
        }
        if let Some(g) = &change.active {
            change
                .batch
                .meta
                .push(("active_generation", g.generation.to_string()));
        }
        self.store.apply(&change.batch).map_err(internal)?;

        self.last_seq += change.batch.events.len() as u64;
        if let Some(g) = change.active {
            self.active = Some(g);
        }
        if let Some(g) = change.latest_generation {
            self.latest_generation = g;
        }
        if let Some(p) = change.placements {
            self.placements = p;
        }
        if let Some(r) = change.revision {
            self.revision = r;
        }
        let lease_until = Instant::now() + self.config.lease;
        for (id, (stored, renew)) in change.workers {
            let lease = match (renew, self.workers.get(&id)) {
                (false, Some(w)) => w.lease_until,
                _ => lease_until,
            };
            self.workers.insert(id, Worker::new(stored, lease));
        }
        Ok(Outcome {
            events: change.batch.events,
            notify: change.notify,
        })
    }

    fn worker_row<'a>(&self, change: &'a mut Change, id: &str) -> Option<&'a mut StoredWorker> {
        if !change.workers.contains_key(id) {
            let stored = self.workers.get(id)?.stored.clone();
            change.workers.insert(id.to_string(), (stored, false));
        }
        change.workers.get_mut(id).map(|(w, _)| w)
    }

    fn worker_views(&self, change: &Change) -> Vec<WorkerView> {
        let mut views: BTreeMap<&str, WorkerView> = self
            .workers
            .iter()
            .map(|(id, w)| (id.as_str(), w.view()))
            .collect();
        for (id, (stored, _)) in &change.workers {
            let w = Worker::new(stored.clone(), Instant::now());
            views.insert(id.as_str(), w.view());
        }
        views.into_values().collect()
    }

    /// Places the active (or about to be active) specs again and records what moved.
    /// `changed_vms`: VMs whose spec changed, whose workers need a new assignment even when
    /// nothing moved.
    fn reschedule(&self, change: &mut Change, changed_vms: &HashSet<String>) {
        let (specs, strategy, generation) = match change.active.as_ref().or(self.active.as_ref()) {
            Some(g) => (g.specs.clone(), g.settings.strategy, g.generation),
            None => return,
        };
        let current: BTreeMap<String, String> = self
            .placements
            .values()
            .filter_map(|p| p.worker_id.clone().map(|w| (p.instance_id.clone(), w)))
            .collect();
        let Placement { assigned, unplaced } =
            schedule(&specs, strategy, &self.worker_views(change), &current);

        let mut touched: HashSet<String> = HashSet::new();
        let mut placements: BTreeMap<String, StoredPlacement> = BTreeMap::new();
        let mut moves = 0usize;
        for (instance, worker) in assigned {
            let old = self.placements.get(&instance);
            let old_worker = old.and_then(|p| p.worker_id.clone());
            if old_worker.as_deref() != Some(worker.as_str()) {
                touched.insert(worker.clone());
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
                touched.extend(old_worker);
            } else if changed_vms.contains(vm_of(&instance)) {
                touched.insert(worker.clone());
            }
            let row = StoredPlacement {
                vm_name: vm_of(&instance).to_string(),
                instance_id: instance.clone(),
                worker_id: Some(worker),
                reason: String::new(),
            };
            if old != Some(&row) {
                change.batch.placements_upsert.push(row.clone());
            }
            placements.insert(instance, row);
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
            let old = self.placements.get(&instance);
            touched.extend(old.and_then(|p| p.worker_id.clone()));
            let row = StoredPlacement {
                vm_name: vm_of(&instance).to_string(),
                instance_id: instance.clone(),
                worker_id: None,
                reason,
            };
            if old != Some(&row) {
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
                change.batch.placements_upsert.push(row.clone());
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
        for (instance, old) in &self.placements {
            if !placements.contains_key(instance) {
                change.batch.placements_delete.push(instance.clone());
                touched.extend(old.worker_id.clone());
            }
        }
        if !touched.is_empty() {
            let revision = self.revision + 1;
            change.revision = Some(revision);
            let mut touched: Vec<String> = touched.into_iter().collect();
            touched.sort();
            for id in touched {
                if let Some(row) = self.worker_row(change, &id) {
                    row.revision = revision;
                    change.notify.push((id, revision));
                }
            }
        }
        change.placements = Some(placements);
    }

    // ---- publishState ----

    pub fn publish(
        &mut self,
        commit: &str,
        generation: u64,
        intent_hash: &str,
        specs: Vec<VmSpec>,
        settings: ClusterSettings,
    ) -> Result<(PublishSummary, Outcome), RemoteError> {
        let refuse = |code, msg: String| Err(err(code, format!("publishState rejected: {msg}")));
        if commit.is_empty() || commit.len() > 256 {
            return refuse(ErrorCode::Invalid, "commit must be 1-256 characters".into());
        }
        if intent_hash.is_empty() || intent_hash.len() > 256 {
            return refuse(
                ErrorCode::Invalid,
                "intentHash must be 1-256 characters".into(),
            );
        }
        if generation == 0 {
            return refuse(ErrorCode::Invalid, "generations start at 1".into());
        }
        if let Err(e) = validate_specs(&specs) {
            return refuse(ErrorCode::Invalid, format!("{e}; nothing was stored"));
        }
        let content_hash = content_hash(&settings, &specs);
        if let Some(active) = &self.active {
            if generation == active.generation && intent_hash == active.intent_hash {
                if content_hash != active.content_hash {
                    return refuse(
                        ErrorCode::Conflict,
                        format!(
                            "generation {generation} was already published with intent hash \
                             {intent_hash} but other VM specs; publish them as generation {}",
                            self.latest_generation + 1
                        ),
                    );
                }
                return Ok((self.summary(generation, false), Outcome::default()));
            }
        }
        if generation <= self.latest_generation {
            let active = self.active_generation();
            let msg = if active == self.latest_generation {
                format!("generation {generation} is not newer than active generation {active}")
            } else {
                format!(
                    "generation {generation} is not newer than generation {} (the latest \
                     published; generation {active} is active)",
                    self.latest_generation
                )
            };
            return refuse(ErrorCode::Stale, msg);
        }

        let old_specs: HashMap<&str, &VmSpec> = self
            .active
            .iter()
            .flat_map(|g| g.specs.iter())
            .map(|s| (s.name.as_str(), s))
            .collect();
        let mut changed_vms: HashSet<String> = specs
            .iter()
            .filter(|s| old_specs.get(s.name.as_str()) != Some(s))
            .map(|s| s.name.clone())
            .collect();
        let new_names: HashSet<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        changed_vms.extend(
            old_specs
                .keys()
                .filter(|n| !new_names.contains(*n))
                .map(|n| n.to_string()),
        );

        let mut change = self.change();
        if let Some(old) = &self.active {
            change
                .batch
                .generation_status
                .push((old.generation, "superseded".into()));
        }
        let stored = StoredGeneration {
            generation,
            commit: commit.to_string(),
            intent_hash: intent_hash.to_string(),
            content_hash,
            published_at_ms: now_ms(),
            settings,
            specs,
            status: "active".to_string(),
        };
        let instances = stored
            .specs
            .iter()
            .map(|s| s.replicas as usize)
            .sum::<usize>();
        change.event(
            generation,
            EventKind::GenerationPublished,
            "",
            "",
            format!(
                "generation {generation} (commit {}) published: {} VMs, {instances} instances",
                short(commit),
                stored.specs.len()
            ),
        );
        change.batch.generation = Some(stored.clone());
        change.active = Some(stored);
        change.latest_generation = Some(generation);
        self.reschedule(&mut change, &changed_vms);
        // Every worker with instances learns the new generation, even if its own did not change.
        let revision = change.revision.unwrap_or(self.revision + 1);
        change.revision = Some(revision);
        let holders: HashSet<String> = change
            .placements
            .iter()
            .flat_map(|p| p.values())
            .filter_map(|p| p.worker_id.clone())
            .collect();
        for id in holders {
            if change.notify.iter().all(|(n, _)| *n != id) {
                if let Some(row) = self.worker_row(&mut change, &id) {
                    row.revision = revision;
                    change.notify.push((id, revision));
                }
            }
        }
        let outcome = self.commit(change)?;
        Ok((self.summary(generation, true), outcome))
    }

    fn summary(&self, generation: u64, changed: bool) -> PublishSummary {
        let placed = self
            .placements
            .values()
            .filter(|p| p.worker_id.is_some())
            .count() as u32;
        PublishSummary {
            generation,
            changed,
            placed,
            unplaced: self.placements.len() as u32 - placed,
            revision: self.revision,
        }
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
        let capacity_changed;
        let row = match existing {
            Some(mut stored) => {
                capacity_changed = stored.info != info;
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
                capacity_changed = true;
                change.event(
                    generation,
                    EventKind::WorkerRegistered,
                    &id,
                    "",
                    format!(
                        "worker {id} registered: {} CPUs, {} MiB, backends {}",
                        info.cpu,
                        info.memory_mb,
                        info.backends
                            .iter()
                            .map(|b| b.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
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
        let returned = change
            .batch
            .events
            .iter()
            .any(|e| e.kind == EventKind::WorkerReturned);
        change.workers.insert(id.clone(), (row, true));
        if capacity_changed || returned {
            self.reschedule(&mut change, &HashSet::new());
        }
        let revision = change
            .workers
            .get(&id)
            .map(|(w, _)| w.revision)
            .unwrap_or(0);
        let outcome = self.commit(change)?;
        Ok((revision, outcome))
    }

    fn known_worker(&self, id: &str) -> Result<&Worker, RemoteError> {
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
        for r in &reports {
            let before = worker.report(&r.instance_id);
            let (phase, health) = before.map(|b| (b.phase, b.health)).unwrap_or_default();
            if before.is_none() || phase != r.phase {
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
            self.reschedule(&mut change, &HashSet::new());
        }
        let revision = change
            .workers
            .get(worker_id)
            .map(|(w, _)| w.revision)
            .unwrap_or(0);
        let outcome = self.commit(change)?;
        Ok((revision, outcome))
    }

    /// Declares workers whose lease ran out lost, and moves their instances.
    pub fn expire_leases(&mut self, now: Instant) -> Result<Outcome, RemoteError> {
        let expired: Vec<String> = self
            .workers
            .values()
            .filter(|w| w.stored.state != WorkerState::Lost && w.lease_until <= now)
            .map(|w| w.stored.info.id.clone())
            .collect();
        if expired.is_empty() {
            return Ok(Outcome::default());
        }
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
                    "worker {id} is lost: no report for {:.1} s (lease {:.1} s); its instances move",
                    silent_for as f64 / 1000.0,
                    self.config.lease.as_secs_f64()
                ),
            );
        }
        self.reschedule(&mut change, &HashSet::new());
        self.commit(change)
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
        let specs: HashMap<&str, &VmSpec> = self
            .active
            .iter()
            .flat_map(|g| g.specs.iter())
            .map(|s| (s.name.as_str(), s))
            .collect();
        let instances = self
            .placements
            .values()
            .filter(|p| p.worker_id.as_deref() == Some(worker_id))
            .filter_map(|p| {
                specs
                    .get(p.vm_name.as_str())
                    .map(|s| (p.instance_id.clone(), (*s).clone()))
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

    // ---- reading ----

    fn worker_status(&self, w: &Worker) -> WorkerStatus {
        let mut used_cpu = 0i64;
        let mut used_mem = 0i64;
        let mut count = 0u32;
        let specs: HashMap<&str, &VmSpec> = self
            .active
            .iter()
            .flat_map(|g| g.specs.iter())
            .map(|s| (s.name.as_str(), s))
            .collect();
        for p in self.placements.values() {
            if p.worker_id.as_deref() == Some(w.stored.info.id.as_str()) {
                if let Some(s) = specs.get(p.vm_name.as_str()) {
                    used_cpu += s.cpu as i64;
                    used_mem += s.memory_mb as i64;
                }
                count += 1;
            }
        }
        WorkerStatus {
            info: w.stored.info.clone(),
            state: w.stored.state,
            healthy: w.stored.state != WorkerState::Lost,
            free_cpu: w.stored.info.cpu as i64 - used_cpu,
            free_memory_mb: w.stored.info.memory_mb as i64 - used_mem,
            instance_count: count,
            last_heartbeat_ms: w.stored.last_heartbeat_ms,
            observed_generation: w.stored.observed_generation,
            metrics: w.stored.metrics.clone(),
            instances: w.stored.reports.clone(),
        }
    }

    pub fn worker(&self, id: &str) -> Result<WorkerStatus, RemoteError> {
        Ok(self.worker_status(self.known_worker(id)?))
    }

    pub fn status(&self) -> ClusterStatus {
        let specs: HashMap<&str, &VmSpec> = self
            .active
            .iter()
            .flat_map(|g| g.specs.iter())
            .map(|s| (s.name.as_str(), s))
            .collect();
        // Per-worker usage in one pass instead of one pass per worker.
        let mut used: HashMap<&str, (i64, i64, u32)> = HashMap::new();
        let mut instances = Vec::with_capacity(self.placements.len());
        let mut converged = 0usize;
        for p in self.placements.values() {
            let spec = specs.get(p.vm_name.as_str());
            let mut s = InstanceStatus {
                instance_id: p.instance_id.clone(),
                vm_name: p.vm_name.clone(),
                worker_id: p.worker_id.clone().unwrap_or_default(),
                desired_closure: spec.map(|s| s.closure.clone()).unwrap_or_default(),
                unplaced_reason: p.reason.clone(),
                backend: spec.map(|s| s.backend),
                cpu: spec.map(|s| s.cpu).unwrap_or(0),
                memory_mb: spec.map(|s| s.memory_mb).unwrap_or(0),
                phase: Phase::Pending,
                ..Default::default()
            };
            if let Some(wid) = &p.worker_id {
                let u = used.entry(wid.as_str()).or_default();
                u.0 += s.cpu as i64;
                u.1 += s.memory_mb as i64;
                u.2 += 1;
                let worker = self.workers.get(wid);
                let lost = worker.is_none_or(|w| w.stored.state == WorkerState::Lost);
                if let Some(r) = worker.and_then(|w| w.report(&p.instance_id)) {
                    s.observed_closure = r.closure.clone();
                    s.phase = r.phase;
                    s.health = r.health;
                    s.uptime_ms = r.uptime_ms;
                    s.message = r.message.clone();
                    s.restarts = r.restarts;
                    s.cpu_percent = r.cpu_percent;
                    s.memory_bytes = r.memory_bytes;
                }
                if lost {
                    s.phase = Phase::Unknown;
                    s.message = format!("worker {wid} is lost");
                }
                let wants_checks = spec.is_some_and(|sp| !sp.health_checks.is_empty());
                let healthy = if wants_checks {
                    s.health == Health::Healthy
                } else {
                    s.health != Health::Unhealthy
                };
                let ok = !lost
                    && s.phase == Phase::Running
                    && s.observed_closure == s.desired_closure
                    && healthy;
                if ok {
                    converged += 1;
                }
                s.drifted = lost
                    || matches!(s.phase, Phase::Failed | Phase::CrashLoop | Phase::Stopped)
                    || (s.phase == Phase::Running && s.observed_closure != s.desired_closure);
            }
            instances.push(s);
        }
        let workers = self
            .workers
            .values()
            .map(|w| {
                let (cpu, mem, count) = used
                    .get(w.stored.info.id.as_str())
                    .copied()
                    .unwrap_or_default();
                WorkerStatus {
                    info: w.stored.info.clone(),
                    state: w.stored.state,
                    healthy: w.stored.state != WorkerState::Lost,
                    free_cpu: w.stored.info.cpu as i64 - cpu,
                    free_memory_mb: w.stored.info.memory_mb as i64 - mem,
                    instance_count: count,
                    last_heartbeat_ms: w.stored.last_heartbeat_ms,
                    observed_generation: w.stored.observed_generation,
                    metrics: w.stored.metrics.clone(),
                    instances: Vec::new(),
                }
            })
            .collect();
        let total = instances.len();
        ClusterStatus {
            settings: self
                .active
                .as_ref()
                .map(|g| g.settings.clone())
                .unwrap_or_default(),
            active_generation: self.active_generation(),
            commit: self
                .active
                .as_ref()
                .map(|g| g.commit.clone())
                .unwrap_or_default(),
            intent_hash: self
                .active
                .as_ref()
                .map(|g| g.intent_hash.clone())
                .unwrap_or_default(),
            published_at_ms: self.active.as_ref().map(|g| g.published_at_ms).unwrap_or(0),
            convergence_percent: if total == 0 {
                100.0
            } else {
                converged as f32 * 100.0 / total as f32
            },
            workers,
            instances,
            revision: self.revision,
            rollouts: Vec::new(),
            last_good_generation: 0,
        }
    }

    pub fn generations(&self, limit: u32) -> Result<Vec<GenerationInfo>, RemoteError> {
        let limit = if limit == 0 { 100 } else { limit.min(10_000) };
        Ok(self
            .store
            .generations(limit)
            .map_err(internal)?
            .into_iter()
            .map(|g| generation_info(&g))
            .collect())
    }

    pub fn generation(&self, generation: u64) -> Result<(GenerationInfo, Blueprint), RemoteError> {
        let g = self
            .store
            .generation(generation)
            .map_err(internal)?
            .ok_or_else(|| {
                err(
                    ErrorCode::NotFound,
                    format!("there is no generation {generation}"),
                )
            })?;
        Ok((
            generation_info(&g),
            Blueprint {
                cluster: g.settings,
                vms: g.specs,
            },
        ))
    }

    pub fn events(&self, since_seq: u64, limit: u32) -> Result<Vec<Event>, RemoteError> {
        let limit = if limit == 0 { 1000 } else { limit.min(10_000) };
        self.store.events(since_seq, limit).map_err(internal)
    }
}

fn generation_info(g: &StoredGeneration) -> GenerationInfo {
    GenerationInfo {
        generation: g.generation,
        commit: g.commit.clone(),
        intent_hash: g.intent_hash.clone(),
        published_at_ms: g.published_at_ms,
        vm_count: g.specs.len() as u32,
        status: g.status.clone(),
        reason: String::new(),
    }
}

/// What a worker should run.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub generation: u64,
    pub revision: u64,
    pub instances: Vec<(String, VmSpec)>,
}
