//! cloud-hypervisor microVMs, driven through its REST API on a unix socket (`api.sock`).
//!
//! Start: virtiofsd, then `cloud-hypervisor --api-socket path=<dir>/api.sock --event-monitor
//! path=<dir>/events.json` in the same process group, `GET vmm.ping` until it answers,
//! `PUT vm.create` with the VM config (vCPUs, shared memory for virtiofs, kernel (ELF vmlinux,
//! PVH ELF or bzImage — cloud-hypervisor boots all three), initramfs, cmdline, the store share,
//! serial to `console.log`, console off), `PUT vm.boot`.
//!
//! How a VM ended is learnt from the VMM, not from its exit status alone: cloud-hypervisor
//! exits 0 after a guest power-off, but also after a fatal vCPU error, and it reboots a guest
//! that resets (triple fault, `reboot`, a panic with `reboot=k`) forever. [`judge`] reads the
//! event monitor (`vm` `shutdown`, `rebooting`), the VMM's log (`VCPU generated error`) and the
//! exit; a reset guest counts as ended, so the worker's restart policy decides, not the VMM.
//!
//! Stop: `PUT vm.power-button`, pressed again every [`BUTTON_REPEAT`] within the grace period
//! (a press before the guest's ACPI handling runs is lost), then `vm.shutdown` + `vmm.shutdown`
//! (cloud-hypervisor's documented way to end a VM from the host), then the group is killed.
//!
//! Errors come back as the API sends them: a non-2xx status with a JSON array of messages
//! from the outermost to the root cause, joined here into one sentence. Port forwards need a
//! tap device and a host-side proxy, which this driver does not set up: declared ports are
//! reported as not forwarded.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use schema::model::{Backend, VmSpec};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    console_booted, io_error, now_ms, spawn_detached, spawn_virtiofsd, take_exit, terminate_group,
    wait_for_socket, wait_gone, Driver, DriverError, Ended, Launch, Stopped, Toplevel, CONSOLE_LOG,
    STORE_TAG,
};
use crate::http1;

const BASE_CMDLINE: &str = "console=ttyS0 reboot=k panic=1";

/// The VMM's own output (stdout and stderr), beside the guest's console.
pub const VMM_LOG: &str = "cloud-hypervisor.log";
/// The event monitor's file: one JSON object per event.
pub const EVENTS: &str = "events.json";

/// How long `vm.create` and `vm.boot` may take: cloud-hypervisor itself waits up to 60 s for a
/// vhost-user (virtiofs) socket before `vm.boot` fails, and its answer (the reason) is worth
/// more than our own timeout.
pub const BOOT_API_TIMEOUT: Duration = Duration::from_secs(75);
/// Every other API call answers at once.
pub const API_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the power button is pressed again while the guest has not powered off.
pub const BUTTON_REPEAT: Duration = Duration::from_secs(2);

pub struct CloudHypervisorDriver {
    pub binary: PathBuf,
    pub virtiofsd: PathBuf,
    /// Whether a Linux kernel boots under this host's KVM ([`linux_boots`]); when it does not,
    /// a VM with a Linux kernel is refused at start with the reason, instead of hanging.
    pub linux_boots: bool,
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

/// One call on the API socket. 2xx answers return their body (empty for 204, and for
/// `vmm.shutdown`'s 200); others become an error carrying the API's own messages.
pub fn api(
    socket: &Path,
    method: &str,
    endpoint: &str,
    body: Option<&str>,
) -> Result<String, DriverError> {
    let timeout = match endpoint {
        "vm.create" | "vm.boot" => BOOT_API_TIMEOUT,
        _ => API_TIMEOUT,
    };
    let stream = UnixStream::connect(socket).map_err(io_error(format!(
        "connecting to the cloud-hypervisor API at {}",
        socket.display()
    )))?;
    stream
        .set_read_timeout(Some(timeout))
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

/// One event from `--event-monitor` (`{"timestamp":…,"source":"vm","event":"shutdown",…}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Event {
    pub source: String,
    pub event: String,
}

impl Event {
    fn is(&self, source: &str, event: &str) -> bool {
        self.source == source && self.event == event
    }
}

/// The events in an event-monitor file so far (a last object still being written is left
/// out).
pub fn read_events(path: &Path) -> Vec<Event> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    serde_json::Deserializer::from_str(&text)
        .into_iter::<Event>()
        .map_while(Result::ok)
        .collect()
}

