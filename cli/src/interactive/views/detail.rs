//! The detail pane for any row: a worker with its metrics and instances; a VM with its status,
//! health, console log tail and full spec; a generation with its specs; an event; a pipeline
//! with its steps and log tail.

use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};
use ratatui::Frame;
use schema::model::*;

use super::{bar, bytes, clock, mib, vms};
use crate::interactive::app::{App, DetailData, Target};
use crate::interactive::theme::Theme;
use crate::table::{ago, duration, short_path};

const LABEL: usize = 13;

pub fn draw(frame: &mut Frame, area: Rect, app: &mut App, theme: &Theme) {
    let Some(target) = app.detail_target().cloned() else {
        return;
    };
    let lines = lines(app, &target, theme);
    let block = Block::bordered()
        .border_style(theme.border())
        .title(Line::from(vec![
            Span::raw(" "),
            Span::styled(target.title(), theme.title()),
            Span::raw(" "),
        ]));
    let inner = block.inner(area);
    // Long lines (an unplaced reason, a log line) wrap rather than disappear off the edge.
    let paragraph = Paragraph::new(lines).wrap(Wrap { trim: false });
    let count = paragraph.line_count(inner.width).min(u16::MAX as usize) as u16;
    let bottom = count.saturating_sub(inner.height);
    let scroll = app.detail.as_ref().map_or(0, |p| p.scroll.min(bottom));
    let more = count.saturating_sub(scroll + inner.height);
    let block = if more > 0 {
        block.title_bottom(Line::styled(
            format!(" {more} more lines (j/G) "),
            theme.dim(),
        ))
    } else {
        block
    };
    frame.render_widget(paragraph.block(block).scroll((scroll, 0)), area);
    // What only drawing knows, for the keys that scroll: how long the pane is and how tall.
    if let Some(pane) = app.detail.as_mut() {
        pane.lines = count;
        pane.height = inner.height;
        pane.scroll = scroll;
    }
}

fn field<'a>(name: &str, value: impl Into<Span<'a>>, theme: &Theme) -> Line<'a> {
    Line::from(vec![
        Span::styled(format!("{name:<LABEL$}"), theme.dim()),
        value.into(),
    ])
}

fn spans<'a>(name: &str, values: Vec<Span<'a>>, theme: &Theme) -> Line<'a> {
    let mut all = vec![Span::styled(format!("{name:<LABEL$}"), theme.dim())];
    all.extend(values);
    Line::from(all)
}

fn heading<'a>(text: String, theme: &Theme) -> Line<'a> {
    Line::styled(text, theme.title())
}

fn state_of(app: &App, theme: &Theme, data: Option<&DetailData>) -> Option<Line<'static>> {
    match data? {
        DetailData::Loading => Some(Line::styled("loading…", theme.dim())),
        DetailData::Failed(e) => Some(Line::styled(e.clone(), theme.bad())),
        DetailData::Loaded(_) => {
            let _ = app;
            None
        }
    }
}

pub fn lines<'a>(app: &'a App, target: &Target, theme: &Theme) -> Vec<Line<'a>> {
    let data = app.detail.as_ref().map(|p| &p.data);
    let loaded = match data {
        Some(DetailData::Loaded(d)) => Some(d),
        _ => None,
    };
    let mut out = match target {
        Target::Worker(id) => {
            let ws = match loaded {
                Some(crate::interactive::app::Detail::Worker(w)) if w.info.id == *id => Some(&**w),
                _ => app.worker(id),
            };
            match ws {
                Some(w) => worker_lines(app, w, loaded.is_some(), theme),
                None => vec![Line::styled(
                    format!("worker {id} is not registered (any more)"),
                    theme.bad(),
                )],
            }
        }
        Target::Instance { id, .. } => {
            let report = match loaded {
                Some(crate::interactive::app::Detail::Worker(w)) => {
                    w.instances.iter().find(|r| r.instance_id == *id)
                }
                _ => None,
            };
            instance_lines(app, id, report, theme)
        }
        Target::Generation(n) => match loaded {
            Some(crate::interactive::app::Detail::Generation(g)) if g.0.generation == *n => {
                generation_lines(app, &g.0, &g.1, theme)
            }
            _ => match app.generations().iter().find(|g| g.generation == *n) {
                Some(info) => generation_header(app, info, theme),
                None => Vec::new(),
            },
        },
        Target::Event(seq) => match app.event(*seq) {
            Some(e) => event_lines(e, theme),
            None => vec![Line::styled(
                format!("event {seq} is no longer in the TUI's memory"),
                theme.dim(),
            )],
        },
        Target::Pipeline(id) => match loaded {
            Some(crate::interactive::app::Detail::Pipeline(p)) => {
                super::pipelines::detail_lines(app, p, theme)
            }
            _ => app
                .pipelines()
                .and_then(|r| r.as_ref().ok())
                .and_then(|list| list.iter().find(|p| p.id == *id))
                .map(|p| super::pipelines::summary_lines(app, p, theme))
                .unwrap_or_default(),
        },
    };
    // Events need no fetch, nor does an unplaced instance (no worker has a report of it);
    // the rest say where their data is.
    let fetched = match target {
        Target::Event(_) => false,
        Target::Instance { id, .. } => app.instance(id).is_some_and(|i| !i.worker_id.is_empty()),
        _ => true,
    };
    if fetched {
        if let Some(line) = state_of(app, theme, data) {
            out.push(Line::default());
            out.push(line);
        }
    }
    out
}

