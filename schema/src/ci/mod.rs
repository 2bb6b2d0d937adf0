//! The contract of pcr-ci's JSON API and its state directory: the records it answers with
//! (pipelines, steps, log lines, repositories), the requests it takes, and the files other
//! processes on the same host read (`ci.url`, `repos/<name>.git`). pcr-ci serves these types;
//! the command line and repohub read them, with [`client::CiClient`] (feature `ci-client`).

#[cfg(feature = "ci-client")]
pub mod client;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Status {
    Queued,
    Running,
    Succeeded,
    Failed,
}

/// Where one step of a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StepStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
    /// Not run: an earlier step failed, or there was nothing to do.
    Skipped,
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Trigger {
    /// The post-receive hook of a repository pcr-ci serves.
    Push,
    Webhook,
    Poll,
    /// Found at start-up: pushed while pcr-ci was not running.
    Startup,
}

/// What the rollout of a published generation did, as the watcher saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum Rollout {
    /// Not published (failed, checks-only, or unchanged).
    #[default]
    None,
    Converging,
    /// Every changed instance runs the new closure and is healthy.
    Converged,
    /// A newer generation was published before this one converged.
    Superseded,
    /// The deadline passed, or an instance failed; the message says which.
    Stalled,
}

macro_rules! text_enum {
    ($ty:ty { $($variant:ident = $text:literal),* $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $(<$ty>::$variant => $text),* }
            }
            /// The value [`Self::as_str`] wrote, or `None` for a text this build does not know.
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($text => Some(<$ty>::$variant),)*
                    _ => None,
                }
            }
        }
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(Status { Queued = "queued", Running = "running", Succeeded = "succeeded", Failed = "failed" });
text_enum!(StepStatus {
    Pending = "pending",
    Running = "running",
    Succeeded = "succeeded",
    Failed = "failed",
    Skipped = "skipped",
});
text_enum!(Trigger { Push = "push", Webhook = "webhook", Poll = "poll", Startup = "startup" });
text_enum!(Rollout {
    None = "none",
    Converging = "converging",
    Converged = "converged",
    Superseded = "superseded",
    Stalled = "stalled",
});

impl Status {
    pub fn is_finished(self) -> bool {
        matches!(self, Status::Succeeded | Status::Failed)
    }
}

/// A repository pcr-ci builds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Repository {
    pub name: String,
    /// Where to fetch from (webhook and polling); `None` for repositories pushed to directly.
    pub remote: Option<String>,
    /// The branch whose commits are deployed; other branches get checks-only runs.
    pub branch: String,
    pub created_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineSummary {
    pub id: u64,
    pub repository: String,
    pub commit: String,
    pub ref_name: String,
    pub trigger: Trigger,
    pub deploy: bool,
    pub status: Status,
    /// Why it failed, or what it did ("published generation 3", "unchanged: …").
    pub message: String,
    pub created_ms: u64,
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    /// The generation this run published, or that already ran its blueprint.
    pub generation: Option<u64>,
    /// Whether this run published `generation` (false when it was already active).
    pub published: bool,
    pub rollout: Rollout,
    pub rollout_message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepRecord {
    pub index: u32,
    pub name: String,
    pub status: StepStatus,
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    pub exit_code: Option<i32>,
    /// One line: what the step found or did ("3 VMs, 4 instances", "built 2/2").
    pub summary: String,
}

impl StepRecord {
    pub fn duration_ms(&self) -> Option<u64> {
        Some(self.finished_ms?.saturating_sub(self.started_ms?))
    }
}

/// A span of the rollout after publish, from the control plane's view: `schedule`, `fetch`,
/// `boot`, `healthy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PhaseRecord {
    pub name: String,
    pub started_ms: u64,
    pub finished_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineDetail {
    #[serde(flatten)]
    pub summary: PipelineSummary,
    pub intent_hash: Option<String>,
    pub steps: Vec<StepRecord>,
    pub phases: Vec<PhaseRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    pub seq: u64,
    /// Index of the step that wrote it.
    pub step: u32,
    pub ts_ms: u64,
    pub line: String,
}

/// One ref update as git gives it to a post-receive hook.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefUpdate {
    pub old: String,
    pub new: String,
    pub ref_name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushReport {
    pub repository: String,
    pub updates: Vec<RefUpdate>,
}

/// What a push queued, for the hook to print.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Queued {
    pub id: u64,
    pub commit: String,
    pub ref_name: String,
    pub deploy: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogPage {
    pub lines: Vec<LogLine>,
    pub status: Status,
    /// The run is finished and every line has been sent.
    pub done: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewRepository {
    pub name: String,
    #[serde(default)]
    pub remote: Option<String>,
    #[serde(default)]
    pub branch: Option<String>,
}

// ---- the state directory ----

/// Where pcr-ci keeps its bare repositories in its state directory.
pub fn repos_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("repos")
}

/// `http://ADDR` of the running pcr-ci, written at start-up for hooks and the command line.
pub fn url_file(state_dir: &Path) -> PathBuf {
    state_dir.join("ci.url")
}

/// Where `pcr-ci` listens when not told otherwise, and where tools look for it.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7100";

/// The state directory when `--state-dir` is not given: `ci/` in Procurator's state directory.
pub fn default_state_dir() -> PathBuf {
    crate::defaults::state_dir().join("ci")
}

/// Where repository `name` lives.
pub fn bare_path(repos_dir: &Path, name: &str) -> PathBuf {
    repos_dir.join(format!("{name}.git"))
}
