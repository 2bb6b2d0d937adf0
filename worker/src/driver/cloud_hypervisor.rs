//! cloud-hypervisor microVMs, driven through its REST API on a unix socket (`api.sock`).
//!
//! Start: virtiofsd, then `cloud-hypervisor --api-socket path=<dir>/api.sock` in the same
//! process group, `GET vmm.ping` until it answers, `PUT vm.create` with the VM config (vCPUs,
//! shared memory for virtiofs, kernel/initramfs/cmdline, the store share, serial to
//! `console.log`, console off), `PUT vm.boot`. Stop: `PUT vm.power-button` and wait for the
//! process to exit (cloud-hypervisor exits when the guest powers off: the process exit is the
//! truth of "stopped"), else `vm.shutdown` + `vmm.shutdown`, else the group is killed.
//!
//! Errors come back as the API sends them: a non-2xx status with a JSON array of messages
//! from the outermost to the root cause, joined here into one sentence.
//!
//! cloud-hypervisor boots an ELF `vmlinux`, not a compressed `bzImage`; a toplevel whose
//! `kernel` is not ELF is refused before anything is launched. Port forwards need a tap
//! device and a host-side proxy, which this driver does not set up: declared ports are
//! reported as not forwarded.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use schema::model::{Backend, VmSpec};
use serde_json::{json, Value};

use super::{
    console_booted, io_error, now_ms, spawn_detached, spawn_virtiofsd, terminate_group,
    wait_for_socket, wait_gone, Driver, DriverError, Launch, Stopped, Toplevel, CONSOLE_LOG,
    STORE_TAG,
};
use crate::http1;

const BASE_CMDLINE: &str = "console=ttyS0 reboot=k panic=1";

pub struct CloudHypervisorDriver {
    pub binary: PathBuf,
    pub virtiofsd: PathBuf,
}

/// The VM config `vm.create` receives (cloud-hypervisor's `VmConfig` schema).
pub fn vm_config(dir: &Path, spec: &VmSpec, toplevel: &Toplevel, virtiofs: &Path) -> Value {
    json!({
        "cpus": { "boot_vcpus": spec.cpu, "max_vcpus": spec.cpu },
        // Shared memory: virtiofsd must be able to map guest memory.
        "memory": { "size": spec.memory_mb * 1024 * 1024, "shared": true },
        "payload": {
            "kernel": toplevel.kernel.display().to_string(),
            "initramfs": toplevel.initrd.display().to_string(),
            "cmdline": toplevel.cmdline(BASE_CMDLINE),
        },
        "fs": [{
            "tag": STORE_TAG,
            "socket": virtiofs.display().to_string(),
            "num_queues": 1,
            "queue_size": 1024,
        }],
        "serial": { "mode": "File", "file": dir.join(CONSOLE_LOG).display().to_string() },
        "console": { "mode": "Off" },
    })
}

/// One call on the API socket. 2xx answers return their body (empty for 204); others become
/// an error carrying the API's own messages.
pub fn api(
    socket: &Path,
    method: &str,
    endpoint: &str,
    body: Option<&str>,
) -> Result<String, DriverError> {
    let stream = UnixStream::connect(socket).map_err(io_error(format!(
        "connecting to the cloud-hypervisor API at {}",
        socket.display()
    )))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(io_error("configuring the API socket"))?;
    let path = format!("/api/v1/{endpoint}");
    let response = http1::request(stream, method, "localhost", &path, body)
        .map_err(io_error(format!("{method} {path}")))?;
    if (200..300).contains(&response.status) {
        return Ok(response.body);
    }
    Err(DriverError::Api(format!(
        "{method} {endpoint} answered {}: {}",
        response.status,
        error_text(&response.body)
    )))
}

/// cloud-hypervisor's error body is a JSON array of messages, outermost first.
fn error_text(body: &str) -> String {
    match serde_json::from_str::<Vec<String>>(body) {
        Ok(messages) if !messages.is_empty() => messages.join(": "),
        _ if body.trim().is_empty() => "no error body".to_string(),
        _ => body.trim().to_string(),
    }
}

/// The VM's state from `vm.info`: `Created`, `Running`, `Shutdown`, `Paused`.
pub fn vm_state(socket: &Path) -> Result<String, DriverError> {
    let body = api(socket, "GET", "vm.info", None)?;
    let info: Value = serde_json::from_str(&body)
        .map_err(|e| DriverError::Api(format!("vm.info answered invalid JSON: {e}")))?;
    Ok(info
        .get("state")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_string())
}

fn is_elf(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map(|()| magic == *b"\x7fELF")
        .unwrap_or(false)
}

