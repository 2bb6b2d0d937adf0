//! Defaults every Procurator binary agrees on, so that `pcr-control-plane` and `pcr-test`
//! started with no flags find each other.

use std::path::PathBuf;

/// Where the control plane listens and where tools look for it.
pub const MASTER_ADDR: &str = "127.0.0.1:7000";

/// `$PROCURATOR_HOME`, else `$XDG_STATE_HOME/procurator`, else `~/.local/state/procurator`.
pub fn state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PROCURATOR_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("procurator");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib"));
    home.join(".local/state/procurator")
}

/// The control plane's database when `--db` is not given.
pub fn control_plane_db() -> PathBuf {
    state_dir().join("control-plane.db")
}
