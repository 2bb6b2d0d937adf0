//! The cluster as the control plane knows it, and every request that changes it.
//!
//! Each operation works the same way: check the request, compute a [`Change`] without touching
//! anything (placements via the pure [`crate::scheduler`], rollout steps via [`rollout`]), write
//! it to SQLite as one transaction, and only then apply it to the copy in memory. A refused
//! request or a failed commit leaves both untouched. Operations return an [`Outcome`] naming
//! the events to broadcast and the workers to notify; the RPC layer does that I/O.
//!
//! Every placed instance runs the spec of *its* generation. Publishing makes a generation
//! active; the rollout controller ([`Cluster::tick`]) then moves instances to it — at once when
//! their spec does not change at runtime, otherwise `maxParallel` at a time without taking more
//! than `maxUnavailable` healthy instances down, canaries first when asked. An instance that
//! fails (crash loop, failed, or not healthy by `healthyDeadline`) or a rollout that misses its
//! `progressDeadline` fails the generation; with `autoRollback` the last generation that rolled
//! out completely becomes active again, and the failed one is never rolled out again by itself.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
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

/// What a worker should run.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub generation: u64,
    pub revision: u64,
    pub instances: Vec<(String, VmSpec)>,
}

type SpecMap = Rc<HashMap<String, VmSpec>>;

/// Environment variable carrying the count of operator-requested restarts of an instance.
pub const RESTART_ENV: &str = "PROCURATOR_RESTART";

/// The largest generation accepted: 2^53 − 1, kept exactly by SQLite's and etcd's integers and
/// by every JSON reader (a larger one was once stored as −1 and blocked every later publish).
pub const MAX_GENERATION: u64 = (1 << 53) - 1;

fn spec_map(specs: &[VmSpec]) -> SpecMap {
    Rc::new(specs.iter().map(|s| (s.name.clone(), s.clone())).collect())
}

struct Worker {
    stored: StoredWorker,
    lease_until: Instant,
    reports: HashMap<String, usize>,
    /// Whether the worker has pushed a report in its current session. Its stored reports are
    /// what it saw before it (or the control plane) restarted: until it reports again they say
    /// nothing about what runs now, so they count for nothing (see [`Worker::report`]).
    reported: bool,
}

impl Worker {
    fn new(stored: StoredWorker, lease_until: Instant, reported: bool) -> Worker {
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
            reported,
        }
    }

    /// What the worker reports of `instance` in its current session.
    fn report(&self, instance: &str) -> Option<&InstanceReport> {
        if !self.reported {
            return None;
        }
        self.last_report(instance)
    }

    /// The last report of `instance`, possibly from before a restart: for showing, not deciding.
    fn last_report(&self, instance: &str) -> Option<&InstanceReport> {
        self.reports.get(instance).map(|&i| &self.stored.reports[i])
    }
}

