//! The executor of reconcile plans, and the supervisor that runs each instance.
//!
//! [`Reconciler::apply`] turns an assignment into a [`plan`] and carries it out: every
//! instance gets one supervisor task that fetches its closure, starts it through the driver
//! for its backend, watches it (alive → booted → health checks), restarts it per its restart
//! policy, and stops it when the plan says so. Supervisors publish what they see in
//! [`Runtime::views`], which the agent reports to the control plane.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use schema::model::{Backend, Health, InstanceReport, Phase, VmSpec};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::closure::Fetcher;
use crate::driver::{Driver, Launch, Stopped};
use crate::health::{self, CheckState, Decision, Ending, Restarts};
use crate::plan::{plan, Action, Observed};
use crate::procfs::{self, ProcStat};
use crate::state::{self, InstanceRecord, StateDir};

/// Lines of console/log sent with a failed instance's report.
pub const LOG_TAIL_LINES: usize = 20;

/// The drivers this worker can run, by backend.
#[derive(Clone, Default)]
pub struct Drivers {
    map: HashMap<Backend, Arc<dyn Driver>>,
}

impl Drivers {
    pub fn insert(&mut self, driver: Arc<dyn Driver>) {
        self.map.insert(driver.backend(), driver);
    }
    pub fn get(&self, backend: Backend) -> Option<Arc<dyn Driver>> {
        self.map.get(&backend).cloned()
    }
    pub fn backends(&self) -> Vec<Backend> {
        let mut b: Vec<Backend> = self.map.keys().copied().collect();
        b.sort();
        b
    }
}

/// What the worker knows about one instance, for reports and `logTail`.
#[derive(Debug, Clone)]
pub struct View {
    pub report: InstanceReport,
    pub launch: Option<Launch>,
    pub log_path: Option<PathBuf>,
    cpu_sample: Option<(u64, Instant)>,
}

/// Shared by the agent, the reconciler and every supervisor.
pub struct Runtime {
    pub state: StateDir,
    pub fetcher: Fetcher,
    pub drivers: Drivers,
    pub views: Mutex<BTreeMap<String, View>>,
    /// Signalled when a phase, health or message changes: the agent reports at once instead
    /// of at the next heartbeat.
    pub changed: Notify,
    /// How long a guest or process gets to shut down before it is killed.
    pub stop_grace: Duration,
}

impl Runtime {
    pub fn new(state: StateDir, fetcher: Fetcher, drivers: Drivers) -> Runtime {
        Runtime {
            state,
            fetcher,
            drivers,
            views: Mutex::new(BTreeMap::new()),
            changed: Notify::new(),
            stop_grace: Duration::from_secs(10),
        }
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut View)) {
        let Ok(mut views) = self.views.lock() else {
            return;
        };
        let Some(view) = views.get_mut(id) else {
            return;
        };
        let before = (
            view.report.phase,
            view.report.health,
            view.report.message.clone(),
        );
        f(view);
        let after = (
            view.report.phase,
            view.report.health,
            view.report.message.clone(),
        );
        drop(views);
        if before != after {
            self.changed.notify_one();
        }
    }

    /// Reports for every instance, with CPU (since the previous report) and memory read from
    /// `/proc` of the VMM or child.
    pub fn reports(&self) -> Vec<InstanceReport> {
        let Ok(mut views) = self.views.lock() else {
            return Vec::new();
        };
        let now = Instant::now();
        views
            .values_mut()
            .map(|view| {
                let mut report = view.report.clone();
                if let Some(launch) = view.launch.as_ref().filter(|l| l.main.is_alive()) {
                    let pid = launch.main.pid;
                    report.uptime_ms = procfs::process_age_ms(launch.main.start_time).unwrap_or(0);
                    report.memory_bytes = procfs::rss_bytes(pid).unwrap_or(0);
                    if let Ok(stat) = ProcStat::read(pid) {
                        if let Some((ticks, at)) = view.cpu_sample {
                            let secs = now.duration_since(at).as_secs_f64();
                            if secs > 0.0 {
                                let used = stat.cpu_ticks.saturating_sub(ticks) as f64
                                    / procfs::CLOCK_TICKS_PER_SEC as f64;
                                report.cpu_percent = (used / secs * 100.0) as f32;
                            }
                        }
                        view.cpu_sample = Some((stat.cpu_ticks, now));
                    }
                }
                if matches!(report.phase, Phase::Failed | Phase::CrashLoop) {
                    if let Some(log) = &view.log_path {
                        report.log_tail = crate::driver::tail(log, LOG_TAIL_LINES);
                    }
                }
                report
            })
            .collect()
    }

    /// The last `lines` lines of an instance's console or process log.
    pub fn log_tail(&self, id: &str, lines: usize) -> Option<String> {
        let path = self
            .views
            .lock()
            .ok()?
            .get(id)
            .and_then(|v| v.log_path.clone())?;
        Some(crate::driver::tail(&path, lines))
    }
}

