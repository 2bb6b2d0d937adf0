//! The generations list: history, newest first, with commit, time and status.

use std::borrow::Cow;

use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};

use super::{clock, Column, RowFields};
use crate::interactive::app::App;
use crate::interactive::theme::Theme;
use crate::table::ago;

pub const COLUMNS: &[Column] = &[
    Column::new("GEN", 6, 8, 0),
    Column::new("STATUS", 11, 14, 0),
    Column::new("COMMIT", 12, 40, 0),
    Column::new("VMS", 4, 6, 0),
    Column::new("PUBLISHED", 18, 20, 1),
    Column::new("INTENT", 12, 12, 3),
    Column::new("REASON", 12, u16::MAX, 2),
];

pub fn fields(app: &App, row: usize) -> RowFields<'_> {
    let Some(g) = app.generations().get(row) else {
        return RowFields {
            fields: Vec::new(),
            labels: None,
        };
    };
    RowFields {
        fields: vec![
            ("gen", Cow::Owned(g.generation.to_string())),
            ("generation", Cow::Owned(g.generation.to_string())),
            ("status", Cow::Borrowed(g.status.as_str())),
            ("commit", Cow::Borrowed(g.commit.as_str())),
            ("intent", Cow::Borrowed(g.intent_hash.as_str())),
            ("reason", Cow::Borrowed(g.reason.as_str())),
        ],
        labels: None,
    }
}

pub fn row<'a>(app: &'a App, row: usize, theme: &Theme) -> (Vec<Line<'a>>, Style) {
    let Some(g) = app.generations().get(row) else {
        return (vec![Line::default(); COLUMNS.len()], Style::default());
    };
    let active = app
        .status()
        .is_some_and(|s| s.active_generation == g.generation);
    let status_style = match g.status.as_str() {
        "active" => theme.good(),
        "superseded" => theme.dim(),
        "failed" => theme.bad(),
        _ => theme.warn(),
    };
    let cells = vec![
        // `*` marks the active one without relying on colour.
        Line::from(if active {
            format!("{} *", g.generation)
        } else {
            g.generation.to_string()
        }),
        Line::from(Span::styled(g.status.as_str(), status_style)),
        Line::from(g.commit.as_str()),
        Line::from(g.vm_count.to_string()),
        Line::from(format!(
            "{} {:>8}",
            clock(g.published_at_ms),
            ago(g.published_at_ms, app.now_ms)
        )),
        Line::from(g.intent_hash.chars().take(12).collect::<String>()),
        Line::from(Span::styled(g.reason.as_str(), theme.dim())),
    ];
    let style = if active {
        Style::default().add_modifier(Modifier::BOLD)
    } else {
        Style::default()
    };
    (cells, style)
}