/// cloud-hypervisor logs this (and exits 0) when a vCPU stops on an error it cannot handle.
const VCPU_ERROR: &str = "VCPU generated error";

/// How a VM ended, from what the VMM reported: `alive` (the VMM process still runs), its exit
/// status if seen, its events and its log. `None` while the VM runs.
pub fn judge(alive: bool, exit: Option<ExitStatus>, events: &[Event], log: &str) -> Option<Ended> {
    if let Some(at) = log.find(VCPU_ERROR) {
        // The root cause is the first line after "Caused by:" (anyhow's chain).
        let cause = log[at..]
            .lines()
            .skip_while(|l| !l.trim_start().starts_with("Caused by:"))
            .nth(1)
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .unwrap_or("no cause given");
        return Some(Ended {
            clean: false,
            how: format!(
                "stopped on a fatal vCPU error ({cause}): this host's KVM cannot run this \
                 guest (under nested PVM only minimal PVH guests boot; run Linux guests with \
                 the qemu backend there)"
            ),
        });
    }
    if events
        .iter()
        .any(|e| e.is("vm", "rebooting") || e.is("vm", "rebooted"))
    {
        return Some(Ended {
            clean: false,
            how: "reset itself (a reboot, a triple fault or a panic); cloud-hypervisor would \
                  boot it again and again, so the worker ends it and its restart policy decides"
                .to_string(),
        });
    }
    if alive {
        return None;
    }
    let shut_down = events.iter().any(|e| e.is("vm", "shutdown"));
    let last_error = log
        .lines()
        .rev()
        .find(|l| l.contains("ERROR") || l.contains("Error"))
        .map(str::trim);
    Some(match exit {
        Some(s) if s.success() && shut_down => Ended {
            clean: true,
            how: "powered off".to_string(),
        },
        Some(s) if s.success() => Ended {
            clean: false,
            how: "ended: cloud-hypervisor exited 0 but never reported the VM shutting down"
                .to_string(),
        },
        Some(s) => Ended {
            clean: false,
            how: match last_error {
                Some(line) => format!("ended: cloud-hypervisor {s}: {line}"),
                None => format!("ended: cloud-hypervisor {s}"),
            },
        },
        // Adopted from a previous worker: no exit status, the events still tell.
        None if shut_down => Ended {
            clean: true,
            how: "powered off".to_string(),
        },
        None => Ended {
            clean: false,
            how: "ended: cloud-hypervisor exited without reporting the VM shutting down"
                .to_string(),
        },
    })
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
            Some(&dir.join(VMM_LOG)),
        )?;
        // The socket file appears at bind(); ping until the API thread answers.
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Err(e) = api(&socket, "GET", "vmm.ping", None) {
            if Instant::now() >= deadline || !main.is_alive() {
                return Err(e);
            }
            std::thread::sleep(Duration::from_millis(5));
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
        if !self.linux_boots && is_linux_kernel(&toplevel.kernel) {
            return Err(DriverError::Invalid(format!(
                "cloud-hypervisor cannot boot {} on this host: it is a Linux kernel, and a Linux \
                 kernel did not boot under this host's KVM when the worker probed it (nested \
                 virtualization such as PVM runs only minimal PVH guests); run this VM with \
                 deployment.backend = \"qemu\"",
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
        for stale in [socket.clone(), dir.join(CONSOLE_LOG), dir.join(EVENTS)] {
            let _ = std::fs::remove_file(stale);
        }
        let (virtiofsd, virtiofs) = spawn_virtiofsd(&self.virtiofsd, dir)?;
        let log = std::fs::File::create(dir.join(VMM_LOG))
            .map_err(io_error("creating cloud-hypervisor.log"))?;
        let log2 = log
            .try_clone()
            .map_err(io_error("creating cloud-hypervisor.log"))?;
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--api-socket")
            .arg(format!("path={}", socket.display()))
            .arg("--event-monitor")
            .arg(format!("path={}", dir.join(EVENTS).display()))
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
            && console_booted(&dir.join(CONSOLE_LOG))
            && vm_state(&dir.join("api.sock")).is_ok_and(|s| s == "Running")
    }

    fn ended(&self, dir: &Path, launch: &Launch) -> Option<Ended> {
        let alive = launch.main.is_alive();
        let events = read_events(&dir.join(EVENTS));
        let log = read_log_end(&dir.join(VMM_LOG));
        let exit = if alive { None } else { take_exit(&launch.main) };
        judge(alive, exit, &events, &log)
    }

    fn stop(&self, dir: &Path, launch: &Launch, grace: Duration) -> Result<Stopped, DriverError> {
        if !launch.main.is_alive() {
            return Ok(terminate_group(launch, Duration::ZERO));
        }
        let socket = dir.join("api.sock");
        let deadline = Instant::now() + grace;
        loop {
            if let Err(e) = api(&socket, "PUT", "vm.power-button", None) {
                tracing::debug!("vm.power-button failed: {e}");
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if wait_gone(&launch.main, left.min(BUTTON_REPEAT)) {
                super::kill_rest(launch);
                return Ok(Stopped::Clean);
            }
            if Instant::now() >= deadline {
                tracing::debug!("the guest ignored the power button");
                break;
            }
        }
        // Tear the VM down from the VMM side, then end the VMM. The guest did not shut down
        // by itself, so this counts as forced even when the VMM obeys.
        let _ = api(&socket, "PUT", "vm.shutdown", None);
        let _ = api(&socket, "PUT", "vmm.shutdown", None);
        if wait_gone(&launch.main, Duration::from_secs(2)) {
            super::kill_rest(launch);
            return Ok(Stopped::Killed);
        }
        terminate_group(launch, Duration::ZERO);
        Ok(Stopped::Killed)
    }
}

/// The last 64 KiB of the VMM's log.
fn read_log_end(path: &Path) -> String {
    use std::io::{Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// What the probe guest prints before it powers off.
pub const PROBE_LINE: &str = "procurator-probe: booted";

/// A minimal PVH guest as an ELF file, made here so the worker needs no assembler: entered
/// through the Xen PVH note (32-bit protected mode), it prints [`PROBE_LINE`] on the 16550 at
/// 0x3f8 and powers off through cloud-hypervisor's ACPI sleep-control port (S5 at 0x600).
pub fn probe_guest() -> Vec<u8> {
    const BASE: u64 = 0x10_0000;
    const EHDR: usize = 64;
    const PHDR: usize = 56;
    const NOTE_AT: usize = EHDR + 2 * PHDR;
    const NOTE_LEN: usize = 20;
    const CODE_AT: usize = NOTE_AT + NOTE_LEN;
    let mut code: Vec<u8> = Vec::new();
    // Code, 28 bytes; the message follows it.
    let message_at = BASE as u32 + (CODE_AT + 28) as u32;
    code.extend([0x66, 0xba, 0xf8, 0x03]); // mov $0x3f8, %dx
    code.push(0xbe); // mov $message, %esi
    code.extend(message_at.to_le_bytes());
    code.extend([0xac]); // 1: lodsb
    code.extend([0x84, 0xc0]); // test %al, %al
    code.extend([0x74, 0x03]); // jz 2f
    code.extend([0xee]); // out %al, %dx
    code.extend([0xeb, 0xf8]); // jmp 1b
    code.extend([0x66, 0xba, 0x00, 0x06]); // 2: mov $0x600, %dx
    code.extend([0xb0, 0x34]); // mov $0x34, %al   (SLP_TYP S5 | SLP_EN)
    code.extend([0xee]); // out %al, %dx
    code.extend([0xfa, 0xf4, 0xeb, 0xfc]); // 3: cli; hlt; jmp 3b
    debug_assert_eq!(code.len(), 28);
    code.extend(PROBE_LINE.as_bytes());
    code.extend(b"\n\0");
    let total = (CODE_AT + code.len()) as u64;
    let entry = BASE + CODE_AT as u64;

    let mut elf: Vec<u8> = Vec::with_capacity(total as usize);
    elf.extend(b"\x7fELF");
    elf.extend([2, 1, 1, 0]); // 64-bit, little endian, version 1, System V
    elf.extend([0; 8]);
    elf.extend(2u16.to_le_bytes()); // executable
    elf.extend(0x3eu16.to_le_bytes()); // x86-64
    elf.extend(1u32.to_le_bytes());
    elf.extend(entry.to_le_bytes());
    elf.extend((EHDR as u64).to_le_bytes()); // program headers
    elf.extend(0u64.to_le_bytes()); // no section headers
    elf.extend(0u32.to_le_bytes());
    elf.extend((EHDR as u16).to_le_bytes());
    elf.extend((PHDR as u16).to_le_bytes());
    elf.extend(2u16.to_le_bytes());
    elf.extend([0; 6]); // section header size, count, names
    let phdr = |elf: &mut Vec<u8>, kind: u32, flags: u32, at: u64, len: u64, align: u64| {
        elf.extend(kind.to_le_bytes());
        elf.extend(flags.to_le_bytes());
        elf.extend(at.to_le_bytes());
        elf.extend((BASE + at).to_le_bytes());
        elf.extend((BASE + at).to_le_bytes());
        elf.extend(len.to_le_bytes());
        elf.extend(len.to_le_bytes());
        elf.extend(align.to_le_bytes());
    };
    phdr(&mut elf, 1, 7, 0, total, 0x1000); // PT_LOAD, rwx: the whole file at 1 MiB
    phdr(&mut elf, 4, 4, NOTE_AT as u64, NOTE_LEN as u64, 4); // PT_NOTE
    elf.extend(4u32.to_le_bytes()); // name size ("Xen\0")
    elf.extend(4u32.to_le_bytes()); // descriptor size
    elf.extend(18u32.to_le_bytes()); // XEN_ELFNOTE_PHYS32_ENTRY
    elf.extend(b"Xen\0");
    elf.extend((entry as u32).to_le_bytes());
    elf.extend(code);
    elf
}

/// Boots the probe guest under `binary` and waits up to `timeout` for its line on the serial
/// console. `Ok` with the time that took, or why it did not boot.
pub fn probe(binary: &Path, timeout: Duration) -> Result<Duration, String> {
    let dir = std::env::temp_dir().join(format!(
        "procurator-ch-probe-{}-{}",
        std::process::id(),
        now_ms()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let kernel = dir.join("probe.elf");
    let result = std::fs::write(&kernel, probe_guest())
        .map_err(|e| format!("cannot write the probe guest: {e}"))
        .and_then(|()| boot_trial(binary, &kernel, "", 32, PROBE_LINE, timeout));
    let _ = std::fs::remove_dir_all(&dir);
    let trial = result?;
    match trial.seen {
        Some(took) => Ok(took),
        None => Err(format!("the probe guest did not boot: {}", trial.why())),
    }
}

/// Whether a Linux kernel boots under `binary` on this host's KVM: `kernel` (the host's own)
/// must print its banner on the serial console within `timeout`. Under nested PVM it does
/// not (minimal PVH guests do).
pub fn linux_boots(binary: &Path, kernel: &Path, timeout: Duration) -> bool {
    boot_trial(
        binary,
        kernel,
        "console=ttyS0 earlyprintk=ttyS0 panic=-1",
        256,
        "Linux version",
        timeout,
    )
    .is_ok_and(|t| t.seen.is_some())
}

/// What one short boot showed.
struct Trial {
    /// When the awaited console line came, if it did.
    seen: Option<Duration>,
    status: Option<ExitStatus>,
    vmm_log: String,
}

impl Trial {
    fn why(&self) -> String {
        if self.vmm_log.contains(VCPU_ERROR) {
            if let Some(ended) = judge(false, self.status, &[], &self.vmm_log) {
                return ended.how;
            }
        }
        let last = self
            .vmm_log
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("no output");
        match self.status {
            Some(s) => format!("cloud-hypervisor {s}: {last}"),
            None => format!("nothing on its console in time ({last})"),
        }
    }
}

/// Runs `binary --kernel kernel` with the serial console on a pipe until a line containing
/// `marker` appears or `timeout` passes, then kills it.
fn boot_trial(
    binary: &Path,
    kernel: &Path,
    cmdline: &str,
    memory_mb: u32,
    marker: &str,
    timeout: Duration,
) -> Result<Trial, String> {
    use std::io::{BufRead, BufReader};
    let started = Instant::now();
    let mut cmd = Command::new(binary);
    cmd.arg("--kernel").arg(kernel);
    if !cmdline.is_empty() {
        cmd.args(["--cmdline", cmdline]);
    }
    let mut child = cmd
        .args([
            "--memory",
            &format!("size={memory_mb}M"),
            "--cpus",
            "boot=1",
        ])
        .args(["--serial", "tty", "--console", "off"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    let (Some(stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err("cloud-hypervisor's output pipes are missing".into());
    };
    // Both pipes are read on threads, so the wait for the line can time out without polling.
    let (tx, rx) = std::sync::mpsc::channel();
    let marker = marker.to_string();
    let console = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains(&marker) {
                let _ = tx.send(started.elapsed());
            }
        }
    });
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    // A VMM that exits closes stdout, which ends the wait early too.
    let seen = rx.recv_timeout(timeout).ok();
    let status = match child.try_wait() {
        Ok(Some(status)) => Some(status),
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            None
        }
    };
    let _ = console.join();
    let vmm_log = log.join().unwrap_or_default();
    Ok(Trial {
        seen,
        status,
        vmm_log,
    })
}

/// Whether a kernel image is Linux: a bzImage (the boot protocol's `HdrS` at 0x202) or an ELF
/// vmlinux carrying Linux's version banner.
pub fn is_linux_kernel(path: &Path) -> bool {
    use std::io::{BufReader, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let mut magic = [0u8; 4];
    if file.seek(SeekFrom::Start(0x202)).is_ok()
        && file.read_exact(&mut magic).is_ok()
        && &magic == b"HdrS"
    {
        return true;
    }
    if file.seek(SeekFrom::Start(0)).is_err() {
        return false;
    }
    // Streamed in chunks that overlap by the banner's length, so it is found across a seam.
    const BANNER: &[u8] = b"Linux version ";
    let mut reader = BufReader::new(file);
    let mut window: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        window.extend_from_slice(&chunk[..n]);
        if window.windows(BANNER.len()).any(|w| w == BANNER) {
            return true;
        }
        let keep = window.len().min(BANNER.len() - 1);
        window.drain(..window.len() - keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn error_bodies_become_one_sentence() {
        assert_eq!(
            error_text(r#"["Error from API","The VM could not boot","VM config is missing"]"#),
            "Error from API: The VM could not boot: VM config is missing"
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

    #[test]
    fn events_are_read_up_to_a_half_written_one() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("events.json");
        std::fs::write(
            &path,
            "{\n  \"timestamp\": {\"secs\": 0, \"nanos\": 1},\n  \"source\": \"vmm\",\n  \
             \"event\": \"starting\",\n  \"properties\": null\n}\n\n\
             {\"timestamp\": {\"secs\": 0, \"nanos\": 2}, \"source\": \"vm\", \"event\": \"booted\", \
             \"properties\": null}\n\n{\"timestamp\": {\"se",
        )
        .expect("write");
        let events = read_events(&path);
        assert_eq!(events.len(), 2);
        assert!(events[1].is("vm", "booted"));
        assert!(read_events(&tmp.path().join("missing")).is_empty());
    }

    /// How each ending the real binary produces is told apart (the events and log lines are
    /// the ones cloud-hypervisor v54 writes).
    #[test]
    fn endings_are_judged_from_events_log_and_exit() {
        let ev = |list: &[(&str, &str)]| -> Vec<Event> {
            list.iter()
                .map(|(s, e)| Event {
                    source: s.to_string(),
                    event: e.to_string(),
                })
                .collect()
        };
        let ok = Some(ExitStatus::from_raw(0));
        let fail = Some(ExitStatus::from_raw(1 << 8));
        let shutdown = ev(&[
            ("vmm", "starting"),
            ("vm", "booting"),
            ("vm", "booted"),
            ("vm", "shutdown"),
            ("vm", "deleted"),
            ("vmm", "shutdown"),
        ]);
        let vcpu_log = "cloud-hypervisor: 0.06s: <vcpu0> ERROR:vmm/src/cpu.rs:1487 -- VCPU \
                        generated error: VcpuRun(Failed to run vcpu\n\nCaused by:\n    \
                        Unexpected exit reason on vcpu run: InternalError\n\nStack backtrace:\n";

        // Running, nothing said: still running.
        assert_eq!(judge(true, None, &ev(&[("vm", "booted")]), ""), None);
        // Guest power-off: exit 0 with a VM shutdown event.
        let clean = judge(false, ok, &shutdown, "").expect("ended");
        assert!(clean.clean, "{clean:?}");
        // A fatal vCPU error: same exit 0 and same events, but the log says otherwise.
        let vcpu = judge(false, ok, &shutdown, vcpu_log).expect("ended");
        assert!(!vcpu.clean);
        assert!(
            vcpu.how
                .contains("fatal vCPU error (Unexpected exit reason on vcpu run: InternalError)"),
            "{}",
            vcpu.how
        );
        assert!(vcpu.how.contains("qemu backend"), "{}", vcpu.how);
        // Seen while the VMM still runs (it takes a moment to exit).
        assert!(judge(true, None, &[], vcpu_log).is_some_and(|e| !e.clean));
        // A guest that resets is rebooted by cloud-hypervisor forever: it counts as ended.
        let reset = judge(
            true,
            None,
            &ev(&[("vm", "booted"), ("vm", "rebooting")]),
            "",
        )
        .expect("ended");
        assert!(
            !reset.clean && reset.how.contains("reset itself"),
            "{reset:?}"
        );
        // Exit 0 without a shutdown event is not a clean stop.
        assert!(judge(false, ok, &ev(&[("vm", "booted")]), "").is_some_and(|e| !e.clean));
        // A failed exit carries its last error line.
        let failed = judge(
            false,
            fail,
            &[],
            "Error booting VM: VmBoot(DeviceManager(...))\n",
        )
        .expect("ended");
        assert!(!failed.clean);
        assert!(failed.how.contains("exit status: 1"), "{}", failed.how);
        assert!(failed.how.contains("Error booting VM"), "{}", failed.how);
        // Adopted (no exit status): the events decide.
        assert!(judge(false, None, &shutdown, "").is_some_and(|e| e.clean));
        assert!(judge(false, None, &[], "").is_some_and(|e| !e.clean));
    }

    #[test]
    fn linux_kernels_are_told_from_pvh_guests() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let probe = tmp.path().join("probe.elf");
        std::fs::write(&probe, probe_guest()).expect("write");
        assert!(!is_linux_kernel(&probe));
        let mut bz = vec![0u8; 0x300];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        std::fs::write(tmp.path().join("bzImage"), &bz).expect("write");
        assert!(is_linux_kernel(&tmp.path().join("bzImage")));
        // An ELF vmlinux: the banner, here across the 1 MiB read seam.
        let mut elf = probe_guest();
        elf.resize((1 << 20) - 5, 0);
        elf.extend(b"Linux version 6.1.0 (debian)");
        std::fs::write(tmp.path().join("vmlinux"), &elf).expect("write");
        assert!(is_linux_kernel(&tmp.path().join("vmlinux")));
        assert!(!is_linux_kernel(&tmp.path().join("missing")));
    }

    #[test]
    fn probe_guest_is_a_pvh_elf() {
        let elf = probe_guest();
        assert_eq!(&elf[..4], b"\x7fELF");
        let entry = u64::from_le_bytes(elf[24..32].try_into().expect("8 bytes"));
        // The Xen note (type 18) carries the same entry point.
        let note = elf
            .windows(4)
            .position(|w| w == b"Xen\0")
            .expect("Xen note");
        assert_eq!(
            u32::from_le_bytes(elf[note - 4..note].try_into().expect("4 bytes")),
            18
        );
        let pvh_entry = u32::from_le_bytes(elf[note + 4..note + 8].try_into().expect("4 bytes"));
        assert_eq!(u64::from(pvh_entry), entry);
        assert_eq!(elf[(entry - 0x10_0000) as usize], 0x66, "code at the entry");
    }
}
