//! The events list: what the control plane saw happen, newest first.

use std::borrow::Cow;

use ratatui::style::Style;
use ratatui::text::{Line, Span};
use schema::model::{Event, EventKind};

use super::{clock, Column, RowFields};
use crate::interactive::app::App;
use crate::interactive::theme::Theme;

/// The message says most; on a narrow screen the columns it repeats go first.
pub const COLUMNS: &[Column] = &[
    Column::new("TIME", 8, 8, 0),
    Column::new("KIND", 20, 20, 2),
    Column::new("GEN", 4, 6, 5),
    Column::new("WORKER", 8, 16, 3),
    Column::new("INSTANCE", 10, 24, 4),
    Column::new("MESSAGE", 40, u16::MAX, 0),
];

pub fn kind_style(kind: EventKind, theme: &Theme) -> Style {
    match kind {
        EventKind::WorkerLost | EventKind::Unplaced => theme.bad(),
        EventKind::GenerationPublished
        | EventKind::WorkerRegistered
        | EventKind::WorkerReturned => theme.good(),
        EventKind::PlacementChanged | EventKind::Rollout => theme.accent(),
        EventKind::Rollback | EventKind::WorkerState => theme.warn(),
        EventKind::InstancePhase | EventKind::InstanceHealth | EventKind::Other => Style::default(),
    }
}

pub fn fields(app: &App, row: usize) -> RowFields<'_> {
    let Some(e) = app.events().get(row) else {
        return RowFields {
            fields: Vec::new(),
            labels: None,
        };
    };
    RowFields {
        fields: vec![
            ("kind", Cow::Borrowed(e.kind.as_str())),
            ("gen", Cow::Owned(e.generation.to_string())),
            ("worker", Cow::Borrowed(e.worker_id.as_str())),
            ("instance", Cow::Borrowed(e.instance_id.as_str())),
            ("message", Cow::Borrowed(e.message.as_str())),
        ],
        labels: None,
    }
}

pub fn cells<'a>(e: &'a Event, theme: &Theme) -> Vec<Line<'a>> {
    vec![
        Line::from(clock(e.timestamp_ms)),
        Line::from(Span::styled(e.kind.as_str(), kind_style(e.kind, theme))),
        Line::from(if e.generation > 0 {
            e.generation.to_string()
        } else {
            String::new()
        }),
        Line::from(e.worker_id.as_str()),
        Line::from(e.instance_id.as_str()),
        Line::from(e.message.as_str()),
    ]
}

pub fn row<'a>(app: &'a App, row: usize, theme: &Theme) -> (Vec<Line<'a>>, Style) {
    match app.events().get(row) {
        Some(e) => (cells(e, theme), Style::default()),
        None => (vec![Line::default(); COLUMNS.len()], Style::default()),
    }
}
