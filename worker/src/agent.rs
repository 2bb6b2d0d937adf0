//! The worker's side of the conversation with the control plane.
//!
//! Connect, log in with the worker token, `register` (again after every reconnect: the master
//! reconciles, it does not duplicate), fetch the assignment and reconcile to it, then report
//! with `pushData` every heartbeat and whenever an instance changes phase or health. The
//! master pushes `assignmentChanged`; the revision `pushData` answers is the polling fallback.
//! When the control plane is unreachable the worker retries with backoff and its instances
//! keep running untouched — except those whose spec sets `stopAfterDisconnectMs`: once the
//! control plane has not answered for that long, the worker stops them itself, so the copy
//! the control plane starts elsewhere after the lease never runs beside them.
//!
//! capnp-rpc is `!Send`: everything here runs on a tokio `LocalSet`; supervisors run as
//! ordinary tasks.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use schema::client::{AssignmentUpdate, GatewayClient};
use schema::model::{VmSpec, WorkerInfo, WorkerMetrics};
use schema::worker_capnp::worker_callback;
use tokio::sync::{mpsc, Notify};

use crate::procfs;
use crate::reconcile::{Reconciler, Runtime};

/// How the agent reaches the control plane.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub master: String,
    pub token: String,
    pub info: WorkerInfo,
    /// Upper bound of the reconnect backoff.
    pub max_backoff: Duration,
    /// Deadline of each RPC; a control plane that does not answer in time counts as gone.
    pub rpc_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
enum SessionEnd {
    #[error("connection closed")]
    Closed,
    #[error("{0}")]
    Failed(String),
}

/// Runs forever: connects, serves, reconnects.
pub async fn run(config: AgentConfig, mut reconciler: Reconciler) {
    let mut backoff = Duration::from_millis(200);
    let mut metrics = MetricsSampler::default();
    // Nothing is known of the control plane before the first answer: count from now.
    let link = Link::new(Instant::now());
    link.watch(&reconciler);
    loop {
        let ended = tokio::select! {
            ended = session(&config, &mut reconciler, &mut metrics, &mut backoff, &link) => ended,
            () = link.cut_off() => {
                // The session is dropped with its connection; a fresh one starts at once.
                stop_cut_off(&mut reconciler, &link);
                continue;
            }
        };
        match ended {
            Err(SessionEnd::Closed) => tracing::warn!(
                "control plane connection closed; running instances keep running{}",
                link.caveat()
            ),
            Err(SessionEnd::Failed(e)) => tracing::warn!(
                "control plane at {} unavailable: {e}; retrying in {} ms",
                config.master,
                backoff.as_millis()
            ),
            Ok(()) => {}
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = link.cut_off() => stop_cut_off(&mut reconciler, &link),
        }
        backoff = (backoff * 2).min(config.max_backoff);
    }
}

fn stop_cut_off(reconciler: &mut Reconciler, link: &Link) {
    let silent = link.last_answer.get().elapsed();
    let stopped = reconciler.stop_cut_off(silent);
    link.watch(reconciler);
    if stopped.is_empty() {
        return;
    }
    tracing::warn!(
        "no answer from the control plane for {} ms: stopped {} (stopAfterDisconnectMs), so \
         no copy started elsewhere runs beside them; they start again when the control plane \
         assigns them here",
        silent.as_millis(),
        stopped.join(", ")
    );
}

/// What the worker knows of its link to the control plane, for `stopAfterDisconnectMs`.
struct Link {
    /// When the last request the control plane answered (`register`, `pushData`) was sent.
    /// The control plane renewed this worker's lease no earlier than that, so it does not
    /// give the worker's instances to others before this + the lease.
    last_answer: Cell<Instant>,
    /// The shortest `stopAfterDisconnectMs` among the instances running here.
    shortest: Cell<Option<Duration>>,
    shortest_changed: Notify,
}

impl Link {
    fn new(now: Instant) -> Link {
        Link {
            last_answer: Cell::new(now),
            shortest: Cell::new(None),
            shortest_changed: Notify::new(),
        }
    }

