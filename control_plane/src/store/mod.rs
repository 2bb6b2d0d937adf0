//! Where the cluster's state persists, behind one seam.
//!
//! The cluster keeps the whole state in memory and changes it only through
//! [`Store::apply`]: one [`Batch`] per request, committed atomically or not at all, before memory
//! changes. At start it reads everything back with [`Store::load`]. History that is only read on
//! request (old generations, events) is asked for when needed. That is all a backend must do,
//! so a transactional key-value store (etcd, with a leadership compare in each commit) can take
//! the place of [`sqlite::SqliteStore`].

pub mod sqlite;

use schema::model::{
    ClusterSettings, Event, InstanceReport, VmSpec, WorkerInfo, WorkerMetrics, WorkerState,
};

pub use self::sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database {path}")]
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "database is from a newer Procurator (schema version {found}, this build knows {known})"
    )]
    TooNew { found: i64, known: i64 },
    #[error("database error")]
    Sql(#[from] rusqlite::Error),
    #[error("stored JSON is unreadable")]
    Json(#[from] serde_json::Error),
    /// A failure of a backend other than SQLite.
    #[error("the state store failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// What persists the cluster. Every method sees a consistent state: the effects of every
/// `apply` that returned `Ok`, and none of one that failed.
pub trait Store {
    /// Everything the cluster keeps in memory, read once at start.
    fn load(&self) -> Result<Snapshot>;
    /// Commits one request's changes atomically: all of them or, on error, none.
    fn apply(&mut self, batch: &Batch) -> Result<()>;
    /// The newest `limit` generations, newest first.
    fn generations(&self, limit: u32) -> Result<Vec<StoredGeneration>>;
    fn generation(&self, generation: u64) -> Result<Option<StoredGeneration>>;
    /// Events after `since_seq`, oldest first, at most `limit`.
    fn events(&self, since_seq: u64, limit: u32) -> Result<Vec<Event>>;
}

/// The state [`Store::load`] hands the cluster at start.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Highest generation ever published (may differ from the active one after a rollback).
    pub latest_generation: u64,
    pub active: Option<StoredGeneration>,
    /// The last generation that rolled out completely.
    pub last_good: u64,
    /// When the active generation became active (unix ms), if recorded.
    pub activated_at_ms: Option<u64>,
    /// The assignment revision.
    pub revision: u64,
    pub workers: Vec<StoredWorker>,
    pub placements: Vec<StoredPlacement>,
    /// Generations other than the active one that some placement still runs.
    pub referenced: Vec<StoredGeneration>,
    /// Failed or rolled-back generations.
    pub bad: Vec<u64>,
    /// The sequence number of the last event.
    pub last_seq: u64,
}

/// Events kept in the database; older ones are pruned as new ones arrive.
pub const EVENTS_KEPT: u64 = 50_000;

/// A generation row.
#[derive(Debug, Clone)]
pub struct StoredGeneration {
    pub generation: u64,
    pub commit: String,
    pub intent_hash: String,
    pub content_hash: String,
    pub published_at_ms: u64,
    pub settings: ClusterSettings,
    pub specs: Vec<VmSpec>,
    pub status: String,
    pub reason: String,
    /// VMs whose canary rollout was promoted.
    pub promoted: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct StoredWorker {
    pub info: WorkerInfo,
    pub state: WorkerState,
    pub registered_at_ms: u64,
    pub last_heartbeat_ms: u64,
    pub observed_generation: u64,
    pub reports: Vec<InstanceReport>,
    pub metrics: WorkerMetrics,
    pub revision: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPlacement {
    pub instance_id: String,
    pub vm_name: String,
    pub worker_id: Option<String>,
    pub reason: String,
    /// The generation whose spec the instance runs.
    pub generation: u64,
    /// When it was given that generation (unix ms): the start of its healthy deadline.
    pub since_ms: u64,
    /// Restarts an operator asked for; delivered as PROCURATOR_RESTART in its assignment.
    pub restarts: u64,
}

/// Everything one request changes, written in one transaction.
#[derive(Default)]
pub struct Batch {
    pub generation: Option<StoredGeneration>,
    /// (generation, new status, reason)
    pub generation_status: Vec<(u64, String, String)>,
    /// (generation, promoted VMs)
    pub generation_promoted: Vec<(u64, Vec<String>)>,
    pub workers: Vec<StoredWorker>,
    pub placements_upsert: Vec<StoredPlacement>,
    pub placements_delete: Vec<String>,
    pub meta: Vec<(&'static str, String)>,
    pub events: Vec<Event>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.generation.is_none()
            && self.generation_status.is_empty()
            && self.generation_promoted.is_empty()
            && self.workers.is_empty()
            && self.placements_upsert.is_empty()
            && self.placements_delete.is_empty()
            && self.meta.is_empty()
            && self.events.is_empty()
    }
}
