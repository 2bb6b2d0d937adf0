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

/// The secret post-receive hooks present when they report a push.
pub fn hook_token_file(state_dir: &Path) -> PathBuf {
    state_dir.join("hook.token")
}

pub use schema::ci::{default_state_dir, repos_dir, url_file, DEFAULT_LISTEN};
pub use support::secret::{read_or_create_secret, write_private};
