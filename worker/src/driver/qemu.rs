//! QEMU microVMs: `qemu-system-x86_64 -M microvm` booting a toplevel's kernel and initrd, with
//! `/nix/store` shared read-only over virtiofs, the serial console in `console.log`, user-mode
//! networking with the declared ports forwarded to 127.0.0.1, and QMP on `qmp.sock` for
//! status, power-down and quit.

use std::io::{BufRead, BufReader, Write};
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

/// How QEMU executes guest code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// Kernel parameters every microVM gets before the toplevel's own: the console on the serial
/// port, and a panic that ends QEMU (with `-no-reboot`) instead of hanging, so the supervisor
/// sees the crash.
const BASE_CMDLINE: &str = "console=ttyS0 reboot=t panic=-1";

pub struct QemuDriver {
    pub qemu: PathBuf,
    pub virtiofsd: PathBuf,
    pub accel: Accel,
}

impl QemuDriver {
    /// QEMU's arguments for one instance, given the virtiofsd socket.
    pub fn args(
        &self,
        dir: &Path,
        spec: &VmSpec,
        toplevel: &Toplevel,
        virtiofs_socket: &Path,
    ) -> Vec<String> {
        let mem = spec.memory_mb;
        let mut args: Vec<String> = Vec::new();
        if self.accel == Accel::Tcg {
            // Guest time follows executed instructions: on a loaded host, wall-clock timers
            // starve the guest's PIT/TSC calibration and the kernel hangs at boot (seen here
            // with a load of 8 on 2 cores); with icount it boots the same under any load.
            args.extend(["-icount".to_string(), "shift=auto".to_string()]);
        }
        args.extend([
            "-M".into(),
            format!("microvm,accel={}", self.accel.as_str()),
            "-cpu".into(),
            match self.accel {
                Accel::Kvm => "host".into(),
                Accel::Tcg => "max".into(),
            },
            "-smp".into(),
            spec.cpu.to_string(),
            "-m".into(),
            format!("{mem}M"),
            // virtiofs needs guest memory the vhost-user daemon can map.
            "-object".into(),
            format!("memory-backend-memfd,id=mem,size={mem}M,share=on"),
            "-numa".into(),
            "node,memdev=mem".into(),
            "-nodefaults".into(),
            "-no-user-config".into(),
            "-display".into(),
            "none".into(),
            "-no-reboot".into(),
            // The guest kernel's virtio-mmio driver wants modern (version 2) devices.
            "-global".into(),
            "virtio-mmio.force-legacy=false".into(),
            "-serial".into(),
            format!("file:{}", dir.join(CONSOLE_LOG).display()),
            "-qmp".into(),
            format!("unix:{},server=on,wait=off", dir.join("qmp.sock").display()),
            "-chardev".into(),
            format!("socket,id=store,path={}", virtiofs_socket.display()),
            "-device".into(),
            format!("vhost-user-fs-device,chardev=store,tag={STORE_TAG}"),
            "-kernel".into(),
            toplevel.kernel.display().to_string(),
            "-initrd".into(),
            toplevel.initrd.display().to_string(),
            "-append".into(),
            toplevel.cmdline(BASE_CMDLINE),
        ]);
        if !spec.ports.is_empty() {
            let mut netdev = "user,id=net0".to_string();
            for port in &spec.ports {
                netdev.push_str(&format!(
                    ",hostfwd=tcp:127.0.0.1:{}-:{}",
                    port.host_port(),
                    port.guest
                ));
            }
            args.extend([
                "-netdev".into(),
                netdev,
                "-device".into(),
                "virtio-net-device,netdev=net0".into(),
            ]);
        }
        args
    }

    /// QEMU's run state over QMP (`running`, `paused`, `shutdown`, ...).
    pub fn status(&self, dir: &Path) -> Result<String, DriverError> {
        let reply = Qmp::connect(&dir.join("qmp.sock"))?.execute("query-status")?;
        Ok(reply
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_string())
    }
}

impl Driver for QemuDriver {
    fn backend(&self) -> Backend {
        Backend::Qemu
    }

    fn start(&self, _instance_id: &str, dir: &Path, spec: &VmSpec) -> Result<Launch, DriverError> {
        let toplevel = Toplevel::read(&spec.closure)?;
        let _ = std::fs::remove_file(dir.join("qmp.sock"));
        let _ = std::fs::remove_file(dir.join(CONSOLE_LOG));
        let (virtiofsd, socket) = spawn_virtiofsd(&self.virtiofsd, dir)?;
        let stderr_path = dir.join("qemu.log");
        let stderr = std::fs::File::create(&stderr_path).map_err(io_error("creating qemu.log"))?;
        let mut cmd = Command::new(&self.qemu);
        cmd.args(self.args(dir, spec, &toplevel, &socket))
            .stdout(Stdio::null())
            .stderr(stderr);
        let launch_group = virtiofsd.pid;
        let main = match spawn_detached(cmd, "qemu", Some(launch_group)) {
            Ok(main) => main,
            Err(e) => {
                let partial = Launch {
                    pgid: launch_group,
                    main: virtiofsd,
                    helpers: vec![],
                    started_at_ms: now_ms(),
                };
                terminate_group(&partial, Duration::ZERO);
                return Err(e);
            }
        };
        let launch = Launch {
            pgid: launch_group,
            main,
            helpers: vec![virtiofsd],
            started_at_ms: now_ms(),
        };
        // QMP is the control channel; a VM without it cannot be stopped cleanly.
        if let Err(e) = wait_for_socket(
            &dir.join("qmp.sock"),
            &main,
            "qemu",
            Duration::from_secs(10),
            Some(&stderr_path),
        ) {
            terminate_group(&launch, Duration::ZERO);
            return Err(e);
        }
        Ok(launch)
    }

