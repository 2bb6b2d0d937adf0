//! Scaffolding for pcr-ci's end-to-end tests: a real control plane, a real `pcr-cache`, a real
//! `pcr-ci` (and, where asked, real workers) on free ports, and a cluster repository whose
//! flake uses this repository's Nix library, pushed with plain `git push`.

#![allow(dead_code)] // each test binary uses a different part

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ci_service::store::{PipelineDetail, Status};
use schema::ci::client::CiClient;
use tempfile::TempDir;
use test_support::{cargo_bin, die_with_parent, ControlPlane};

/// What nix needs on these machines (no nix.conf is assumed).
pub const NIX_CONFIG: &str =
    "experimental-features = nix-command flakes\nsubstituters =\nsandbox = false\nnarinfo-cache-negative-ttl = 0";

pub const UPLOAD_TOKEN: &str = "ci-test-upload-token";
pub const WEBHOOK_SECRET: &str = "ci-test-webhook-secret";

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("ci_service sits in the workspace")
        .to_path_buf()
}

pub use test_support::{spawn_ready, Proc};

pub struct Cache {
    pub proc: Proc,
    pub url: String,
    pub public_key: String,
    pub storage: PathBuf,
}

impl Cache {
    pub fn start(dir: &Path) -> Cache {
        Cache::start_at(dir, "127.0.0.1:0")
    }

    /// A cache on `listen` with its storage and keys under `dir`.
    pub fn start_at(dir: &Path, listen: &str) -> Cache {
        let keys = dir.join("keys");
        let out = Command::new(cargo_bin("pcr-cache"))
            .args(["keygen", "ci-test-1", "--out"])
            .arg(&keys)
            .output()
            .expect("pcr-cache keygen");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let public_key = std::fs::read_to_string(keys.join("ci-test-1.public"))
            .expect("public key")
            .trim()
            .to_string();
        let storage = dir.join("storage");
        let mut cmd = Command::new(cargo_bin("pcr-cache"));
        cmd.args([
            "serve",
            "--listen",
            listen,
            "--gc-interval",
            "0",
            "--upload-token",
            UPLOAD_TOKEN,
        ])
        .arg("--storage")
        .arg(&storage)
        .arg("--signing-key")
        .arg(keys.join("ci-test-1.secret"));
        let (proc, addr) = spawn_ready("pcr-cache", cmd, &dir.join("cache.log"), "listening on ");
        Cache {
            proc,
            url: addr,
            public_key,
            storage,
        }
    }

    /// Whether the cache serves a narinfo for `store_path`.
    pub async fn has(&self, store_path: &str) -> bool {
        let hash = &store_path["/nix/store/".len().."/nix/store/".len() + 32];
        reqwest::Client::new()
            .head(format!("{}/{hash}.narinfo", self.url))
            .send()
            .await
            .map(|r| r.status().is_success())
            .unwrap_or(false)
    }

    pub async fn pins(&self) -> serde_json::Value {
        reqwest::Client::new()
            .get(format!("{}/api/pins", self.url))
            .bearer_auth(UPLOAD_TOKEN)
            .send()
            .await
            .expect("pins")
            .json()
            .await
            .expect("pins json")
    }
}

pub struct Ci {
    pub proc: Proc,
    pub url: String,
    pub state: PathBuf,
    pub client: CiClient,
}

impl Ci {
    pub fn start(dir: &Path, cp: &ControlPlane, cache: Option<&Cache>) -> Ci {
        Ci::start_polling(dir, cp, cache, 0)
    }

