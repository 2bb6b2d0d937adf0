//! `pcr up`: a whole Procurator cluster on this machine, in one command.
//!
//! It starts the control plane, the binary cache (making its signing key on the first run),
//! pcr-ci, one or more workers and — when it is built — repohub, as supervised children with
//! their state and logs under `$PROCURATOR_HOME`. It then copies the example cluster flake into
//! a repository of its own, pushes it to the bare repository pcr-ci serves, and shows the
//! deploy: the pipeline's steps, then every instance being placed, fetched, started and found
//! healthy, then the status table. It keeps following the cluster until Ctrl-C, which stops
//! every child — and the workloads the workers started — before it returns.
//!
//! A second `pcr up` resumes: same database, keys, tokens and repository; an unchanged example
//! is not pushed again, so nothing is republished.
//!
//! Children lead their own process groups (the terminal's Ctrl-C reaches only `pcr up`, which
//! stops them in order), die with `pcr up` if it is killed (`PR_SET_PDEATHSIG`), and `pcr up`
//! is a child subreaper, so workloads the workers leave running when they stop come back to it
//! and are stopped too.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use schema::ci::client::CiClient;
use schema::ci::{PipelineDetail, Status, StepStatus};
use schema::client::MasterClient;
use schema::model::{ClusterStatus, Event, EventKind};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::conn::ConnArgs;

/// Prints to stdout, ignoring failures: when whoever reads `pcr up`'s output goes away (a
/// pipe through `tee` closed by the same Ctrl-C), `pcr up` must still stop everything it
/// started, which a panicking `println!` would not.
macro_rules! say {
    () => {{
        let _ = writeln!(std::io::stdout().lock());
    }};
    ($($arg:tt)+) => {{
        let _ = writeln!(std::io::stdout().lock(), $($arg)+);
    }};
}

/// `say!` without the newline.
macro_rules! say_raw {
    ($($arg:tt)+) => {{
        let _ = write!(std::io::stdout().lock(), $($arg)+);
    }};
}

#[derive(Args, Debug, Clone)]
pub struct UpArgs {
    /// Workers to start.
    #[arg(long, default_value_t = 1)]
    pub workers: u32,
    /// CPUs each local worker offers the scheduler. Local workers share this machine, so this
    /// is a budget rather than a measurement; the example needs 4.
    #[arg(long, default_value_t = 4)]
    pub worker_cpu: u32,
    /// The cluster flake to deploy (default: ./example).
    #[arg(long)]
    pub example: Option<PathBuf>,
    /// Name of the repository it is pushed to.
    #[arg(long, default_value = "example")]
    pub repo: String,
    /// Where the binary cache listens (the control plane listens on --master).
    #[arg(long, default_value = "127.0.0.1:7200")]
    pub cache_listen: String,
    /// Where pcr-ci listens.
    #[arg(long, default_value = schema::ci::DEFAULT_LISTEN)]
    pub ci_listen: String,
    /// Where repohub (the web UI) listens, when it is built.
    #[arg(long, default_value = "127.0.0.1:3001")]
    pub web_listen: String,
    /// Directory holding pcr-control-plane, pcr-cache, pcr-ci, pcr-worker (default: the
    /// directory of this executable).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Exit once the cluster converged, stopping everything: exit status 0 when every placed
    /// instance runs the pushed generation and is healthy, 1 when the pipeline or the
    /// generation fails or it does not converge within --timeout-secs. For scripts and CI.
    #[arg(long, alias = "once")]
    pub until_converged: bool,
    /// How long to wait for the cluster to converge.
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
}

/// Name of the cache's signing key.
const CACHE_KEY_NAME: &str = "procurator-local-1";

/// A supervised child.
struct Child {
    name: String,
    program: PathBuf,
    args: Vec<OsString>,
    log: PathBuf,
    /// The stdout line prefix that says it is serving; the rest of the line is its address.
    ready: Option<&'static str>,
    process: Option<tokio::process::Child>,
    restarts: u32,
    restart_at: Option<Instant>,
    /// A child `up` can do without (repohub): its failure is reported, not fatal.
    optional: bool,
}

const MAX_RESTARTS: u32 = 10;

impl Child {
    fn new(name: &str, program: PathBuf, log: PathBuf) -> Child {
        Child {
            name: name.to_string(),
            program,
            args: Vec::new(),
            log,
            ready: None,
            process: None,
            restarts: 0,
            restart_at: None,
            optional: false,
        }
    }

    fn arg(mut self, a: impl Into<OsString>) -> Child {
        self.args.push(a.into());
        self
    }

    fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, a: I) -> Child {
        self.args.extend(a.into_iter().map(Into::into));
        self
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Starts the process; with `ready`, waits for its ready line and answers the address.
    async fn spawn(&mut self) -> anyhow::Result<String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("cannot open {}", self.log.display()))?;
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stderr(log.try_clone().context("cannot share the log file")?)
            .kill_on_drop(true)
            // Its own group: the terminal's Ctrl-C goes to `pcr up` alone, which stops the
            // children in order.
            .process_group(0);
        if self.ready.is_some() {
            cmd.stdout(Stdio::piped());
        } else {
            cmd.stdout(log);
        }
        // `pcr up` spawns from its only thread, so the children die exactly when it does.
        support::process::die_with_parent(cmd.as_std_mut());
        let mut process = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", self.program.display()))?;
        let Some(prefix) = self.ready else {
            self.process = Some(process);
            return Ok(String::new());
        };
        let stdout = process.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let found = tokio::time::timeout(Duration::from_secs(120), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.strip_prefix(prefix) {
                    return Some(rest.trim().to_string());
                }
            }
            None
        })
        .await;
        let log_path = self.log.clone();
        // The rest of stdout goes to the log, so the child never blocks on a full pipe.
        tokio::task::spawn_local(async move {
            let mut file = match std::fs::OpenOptions::new().append(true).open(&log_path) {
                Ok(f) => f,
                Err(_) => return,
            };
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = writeln!(file, "{line}");
            }
        });
        self.process = Some(process);
        match found {
            Ok(Some(addr)) => Ok(addr),
            Ok(None) => bail!(
                "{} exited while starting; the end of {}:\n{}",
                self.name,
                self.log.display(),
                self.log_tail(15)
            ),
            Err(_) => bail!(
                "{} did not start within 120 s; the end of {}:\n{}",
                self.name,
                self.log.display(),
                self.log_tail(15)
            ),
        }
    }

    fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(|p| p.id())
    }
}

/// The children, in start order.
struct Supervisor {
    children: Vec<Child>,
    stopping: bool,
}

impl Supervisor {
    async fn start(&mut self, mut child: Child) -> anyhow::Result<String> {
        let result = child.spawn().await;
        let name = child.name.clone();
        let optional = child.optional;
        self.children.push(child);
        match result {
            Ok(addr) => Ok(addr),
            Err(e) if optional => {
                say!("  {name:<14} not started: {e:#}");
                Ok(String::new())
            }
            Err(e) => Err(e),
        }
    }

    /// Notices children that died and restarts them with a growing delay.
    async fn check(&mut self) {
        if self.stopping {
            return;
        }
        let now = Instant::now();
        for child in &mut self.children {
            if let Some(p) = &mut child.process {
                if let Ok(Some(status)) = p.try_wait() {
                    child.process = None;
                    if child.restarts >= MAX_RESTARTS {
                        say!("! {} exited ({status}) and has been restarted {MAX_RESTARTS} times; giving up (log: {})", child.name, child.log.display());
                        continue;
                    }
                    let delay = Duration::from_millis(500 << child.restarts.min(6));
                    say!(
                        "! {} exited ({status}); restarting in {:.1} s (log: {})",
                        child.name,
                        delay.as_secs_f32(),
                        child.log.display()
                    );
                    child.restart_at = Some(now + delay);
                }
            }
            if child.process.is_none() && child.restart_at.is_some_and(|t| t <= now) {
                child.restart_at = None;
                child.restarts += 1;
                match child.spawn().await {
                    Ok(_) => say!("  {} restarted", child.name),
                    Err(e) => {
                        say!("! {} did not restart: {e:#}", child.name);
                        child.restart_at = Some(now + Duration::from_secs(5));
                    }
                }
            }
        }
        reap_orphans(&self.pids());
    }

    fn pids(&self) -> HashSet<u32> {
        self.children.iter().filter_map(Child::pid).collect()
    }

    /// Stops everything: children newest first (pcr-ci and the workers before the cache and
    /// the control plane they talk to), then the workloads the workers left behind.
    async fn shutdown(&mut self) {
        self.stopping = true;
        for child in self.children.iter_mut().rev() {
            let Some(mut process) = child.process.take() else {
                continue;
            };
            if let Some(pid) = process
                .id()
                .and_then(|p| rustix::process::Pid::from_raw(p as i32))
            {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::TERM);
            }
            match tokio::time::timeout(Duration::from_secs(10), process.wait()).await {
                Ok(_) => {}
                Err(_) => {
                    say!("  {} did not stop within 10 s; killing it", child.name);
                    let _ = process.kill().await;
                }
            }
        }
        stop_orphans().await;
    }
}

