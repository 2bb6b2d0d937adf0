//! Making closures present: `nix copy --from <cache>` with the real nix, skipped when the path
//! is already valid in the local store.
//!
//! Workers never build. A path is copied with `narinfo-cache-negative-ttl = 0` (otherwise a
//! path asked for before CI pushed it stays "missing" for an hour) and the cache's public key
//! as the only trusted key. Concurrent requests for one closure share one copy.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FetchError {
    #[error("{path} is not in the local store and no cache is configured (--cache-url)")]
    NoCache { path: String },
    #[error("nix copy of {path} from {cache} failed: {detail}")]
    Copy {
        path: String,
        cache: String,
        detail: String,
    },
    #[error("cannot run nix: {0}")]
    Nix(String),
}

/// Where closures come from.
#[derive(Debug, Clone, Default)]
pub struct CacheConfig {
    pub url: Option<String>,
    pub public_key: Option<String>,
}

pub struct Fetcher {
    cache: CacheConfig,
    /// Paths seen valid; the store does not lose a path a running instance uses.
    valid: Mutex<BTreeSet<String>>,
    inflight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// What `ensure` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    AlreadyPresent,
    Copied,
}

impl Fetcher {
    pub fn new(cache: CacheConfig) -> Fetcher {
        Fetcher {
            cache,
            valid: Mutex::new(BTreeSet::new()),
            inflight: Mutex::new(HashMap::new()),
        }
    }

    /// Closures known to be valid in the local store.
    pub fn known_present(&self) -> BTreeSet<String> {
        self.valid.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Makes `path` valid in the local store. `progress` receives one-line updates (nix's own
    /// progress lines) for the instance's message.
    pub async fn ensure(
        &self,
        path: &str,
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> Result<Fetched, FetchError> {
        if self.valid.lock().map(|v| v.contains(path)).unwrap_or(false) {
            return Ok(Fetched::AlreadyPresent);
        }
        let gate = {
            let mut map = self
                .inflight
                .lock()
                .map_err(|_| FetchError::Nix("lock poisoned".into()))?;
            map.entry(path.to_string()).or_default().clone()
        };
        let _turn = gate.lock().await;
        // Someone may have copied it while we waited.
        if is_valid(path).await? {
            self.mark_valid(path);
            return Ok(Fetched::AlreadyPresent);
        }
        let Some(url) = &self.cache.url else {
            return Err(FetchError::NoCache {
                path: path.to_string(),
            });
        };
        progress(format!("fetching {path} from {url}"));
        copy(path, url, self.cache.public_key.as_deref(), progress).await?;
        self.mark_valid(path);
        Ok(Fetched::Copied)
    }

    fn mark_valid(&self, path: &str) {
        if let Ok(mut v) = self.valid.lock() {
            v.insert(path.to_string());
        }
    }
}

/// `--option` pairs every nix call of the worker passes, so it does not depend on the host's
/// nix.conf.
fn base_options(cmd: &mut Command) {
    cmd.args(["--option", "experimental-features", "nix-command flakes"]);
}

/// Whether the store holds `path` as a valid path (registered in the database, not just a
/// leftover directory).
pub async fn is_valid(path: &str) -> Result<bool, FetchError> {
    if !Path::new(path).exists() {
        return Ok(false);
    }
    let status = Command::new("nix-store")
        .args(["--check-validity", path])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .map_err(|e| FetchError::Nix(format!("nix-store: {e}")))?;
    Ok(status.success())
}

async fn copy(
    path: &str,
    url: &str,
    public_key: Option<&str>,
    progress: &(dyn Fn(String) + Send + Sync),
) -> Result<(), FetchError> {
    let mut cmd = Command::new("nix");
    cmd.arg("copy");
    base_options(&mut cmd);
    cmd.args(["--option", "narinfo-cache-negative-ttl", "0"]);
    if let Some(key) = public_key {
        cmd.args(["--option", "trusted-public-keys", key]);
    }
    cmd.args(["--from", url, path])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| FetchError::Nix(format!("nix: {e}")))?;
    let mut last_lines: Vec<String> = Vec::new();
    if let Some(stderr) = child.stderr.take() {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let line = line.trim().to_string();
            if line.is_empty() {
                continue;
            }
            progress(line.clone());
            last_lines.push(line);
            if last_lines.len() > 5 {
                last_lines.remove(0);
            }
        }
    }
    let status = child
        .wait()
        .await
        .map_err(|e| FetchError::Nix(format!("nix: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(FetchError::Copy {
            path: path.to_string(),
            cache: url.to_string(),
            detail: if last_lines.is_empty() {
                status.to_string()
            } else {
                last_lines.join(" / ")
            },
        })
    }
}
