//! One pipeline run, step by step: checkout, `nix flake check`, eval, build, push, pin,
//! publish. Each step records its start, end, exit code and every line it prints; the first
//! failing step ends the run with a sentence naming the error, and nothing after it runs — in
//! particular nothing is published, so the running generation stays.
//!
//! Runs execute on a [`RepoThread`]: one thread per repository with its own single-threaded
//! runtime and `LocalSet` (capnp-rpc is `!Send`), taking runs from a queue in push order. That
//! order is what makes generations follow commit order.

use std::path::Path;
use std::sync::Arc;

use schema::client::{ClientError, MasterClient};
use schema::model::Blueprint;
use schema::ErrorCode;
use support::nix::first_error;
use tokio::sync::{mpsc, Semaphore};

use crate::config::Config;
use crate::nix::{self, LogReader};
use crate::process::{self, Stream};
use crate::repos;
use crate::rollout::{self, Tracker};
use crate::store::{Repository, Status, StepStatus, Store};

/// Steps of a run on the deploy branch.
pub const DEPLOY_STEPS: [&str; 7] = [
    "checkout", "check", "eval", "build", "push", "pin", "publish",
];
/// Steps of a run on any other branch: it shows whether the commit would deploy.
pub const CHECK_STEPS: [&str; 4] = ["checkout", "check", "eval", "build"];

/// Index of `publish` in [`DEPLOY_STEPS`].
const PUBLISH_STEP: u32 = 6;

/// Attempts at publishing when another publisher takes the generation number in between.
const PUBLISH_ATTEMPTS: u32 = 5;

/// What the runs of every repository share.
#[derive(Clone)]
pub struct Shared {
    pub config: Arc<Config>,
    pub store: Arc<Store>,
    /// Runs of different repositories that may build at once.
    pub jobs: Arc<Semaphore>,
}

/// The queue and thread of one repository.
pub struct RepoThread {
    tx: mpsc::UnboundedSender<u64>,
}

impl RepoThread {
    pub fn spawn(shared: Shared, repository: &str) -> std::io::Result<RepoThread> {
        let (tx, rx) = mpsc::unbounded_channel();
        support::runtime::spawn_local_thread(format!("pipeline-{repository}"), move || {
            consume(shared, rx)
        })?;
        Ok(RepoThread { tx })
    }

    /// Queues run `id`; false when the thread is gone.
    pub fn send(&self, id: u64) -> bool {
        self.tx.send(id).is_ok()
    }
}

async fn consume(shared: Shared, mut rx: mpsc::UnboundedReceiver<u64>) {
    let mut runner = Runner {
        shared,
        master: None,
        http: reqwest::Client::new(),
    };
    while let Some(id) = rx.recv().await {
        runner.run(id).await;
    }
}

/// A failed step's sentence: what the run's message becomes.
struct Failed(String);

/// The step being run: where its lines go.
struct Step {
    store: Arc<Store>,
    id: u64,
    index: u32,
}

impl Step {
    fn log(&self, line: &str) {
        if let Err(e) = self.store.append_log(self.id, self.index, line) {
            tracing::warn!(pipeline = self.id, error = %e, "cannot record a log line");
        }
    }

    fn finish(&self, status: StepStatus, exit_code: Option<i32>, summary: &str) {
        if let Err(e) = self
            .store
            .step_finished(self.id, self.index, status, exit_code, summary)
        {
            tracing::warn!(pipeline = self.id, error = %e, "cannot record a step");
        }
    }
}

struct Runner {
    shared: Shared,
    master: Option<MasterClient>,
    http: reqwest::Client,
}

/// What the steps found, handed from one to the next.
struct Evaluated {
    blueprint: Blueprint,
    intent: String,
    checks: Vec<String>,
}