/// Processes whose parent is this process, other than `known`: workloads adopted because this
/// process is a subreaper. (pid, process group, zombie?)
fn orphans(known: &HashSet<u32>) -> Vec<(u32, u32, bool)> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| !known.contains(pid))
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // `pid (comm) state ppid pgrp …`; comm may hold anything, so split after the last ')'.
            let rest = &stat[stat.rfind(')')? + 1..];
            let mut fields = rest.split_whitespace();
            let state = fields.next()?;
            let ppid: u32 = fields.next()?.parse().ok()?;
            let pgrp: u32 = fields.next()?.parse().ok()?;
            (ppid == me).then_some((pid, pgrp, state == "Z"))
        })
        .collect()
}

fn reap(pid: u32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::NOHANG);
    }
}

/// Adopted processes that exited are reaped (nobody else can).
fn reap_orphans(known: &HashSet<u32>) {
    for (pid, _, zombie) in orphans(known) {
        if zombie {
            reap(pid);
        }
    }
}

/// Stops what the workers left running: SIGTERM to each group, SIGKILL after 10 s.
async fn stop_orphans() {
    let none = HashSet::new();
    let left = orphans(&none);
    if left.is_empty() {
        return;
    }
    say!(
        "  stopping {} workload process{}",
        left.len(),
        if left.len() == 1 { "" } else { "es" }
    );
    let groups: HashSet<u32> = left.iter().map(|(_, g, _)| *g).collect();
    let signal = |sig| {
        for g in &groups {
            if let Some(pgid) = rustix::process::Pid::from_raw(*g as i32) {
                let _ = rustix::process::kill_process_group(pgid, sig);
            }
        }
    };
    signal(rustix::process::Signal::TERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = orphans(&none);
        for (pid, _, zombie) in &left {
            if *zombie {
                reap(*pid);
            }
        }
        if orphans(&none).is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            signal(rustix::process::Signal::KILL);
            tokio::time::sleep(Duration::from_millis(200)).await;
            for (pid, _, _) in orphans(&none) {
                reap(pid);
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Processes an earlier `pcr up` on this state directory left running — it was killed, or
/// could not finish stopping: Procurator's own binaries started with the state directory in
/// their command line, and the workloads and VMs of its workers (whose command line, working
/// directory or environment names `<home>/workers/`). Never a user's shell sitting in the
/// working copy.
fn leftovers(home: &Path) -> Vec<(u32, String)> {
    let me = std::process::id();
    let home = home.to_string_lossy().into_owned();
    let workers = format!("{home}/workers/");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args: Vec<String> = raw
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let program = args.first()?.rsplit('/').next()?.to_string();
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            // A process workload may chdir elsewhere (httpd into its store path), but its
            // environment keeps the HOME its worker gave it.
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let in_environ = environ
                .split(|b| *b == 0)
                .any(|kv| String::from_utf8_lossy(kv).contains(&workers));
            let ours = program.starts_with("pcr-") && args.iter().any(|a| a.contains(&home));
            let workload = cwd.starts_with(&workers)
                || args.iter().any(|a| a.contains(&workers))
                || in_environ;
            (ours || workload).then(|| (pid, args.join(" ")))
        })
        .collect()
}

/// Stops what an earlier run on this state directory left running: SIGTERM, SIGKILL after 5 s.
async fn stop_leftovers(home: &Path) {
    let left = leftovers(home);
    if left.is_empty() {
        return;
    }
    say!(
        "  stopping {} process{} an earlier run left running:",
        left.len(),
        if left.len() == 1 { "" } else { "es" }
    );
    for (pid, args) in &left {
        let shown: String = args.chars().take(100).collect();
        say!("    {pid} {shown}");
    }
    let signal = |sig| {
        for (pid, _) in leftovers(home) {
            if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(pid, sig);
            }
        }
    };
    signal(rustix::process::Signal::TERM);
    let mut deadline = Instant::now() + Duration::from_secs(5);
    let mut killed = false;
    while !leftovers(home).is_empty() {
        if Instant::now() >= deadline {
            if killed {
                say!("  ! some of them did not stop; see `ps` for what is left");
                break;
            }
            signal(rustix::process::Signal::KILL);
            killed = true;
            deadline = Instant::now() + Duration::from_secs(2);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Where things live under the state directory.
struct Layout {
    home: PathBuf,
}

impl Layout {
    fn logs(&self) -> PathBuf {
        self.home.join("logs")
    }
    fn log(&self, name: &str) -> PathBuf {
        self.logs().join(format!("{name}.log"))
    }
    fn cache_dir(&self) -> PathBuf {
        self.home.join("cache")
    }
    fn ci_dir(&self) -> PathBuf {
        self.home.join("ci")
    }
    fn source(&self, repo: &str) -> PathBuf {
        self.home.join("src").join(repo)
    }
}

pub async fn run(conn: &ConnArgs, args: &UpArgs) -> anyhow::Result<()> {
    let home = std::path::absolute(schema::defaults::state_dir())
        .context("cannot resolve the state directory")?;
    let layout = Layout { home };
    std::fs::create_dir_all(layout.logs())
        .with_context(|| format!("cannot create {}", layout.logs().display()))?;
    let example = match &args.example {
        Some(dir) => dir.clone(),
        None => PathBuf::from("example"),
    };
    let example = std::path::absolute(&example).context("cannot resolve the example directory")?;
    if !example.join("flake.nix").is_file() {
        bail!(
            "{} has no flake.nix; pass --example DIR (the cluster flake to deploy)",
            example.display()
        );
    }
    let bin_dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()
            .context("cannot find this executable")?
            .parent()
            .context("this executable has no directory")?
            .to_path_buf(),
    };
    for bin in ["pcr-control-plane", "pcr-cache", "pcr-ci", "pcr-worker"] {
        if !bin_dir.join(bin).is_file() {
            bail!(
                "{} is missing; build it (cargo build --release --bin {bin}) or pass --bin-dir",
                bin_dir.join(bin).display()
            );
        }
    }
    // Workloads the workers leave behind when they stop come back to us, so Ctrl-C can stop
    // them too.
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
        .context("cannot become a child subreaper")?;

    say!("procurator up · state in {}", layout.home.display());
    stop_leftovers(&layout.home).await;
    let mut sup = Supervisor {
        children: Vec::new(),
        stopping: false,
    };
    let started = Instant::now();
    let outcome = tokio::select! {
        r = up(conn, args, &layout, &example, &bin_dir, &mut sup) => r,
        _ = tokio::signal::ctrl_c() => {
            say!("\nstopping…");
            Ok(())
        }
    };
    sup.shutdown().await;
    say!(
        "stopped after {:.0} s; state kept in {} (`pcr up` again resumes)",
        started.elapsed().as_secs_f32(),
        layout.home.display()
    );
    outcome
}

async fn up(
    conn: &ConnArgs,
    args: &UpArgs,
    layout: &Layout,
    example: &Path,
    bin_dir: &Path,
    sup: &mut Supervisor,
) -> anyhow::Result<()> {
    let home = &layout.home;
    // Control plane.
    let db = home.join("control-plane.db");
    let mut cp = Child::new(
        "control plane",
        bin_dir.join("pcr-control-plane"),
        layout.log("control-plane"),
    )
    .args(["--listen", &conn.master])
    .arg("--db")
    .arg(&db);
    cp.ready = Some("pcr-control-plane listening on ");
    let master = sup.start(cp).await?;
    say!("  {:<14} {master}", "control plane");

    // Cache: the key is made once and kept.
    let cache_dir = layout.cache_dir();
    let keys = cache_dir.join("keys");
    let secret = keys.join(format!("{CACHE_KEY_NAME}.secret"));
    if !secret.exists() {
        let out = tokio::process::Command::new(bin_dir.join("pcr-cache"))
            .args(["keygen", CACHE_KEY_NAME, "--out"])
            .arg(&keys)
            .output()
            .await
            .context("cannot run pcr-cache keygen")?;
        if !out.status.success() {
            bail!(
                "pcr-cache keygen failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    let public_key = std::fs::read_to_string(keys.join(format!("{CACHE_KEY_NAME}.public")))
        .context("cannot read the cache's public key")?
        .trim()
        .to_string();
    let upload_token_file = cache_dir.join("upload.token");
    support::secret::read_or_create_secret(&upload_token_file)
        .context("cannot create the cache's upload token")?;
    let mut cache = Child::new("cache", bin_dir.join("pcr-cache"), layout.log("cache"))
        .args(["serve", "--listen", &args.cache_listen])
        .arg("--storage")
        .arg(cache_dir.join("storage"))
        .arg("--signing-key")
        .arg(&secret)
        .arg("--upload-token-file")
        .arg(&upload_token_file);
    cache.ready = Some("listening on ");
    let cache_url = sup.start(cache).await?;
    std::fs::write(crate::plan::cache_url_file(), format!("{cache_url}\n"))
        .context("cannot write cache.url")?;
    say!("  {:<14} {cache_url} (key {public_key})", "cache");

    // pcr-ci.
    let ci_dir = layout.ci_dir();
    let mut ci = Child::new("ci", bin_dir.join("pcr-ci"), layout.log("ci"))
        .args(["--listen", &args.ci_listen])
        .arg("--state-dir")
        .arg(&ci_dir)
        .args(["--master", &master])
        .arg("--token-file")
        .arg(home.join("operator.token"))
        .args(["--cache-url", &cache_url])
        .arg("--cache-token-file")
        .arg(&upload_token_file)
        .args(["--poll-interval-secs", "0"]);
    ci.ready = Some("pcr-ci listening on ");
    let ci_url = sup.start(ci).await?;
    say!("  {:<14} {ci_url}", "ci");

    // Workers.
    let operator_token = std::fs::read_to_string(home.join("operator.token"))
        .context("cannot read the operator token")?
        .trim()
        .to_string();
    let op = {
        let (client, _conn) = schema::net::connect_master(&master, &operator_token).await?;
        MasterClient::new(client)
    };
    let mut worker_ids = Vec::new();
    for n in 1..=args.workers {
        let id = format!("worker-{n}");
        let worker = Child::new(&id, bin_dir.join("pcr-worker"), layout.log(&id))
            .args(["--master", &master, "--id", &id])
            .arg("--token-file")
            .arg(home.join("worker.token"))
            .arg("--state-dir")
            .arg(home.join("workers").join(&id))
            .args(["--cpu", &args.worker_cpu.to_string()])
            .args(["--cache-url", &cache_url, "--cache-public-key", &public_key]);
        sup.start(worker).await?;
        worker_ids.push(id);
    }
    let registered = wait_for(Duration::from_secs(120), sup, || async {
        let status = op.cluster_status().await.ok()?;
        let ready: BTreeMap<String, String> = status
            .workers
            .iter()
            .filter(|w| worker_ids.contains(&w.info.id) && w.state == schema::model::WorkerState::Ready)
            .map(|w| (w.info.id.clone(), w.info.backends.iter().map(|b| b.as_str()).collect::<Vec<_>>().join(", ")))
            .collect();
        (ready.len() == worker_ids.len()).then_some(ready)
    })
    .await
    .context("the workers did not register with the control plane within 120 s; see their logs in the logs/ directory")?;
    for (id, backends) in &registered {
        say!("  {id:<14} registered, backends: {backends}");
    }

    // The web UI, when this build has it.
    let repohub = bin_dir.join("pcr-repohub");
    let web = if repohub.is_file() {
        let mut hub = Child::new("web UI", repohub, layout.log("repohub"))
            .args(["--listen", &args.web_listen])
            .arg("--db")
            .arg(home.join("repohub.db"))
            .args(["--master", &master, "--ci", &ci_url])
            .arg("--operator-token-file")
            .arg(home.join("operator.token"))
            .arg("--ci-state-dir")
            .arg(&ci_dir);
        hub.optional = true;
        hub.ready = Some("pcr-repohub listening on ");
        let url = sup.start(hub).await?;
        (!url.is_empty()).then_some(url)
    } else {
        None
    };

    // The repository, and the push.
    let client = CiClient::new(&ci_url).with_token(&operator_token);
    client
        .create_repository(&schema::ci::NewRepository {
            name: args.repo.clone(),
            remote: None,
            branch: None,
        })
        .await
        .context("cannot create the repository in pcr-ci")?;
    let bare = ci_dir.join("repos").join(format!("{}.git", args.repo));
    let source = layout.source(&args.repo);
    let since = last_event_seq(&op).await;
    let (commit, pushed) = push_example(example, &source, &bare)?;
    let short: String = commit.chars().take(12).collect();
    if pushed {
        say!(
            "repository {}: pushed {short} to {}",
            args.repo,
            bare.display()
        );
    } else {
        say!(
            "repository {}: {short} is already pushed ({} unchanged)",
            args.repo,
            example.display()
        );
    }

    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let (_subscription, mut events) = op.watch(since).await?;
    let pipeline = wait_for(Duration::from_secs(30), sup, || async {
        client
            .pipelines(Some(&args.repo), 50)
            .await
            .ok()?
            .into_iter()
            .find(|p| p.commit == commit && p.deploy)
    })
    .await
    .context("pcr-ci recorded no pipeline for the push; see its log")?;
    let detail = follow_pipeline(&client, pipeline.id, sup, &mut events).await?;
    let failed = if detail.summary.status == Status::Failed {
        say!(
            "pipeline {} failed: {}",
            detail.summary.id,
            detail.summary.message
        );
        print_failed_step(&client, &detail).await;
        say!("the cluster keeps its running generation");
        Some(detail.summary.message.clone())
    } else {
        let generation = detail.summary.generation.unwrap_or(0);
        say!("cluster converging to generation {generation}:");
        match converge(&op, generation, deadline, sup, &mut events).await? {
            Convergence::Converged => None,
            Convergence::Failed(reason) => Some(reason),
            Convergence::TimedOut => Some(format!(
                "the cluster did not converge within {} s",
                args.timeout_secs
            )),
        }
    };
    let status = op.cluster_status().await?;
    say!();
    say_raw!(
        "{}",
        crate::render::render_status(&status, support::now_ms())
    );
    say!();
    say!("  control plane  {master}          pcr control status · pcr events --follow");
    say!("  ci             {ci_url}   pcr pipelines list · pcr pipelines show ID");
    say!("  cache          {cache_url}");
    say!(
        "  repository     {}   (working copy: {}; commit and `git push`)",
        bare.display(),
        source.display()
    );
    match &web {
        Some(url) => say!("  web UI         {url}"),
        None => say!(
            "  web UI         not in this build (repohub will serve it on http://{})",
            args.web_listen
        ),
    }
    say!("  logs           {}", layout.logs().display());
    // The commands above, from another shell: pcr finds this cluster's operator token through
    // PROCURATOR_HOME, and the binary beside the others.
    let pcr_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| bin_dir.to_path_buf());
    say!(
        "  another shell  export PROCURATOR_HOME={} PATH={}:$PATH",
        layout.home.display(),
        pcr_dir.display()
    );
    if args.until_converged {
        return match failed {
            Some(msg) => bail!("{msg}"),
            None => Ok(()),
        };
    }
    say!("\nfollowing the cluster; Ctrl-C stops everything");
    let timeout = Duration::from_secs(args.timeout_secs);
    follow_forever(
        &op,
        &client,
        &args.repo,
        pipeline.id,
        timeout,
        sup,
        &mut events,
    )
    .await
}

/// Polls `check` every 200 ms (keeping the children supervised) until it answers.
async fn wait_for<T, F, Fut>(timeout: Duration, sup: &mut Supervisor, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        sup.check().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn last_event_seq(op: &MasterClient) -> u64 {
    op.events(0, 0)
        .await
        .ok()
        .and_then(|e| e.last().map(|e| e.seq))
        .unwrap_or(0)
}

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new("git")
        .args([
            "-c",
            "user.name=pcr up",
            "-c",
            "user.email=pcr-up@localhost",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .context("cannot run git")?;
    if !out.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Copies `from` into `to` following symlinks (`example/nix` links to the repository's `nix/`;
/// a repository of its own needs a real copy), leaving `.git` alone.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == ".git" || name.to_string_lossy().starts_with("result") {
            continue;
        }
        let path = entry.path();
        let target = to.join(&name);
        if std::fs::metadata(&path)?.is_dir() {
            copy_tree(&path, &target)?;
        } else {
            std::fs::copy(&path, &target)?;
        }
    }
    Ok(())
}

/// A fingerprint of the files `copy_tree` copies: relative paths and contents, in order.
fn tree_fingerprint(dir: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    fn walk(dir: &Path, rel: &str, hasher: &mut Sha256) -> std::io::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == ".git" || name.starts_with("result") {
                continue;
            }
            let path = entry.path();
            let rel = format!("{rel}/{name}");
            if std::fs::metadata(&path)?.is_dir() {
                walk(&path, &rel, hasher)?;
            } else {
                let bytes = std::fs::read(&path)?;
                hasher.update(rel.as_bytes());
                hasher.update((bytes.len() as u64).to_le_bytes());
                hasher.update(&bytes);
            }
        }
        Ok(())
    }
    let mut hasher = Sha256::new();
    walk(dir, "", &mut hasher)?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Mirrors the example into the working copy when the example changed since the last run
/// (always on the first), commits if that changed anything, pushes to the bare repository.
/// Commits the user made in the working copy stand while the example is unchanged: a second
/// `pcr up` resumes what was last pushed instead of reverting it. Answers the commit and
/// whether anything was pushed.
fn push_example(example: &Path, source: &Path, bare: &Path) -> anyhow::Result<(String, bool)> {
    let fresh = !source.join(".git").exists();
    if fresh {
        std::fs::create_dir_all(source)
            .with_context(|| format!("cannot create {}", source.display()))?;
        git(source, &["init", "-q", "-b", "main"])?;
    }
    // Kept inside .git, so it is no part of the repository's tree.
    let marker = source.join(".git").join("procurator-example-fingerprint");
    let fingerprint =
        tree_fingerprint(example).with_context(|| format!("cannot read {}", example.display()))?;
    let mirrored = std::fs::read_to_string(&marker).ok();
    let has_head = git(source, &["rev-parse", "--verify", "-q", "HEAD"]).is_ok();
    if fresh || !has_head || mirrored.as_deref().map(str::trim) != Some(fingerprint.as_str()) {
        mirror_example(example, source)?;
        std::fs::write(&marker, &fingerprint)
            .with_context(|| format!("cannot write {}", marker.display()))?;
    } else if !git(source, &["status", "--porcelain"])?.trim().is_empty() {
        say!(
            "working copy {} has uncommitted changes; deploying its last commit",
            source.display()
        );
    }
    let commit = git(source, &["rev-parse", "HEAD"])?;
    let bare_str = bare.to_str().context("the repository path is not UTF-8")?;
    let _ = git(source, &["remote", "remove", "origin"]);
    git(source, &["remote", "add", "origin", bare_str])?;
    // So that a plain `git push` from the working copy deploys, as the output tells users.
    git(source, &["config", "branch.main.remote", "origin"])?;
    git(source, &["config", "branch.main.merge", "refs/heads/main"])?;
    let remote_head = git(bare, &["rev-parse", "--verify", "-q", "refs/heads/main"]).ok();
    let pushed = remote_head.as_deref().map(str::trim) != Some(commit.as_str());
    if pushed {
        let out = std::process::Command::new("git")
            .args(["push", "-q", "origin", "HEAD:refs/heads/main"])
            .current_dir(source)
            .output()
            .context("cannot run git push")?;
        let said = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            bail!("git push to {} failed: {}", bare.display(), said.trim());
        }
        // The post-receive hook's lines: which pipeline the push queued.
        for line in said.lines().filter(|l| l.contains("pcr-ci:")) {
            say!("  {}", line.trim_start_matches("remote:").trim());
        }
    }
    Ok((commit, pushed))
}

/// Makes the working copy's files the example's (whatever the example no longer has goes too)
/// and commits the difference, if any.
fn mirror_example(example: &Path, source: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(source)?.flatten() {
        if entry.file_name() != ".git" {
            let path = entry.path();
            if path.is_dir() && !path.is_symlink() {
                std::fs::remove_dir_all(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
        }
    }
    copy_tree(example, source)
        .with_context(|| format!("cannot copy {} to {}", example.display(), source.display()))?;
    git(source, &["add", "-A"])?;
    let changed = !git(source, &["status", "--porcelain"])?.trim().is_empty();
    let has_head = git(source, &["rev-parse", "--verify", "-q", "HEAD"]).is_ok();
    if changed || !has_head {
        let message = if has_head {
            "Update from the example"
        } else {
            "The example cluster"
        };
        git(source, &["commit", "-q", "-m", message])?;
    }
    Ok(())
}

fn seconds(ms: u64) -> String {
    format!("{:.2} s", ms as f64 / 1000.0)
}

fn print_step(step: &schema::ci::StepRecord) {
    let mark = match step.status {
        StepStatus::Succeeded => "✓",
        StepStatus::Failed => "✗",
        StepStatus::Skipped => "-",
        _ => " ",
    };
    let took = step.duration_ms().map(seconds).unwrap_or_default();
    say!("  {mark} {:<9} {took:>8}  {}", step.name, step.summary);
}

fn print_event(e: &Event) {
    let wanted = matches!(
        e.kind,
        EventKind::PlacementChanged
            | EventKind::InstancePhase
            | EventKind::InstanceHealth
            | EventKind::Unplaced
            | EventKind::WorkerLost
            | EventKind::WorkerReturned
            | EventKind::GenerationPublished
    );
    if wanted {
        say!("    {}", e.message);
    }
}

/// Prints a run's steps as they finish (and build/copy progress) until it ends.
async fn follow_pipeline(
    client: &CiClient,
    id: u64,
    sup: &mut Supervisor,
    events: &mut tokio::sync::mpsc::UnboundedReceiver<Vec<Event>>,
) -> anyhow::Result<PipelineDetail> {
    let first = client.pipeline(id).await?;
    say!(
        "pipeline {id} · {} at {}",
        first.summary.ref_name.trim_start_matches("refs/heads/"),
        first.summary.commit.chars().take(12).collect::<String>()
    );
    let live = !first.summary.status.is_finished();
    let mut printed = 0;
    let mut after = 0;
    loop {
        let page = client.logs(id, after, Duration::from_millis(500)).await?;
        for line in &page.lines {
            after = line.seq;
            // Progress of a run that is happening now; a finished one shows its steps only.
            if live && (line.line.starts_with("building ") || line.line.starts_with("copying ")) {
                say!("      {}", line.line);
            }
        }
        let detail = client.pipeline(id).await?;
        for step in detail.steps.iter().skip(printed) {
            if matches!(step.status, StepStatus::Pending | StepStatus::Running) {
                break;
            }
            print_step(step);
            printed += 1;
        }
        // Placements and phases start before the run records its end: show them as they come.
        while let Ok(batch) = events.try_recv() {
            batch.iter().for_each(print_event);
        }
        if detail.summary.status.is_finished() && page.done {
            for step in detail.steps.iter().skip(printed) {
                print_step(step);
            }
            return Ok(detail);
        }
        sup.check().await;
    }
}

async fn print_failed_step(client: &CiClient, detail: &PipelineDetail) {
    let Some(step) = detail.steps.iter().find(|s| s.status == StepStatus::Failed) else {
        return;
    };
    if let Ok(page) = client.logs(detail.summary.id, 0, Duration::ZERO).await {
        let lines: Vec<&str> = page
            .lines
            .iter()
            .filter(|l| l.step == step.index)
            .map(|l| l.line.as_str())
            .collect();
        for line in &lines[lines.len().saturating_sub(15)..] {
            say!("    | {line}");
        }
    }
}

/// Every placed instance runs its desired closure and is healthy — the control plane's own
/// convergence rule; unplaced instances cannot converge and are reported instead.
fn placed_converged(status: &ClusterStatus) -> bool {
    let total = status.instances.len();
    let unplaced = status
        .instances
        .iter()
        .filter(|i| i.worker_id.is_empty())
        .count();
    let converged = (status.convergence_percent as f64 * total as f64 / 100.0).round() as usize;
    converged >= total - unplaced
}

/// How waiting for a generation ended.
#[derive(Debug, PartialEq)]
enum Convergence {
    /// Every placed instance runs the generation and is healthy.
    Converged,
    /// The control plane recorded the generation as failed (and rolled it back, when its VMs
    /// say so); the reason is its own.
    Failed(String),
    TimedOut,
}

/// Shows events until every placed instance of `generation` is running and healthy, the
/// generation fails, or `deadline` passes.
async fn converge(
    op: &MasterClient,
    generation: u64,
    deadline: Instant,
    sup: &mut Supervisor,
    events: &mut tokio::sync::mpsc::UnboundedReceiver<Vec<Event>>,
) -> anyhow::Result<Convergence> {
    let started = Instant::now();
    loop {
        let status = op.cluster_status().await?;
        if status.active_generation >= generation && placed_converged(&status) {
            while let Ok(batch) = events.try_recv() {
                batch.iter().for_each(print_event);
            }
            let unplaced: Vec<String> = status
                .instances
                .iter()
                .filter(|i| i.worker_id.is_empty())
                .map(|i| format!("{} is unplaced: {}", i.instance_id, i.unplaced_reason))
                .collect();
            say!(
                "converged: every placed instance runs generation {generation} and is healthy ({:.1} s)",
                started.elapsed().as_secs_f32()
            );
            for u in unplaced {
                say!("  note: {u}");
            }
            return Ok(Convergence::Converged);
        }
        if let Some(reason) = generation_failure(op, generation).await? {
            while let Ok(batch) = events.try_recv() {
                batch.iter().for_each(print_event);
            }
            say!("generation {generation} failed: {reason}");
            return Ok(Convergence::Failed(format!(
                "generation {generation} failed: {reason}"
            )));
        }
        if Instant::now() >= deadline {
            return Ok(Convergence::TimedOut);
        }
        tokio::select! {
            batch = events.recv() => match batch {
                Some(batch) => batch.iter().for_each(print_event),
                None => bail!("the control plane closed the event stream"),
            },
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        sup.check().await;
    }
}

/// The reason the control plane recorded when `generation` failed, if it did.
async fn generation_failure(op: &MasterClient, generation: u64) -> anyhow::Result<Option<String>> {
    let recent = op.generations(20).await?;
    Ok(recent
        .into_iter()
        .find(|g| g.generation == generation && g.status == "failed")
        .map(|g| g.reason))
}

/// After the first deploy: new pipelines (a `git push` to the repository), the convergence of
/// the generations they publish, and cluster events, until Ctrl-C.
async fn follow_forever(
    op: &MasterClient,
    client: &CiClient,
    repo: &str,
    mut last: u64,
    timeout: Duration,
    sup: &mut Supervisor,
    events: &mut tokio::sync::mpsc::UnboundedReceiver<Vec<Event>>,
) -> anyhow::Result<()> {
    let mut poll = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            batch = events.recv() => match batch {
                Some(batch) => batch.iter().for_each(print_event),
                None => bail!("the control plane closed the event stream"),
            },
            _ = poll.tick() => {
                sup.check().await;
                if let Ok(list) = client.pipelines(Some(repo), 20).await {
                    let mut new: Vec<_> = list.into_iter().filter(|p| p.id > last).collect();
                    new.sort_by_key(|p| p.id);
                    if let Some(p) = new.first() {
                        last = p.id;
                        let detail = follow_pipeline(client, p.id, sup, events).await?;
                        say!("pipeline {}: {} — {}", p.id, detail.summary.status, detail.summary.message);
                        if detail.summary.status == Status::Failed {
                            print_failed_step(client, &detail).await;
                            say!("the cluster keeps its running generation");
                        } else if let Some(generation) = detail.summary.generation.filter(|_| detail.summary.deploy) {
                            say!("cluster converging to generation {generation}:");
                            let deadline = Instant::now() + timeout;
                            if converge(op, generation, deadline, sup, events).await? == Convergence::TimedOut {
                                say!("generation {generation} did not converge within {} s; still following", timeout.as_secs());
                            }
                        }
                    }
                }
            }
        }
    }
}
