//! The drivers: one trait, three ways of running an instance (QEMU microVM, cloud-hypervisor
//! microVM, supervised process).
//!
//! Driver calls are synchronous and short (spawn a process, one request on a control socket,
//! wait a bounded time for an exit); the reconcile executor runs them on tokio's blocking pool.
//! Every process a driver starts goes into one process group per instance, detached from the
//! worker: workloads keep running when the worker dies or restarts, and a stop signals the
//! whole group so no helper (virtiofsd) is left behind.

pub mod cloud_hypervisor;
pub mod process;
pub mod qemu;

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use rustix::process::{kill_process_group, Pid, Signal};
use schema::model::{Backend, VmSpec};
use serde::{Deserialize, Serialize};

use crate::procfs::ProcRef;

/// The kernel prints `Run /init as init process` when it hands over to userspace; for a VM
/// this is "booted" (the init's own progress is the business of health checks).
pub const BOOT_MARKER: &str = " as init process";

/// Tag under which `/nix/store` is shared into guests; the guest's initrd mounts it read-only.
pub const STORE_TAG: &str = "nixstore";

/// Console (VMs) or stdout+stderr (processes) of an instance, inside its folder.
pub const CONSOLE_LOG: &str = "console.log";

/// What a driver started for one instance; recorded in `launch.json` for re-adoption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Launch {
    /// Process group holding the VMM (or child) and its helpers.
    pub pgid: u32,
    /// The VMM or the child process: its exit is the instance's exit.
    pub main: ProcRef,
    /// Helpers in the same group (virtiofsd), killed with it.
    #[serde(default)]
    pub helpers: Vec<ProcRef>,
    /// Unix epoch milliseconds.
    pub started_at_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("{0}")]
    Invalid(String),
    #[error("cannot start {what}")]
    Spawn {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{what} exited during start-up: {detail}")]
    EarlyExit { what: String, detail: String },
    #[error("{what} did not come up within {ms} ms")]
    Timeout { what: String, ms: u64 },
    #[error("{what} failed")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Api(String),
}

pub(crate) fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> DriverError {
    let what = what.into();
    move |source| DriverError::Io { what, source }
}

/// One way of running instances.
pub trait Driver: Send + Sync {
    fn backend(&self) -> Backend;

    /// Launches the instance from its (present) closure. Returns once the VMM or process runs;
    /// booting continues in the background.
    fn start(&self, instance_id: &str, dir: &Path, spec: &VmSpec) -> Result<Launch, DriverError>;

    /// Whether the guest reached userspace (VMs) or the process runs (processes).
    fn booted(&self, dir: &Path, launch: &Launch) -> bool;

    /// Asks the instance to shut down cleanly, waits up to `grace`, then forces it. Returns
    /// how it ended, for the log.
    fn stop(&self, dir: &Path, launch: &Launch, grace: Duration) -> Result<Stopped, DriverError>;

    /// Whether the instance has ended, and how, as far as the driver can tell; `None` while
    /// it runs. By default the main process's exit status decides; a driver whose VMM gives
    /// a better account (cloud-hypervisor exits 0 after a fatal vCPU error too) overrides it.
    fn ended(&self, _dir: &Path, launch: &Launch) -> Option<Ended> {
        if launch.main.is_alive() {
            return None;
        }
        Some(Ended::by_exit(take_exit(&launch.main)))
    }

    /// The file holding the instance's console or output.
    fn log_path(&self, dir: &Path) -> PathBuf {
        dir.join(CONSOLE_LOG)
    }
}

/// How an instance ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// A clean end: the guest powered off, or the process exited with status 0.
    pub clean: bool,
    /// What happened, for the log and the instance's message (`exited (exit status: 1)`).
    pub how: String,
}

