//! Health: running the configured checks, and the pure rules that turn results and exits into
//! a health state and a restart decision.
//!
//! Layers: the VMM or process is alive → it booted (kernel reached userspace / process runs)
//! → every configured check passes. A check counts as failing after `retries` consecutive
//! failures; failures inside the grace period after start do not count.

use std::collections::VecDeque;
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::time::Duration;

use schema::model::{CheckKind, Health, HealthCheck, RestartMode, RestartPolicy, VmSpec};

use crate::http1;

/// The check as the host must run it. Check ports name the port the workload listens on; a
/// process listens on the host itself, but a VM listens inside the guest, reachable only
/// through the port forwarded to the host for it. A VM check on a port with no forward is
/// left as it is (it may be something the host runs for the guest).
pub fn on_host(spec: &VmSpec, check: &HealthCheck) -> HealthCheck {
    if !spec.backend.is_vm() {
        return check.clone();
    }
    let forward = |port: u16| {
        spec.ports
            .iter()
            .find(|p| p.guest == port)
            .map(|p| p.host_port())
            .unwrap_or(port)
    };
    let mut check = check.clone();
    match &mut check.kind {
        CheckKind::Tcp { port } | CheckKind::Http { port, .. } => *port = forward(*port),
        CheckKind::Command { .. } => {}
    }
    check
}

/// Runs one check against `127.0.0.1` (process ports, or VM ports forwarded to the host).
/// `Ok` carries a short description of the success, `Err` of the failure.
pub async fn run_check(check: &HealthCheck) -> Result<String, String> {
    let timeout = Duration::from_millis(u64::from(check.timeout_ms.max(1)));
    match &check.kind {
        CheckKind::Tcp { port } => {
            let port = *port;
            blocking(move || {
                connect(port, timeout)?;
                Ok(format!("tcp {port} open"))
            })
            .await
        }
        CheckKind::Http {
            port,
            path,
            expect_status,
        } => {
            let (port, path, expect) = (*port, path.clone(), *expect_status);
            blocking(move || {
                let stream = connect(port, timeout)?;
                let _ = stream.set_read_timeout(Some(timeout));
                let _ = stream.set_write_timeout(Some(timeout));
                let host = format!("127.0.0.1:{port}");
                let response = http1::request(stream, "GET", &host, &path, None)
                    .map_err(|e| format!("http {port}{path}: {e}"))?;
                let ok = if expect == 0 {
                    (200..300).contains(&response.status)
                } else {
                    response.status == expect
                };
                let text = format!("http {port}{path} answered {}", response.status);
                if ok {
                    Ok(text)
                } else {
                    Err(text)
                }
            })
            .await
        }
        CheckKind::Command { argv } => {
            let Some((program, args)) = argv.split_first() else {
                return Err("command check has no command".into());
            };
            let child = tokio::process::Command::new(program)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .output();
            match tokio::time::timeout(timeout, child).await {
                Err(_) => Err(format!(
                    "`{program}` timed out after {} ms",
                    timeout.as_millis()
                )),
                Ok(Err(e)) => Err(format!("`{program}` could not run: {e}")),
                Ok(Ok(out)) if out.status.success() => Ok(format!("`{program}` succeeded")),
                Ok(Ok(out)) => Err(format!(
                    "`{program}` {}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
            }
        }
    }
}

fn connect(port: u16, timeout: Duration) -> Result<TcpStream, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("tcp {port}: {e}"))
}

async fn blocking<F>(f: F) -> Result<String, String>
where
    F: FnOnce() -> Result<String, String> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(format!("check panicked: {e}")))
}

/// Running tally of one check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckState {
    pub consecutive_failures: u32,
    pub passed_once: bool,
    pub last: String,
}

impl CheckState {
    pub fn record(&mut self, result: Result<String, String>, in_grace: bool) {
        match result {
            Ok(text) => {
                self.consecutive_failures = 0;
                self.passed_once = true;
                self.last = text;
            }
            Err(text) => {
                if !in_grace {
                    self.consecutive_failures += 1;
                }
                self.last = text;
            }
        }
    }

    fn failing(&self, check: &HealthCheck) -> bool {
        self.consecutive_failures >= check.retries.max(1)
    }
}

