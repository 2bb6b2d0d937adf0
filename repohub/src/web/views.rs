//! What each page shows, as plain data. The HTML page renders it; the `/api/` twin of the
//! page returns it as JSON, so the two cannot disagree.

use std::collections::HashMap;
use std::sync::Arc;

use schema::ci::{PipelineDetail, PipelineSummary};
use serde::Serialize;

use crate::cluster::Snapshot;
use crate::db::{Member, Project, Repository, Role};
use crate::git::Commit;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSummary {
    pub connected: bool,
    pub error: Option<String>,
    pub name: Option<String>,
    pub active_generation: u64,
    pub instances: usize,
    pub running: usize,
    pub workers: usize,
    pub workers_ready: usize,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectRow {
    #[serde(flatten)]
    pub project: Project,
    pub role: Role,
    pub repositories: usize,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HomeView {
    pub user: crate::db::User,
    pub projects: Vec<ProjectRow>,
    pub cluster: ClusterSummary,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectsView {
    pub projects: Vec<ProjectRow>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryRow {
    #[serde(flatten)]
    pub repository: Repository,
    pub last_pipeline: Option<PipelineSummary>,
    pub badge_svg: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineRow {
    /// The repository's name in its project.
    pub repository: String,
    #[serde(flatten)]
    pub pipeline: PipelineSummary,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectView {
    pub project: Project,
    pub role: Role,
    pub members: Vec<Member>,
    pub repositories: Vec<RepositoryRow>,
    pub pipelines: Vec<PipelineRow>,
    /// Why pipelines could not be read from pcr-ci.
    pub ci_error: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelinesView {
    pub project: String,
    pub pipelines: Vec<PipelineRow>,
    pub ci_error: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineView {
    pub project: String,
    pub repository: String,
    pub pipeline: PipelineDetail,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitRow {
    #[serde(flatten)]
    pub commit: Commit,
    /// The newest pipeline of this commit.
    pub pipeline: Option<PipelineSummary>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlakeView {
    pub commit: String,
    pub analysis: Option<autonix::Analysis>,
    pub flake: Option<String>,
    pub error: Option<String>,
    pub own_flake: Option<String>,
    /// The commit whose generated flake this one is compared with.
    pub previous_commit: Option<String>,
    /// Unified diff from the previous generated flake; `None` when unchanged or first.
    pub diff: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryView {
    pub project: String,
    pub role: Role,
    pub repository: Repository,
    /// Where to push (hosted repositories): the bare repository's path on this machine.
    pub push_path: String,
    /// `git clone` URL over HTTP (hosted repositories).
    pub clone_url: String,
    pub badge_svg: String,
    pub badge_json: String,
    pub commits: Vec<CommitRow>,
    pub flake: Option<FlakeView>,
    pub ci_error: Option<String>,
    pub git_error: Option<String>,
}

/// The pipeline that published a generation, when pcr-ci knows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerationLink {
    pub pipeline: u64,
    pub trigger: String,
    /// `project/repository`, or pcr-ci's name when the viewer is not a member.
    pub repository: String,
    /// Set only when the viewer may open the pipeline.
    pub project: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentsView {
    #[serde(serialize_with = "serialize_arc")]
    pub snapshot: Arc<Snapshot>,
    /// Generation → the pipeline that published it.
    pub links: HashMap<u64, GenerationLink>,
}

fn serialize_arc<S: serde::Serializer>(v: &Arc<Snapshot>, s: S) -> Result<S::Ok, S::Error> {
    v.as_ref().serialize(s)
}
