//! What the TUI costs with a large cluster: 1,000 workers and 10,000 VMs.
//!
//! Prints, for each figure, the median and the 99th percentile over many runs:
//! - folding a fresh status into the state (what every refresh costs the screen);
//! - drawing each view at 80×24 and 250×70 (ratatui's buffer, diffed against the last frame);
//! - the bytes a redraw writes to a real terminal after one key press (crossterm backend
//!   writing to a sink);
//! - key press to redrawn frame: `j` in the VMs list, and one typed filter character (which
//!   refilters all 10,000 rows);
//! - the memory the state takes (resident set size before and after).
//!
//! Run with `cargo bench -p cli --bench tui`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::io;
use std::time::{Duration, Instant};

use cli::interactive::app::{Link, Update};
use cli::interactive::{ui, App, Theme};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::{CrosstermBackend, TestBackend};
use ratatui::layout::Rect;
use ratatui::{Terminal, TerminalOptions, Viewport};
use schema::model::*;

const WORKERS: usize = 1_000;
const VMS: usize = 1_000;
const REPLICAS: u32 = 10;
const NOW: u64 = 1_800_000_000_000;

fn closure(name: &str) -> String {
    let alphabet = b"0123456789abcdfghijklmnpqrsvwxyz";
    let mut h: u64 = 1469598103934665603;
    let hash: String = (0..32)
        .map(|i| {
            for b in name.bytes() {
                h = (h ^ b as u64 ^ i).wrapping_mul(1099511628211);
            }
            alphabet[(h % 32) as usize] as char
        })
        .collect();
    format!("/nix/store/{hash}-{name}")
}

fn cluster() -> (ClusterStatus, Blueprint) {
    let workers: Vec<WorkerStatus> = (0..WORKERS)
        .map(|w| WorkerStatus {
            info: WorkerInfo {
                id: format!("worker-{w:04}"),
                labels: BTreeMap::from([
                    ("zone".to_string(), format!("zone-{}", w % 3)),
                    ("rack".to_string(), format!("r{}", w % 40)),
                ]),
                cpu: 32,
                memory_mb: 131_072,
                backends: vec![Backend::Qemu, Backend::Process],
                hostname: format!("host-{w:04}.example"),
                version: "0.1.0".into(),
            },
            state: if w % 97 == 0 {
                WorkerState::Cordoned
            } else {
                WorkerState::Ready
            },
            healthy: true,
            free_cpu: 12,
            free_memory_mb: 60_000,
            instance_count: 10,
            last_heartbeat_ms: NOW - 1_500,
            observed_generation: 42,
            ..Default::default()
        })
        .collect();
    let vms: Vec<VmSpec> = (0..VMS)
        .map(|v| {
            let name = format!("svc{v:04}");
            VmSpec {
                replicas: REPLICAS,
                cpu: 2,
                memory_mb: 4_096,
                labels: BTreeMap::from([("team".to_string(), format!("t{}", v % 25))]),
                ..VmSpec::process(&name, &closure(&name))
            }
        })
        .collect();
    let instances: Vec<InstanceStatus> = vms
        .iter()
        .flat_map(|spec| spec.instance_ids().map(move |id| (spec, id)))
        .enumerate()
        .map(|(n, (spec, id))| InstanceStatus {
            instance_id: id,
            vm_name: spec.name.clone(),
            worker_id: format!("worker-{:04}", n % WORKERS),
            desired_closure: spec.closure.clone(),
            observed_closure: if n % 50 == 0 {
                closure("old")
            } else {
                spec.closure.clone()
            },
            phase: Phase::Running,
            health: Health::Healthy,
            drifted: n % 50 == 0,
            backend: Some(Backend::Process),
            cpu: 2,
            memory_mb: 4_096,
            uptime_ms: 3_600_000,
            cpu_percent: 4.5,
            memory_bytes: 900 << 20,
            generation: 42,
            ..Default::default()
        })
        .collect();
    let status = ClusterStatus {
        settings: ClusterSettings {
            name: "big".into(),
            strategy: PlacementStrategy::Spread,
        },
        active_generation: 42,
        commit: "3f2a9c1d07e4b5a6c7d8e9f00112233445566778".into(),
        published_at_ms: NOW - 600_000,
        convergence_percent: 98.0,
        workers,
        instances,
        revision: 1_234,
        last_good_generation: 41,
        ..Default::default()
    };
    let blueprint = Blueprint {
        cluster: status.settings.clone(),
        vms,
    };
    (status, blueprint)
}

fn events() -> Vec<Event> {
    (1..=1_000u64)
        .map(|seq| Event {
            seq,
            timestamp_ms: NOW - 1_000_000 + seq * 1_000,
            kind: EventKind::InstancePhase,
            generation: 42,
            worker_id: format!("worker-{:04}", seq % 1_000),
            instance_id: format!("svc{:04}-{}", seq % 1_000, seq % 10),
            message: format!("svc{:04}-{} is running", seq % 1_000, seq % 10),
        })
        .collect()
}