    fn booted(&self, dir: &Path, launch: &Launch) -> bool {
        launch.main.is_alive() && console_booted(&dir.join(CONSOLE_LOG))
    }

    fn stop(&self, dir: &Path, launch: &Launch, grace: Duration) -> Result<Stopped, DriverError> {
        if !launch.main.is_alive() {
            return Ok(terminate_group(launch, Duration::ZERO));
        }
        let started = Instant::now();
        // ACPI power button first: the guest shuts down and QEMU exits. A press that arrives
        // while the guest is still booting (before anything listens to the button) is lost,
        // so it is pressed again every few seconds within the grace period.
        let deadline = started + grace;
        loop {
            let pressed = Qmp::connect(&dir.join("qmp.sock"))
                .and_then(|mut qmp| qmp.execute("system_powerdown"));
            if let Err(e) = &pressed {
                tracing::debug!("system_powerdown failed: {e}");
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if wait_gone(&launch.main, (deadline - now).min(Duration::from_secs(3))) {
                super::kill_rest(launch);
                return Ok(Stopped::Clean);
            }
        }
        // The guest ignored the button: end QEMU itself, then anything left in the group.
        let _ = Qmp::connect(&dir.join("qmp.sock")).and_then(|mut qmp| qmp.execute("quit"));
        let rest = grace
            .saturating_sub(started.elapsed())
            .max(Duration::from_secs(1));
        wait_gone(&launch.main, rest.min(Duration::from_secs(2)));
        terminate_group(launch, Duration::ZERO);
        Ok(Stopped::Killed)
    }
}

/// A QMP session: greeting, capabilities negotiation, then one JSON command per line.
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    pub fn connect(path: &Path) -> Result<Qmp, DriverError> {
        let stream = UnixStream::connect(path).map_err(io_error("connecting to QMP"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(io_error("configuring the QMP socket"))?;
        let writer = stream
            .try_clone()
            .map_err(io_error("configuring the QMP socket"))?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = qmp.read_message()?;
        if greeting.get("QMP").is_none() {
            return Err(DriverError::Api(format!(
                "QMP greeting expected, got {greeting}"
            )));
        }
        qmp.execute("qmp_capabilities")?;
        Ok(qmp)
    }

    fn read_message(&mut self) -> Result<Value, DriverError> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .map_err(io_error("reading from QMP"))?;
        if n == 0 {
            return Err(DriverError::Api("QMP closed the connection".into()));
        }
        serde_json::from_str(&line)
            .map_err(|e| DriverError::Api(format!("QMP sent invalid JSON ({e}): {line}")))
    }

    /// Runs a command and returns its `return` value; asynchronous events are skipped.
    pub fn execute(&mut self, command: &str) -> Result<Value, DriverError> {
        let mut request = json!({ "execute": command }).to_string();
        request.push('\n');
        self.writer
            .write_all(request.as_bytes())
            .map_err(io_error("writing to QMP"))?;
        loop {
            let message = self.read_message()?;
            if let Some(ret) = message.get("return") {
                return Ok(ret.clone());
            }
            if let Some(err) = message.get("error") {
                let desc = err.get("desc").and_then(Value::as_str).unwrap_or("?");
                return Err(DriverError::Api(format!("QMP {command} failed: {desc}")));
            }
        }
    }
}

/// Whether KVM really runs a guest here: boots `kernel` with no root file system under KVM and
/// waits for the kernel to print its panic (it cannot mount a root) within `timeout`. `/dev/kvm`
/// existing is not enough: under nested PVM it opens fine but ordinary kernels never boot.
pub fn kvm_boots(qemu: &Path, kernel: &Path, timeout: Duration) -> bool {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return false;
    }
    let Ok(mut child) = Command::new(qemu)
        .args(["-M", "microvm,accel=kvm", "-cpu", "host", "-m", "128"])
        .args(["-nodefaults", "-no-user-config", "-display", "none"])
        .args(["-serial", "stdio", "-no-reboot", "-kernel"])
        .arg(kernel)
        .args(["-append", "console=ttyS0 panic=-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        let _ = child.wait();
        return false;
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("Kernel panic") || line.contains("VFS:") {
                let _ = tx.send(());
                return;
            }
        }
    });
    let booted = rx.recv_timeout(timeout).is_ok();
    let _ = child.kill();
    let _ = child.wait();
    booted
}
