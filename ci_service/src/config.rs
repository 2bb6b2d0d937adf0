//! What a pcr-ci instance is configured with, and where it keeps things in its state directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The binary cache pipelines push closures to.
#[derive(Debug, Clone)]
pub struct CacheTarget {
    /// `http://host:port` of `pcr-cache serve`.
    pub url: String,
    /// Token that allows uploads and pins.
    pub upload_token: String,
    /// `compression=` of `nix copy --to`: `zstd`, `xz` or `none`.
    pub compression: String,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Holds `ci.db`, `repos/<name>.git`, checkouts under `work/`, and the files the hook and
    /// the command line read (`ci.url`, `hook.token`).
    pub state_dir: PathBuf,
    pub listen: SocketAddr,
    /// Control plane address and operator token.
    pub master: String,
    pub operator_token: String,
    pub cache: Option<CacheTarget>,
    /// How often repositories with a remote are polled; zero turns polling off.
    pub poll_interval: Duration,
    /// Secret of the webhook signatures; without one the webhook refuses every request.
    pub webhook_secret: Option<String>,
    /// Generation pins kept in the cache (older `generation-N` pins are removed).
    pub keep_pins: u64,
    /// Longest a rollout is watched after a publish.
    pub rollout_timeout: Duration,
    /// Pipelines of different repositories that may run at once.
    pub jobs: usize,
    /// The pcr-ci executable the post-receive hooks call.
    pub exe: PathBuf,
}

impl Config {
    pub fn db_path(&self) -> PathBuf {
        self.state_dir.join("ci.db")
    }

    pub fn repos_dir(&self) -> PathBuf {
        repos_dir(&self.state_dir)
    }

    pub fn work_dir(&self) -> PathBuf {
        self.state_dir.join("work")
    }

    pub fn netrc_path(&self) -> PathBuf {
        self.state_dir.join("netrc")
    }
}

pub fn repos_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("repos")
}

/// `http://ADDR` of the running pcr-ci, written at start-up for hooks and the command line.
pub fn url_file(state_dir: &Path) -> PathBuf {
    state_dir.join("ci.url")
}

/// The secret post-receive hooks present when they report a push.
pub fn hook_token_file(state_dir: &Path) -> PathBuf {
    state_dir.join("hook.token")
}

/// Where `pcr-ci` listens when not told otherwise, and where tools look for it.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7100";

/// The state directory when `--state-dir` is not given: `ci/` in Procurator's state directory.
pub fn default_state_dir() -> PathBuf {
    schema::defaults::state_dir().join("ci")
}

/// Writes `contents` to `path` readable by the owner only, replacing what was there.
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Reads a secret file, or creates it with a fresh random value: tokens survive restarts.
pub fn read_or_create_secret(path: &Path) -> std::io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    use rand::RngCore;
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    let secret = hex::encode(bytes);
    write_private(path, &format!("{secret}\n"))?;
    Ok(secret)
}
