//! The running service: the queue of every repository, the HTTP endpoints (the JSON API the
//! command line and repohub read, the post-receive endpoint the hooks call, the webhook), and
//! the poller.
//!
//! Routes (all JSON; errors are `{"error": "<sentence>"}`):
//!
//! | route | what |
//! |---|---|
//! | `GET /api/pipelines?repository=&limit=` | runs, newest first |
//! | `GET /api/pipelines/{id}` | one run with its steps and rollout phases |
//! | `GET /api/pipelines/{id}/logs?after=&waitMs=` | log lines after `after`; waits up to `waitMs` for new ones (live view) |
//! | `GET /api/repositories`, `POST /api/repositories` | the repositories; create one (`{"name", "remote"?, "branch"?}`) |
//! | `POST /hooks/post-receive` | a push reported by a repository's hook (bearer hook token) |
//! | `POST /webhook/{repository}` | a Gitea/GitHub push delivery (HMAC-signed) |
//! | `GET /healthz` | liveness |

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::pipeline::{RepoThread, Shared};
use crate::repos::{self, HookTarget};
use crate::store::{ListFilter, NewPipeline, Repository, Store, StoreError, Trigger};
use crate::webhook::{self, PushEvent};

/// The service: shared state behind every endpoint.
pub struct Ci {
    pub config: Arc<Config>,
    pub store: Arc<Store>,
    hook_token: String,
    jobs: Arc<Semaphore>,
    threads: Mutex<HashMap<String, RepoThread>>,
}

// What the JSON API takes and answers is the contract in `schema::ci`.
pub use schema::ci::{LogPage, NewRepository, PushReport, Queued, RefUpdate};