impl Ended {
    /// Judged by the exit status alone; adopted processes (started by a previous worker) end
    /// without one.
    pub fn by_exit(status: Option<ExitStatus>) -> Ended {
        match status {
            Some(s) => Ended {
                clean: s.success(),
                how: format!("exited ({s})"),
            },
            None => Ended {
                clean: false,
                how: "exited".to_string(),
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It shut down on request within the grace period.
    Clean,
    /// It had to be killed.
    Killed,
    /// It was not running any more.
    AlreadyGone,
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Exit statuses of children the worker started, collected by their reaper tasks so the
/// supervisor can say why an instance ended.
fn exits() -> &'static Mutex<HashMap<ProcRef, ExitStatus>> {
    static EXITS: OnceLock<Mutex<HashMap<ProcRef, ExitStatus>>> = OnceLock::new();
    EXITS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// How a process ended, if this worker started it and saw it end; adopted processes (started
/// by a previous worker) end without a status.
pub fn take_exit(proc: &ProcRef) -> Option<ExitStatus> {
    exits().lock().ok()?.remove(proc)
}

/// Spawns `cmd` detached from the worker: in process group `pgid` (or a new one led by the
/// child), stdin from /dev/null, no kill on drop. A tokio task reaps it and records its exit
/// status. Must run inside a tokio runtime (the blocking pool counts).
pub fn spawn_detached(
    mut cmd: Command,
    what: &str,
    pgid: Option<u32>,
) -> Result<ProcRef, DriverError> {
    cmd.stdin(Stdio::null());
    cmd.process_group(pgid.map(|p| p as i32).unwrap_or(0));
    let mut child = tokio::process::Command::from(cmd)
        .spawn()
        .map_err(|source| DriverError::Spawn {
            what: what.to_string(),
            source,
        })?;
    let pid = child.id().ok_or_else(|| DriverError::EarlyExit {
        what: what.to_string(),
        detail: "it was reaped before its pid was read".into(),
    })?;
    // The child cannot be reaped before `wait` below, so its stat is readable even if it
    // already exited.
    let proc = ProcRef::of(pid).map_err(io_error(format!("reading /proc/{pid}/stat")))?;
    tokio::spawn(async move {
        if let Ok(status) = child.wait().await {
            if let Ok(mut map) = exits().lock() {
                map.insert(proc, status);
            }
        }
    });
    Ok(proc)
}

/// Signals every process of a launch's group, but only while one of its recorded processes
/// is alive: once they are all gone the group id may belong to someone else.
pub(crate) fn signal_group(launch: &Launch, signal: Signal) {
    if !launch.main.is_alive() && !launch.helpers.iter().any(ProcRef::is_alive) {
        return;
    }
    if let Some(pid) = Pid::from_raw(launch.pgid as i32) {
        // ESRCH (group already empty) is the outcome we want anyway.
        let _ = kill_process_group(pid, signal);
    }
}

/// Polls until `proc` is gone or `timeout` passes. Returns whether it is gone.
pub(crate) fn wait_gone(proc: &ProcRef, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !proc.is_alive() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Kills what is left of a launch's group (helpers such as virtiofsd once the VMM is gone)
/// and waits until the helpers are gone.
pub(crate) fn kill_rest(launch: &Launch) {
    signal_group(launch, Signal::KILL);
    for helper in &launch.helpers {
        wait_gone(helper, Duration::from_secs(5));
    }
}

/// SIGTERM to the group, wait, SIGKILL: the end of every stop path.
pub fn terminate_group(launch: &Launch, grace: Duration) -> Stopped {
    if !launch.main.is_alive() {
        kill_rest(launch);
        return Stopped::AlreadyGone;
    }
    signal_group(launch, Signal::TERM);
    if wait_gone(&launch.main, grace) {
        // Helpers that outlive the main process have nothing left to serve.
        kill_rest(launch);
        return Stopped::Clean;
    }
    signal_group(launch, Signal::KILL);
    wait_gone(&launch.main, Duration::from_secs(5));
    kill_rest(launch);
    Stopped::Killed
}

/// Waits until a unix socket file exists, failing early if `proc` exited.
pub(crate) fn wait_for_socket(
    path: &Path,
    proc: &ProcRef,
    what: &str,
    timeout: Duration,
    log: Option<&Path>,
) -> Result<(), DriverError> {
    let deadline = Instant::now() + timeout;
    loop {
        if path.exists() {
            return Ok(());
        }
        if !proc.is_alive() {
            let detail = log
                .map(|l| tail(l, 5))
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| {
                    take_exit(proc)
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "no output".into())
                });
            return Err(DriverError::EarlyExit {
                what: what.to_string(),
                detail,
            });
        }
        if Instant::now() >= deadline {
            return Err(DriverError::Timeout {
                what: what.to_string(),
                ms: timeout.as_millis() as u64,
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The last `lines` lines of a log file, reading at most the last 64 KiB.
pub fn tail(path: &Path, lines: usize) -> String {
    const WINDOW: u64 = 64 * 1024;
    let Ok(mut file) = fs::File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(WINDOW);
    if file.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Whether a console log shows the kernel handing over to userspace.
pub(crate) fn console_booted(log: &Path) -> bool {
    fs::read(log)
        .map(|bytes| {
            bytes
                .windows(BOOT_MARKER.len())
                .any(|w| w == BOOT_MARKER.as_bytes())
        })
        .unwrap_or(false)
}

/// The files a VM toplevel provides, checked before anything is launched.
pub struct Toplevel {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub init: PathBuf,
    pub kernel_params: String,
}

impl Toplevel {
    pub fn read(closure: &str) -> Result<Toplevel, DriverError> {
        let root = Path::new(closure);
        let need = |name: &str| {
            let p = root.join(name);
            if p.exists() {
                Ok(p)
            } else {
                Err(DriverError::Invalid(format!(
                    "{closure} is not a bootable toplevel: it has no `{name}`"
                )))
            }
        };
        let kernel = need("kernel")?;
        let initrd = need("initrd")?;
        let init = need("init")?;
        let kernel_params = match fs::read_to_string(root.join("kernel-params")) {
            Ok(text) => text.trim().to_string(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io_error(format!("reading {closure}/kernel-params"))(e)),
        };
        Ok(Toplevel {
            kernel,
            initrd,
            init,
            kernel_params,
        })
    }

    /// `init=<toplevel>/init` and the toplevel's own parameters after ours, so they win.
    pub fn cmdline(&self, base: &str) -> String {
        let mut line = format!("{base} init={}", self.init.display());
        if !self.kernel_params.is_empty() {
            line.push(' ');
            line.push_str(&self.kernel_params);
        }
        line
    }
}

/// Which command-line dialect the installed virtiofsd speaks: the C one shipped with QEMU
/// up to 7.x (`-o source=`) or the Rust one (`--shared-dir`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VirtiofsdDialect {
    C,
    Rust,
}

fn virtiofsd_dialect(bin: &Path) -> VirtiofsdDialect {
    static DIALECT: OnceLock<VirtiofsdDialect> = OnceLock::new();
    *DIALECT.get_or_init(|| {
        let help = Command::new(bin)
            .arg("--help")
            .stdin(Stdio::null())
            .output()
            .map(|o| {
                let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&o.stderr));
                text
            })
            .unwrap_or_default();
        if help.contains("--shared-dir") {
            VirtiofsdDialect::Rust
        } else {
            VirtiofsdDialect::C
        }
    })
}

/// Starts virtiofsd sharing `/nix/store` on `<dir>/virtiofs.sock`, as the leader of a new
/// process group the VMM then joins. Returns it and the socket path once the socket exists.
pub fn spawn_virtiofsd(bin: &Path, dir: &Path) -> Result<(ProcRef, PathBuf), DriverError> {
    let socket = dir.join("virtiofs.sock");
    let _ = fs::remove_file(&socket);
    let log_path = dir.join("virtiofsd.log");
    let log = fs::File::create(&log_path).map_err(io_error("creating virtiofsd.log"))?;
    let log2 = log
        .try_clone()
        .map_err(io_error("creating virtiofsd.log"))?;
    let mut cmd = Command::new(bin);
    cmd.arg(format!("--socket-path={}", socket.display()));
    match virtiofsd_dialect(bin) {
        // The guest mounts the share read-only; chroot sandboxing needs no user namespaces.
        VirtiofsdDialect::C => cmd.args([
            "-o",
            "source=/nix/store",
            "-o",
            "cache=auto",
            "-o",
            "sandbox=chroot",
        ]),
        VirtiofsdDialect::Rust => cmd.args(["--shared-dir=/nix/store", "--sandbox=none"]),
    };
    cmd.stdout(log).stderr(log2);
    let proc = spawn_detached(cmd, "virtiofsd", None)?;
    wait_for_socket(
        &socket,
        &proc,
        "virtiofsd",
        Duration::from_secs(10),
        Some(&log_path),
    )?;
    Ok((proc, socket))
}

/// Looks `name` up in PATH (or takes it as a path when it contains a `/`).
pub fn find_program(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.is_file().then_some(p);
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_returns_last_lines() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let log = tmp.path().join("log");
        fs::write(
            &log,
            (1..=50).map(|i| format!("line {i}\n")).collect::<String>(),
        )
        .expect("write");
        assert_eq!(tail(&log, 2), "line 49\nline 50");
        assert_eq!(tail(&tmp.path().join("missing"), 2), "");
    }
}