fn worker_lines<'a>(app: &'a App, w: &'a WorkerStatus, full: bool, theme: &Theme) -> Vec<Line<'a>> {
    let mut out = Vec::new();
    let health = if w.healthy { "healthy" } else { "unhealthy" };
    out.push(spans(
        "Worker",
        vec![
            Span::styled(w.info.id.as_str(), theme.title()),
            Span::raw(" · "),
            Span::styled(
                w.state.as_str(),
                super::workers::state_style(w.state, theme),
            ),
            Span::raw(" · "),
            Span::styled(health, if w.healthy { theme.good() } else { theme.bad() }),
        ],
        theme,
    ));
    out.push(field(
        "Host",
        format!(
            "{} · version {}",
            or_dash(&w.info.hostname),
            or_dash(&w.info.version)
        ),
        theme,
    ));
    out.push(field("Backends", w.info.backend_names(", "), theme));
    out.push(field("Labels", labels(&w.info.labels), theme));
    let cpu = w.free_cpu.max(0) as f64 / (w.info.cpu.max(1)) as f64;
    out.push(spans(
        "CPU free",
        vec![
            Span::styled(bar(cpu, 20), theme.good()),
            Span::raw(format!(" {} of {} vCPU", w.free_cpu, w.info.cpu)),
        ],
        theme,
    ));
    let mem = w.free_memory_mb.max(0) as f64 / (w.info.memory_mb.max(1)) as f64;
    out.push(spans(
        "Memory free",
        vec![
            Span::styled(bar(mem, 20), theme.good()),
            Span::raw(format!(
                " {} of {}",
                mib(w.free_memory_mb),
                mib(w.info.memory_mb as i64)
            )),
        ],
        theme,
    ));
    let m = &w.metrics;
    out.push(field(
        "Measured",
        format!(
            "CPU {:.0}% · memory {} of {} · load {:.2} · disk free {} · {} closures",
            m.cpu_used_percent,
            bytes(m.memory_used_bytes),
            bytes(m.memory_total_bytes),
            m.load_average,
            bytes(m.disk_free_bytes),
            m.closures_present
        ),
        theme,
    ));
    out.push(field(
        "Heartbeat",
        format!(
            "{} · observed generation {}",
            ago(w.last_heartbeat_ms, app.now_ms),
            w.observed_generation
        ),
        theme,
    ));
    out.push(Line::default());
    if !full {
        out.push(heading(format!("Instances ({})", w.instance_count), theme));
        return out;
    }
    out.push(heading(
        format!(
            "Instances ({}) — Enter lists them in the VMs view",
            w.instances.len()
        ),
        theme,
    ));
    for r in &w.instances {
        out.push(Line::from(vec![
            Span::raw(format!("  {:<20} ", r.instance_id)),
            Span::styled(
                format!("{:<10} ", r.phase.as_str()),
                vms::phase_style(r.phase, theme),
            ),
            Span::styled(
                format!("{:<9} ", r.health.as_str()),
                vms::health_style(r.health, theme),
            ),
            Span::raw(format!(
                "{:>8}  {}  ",
                duration(r.uptime_ms),
                short_path(&r.closure)
            )),
            Span::styled(r.message.as_str(), theme.dim()),
        ]));
    }
    out
}