    /// With polling of remotes every `poll_secs` seconds (0: off).
    pub fn start_polling(
        dir: &Path,
        cp: &ControlPlane,
        cache: Option<&Cache>,
        poll_secs: u64,
    ) -> Ci {
        let state = dir.join("ci");
        std::fs::create_dir_all(&state).expect("ci state");
        let secret = dir.join("webhook.secret");
        std::fs::write(&secret, WEBHOOK_SECRET).expect("secret");
        let mut cmd = Command::new(cargo_bin("pcr-ci"));
        cmd.args([
            "--listen",
            "127.0.0.1:0",
            "--poll-interval-secs",
            &poll_secs.to_string(),
        ])
        .arg("--state-dir")
        .arg(&state)
        .args(["--master", &cp.addr, "--token", &cp.operator_token])
        .arg("--webhook-secret-file")
        .arg(&secret)
        .env("NIX_CONFIG", NIX_CONFIG)
        .env("RUST_LOG", "info");
        if let Some(cache) = cache {
            cmd.args(["--cache-url", &cache.url, "--cache-token", UPLOAD_TOKEN]);
        }
        let (proc, url) = spawn_ready("pcr-ci", cmd, &dir.join("ci.log"), "pcr-ci listening on ");
        let client = CiClient::new(&url).with_token(cp.operator_token.clone());
        Ci {
            proc,
            url,
            state,
            client,
        }
    }

    /// `pcr-ci repo create NAME` against the running service's state directory.
    pub fn create_repo(&self, name: &str, remote: Option<&str>) -> PathBuf {
        let mut cmd = Command::new(cargo_bin("pcr-ci"));
        cmd.args(["repo", "create", name])
            .arg("--state-dir")
            .arg(&self.state);
        if let Some(remote) = remote {
            cmd.args(["--remote", remote]);
        }
        let out = cmd.output().expect("pcr-ci repo create");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.state.join("repos").join(format!("{name}.git"))
    }

