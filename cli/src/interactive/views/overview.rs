//! The cluster at a glance: active generation and commit, convergence, workers and VMs
//! counted by state and phase, free capacity, and the latest events.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Row, Table};
use ratatui::Frame;
use schema::model::WorkerState;

use super::{bar, events, fit, mib, SPACING};
use crate::interactive::app::App;
use crate::interactive::theme::Theme;
use crate::table::ago;

const LABEL: usize = 12;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let lines = summary_lines(app, theme, area.width.saturating_sub(2) as usize);
    let height = (lines.len() as u16 + 2).min(area.height);
    let [top, rest] =
        Layout::vertical([Constraint::Length(height), Constraint::Fill(1)]).areas(area);
    let block = Block::bordered()
        .border_style(theme.border())
        .title(Line::from(vec![
            Span::raw(" "),
            Span::styled("overview", theme.title()),
            Span::raw(" "),
        ]));
    frame.render_widget(Paragraph::new(lines).block(block), top);
    if rest.height >= 3 {
        draw_events(frame, rest, app, theme);
    }
}

fn label<'a>(text: &'a str, theme: &Theme) -> Span<'a> {
    Span::styled(format!("{text:<LABEL$}"), theme.dim())
}

fn counts<'a>(
    items: impl IntoIterator<Item = (String, usize, ratatui::style::Style)>,
) -> Vec<Span<'a>> {
    let mut spans = Vec::new();
    for (name, n, style) in items {
        if !spans.is_empty() {
            spans.push(Span::raw(" · "));
        }
        spans.push(Span::styled(
            format!("{name} {n}"),
            if n > 0 {
                style
            } else {
                ratatui::style::Style::default()
            },
        ));
    }
    spans
}

fn summary_lines<'a>(app: &'a App, theme: &Theme, width: usize) -> Vec<Line<'a>> {
    let Some(s) = app.status() else {
        return vec![Line::styled("waiting for the control plane…", theme.dim())];
    };
    let bar_width = width.saturating_sub(LABEL + 26).clamp(8, 40);
    let sum = app.summary();
    let mut lines = Vec::new();
    let name = if s.settings.name.is_empty() {
        "(unnamed)"
    } else {
        s.settings.name.as_str()
    };
    lines.push(Line::from(vec![
        label("Cluster", theme),
        Span::styled(name, theme.title()),
        Span::raw(format!(
            " · {} placement · revision {}",
            match s.settings.strategy {
                schema::model::PlacementStrategy::Spread => "spread",
                schema::model::PlacementStrategy::Pack => "pack",
            },
            s.revision
        )),
    ]));
    if s.active_generation == 0 {
        lines.push(Line::from(vec![
            label("Generation", theme),
            Span::styled("none published yet", theme.warn()),
        ]));
    } else {
        lines.push(Line::from(vec![
            label("Generation", theme),
            Span::styled(s.active_generation.to_string(), theme.title()),
            Span::raw(" · commit "),
            Span::styled(
                s.commit.chars().take(12).collect::<String>(),
                theme.accent(),
            ),
            Span::raw(format!(
                " · published {}",
                ago(s.published_at_ms, app.now_ms)
            )),
            Span::raw(
                if s.last_good_generation != 0 && s.last_good_generation != s.active_generation {
                    format!(" · last good {}", s.last_good_generation)
                } else {
                    String::new()
                },
            ),
        ]));
        let pct = s.convergence_percent.clamp(0.0, 100.0);
        let style = if pct >= 100.0 {
            theme.good()
        } else {
            theme.warn()
        };
        lines.push(Line::from(vec![
            label("Converged", theme),
            Span::styled(bar(pct as f64 / 100.0, bar_width), style),
            Span::styled(format!(" {pct:.0}%"), style),
        ]));
    }
    let mut worker_line = vec![
        label("Workers", theme),
        Span::styled(format!("{:<4}", s.workers.len()), theme.title()),
    ];
    worker_line.extend(counts(sum.workers_by_state.iter().map(|(st, n)| {
        (
            st.as_str().to_string(),
            *n,
            super::workers::state_style(*st, theme),
        )
    })));
    lines.push(Line::from(worker_line));
    let ready = sum
        .workers_by_state
        .iter()
        .any(|(st, n)| *st != WorkerState::Lost && *n > 0);
    if ready {
        let cpu = sum.cpu_free.max(0) as f64 / sum.cpu_total.max(1) as f64;
        lines.push(Line::from(vec![
            label("CPU free", theme),
            Span::styled(bar(cpu, bar_width), free_style(cpu, theme)),
            Span::raw(format!(" {} of {}", sum.cpu_free, sum.cpu_total)),
        ]));
        let mem = sum.memory_free_mb.max(0) as f64 / sum.memory_total_mb.max(1) as f64;
        lines.push(Line::from(vec![
            label("Memory free", theme),
            Span::styled(bar(mem, bar_width), free_style(mem, theme)),
            Span::raw(format!(
                " {} of {}",
                mib(sum.memory_free_mb),
                mib(sum.memory_total_mb as i64)
            )),
        ]));
    }
    let mut vm_line = vec![
        label("VMs", theme),
        Span::styled(format!("{:<4}", s.instances.len()), theme.title()),
    ];
    let mut phases: Vec<(String, usize, ratatui::style::Style)> = sum
        .phases
        .iter()
        .map(|(p, n)| {
            (
                p.as_str().to_string(),
                *n,
                super::vms::phase_style(*p, theme),
            )
        })
        .collect();
    if sum.unplaced > 0 {
        phases.push(("unplaced".into(), sum.unplaced, theme.bad()));
    }
    vm_line.extend(counts(phases));
    lines.push(Line::from(vm_line));
    let mut problems = vec![label("", theme)];
    problems.extend(counts([
        ("drifted".to_string(), sum.drifted, theme.warn()),
        ("unhealthy".to_string(), sum.unhealthy, theme.bad()),
    ]));
    lines.push(Line::from(problems));
    let rolling: Vec<&schema::model::RolloutStatus> = s
        .rollouts
        .iter()
        .filter(|r| r.phase != schema::model::RolloutPhase::Complete)
        .collect();
    if !rolling.is_empty() {
        let mut line = vec![label("Rollouts", theme)];
        for (n, r) in rolling.iter().enumerate() {
            if n > 0 {
                line.push(Span::raw(" · "));
            }
            let style = match r.phase {
                schema::model::RolloutPhase::Failed => theme.bad(),
                _ => theme.warn(),
            };
            line.push(Span::raw(format!("{} ", r.vm_name)));
            line.push(Span::styled(r.phase.as_str(), style));
            line.push(Span::raw(format!(" {}/{}", r.updated, r.total)));
        }
        lines.push(Line::from(line));
    }
    lines
}