/// The health of an instance from its layers.
pub fn health(booted: bool, checks: &[HealthCheck], states: &[CheckState]) -> Health {
    if !booted {
        return Health::Starting;
    }
    if checks
        .iter()
        .zip(states)
        .any(|(check, state)| state.failing(check))
    {
        return Health::Unhealthy;
    }
    if states.iter().all(|s| s.passed_once) {
        Health::Healthy
    } else {
        Health::Starting
    }
}

/// Why an instance ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The process or VM ended by itself; `success` when its driver judged the end clean (exit
    /// status 0, or a guest power-off the VMM reported).
    Exited { success: bool },
    /// Health checks failed.
    Unhealthy,
    /// Booting failed (driver error).
    StartFailed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start again after `delay_ms`; `crash_loop` when restarts within the window reached the
    /// policy's threshold.
    Restart { delay_ms: u64, crash_loop: bool },
    /// Leave it stopped: the policy does not restart this kind of ending.
    Stay,
}

/// Restart history of one instance: the pure part of "exponential backoff per policy".
#[derive(Debug, Clone, Default)]
pub struct Restarts {
    /// Times (ms, any monotonic origin) of recent restarts, oldest first.
    recent: VecDeque<u64>,
    pub total: u32,
}

impl Restarts {
    /// Decides what follows `ending` at `now_ms`. The backoff doubles with every restart
    /// inside the crash-loop window, from the initial to the maximum backoff; an instance that
    /// ran a whole window without trouble starts over at the initial backoff.
    pub fn decide(&mut self, policy: &RestartPolicy, ending: Ending, now_ms: u64) -> Decision {
        let restart = match policy.mode {
            RestartMode::Never => false,
            RestartMode::Always => true,
            RestartMode::OnFailure => !matches!(ending, Ending::Exited { success: true }),
        };
        if !restart {
            return Decision::Stay;
        }
        let window = u64::from(policy.crash_loop_window_ms);
        while let Some(&first) = self.recent.front() {
            if now_ms.saturating_sub(first) > window {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        let n = self.recent.len() as u32;
        let initial = u64::from(policy.initial_backoff_ms);
        let max = u64::from(policy.max_backoff_ms).max(initial);
        let delay_ms = initial.saturating_mul(1u64 << n.min(32)).min(max);
        self.recent.push_back(now_ms);
        self.total += 1;
        Decision::Restart {
            delay_ms,
            crash_loop: policy.crash_loop_threshold > 0
                && self.recent.len() as u32 >= policy.crash_loop_threshold,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(mode: RestartMode) -> RestartPolicy {
        RestartPolicy {
            mode,
            initial_backoff_ms: 100,
            max_backoff_ms: 1_000,
            crash_loop_threshold: 3,
            crash_loop_window_ms: 10_000,
        }
    }

    #[test]
    fn restart_decisions_follow_the_policy() {
        let cases = [
            (RestartMode::Never, Ending::Exited { success: false }, false),
            (RestartMode::Never, Ending::Unhealthy, false),
            (
                RestartMode::OnFailure,
                Ending::Exited { success: true },
                false,
            ),
            (
                RestartMode::OnFailure,
                Ending::Exited { success: false },
                true,
            ),
            (RestartMode::OnFailure, Ending::Unhealthy, true),
            (RestartMode::OnFailure, Ending::StartFailed, true),
            (RestartMode::Always, Ending::Exited { success: true }, true),
        ];
        for (mode, ending, restarts) in cases {
            let d = Restarts::default().decide(&policy(mode), ending, 0);
            assert_eq!(
                matches!(d, Decision::Restart { .. }),
                restarts,
                "{mode:?} {ending:?}"
            );
        }
    }

    #[test]
    fn backoff_doubles_caps_and_enters_crash_loop_then_recovers() {
        let p = policy(RestartMode::Always);
        let mut r = Restarts::default();
        let mut got = Vec::new();
        for t in [0, 100, 300, 700, 1_500] {
            got.push(r.decide(&p, Ending::Exited { success: false }, t));
        }
        let want = [
            (100, false),
            (200, false),
            (400, true),
            (800, true),
            (1_000, true),
        ];
        for (d, (delay, crash_loop)) in got.iter().zip(want) {
            assert_eq!(
                *d,
                Decision::Restart {
                    delay_ms: delay,
                    crash_loop
                }
            );
        }
        assert_eq!(r.total, 5);
        // A quiet window later the history is forgotten.
        let d = r.decide(&p, Ending::Exited { success: false }, 100_000);
        assert_eq!(
            d,
            Decision::Restart {
                delay_ms: 100,
                crash_loop: false
            }
        );
    }

    #[test]
    fn health_layers() {
        let check = HealthCheck {
            kind: CheckKind::Tcp { port: 1 },
            interval_ms: 100,
            timeout_ms: 100,
            retries: 2,
            grace_period_ms: 0,
        };
        let checks = vec![check.clone()];
        let mut s = CheckState::default();
        assert_eq!(health(false, &checks, &[s.clone()]), Health::Starting);
        assert_eq!(health(true, &[], &[]), Health::Healthy);
        assert_eq!(health(true, &checks, &[s.clone()]), Health::Starting);
        s.record(Err("refused".into()), true);
        s.record(Err("refused".into()), true);
        assert_eq!(
            s.consecutive_failures, 0,
            "grace period failures do not count"
        );
        s.record(Err("refused".into()), false);
        assert_eq!(health(true, &checks, &[s.clone()]), Health::Starting);
        s.record(Err("refused".into()), false);
        assert_eq!(health(true, &checks, &[s.clone()]), Health::Unhealthy);
        s.record(Ok("open".into()), false);
        assert_eq!(health(true, &checks, &[s.clone()]), Health::Healthy);
    }

    #[tokio::test]
    async fn checks_against_real_sockets() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            for stream in listener.incoming().take(2) {
                let Ok(mut s) = stream else { continue };
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let answer = if req.starts_with("GET /ok ") {
                    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                } else {
                    "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
                };
                let _ = s.write_all(answer.as_bytes());
            }
        });
        let http = |path: &str| HealthCheck {
            kind: CheckKind::Http {
                port,
                path: path.into(),
                expect_status: 0,
            },
            interval_ms: 100,
            timeout_ms: 2_000,
            retries: 1,
            grace_period_ms: 0,
        };
        assert_eq!(
            run_check(&http("/ok")).await,
            Ok(format!("http {port}/ok answered 200"))
        );
        assert_eq!(
            run_check(&http("/bad")).await,
            Err(format!("http {port}/bad answered 503"))
        );
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let closed_port = closed.local_addr().expect("addr").port();
        drop(closed);
        let tcp = HealthCheck {
            kind: CheckKind::Tcp { port: closed_port },
            ..http("/")
        };
        assert!(run_check(&tcp).await.is_err());
        let cmd = |argv: &[&str]| HealthCheck {
            kind: CheckKind::Command {
                argv: argv.iter().map(|s| s.to_string()).collect(),
            },
            ..http("/")
        };
        assert!(run_check(&cmd(&["/bin/true"])).await.is_ok());
        assert!(run_check(&cmd(&["/bin/false"])).await.is_err());
    }

    #[test]
    fn vm_checks_probe_the_forwarded_host_port() {
        use schema::model::{Backend, PortForward};
        let check = HealthCheck {
            kind: CheckKind::Http {
                port: 8080,
                path: "/healthz".into(),
                expect_status: 0,
            },
            interval_ms: 1000,
            timeout_ms: 1000,
            retries: 1,
            grace_period_ms: 0,
        };
        let mut spec = VmSpec::process("vm", "/nix/store/0c9hj2bl0ajiyqslkmbhizbgshrdw9jl-vm");
        spec.ports.push(PortForward {
            name: "http".into(),
            guest: 8080,
            host: 8082,
        });
        let port = |c: HealthCheck| match c.kind {
            CheckKind::Http { port, .. } => port,
            _ => 0,
        };
        // A process listens on the host: its port is the port.
        assert_eq!(port(on_host(&spec, &check)), 8080);
        // A VM listens in the guest: the host reaches it through the forward.
        spec.backend = Backend::Qemu;
        spec.exec = String::new();
        assert_eq!(port(on_host(&spec, &check)), 8082);
        // No forward for that port: left alone.
        spec.ports.clear();
        assert_eq!(port(on_host(&spec, &check)), 8080);
    }
}
