//! Tokens that open the control plane.
//!
//! Two tokens are generated on first start and kept beside the database with mode 0600:
//! `operator.token` opens the full `Master` capability (CLI, TUI, CI, repohub) and
//! `worker.token` opens only the `WorkerGateway`. They are compared in constant time.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::RngCore;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read token file {0}")]
    Read(PathBuf, #[source] std::io::Error),
    #[error("cannot write token file {0}")]
    Write(PathBuf, #[source] std::io::Error),
    #[error("token file {0} is empty; delete it to have a new token generated")]
    Empty(PathBuf),
    #[error("token file {path} is readable by others (mode {mode:o}); run `chmod 600 {path}`")]
    Permissions { path: PathBuf, mode: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Operator,
    Worker,
}

#[derive(Clone)]
pub struct Tokens {
    operator: String,
    worker: String,
}

pub const OPERATOR_TOKEN_FILE: &str = "operator.token";
pub const WORKER_TOKEN_FILE: &str = "worker.token";

impl Tokens {
    /// Reads the tokens in `dir`, generating any that do not exist yet.
    pub fn load_or_create(dir: &Path) -> Result<Tokens, AuthError> {
        Ok(Tokens {
            operator: load_or_create(&dir.join(OPERATOR_TOKEN_FILE))?,
            worker: load_or_create(&dir.join(WORKER_TOKEN_FILE))?,
        })
    }

    pub fn new(operator: String, worker: String) -> Tokens {
        Tokens { operator, worker }
    }

    pub fn check(&self, token: &str) -> Option<Role> {
        // Check both, always, so timing says nothing about which one nearly matched.
        let op = constant_time_eq(token.as_bytes(), self.operator.as_bytes());
        let wk = constant_time_eq(token.as_bytes(), self.worker.as_bytes());
        if op {
            Some(Role::Operator)
        } else if wk {
            Some(Role::Worker)
        } else {
            None
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn load_or_create(path: &Path) -> Result<String, AuthError> {
    match fs::read_to_string(path) {
        Ok(text) => {
            let mode = fs::metadata(path)
                .map_err(|e| AuthError::Read(path.to_path_buf(), e))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(AuthError::Permissions {
                    path: path.to_path_buf(),
                    mode: mode & 0o777,
                });
            }
            let token = text.trim().to_string();
            if token.is_empty() {
                return Err(AuthError::Empty(path.to_path_buf()));
            }
            Ok(token)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            rand::thread_rng().fill_bytes(&mut bytes);
            let token = hex::encode(bytes);
            // Written to a temporary name with 0600 from the start, then renamed: no moment
            // where the token is on disk with wider permissions or half-written.
            let tmp = path.with_extension("token.tmp");
            let write = || -> std::io::Result<()> {
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&tmp)?;
                f.write_all(format!("{token}\n").as_bytes())?;
                f.sync_all()?;
                fs::rename(&tmp, path)
            };
            write().map_err(|e| AuthError::Write(path.to_path_buf(), e))?;
            Ok(token)
        }
        Err(e) => Err(AuthError::Read(path.to_path_buf(), e)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_created_once_with_mode_0600() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = Tokens::load_or_create(dir.path()).expect("create");
        let b = Tokens::load_or_create(dir.path()).expect("reload");
        assert_eq!(a.operator, b.operator);
        assert_ne!(a.operator, a.worker);
        let mode = fs::metadata(dir.path().join(OPERATOR_TOKEN_FILE))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(a.check(&a.operator), Some(Role::Operator));
        assert_eq!(a.check(&a.worker), Some(Role::Worker));
        assert_eq!(a.check("nope"), None);
        assert_eq!(a.check(""), None);
    }

    #[test]
    fn refuses_world_readable_token() {
        let dir = tempfile::tempdir().expect("tempdir");
        Tokens::load_or_create(dir.path()).expect("create");
        let path = dir.path().join(WORKER_TOKEN_FILE);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = Tokens::load_or_create(dir.path())
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }
}
