//! Scaffolding shared by the cache's integration tests: a cache served on a free port, the real
//! `nix` configured for this machine, the fixture closure, and hand-made NARs.

#![allow(dead_code)] // each test binary uses a different part

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use cache::signing::SecretKey;
use cache::{App, Auth, Cache, StoreConfig};
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const UPLOAD_TOKEN: &str = "test-upload-token";

/// Nix settings for this machine: flakes, no substituters (no network), no sandbox.
pub const NIX_CONFIG: &str =
    "experimental-features = nix-command flakes\nsubstituters =\nsandbox = false\n";

/// A `nix` command isolated from other tests: its own narinfo disk cache.
pub fn nix(xdg_cache: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("nix");
    cmd.env("NIX_CONFIG", NIX_CONFIG)
        .env("XDG_CACHE_HOME", xdg_cache)
        .kill_on_drop(true);
    cmd
}

pub async fn run(cmd: &mut tokio::process::Command) -> Output {
    cmd.output().await.expect("nix runs")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Store paths of `tests/fixture/flake.nix`, built once per test binary with the real nix.
pub struct Fixture {
    pub leaf: String,
    pub mid: String,
    pub top: String,
    pub other_leaf: String,
    pub other: String,
}

pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixture/flake.nix"),
            dir.path().join("flake.nix"),
        )
        .expect("copy fixture flake");
        let flake = format!("path:{}", dir.path().display());
        let attrs = ["leaf", "mid", "top", "other-leaf", "other"];
        let out = std::process::Command::new("nix")
            .env("NIX_CONFIG", NIX_CONFIG)
            .env("XDG_CACHE_HOME", dir.path().join("xdg"))
            .args(["build", "--json", "--no-link"])
            .args(attrs.iter().map(|a| format!("{flake}#{a}")))
            .output()
            .expect("nix build runs");
        assert!(out.status.success(), "nix build failed: {}", stderr(&out));
        let built: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        // `nix build --json` does not list outputs in the order of its arguments: match names.
        let path = |attr: &str| {
            built
                .as_array()
                .expect("json list")
                .iter()
                .filter_map(|b| b["outputs"]["out"].as_str())
                .find(|p| p.ends_with(&format!("-pcr-cache-test-{attr}")))
                .expect("output path")
                .to_owned()
        };
        Fixture {
            leaf: path("leaf"),
            mid: path("mid"),
            top: path("top"),
            other_leaf: path("other-leaf"),
            other: path("other"),
        }
    })
}

pub fn hash_part(store_path: &str) -> &str {
    &store_path["/nix/store/".len().."/nix/store/".len() + 32]
}

/// A cache served in-process on a free loopback port.
pub struct TestCache {
    pub storage: PathBuf,
    pub app: Arc<App>,
    pub url: String,
    /// Per-cache scratch space: nix's narinfo disk cache, netrc, destination stores.
    pub scratch: TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), cache::Error>>>,
}

impl TestCache {
    pub async fn start(storage: &Path, key: Option<SecretKey>) -> TestCache {
        TestCache::start_with(storage, key, &[]).await
    }

