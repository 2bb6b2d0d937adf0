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
//!
//! Layout: [`change`] is the one write path (a [`Change`] built without side effects, committed
//! to the [`Store`] in one transaction, then applied to memory); [`generations`] publishes,
//! rolls back and promotes; [`placement`] runs the scheduler; [`rollout`] holds the pure
//! rollout decisions and [`progress`] the controller that applies them; [`workers`] registers
//! workers, takes their reports and expires their leases; [`views`] answers status and events.

mod change;
mod generations;
mod placement;
mod progress;
pub mod rollout;
mod views;
mod workers;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use schema::model::*;
use schema::{ErrorCode, RemoteError};
use support::now_ms;

use crate::store::{Store, StoreError, StoredGeneration, StoredPlacement, StoredWorker};

use self::change::Change;
use self::rollout::{secs, VmRollout};

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

pub struct Cluster {
    store: Box<dyn Store>,
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
    pub fn load(store: impl Store + 'static, config: Config) -> Result<Cluster, StoreError> {
        let snapshot = store.load()?;
        let lease_until = Instant::now() + config.lease;
        let workers = snapshot
            .workers
            .into_iter()
            .map(|stored| {
                (
                    stored.info.id.clone(),
                    Worker::new(stored, lease_until, false),
                )
            })
            .collect();
        let placements: BTreeMap<String, StoredPlacement> = snapshot
            .placements
            .into_iter()
            .map(|p| (p.instance_id.clone(), p))
            .collect();
        let specs: HashMap<u64, SpecMap> = snapshot
            .active
            .iter()
            .chain(&snapshot.referenced)
            .map(|g| (g.generation, spec_map(&g.specs)))
            .collect();
        let activated_at = snapshot
            .activated_at_ms
            .or(snapshot.active.as_ref().map(|g| g.published_at_ms))
            .unwrap_or(0);
        Ok(Cluster {
            store: Box::new(store),
            config,
            active: snapshot.active,
            latest_generation: snapshot.latest_generation,
            last_good: snapshot.last_good,
            specs,
            bad: snapshot.bad.into_iter().collect(),
            workers,
            placements,
            revision: snapshot.revision,
            last_seq: snapshot.last_seq,
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

#[cfg(test)]
mod tests;
