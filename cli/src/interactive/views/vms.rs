//! The VMs list: every instance with its worker, phase, health, whether the observed closure
//! matches the desired one (drift is highlighted), uptime, CPU and memory.

use std::borrow::Cow;

use ratatui::style::Style;
use ratatui::text::{Line, Span};
use schema::model::{Health, InstanceStatus, Phase};

use super::workers::compact_mib;
use super::{Column, RowFields};
use crate::interactive::app::App;
use crate::interactive::theme::Theme;
use crate::table::{duration, short_path};

pub const COLUMNS: &[Column] = &[
    Column::new("NAME", 10, 28, 0),
    Column::new("WORKER", 8, 20, 0),
    Column::new("PHASE", 10, 10, 0),
    Column::new("HEALTH", 9, 9, 3),
    Column::new("SYNC", 8, 8, 0),
    Column::new("DESIRED", 15, 44, 5),
    Column::new("OBSERVED", 15, 44, 6),
    Column::new("UPTIME", 7, 8, 2),
    Column::new("CPU", 5, 6, 4),
    Column::new("MEM", 10, 11, 4),
    Column::new("RESTARTS", 8, 8, 7),
    Column::new("NOTE", 10, u16::MAX, 8),
];

/// Whether an instance runs what it should: `ok`, `drift`, `waiting` (nothing observed yet)
/// or `unplaced`.
pub fn sync(i: &InstanceStatus) -> &'static str {
    if i.worker_id.is_empty() {
        "unplaced"
    } else if i.drifted {
        "drift"
    } else if i.observed_closure.is_empty() {
        "waiting"
    } else {
        "ok"
    }
}

pub fn phase(i: &InstanceStatus) -> &'static str {
    if i.worker_id.is_empty() {
        "unplaced"
    } else {
        i.phase.as_str()
    }
}

pub fn phase_style(p: Phase, theme: &Theme) -> Style {
    match p {
        Phase::Running => theme.good(),
        Phase::Pending | Phase::Fetching | Phase::Starting | Phase::Stopping => theme.warn(),
        Phase::Failed | Phase::CrashLoop => theme.bad(),
        Phase::Stopped | Phase::Unknown => theme.dim(),
    }
}

pub fn health_style(h: Health, theme: &Theme) -> Style {
    match h {
        Health::Healthy => theme.good(),
        Health::Starting => theme.warn(),
        Health::Unhealthy => theme.bad(),
        Health::Unknown => theme.dim(),
    }
}

/// Uptime as of now: the status says how long it had been up when it was fetched.
pub fn uptime(app: &App, i: &InstanceStatus) -> u64 {
    if i.phase == Phase::Running && i.uptime_ms > 0 {
        i.uptime_ms + app.now_ms.saturating_sub(app.status_at_ms)
    } else {
        i.uptime_ms
    }
}

pub fn fields(app: &App, row: usize) -> RowFields<'_> {
    let Some(i) = app.status().and_then(|s| s.instances.get(row)) else {
        return RowFields {
            fields: Vec::new(),
            labels: None,
        };
    };
    let mut fields = vec![
        ("name", Cow::Borrowed(i.instance_id.as_str())),
        ("vm", Cow::Borrowed(i.vm_name.as_str())),
        ("worker", Cow::Borrowed(i.worker_id.as_str())),
        ("phase", Cow::Borrowed(phase(i))),
        ("health", Cow::Borrowed(i.health.as_str())),
        ("sync", Cow::Borrowed(sync(i))),
        ("desired", Cow::Borrowed(i.desired_closure.as_str())),
        ("observed", Cow::Borrowed(i.observed_closure.as_str())),
        ("note", Cow::Borrowed(note(i))),
    ];
    if let Some(b) = i.backend {
        fields.push(("backend", Cow::Borrowed(b.as_str())));
    }
    RowFields {
        fields,
        labels: app.spec(&i.vm_name).map(|s| &s.labels),
    }
}

fn note(i: &InstanceStatus) -> &str {
    if i.worker_id.is_empty() {
        &i.unplaced_reason
    } else {
        &i.message
    }
}

pub fn row<'a>(app: &'a App, row: usize, theme: &Theme) -> (Vec<Line<'a>>, Style) {
    let Some(i) = app.status().and_then(|s| s.instances.get(row)) else {
        return (vec![Line::default(); COLUMNS.len()], Style::default());
    };
    let placed = !i.worker_id.is_empty();
    let sync_style = match sync(i) {
        "ok" => theme.good(),
        "drift" => theme.warn().add_modifier(ratatui::style::Modifier::BOLD),
        "unplaced" => theme.bad(),
        _ => theme.dim(),
    };
    let observed = if i.observed_closure.is_empty() {
        "-".to_string()
    } else if i.drifted {
        // Marked in the text as well, for terminals without colour.
        format!("≠ {}", short_path(&i.observed_closure))
    } else {
        short_path(&i.observed_closure)
    };
    let running = placed && i.phase == Phase::Running;
    let cells = vec![
        Line::from(i.instance_id.as_str()),
        Line::from(if placed { i.worker_id.as_str() } else { "-" }),
        Line::from(Span::styled(
            phase(i),
            if placed {
                phase_style(i.phase, theme)
            } else {
                theme.bad()
            },
        )),
        Line::from(if placed {
            Span::styled(i.health.as_str(), health_style(i.health, theme))
        } else {
            Span::raw("-")
        }),
        Line::from(Span::styled(sync(i), sync_style)),
        Line::from(short_path(&i.desired_closure)),
        Line::from(observed),
        Line::from(if running {
            duration(uptime(app, i))
        } else {
            "-".into()
        }),
        Line::from(if running {
            format!("{:.0}%", i.cpu_percent)
        } else {
            "-".into()
        }),
        Line::from(if running {
            format!(
                "{}/{}",
                compact_mib((i.memory_bytes >> 20) as i64),
                compact_mib(i.memory_mb as i64)
            )
        } else {
            format!("-/{}", compact_mib(i.memory_mb as i64))
        }),
        Line::from(i.restarts.to_string()),
        Line::from(note(i)),
    ];
    let style = if i.drifted {
        theme.warn()
    } else {
        Style::default()
    };
    (cells, style)
}
