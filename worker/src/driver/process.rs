//! Process workloads: a closure's executable run as a supervised child.
//!
//! The child gets a clean environment (the spec's variables, `PROCURATOR_INSTANCE`,
//! `PROCURATOR_VM`, a `PATH` with the closure's `bin`), the instance's `work/` folder as its
//! working directory, and its stdout+stderr appended to `console.log`. It leads its own
//! process group, so a stop reaches whatever it forked.
//!
//! Resource limits use cgroups v2 when `/sys/fs/cgroup` is a writable unified hierarchy:
//! `cpu.max` (spec.cpu whole CPUs) and `memory.max` (spec.memoryMb). Elsewhere (cgroup v1 or
//! hybrid hosts, read-only containers) the child runs unlimited and the log says so once.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use schema::model::{Backend, VmSpec};

use super::{
    io_error, now_ms, spawn_detached, terminate_group, Driver, DriverError, Launch, Stopped,
    CONSOLE_LOG,
};

pub struct ProcessDriver {
    cgroups: Option<CgroupRoot>,
}

impl ProcessDriver {
    /// Probes cgroups v2 once.
    pub fn new() -> ProcessDriver {
        ProcessDriver {
            cgroups: CgroupRoot::probe(Path::new("/sys/fs/cgroup")),
        }
    }

    /// Why limits are (not) enforced on this host; logged at start-up.
    pub fn limits_note(&self) -> String {
        match &self.cgroups {
            Some(root) => format!("process limits via cgroup v2 under {}", root.path.display()),
            None => "cgroup v2 is not available here (/sys/fs/cgroup is not a writable unified \
                     hierarchy); process workloads run without cpu/memory limits"
                .to_string(),
        }
    }
}

impl Default for ProcessDriver {
    fn default() -> Self {
        ProcessDriver::new()
    }
}

/// The executable a process spec runs.
pub fn executable(spec: &VmSpec) -> PathBuf {
    if spec.exec.is_empty() {
        PathBuf::from(&spec.closure)
    } else {
        Path::new(&spec.closure).join(&spec.exec)
    }
}

/// The command a process spec runs, without the worker's detaching: also what the benchmark
/// launches "by hand".
pub fn command(instance_id: &str, dir: &Path, spec: &VmSpec) -> Result<Command, DriverError> {
    let exe = executable(spec);
    let meta = fs::metadata(&exe).map_err(|_| {
        DriverError::Invalid(format!(
            "{} has no executable `{}`",
            spec.closure,
            if spec.exec.is_empty() {
                "."
            } else {
                &spec.exec
            }
        ))
    })?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(DriverError::Invalid(format!(
            "{} is not an executable file",
            exe.display()
        )));
    }
    let work = dir.join("work");
    fs::create_dir_all(&work).map_err(io_error("creating the working directory"))?;
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(CONSOLE_LOG))
        .map_err(io_error("opening console.log"))?;
    let log2 = log.try_clone().map_err(io_error("opening console.log"))?;
    let mut cmd = Command::new(&exe);
    cmd.args(&spec.args)
        .current_dir(&work)
        .env_clear()
        .env(
            "PATH",
            format!("{}/bin:/usr/local/bin:/usr/bin:/bin", spec.closure),
        )
        .env("HOME", &work)
        .envs(&spec.env)
        .env("PROCURATOR_INSTANCE", instance_id)
        .env("PROCURATOR_VM", &spec.name)
        .stdout(log)
        .stderr(log2);
    Ok(cmd)
}

impl Driver for ProcessDriver {
    fn backend(&self) -> Backend {
        Backend::Process
    }

    fn start(&self, instance_id: &str, dir: &Path, spec: &VmSpec) -> Result<Launch, DriverError> {
        let cmd = command(instance_id, dir, spec)?;
        let main = spawn_detached(cmd, &executable(spec).display().to_string(), None)?;
        if let Some(root) = &self.cgroups {
            // The child runs unlimited for the microseconds until it is moved; acceptable for
            // a resource limit (it is not a security boundary here).
            if let Err(e) = root.limit(instance_id, main.pid, spec.cpu, spec.memory_mb) {
                tracing::warn!(instance = instance_id, "cgroup limits not applied: {e}");
            }
        }
        Ok(Launch {
            pgid: main.pid,
            main,
            helpers: Vec::new(),
            started_at_ms: now_ms(),
        })
    }

    fn booted(&self, _dir: &Path, launch: &Launch) -> bool {
        launch.main.is_alive()
    }

    fn stop(&self, _dir: &Path, launch: &Launch, grace: Duration) -> Result<Stopped, DriverError> {
        Ok(terminate_group(launch, grace))
    }
}

/// A writable cgroup v2 subtree the worker puts its children in.
struct CgroupRoot {
    path: PathBuf,
}

impl CgroupRoot {
    fn probe(mount: &Path) -> Option<CgroupRoot> {
        let controllers = fs::read_to_string(mount.join("cgroup.controllers")).ok()?;
        if !(controllers.contains("cpu") && controllers.contains("memory")) {
            return None;
        }
        let path = mount.join("procurator");
        fs::create_dir_all(&path).ok()?;
        // Controllers must be enabled on every level above the leaf cgroups.
        fs::write(mount.join("cgroup.subtree_control"), "+cpu +memory").ok()?;
        fs::write(path.join("cgroup.subtree_control"), "+cpu +memory").ok()?;
        Some(CgroupRoot { path })
    }

    fn limit(&self, instance_id: &str, pid: u32, cpu: u32, memory_mb: u64) -> std::io::Result<()> {
        let cg = self.path.join(instance_id);
        fs::create_dir_all(&cg)?;
        fs::write(
            cg.join("cpu.max"),
            format!("{} 100000", u64::from(cpu) * 100_000),
        )?;
        fs::write(cg.join("memory.max"), (memory_mb * 1024 * 1024).to_string())?;
        fs::write(cg.join("cgroup.procs"), pid.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_probe_refuses_a_v1_or_missing_hierarchy() {
        let tmp = tempfile::tempdir().expect("tempdir");
        assert!(CgroupRoot::probe(tmp.path()).is_none());
        fs::write(tmp.path().join("cgroup.controllers"), "pids io").expect("write");
        assert!(CgroupRoot::probe(tmp.path()).is_none(), "no cpu/memory");
    }

    #[test]
    fn executable_is_the_closure_or_exec_inside_it() {
        let mut spec = VmSpec::process("web", "/nix/store/0c9hj2bl0ajiyqslkmbhizbgshrdw9jl-web");
        assert_eq!(executable(&spec), PathBuf::from(&spec.closure));
        spec.exec = "bin/web".into();
        assert_eq!(
            executable(&spec),
            PathBuf::from("/nix/store/0c9hj2bl0ajiyqslkmbhizbgshrdw9jl-web/bin/web")
        );
    }
}