struct Supervised {
    spec: VmSpec,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Owns the supervisors; lives on the agent's task.
pub struct Reconciler {
    rt: Arc<Runtime>,
    supervised: BTreeMap<String, Supervised>,
    /// Supervisors told to stop, kept so a new supervisor for the same id waits for them.
    stopping: HashMap<String, JoinHandle<()>>,
    pub applied_generation: u64,
}

impl Reconciler {
    pub fn new(rt: Arc<Runtime>) -> Reconciler {
        Reconciler {
            rt,
            supervised: BTreeMap::new(),
            stopping: HashMap::new(),
            applied_generation: 0,
        }
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.rt
    }

    /// After a worker restart: re-adopts instances whose VMM or process still runs (same pid
    /// and start time as recorded), and cleans up folders of instances that are gone. The
    /// adopted ones run on until the first assignment says whether they are still wanted.
    pub fn adopt_existing(&mut self) -> Result<usize, state::StateError> {
        let mut adopted = 0;
        for found in self.rt.state.scan()? {
            let id = found
                .dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            match (found.record, found.launch) {
                (Some(record), Some(launch))
                    if launch.main.is_alive()
                        && self.rt.drivers.get(record.spec.backend).is_some() =>
                {
                    tracing::info!(
                        instance = %id,
                        pid = launch.main.pid,
                        "re-adopting {} (still running from before the worker restarted)",
                        record.spec.name
                    );
                    self.applied_generation = self.applied_generation.max(record.generation);
                    self.spawn(id, record.spec, record.generation, Some(launch), None);
                    adopted += 1;
                }
                (_, launch) => {
                    if let Some(launch) = launch {
                        // Helpers (virtiofsd) may outlive a crashed VMM.
                        crate::driver::terminate_group(&launch, Duration::ZERO);
                    }
                    tracing::info!(instance = %id, "removing the remains of a stopped instance");
                    self.rt.state.remove(&id)?;
                }
            }
        }
        Ok(adopted)
    }

    /// Reconciles to `desired` (the assignment of `generation`). Returns the plan it executed.
    pub fn apply(&mut self, desired: &BTreeMap<String, VmSpec>, generation: u64) -> Vec<Action> {
        let observed: BTreeMap<String, Observed> = self
            .supervised
            .iter()
            .map(|(id, s)| {
                (
                    id.clone(),
                    Observed {
                        spec: s.spec.clone(),
                    },
                )
            })
            .collect();
        let actions = plan(desired, &observed, &self.rt.fetcher.known_present());
        let fetches = actions
            .iter()
            .filter(|a| matches!(a, Action::Fetch { .. }))
            .count();
        let mut fetch_index = 0;
        for action in &actions {
            match action {
                Action::Stop { instance } => {
                    tracing::info!(instance = %instance, "stopping (no longer assigned)");
                    self.stop(instance);
                }
                Action::Fetch { closure } => {
                    fetch_index += 1;
                    tracing::info!("fetching {closure} ({fetch_index}/{fetches})");
                    let rt = self.rt.clone();
                    let closure = closure.clone();
                    // Supervisors wait on the same copy; this one starts it right away.
                    tokio::spawn(async move {
                        let _ = rt.fetcher.ensure(&closure, &|_| {}).await;
                    });
                }
                Action::Start { instance } | Action::Restart { instance } => {
                    let Some(spec) = desired.get(instance) else {
                        continue;
                    };
                    let after = if matches!(action, Action::Restart { .. }) {
                        tracing::info!(instance = %instance, "replacing with generation {generation}");
                        self.stop(instance);
                        self.stopping.remove(instance)
                    } else {
                        self.stopping.remove(instance)
                    };
                    self.spawn(instance.clone(), spec.clone(), generation, None, after);
                }
                Action::Leave { instance } => {
                    if let (Some(s), Some(spec)) =
                        (self.supervised.get_mut(instance), desired.get(instance))
                    {
                        s.spec = spec.clone();
                    }
                    self.rt
                        .update(instance, |v| v.report.generation = generation);
                }
            }
        }
        self.applied_generation = generation;
        self.stopping.retain(|_, task| !task.is_finished());
        actions
    }

