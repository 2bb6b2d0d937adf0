//! Scaffolding shared by the worker's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use worker::driver::{terminate_group, Launch};
use worker::state::StateDir;

/// Kills, on drop, every process group recorded in a state directory (and any launch added by
/// hand): workloads are detached from the worker on purpose, so tests must clean up after
/// them explicitly, whatever happens.
pub struct KillOnDrop {
    pub state_dirs: Vec<PathBuf>,
    pub launches: Vec<Launch>,
}

impl KillOnDrop {
    pub fn new() -> KillOnDrop {
        KillOnDrop {
            state_dirs: Vec::new(),
            launches: Vec::new(),
        }
    }
    pub fn watch_state(&mut self, dir: &Path) {
        self.state_dirs.push(dir.to_path_buf());
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for launch in &self.launches {
            terminate_group(launch, Duration::ZERO);
        }
        for dir in &self.state_dirs {
            if let Ok(state) = StateDir::open(dir) {
                for found in state.scan().unwrap_or_default() {
                    if let Some(launch) = found.launch {
                        terminate_group(&launch, Duration::ZERO);
                    }
                }
            }
        }
    }
}

/// Polls `check` (blocking) until it yields, or panics after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Builds, with real `nix build`, a process workload: `bin/web` serves `www/` with busybox
/// httpd on 127.0.0.1:$PORT, and `www/index.html` says `hello from <version>`. Different
/// versions are different closures.
pub fn build_web_closure(version: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("tools")).expect("tools");
    std::fs::copy("/bin/busybox", dir.path().join("tools/busybox")).expect("copy busybox");
    let flake = r##"{
  outputs = { self }: {
    packages.x86_64-linux.default = builtins.derivation {
      name = "procurator-test-web";
      system = "x86_64-linux";
      builder = "/bin/sh";
      tools = ./tools;
      args = [ "-c" ''
        bb=$tools/busybox
        $bb mkdir -p $out/bin $out/www
        $bb cp $bb $out/bin/busybox
        echo "hello from @VERSION@" > $out/www/index.html
        {
          echo "#!$out/bin/busybox sh"
          echo "echo \"web @VERSION@ listening on \$PORT\""
          echo "exec $out/bin/busybox httpd -f -p 127.0.0.1:\$PORT -h $out/www"
        } > $out/bin/web
        $bb chmod 755 $out/bin/web
      '' ];
    };
  };
}
"##
    .replace("@VERSION@", version);
    std::fs::write(dir.path().join("flake.nix"), flake).expect("flake");
    test_support::vm_image::nix_build(dir.path(), "default")
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// GET / on 127.0.0.1:port, the body if it answered 200.
pub fn http_get(port: u16) -> Option<String> {
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let r = worker::http1::request(stream, "GET", "127.0.0.1", "/", None).ok()?;
    (r.status == 200).then_some(r.body)
}

/// A running `pcr-worker` process, killed (SIGKILL, like a crash) on drop. Its workloads are
/// not: they are detached on purpose; [`KillOnDrop`] takes care of them.
pub struct WorkerProcess {
    pub child: std::process::Child,
    pub log: PathBuf,
}

impl WorkerProcess {
    pub fn start(addr: &str, token: &str, id: &str, state: &Path, extra: &[&str]) -> WorkerProcess {
        let log = state.with_extension("log");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("worker log");
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pcr-worker"));
        cmd.args(["--master", addr, "--token", token, "--id", id])
            .arg("--state-dir")
            .arg(state)
            .args(["--backends", "process", "--stop-grace-secs", "5"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out);
        test_support::die_with_parent(&mut cmd);
        WorkerProcess {
            child: cmd.spawn().expect("spawn pcr-worker"),
            log,
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The launch recorded for an instance in a worker's state directory.
pub fn recorded_launch(state: &Path, instance: &str) -> Option<Launch> {
    let text =
        std::fs::read_to_string(state.join("instances").join(instance).join("launch.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// A workload that only runs (no port), so two copies can exist on one host and be counted.
pub fn build_sleeper() -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("tools")).expect("tools");
    std::fs::copy("/bin/busybox", dir.path().join("tools/busybox")).expect("copy busybox");
    let flake = r##"{
  outputs = { self }: {
    packages.x86_64-linux.default = builtins.derivation {
      name = "procurator-test-sleeper";
      system = "x86_64-linux";
      builder = "/bin/sh";
      tools = ./tools;
      args = [ "-c" ''
        $tools/busybox mkdir -p $out/bin
        $tools/busybox cp $tools/busybox $out/bin/busybox
        {
          echo "#!$out/bin/busybox sh"
          echo "exec $out/bin/busybox sleep 100000"
        } > $out/bin/sleeper
        $tools/busybox chmod 755 $out/bin/sleeper
      '' ];
    };
  };
}
"##;
    std::fs::write(dir.path().join("flake.nix"), flake).expect("flake");
    test_support::vm_image::nix_build(dir.path(), "default")
}

/// Processes running `instance` of `closure`, by pid.
pub fn copies(instance: &str, closure: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if !String::from_utf8_lossy(&cmdline).contains(closure) {
            continue;
        }
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        let wanted = format!("PROCURATOR_INSTANCE={instance}");
        if environ.split(|b| *b == 0).any(|kv| kv == wanted.as_bytes()) {
            out.push(pid);
        }
    }
    out
}

/// A TCP relay in front of the control plane that can be cut like a network link: while it
/// is cut nothing passes either way and nothing is closed, as when a switch between two hosts
/// fails. Connections made while it is cut wait too.
pub struct Relay {
    pub addr: String,
    cut: tokio::sync::watch::Sender<bool>,
}

impl Relay {
    pub fn start(target: &str) -> Relay {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("address").to_string();
        let (cut, rx) = tokio::sync::watch::channel(false);
        let target = target.to_string();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let mut closed = rx.clone();
                loop {
                    let (inbound, _) = tokio::select! {
                        accepted = listener.accept() => match accepted {
                            Ok(a) => a,
                            Err(_) => continue,
                        },
                        // The relay was dropped: stop, and with the runtime every pipe.
                        Err(_) = closed.changed() => return,
                    };
                    let Ok(outbound) = tokio::net::TcpStream::connect(&target).await else {
                        continue;
                    };
                    let (ri, wi) = inbound.into_split();
                    let (ro, wo) = outbound.into_split();
                    tokio::spawn(pipe(ri, wo, rx.clone()));
                    tokio::spawn(pipe(ro, wi, rx.clone()));
                }
            });
        });
        Relay { addr, cut }
    }

    /// Cuts (`true`) or heals (`false`) the link.
    pub fn cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut cut: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // Nothing is read while cut either, so the sender's buffers fill as on a dead link.
        while *cut.borrow_and_update() {
            if cut.changed().await.is_err() {
                return;
            }
        }
        let n = tokio::select! {
            n = from.read(&mut buf) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            // Cut while waiting for data: go back and wait for the link.
            Ok(()) = cut.changed() => continue,
        };
        while *cut.borrow_and_update() {
            if cut.changed().await.is_err() {
                return;
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Waits until `count` workers have registered with the control plane.
pub async fn workers_registered(master: &schema::client::MasterClient, count: usize) {
    test_support::eventually(
        Duration::from_secs(60),
        &format!("{count} registered workers"),
        || async { (master.cluster_status().await.ok()?.workers.len() == count).then_some(()) },
    )
    .await
}
