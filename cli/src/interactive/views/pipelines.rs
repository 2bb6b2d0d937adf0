//! The pipelines list (from the CI service): status, steps, and in the detail pane the live
//! tail of the log.

use std::borrow::Cow;

use ratatui::style::Style;
use ratatui::text::{Line, Span};

use super::{clock, Column, RowFields};
use crate::interactive::app::App;
use crate::interactive::app::{Pipeline, PipelineRun};
use crate::interactive::theme::Theme;
use crate::table::{ago, duration};

pub const COLUMNS: &[Column] = &[
    Column::new("ID", 5, 7, 0),
    Column::new("REPOSITORY", 10, 24, 0),
    Column::new("STATUS", 9, 9, 0),
    Column::new("COMMIT", 8, 12, 0),
    Column::new("REF", 6, 24, 4),
    Column::new("GEN", 4, 6, 2),
    Column::new("ROLLOUT", 10, 10, 3),
    Column::new("TOOK", 7, 8, 1),
    Column::new("STARTED", 8, 8, 5),
    Column::new("MESSAGE", 12, u16::MAX, 6),
];

/// How many log lines the detail pane shows.
pub const LOG_TAIL: usize = 200;

pub fn status_style(status: &str, theme: &Theme) -> Style {
    match status {
        "succeeded" | "converged" => theme.good(),
        "running" | "queued" | "converging" | "pending" => theme.warn(),
        "failed" | "stalled" => theme.bad(),
        _ => theme.dim(),
    }
}

fn list(app: &App) -> &[Pipeline] {
    match app.pipelines() {
        Some(Ok(p)) => p,
        _ => &[],
    }
}

pub fn fields(app: &App, row: usize) -> RowFields<'_> {
    let Some(p) = list(app).get(row) else {
        return RowFields {
            fields: Vec::new(),
            labels: None,
        };
    };
    RowFields {
        fields: vec![
            ("id", Cow::Owned(p.id.to_string())),
            ("repository", Cow::Borrowed(p.repository.as_str())),
            ("repo", Cow::Borrowed(p.repository.as_str())),
            ("status", Cow::Borrowed(p.status.as_str())),
            ("commit", Cow::Borrowed(p.commit.as_str())),
            ("ref", Cow::Borrowed(p.ref_name.as_str())),
            ("rollout", Cow::Borrowed(p.rollout.as_str())),
            ("trigger", Cow::Borrowed(p.trigger.as_str())),
            ("message", Cow::Borrowed(p.message.as_str())),
        ],
        labels: None,
    }
}

/// `refs/heads/main` → `main`: the prefix is the same on every row.
fn short_ref(r: &str) -> &str {
    r.strip_prefix("refs/heads/").unwrap_or(r)
}

/// How long a run took, or has been running.
fn took(p: &Pipeline, now: u64) -> String {
    match (p.started_ms, p.finished_ms) {
        (Some(s), Some(f)) => duration(f.saturating_sub(s)),
        (Some(s), None) => duration(now.saturating_sub(s)),
        _ => "-".into(),
    }
}

pub fn row<'a>(app: &'a App, row: usize, theme: &Theme) -> (Vec<Line<'a>>, Style) {
    let Some(p) = list(app).get(row) else {
        return (vec![Line::default(); COLUMNS.len()], Style::default());
    };
    let cells = vec![
        Line::from(p.id.to_string()),
        Line::from(p.repository.as_str()),
        Line::from(Span::styled(
            p.status.as_str(),
            status_style(p.status.as_str(), theme),
        )),
        Line::from(p.commit.chars().take(12).collect::<String>()),
        Line::from(short_ref(&p.ref_name)),
        Line::from(p.generation.map(|g| g.to_string()).unwrap_or_default()),
        Line::from(Span::styled(
            p.rollout.as_str(),
            status_style(p.rollout.as_str(), theme),
        )),
        Line::from(took(p, app.now_ms)),
        Line::from(ago(p.started_ms.unwrap_or(p.created_ms), app.now_ms)),
        Line::from(p.message.as_str()),
    ];
    (cells, Style::default())
}