    fn answered(&self, sent: Instant) {
        if sent > self.last_answer.get() {
            self.last_answer.set(sent);
        }
    }

    /// Follows what the reconciler runs now.
    fn watch(&self, reconciler: &Reconciler) {
        let shortest = reconciler.shortest_stop_after_disconnect();
        if shortest != self.shortest.get() {
            self.shortest.set(shortest);
            self.shortest_changed.notify_one();
        }
    }

    fn caveat(&self) -> &'static str {
        if self.shortest.get().is_some() {
            " (those with stopAfterDisconnectMs until it passes)"
        } else {
            ""
        }
    }

    /// Resolves once an instance here has had no answer from the control plane for its
    /// `stopAfterDisconnectMs`.
    async fn cut_off(&self) {
        loop {
            let changed = self.shortest_changed.notified();
            let Some(shortest) = self.shortest.get() else {
                changed.await;
                continue;
            };
            let due = self.last_answer.get() + shortest;
            if Instant::now() >= due {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep_until(due.into()) => {}
                () = changed => {}
            }
        }
    }
}

async fn timed<T, E: std::fmt::Display>(
    config: &AgentConfig,
    what: &str,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, SessionEnd> {
    match tokio::time::timeout(config.rpc_timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(SessionEnd::Failed(format!("{what}: {e}"))),
        Err(_) => Err(SessionEnd::Failed(format!(
            "{what}: no answer within {} ms",
            config.rpc_timeout.as_millis()
        ))),
    }
}

async fn session(
    config: &AgentConfig,
    reconciler: &mut Reconciler,
    metrics: &mut MetricsSampler,
    backoff: &mut Duration,
    link: &Link,
) -> Result<(), SessionEnd> {
    let (gateway, conn) = timed(
        config,
        "connect",
        schema::net::connect_worker(&config.master, &config.token),
    )
    .await?;
    let gw = GatewayClient::new(gateway);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let callback: worker_callback::Client = capnp_rpc::new_client(Callback {
        changed: tx,
        rt: reconciler.runtime().clone(),
    });
    let sent = Instant::now();
    let registered = timed(config, "register", gw.register(&config.info, callback)).await?;
    link.answered(sent);
    *backoff = Duration::from_millis(200);
    tracing::info!(
        worker = %config.info.id,
        "registered with the control plane at {} (heartbeat every {} ms)",
        config.master,
        registered.heartbeat_interval_ms
    );
    // A fresh session always reconciles to the full assignment: the master may have changed
    // (or lost) it while we were away.
    let mut last_seen = 0;
    fetch_and_apply(config, &gw, reconciler, &mut last_seen, link).await?;
    push(config, &gw, reconciler, metrics, &mut last_seen, link).await?;

    let interval = Duration::from_millis(u64::from(registered.heartbeat_interval_ms.max(100)));
    let mut heartbeat = tokio::time::interval(interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let rt = reconciler.runtime().clone();
    let mut closed = conn.closed.clone();
    loop {
        tokio::select! {
            _ = &mut closed => return Err(SessionEnd::Closed),
            Some(revision) = rx.recv() => {
                if revision != last_seen {
                    fetch_and_apply(config, &gw, reconciler, &mut last_seen, link).await?;
                    push(config, &gw, reconciler, metrics, &mut last_seen, link).await?;
                }
            }
            _ = heartbeat.tick() => push(config, &gw, reconciler, metrics, &mut last_seen, link).await?,
            _ = rt.changed.notified() => push(config, &gw, reconciler, metrics, &mut last_seen, link).await?,
        }
    }
}

async fn fetch_and_apply(
    config: &AgentConfig,
    gw: &GatewayClient,
    reconciler: &mut Reconciler,
    last_seen: &mut u64,
    link: &Link,
) -> Result<(), SessionEnd> {
    let update = timed(
        config,
        "getAssignment",
        gw.get_assignment(&config.info.id, *last_seen),
    )
    .await?;
    if let AssignmentUpdate::Changed(assignment) = update {
        let desired: BTreeMap<String, VmSpec> = assignment.instances.into_iter().collect();
        tracing::info!(
            "assignment revision {} (generation {}): {} instances",
            assignment.revision,
            assignment.generation,
            desired.len()
        );
        reconciler.apply(&desired, assignment.generation);
        link.watch(reconciler);
        *last_seen = assignment.revision;
    }
    Ok(())
}

async fn push(
    config: &AgentConfig,
    gw: &GatewayClient,
    reconciler: &mut Reconciler,
    metrics: &mut MetricsSampler,
    last_seen: &mut u64,
    link: &Link,
) -> Result<(), SessionEnd> {
    let rt = reconciler.runtime().clone();
    let reports = rt.reports();
    let worker_metrics = metrics.sample(&rt);
    let sent = Instant::now();
    let revision = timed(
        config,
        "pushData",
        gw.push_data(
            &config.info.id,
            reconciler.applied_generation,
            &reports,
            &worker_metrics,
        ),
    )
    .await?;
    link.answered(sent);
    if revision != *last_seen {
        // Missed a push (or it raced this heartbeat): this is the polling fallback.
        fetch_and_apply(config, gw, reconciler, last_seen, link).await?;
    }
    Ok(())
}

/// Host-wide figures for `pushData`.
#[derive(Default)]
pub struct MetricsSampler {
    last_cpu: Option<(u64, u64)>,
}

impl MetricsSampler {
    pub fn sample(&mut self, rt: &Runtime) -> WorkerMetrics {
        let (total, available) = procfs::meminfo().unwrap_or((0, 0));
        let cpu = procfs::cpu_times();
        let cpu_used_percent = match (self.last_cpu, cpu) {
            (Some((busy0, total0)), Some((busy1, total1))) if total1 > total0 => {
                (busy1.saturating_sub(busy0) as f64 / (total1 - total0) as f64 * 100.0) as f32
            }
            _ => 0.0,
        };
        self.last_cpu = cpu;
        WorkerMetrics {
            cpu_used_percent,
            memory_used_bytes: total.saturating_sub(available),
            memory_total_bytes: total,
            disk_free_bytes: procfs::disk_free(rt.state.root()).unwrap_or(0),
            closures_present: rt.fetcher.known_present().len() as u32,
            load_average: procfs::load_average().unwrap_or(0.0),
        }
    }
}

/// What the master may call on this worker.
struct Callback {
    changed: mpsc::UnboundedSender<u64>,
    rt: Arc<Runtime>,
}

impl worker_callback::Server for Callback {
    fn assignment_changed(
        self: capnp::capability::Rc<Self>,
        params: worker_callback::AssignmentChangedParams,
        _results: worker_callback::AssignmentChangedResults,
    ) -> impl std::future::Future<Output = capnp::Result<()>> + 'static {
        let result = params.get().map(|p| p.get_revision()).and_then(|revision| {
            self.changed
                .send(revision)
                .map_err(|_| capnp::Error::disconnected("the worker is shutting down".into()))
        });
        std::future::ready(result)
    }

    fn log_tail(
        self: capnp::capability::Rc<Self>,
        params: worker_callback::LogTailParams,
        mut results: worker_callback::LogTailResults,
    ) -> impl std::future::Future<Output = capnp::Result<()>> + 'static {
        let result = (|| {
            let params = params.get()?;
            let id = params
                .get_instance_id()?
                .to_string()
                .map_err(|e| capnp::Error::failed(format!("instance id is not UTF-8: {e}")))?;
            let lines = params.get_lines().clamp(1, 10_000) as usize;
            let mut result = results.get().init_result();
            match self.rt.log_tail(&id, lines) {
                Some(text) => result.set_ok(&text),
                None => {
                    let mut err = result.init_err();
                    err.set_message(format!("instance {id} does not run on this worker"));
                    err.set_code(schema::common_capnp::ErrorCode::NotFound);
                }
            }
            Ok(())
        })();
        std::future::ready(result)
    }
}