fn view(stored: &StoredWorker) -> WorkerView {
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

/// Everything one request changes; built without side effects, then committed.
struct Change {
    batch: Batch,
    first_seq: u64,
    active: Option<StoredGeneration>,
    latest_generation: Option<u64>,
    last_good: Option<u64>,
    placements: Option<BTreeMap<String, StoredPlacement>>,
    /// New rows for workers, and whether their lease is renewed.
    workers: BTreeMap<String, (StoredWorker, bool)>,
    /// Workers to tell even if their placements did not change (a new generation).
    force_notify: HashSet<String>,
    specs: Vec<(u64, SpecMap)>,
    bad: Vec<u64>,
    /// When the new active generation became active (its progress deadline starts there).
    activated_at: Option<u64>,
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

/// Where one VM's rollout to the active generation stands.
#[derive(Debug, Default)]
struct VmRollout {
    /// Instances that still run an older spec and must restart to move.
    pending: Vec<String>,
    /// Moved, not yet healthy for `minHealthyTime`.
    in_progress: Vec<String>,
    /// Moved and proven.
    proven: usize,
    total: usize,
    /// Instances that serve right now (running, healthy), any generation.
    available: usize,
    /// The first instance that failed the rollout, and why.
    failure: Option<String>,
}

pub struct Cluster {
    store: Store,
    config: Config,
    active: Option<StoredGeneration>,
    /// Highest generation ever published (may differ from active after a rollback).
    latest_generation: u64,
    /// The last generation that rolled out completely.
    last_good: u64,
    /// Specs of the generations that placements run, by generation.
    specs: HashMap<u64, SpecMap>,
    /// Failed or rolled-back generations: never rolled out again by themselves.
    bad: HashSet<u64>,
    workers: BTreeMap<String, Worker>,
    placements: BTreeMap<String, StoredPlacement>,
    revision: u64,
    last_seq: u64,
    /// Reports arrived since the rollout controller last looked.
    dirty: bool,
    /// When the active generation became active (published, or rolled back to).
    activated_at: u64,
    /// Bumped by every committed change: what was read at one version is still true.
    version: u64,
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

fn secs(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
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
        let last_good = store
            .meta("last_good_generation")?
            .and_then(|g| g.parse().ok())
            .unwrap_or(0);
        let revision = store
            .meta("revision")?
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        let lease_until = Instant::now() + config.lease;
        let workers = store
            .workers()?
            .into_iter()
            .map(|stored| {
                (
                    stored.info.id.clone(),
                    Worker::new(stored, lease_until, false),
                )
            })
            .collect();
        let placements: BTreeMap<String, StoredPlacement> = store
            .placements()?
            .into_iter()
            .map(|p| (p.instance_id.clone(), p))
            .collect();
        let mut specs = HashMap::new();
        if let Some(g) = &active {
            specs.insert(g.generation, spec_map(&g.specs));
        }
        let referenced: HashSet<u64> = placements.values().map(|p| p.generation).collect();
        for g in referenced {
            if let std::collections::hash_map::Entry::Vacant(e) = specs.entry(g) {
                if let Some(stored) = store.generation(g)? {
                    e.insert(spec_map(&stored.specs));
                }
            }
        }
        let bad = store.bad_generations()?.into_iter().collect();
        let last_seq = store.last_event_seq()?;
        let activated_at = store
            .meta("activated_at_ms")?
            .and_then(|g| g.parse().ok())
            .or(active.as_ref().map(|g| g.published_at_ms))
            .unwrap_or(0);
        Ok(Cluster {
            store,
            config,
            active,
            latest_generation,
            last_good,
            specs,
            bad,
            workers,
            placements,
            revision,
            last_seq,
            dirty: true,
            activated_at,
            version: 0,
        })
    }

    pub fn config(&self) -> Config {
        self.config
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Changes whenever anything `status()` reports may have changed.
    pub fn version(&self) -> u64 {
        self.version
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
            last_good: None,
            placements: None,
            workers: BTreeMap::new(),
            force_notify: HashSet::new(),
            specs: Vec::new(),
            bad: Vec::new(),
            activated_at: None,
        }
    }

    fn target<'a>(&'a self, change: &'a Change) -> Option<&'a StoredGeneration> {
        change.active.as_ref().or(self.active.as_ref())
    }

    fn spec_at<'a>(&'a self, change: &'a Change, generation: u64, vm: &str) -> Option<&'a VmSpec> {
        change
            .specs
            .iter()
            .rev()
            .find(|(g, _)| *g == generation)
            .map(|(_, m)| m)
            .or_else(|| self.specs.get(&generation))
            .and_then(|m| m.get(vm))
    }

    fn worker_stored<'a>(&'a self, change: &'a Change, id: &str) -> Option<&'a StoredWorker> {
        change
            .workers
            .get(id)
            .map(|(w, _)| w)
            .or_else(|| self.workers.get(id).map(|w| &w.stored))
    }

    fn is_bad(&self, change: &Change, generation: u64) -> bool {
        self.bad.contains(&generation) || change.bad.contains(&generation)
    }

    /// Writes the change in one transaction, then applies it to memory.
    fn commit(&mut self, mut change: Change) -> Result<Outcome, RemoteError> {
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

    // ---- placement ----

    /// Places the target generation's instances again. Instances that stay keep their
    /// generation; new ones get the target's. Also moves instances off draining workers.
    fn reschedule(&self, change: &mut Change) {
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
    fn drain_evictions(
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

    fn worker_row<'a>(&self, change: &'a mut Change, id: &str) -> Option<&'a mut StoredWorker> {
        if !change.workers.contains_key(id) {
            let stored = self.workers.get(id)?.stored.clone();
            change.workers.insert(id.to_string(), (stored, false));
        }
        change.workers.get_mut(id).map(|(w, _)| w)
    }

    /// Whether an instance serves right now: its worker is alive and reports it running its
    /// spec's closure and healthy (or, with no health checks, not unhealthy). With `proven`,
    /// it must also have been up for the rollout's `minHealthyTime`.
    fn serving(&self, change: &Change, p: &StoredPlacement, proven: bool) -> bool {
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
        let Some(r) = worker.report(&p.instance_id) else {
            return false;
        };
        let healthy = if spec.health_checks.is_empty() {
            r.health != Health::Unhealthy
        } else {
            r.health == Health::Healthy
        };
        r.closure == spec.closure
            && r.phase == Phase::Running
            && healthy
            && (!proven || r.uptime_ms >= spec.rollout.min_healthy_time_ms)
    }

    fn classify(
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
            if let Some(r) = report.filter(|r| matches!(r.phase, Phase::Failed | Phase::CrashLoop))
            {
                let detail = if r.message.is_empty() {
                    String::new()
                } else {
                    format!(": {}", r.message)
                };
                out.failure = Some(format!("{} is {}{detail}", p.instance_id, r.phase));
            } else if p.since_ms > 0
                && now.saturating_sub(p.since_ms) > vm.rollout.healthy_deadline_ms
            {
                let state = match report {
                    Some(r) => format!("{}, {}", r.phase, r.health),
                    None => "not reported".to_string(),
                };
                out.failure = Some(format!(
                    "{} was not healthy within healthyDeadline {} ({state})",
                    p.instance_id,
                    secs(vm.rollout.healthy_deadline_ms)
                ));
            }
        }
        out
    }

    /// Moves instances toward the target generation and judges the rollout.
    fn progress(&self, change: &mut Change) {
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
            if !state.pending.is_empty() || !state.in_progress.is_empty() {
                complete = false;
            }
            let activated = change.activated_at.unwrap_or(self.activated_at);
            if now.saturating_sub(activated) > vm.rollout.progress_deadline_ms
                && (!state.pending.is_empty() || !state.in_progress.is_empty())
            {
                failure = Some((
                    format!(
                        "the rollout of {} did not finish within progressDeadline {} ({} of {} instances done)",
                        vm.name,
                        secs(vm.rollout.progress_deadline_ms),
                        state.proven,
                        state.total
                    ),
                    vm.rollout.auto_rollback,
                ));
                break;
            }
            if state.pending.is_empty() {
                continue;
            }
            // Canary: the first `canaryCount` instances, then wait for them to be proven.
            let mut limit = usize::MAX;
            if vm.rollout.strategy == RolloutStrategy::Canary && !promoted.contains(&vm.name) {
                let canaries = vm.rollout.canary_count as usize;
                let moved = state.total - state.pending.len();
                if moved >= canaries {
                    if !state.in_progress.is_empty() {
                        continue;
                    }
                    if vm.rollout.auto_promote {
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
                    } else {
                        continue;
                    }
                } else {
                    limit = canaries - moved;
                }
            }
            let max_parallel = vm.rollout.max_parallel.max(1) as usize;
            let max_unavailable = vm.rollout.max_unavailable.max(1) as usize;
            let mut slots = max_parallel
                .saturating_sub(state.in_progress.len())
                .min(limit);
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
                if serving && unavailable >= max_unavailable {
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
    fn fail(&self, change: &mut Change, target: &StoredGeneration, reason: &str, auto: bool) {
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
        if generation > MAX_GENERATION {
            return refuse(
                ErrorCode::Invalid,
                format!(
                    "generation {generation} is above {MAX_GENERATION}, the largest one every \
                     store and JSON reader keeps exactly; number generations from the latest \
                     ({}) upwards",
                    self.latest_generation
                ),
            );
        }
        if let Err(e) = validate_specs(&specs) {
            return refuse(ErrorCode::Invalid, format!("{e}; nothing was stored"));
        }
        // A worker answered every heartbeat must never stop an instance for being cut off.
        let floor = self.config.heartbeat_interval * 2;
        if let Some(s) = specs.iter().find(|s| {
            s.stop_after_disconnect_ms != 0
                && Duration::from_millis(s.stop_after_disconnect_ms.into()) < floor
        }) {
            return refuse(
                ErrorCode::Invalid,
                format!(
                    "VM {}: stopAfterDisconnectMs {} is shorter than two heartbeats ({} ms), \
                     so a connected worker could stop it; nothing was stored",
                    s.name,
                    s.stop_after_disconnect_ms,
                    floor.as_millis()
                ),
            );
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
                            self.latest_generation.saturating_add(1)
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

        let mut change = self.change();
        if let Some(old) = &self.active {
            if !self.bad.contains(&old.generation) {
                change.batch.generation_status.push((
                    old.generation,
                    "superseded".into(),
                    String::new(),
                ));
            }
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
            reason: String::new(),
            promoted: Vec::new(),
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
        change.specs.push((generation, spec_map(&stored.specs)));
        change.activated_at = Some(stored.published_at_ms);
        change.active = Some(stored);
        change.latest_generation = Some(generation);
        self.reschedule(&mut change);
        self.progress(&mut change);
        // Every worker with instances learns the new generation number.
        change.force_notify = change
            .placements
            .iter()
            .flat_map(|p| p.values())
            .filter_map(|p| p.worker_id.clone())
            .collect();
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

    // ---- operator actions ----

    /// Makes `to` active again (0: the last generation that rolled out completely). The
    /// generation it replaces is recorded as rolled back and is not rolled out again by itself.
    pub fn rollback(&mut self, to: u64) -> Result<(String, Outcome), RemoteError> {
        let Some(active) = self.active.clone() else {
            return Err(err(
                ErrorCode::NotFound,
                "nothing has been published, so there is nothing to roll back",
            ));
        };
        let to = if to != 0 {
            to
        } else if self.last_good != 0 && self.last_good != active.generation {
            self.last_good
        } else {
            let earlier = self
                .store
                .generations(10_000)
                .map_err(internal)?
                .into_iter()
                .find(|g| g.generation < active.generation && !self.bad.contains(&g.generation));
            match earlier {
                Some(g) => g.generation,
                None => {
                    return Err(err(
                        ErrorCode::NotFound,
                        format!("generation {} is the only good generation; there is nothing earlier to roll back to", active.generation),
                    ))
                }
            }
        };
        if to == active.generation {
            return Err(err(
                ErrorCode::Invalid,
                format!("generation {to} is already active"),
            ));
        }
        let Some(mut g) = self.store.generation(to).map_err(internal)? else {
            return Err(err(
                ErrorCode::NotFound,
                format!("there is no generation {to}"),
            ));
        };
        let mut change = self.change();
        let reason = format!("an operator rolled back to generation {to}");
        if !self.bad.contains(&active.generation) {
            change
                .batch
                .generation_status
                .push((active.generation, "rolled-back".into(), reason));
            change.bad.push(active.generation);
        }
        // An explicit command may bring back even a failed generation.
        g.status = "active".into();
        g.reason = String::new();
        change
            .batch
            .generation_status
            .push((to, "active".into(), String::new()));
        change.specs.push((to, spec_map(&g.specs)));
        change.activated_at = Some(now_ms());
        change.event(
            to,
            EventKind::Rollback,
            "",
            "",
            format!(
                "generation {} rolled back to generation {to} by an operator",
                active.generation
            ),
        );
        change.active = Some(g);
        self.reschedule(&mut change);
        // An explicitly chosen generation is not bad any more.
        let was_bad = self.bad.contains(&to);
        if was_bad {
            self.bad.remove(&to);
        }
        self.progress(&mut change);
        change.force_notify = change
            .placements
            .iter()
            .flat_map(|p| p.values())
            .filter_map(|p| p.worker_id.clone())
            .collect();
        match self.commit(change) {
            Ok(outcome) => Ok((
                format!(
                    "generation {to} is active again; generation {} is rolled back",
                    active.generation
                ),
                outcome,
            )),
            Err(e) => {
                if was_bad {
                    self.bad.insert(to);
                }
                Err(e)
            }
        }
    }

    pub fn promote(&mut self, vm: &str) -> Result<(String, Outcome), RemoteError> {
        let Some(active) = self.active.clone() else {
            return Err(err(ErrorCode::NotFound, "nothing has been published"));
        };
        let Some(spec) = active.specs.iter().find(|s| s.name == vm) else {
            return Err(err(
                ErrorCode::NotFound,
                format!("generation {} has no VM named {vm}", active.generation),
            ));
        };
        if spec.rollout.strategy != RolloutStrategy::Canary {
            return Err(err(
                ErrorCode::Invalid,
                format!("{vm} does not roll out with canaries; there is nothing to promote"),
            ));
        }
        if active.promoted.iter().any(|p| p == vm) {
            return Ok((format!("{vm} was already promoted"), Outcome::default()));
        }
        let mut change = self.change();
        let mut g = active.clone();
        g.promoted.push(vm.to_string());
        change
            .batch
            .generation_promoted
            .push((g.generation, g.promoted.clone()));
        change.event(
            g.generation,
            EventKind::Rollout,
            "",
            "",
            format!("{vm}: canary promoted by an operator"),
        );
        change.active = Some(g);
        self.progress(&mut change);
        let outcome = self.commit(change)?;
        Ok((
            format!("{vm} promoted: the rollout continues to every instance"),
            outcome,
        ))
    }

    /// Cordon, uncordon or drain.
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

    fn rollout_waiting(&self) -> bool {
        self.active
            .as_ref()
            .is_some_and(|g| g.generation != self.last_good && !self.bad.contains(&g.generation))
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

    // ---- reading ----

    pub fn worker(&self, id: &str) -> Result<WorkerStatus, RemoteError> {
        let w = self.known_worker(id)?;
        let status = self.status();
        let mut ws = status
            .workers
            .into_iter()
            .find(|s| s.info.id == id)
            .unwrap_or_default();
        ws.instances = w.stored.reports.clone();
        Ok(ws)
    }

    pub fn status(&self) -> ClusterStatus {
        let empty = self.change();
        let spec_of = |p: &StoredPlacement| {
            self.specs
                .get(&p.generation)
                .and_then(|m| m.get(&p.vm_name))
        };
        let target_specs: HashMap<&str, &VmSpec> = self
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
            let spec = spec_of(p).or_else(|| target_specs.get(p.vm_name.as_str()).copied());
            let desired = target_specs.get(p.vm_name.as_str()).copied().or(spec);
            let mut s = InstanceStatus {
                instance_id: p.instance_id.clone(),
                vm_name: p.vm_name.clone(),
                worker_id: p.worker_id.clone().unwrap_or_default(),
                desired_closure: desired.map(|s| s.closure.clone()).unwrap_or_default(),
                unplaced_reason: p.reason.clone(),
                backend: spec.map(|s| s.backend),
                cpu: spec.map(|s| s.cpu).unwrap_or(0),
                memory_mb: spec.map(|s| s.memory_mb).unwrap_or(0),
                phase: Phase::Pending,
                generation: p.generation,
                ..Default::default()
            };
            if let Some(wid) = &p.worker_id {
                let u = used.entry(wid.as_str()).or_default();
                u.0 += s.cpu as i64;
                u.1 += s.memory_mb as i64;
                u.2 += 1;
                let worker = self.workers.get(wid);
                let lost = worker.is_none_or(|w| w.stored.state == WorkerState::Lost);
                if let Some(r) = worker.and_then(|w| w.last_report(&p.instance_id)) {
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
                } else if worker.is_some_and(|w| !w.reported) {
                    // Shown as last seen, counted as unknown: the worker (or the control plane)
                    // restarted since, and only its next report says what runs.
                    let last = s.phase;
                    s.phase = Phase::Unknown;
                    s.health = Health::Unknown;
                    s.message = format!(
                        "{last} when last reported; waiting for worker {wid} to report again"
                    );
                }
                let ok = !lost
                    && s.observed_closure == s.desired_closure
                    && self.serving(&empty, p, false);
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
            rollouts: self.rollouts(&empty),
            last_good_generation: self.last_good,
        }
    }

    fn rollouts(&self, empty: &Change) -> Vec<RolloutStatus> {
        let Some(target) = &self.active else {
            return Vec::new();
        };
        let failed = self.bad.contains(&target.generation);
        let now = now_ms();
        let by_vm = group_by_vm(&self.placements);
        let none: Vec<String> = Vec::new();
        target
            .specs
            .iter()
            .map(|vm| {
                let ids = by_vm.get(&vm.name).unwrap_or(&none);
                let st = self.classify(empty, &self.placements, ids, target, vm, now);
                let waiting = vm.rollout.strategy == RolloutStrategy::Canary
                    && !target.promoted.contains(&vm.name)
                    && !st.pending.is_empty()
                    && st.in_progress.is_empty()
                    && st.total - st.pending.len() >= vm.rollout.canary_count as usize;
                let (phase, message) = if failed {
                    (RolloutPhase::Failed, "the generation failed".to_string())
                } else if waiting && !vm.rollout.auto_promote {
                    (
                        RolloutPhase::WaitingForPromotion,
                        format!(
                            "canary healthy; `pcr-test rollout promote {}` continues",
                            vm.name
                        ),
                    )
                } else if st.pending.is_empty() && st.in_progress.is_empty() {
                    (RolloutPhase::Complete, String::new())
                } else {
                    (
                        RolloutPhase::Progressing,
                        format!(
                            "{} waiting, {} starting",
                            st.pending.len(),
                            st.in_progress.len()
                        ),
                    )
                };
                RolloutStatus {
                    vm_name: vm.name.clone(),
                    phase,
                    generation: target.generation,
                    updated: st.proven as u32,
                    total: st.total as u32,
                    message,
                }
            })
            .collect()
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

fn group_by_vm(placements: &BTreeMap<String, StoredPlacement>) -> HashMap<String, Vec<String>> {
    let mut by_vm: HashMap<String, Vec<String>> = HashMap::new();
    for p in placements.values() {
        by_vm
            .entry(p.vm_name.clone())
            .or_default()
            .push(p.instance_id.clone());
    }
    by_vm
}

fn p_worker<'a>(placements: &'a BTreeMap<String, StoredPlacement>, id: &str) -> &'a str {
    placements
        .get(id)
        .and_then(|p| p.worker_id.as_deref())
        .unwrap_or("")
}

fn generation_info(g: &StoredGeneration) -> GenerationInfo {
    GenerationInfo {
        generation: g.generation,
        commit: g.commit.clone(),
        intent_hash: g.intent_hash.clone(),
        published_at_ms: g.published_at_ms,
        vm_count: g.specs.len() as u32,
        status: g.status.clone(),
        reason: g.reason.clone(),
    }
}