    /// Waits until run `id` has finished; answers it.
    pub async fn finished(&self, id: u64, timeout: Duration) -> PipelineDetail {
        let deadline = Instant::now() + timeout;
        loop {
            let detail = self.client.pipeline(id).await.expect("read pipeline");
            if detail.summary.status.is_finished() {
                return detail;
            }
            assert!(
                Instant::now() < deadline,
                "pipeline {id} did not finish in {timeout:?}: {detail:#?}\npcr-ci log:\n{}",
                self.proc.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The run of `commit`, once pcr-ci has recorded it.
    pub async fn pipeline_of(&self, commit: &str) -> u64 {
        test_support::eventually(
            Duration::from_secs(30),
            "the push to be recorded",
            || async {
                self.client
                    .pipelines(None, 100)
                    .await
                    .ok()?
                    .into_iter()
                    .find(|p| p.commit == commit)
                    .map(|p| p.id)
            },
        )
        .await
    }

    /// The whole log of a run, one string.
    pub async fn log(&self, id: u64) -> String {
        let page = self.client.logs(id, 0, Duration::ZERO).await.expect("logs");
        page.lines
            .iter()
            .map(|l| l.line.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

pub fn assert_succeeded(detail: &PipelineDetail, log: &str) {
    assert_eq!(
        detail.summary.status,
        Status::Succeeded,
        "pipeline failed: {}\n{detail:#?}\n{log}",
        detail.summary.message
    );
}

/// One process service of a test cluster: busybox httpd on `port`, answering `/healthz` and
/// `/version` (the `version` text is part of the closure, so changing it changes the closure).
#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub port: u16,
    pub version: String,
    /// Extra Nix text inside `cluster.vms.<name> = { … }`.
    pub extra: String,
}

impl Service {
    pub fn new(name: &str, port: u16) -> Service {
        Service {
            name: name.into(),
            port,
            version: "v1".into(),
            extra: String::new(),
        }
    }
}

/// A cluster repository of its own: a copy of the Nix library, a flake, a `cluster.nix`.
pub struct Source {
    pub dir: TempDir,
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=ci-test",
            "-c",
            "user.email=ci-test@procurator.invalid",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let path = entry.path();
        let target = to.join(entry.file_name());
        if std::fs::metadata(&path).expect("stat").is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy");
        }
    }
}

impl Source {
    /// A repository of the files already in `dir`.
    pub fn from_dir(dir: TempDir) -> Source {
        git(dir.path(), &["init", "-q", "-b", "main"]);
        Source { dir }
    }

    pub fn new() -> Source {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_dir(&workspace().join("nix/lib"), &dir.path().join("lib"));
        std::fs::write(
            dir.path().join("flake.nix"),
            "{\n  outputs = { self }: ((import ./lib).evalCluster { modules = [ ./cluster.nix ]; }).outputs;\n}\n",
        )
        .expect("flake.nix");
        git(dir.path(), &["init", "-q", "-b", "main"]);
        Source { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write_cluster(&self, services: &[Service]) {
        let mut text = String::from("{ procurator, ... }:\n{\n  cluster.name = \"ci-test\";\n");
        for s in services {
            text.push_str(&format!(
                r#"  cluster.vms.{name} = {{
    memory = 32;
    package = procurator.mkProcessService {{
      name = "{name}";
      script = ''exec httpd -f -p "$PORT" -h @out@/share/{name}/www'';
      files."www/healthz" = "ok\n";
      files."www/version" = "{version}\n";
    }};
    env.PORT = "{port}";
    ports.http.guest = {port};
    deployment.healthChecks = [ {{ type = "http"; port = {port}; path = "/healthz"; intervalMs = 100; timeoutMs = 500; retries = 2; }} ];
    deployment.rollout.minHealthyTimeMs = 0;
    {extra}
  }};
"#,
                name = s.name,
                port = s.port,
                version = s.version,
                extra = s.extra,
            ));
        }
        text.push_str("}\n");
        std::fs::write(self.path().join("cluster.nix"), text).expect("cluster.nix");
    }

    pub fn write(&self, file: &str, text: &str) {
        std::fs::write(self.path().join(file), text).expect("write");
    }

    /// Commits everything; answers the commit id.
    pub fn commit(&self, message: &str) -> String {
        git(self.path(), &["add", "-A"]);
        git(
            self.path(),
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        git(self.path(), &["rev-parse", "HEAD"])
    }

    /// `git push <bare> main`; answers what git printed (the hook's lines included).
    pub fn push(&self, bare: &Path) -> String {
        let out = Command::new("git")
            .args(["push", "-q"])
            .arg(bare)
            .arg("HEAD:refs/heads/main")
            .current_dir(self.path())
            .output()
            .expect("git push");
        assert!(
            out.status.success(),
            "git push: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

pub fn free_port() -> u16 {
    // Free when we look; the service binds it moments later. busybox httpd cannot take a
    // listening socket, so this is as good as it gets for process workloads.
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind port 0")
        .port()
}

/// A real `pcr-worker`; dropping it stops the worker and the workloads it started.
pub struct Worker(Proc);

impl Worker {
    pub fn log_text(&self) -> String {
        self.0.log_text()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.child.kill();
        let _ = self.0.child.wait();
        // The worker leaves its workloads running on purpose (a restarted worker adopts
        // them); this process is a subreaper, so they are now its children: stop them, or
        // they would hold their ports for the next test.
        kill_adopted();
    }
}

/// Processes adopted by this (subreaper) process — children in a process group of their own,
/// which only the workers' workloads are — are killed and reaped.
fn kill_adopted() {
    use rustix::process::{kill_process_group, waitpid, Pid, Signal, WaitOptions};
    let me = std::process::id();
    let my_group = rustix::process::getpgrp().as_raw_nonzero().get() as u32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    let mut adopted = Vec::new();
    for pid in entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
    {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let (Some(ppid), Some(pgrp)) = (fields.get(1), fields.get(2)) else {
            continue;
        };
        let (Ok(ppid), Ok(pgrp)) = (ppid.parse::<u32>(), pgrp.parse::<u32>()) else {
            continue;
        };
        if ppid == me && pgrp != my_group {
            adopted.push((pid, pgrp));
        }
    }
    for (pid, pgrp) in adopted {
        if let Some(group) = Pid::from_raw(pgrp as i32) {
            let _ = kill_process_group(group, Signal::KILL);
        }
        if let Some(pid) = Pid::from_raw(pid as i32) {
            let _ = waitpid(Some(pid), WaitOptions::empty());
        }
    }
}

/// A real `pcr-worker` offering only the process backend.
pub fn start_worker(dir: &Path, cp: &ControlPlane, cache: &Cache, id: &str) -> Worker {
    start_worker_with(dir, cp, cache, id, "process")
}

/// A real `pcr-worker` offering `backends` (`--backends`, e.g. `process,qemu`).
pub fn start_worker_with(
    dir: &Path,
    cp: &ControlPlane,
    cache: &Cache,
    id: &str,
    backends: &str,
) -> Worker {
    // Workloads the worker leaves behind come back to this process (see [`Worker`]).
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
        .expect("become a subreaper");
    let token = dir.join("worker.token");
    std::fs::write(&token, &cp.worker_token).expect("worker token");
    let log = dir.join(format!("{id}.log"));
    let file = std::fs::File::create(&log).expect("log");
    let mut cmd = Command::new(cargo_bin("pcr-worker"));
    cmd.args([
        "--master",
        &cp.addr,
        "--id",
        id,
        "--backends",
        backends,
        "--cpu",
        "4",
        "--memory-mb",
        "4096",
    ])
    .arg("--token-file")
    .arg(&token)
    .arg("--state-dir")
    .arg(dir.join(id))
    .args([
        "--cache-url",
        &cache.url,
        "--cache-public-key",
        &cache.public_key,
    ])
    .env("NIX_CONFIG", NIX_CONFIG)
    .env("RUST_LOG", "info")
    .stdin(Stdio::null())
    .stdout(file.try_clone().expect("log"))
    .stderr(file);
    die_with_parent(&mut cmd);
    Worker(Proc {
        child: cmd.spawn().expect("spawn pcr-worker"),
        name: id.to_string(),
        log,
    })
}

/// GET http://127.0.0.1:port/path → body, if something answers 200.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.split_whitespace().nth(1).filter(|s| *s == "200")?;
    Some(body.to_string())
}

/// A push delivery for `after` on main, as Gitea and GitHub send it.
pub fn webhook_body(after: &str) -> String {
    format!(
        r#"{{"ref":"refs/heads/main","before":"0000000000000000000000000000000000000000","after":"{after}","repository":{{"name":"cluster","full_name":"ops/cluster","clone_url":"http://git.invalid/ops/cluster.git"}}}}"#
    )
}

/// An empty bare repository with `main` as its default branch: an upstream pcr-ci mirrors, as
/// it would mirror a Gitea repository.
pub fn bare_upstream(dir: &Path) -> PathBuf {
    let upstream = dir.join("upstream.git");
    let out = Command::new("git")
        .args(["init", "-q", "--bare", "-b", "main"])
        .arg(&upstream)
        .output()
        .expect("git init");
    assert!(out.status.success());
    upstream
}

/// The host kernel as scripts/example-kernel lays it out, in `<returned dir>/kernel`, or None
/// (after saying so loudly) when this machine has no Debian cloud kernel.
pub fn example_kernel() -> Option<TempDir> {
    let has_kernel = std::fs::read_dir("/boot")
        .map(|entries| {
            entries.flatten().any(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.starts_with("vmlinuz-") && name.ends_with("-cloud-amd64")
            })
        })
        .unwrap_or(false);
    if !has_kernel {
        eprintln!(
            "\n*** SKIPPED: no /boot/vmlinuz-*-cloud-amd64 on this machine; \
             install linux-image-cloud-amd64 (scripts/setup does) to test the example microVM ***\n"
        );
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(workspace().join("scripts/example-kernel"))
        .arg("--dest")
        .arg(dir.path().join("kernel"))
        .output()
        .expect("run scripts/example-kernel");
    assert!(
        out.status.success(),
        "scripts/example-kernel: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(dir)
}

/// POSTs `body` to pcr-ci's webhook for repository `cluster`, signed by Gitea's rules.
pub async fn send_gitea_push(
    http: &reqwest::Client,
    ci_url: &str,
    body: String,
) -> reqwest::Response {
    let signature = ci_service::webhook::sign(WEBHOOK_SECRET, body.as_bytes());
    http.post(format!("{ci_url}/webhook/cluster"))
        .header("X-Gitea-Event", "push")
        .header("X-Gitea-Signature", signature)
        .body(body)
        .send()
        .await
        .expect("post")
}

/// Waits until at least one worker has registered with the control plane.
pub async fn a_worker_registered(op: &schema::client::MasterClient) {
    test_support::eventually(
        Duration::from_secs(60),
        "the worker to register",
        || async {
            let status = op.cluster_status().await.ok()?;
            (!status.workers.is_empty()).then_some(())
        },
    )
    .await;
}
