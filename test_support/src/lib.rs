//! Shared scaffolding for Procurator's integration tests: locating (and if needed building) the
//! workspace's binaries, starting a real control plane process on a free port with a temporary
//! database, the pieces of a simulated worker ([`sim`]), and building test VM images. Never used
//! by production code.

pub mod pvh_guest;
pub mod sim;
pub mod vm_image;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Path of a workspace binary, building it first if this test run has not.
///
/// Integration tests of one crate cannot name another crate's binaries through cargo, so
/// this looks next to the test executable (`target/<profile>/deps/..`) and runs
/// `cargo build --bin NAME` when it is missing.
pub fn cargo_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps")
        .to_path_buf();
    let path = profile_dir.join(name);
    // Build every time it's asked for once per process: cheap when up to date, and it keeps
    // a stale binary from an earlier build from being tested.
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !built.iter().any(|b| b == name) {
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        // From the workspace root, so `--bin` looks in every member.
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root");
        cmd.current_dir(root)
            .args(["build", "--quiet", "--bin", name]);
        if profile_dir.file_name().is_some_and(|p| p == "release") {
            cmd.arg("--release");
        }
        if let Some(target) = profile_dir.parent() {
            cmd.env("CARGO_TARGET_DIR", target);
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "cargo build --bin {name} failed");
        built.push(name.to_string());
    }
    path
}

pub use support::process::die_with_parent;

/// A child process, killed when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
    pub log: PathBuf,
}

impl Proc {
    /// Its stderr so far (for failure messages).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cmd` with stderr appended to `log`, dying with the test process, and waits for a
/// stdout line starting with `prefix` (every binary prints `<name> listening on <addr>`).
/// Answers the rest of that line. The one way tests start a service and learn its port.
pub fn spawn_ready(name: &str, mut cmd: Command, log: &Path, prefix: &str) -> (Proc, String) {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(file);
    die_with_parent(&mut cmd);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    let prefix = prefix.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix(&prefix) {
                let _ = tx.send(rest.to_string());
            }
        }
    });
    let proc = Proc {
        child,
        name: name.to_string(),
        log: log.to_path_buf(),
    };
    // Generous: on a loaded 2-core machine a first start can take a while.
    match rx.recv_timeout(Duration::from_secs(180)) {
        Ok(rest) => (proc, rest),
        Err(_) => panic!("{name} did not start; its log:\n{}", proc.log_text()),
    }
}

/// Options for [`ControlPlane::start_with`].
#[derive(Debug, Clone)]
pub struct Options {
    pub lease_ms: u64,
    pub heartbeat_ms: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            lease_ms: 10_000,
            heartbeat_ms: 2_000,
        }
    }
}

/// A real `pcr-control-plane` process with its own temporary state directory.
pub struct ControlPlane {
    child: Option<Proc>,
    pub addr: String,
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    pub operator_token: String,
    pub worker_token: String,
    options: Options,
}

impl ControlPlane {
    pub fn start() -> ControlPlane {
        ControlPlane::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> ControlPlane {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("control-plane.db");
        let (child, addr) = spawn(&db, "127.0.0.1:0", &options);
        let read = |f: &str| {
            std::fs::read_to_string(dir.path().join(f))
                .expect("token file")
                .trim()
                .to_string()
        };
        ControlPlane {
            child: Some(child),
            addr,
            operator_token: read("operator.token"),
            worker_token: read("worker.token"),
            db,
            dir,
            options,
        }
    }

    /// SIGKILL, no chance to clean up: what a crash looks like.
    pub fn kill9(&mut self) {
        // Dropping the process kills it with SIGKILL and reaps it.
        self.child.take();
    }

    /// Starts again on the same address and database.
    pub fn restart(&mut self) {
        self.kill9();
        let (child, addr) = spawn(&self.db, &self.addr, &self.options);
        assert_eq!(addr, self.addr);
        self.child = Some(child);
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|p| p.child.id())
    }

    /// The control plane's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("control-plane.log")).unwrap_or_default()
    }

    /// Connects as an operator. Call inside a `LocalSet`.
    pub async fn operator(&self) -> schema::client::MasterClient {
        let (master, _conn) = schema::net::connect_master(&self.addr, &self.operator_token)
            .await
            .expect("operator login");
        schema::client::MasterClient::new(master)
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn spawn(db: &Path, listen: &str, options: &Options) -> (Proc, String) {
    let mut cmd = Command::new(cargo_bin("pcr-control-plane"));
    cmd.arg("--listen")
        .arg(listen)
        .arg("--db")
        .arg(db)
        .arg("--lease-ms")
        .arg(options.lease_ms.to_string())
        .arg("--heartbeat-ms")
        .arg(options.heartbeat_ms.to_string())
        .env("RUST_LOG", "info");
    spawn_ready(
        "pcr-control-plane",
        cmd,
        &db.with_file_name("control-plane.log"),
        "pcr-control-plane listening on ",
    )
}

/// Runs `f` to completion on a current-thread runtime inside a `LocalSet`, where Cap'n Proto
/// clients (which are `!Send`) live.
pub fn local<F: std::future::Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a test runtime");
    tokio::task::LocalSet::new().block_on(&rt, f)
}

/// Polls `check` until it returns `Some`, or panics after `timeout` with `what`.
/// For conditions that arrive by themselves (a worker's report, a lease expiring), where no
/// event can be awaited directly.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