impl CloudHypervisorDriver {
    fn create_and_boot(
        &self,
        dir: &Path,
        spec: &VmSpec,
        toplevel: &Toplevel,
        virtiofs: &Path,
        main: &crate::procfs::ProcRef,
    ) -> Result<(), DriverError> {
        let socket = dir.join("api.sock");
        wait_for_socket(
            &socket,
            main,
            "cloud-hypervisor",
            Duration::from_secs(10),
            Some(&dir.join("cloud-hypervisor.log")),
        )?;
        // The socket file appears at bind(); ping until the API thread answers.
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Err(e) = api(&socket, "GET", "vmm.ping", None) {
            if Instant::now() >= deadline || !main.is_alive() {
                return Err(e);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let config = vm_config(dir, spec, toplevel, virtiofs).to_string();
        api(&socket, "PUT", "vm.create", Some(&config))?;
        api(&socket, "PUT", "vm.boot", None)?;
        Ok(())
    }
}

impl Driver for CloudHypervisorDriver {
    fn backend(&self) -> Backend {
        Backend::CloudHypervisor
    }

    fn start(&self, _instance_id: &str, dir: &Path, spec: &VmSpec) -> Result<Launch, DriverError> {
        let toplevel = Toplevel::read(&spec.closure)?;
        if !is_elf(&toplevel.kernel) {
            return Err(DriverError::Invalid(format!(
                "cloud-hypervisor boots an ELF vmlinux, but {} is not ELF (a bzImage?); \
                 build the toplevel with an uncompressed kernel or use the qemu backend",
                toplevel.kernel.display()
            )));
        }
        if !spec.ports.is_empty() {
            tracing::warn!(
                vm = spec.name,
                "cloud-hypervisor backend: port forwards need a tap network, not set up; ports are not forwarded"
            );
        }
        let socket = dir.join("api.sock");
        let _ = std::fs::remove_file(&socket);
        let _ = std::fs::remove_file(dir.join(CONSOLE_LOG));
        let (virtiofsd, virtiofs) = spawn_virtiofsd(&self.virtiofsd, dir)?;
        let log = std::fs::File::create(dir.join("cloud-hypervisor.log"))
            .map_err(io_error("creating cloud-hypervisor.log"))?;
        let log2 = log
            .try_clone()
            .map_err(io_error("creating cloud-hypervisor.log"))?;
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--api-socket")
            .arg(format!("path={}", socket.display()))
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2));
        let partial = Launch {
            pgid: virtiofsd.pid,
            main: virtiofsd,
            helpers: vec![],
            started_at_ms: now_ms(),
        };
        let main = match spawn_detached(cmd, "cloud-hypervisor", Some(virtiofsd.pid)) {
            Ok(main) => main,
            Err(e) => {
                terminate_group(&partial, Duration::ZERO);
                return Err(e);
            }
        };
        let launch = Launch {
            pgid: virtiofsd.pid,
            main,
            helpers: vec![virtiofsd],
            started_at_ms: now_ms(),
        };
        if let Err(e) = self.create_and_boot(dir, spec, &toplevel, &virtiofs, &main) {
            terminate_group(&launch, Duration::ZERO);
            return Err(e);
        }
        Ok(launch)
    }

    fn booted(&self, dir: &Path, launch: &Launch) -> bool {
        launch.main.is_alive()
            && vm_state(&dir.join("api.sock")).is_ok_and(|s| s == "Running")
            && console_booted(&dir.join(CONSOLE_LOG))
    }

    fn stop(&self, dir: &Path, launch: &Launch, grace: Duration) -> Result<Stopped, DriverError> {
        if !launch.main.is_alive() {
            return Ok(terminate_group(launch, Duration::ZERO));
        }
        let socket = dir.join("api.sock");
        match api(&socket, "PUT", "vm.power-button", None) {
            Ok(_) if wait_gone(&launch.main, grace) => {
                super::kill_rest(launch);
                return Ok(Stopped::Clean);
            }
            Ok(_) => tracing::debug!("guest ignored the power button"),
            Err(e) => tracing::debug!("vm.power-button failed: {e}"),
        }
        // Tear the VM down from the VMM side, then end the VMM.
        let _ = api(&socket, "PUT", "vm.shutdown", None);
        let _ = api(&socket, "PUT", "vmm.shutdown", None);
        if wait_gone(&launch.main, Duration::from_secs(2)) {
            super::kill_rest(launch);
            return Ok(Stopped::Clean);
        }
        terminate_group(launch, Duration::ZERO);
        Ok(Stopped::Killed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_become_one_sentence() {
        assert_eq!(
            error_text(r#"["Error from API","The VM could not boot","VM is not created"]"#),
            "Error from API: The VM could not boot: VM is not created"
        );
        assert_eq!(error_text(""), "no error body");
        assert_eq!(error_text("plain"), "plain");
    }

    #[test]
    fn config_follows_the_api_schema() {
        let toplevel = Toplevel {
            kernel: "/nix/store/x/kernel".into(),
            initrd: "/nix/store/x/initrd".into(),
            init: "/nix/store/x/init".into(),
            kernel_params: "quiet".into(),
        };
        let mut spec = VmSpec::process("vm", "/nix/store/0c9hj2bl0ajiyqslkmbhizbgshrdw9jl-vm");
        spec.cpu = 2;
        spec.memory_mb = 128;
        let c = vm_config(
            Path::new("/s/vm-0"),
            &spec,
            &toplevel,
            Path::new("/s/vm-0/v.sock"),
        );
        assert_eq!(c["cpus"]["boot_vcpus"], 2);
        assert_eq!(c["memory"]["size"], 128 * 1024 * 1024);
        assert_eq!(c["memory"]["shared"], true);
        assert_eq!(
            c["payload"]["cmdline"],
            "console=ttyS0 reboot=k panic=1 init=/nix/store/x/init quiet"
        );
        assert_eq!(c["fs"][0]["tag"], "nixstore");
        assert_eq!(c["serial"]["mode"], "File");
        assert_eq!(c["console"]["mode"], "Off");
    }
}
