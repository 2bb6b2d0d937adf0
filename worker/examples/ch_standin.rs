//! A stand-in for the `cloud-hypervisor` binary, for the driver's tests: cloud-hypervisor
//! cannot be installed on the machines this project is built on.
//!
//! Usage, as the real binary: `ch_standin --api-socket path=/run/vm/api.sock`.
//!
//! What it reproduces from cloud-hypervisor's documented REST API (`/api/v1`, HTTP/1.1 over a
//! unix socket) and its `vmm` state handling:
//! - endpoints `vmm.ping` (GET, 200 + `{"build_version","version","pid","features"}`),
//!   `vmm.shutdown`, `vm.create` (JSON `VmConfig`; `payload` required), `vm.boot`, `vm.info`
//!   (GET, 200 + `{"config","state"}`), `vm.pause`, `vm.resume`, `vm.shutdown`,
//!   `vm.power-button`, `vm.delete`; actions answer 204 No Content;
//! - the state machine: no VM → `vm.create` → Created → `vm.boot` → Running ⇄ Paused;
//!   `vm.shutdown` tears the VM down and keeps its config (state Created again, bootable);
//!   `vm.delete` forgets the config (204 even when there is none); `vm.info` without a config is
//!   404;
//! - errors as cloud-hypervisor sends them: the JSON array of messages from the outermost
//!   error to its root cause, status 404 when the VM is not created/configured, 500 for other
//!   API errors, 400 for undeserializable bodies or a wrong method, 404 `["Not Found"]` for
//!   unknown paths; e.g. `["Error from API","The VM could not be created","VM is already
//!   created"]`, `["Error from API","The VM could not boot","invalid VM state transition:
//!   Running to Running"]`;
//! - the process exit as the truth of "stopped": a guest power-off (here: after the power
//!   button) and `vmm.shutdown` end the process with status 0.
//!
//! What it fakes, because no hypervisor runs: at `vm.boot` it checks what cloud-hypervisor
//! would need (the kernel exists and is an ELF file, the initramfs exists, every `fs` socket
//! accepts a vhost-user connection, which it then holds open as the VMM does) and then, instead
//! of running guest code, writes a kernel-like boot log to the serial file (ending with the
//! kernel's `Run /init as init process`). The "guest" answers the power button by powering
//! off 100 ms later.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Created,
    Running,
    Paused,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Created => "Created",
            State::Running => "Running",
            State::Paused => "Paused",
        }
    }
}

struct Vmm {
    config: Option<Value>,
    /// `Some` while a VM exists (booted at least once since create/shutdown).
    state: Option<State>,
    /// vhost-user connections held while the VM runs.
    fs_connections: Vec<UnixStream>,
}

struct Reply {
    status: u16,
    body: Option<String>,
    exit_after: bool,
}

fn ok() -> Reply {
    Reply {
        status: 204,
        body: None,
        exit_after: false,
    }
}

fn json_reply(value: Value) -> Reply {
    Reply {
        status: 200,
        body: Some(value.to_string()),
        exit_after: false,
    }
}

fn error(status: u16, messages: &[&str]) -> Reply {
    let messages: Vec<String> = messages.iter().map(|m| m.to_string()).collect();
    Reply {
        status,
        body: Some(serde_json::to_string(&messages).unwrap_or_default()),
        exit_after: false,
    }
}

fn api_error(status: u16, action: &str, cause: &str) -> Reply {
    error(status, &["Error from API", action, cause])
}

impl Vmm {
    fn handle(&mut self, method: &str, path: &str, body: &str) -> Reply {
        let Some(endpoint) = path.strip_prefix("/api/v1/") else {
            return error(404, &["Not Found"]);
        };
        let get_only = matches!(endpoint, "vmm.ping" | "vm.info");
        let known = matches!(
            endpoint,
            "vmm.ping"
                | "vmm.shutdown"
                | "vm.create"
                | "vm.boot"
                | "vm.info"
                | "vm.pause"
                | "vm.resume"
                | "vm.shutdown"
                | "vm.power-button"
                | "vm.delete"
        );
        if !known {
            return error(404, &["Not Found"]);
        }
        if (get_only && method != "GET") || (!get_only && method != "PUT") {
            return error(400, &["Bad Request"]);
        }
        match endpoint {
            "vmm.ping" => json_reply(json!({
                "build_version": "v0-standin",
                "version": "0.0.0-standin",
                "pid": std::process::id(),
                "features": [],
            })),
            "vmm.shutdown" => {
                self.teardown();
                Reply {
                    exit_after: true,
                    ..ok()
                }
            }
            "vm.create" => {
                let config: Value = match serde_json::from_str(body) {
                    Ok(v) => v,
                    Err(e) => return error(400, &["Failed to deserialize JSON", &e.to_string()]),
                };
                if config.get("payload").is_none() {
                    return error(
                        400,
                        &["Failed to deserialize JSON", "missing field `payload`"],
                    );
                }
                if self.config.is_some() {
                    return api_error(500, "The VM could not be created", "VM is already created");
                }
                self.config = Some(config);
                ok()
            }
            "vm.boot" => {
                let Some(config) = self.config.clone() else {
                    return api_error(404, "The VM could not boot", "VM is not created");
                };
                if let Some(state) = self.state.filter(|s| *s != State::Created) {
                    return api_error(
                        500,
                        "The VM could not boot",
                        &format!("invalid VM state transition: {} to Running", state.name()),
                    );
                }
                if let Err(cause) = self.boot(&config) {
                    return api_error(500, "The VM could not boot", &cause);
                }
                self.state = Some(State::Running);
                ok()
            }
            "vm.info" => match &self.config {
                None => api_error(404, "The VM info is not available", "VM is not created"),
                Some(config) => json_reply(json!({
                    "config": config,
                    "state": self.state.unwrap_or(State::Created).name(),
                    "memory_actual_size": config["memory"]["size"],
                })),
            },
            "vm.pause" | "vm.resume" => {
                let (from, to, action) = if endpoint == "vm.pause" {
                    (State::Running, State::Paused, "The VM could not be paused")
                } else {
                    (State::Paused, State::Running, "The VM could not resume")
                };
                match self.state {
                    None => api_error(404, action, "VM is not created"),
                    Some(s) if s == from => {
                        self.state = Some(to);
                        ok()
                    }
                    Some(s) => api_error(
                        500,
                        action,
                        &format!("invalid VM state transition: {} to {}", s.name(), to.name()),
                    ),
                }
            }
            "vm.shutdown" => match self.state {
                Some(State::Running) | Some(State::Paused) => {
                    self.teardown();
                    ok()
                }
                _ => api_error(500, "The VM could not shutdown", "VM is not running"),
            },
            "vm.power-button" => match self.state {
                Some(State::Running) => Reply {
                    // The "guest" reacts to the ACPI button by powering off: the VMM exits 0.
                    exit_after: true,
                    ..ok()
                },
                _ => api_error(500, "The VM could not be powered off", "VM is not running"),
            },
            "vm.delete" => {
                self.teardown();
                self.config = None;
                ok()
            }
            _ => error(404, &["Not Found"]),
        }
    }

