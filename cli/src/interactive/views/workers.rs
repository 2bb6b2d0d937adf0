//! The workers list: state, health, free CPU and memory as bars, VM count, backends, labels.

use std::borrow::Cow;

use ratatui::style::Style;
use ratatui::text::{Line, Span};
use schema::model::{WorkerState, WorkerStatus};

use super::{bar, Column, RowFields};
use crate::interactive::app::App;
use crate::interactive::theme::Theme;
use crate::table::ago;

pub const COLUMNS: &[Column] = &[
    Column::new("NAME", 8, 24, 0),
    Column::new("STATE", 8, 9, 0),
    Column::new("HEALTH", 9, 9, 4),
    Column::new("CPU FREE", 13, 18, 1),
    Column::new("MEM FREE", 16, 20, 2),
    Column::new("VMS", 4, 5, 0),
    Column::new("BACKENDS", 10, 24, 5),
    Column::new("LABELS", 10, u16::MAX, 3),
    Column::new("HEARTBEAT", 9, 9, 6),
];

const BAR: usize = 6;

pub fn fields(app: &App, row: usize) -> RowFields<'_> {
    let Some(w) = app.status().and_then(|s| s.workers.get(row)) else {
        return RowFields {
            fields: Vec::new(),
            labels: None,
        };
    };
    let mut fields = vec![
        ("name", Cow::Borrowed(w.info.id.as_str())),
        ("worker", Cow::Borrowed(w.info.id.as_str())),
        ("state", Cow::Borrowed(w.state.as_str())),
        ("health", Cow::Borrowed(health(w))),
        ("hostname", Cow::Borrowed(w.info.hostname.as_str())),
        ("version", Cow::Borrowed(w.info.version.as_str())),
    ];
    for b in &w.info.backends {
        fields.push(("backend", Cow::Borrowed(b.as_str())));
    }
    RowFields {
        fields,
        labels: Some(&w.info.labels),
    }
}

fn health(w: &WorkerStatus) -> &'static str {
    match (w.state, w.healthy) {
        (WorkerState::Lost, _) => "unknown",
        (_, true) => "healthy",
        (_, false) => "unhealthy",
    }
}

/// `512M`, `1.5G`, `15G`: memory in as few characters as a table cell has.
pub fn compact_mib(mb: i64) -> String {
    let gib = mb as f64 / 1024.0;
    if gib.abs() >= 9.95 {
        format!("{gib:.0}G")
    } else if mb.abs() >= 1024 {
        format!("{gib:.1}G")
    } else {
        format!("{mb}M")
    }
}

/// A bar of the free share and `free/total`, coloured by how little is left.
pub fn free_cell<'a>(free: i64, total: i64, text: String, theme: &Theme) -> Line<'a> {
    let fraction = if total > 0 {
        free.max(0) as f64 / total as f64
    } else {
        0.0
    };
    let style = if total > 0 && free <= 0 {
        theme.bad()
    } else if fraction < 0.25 {
        theme.warn()
    } else {
        theme.good()
    };
    Line::from(vec![
        Span::styled(bar(fraction, BAR), style),
        Span::raw(" "),
        Span::raw(text),
    ])
}

pub fn state_style(state: WorkerState, theme: &Theme) -> Style {
    match state {
        WorkerState::Ready => theme.good(),
        WorkerState::Cordoned | WorkerState::Draining => theme.warn(),
        WorkerState::Lost => theme.bad(),
    }
}

pub fn row<'a>(app: &'a App, row: usize, theme: &Theme) -> (Vec<Line<'a>>, Style) {
    let Some(w) = app.status().and_then(|s| s.workers.get(row)) else {
        return (vec![Line::default(); COLUMNS.len()], Style::default());
    };
    let lost = w.state == WorkerState::Lost;
    let labels = w
        .info
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let backends = w.info.backend_names(",");
    let health_style = match health(w) {
        "healthy" => theme.good(),
        "unhealthy" => theme.bad(),
        _ => theme.dim(),
    };
    let cells = vec![
        Line::from(w.info.id.as_str()),
        Line::from(Span::styled(w.state.as_str(), state_style(w.state, theme))),
        Line::from(Span::styled(health(w), health_style)),
        free_cell(
            w.free_cpu,
            w.info.cpu as i64,
            format!("{}/{}", w.free_cpu, w.info.cpu),
            theme,
        ),
        free_cell(
            w.free_memory_mb,
            w.info.memory_mb as i64,
            format!(
                "{}/{}",
                compact_mib(w.free_memory_mb),
                compact_mib(w.info.memory_mb as i64)
            ),
            theme,
        ),
        Line::from(w.instance_count.to_string()),
        Line::from(backends),
        Line::from(labels),
        Line::from(ago(w.last_heartbeat_ms, app.now_ms)),
    ];
    // A lost worker's numbers are from before it went away.
    let style = if lost { theme.dim() } else { Style::default() };
    (cells, style)
}