fn instance_lines<'a>(
    app: &'a App,
    id: &str,
    report: Option<&'a InstanceReport>,
    theme: &Theme,
) -> Vec<Line<'a>> {
    let mut out = Vec::new();
    let Some(i) = app.instance(id) else {
        out.push(Line::styled(
            format!("{id} is not in the active generation (any more)"),
            theme.bad(),
        ));
        return out;
    };
    let placed = !i.worker_id.is_empty();
    out.push(spans(
        "VM",
        vec![
            Span::styled(i.instance_id.as_str(), theme.title()),
            Span::raw(format!(" (of {})", i.vm_name)),
            Span::raw(if placed { " on " } else { "" }),
            Span::styled(i.worker_id.as_str(), theme.accent()),
        ],
        theme,
    ));
    if !placed {
        out.push(spans(
            "Unplaced",
            vec![Span::styled(i.unplaced_reason.as_str(), theme.bad())],
            theme,
        ));
    } else {
        out.push(spans(
            "Phase",
            vec![
                Span::styled(i.phase.as_str(), vms::phase_style(i.phase, theme)),
                Span::raw(" · health "),
                Span::styled(i.health.as_str(), vms::health_style(i.health, theme)),
                Span::raw(format!(
                    " · up {} · {} restarts",
                    duration(vms::uptime(app, i)),
                    i.restarts
                )),
            ],
            theme,
        ));
    }
    let sync = vms::sync(i);
    out.push(spans(
        "Sync",
        vec![Span::styled(
            match sync {
                "drift" => "DRIFT: the worker runs another closure than desired",
                "ok" => "ok: runs the desired closure",
                "waiting" => "waiting: nothing observed yet",
                _ => "unplaced",
            },
            if sync == "drift" {
                theme.warn()
            } else if sync == "ok" {
                theme.good()
            } else {
                theme.dim()
            },
        )],
        theme,
    ));
    out.push(field("Desired", i.desired_closure.as_str(), theme));
    out.push(field(
        "Observed",
        Span::styled(
            or_dash(&i.observed_closure),
            if i.drifted {
                theme.warn()
            } else {
                Style::default()
            },
        ),
        theme,
    ));
    if placed && i.phase == Phase::Running {
        out.push(field(
            "Usage",
            format!(
                "CPU {:.1}% of {} vCPU · memory {} of {}",
                i.cpu_percent,
                i.cpu,
                bytes(i.memory_bytes),
                mib(i.memory_mb as i64)
            ),
            theme,
        ));
    } else {
        out.push(field(
            "Size",
            format!("{} vCPU · {}", i.cpu, mib(i.memory_mb as i64)),
            theme,
        ));
    }
    if let Some(r) = app
        .status()
        .and_then(|s| s.rollouts.iter().find(|r| r.vm_name == i.vm_name))
    {
        out.push(field(
            "Rollout",
            format!(
                "{} · {} of {} updated{}",
                r.phase.as_str(),
                r.updated,
                r.total,
                if r.message.is_empty() {
                    String::new()
                } else {
                    format!(" · {}", r.message)
                }
            ),
            theme,
        ));
    }
    if !i.message.is_empty() {
        out.push(field("Message", i.message.as_str(), theme));
    }
    let spec = app.spec(&i.vm_name);
    out.push(Line::default());
    out.push(heading("Health".into(), theme));
    match report {
        Some(r) => out.push(field(
            "Last report",
            format!(
                "{} · {}{}",
                r.health.as_str(),
                r.phase.as_str(),
                if r.message.is_empty() {
                    String::new()
                } else {
                    format!(" · {}", r.message)
                }
            ),
            theme,
        )),
        None if placed => out.push(field(
            "Last report",
            "(loading the worker's report…)",
            theme,
        )),
        None => {}
    }
    match spec.map(|s| s.health_checks.as_slice()) {
        Some([]) => out.push(field("Checks", "none: healthy once running", theme)),
        Some(checks) => {
            for (n, c) in checks.iter().enumerate() {
                out.push(field(if n == 0 { "Checks" } else { "" }, check(c), theme));
            }
        }
        None => {}
    }
    out.push(Line::default());
    match report {
        Some(r) if !r.log_tail.is_empty() => {
            out.push(heading(
                format!("Console log (tail, from {}'s last report)", i.worker_id),
                theme,
            ));
            for l in r.log_tail.lines() {
                out.push(Line::raw(format!("  {l}")));
            }
        }
        Some(_) => {
            out.push(heading("Console log".into(), theme));
            out.push(Line::styled(
                "  (the worker reported no output)",
                theme.dim(),
            ));
        }
        None => {}
    }
    out.push(Line::default());
    match spec {
        Some(spec) => {
            out.push(heading("Spec (active generation)".into(), theme));
            // The full spec, as the blueprint has it: nothing left out.
            let json = serde_json::to_string_pretty(spec).unwrap_or_default();
            out.extend(json.lines().map(|l| Line::raw(format!("  {l}"))));
        }
        None => out.push(Line::styled("(spec loading…)", theme.dim())),
    }
    out
}