    fn boot(&mut self, config: &Value) -> Result<(), String> {
        let payload = &config["payload"];
        let kernel = payload["kernel"].as_str().unwrap_or_default();
        let mut magic = [0u8; 4];
        std::fs::File::open(kernel)
            .and_then(|mut f| f.read_exact(&mut magic))
            .map_err(|e| format!("Error loading kernel: Cannot open kernel file {kernel}: {e}"))?;
        if magic != *b"\x7fELF" {
            return Err(format!(
                "Error loading kernel: kernel {kernel} is not an ELF vmlinux"
            ));
        }
        if let Some(initramfs) = payload["initramfs"].as_str() {
            if !Path::new(initramfs).exists() {
                return Err(format!("Cannot open initramfs file {initramfs}"));
            }
        }
        let mut connections = Vec::new();
        for fs in config["fs"].as_array().cloned().unwrap_or_default() {
            let socket = fs["socket"].as_str().unwrap_or_default();
            let conn = UnixStream::connect(socket).map_err(|e| {
                format!("Error creating virtio-fs device: cannot connect to vhost-user socket {socket}: {e}")
            })?;
            connections.push(conn);
        }
        self.fs_connections = connections;
        if config["serial"]["mode"] == "File" {
            if let Some(file) = config["serial"]["file"].as_str() {
                let cmdline = payload["cmdline"].as_str().unwrap_or_default();
                let log = format!(
                    "[    0.000000] Linux version 0.0.0-standin (cloud-hypervisor stand-in: no guest code runs)\n\
                     [    0.000000] Command line: {cmdline}\n\
                     [    0.100000] Run /init as init process\n"
                );
                std::fs::write(file, log).map_err(|e| format!("Error opening serial file: {e}"))?;
            }
        }
        Ok(())
    }

    fn teardown(&mut self) {
        self.fs_connections.clear();
        if self.state.is_some() {
            self.state = Some(State::Created);
        }
    }
}

fn read_request(stream: &UnixStream) -> Option<(String, String, String)> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            break;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).ok()?;
    Some((method, path, String::from_utf8_lossy(&body).into_owned()))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        _ => "Internal Server Error",
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let socket = args
        .iter()
        .position(|a| a == "--api-socket")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.strip_prefix("path=").unwrap_or(v).to_string());
    let Some(socket) = socket else {
        eprintln!("usage: ch_standin --api-socket path=<socket>");
        std::process::exit(2);
    };
    let _ = std::fs::remove_file(&socket);
    let listener = match UnixListener::bind(&socket) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot bind {socket}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("cloud-hypervisor stand-in: API on {socket}");
    let mut vmm = Vmm {
        config: None,
        state: None,
        fs_connections: Vec::new(),
    };
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let Some((method, path, body)) = read_request(&stream) else {
            continue;
        };
        let reply = vmm.handle(&method, &path, &body);
        eprintln!("{method} {path} -> {}", reply.status);
        let body = reply.body.unwrap_or_default();
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nServer: Cloud Hypervisor API\r\nConnection: keep-alive\r\n",
            reply.status,
            reason(reply.status)
        );
        if reply.status != 204 {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(body.as_bytes());
        let _ = stream.flush();
        if reply.exit_after {
            // Guest power-off or vmm.shutdown: the process exit is what callers wait for.
            std::thread::sleep(std::time::Duration::from_millis(100));
            let _ = std::fs::remove_file(&socket);
            std::process::exit(0);
        }
    }
}