    fn stop(&mut self, id: &str) {
        if let Some(s) = self.supervised.remove(id) {
            let _ = s.stop.send(true);
            self.stopping.insert(id.to_string(), s.task);
        }
    }

    fn spawn(
        &mut self,
        id: String,
        spec: VmSpec,
        generation: u64,
        adopt: Option<Launch>,
        after: Option<JoinHandle<()>>,
    ) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let rt = self.rt.clone();
        let task = tokio::spawn(supervise(
            rt,
            id.clone(),
            spec.clone(),
            generation,
            stop_rx,
            adopt,
            after,
        ));
        self.supervised.insert(
            id,
            Supervised {
                spec,
                stop: stop_tx,
                task,
            },
        );
    }

    /// Ids of supervised instances.
    pub fn instances(&self) -> Vec<String> {
        self.supervised.keys().cloned().collect()
    }

    /// The shortest `stopAfterDisconnectMs` among the instances here, if any sets one.
    pub fn shortest_stop_after_disconnect(&self) -> Option<Duration> {
        self.supervised
            .values()
            .map(|s| s.spec.stop_after_disconnect_ms)
            .filter(|&ms| ms > 0)
            .min()
            .map(|ms| Duration::from_millis(ms.into()))
    }

    /// The control plane has not answered for `cut_off`: stops the instances whose
    /// `stopAfterDisconnectMs` has passed, so the copies it starts elsewhere once this
    /// worker's lease runs out never run beside them. The next assignment starts them again
    /// if they are still this worker's. Returns the ids stopped.
    pub fn stop_cut_off(&mut self, cut_off: Duration) -> Vec<String> {
        let due: Vec<String> = self
            .supervised
            .iter()
            .filter(|(_, s)| {
                let ms = s.spec.stop_after_disconnect_ms;
                ms > 0 && Duration::from_millis(ms.into()) <= cut_off
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in &due {
            self.stop(id);
        }
        self.stopping.retain(|_, task| !task.is_finished());
        due
    }
}

/// Resolves when the reconciler asks this supervisor to stop.
async fn stop_requested(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow() {
            return;
        }
        if rx.changed().await.is_err() {
            // The reconciler is gone (worker shutting down): workloads keep running.
            std::future::pending::<()>().await;
        }
    }
}

async fn supervise(
    rt: Arc<Runtime>,
    id: String,
    spec: VmSpec,
    generation: u64,
    mut stop: watch::Receiver<bool>,
    adopt: Option<Launch>,
    after: Option<JoinHandle<()>>,
) {
    if let Some(previous) = after {
        let _ = previous.await;
    }
    let dir = rt.state.instance_dir(&id);
    let driver = rt.drivers.get(spec.backend);
    let log_path = driver.as_ref().map(|d| d.log_path(&dir));
    if let Ok(mut views) = rt.views.lock() {
        views.insert(
            id.clone(),
            View {
                report: InstanceReport {
                    instance_id: id.clone(),
                    vm_name: spec.name.clone(),
                    closure: spec.closure.clone(),
                    phase: if adopt.is_some() {
                        Phase::Running
                    } else {
                        Phase::Pending
                    },
                    health: Health::Unknown,
                    generation,
                    ..InstanceReport::default()
                },
                launch: adopt.clone(),
                log_path,
                cpu_sample: None,
            },
        );
    }
    rt.changed.notify_one();
    let Some(driver) = driver else {
        rt.update(&id, |v| {
            v.report.phase = Phase::Failed;
            v.report.message = format!("this worker cannot run the {} backend", spec.backend);
        });
        stop_requested(&mut stop).await;
        finish(&rt, &id);
        return;
    };
    let record = InstanceRecord {
        instance_id: id.clone(),
        generation,
        spec: spec.clone(),
    };
    let mut restarts = Restarts::default();
    let mut launch = adopt;
    let origin = Instant::now();
    loop {
        if launch.is_none() {
            match start(&rt, &driver, &id, &record, &mut stop).await {
                Started::Stop => {
                    finish(&rt, &id);
                    return;
                }
                Started::Running(l) => launch = Some(l),
                Started::Failed(message) => {
                    tracing::warn!(instance = %id, "{message}");
                    let now = origin.elapsed().as_millis() as u64;
                    let decision = restarts.decide(&spec.restart, Ending::StartFailed, now);
                    if after_ending(
                        &rt,
                        &id,
                        decision,
                        Phase::Failed,
                        message,
                        &restarts,
                        &mut stop,
                    )
                    .await
                    {
                        finish(&rt, &id);
                        return;
                    }
                    continue;
                }
            }
        }
        let Some(current) = launch.take() else {
            continue;
        };
        match watch(&rt, &driver, &id, &spec, &current, &mut stop).await {
            Watched::Stop => {
                rt.update(&id, |v| v.report.phase = Phase::Stopping);
                let grace = rt.stop_grace;
                let d = driver.clone();
                let dir2 = dir.clone();
                let how = tokio::task::spawn_blocking(move || d.stop(&dir2, &current, grace)).await;
                match how {
                    Ok(Ok(Stopped::Killed)) => {
                        tracing::warn!(instance = %id, "stopped (killed after {} s)", grace.as_secs())
                    }
                    Ok(Ok(_)) => tracing::info!(instance = %id, "stopped"),
                    Ok(Err(e)) => tracing::warn!(instance = %id, "stop failed: {e}"),
                    Err(e) => tracing::warn!(instance = %id, "stop failed: {e}"),
                }
                finish(&rt, &id);
                return;
            }
            Watched::Ended(ending, message) => {
                if ending == Ending::Unhealthy {
                    let d = driver.clone();
                    let dir2 = dir.clone();
                    let grace = rt.stop_grace;
                    let _ =
                        tokio::task::spawn_blocking(move || d.stop(&dir2, &current, grace)).await;
                } else {
                    // Helpers (virtiofsd) of a VMM that exited.
                    crate::driver::terminate_group(&current, Duration::ZERO);
                }
                tracing::warn!(instance = %id, "{message}");
                let now = origin.elapsed().as_millis() as u64;
                let decision = restarts.decide(&spec.restart, ending, now);
                let final_phase = match ending {
                    Ending::Exited { success: true } => Phase::Stopped,
                    _ => Phase::Failed,
                };
                if after_ending(
                    &rt,
                    &id,
                    decision,
                    final_phase,
                    message,
                    &restarts,
                    &mut stop,
                )
                .await
                {
                    finish(&rt, &id);
                    return;
                }
            }
        }
    }
}

/// Applies a restart decision: waits out the backoff (or stays down). Returns true when a stop
/// was requested meanwhile.
async fn after_ending(
    rt: &Runtime,
    id: &str,
    decision: Decision,
    final_phase: Phase,
    message: String,
    restarts: &Restarts,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    rt.update(id, |v| {
        v.launch = None;
        v.report.restarts = restarts.total;
        v.report.health = Health::Unknown;
    });
    match decision {
        Decision::Stay => {
            rt.update(id, |v| {
                v.report.phase = final_phase;
                v.report.message = message;
            });
            stop_requested(stop).await;
            true
        }
        Decision::Restart {
            delay_ms,
            crash_loop,
        } => {
            rt.update(id, |v| {
                v.report.phase = if crash_loop {
                    Phase::CrashLoop
                } else {
                    final_phase
                };
                v.report.message = format!("{message}; restarting in {delay_ms} ms");
            });
            tokio::select! {
                _ = stop_requested(stop) => true,
                _ = tokio::time::sleep(Duration::from_millis(delay_ms)) => false,
            }
        }
    }
}

/// Last step of a supervisor that was told to stop: forget the instance.
fn finish(rt: &Runtime, id: &str) {
    if let Err(e) = rt.state.remove(id) {
        tracing::warn!(instance = %id, "cannot remove the instance folder: {e}");
    }
    if let Ok(mut views) = rt.views.lock() {
        views.remove(id);
    }
    rt.changed.notify_one();
}

enum Started {
    Running(Launch),
    Failed(String),
    Stop,
}

async fn start(
    rt: &Arc<Runtime>,
    driver: &Arc<dyn Driver>,
    id: &str,
    record: &InstanceRecord,
    stop: &mut watch::Receiver<bool>,
) -> Started {
    let spec = &record.spec;
    if !rt.fetcher.known_present().contains(&spec.closure) {
        rt.update(id, |v| {
            v.report.phase = Phase::Fetching;
            v.report.message = format!("fetching {}", spec.closure);
        });
        let progress_rt = rt.clone();
        let progress_id = id.to_string();
        let progress = move |line: String| {
            progress_rt.update(&progress_id, |v| v.report.message = line);
        };
        let fetched = tokio::select! {
            _ = stop_requested(stop) => return Started::Stop,
            r = rt.fetcher.ensure(&spec.closure, &progress) => r,
        };
        if let Err(e) = fetched {
            return Started::Failed(e.to_string());
        }
    }
    rt.update(id, |v| {
        v.report.phase = Phase::Starting;
        v.report.message = format!("starting {}", spec.closure);
    });
    tracing::info!(instance = %id, backend = %spec.backend, "starting {}", spec.closure);
    let dir = match rt.state.prepare(record) {
        Ok(dir) => dir,
        Err(e) => return Started::Failed(format!("cannot prepare the instance folder: {e}")),
    };
    let started = {
        let driver = driver.clone();
        let (id2, dir2, spec2) = (id.to_string(), dir.clone(), spec.clone());
        tokio::task::spawn_blocking(move || driver.start(&id2, &dir2, &spec2)).await
    };
    match started {
        Ok(Ok(launch)) => {
            if let Err(e) = rt.state.record_launch(id, &launch) {
                tracing::warn!(instance = %id, "cannot record the launch (re-adoption after a worker restart will not find it): {e}");
            }
            rt.update(id, |v| v.launch = Some(launch.clone()));
            Started::Running(launch)
        }
        Ok(Err(e)) => Started::Failed(format!("start failed: {}", error_chain(&e))),
        Err(e) => Started::Failed(format!("start failed: {e}")),
    }
}

pub use schema::error_chain;

enum Watched {
    Stop,
    Ended(Ending, String),
}

/// Watches a launched instance until it ends or a stop is requested.
async fn watch(
    rt: &Runtime,
    driver: &Arc<dyn Driver>,
    id: &str,
    spec: &VmSpec,
    launch: &Launch,
    stop: &mut watch::Receiver<bool>,
) -> Watched {
    let dir = rt.state.instance_dir(id);
    let started = Instant::now();
    let mut booted = false;
    let mut states = vec![CheckState::default(); spec.health_checks.len()];
    let mut next_due = vec![started; spec.health_checks.len()];
    let grace = |check: &schema::model::HealthCheck| {
        started.elapsed() < Duration::from_millis(u64::from(check.grace_period_ms))
    };
    loop {
        // Inline, not on the blocking pool: it reads /proc and at most two small files, and
        // runs on every tick of every instance.
        if let Some(ended) = driver.ended(&dir, launch) {
            let what = if spec.backend.is_vm() {
                "VM"
            } else {
                "process"
            };
            return Watched::Ended(
                Ending::Exited {
                    success: ended.clean,
                },
                format!("{what} {}", ended.how),
            );
        }
        if !booted {
            let (d, dir2, l) = (driver.clone(), dir.clone(), launch.clone());
            booted = tokio::task::spawn_blocking(move || d.booted(&dir2, &l))
                .await
                .unwrap_or(false);
            if booted {
                tracing::info!(instance = %id, "{} running", spec.name);
                rt.update(id, |v| {
                    v.report.phase = Phase::Running;
                    v.report.message = String::new();
                });
            }
        }
        // Checks run from the start: before the boot line they cannot fail the instance, and
        // one passing proves userspace runs (guests booted with `quiet` never print the line).
        for (i, check) in spec.health_checks.iter().enumerate() {
            if Instant::now() < next_due[i] {
                continue;
            }
            let on_host = health::on_host(spec, check);
            let result = tokio::select! {
                _ = stop_requested(stop) => return Watched::Stop,
                r = health::run_check(&on_host) => r,
            };
            states[i].record(result, !booted || grace(check));
            next_due[i] = Instant::now() + Duration::from_millis(u64::from(check.interval_ms));
            if !booted && states[i].passed_once {
                booted = true;
                tracing::info!(instance = %id, "{} running (health check passed)", spec.name);
                rt.update(id, |v| v.report.phase = Phase::Running);
            }
        }
        let health = health::health(booted, &spec.health_checks, &states);
        let message = states
            .iter()
            .map(|s| s.last.as_str())
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        let mut became = None;
        rt.update(id, |v| {
            if v.report.health != health {
                became = Some(health);
            }
            v.report.health = health;
            if booted {
                v.report.message = message.clone();
            }
        });
        match became {
            Some(Health::Healthy) => tracing::info!(instance = %id, "{} healthy", spec.name),
            Some(Health::Unhealthy) => {
                return Watched::Ended(Ending::Unhealthy, format!("unhealthy: {message}"));
            }
            _ => {}
        }
        // Poll fast while booting (the boot line is what "running" waits for), calmly after.
        let tick = if booted {
            Duration::from_millis(200)
        } else {
            Duration::from_millis(20)
        };
        let next_check = next_due
            .iter()
            .map(|due| due.saturating_duration_since(Instant::now()))
            .min()
            .unwrap_or(tick)
            .min(tick);
        tokio::select! {
            _ = stop_requested(stop) => return Watched::Stop,
            _ = tokio::time::sleep(next_check.max(Duration::from_millis(5))) => {}
        }
    }
}
