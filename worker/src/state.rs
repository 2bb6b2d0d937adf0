//! The worker's state directory: one folder per instance, so that a restarted worker finds
//! what it started before and re-adopts it instead of booting duplicates.
//!
//! ```text
//! <state>/instances/<instance-id>/
//!     instance.json   spec and generation the instance runs
//!     launch.json     process group and main process (pid + start time) of the VMM / child
//!     console.log     serial console (VMs) or stdout+stderr (processes)
//!     qmp.sock, api.sock, virtiofs.sock, work/   driver-specific
//! ```
//! Files are written to a temporary name and renamed, so a crash never leaves half a record.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use schema::model::VmSpec;
use serde::{Deserialize, Serialize};

use crate::driver::Launch;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot use state directory {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a valid record")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What an instance runs, as recorded when it was started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub instance_id: String,
    pub generation: u64,
    pub spec: VmSpec,
}

/// An instance folder found on disk.
#[derive(Debug, Clone)]
pub struct Found {
    pub dir: PathBuf,
    pub record: Option<InstanceRecord>,
    pub launch: Option<Launch>,
}

#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn open(root: &Path) -> Result<StateDir, StateError> {
        let instances = root.join("instances");
        fs::create_dir_all(&instances).map_err(io_err(&instances))?;
        Ok(StateDir {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn instance_dir(&self, instance_id: &str) -> PathBuf {
        self.root.join("instances").join(instance_id)
    }

    /// Creates the instance folder (empty of old runtime files) and records what it runs.
    pub fn prepare(&self, record: &InstanceRecord) -> Result<PathBuf, StateError> {
        let dir = self.instance_dir(&record.instance_id);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        // A previous run's launch file must not survive into this one.
        let launch = dir.join("launch.json");
        match fs::remove_file(&launch) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&launch)(e)),
        }
        write_json(&dir.join("instance.json"), record)?;
        Ok(dir)
    }

    pub fn record_launch(&self, instance_id: &str, launch: &Launch) -> Result<(), StateError> {
        write_json(&self.instance_dir(instance_id).join("launch.json"), launch)
    }

    pub fn remove(&self, instance_id: &str) -> Result<(), StateError> {
        let dir = self.instance_dir(instance_id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&dir)(e)),
        }
    }

    /// Every instance folder, with whatever records it holds. Unreadable records come back as
    /// `None` so the caller can clean the folder up rather than stop.
    pub fn scan(&self) -> Result<Vec<Found>, StateError> {
        let instances = self.root.join("instances");
        let mut found = Vec::new();
        for entry in fs::read_dir(&instances).map_err(io_err(&instances))? {
            let entry = entry.map_err(io_err(&instances))?;
            if !entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            let dir = entry.path();
            found.push(Found {
                record: read_json(&dir.join("instance.json")).ok().flatten(),
                launch: read_json(&dir.join("launch.json")).ok().flatten(),
                dir,
            });
        }
        found.sort_by(|a, b| a.dir.cmp(&b.dir));
        Ok(found)
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StateError> {
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| StateError::Corrupt {
        path: path.to_path_buf(),
        source,
    })?;
    let mut file = fs::File::create(&tmp).map_err(io_err(&tmp))?;
    file.write_all(&bytes).map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, StateError> {
    match fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| StateError::Corrupt {
                    path: path.to_path_buf(),
                    source,
                })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procfs::ProcRef;

    #[test]
    fn records_survive_a_rescan_and_removal_forgets_them() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let state = StateDir::open(tmp.path()).expect("open");
        let record = InstanceRecord {
            instance_id: "web-0".into(),
            generation: 3,
            spec: VmSpec::process("web", "/nix/store/0c9hj2bl0ajiyqslkmbhizbgshrdw9jl-web"),
        };
        state.prepare(&record).expect("prepare");
        let launch = Launch {
            pgid: 77,
            main: ProcRef {
                pid: 77,
                start_time: 5,
            },
            helpers: vec![],
            started_at_ms: 1,
        };
        state.record_launch("web-0", &launch).expect("launch");
        let found = state.scan().expect("scan");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].record.as_ref(), Some(&record));
        assert_eq!(found[0].launch.as_ref(), Some(&launch));
        // Preparing again (a restart) drops the old launch.
        state.prepare(&record).expect("prepare again");
        assert!(state.scan().expect("scan")[0].launch.is_none());
        state.remove("web-0").expect("remove");
        assert!(state.scan().expect("scan").is_empty());
    }
}