fn check(c: &HealthCheck) -> String {
    let what = match &c.kind {
        CheckKind::Tcp { port } => format!("tcp :{port}"),
        CheckKind::Http {
            port,
            path,
            expect_status,
        } => {
            if *expect_status == 0 {
                format!("http :{port}{path} (any 2xx)")
            } else {
                format!("http :{port}{path} (expects {expect_status})")
            }
        }
        CheckKind::Command { argv } => format!("command {}", argv.join(" ")),
    };
    format!(
        "{what} every {} · timeout {} · {} retries · grace {}",
        ms(c.interval_ms as u64),
        ms(c.timeout_ms as u64),
        c.retries,
        ms(c.grace_period_ms as u64)
    )
}

fn ms(v: u64) -> String {
    if v.is_multiple_of(1000) {
        format!("{}s", v / 1000)
    } else {
        format!("{v}ms")
    }
}

fn generation_header<'a>(app: &App, g: &'a GenerationInfo, theme: &Theme) -> Vec<Line<'a>> {
    vec![
        spans(
            "Generation",
            vec![
                Span::styled(g.generation.to_string(), theme.title()),
                Span::raw(" · "),
                Span::raw(g.status.as_str()),
            ],
            theme,
        ),
        field("Commit", g.commit.as_str(), theme),
        field(
            "Published",
            format!(
                "{} UTC ({})",
                clock(g.published_at_ms),
                ago(g.published_at_ms, app.now_ms)
            ),
            theme,
        ),
        field("Intent hash", g.intent_hash.as_str(), theme),
        field("VMs", g.vm_count.to_string(), theme),
    ]
}

fn generation_lines<'a>(
    app: &App,
    g: &'a GenerationInfo,
    bp: &'a Blueprint,
    theme: &Theme,
) -> Vec<Line<'a>> {
    let mut out = generation_header(app, g, theme);
    out.push(field(
        "Cluster",
        format!(
            "{} · {} placement · {} instances",
            or_dash(&bp.cluster.name),
            match bp.cluster.strategy {
                PlacementStrategy::Spread => "spread",
                PlacementStrategy::Pack => "pack",
            },
            bp.instance_count()
        ),
        theme,
    ));
    out.push(Line::default());
    out.push(heading("Specs".into(), theme));
    out.push(Line::styled(
        format!(
            "  {:<20} {:<16} {:>3} {:>4} {:>9}  {:<40} LABELS",
            "NAME", "BACKEND", "×", "CPU", "MEMORY", "CLOSURE"
        ),
        theme.header(),
    ));
    for vm in &bp.vms {
        out.push(Line::raw(format!(
            "  {:<20} {:<16} {:>3} {:>4} {:>9}  {:<40} {}",
            vm.name,
            vm.backend.as_str(),
            vm.replicas,
            vm.cpu,
            mib(vm.memory_mb as i64),
            short_path(&vm.closure),
            labels(&vm.labels)
        )));
    }
    out
}

fn event_lines<'a>(e: &'a Event, theme: &Theme) -> Vec<Line<'a>> {
    vec![
        field("Sequence", e.seq.to_string(), theme),
        field("Time", format!("{} UTC", clock(e.timestamp_ms)), theme),
        field(
            "Kind",
            Span::styled(e.kind.as_str(), super::events::kind_style(e.kind, theme)),
            theme,
        ),
        field("Generation", e.generation.to_string(), theme),
        field("Worker", or_dash(&e.worker_id), theme),
        field("Instance", or_dash(&e.instance_id), theme),
        field("Message", e.message.as_str(), theme),
    ]
}

fn labels(l: &std::collections::BTreeMap<String, String>) -> String {
    if l.is_empty() {
        "-".into()
    } else {
        l.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_string()
    }
}