impl Runner {
    async fn run(&mut self, id: u64) {
        let store = Arc::clone(&self.shared.store);
        let summary = match store.pipeline(id) {
            Ok(Some(detail)) if detail.summary.status == Status::Queued => detail.summary,
            Ok(_) => return,
            Err(e) => {
                tracing::error!(pipeline = id, error = %e, "cannot read the run");
                return;
            }
        };
        let repository = match store.repository(&summary.repository) {
            Ok(Some(r)) => r,
            Ok(None) => {
                let _ = store.finish_pipeline(
                    id,
                    Status::Failed,
                    &format!("repository {} is not known to pcr-ci", summary.repository),
                );
                return;
            }
            Err(e) => {
                tracing::error!(pipeline = id, error = %e, "cannot read the repository");
                return;
            }
        };
        let jobs = Arc::clone(&self.shared.jobs);
        let _permit = jobs.acquire().await;
        let steps: &[&str] = if summary.deploy {
            &DEPLOY_STEPS
        } else {
            &CHECK_STEPS
        };
        if let Err(e) = store.start_pipeline(id, steps) {
            tracing::error!(pipeline = id, error = %e, "cannot start the run");
            return;
        }
        tracing::info!(pipeline = id, repository = %repository.name, commit = %summary.commit, "pipeline started");
        let work = self.shared.config.work_dir().join(id.to_string());
        let _ = std::fs::remove_dir_all(&work);
        let outcome = self
            .execute(id, &repository, &summary.commit, summary.deploy, &work)
            .await;
        // The checkout is a throwaway: nix has copied what it needs into the store.
        let _ = std::fs::remove_dir_all(&work);
        let (status, message) = match outcome {
            Ok(message) => (Status::Succeeded, message),
            Err(Failed(message)) => (Status::Failed, message),
        };
        tracing::info!(pipeline = id, %status, %message, "pipeline finished");
        if let Err(e) = store.finish_pipeline(id, status, &message) {
            tracing::error!(pipeline = id, error = %e, "cannot record the outcome");
        }
    }

    fn step(&self, id: u64, name: &str) -> Step {
        let steps: &[&str] = &DEPLOY_STEPS;
        let index = steps.iter().position(|s| *s == name).unwrap_or(0) as u32;
        let step = Step {
            store: Arc::clone(&self.shared.store),
            id,
            index,
        };
        if let Err(e) = self.shared.store.step_started(id, index) {
            tracing::warn!(pipeline = id, error = %e, "cannot record a step");
        }
        step
    }

    async fn execute(
        &mut self,
        id: u64,
        repository: &Repository,
        commit: &str,
        deploy: bool,
        work: &Path,
    ) -> Result<String, Failed> {
        self.checkout(id, repository, commit, work).await?;
        self.check(id, work).await?;
        let evaluated = self.eval(id, work).await?;
        self.build(id, work, &evaluated).await?;
        if !deploy {
            return Ok(format!(
                "checks passed; not deployed ({} is not the deploy branch {})",
                commit.get(..12).unwrap_or(commit),
                repository.branch
            ));
        }
        if let Some(reason) = self.behind_the_branch(repository, commit).await {
            for name in ["push", "pin", "publish"] {
                let step = self.step(id, name);
                step.log(&reason);
                step.finish(StepStatus::Skipped, None, &reason);
            }
            return Ok(format!("checks passed; not deployed: {reason}"));
        }
        self.push(id, &evaluated).await?;
        self.publish(id, commit, &evaluated).await
    }

    /// Why `commit` must not be published: the deploy branch has moved past it. A replayed
    /// webhook delivery, or a push overtaken by a later one, would otherwise publish an older
    /// commit as the newest generation — a rollback nobody asked for.
    async fn behind_the_branch(&self, repository: &Repository, commit: &str) -> Option<String> {
        let bare = repos::bare_path(&self.shared.config.repos_dir(), &repository.name);
        let head = repos::branch_head(&bare, &repository.branch).await.ok()??;
        let behind = repos::is_behind(&bare, commit, &head)
            .await
            .unwrap_or(false);
        behind.then(|| {
            format!(
                "{} is behind the head of {} ({}); an older commit is deployed only by `pcr rollback`",
                commit.get(..12).unwrap_or(commit),
                repository.branch,
                head.get(..12).unwrap_or(&head)
            )
        })
    }