#[derive(Debug, thiserror::Error)]
pub enum CiError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Git(#[from] repos::GitError),
    #[error("repository {0} does not exist; create it with `pcr-ci repo create {0}`")]
    NoRepository(String),
    #[error("cannot start the pipeline thread of {0}")]
    Thread(String, #[source] std::io::Error),
}

/// The deploy branch of a new repository when none is given.
pub const DEFAULT_BRANCH: &str = "main";

impl Ci {
    pub fn new(config: Config, store: Arc<Store>, hook_token: String) -> Arc<Ci> {
        let jobs = Arc::new(Semaphore::new(config.jobs.max(1)));
        Arc::new(Ci {
            config: Arc::new(config),
            store,
            hook_token,
            jobs,
            threads: Mutex::new(HashMap::new()),
        })
    }

    fn hook_target(&self) -> HookTarget {
        HookTarget {
            exe: self.config.exe.clone(),
            state_dir: self.config.state_dir.clone(),
        }
    }

    /// Creates a repository (bare repo, hook, record); an existing one is left as it is.
    pub async fn create_repository(
        &self,
        new: &NewRepository,
    ) -> Result<(Repository, bool), CiError> {
        let branch = new.branch.clone().unwrap_or_else(|| DEFAULT_BRANCH.into());
        let created = create_repository(
            &self.config.repos_dir(),
            &self.store,
            &self.hook_target(),
            &new.name,
            new.remote.clone(),
            &branch,
        )
        .await?;
        let repo = self
            .store
            .repository(&new.name)?
            .ok_or_else(|| CiError::NoRepository(new.name.clone()))?;
        Ok((repo, created))
    }

    /// Records a run and hands it to its repository's thread.
    pub fn enqueue(&self, new: NewPipeline) -> Result<u64, CiError> {
        let id = self.store.create_pipeline(&new)?;
        tracing::info!(pipeline = id, repository = %new.repository, commit = %new.commit, trigger = %new.trigger, "pipeline queued");
        self.dispatch(id, &new.repository)?;
        Ok(id)
    }

    fn dispatch(&self, id: u64, repository: &str) -> Result<(), CiError> {
        let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(thread) = threads.get(repository) {
            if thread.send(id) {
                return Ok(());
            }
        }
        let shared = Shared {
            config: Arc::clone(&self.config),
            store: Arc::clone(&self.store),
            jobs: Arc::clone(&self.jobs),
        };
        let thread = RepoThread::spawn(shared, repository)
            .map_err(|e| CiError::Thread(repository.to_string(), e))?;
        thread.send(id);
        threads.insert(repository.to_string(), thread);
        Ok(())
    }

    /// Queues runs for a push reported by a hook: the deploy branch deploys, other branches
    /// get checks; tags and deletions are ignored.
    pub fn push(&self, report: &PushReport, trigger: Trigger) -> Result<Vec<Queued>, CiError> {
        let repo = self
            .store
            .repository(&report.repository)?
            .ok_or_else(|| CiError::NoRepository(report.repository.clone()))?;
        let mut queued = Vec::new();
        for update in &report.updates {
            let Some(branch) = update.ref_name.strip_prefix("refs/heads/") else {
                continue;
            };
            if repos::is_zero(&update.new) || !repos::is_commit_id(&update.new) {
                continue;
            }
            let deploy = branch == repo.branch;
            let id = self.enqueue(NewPipeline {
                repository: repo.name.clone(),
                commit: update.new.clone(),
                ref_name: update.ref_name.clone(),
                trigger,
                deploy,
            })?;
            queued.push(Queued {
                id,
                commit: update.new.clone(),
                ref_name: update.ref_name.clone(),
                deploy,
            });
        }
        Ok(queued)
    }

    /// After a (re)start: runs cut off are failed, queued ones resume, hooks are rewritten,
    /// and deploy-branch commits pushed while pcr-ci was down are queued.
    pub async fn recover(&self) -> Result<(), CiError> {
        for id in self.store.interrupt_running()? {
            tracing::warn!(pipeline = id, "run was interrupted by a restart");
        }
        for (id, repository) in self.store.queued()? {
            self.dispatch(id, &repository)?;
        }
        for repo in self.store.repositories()? {
            let bare = repos::bare_path(&self.config.repos_dir(), &repo.name);
            if !bare.join("HEAD").exists() {
                tracing::warn!(repository = %repo.name, path = %bare.display(), "repository is recorded but its directory is gone");
                continue;
            }
            repos::install_hook(&bare, &repo.name, &self.hook_target())?;
            if let Some(head) = repos::branch_head(&bare, &repo.branch).await? {
                if !self.store.has_pipeline(&repo.name, &head, true)? {
                    self.enqueue(NewPipeline {
                        repository: repo.name.clone(),
                        commit: head,
                        ref_name: format!("refs/heads/{}", repo.branch),
                        trigger: Trigger::Startup,
                        deploy: true,
                    })?;
                }
            }
        }
        Ok(())
    }

    /// Asks every remote for its deploy branch and queues commits not built yet.
    pub async fn poll_once(&self) -> Result<(), CiError> {
        for repo in self.store.repositories()? {
            let Some(remote) = &repo.remote else { continue };
            match repos::ls_remote(remote, &repo.branch).await {
                Ok(Some(sha)) if !self.store.has_pipeline(&repo.name, &sha, true)? => {
                    self.enqueue(NewPipeline {
                        repository: repo.name.clone(),
                        commit: sha,
                        ref_name: format!("refs/heads/{}", repo.branch),
                        trigger: Trigger::Poll,
                        deploy: true,
                    })?;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(repository = %repo.name, %remote, error = %e, "polling failed")
                }
            }
        }
        Ok(())
    }

    /// Polls forever at the configured interval (not at all when it is zero).
    pub async fn poll_forever(self: Arc<Self>) {
        if self.config.poll_interval.is_zero() {
            return;
        }
        let mut tick = tokio::time::interval(self.config.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.poll_once().await {
                tracing::warn!(error = %e, "polling failed");
            }
        }
    }
}

/// Creates the bare repository, its hook and its record. Shared by the API and `pcr-ci repo
/// create` (which works on the state directory without a running service).
pub async fn create_repository(
    repos_dir: &std::path::Path,
    store: &Store,
    hook: &HookTarget,
    name: &str,
    remote: Option<String>,
    branch: &str,
) -> Result<bool, CiError> {
    repos::validate_name(name)?;
    repos::validate_branch(branch)?;
    if let Some(remote) = &remote {
        repos::validate_remote(remote)?;
    }
    let created = repos::create_bare(repos_dir, name, branch, hook).await?;
    let recorded = store.add_repository(&Repository {
        name: name.to_string(),
        remote,
        branch: branch.to_string(),
        created_ms: crate::now_ms(),
    })?;
    Ok(created || recorded)
}

/// The routes; see the module documentation.
pub fn router(ci: Arc<Ci>) -> Router {
    // Everything under /api/ acts on the cluster (a new repository is built and published with
    // the operator token) or shows its logs: it takes the same credential as the control plane.
    let api = Router::new()
        .route("/api/pipelines", get(list_pipelines))
        .route("/api/pipelines/{id}", get(get_pipeline))
        .route("/api/pipelines/{id}/logs", get(get_logs))
        .route(
            "/api/repositories",
            get(list_repositories).post(post_repository),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&ci),
            require_operator,
        ));
    Router::new()
        .merge(api)
        .route("/hooks/post-receive", post(post_receive))
        .route("/webhook/{repository}", post(post_webhook))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(ci)
}

struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            crate::pipeline::error_chain(&e),
        )
    }
}

impl From<CiError> for ApiError {
    fn from(e: CiError) -> Self {
        let status = match &e {
            CiError::NoRepository(_) => StatusCode::NOT_FOUND,
            CiError::Git(
                repos::GitError::Name(_)
                | repos::GitError::Remote(_)
                | repos::GitError::Branch(_)
                | repos::GitError::Commit(_),
            ) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, crate::pipeline::error_chain(&e))
    }
}

#[derive(Deserialize)]
struct ListQuery {
    repository: Option<String>,
    #[serde(default)]
    limit: u32,
}