    pub async fn start_with(
        storage: &Path,
        key: Option<SecretKey>,
        read_tokens: &[String],
    ) -> TestCache {
        let config = StoreConfig {
            storage: storage.to_owned(),
            store_dir: "/nix/store".into(),
            signing_key: key,
            gc_grace: std::time::Duration::from_millis(50),
        };
        let cache = tokio::task::spawn_blocking(move || Cache::open(config))
            .await
            .expect("join")
            .expect("cache opens");
        let app = Arc::new(App {
            cache: Arc::new(cache),
            priority: 30,
            auth: Auth::new(&[UPLOAD_TOKEN.to_owned()], read_tokens),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(cache::serve(listener, Arc::clone(&app), None, async {
            let _ = rx.await;
        }));
        let scratch = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            scratch.path().join("netrc"),
            format!("machine 127.0.0.1 login ci password {UPLOAD_TOKEN}\n"),
        )
        .expect("netrc");
        TestCache {
            storage: storage.to_owned(),
            app,
            url,
            scratch,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("join").expect("serve ends cleanly");
        }
    }

    pub fn netrc(&self) -> PathBuf {
        self.scratch.path().join("netrc")
    }

    /// `nix copy --to` this cache, with the upload token from a netrc file when `auth`.
    pub async fn push(&self, paths: &[&str], compression: &str, auth: bool) -> Output {
        let mut cmd = nix(&self.scratch.path().join("xdg-push"));
        cmd.args([
            "copy",
            "--to",
            &format!("{}?compression={compression}", self.url),
        ]);
        if auth {
            cmd.args(["--option", "netrc-file"]).arg(self.netrc());
        }
        run(cmd.args(paths)).await
    }

    /// `nix copy --from` this cache into a fresh chroot store, trusting `trusted_key`.
    pub async fn pull(&self, paths: &[&str], trusted_key: &str, dest: &Path) -> Output {
        let mut cmd = nix(&self.scratch.path().join(format!(
            "xdg-pull-{}",
            dest.file_name().and_then(|n| n.to_str()).unwrap_or("x")
        )));
        cmd.args(["copy", "--from", &self.url, "--to"])
            .arg(dest)
            .args(["--option", "trusted-public-keys", trusted_key])
            .args(["--option", "narinfo-cache-negative-ttl", "0"]);
        run(cmd.args(paths)).await
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        reqwest::get(format!("{}{path}", self.url))
            .await
            .expect("request")
    }

    pub fn nar_files(&self) -> Vec<String> {
        let mut files: Vec<String> = std::fs::read_dir(self.storage.join("nar"))
            .expect("nar dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        files
    }
}

impl Drop for TestCache {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Polls `condition` until it holds or `timeout` passes.
pub async fn eventually(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A NAR holding one regular file with `contents`.
pub fn nar_of(contents: &[u8]) -> Vec<u8> {
    fn str(out: &mut Vec<u8>, s: &[u8]) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s);
        out.resize(out.len() + (8 - s.len() % 8) % 8, 0);
    }
    let mut out = Vec::new();
    for s in [
        &b"nix-archive-1"[..],
        b"(",
        b"type",
        b"regular",
        b"contents",
    ] {
        str(&mut out, s);
    }
    str(&mut out, contents);
    str(&mut out, b")");
    out
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

pub fn base32(digest: &[u8; 32]) -> String {
    nix_base32::to_nix_base32(digest)
}

/// A zstd-compressed NAR ready to upload, with the narinfo that describes it.
pub struct Upload {
    pub nar: Vec<u8>,
    pub file: Vec<u8>,
    pub file_name: String,
    pub hash: String,
    pub store_path: String,
}

impl Upload {
    /// `hash` must be 32 characters of Nix's base-32.
    pub fn new(hash: &str, name: &str, contents: &[u8]) -> Upload {
        let nar = nar_of(contents);
        let file = zstd::encode_all(&nar[..], 3).expect("zstd");
        let file_name = format!("{}.nar.zst", base32(&sha256(&file)));
        Upload {
            nar,
            file,
            file_name,
            hash: hash.to_owned(),
            store_path: format!("/nix/store/{hash}-{name}"),
        }
    }

    pub fn narinfo(&self, references: &[&str]) -> String {
        format!(
            "StorePath: {}\nURL: nar/{}\nCompression: zstd\nFileHash: sha256:{}\nFileSize: {}\n\
             NarHash: sha256:{}\nNarSize: {}\nReferences: {}\n",
            self.store_path,
            self.file_name,
            base32(&sha256(&self.file)),
            self.file.len(),
            base32(&sha256(&self.nar)),
            self.nar.len(),
            references.join(" ")
        )
    }
}