    async fn checkout(
        &self,
        id: u64,
        repo: &Repository,
        commit: &str,
        work: &Path,
    ) -> Result<(), Failed> {
        let step = self.step(id, "checkout");
        let bare = repos::bare_path(&self.shared.config.repos_dir(), &repo.name);
        let log = |line: &str| step.log(line);
        let present = repos::has_commit(&bare, commit).await.unwrap_or(false);
        if !present {
            if let Some(remote) = &repo.remote {
                step.log(&format!("fetching {remote}"));
                if let Err(e) = repos::fetch(&bare, remote, log).await {
                    return Err(fail(&step, None, format!("cannot fetch {remote}: {e}")));
                }
            }
            if !repos::has_commit(&bare, commit).await.unwrap_or(false) {
                return Err(fail(
                    &step,
                    None,
                    format!("commit {commit} is not in repository {}", repo.name),
                ));
            }
        }
        match repos::checkout(&bare, commit, work, log).await {
            Ok(subject) => {
                step.log(&format!("checked out {subject}"));
                step.finish(StepStatus::Succeeded, Some(0), &subject);
                Ok(())
            }
            Err(e) => Err(fail(&step, None, format!("checkout failed: {e}"))),
        }
    }

    async fn check(&self, id: u64, work: &Path) -> Result<(), Failed> {
        let step = self.step(id, "check");
        let mut cmd = nix::command();
        cmd.args(["flake", "check", "--no-build"]).arg(work);
        let mut lines = Vec::new();
        let mut unknown_outputs = Vec::new();
        let done = process::run(cmd, false, |stream, line| {
            let line = nix::strip_ansi(line);
            // nix flake check warns about every output it has no rule for, Procurator's own
            // among them; the eval step checks those, so the warning is noise in every run.
            if let Some(name) = procurator_output_warning(&line) {
                unknown_outputs.push(name);
                return;
            }
            step.log(&line);
            if stream == Stream::Stderr {
                lines.push(line);
            }
        })
        .await
        .map_err(|e| fail(&step, None, format!("cannot run nix: {e}")))?;
        if !unknown_outputs.is_empty() {
            step.log(&format!(
                "nix flake check does not know Procurator's outputs ({}); the eval step checks them",
                unknown_outputs.join(", ")
            ));
        }
        let status = done.status;
        if !status.success() {
            let mut message = format!(
                "nix flake check failed ({}): {}",
                process::describe(status),
                first_error(&lines)
            );
            if let Some(hint) = lock_mismatch_hint(&lines) {
                message.push_str(" — ");
                message.push_str(&hint);
            }
            return Err(fail(&step, status.code(), message));
        }
        step.finish(StepStatus::Succeeded, Some(0), "flake outputs evaluate");
        Ok(())
    }

    async fn eval(&self, id: u64, work: &Path) -> Result<Evaluated, Failed> {
        let step = self.step(id, "eval");
        let flake = work.display().to_string();
        let mut blueprint_cmd = nix::command();
        blueprint_cmd.args(["eval", "--json", &format!("{flake}#blueprintJSON")]);
        let mut checks_cmd = nix::command();
        checks_cmd.args([
            "eval",
            "--json",
            &format!("{flake}#checks"),
            "--apply",
            &format!("c: builtins.attrNames (c.{} or {{}})", nix::SYSTEM),
        ]);
        // Two small evaluations at once: they share nix's eval cache and each mostly waits on
        // nix starting up.
        let mut blueprint_err = Vec::new();
        let mut checks_err = Vec::new();
        let (blueprint_out, checks_out) = tokio::join!(
            process::run(blueprint_cmd, true, |_, l| {
                step.log(l);
                blueprint_err.push(l.to_string());
            }),
            process::run(checks_cmd, true, |_, l| checks_err.push(l.to_string())),
        );
        let blueprint_out =
            blueprint_out.map_err(|e| fail(&step, None, format!("cannot run nix: {e}")))?;
        if !blueprint_out.status.success() {
            return Err(fail(
                &step,
                blueprint_out.status.code(),
                format!(
                    "nix eval .#blueprintJSON failed ({}): {}",
                    process::describe(blueprint_out.status),
                    first_error(&blueprint_err)
                ),
            ));
        }
        let blueprint = Blueprint::from_json(&blueprint_out.stdout).map_err(|e| {
            let detail = match &e {
                schema::model::BlueprintError::Json(source) => format!("{e}: {source}"),
                _ => e.to_string(),
            };
            fail(&step, None, detail)
        })?;
        let checks: Vec<String> = match checks_out {
            Ok(out) if out.status.success() => {
                serde_json::from_str(&out.stdout).unwrap_or_default()
            }
            _ => Vec::new(),
        };
        let intent = blueprint.intent_hash();
        if let Err(e) = self
            .shared
            .store
            .set_blueprint(id, &intent, &blueprint.to_json())
        {
            tracing::warn!(pipeline = id, error = %e, "cannot record the blueprint");
        }
        let names: Vec<&str> = blueprint.vms.iter().map(|v| v.name.as_str()).collect();
        let summary = format!(
            "cluster {}: {} VM{} ({}), {} instance{}",
            if blueprint.cluster.name.is_empty() {
                "default"
            } else {
                &blueprint.cluster.name
            },
            names.len(),
            plural(names.len()),
            names.join(", "),
            blueprint.instance_count(),
            plural(blueprint.instance_count()),
        );
        step.log(&summary);
        step.log(&format!("intent hash {intent}"));
        if !checks.is_empty() {
            step.log(&format!("checks: {}", checks.join(", ")));
        }
        step.finish(StepStatus::Succeeded, Some(0), &summary);
        Ok(Evaluated {
            blueprint,
            intent,
            checks,
        })
    }