fn free_style(fraction: f64, theme: &Theme) -> ratatui::style::Style {
    if fraction <= 0.0 {
        theme.bad()
    } else if fraction < 0.25 {
        theme.warn()
    } else {
        theme.good()
    }
}

fn draw_events(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let block = Block::bordered()
        .border_style(theme.border())
        .title(Line::from(vec![
            Span::raw(" "),
            Span::styled("recent events", theme.title()),
            Span::raw(" "),
        ]));
    let inner = block.inner(area);
    let visible: Vec<Vec<Line>> = app
        .events()
        .iter()
        .rev()
        .take(inner.height as usize)
        .map(|e| events::cells(e, theme))
        .collect();
    let mut natural: Vec<u16> = events::COLUMNS
        .iter()
        .map(|c| c.title.len() as u16)
        .collect();
    for cells in &visible {
        for (n, cell) in natural.iter_mut().zip(cells) {
            *n = (*n).max(cell.width().min(u16::MAX as usize) as u16);
        }
    }
    let layout = fit(events::COLUMNS, inner.width, &natural);
    let rows: Vec<Row> = visible
        .into_iter()
        .map(|mut cells| {
            Row::new(
                layout
                    .iter()
                    .map(|(i, _)| ratatui::widgets::Cell::from(std::mem::take(&mut cells[*i])))
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    if rows.is_empty() {
        frame.render_widget(
            Paragraph::new(Line::styled("no events yet", theme.dim())).block(block),
            area,
        );
        return;
    }
    let widths: Vec<Constraint> = layout.iter().map(|(_, w)| Constraint::Length(*w)).collect();
    frame.render_widget(
        Table::new(rows, widths)
            .column_spacing(SPACING)
            .block(block),
        area,
    );
}