fn field<'a>(name: &str, value: impl Into<Span<'a>>, theme: &Theme) -> Line<'a> {
    Line::from(vec![
        Span::styled(format!("{name:<13}"), theme.dim()),
        value.into(),
    ])
}

/// What the list already knows, shown while the detail loads.
pub fn summary_lines<'a>(app: &App, p: &'a Pipeline, theme: &Theme) -> Vec<Line<'a>> {
    let mut out = vec![
        Line::from(vec![
            Span::styled(format!("{:<13}", "Pipeline"), theme.dim()),
            Span::styled(format!("#{} ", p.id), theme.title()),
            Span::raw(format!("{} · ", p.repository)),
            Span::styled(p.status.as_str(), status_style(p.status.as_str(), theme)),
        ]),
        field("Commit", format!("{} ({})", p.commit, p.ref_name), theme),
        field(
            "Trigger",
            format!(
                "{} · {}",
                p.trigger,
                if p.deploy { "deploys" } else { "checks only" }
            ),
            theme,
        ),
        field(
            "Timing",
            format!(
                "queued {} · took {}",
                ago(p.created_ms, app.now_ms),
                took(p, app.now_ms)
            ),
            theme,
        ),
    ];
    if let Some(g) = p.generation {
        out.push(field(
            "Generation",
            format!(
                "{g}{} · rollout {}{}",
                if p.published {
                    " (published by this run)"
                } else {
                    ""
                },
                p.rollout.as_str(),
                if p.rollout_message.is_empty() {
                    String::new()
                } else {
                    format!(": {}", p.rollout_message)
                }
            ),
            theme,
        ));
    }
    if !p.message.is_empty() {
        out.push(field("Message", p.message.as_str(), theme));
    }
    out
}

pub fn detail_lines<'a>(app: &App, run: &'a PipelineRun, theme: &Theme) -> Vec<Line<'a>> {
    let d = &run.detail;
    let mut out = summary_lines(app, &d.summary, theme);
    out.push(Line::default());
    out.push(Line::styled("Steps", theme.title()));
    for s in &d.steps {
        let took = match (s.started_ms, s.finished_ms) {
            (Some(a), Some(b)) => duration(b.saturating_sub(a)),
            (Some(a), None) => duration(app.now_ms.saturating_sub(a)),
            _ => String::new(),
        };
        out.push(Line::from(vec![
            Span::raw(format!("  {:<2} {:<14} ", s.index, s.name)),
            Span::styled(
                format!("{:<10}", s.status.as_str()),
                status_style(s.status.as_str(), theme),
            ),
            Span::raw(format!("{took:>7}  ")),
            Span::styled(
                match s.exit_code {
                    Some(c) if c != 0 => format!("exit {c} · {}", s.summary),
                    _ => s.summary.clone(),
                },
                theme.dim(),
            ),
        ]));
    }
    if !d.phases.is_empty() {
        out.push(Line::default());
        out.push(Line::styled("Rollout", theme.title()));
        for p in &d.phases {
            out.push(Line::raw(format!(
                "  {:<10} {} → {}  {}",
                p.name,
                clock(p.started_ms),
                clock(p.finished_ms),
                duration(p.finished_ms.saturating_sub(p.started_ms))
            )));
        }
    }
    out.push(Line::default());
    let running = !d.summary.status.is_finished();
    out.push(Line::styled(
        format!(
            "Log (last {} lines{})",
            run.log.len().min(LOG_TAIL),
            if running { ", live" } else { "" }
        ),
        theme.title(),
    ));
    let step_name = |i: u32| {
        d.steps
            .iter()
            .find(|s| s.index == i)
            .map_or("", |s| s.name.as_str())
    };
    let skip = run.log.len().saturating_sub(LOG_TAIL);
    for l in &run.log[skip..] {
        out.push(Line::from(vec![
            Span::styled(
                format!("  {} {:<8} ", clock(l.ts_ms), step_name(l.step)),
                theme.dim(),
            ),
            Span::raw(l.line.as_str()),
        ]));
    }
    out
}