    async fn build(&self, id: u64, work: &Path, ev: &Evaluated) -> Result<(), Failed> {
        let step = self.step(id, "build");
        let flake = work.display().to_string();
        let mut cmd = nix::command();
        cmd.args([
            "build",
            "--json",
            "--no-link",
            "--log-format",
            "internal-json",
        ]);
        for vm in &ev.blueprint.vms {
            cmd.arg(format!("{flake}#closures.{}", vm.name));
        }
        // The checks (e.g. the closures' layout) build in the same call: one evaluation, one
        // build graph.
        for check in &ev.checks {
            cmd.arg(format!("{flake}#checks.{}.{check}", nix::SYSTEM));
        }
        if ev.blueprint.vms.is_empty() && ev.checks.is_empty() {
            step.finish(
                StepStatus::Skipped,
                None,
                "nothing to build: the blueprint has no VMs",
            );
            return Ok(());
        }
        let (done, reader) = run_logged_nix(&step, cmd, true, "nix build").await?;
        let built = nix::built_paths(&done.stdout)
            .map_err(|e| fail(&step, None, schema::error_chain(&e)))?;
        for vm in &ev.blueprint.vms {
            if !built.contains(&vm.closure) {
                return Err(fail(&step, None, format!(
                    "closures.{} built {} but the blueprint names {}; the flake's closures and blueprintJSON disagree",
                    vm.name,
                    built.iter().find(|p| nix::store_name(p) == nix::store_name(&vm.closure)).map(String::as_str).unwrap_or("something else"),
                    vm.closure
                )));
            }
        }
        let (done_builds, expected) = reader.builds();
        let summary = if done_builds == 0 {
            format!(
                "{} closure{} already built",
                ev.blueprint.vms.len(),
                plural(ev.blueprint.vms.len())
            )
        } else {
            format!("built {done_builds}/{expected} derivations")
        };
        step.finish(StepStatus::Succeeded, Some(0), &summary);
        Ok(())
    }

    async fn push(&self, id: u64, ev: &Evaluated) -> Result<(), Failed> {
        let step = self.step(id, "push");
        let Some(cache) = &self.shared.config.cache else {
            step.finish(
                StepStatus::Skipped,
                None,
                "no cache configured: workers must already have the closures",
            );
            return Ok(());
        };
        let mut cmd = nix::command();
        cmd.args(["copy", "--log-format", "internal-json", "--to"])
            .arg(format!("{}?compression={}", cache.url, cache.compression))
            .arg("--option")
            .arg("netrc-file")
            .arg(self.shared.config.netrc_path())
            // Ask the cache every time. nix otherwise trusts a remembered "this path is there"
            // for 30 days, keyed by URL: after the cache's GC removed a path (or a new cache took
            // over an address) the push skips it, and the pin or a worker's fetch then fails.
            .args(["--option", "narinfo-cache-positive-ttl", "0"]);
        let mut closures: Vec<&str> = ev
            .blueprint
            .vms
            .iter()
            .map(|v| v.closure.as_str())
            .collect();
        closures.sort();
        closures.dedup();
        cmd.args(&closures);
        let what = format!("nix copy to {}", cache.url);
        let (_, reader) = run_logged_nix(&step, cmd, false, &what).await?;
        let summary = match reader.copies() {
            0 => format!(
                "all {} closure{} already in the cache",
                closures.len(),
                plural(closures.len())
            ),
            n => format!("copied {n} path{} to {}", plural(n as usize), cache.url),
        };
        step.finish(StepStatus::Succeeded, Some(0), &summary);
        Ok(())
    }