async fn list_pipelines(
    State(ci): State<Arc<Ci>>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let list = ci.store.pipelines(&ListFilter {
        repository: q.repository,
        limit: q.limit,
    })?;
    Ok(Json(list).into_response())
}

async fn get_pipeline(
    State(ci): State<Arc<Ci>>,
    Path(id): Path<u64>,
) -> Result<Response, ApiError> {
    match ci.store.pipeline(id)? {
        Some(detail) => Ok(Json(detail).into_response()),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("there is no pipeline {id}"),
        )),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogQuery {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    wait_ms: u64,
}

/// Longest a log request waits for new lines.
const MAX_WAIT: Duration = Duration::from_secs(30);

async fn get_logs(
    State(ci): State<Arc<Ci>>,
    Path(id): Path<u64>,
    Query(q): Query<LogQuery>,
) -> Result<Response, ApiError> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(q.wait_ms).min(MAX_WAIT);
    let mut changed = ci.store.subscribe();
    loop {
        // Subscribe before reading, so a line written in between wakes us.
        changed.borrow_and_update();
        let Some(detail) = ci.store.pipeline(id)? else {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("there is no pipeline {id}"),
            ));
        };
        let lines = ci.store.logs(id, q.after, 5_000)?;
        let finished = detail.summary.status.is_finished();
        if !lines.is_empty() || finished || tokio::time::Instant::now() >= deadline {
            // Finished runs write no more lines; `done` once the reader has them all.
            let done = finished && lines.len() < 5_000;
            return Ok(Json(LogPage {
                lines,
                status: detail.summary.status,
                done,
            })
            .into_response());
        }
        if tokio::time::timeout_at(deadline, changed.changed())
            .await
            .is_err()
        {
            continue;
        }
    }
}

async fn list_repositories(State(ci): State<Arc<Ci>>) -> Result<Response, ApiError> {
    Ok(Json(ci.store.repositories()?).into_response())
}

async fn post_repository(
    State(ci): State<Arc<Ci>>,
    Json(new): Json<NewRepository>,
) -> Result<Response, ApiError> {
    let (repo, created) = ci.create_repository(&new).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(repo)).into_response())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// Refuses an API request that does not carry the cluster's operator token.
async fn require_operator(
    State(ci): State<Arc<Ci>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let token = &ci.config.operator_token;
    if !token.is_empty() && bearer(request.headers()).is_some_and(|t| same_secret(t, token)) {
        return next.run(request).await;
    }
    ApiError(
        StatusCode::UNAUTHORIZED,
        "pcr-ci's API needs the cluster's operator token: send `Authorization: Bearer <token>` \
         with the control plane's operator.token (pcr reads it from $PROCURATOR_HOME, repohub \
         from --operator-token-file)"
            .into(),
    )
    .into_response()
}

/// Equal-time comparison of secrets, so response timing says nothing about the token.
fn same_secret(a: &str, b: &str) -> bool {
    use sha2::{Digest, Sha256};
    Sha256::digest(a.as_bytes()) == Sha256::digest(b.as_bytes())
}

async fn post_receive(
    State(ci): State<Arc<Ci>>,
    headers: HeaderMap,
    Json(report): Json<PushReport>,
) -> Result<Response, ApiError> {
    if !bearer(&headers).is_some_and(|t| same_secret(t, &ci.hook_token)) {
        return Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "the hook token is missing or wrong".into(),
        ));
    }
    let queued = ci.push(&report, Trigger::Push)?;
    Ok(Json(queued).into_response())
}

async fn post_webhook(
    State(ci): State<Arc<Ci>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    // Nothing about the request is looked at before its signature checks out.
    if let Err(e) = webhook::verify(ci.config.webhook_secret.as_deref(), &body, header) {
        tracing::warn!(repository = %name, error = %e, "webhook refused");
        return Err(ApiError(StatusCode::UNAUTHORIZED, e.to_string()));
    }
    match webhook::event_kind(header) {
        "push" => {}
        "ping" => return Ok(Json(serde_json::json!({ "ok": "pong" })).into_response()),
        other => {
            return Ok((StatusCode::ACCEPTED, Json(serde_json::json!({ "ignored": format!("`{other}` events do not start pipelines") }))).into_response());
        }
    }
    let event = PushEvent::parse(&body)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, schema::error_chain(&e)))?;
    let repo = ci
        .store
        .repository(&name)?
        .ok_or_else(|| CiError::NoRepository(name.clone()))?;
    if repo.remote.is_none() {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("repository {name} has no remote to fetch from; create it with `pcr-ci repo create {name} --remote URL`"),
        ));
    }
    let report = PushReport {
        repository: name,
        updates: vec![RefUpdate {
            old: String::new(),
            new: event.after.clone(),
            ref_name: event.ref_name.clone(),
        }],
    };
    let queued = ci.push(&report, Trigger::Webhook)?;
    Ok((StatusCode::ACCEPTED, Json(queued)).into_response())
}