fn generations() -> Vec<GenerationInfo> {
    (1..=42u64)
        .rev()
        .map(|g| GenerationInfo {
            generation: g,
            commit: format!("{g:040x}"),
            intent_hash: format!("{g:064x}"),
            published_at_ms: NOW - (43 - g) * 3_600_000,
            vm_count: VMS as u32,
            status: if g == 42 { "active" } else { "superseded" }.into(),
            reason: String::new(),
        })
        .collect()
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

struct Stats {
    samples: Vec<Duration>,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            samples: Vec::new(),
        }
    }
    fn time<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = f();
        self.samples.push(start.elapsed());
        out
    }
    fn report(&mut self, what: &str) {
        self.samples.sort();
        let n = self.samples.len();
        let p = |q: f64| self.samples[((n as f64 * q) as usize).min(n - 1)];
        println!(
            "{what:<58} p50 {:>9.3} ms   p99 {:>9.3} ms   ({n} runs)",
            p(0.5).as_secs_f64() * 1e3,
            p(0.99).as_secs_f64() * 1e3
        );
    }
}

fn key(c: char) -> KeyEvent {
    KeyEvent::new(
        match c {
            '\n' => KeyCode::Enter,
            '\x1b' => KeyCode::Esc,
            c => KeyCode::Char(c),
        },
        KeyModifiers::NONE,
    )
}

fn press(app: &mut App, keys: &str) {
    for c in keys.chars() {
        app.handle_key(key(c));
    }
}

fn main() {
    let theme = Theme { color: true };
    let rss_start = rss_kib();
    let (status, blueprint) = cluster();
    let rss_data = rss_kib();
    let mut app = App::new("127.0.0.1:7000", NOW, cli::interactive::views::fields);
    app.apply(Update::Link(Link::Live { since_ms: NOW }));
    app.apply(Update::Status(Box::new(status.clone())));
    app.apply(Update::Blueprint(42, Box::new(blueprint)));
    app.apply(Update::Events(events()));
    app.apply(Update::Generations(generations()));
    let rss_app = rss_kib();
    println!(
        "cluster: {WORKERS} workers, {} VMs ({VMS} specs × {REPLICAS}), 1,000 events",
        status.instances.len()
    );
    println!(
        "memory: decoded status and specs {} MiB; the TUI's state with them (second copy + indexes) {} MiB more (RSS)",
        (rss_data - rss_start) / 1024,
        rss_app.saturating_sub(rss_data) / 1024
    );

    let mut s = Stats::new();
    for _ in 0..30 {
        let fresh = Box::new(status.clone());
        s.time(|| app.apply(Update::Status(fresh)));
    }
    s.report("apply a status update (summary, re-index, keep selection)");

    for (w, h) in [(80u16, 24u16), (250, 70)] {
        for view in ["overview", "workers", "vms", "generations", "events"] {
            press(&mut app, &format!(":{view}\n"));
            let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("terminal");
            let mut s = Stats::new();
            for i in 0..200 {
                // Alternate two clocks so relative times change and each frame differs.
                app.now_ms = NOW + (i % 2) * 1_000;
                s.time(|| {
                    terminal
                        .draw(|f| ui::draw(f, &mut app, &theme))
                        .expect("draw")
                });
            }
            s.report(&format!("draw {view} at {w}×{h}"));
        }
    }

    // A real terminal backend writing escape sequences, to a sink.
    for (w, h) in [(80u16, 24u16), (250, 70)] {
        press(&mut app, ":vms\n");
        let written = CountingSink::default();
        let mut terminal = Terminal::with_options(
            CrosstermBackend::new(written.clone()),
            TerminalOptions {
                viewport: Viewport::Fixed(Rect::new(0, 0, w, h)),
            },
        )
        .expect("terminal");
        terminal
            .draw(|f| ui::draw(f, &mut app, &theme))
            .expect("draw");
        let mut latency = Stats::new();
        let mut bytes = Vec::new();
        for i in 0..500 {
            let before = written.0.get();
            let down = i % 100 < 50;
            latency.time(|| {
                app.handle_key(key(if down { 'j' } else { 'k' }));
                terminal
                    .draw(|f| ui::draw(f, &mut app, &theme))
                    .expect("draw");
            });
            bytes.push(written.0.get() - before);
        }
        bytes.sort();
        latency.report(&format!("key press (j/k in vms) to frame written, {w}×{h}"));
        println!(
            "{:<58} p50 {:>9} B",
            format!("bytes written to the terminal per j/k frame, {w}×{h}"),
            bytes[bytes.len() / 2]
        );

        // Typing a filter: each character refilters the 10,000 rows and redraws.
        let mut typing = Stats::new();
        for round in 0..20 {
            press(&mut app, "/");
            for c in format!("svc{:04}-3", round * 37).chars() {
                typing.time(|| {
                    app.handle_key(key(c));
                    terminal
                        .draw(|f| ui::draw(f, &mut app, &theme))
                        .expect("draw");
                });
            }
            press(&mut app, "\x1b");
        }
        typing.report(&format!(
            "filter keystroke over 10,000 VMs to frame, {w}×{h}"
        ));
        let mut label = Stats::new();
        for _ in 0..20 {
            label.time(|| {
                press(&mut app, "/team=t7\n");
                terminal
                    .draw(|f| ui::draw(f, &mut app, &theme))
                    .expect("draw");
            });
            press(&mut app, "\x1b");
        }
        label.report(&format!(
            "label filter team=t7 (whole query) to frame, {w}×{h}"
        ));
    }
    black_box(&app);
}

/// Counts what the terminal backend writes.
#[derive(Default, Clone)]
struct CountingSink(std::rc::Rc<std::cell::Cell<usize>>);

impl io::Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.set(self.0.get() + buf.len());
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