    /// The control plane, connected on first use and again after a failure.
    async fn master(&mut self) -> Result<MasterClient, PublishError> {
        if let Some(m) = &self.master {
            return Ok(m.clone());
        }
        let config = &self.shared.config;
        let (client, _conn) = schema::net::connect_master(&config.master, &config.operator_token)
            .await
            .map_err(PublishError::Connect)?;
        let client = MasterClient::new(client);
        self.master = Some(client.clone());
        Ok(client)
    }

    async fn publish(&mut self, id: u64, commit: &str, ev: &Evaluated) -> Result<String, Failed> {
        let store = Arc::clone(&self.shared.store);
        let pin_step = self.step(id, "pin");
        let master = match self.master().await {
            Ok(m) => m,
            Err(e) => {
                pin_step.finish(StepStatus::Skipped, None, "");
                let publish_step = self.step(id, "publish");
                return Err(fail(
                    &publish_step,
                    None,
                    format!(
                        "cannot reach the control plane at {}: {e}",
                        self.shared.config.master
                    ),
                ));
            }
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let state = match current_state(&master).await {
                Ok(s) => s,
                Err(e) => {
                    self.master = None;
                    pin_step.finish(StepStatus::Skipped, None, "");
                    let step = Step {
                        store: Arc::clone(&store),
                        id,
                        index: PUBLISH_STEP,
                    };
                    return Err(fail(
                        &step,
                        None,
                        format!("cannot read the control plane's generations: {e}"),
                    ));
                }
            };
            if state.active > 0 && state.active_intent == ev.intent {
                let msg = format!(
                    "generation {} already runs this blueprint; nothing to publish",
                    state.active
                );
                pin_step.finish(StepStatus::Skipped, None, &msg);
                let step = Step {
                    store: Arc::clone(&store),
                    id,
                    index: PUBLISH_STEP,
                };
                let _ = store.step_started(id, PUBLISH_STEP);
                step.log(&msg);
                step.finish(StepStatus::Skipped, None, &msg);
                let _ = store.set_generation(id, state.active, false);
                return Ok(msg);
            }
            let Some(generation) = state.latest.checked_add(1) else {
                return Err(fail(
                    &pin_step,
                    None,
                    format!(
                        "the control plane's latest generation is {}, so there is no next one",
                        state.latest
                    ),
                ));
            };
            if let Err(e) = self.pin(&pin_step, generation, ev).await {
                return Err(fail(&pin_step, None, e.to_string()));
            }
            let step = Step {
                store: Arc::clone(&store),
                id,
                index: PUBLISH_STEP,
            };
            if attempt == 1 {
                let _ = store.step_started(id, PUBLISH_STEP);
            }
            let old = if state.active > 0 {
                master.generation(state.active).await.ok().map(|(_, bp)| bp)
            } else {
                None
            };
            step.log(&format!(
                "publishing generation {generation} (commit {commit}, intent {})",
                &ev.intent
            ));
            let result = master
                .publish_state(
                    commit,
                    generation,
                    &ev.intent,
                    &ev.blueprint.vms,
                    &ev.blueprint.cluster,
                )
                .await;
            match result {
                Ok(p) => {
                    let published_ms = crate::now_ms();
                    let msg = format!(
                        "published generation {} ({} instance{} placed{})",
                        p.generation,
                        p.placed,
                        plural(p.placed as usize),
                        if p.unplaced > 0 {
                            format!(", {} unplaced", p.unplaced)
                        } else {
                            String::new()
                        }
                    );
                    step.log(&msg);
                    step.finish(StepStatus::Succeeded, Some(0), &msg);
                    let _ = store.set_generation(id, p.generation, true);
                    self.forget_old_pin(&step, p.generation).await;
                    let tracker = Tracker::new(
                        p.generation,
                        &ev.blueprint,
                        old.as_ref(),
                        published_ms,
                        self.shared.config.rollout_timeout,
                    );
                    let watcher_store = Arc::clone(&store);
                    tokio::task::spawn_local(async move {
                        rollout::watch(&watcher_store, id, &master, tracker).await;
                    });
                    return Ok(msg);
                }
                Err(ClientError::Remote(e))
                    if e.code == ErrorCode::Stale && attempt < PUBLISH_ATTEMPTS =>
                {
                    step.log(&format!(
                        "{}; another publisher took generation {generation}, trying again",
                        e.message
                    ));
                }
                Err(ClientError::Remote(e)) => {
                    return Err(fail(
                        &step,
                        None,
                        format!("publishState refused: {}", e.message),
                    ));
                }
                Err(e) => {
                    self.master = None;
                    return Err(fail(
                        &step,
                        None,
                        format!("publishState failed: {}", error_chain(&e)),
                    ));
                }
            }
        }
    }

