//! `pcr-test tui` as an operator runs it: the real binary in a real terminal (tmux, 120×40)
//! against a real control plane with registered workers. Keys go in with `tmux send-keys`,
//! the screen comes back with `tmux capture-pane`; every wait polls the screen for what it
//! expects until a deadline.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use schema::client::{AssignmentUpdate, GatewayClient};
use schema::model::*;
use test_support::{cargo_bin, ControlPlane};

const WAIT: Duration = Duration::from_secs(60);

/// A tmux server of its own (`-L`), so the test never touches the user's sessions; killed on
/// drop with everything running in it.
struct Tmux {
    socket: String,
    _home: tempfile::TempDir,
}

impl Tmux {
    /// Runs `command` in a shell in a detached 120×40 session. After the command ends the
    /// shell prints its exit status and the terminal settings, then keeps the pane open.
    fn start(command: &str) -> Tmux {
        let home = tempfile::tempdir().unwrap();
        let socket = format!("pcr-tui-test-{}-{}", std::process::id(), unique());
        let script = format!(
            "{command}; echo \"tui exited with $?\"; stty -a | tr ' ' '\\n' | grep -x -- '-\\?icanon'; exec cat"
        );
        let t = Tmux {
            socket,
            _home: home,
        };
        let out = t.tmux(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-x",
            "120",
            "-y",
            "40",
            "sh",
            "-c",
            &script,
        ]);
        assert!(
            out.status.success(),
            "tmux: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t
    }

    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            // Colours and a known terminal, whatever the test runner has.
            .env("TERM", "xterm-256color")
            .env_remove("TMUX")
            .output()
            .expect("run tmux")
    }

    /// Sends keys: names tmux knows (`Enter`, `Escape`, `C-c`) or literal text with `-l`.
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "0"];
        args.extend_from_slice(keys);
        assert!(self.tmux(&args).status.success());
    }

    fn type_text(&self, text: &str) {
        assert!(self
            .tmux(&["send-keys", "-t", "0", "-l", text])
            .status
            .success());
    }

    fn screen(&self) -> String {
        let out = self.tmux(&["capture-pane", "-p", "-t", "0"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen satisfies `check`; fails with the screen when it never does.
    fn wait_until(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let screen = self.screen();
            if check(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_for(&self, text: &str) -> String {
        self.wait_until(&format!("{text:?}"), |s| s.contains(text))
    }

    /// Waits for the TUI to exit and the shell to report; asserts it exited with 0 and left
    /// the terminal in canonical mode (raw mode off) and off the alternate screen.
    fn wait_for_clean_exit(&self) -> String {
        let screen = self.wait_until("the exit report", |s| {
            s.lines().any(|l| l == "icanon" || l == "-icanon")
        });
        assert!(screen.contains("tui exited with 0"), "{screen}");
        assert!(
            screen.lines().any(|l| l == "icanon"),
            "raw mode is still on:\n{screen}"
        );
        assert!(
            !screen.contains("procurator"),
            "the alternate screen is still shown:\n{screen}"
        );
        screen
    }

    /// The process id of the shell in the pane.
    fn shell_pid(&self) -> u32 {
        let out = self.tmux(&["display-message", "-p", "-t", "0", "#{pane_pid}"]);
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

fn unique() -> u64 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// The shell command that runs the TUI against `cp`.
fn tui_command(cp: &ControlPlane, state: &std::path::Path, extra: &str) -> String {
    format!(
        "env PROCURATOR_MASTER={} PROCURATOR_TOKEN_FILE={} PROCURATOR_HOME={} {} tui {extra}",
        cp.addr,
        cp.dir.path().join("operator.token").display(),
        state.display(),
        cargo_bin("pcr-test").display(),
    )
}

fn publish(cp: &ControlPlane, generation: u64, count: u32) {
    let out = Command::new(cargo_bin("pcr-test"))
        .args(["state", "publish", "-c"])
        .arg(format!("c0ffee{generation:02}"))
        .args(["-g", &generation.to_string(), "-n", &count.to_string()])
        .env("PROCURATOR_MASTER", &cp.addr)
        .env(
            "PROCURATOR_TOKEN_FILE",
            cp.dir.path().join("operator.token"),
        )
        .env_remove("PROCURATOR_TOKEN")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "publish: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two simulated workers on their own thread: they register, then every half second fetch
/// their assignment and report all of it running and healthy (which is also their heartbeat),
/// the way `pcr-worker` does. Stopped and joined on drop.
struct Workers {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Workers {
    fn start(cp: &ControlPlane) -> Workers {
        let (addr, token) = (cp.addr.clone(), cp.worker_token.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            tokio::task::LocalSet::new().block_on(&rt, async move {
                let mut workers = Vec::new();
                for (id, labels) in [
                    ("w1", vec![("zone", "a")]),
                    ("w2", vec![("zone", "b"), ("gpu", "true")]),
                ] {
                    let (gw, conn) = schema::net::connect_worker(&addr, &token).await.unwrap();
                    let gw = GatewayClient::new(gw);
                    let info = WorkerInfo {
                        id: id.into(),
                        labels: labels
                            .into_iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect::<BTreeMap<_, _>>(),
                        cpu: 8,
                        memory_mb: 16_384,
                        backends: vec![Backend::Process, Backend::Qemu],
                        hostname: format!("{id}.test"),
                        version: "test".into(),
                    };
                    gw.register(&info, test_support::sim::ignoring())
                        .await
                        .unwrap();
                    workers.push((id, gw, conn));
                }
                ready_tx.send(()).unwrap();
                while !flag.load(Ordering::Relaxed) {
                    for (id, gw, _) in &workers {
                        // After the control plane restarts these fail: the TUI is under test,
                        // not the workers.
                        let (generation, instances) = match gw.get_assignment(id, 0).await {
                            Ok(AssignmentUpdate::Changed(a)) => (a.generation, a.instances),
                            Ok(AssignmentUpdate::Unchanged(_)) => (0, Vec::new()),
                            Err(_) => continue,
                        };
                        let reports: Vec<InstanceReport> = instances
                            .into_iter()
                            .map(|(instance, spec)| InstanceReport {
                                uptime_ms: 1_000,
                                log_tail: format!("{} says hello", spec.name),
                                ..test_support::sim::running(&instance, &spec, generation)
                            })
                            .collect();
                        let _ = gw
                            .push_data(id, generation, &reports, &WorkerMetrics::default())
                            .await;
                    }
                    // The workers' own heartbeat period.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            });
        });
        ready_rx
            .recv_timeout(WAIT)
            .expect("the simulated workers registered");
        Workers {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The line of a list that starts with `name` (inside the table's border).
fn row<'a>(screen: &'a str, name: &str) -> Option<&'a str> {
    screen.lines().find(|l| l.starts_with(&format!("│{name} ")))
}

#[test]
fn operator_session_live_updates_actions_and_reconnect() {
    // Built before the workers start their leases.
    cargo_bin("pcr-test");
    let mut cp = ControlPlane::start();
    let _workers = Workers::start(&cp);
    publish(&cp, 1, 3);
    let state = tempfile::tempdir().unwrap();
    let tui = Tmux::start(&tui_command(&cp, state.path(), ""));

    // The overview, live.
    tui.wait_for("● live");
    let screen = tui.wait_for("Generation  1 · commit c0ffee01");
    assert!(screen.contains("Workers     2"), "{screen}");
    tui.wait_for("running 3");

    // Workers with their labels; a label filter.
    tui.type_text(":workers");
    tui.keys(&["Enter"]);
    let screen = tui.wait_for("workers [2]");
    assert!(
        row(&screen, "w1").is_some_and(|r| r.contains("ready")),
        "{screen}"
    );
    assert!(screen.contains("gpu=true"), "{screen}");
    tui.type_text("/gpu=true");
    tui.keys(&["Enter"]);
    let screen = tui.wait_for("workers [1/2]");
    assert!(row(&screen, "w2").is_some(), "{screen}");
    assert!(row(&screen, "w1").is_none(), "{screen}");
    tui.keys(&["Escape"]);
    tui.wait_for("workers [2]");

    // VMs, all running and in sync.
    tui.type_text(":vms");
    tui.keys(&["Enter"]);
    let screen = tui.wait_until("three running VMs", |s| {
        (0..3).all(|i| row(s, &format!("test{i}-0")).is_some_and(|r| r.contains("running")))
    });
    assert!(screen.contains("vms [3]"), "{screen}");

    // A new generation shows up without a key press: the watch stream drives the screen.
    publish(&cp, 2, 4);
    tui.wait_until("generation 2 with its fourth VM", |s| {
        s.contains("gen 2") && row(s, "test3-0").is_some()
    });

    // A VM's detail carries its worker's report: the console log.
    tui.type_text("/test3-0");
    tui.keys(&["Enter", "Enter"]);
    tui.wait_for("vm test3-0");
    tui.wait_for("test3 says hello");
    // One Esc at a time: two in one write read as Alt-Esc, as in every terminal program.
    tui.keys(&["Escape"]);
    tui.wait_for("vms [1/4]");
    tui.keys(&["Escape"]);
    tui.wait_for("vms [4]");

    // Cordon asks first, then happens, and the list shows it.
    tui.type_text(":workers");
    tui.keys(&["Enter"]);
    tui.wait_for("workers [2]");
    // To the top first: the selection stayed on w2 since the gpu filter.
    tui.type_text("gc");
    tui.wait_for("Cordon worker w1?");
    tui.type_text("n");
    tui.wait_for("cancelled");
    assert!(row(&tui.screen(), "w1").is_some_and(|r| r.contains("ready")));
    tui.type_text("cy");
    tui.wait_until("w1 cordoned", |s| {
        row(s, "w1").is_some_and(|r| r.contains("cordoned"))
    });
    tui.wait_for("worker w1 is cordoned");

    // Roll back to generation 1 from the history.
    tui.type_text(":generations");
    tui.keys(&["Enter"]);
    tui.wait_for("generations [2]");
    tui.type_text("jr");
    tui.wait_for("Roll back to generation 1?");
    tui.type_text("y");
    tui.wait_for("generation 1 is active again");
    tui.wait_for("gen 1 ");

    // The control plane goes away: the screen says so, and reconnects by itself.
    cp.kill9();
    tui.wait_for("DISCONNECTED");
    cp.restart();
    tui.wait_for("● live");
    tui.type_text(":overview");
    tui.keys(&["Enter"]);
    tui.wait_for("Generation  1");

    // q quits and gives the terminal back as it was.
    tui.type_text("q");
    tui.wait_for_clean_exit();
}

#[test]
fn sigterm_and_ctrl_c_restore_the_terminal() {
    let cp = ControlPlane::start();
    let state = tempfile::tempdir().unwrap();

    let tui = Tmux::start(&tui_command(&cp, state.path(), "--view workers"));
    tui.wait_for("no workers registered");
    // Raw mode: Ctrl-C is a key, and it quits.
    tui.keys(&["C-c"]);
    tui.wait_for_clean_exit();

    let tui = Tmux::start(&tui_command(&cp, state.path(), ""));
    tui.wait_for("● live");
    let shell = tui.shell_pid();
    let children = std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).unwrap();
    let pid: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
    assert!(pid > 1, "the TUI's pid, not a process group");
    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    tui.wait_for_clean_exit();
}

#[test]
fn refuses_without_a_terminal_or_a_control_plane() {
    let cp = ControlPlane::start();
    // No terminal: one sentence, nothing drawn.
    let out = Command::new(cargo_bin("pcr-test"))
        .arg("tui")
        .env("PROCURATOR_MASTER", &cp.addr)
        .env(
            "PROCURATOR_TOKEN_FILE",
            cp.dir.path().join("operator.token"),
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs a terminal"), "{err}");

    // A terminal but nothing listening: the first connection fails before the screen is
    // taken over, as for every other command.
    let state = tempfile::tempdir().unwrap();
    let tui = Tmux::start(&format!(
        "env PROCURATOR_MASTER=127.0.0.1:1 PROCURATOR_TOKEN=x PROCURATOR_HOME={} {} tui",
        state.path().display(),
        cargo_bin("pcr-test").display()
    ));
    let screen = tui.wait_for("tui exited with 1");
    assert!(
        screen.contains("error: cannot connect to the control plane at 127.0.0.1:1"),
        "{screen}"
    );
}

/// `pcr-ci` on a free port, killed on drop.
struct PcrCi {
    child: std::process::Child,
    url: String,
    state: std::path::PathBuf,
}

impl PcrCi {
    fn start(dir: &std::path::Path, cp: &ControlPlane) -> PcrCi {
        use std::io::BufRead;
        let state = dir.join("ci");
        std::fs::create_dir_all(&state).unwrap();
        let log = std::fs::File::create(dir.join("ci.log")).unwrap();
        let mut cmd = Command::new(cargo_bin("pcr-ci"));
        cmd.args(["--listen", "127.0.0.1:0", "--poll-interval-secs", "0"])
            .arg("--state-dir")
            .arg(&state)
            .args(["--master", &cp.addr, "--token", &cp.operator_token])
            .env("NIX_CONFIG", NIX_CONFIG)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(log);
        test_support::die_with_parent(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(url) = line.strip_prefix("pcr-ci listening on ") {
                    let _ = tx.send(url.to_string());
                }
            }
        });
        let url = rx.recv_timeout(WAIT).unwrap_or_else(|_| {
            panic!(
                "pcr-ci did not start: {}",
                std::fs::read_to_string(dir.join("ci.log")).unwrap_or_default()
            )
        });
        PcrCi { child, url, state }
    }
}

impl Drop for PcrCi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What nix needs on these machines (no nix.conf is assumed).
const NIX_CONFIG: &str =
    "experimental-features = nix-command flakes\nsubstituters =\nsandbox = false";

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn pipelines_of_a_real_pcr_ci_with_steps_and_log() {
    let cp = ControlPlane::start();
    let dir = tempfile::tempdir().unwrap();
    let ci = PcrCi::start(dir.path(), &cp);
    run(Command::new(cargo_bin("pcr-ci"))
        .args(["repo", "create", "demo", "--state-dir"])
        .arg(&ci.state));
    let bare = ci.state.join("repos").join("demo.git");

    // A flake without blueprintJSON: its pipeline checks out, checks, and fails to evaluate,
    // with nix's error in the log.
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("flake.nix"), "{ outputs = { self }: { }; }\n").unwrap();
    let git = |args: &[&str]| {
        run(Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(&src)
            .env("NIX_CONFIG", NIX_CONFIG))
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "flake.nix"]);
    git(&["commit", "-q", "-m", "no blueprint"]);
    run(Command::new("git")
        .args(["push", "-q"])
        .arg(&bare)
        .arg("HEAD:refs/heads/main")
        .current_dir(&src));

    let state = tempfile::tempdir().unwrap();
    let tui = Tmux::start(&tui_command(
        &cp,
        state.path(),
        &format!("--ci {} --view pipelines", ci.url),
    ));
    // The list is polled while on screen: the run appears and finishes without a key press.
    let screen = tui.wait_until("the failed run", |s| {
        row(s, "1").is_some_and(|r| r.contains("demo") && r.contains("failed"))
    });
    assert!(screen.contains("pipelines [1]"), "{screen}");
    tui.keys(&["Enter"]);
    tui.wait_for("pipeline 1");
    tui.wait_for("Steps");
    let screen = tui.wait_for("blueprintJSON");
    assert!(screen.contains("Log (last"), "{screen}");
    tui.type_text("q");
    tui.wait_for_clean_exit();
}