    /// Pins the closures in the cache as `generation-N`, so the cache's GC keeps what the
    /// generation needs for as long as it may be rolled back to.
    async fn pin(&self, step: &Step, generation: u64, ev: &Evaluated) -> Result<(), PublishError> {
        let Some(cache) = &self.shared.config.cache else {
            step.finish(StepStatus::Skipped, None, "no cache configured");
            return Ok(());
        };
        let name = pin_name(generation);
        let mut paths: Vec<&str> = ev
            .blueprint
            .vms
            .iter()
            .map(|v| v.closure.as_str())
            .collect();
        paths.sort();
        paths.dedup();
        let response = self
            .http
            .put(format!("{}/api/pins/{name}", cache.url))
            .bearer_auth(&cache.upload_token)
            .json(&paths)
            .send()
            .await
            .map_err(|source| PublishError::CacheUnreachable {
                url: cache.url.clone(),
                source,
            })?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            return Err(PublishError::PinRefused {
                name,
                status,
                body: body.trim().to_string(),
            });
        }
        let msg = format!(
            "pinned {} closure{} as {name}",
            paths.len(),
            plural(paths.len())
        );
        step.log(&msg);
        step.finish(StepStatus::Succeeded, None, &msg);
        Ok(())
    }

    /// Drops the pin that fell out of the kept window; failures only cost cache space.
    async fn forget_old_pin(&self, step: &Step, generation: u64) {
        let (Some(cache), keep) = (&self.shared.config.cache, self.shared.config.keep_pins) else {
            return;
        };
        if keep == 0 || generation <= keep {
            return;
        }
        let name = pin_name(generation - keep);
        let result = self
            .http
            .delete(format!("{}/api/pins/{name}", cache.url))
            .bearer_auth(&cache.upload_token)
            .send()
            .await;
        if let Ok(r) = result {
            if r.status().is_success() {
                step.log(&format!(
                    "unpinned {name} (keeping the last {keep} generations)"
                ));
            }
        }
    }
}

/// The pin a generation's closures are kept under in the cache.
pub fn pin_name(generation: u64) -> String {
    format!("generation-{generation}")
}

struct ClusterState {
    latest: u64,
    active: u64,
    active_intent: String,
}

async fn current_state(master: &MasterClient) -> Result<ClusterState, PublishError> {
    let latest = master
        .generations(1)
        .await
        .map_err(PublishError::Call)?
        .first()
        .map(|g| g.generation)
        .unwrap_or(0);
    let status = master.cluster_status().await.map_err(PublishError::Call)?;
    Ok(ClusterState {
        latest: latest.max(status.active_generation),
        active: status.active_generation,
        active_intent: status.intent_hash,
    })
}

/// Why publishing could not talk to the control plane or the cache; shown as one sentence.
#[derive(Debug, thiserror::Error)]
enum PublishError {
    #[error("{}", error_chain(.0))]
    Connect(schema::net::NetError),
    #[error("{}", error_chain(.0))]
    Call(ClientError),
    #[error("cannot reach the cache at {url}: {}", error_chain(.source))]
    CacheUnreachable { url: String, source: reqwest::Error },
    #[error("the cache refused pin {name} ({status}): {body}")]
    PinRefused {
        name: String,
        status: reqwest::StatusCode,
        body: String,
    },
}

/// Runs a nix command given `--log-format internal-json`: every readable line goes to the
/// step's log as it arrives. Answers the finished process and the reader (which counted builds
/// and copies), or the step's failure naming `what` and nix's first error line.
async fn run_logged_nix(
    step: &Step,
    cmd: tokio::process::Command,
    capture_stdout: bool,
    what: &str,
) -> Result<(process::Finished, LogReader), Failed> {
    let mut reader = LogReader::new();
    let mut lines = Vec::new();
    let done = process::run(cmd, capture_stdout, |_, raw| {
        for line in reader.feed(raw) {
            step.log(&line);
            lines.push(line);
        }
    })
    .await
    .map_err(|e| fail(step, None, format!("cannot run nix: {e}")))?;
    if !done.status.success() {
        return Err(fail(
            step,
            done.status.code(),
            format!(
                "{what} failed ({}): {}",
                process::describe(done.status),
                first_error(&lines)
            ),
        ));
    }
    Ok((done, reader))
}

/// Records the failure on the step and makes it the run's message.
fn fail(step: &Step, exit_code: Option<i32>, message: String) -> Failed {
    step.log(&message);
    step.finish(StepStatus::Failed, exit_code, &message);
    Failed(message)
}

/// Procurator's own flake outputs, which `nix flake check` warns it does not know.
const PROCURATOR_OUTPUTS: [&str; 2] = ["blueprintJSON", "closures"];

/// `warning: unknown flake output 'blueprintJSON'` → `blueprintJSON`, for Procurator's outputs
/// only: a warning about any other output stays in the log.
fn procurator_output_warning(line: &str) -> Option<String> {
    let name = line
        .trim()
        .strip_prefix("warning: unknown flake output '")?
        .strip_suffix('\'')?;
    PROCURATOR_OUTPUTS.contains(&name).then(|| name.to_string())
}

/// What to do when flake.lock pins an input by content and this host's copy differs: the
/// usual cause is a `path:` input the host provides (a kernel, a secret directory) locked on
/// another machine, or before a package update.
fn lock_mismatch_hint(lines: &[String]) -> Option<String> {
    let line = lines
        .iter()
        .find(|l| l.contains("NAR hash mismatch in input '"))?;
    let input = line
        .split("NAR hash mismatch in input '")
        .nth(1)?
        .split(['?', '\''])
        .next()?;
    Some(format!(
        "flake.lock pins {input} by content and this host's copy differs; relock it on this host \
         (`nix flake lock --update-input NAME`) and push the lock, or do not commit a lock for \
         inputs the host provides"
    ))
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

pub use schema::error_chain;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_procurators_own_outputs_are_taken_out_of_the_check_log() {
        assert_eq!(
            procurator_output_warning("warning: unknown flake output 'blueprintJSON'").as_deref(),
            Some("blueprintJSON")
        );
        assert_eq!(
            procurator_output_warning("warning: unknown flake output 'closures'").as_deref(),
            Some("closures")
        );
        assert_eq!(
            procurator_output_warning("warning: unknown flake output 'myThing'"),
            None
        );
        assert_eq!(procurator_output_warning("evaluating flake..."), None);
    }

    #[test]
    fn a_lock_of_a_host_input_that_differs_says_how_to_relock() {
        let lines: Vec<String> = [
            "error: NAR hash mismatch in input 'path:/var/lib/procurator/example-kernel?lastModified=1&narHash=sha256-8OHE' (/nix/store/x), expected 'sha256-8OHE', got 'sha256-RiSR'",
        ]
        .map(String::from)
        .to_vec();
        let hint = lock_mismatch_hint(&lines).expect("a hint");
        assert!(
            hint.starts_with("flake.lock pins path:/var/lib/procurator/example-kernel by content"),
            "{hint}"
        );
        assert!(hint.contains("nix flake lock --update-input"), "{hint}");
        assert_eq!(
            lock_mismatch_hint(&["error: syntax error".to_string()]),
            None
        );
    }
}
