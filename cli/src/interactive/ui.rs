//! Drawing: one frame from the [`App`] state. Nothing here decides anything; it reads the
//! state and lays it out. The only things it writes back are what only drawing knows: how
//! many rows a page holds and where each list's window starts.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};
use ratatui::Frame;

use super::app::{App, Link, Mode, Screen, View};
pub use super::theme::Theme;
use super::views;

/// Draws one frame.
pub fn draw(frame: &mut Frame, app: &mut App, theme: &Theme) {
    let area = frame.area();
    let [header, body, prompt, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_header(frame, header, app, theme);
    match app.screen().clone() {
        Screen::List(View::Overview) => views::overview::draw(frame, body, app, theme),
        Screen::List(View::Workers) => views::draw_table(
            frame,
            body,
            app,
            theme,
            View::Workers,
            views::workers::COLUMNS,
            |app, r| views::workers::row(app, r, theme),
        ),
        Screen::List(View::Vms) => views::draw_table(
            frame,
            body,
            app,
            theme,
            View::Vms,
            views::vms::COLUMNS,
            |app, r| views::vms::row(app, r, theme),
        ),
        Screen::List(View::Generations) => views::draw_table(
            frame,
            body,
            app,
            theme,
            View::Generations,
            views::generations::COLUMNS,
            |app, r| views::generations::row(app, r, theme),
        ),
        Screen::List(View::Events) => views::draw_table(
            frame,
            body,
            app,
            theme,
            View::Events,
            views::events::COLUMNS,
            |app, r| views::events::row(app, r, theme),
        ),
        Screen::List(View::Pipelines) => views::draw_table(
            frame,
            body,
            app,
            theme,
            View::Pipelines,
            views::pipelines::COLUMNS,
            |app, r| views::pipelines::row(app, r, theme),
        ),
        Screen::Detail(_) => views::detail::draw(frame, body, app, theme),
    }
    draw_prompt(frame, prompt, app, theme);
    draw_footer(frame, footer, app, theme);
    match app.mode().clone() {
        Mode::Help => draw_help(frame, body, theme),
        Mode::Confirm(action) => {
            let (question, consequence) = action.question();
            draw_confirm(frame, body, &question, &consequence, theme)
        }
        _ => {}
    }
}

/// Left: the cluster and its generation. Right: the connection, always visible.
fn draw_header(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let mut left = vec![Span::styled(" procurator ", theme.key())];
    if let Some(s) = app.status() {
        if !s.settings.name.is_empty() {
            left.push(Span::styled(s.settings.name.clone(), theme.title()));
            left.push(Span::raw(" "));
        }
        if s.active_generation > 0 {
            left.push(Span::raw(format!(
                "gen {} · {} · {:.0}% converged",
                s.active_generation,
                s.commit.chars().take(8).collect::<String>(),
                s.convergence_percent
            )));
        }
    }
    let (right, style) = match &app.link {
        Link::Live { .. } => (format!("● live {} ", app.master), theme.good()),
        Link::Connecting { attempt: 0 } => {
            (format!("◌ connecting to {}… ", app.master), theme.warn())
        }
        Link::Connecting { attempt } => (
            format!("◌ reconnecting to {} (attempt {attempt})… ", app.master),
            theme.warn(),
        ),
        Link::Lost { retry_at_ms, .. } => {
            let secs = retry_at_ms.saturating_sub(app.now_ms).div_ceil(1000);
            (
                format!(" ✖ DISCONNECTED from {} · retry in {secs}s ", app.master),
                theme.banner_bad(),
            )
        }
    };
    let right_width = right.chars().count() as u16;
    let [l, r] =
        Layout::horizontal([Constraint::Fill(1), Constraint::Length(right_width)]).areas(area);
    frame.render_widget(Paragraph::new(Line::from(left)), l);
    frame.render_widget(Paragraph::new(Line::styled(right, style)), r);
}

/// The line above the footer: what is being typed, else the last message, else why the
/// connection is down.
fn draw_prompt(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let line = match app.mode() {
        Mode::Command(buf) => {
            let mut spans = vec![
                Span::styled(":", theme.key()),
                Span::raw(buf.clone()),
                Span::styled("█", theme.accent()),
                Span::raw("   "),
            ];
            let prefix = buf.trim().to_ascii_lowercase();
            for v in View::ALL {
                if v == View::Pipelines && app.ci.is_none() {
                    continue;
                }
                let style = if !prefix.is_empty() && v.name().starts_with(&prefix) {
                    theme.accent()
                } else {
                    theme.dim()
                };
                spans.push(Span::styled(format!("{} ", v.name()), style));
            }
            Line::from(spans)
        }
        Mode::Filter(buf) => Line::from(vec![
            Span::styled("/", theme.key()),
            Span::raw(buf.clone()),
            Span::styled("█", theme.accent()),
            Span::styled(
                "   words match any column; name=value a column or label; name!=value excludes",
                theme.dim(),
            ),
        ]),
        _ => match (&app.flash, &app.link) {
            (Some(f), _) if f.until_ms > app.now_ms => Line::styled(
                format!(" {}", f.text),
                if f.error { theme.bad() } else { theme.good() },
            ),
            (_, Link::Lost { error, attempt, .. }) => {
                let age = if app.status_at_ms > 0 {
                    format!(
                        "; data shown is {} old",
                        crate::table::duration(app.now_ms.saturating_sub(app.status_at_ms))
                    )
                } else {
                    String::new()
                };
                Line::styled(
                    format!(" connection lost: {error}{age} (attempt {attempt})"),
                    theme.bad(),
                )
            }
            _ => match app.in_flight().last() {
                Some(a) => Line::styled(format!(" {}", a.progress()), theme.warn()),
                None => Line::default(),
            },
        },
    };
    frame.render_widget(Paragraph::new(line), area);
}

/// The keys that work here, always on screen. When they do not all fit, the last ones give
/// way, but never `?` (which lists them all) and `q`.
fn draw_footer(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let hints = app.key_hints();
    let width = |h: &(&str, &str)| h.0.chars().count() + h.1.chars().count() + 3;
    let (pinned, mut rest): (Vec<_>, Vec<_>) =
        hints.into_iter().partition(|h| matches!(h.0, "?" | "q"));
    let budget = (area.width as usize).saturating_sub(pinned.iter().map(width).sum());
    while rest.iter().map(width).sum::<usize>() > budget && !rest.is_empty() {
        rest.pop();
    }
    let mut spans = Vec::new();
    for (key, what) in rest.into_iter().chain(pinned) {
        spans.push(Span::styled(format!("<{key}>"), theme.key()));
        spans.push(Span::styled(format!("{what} "), theme.dim()));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// A rectangle of at most `width`×`height` centred in `area`.
fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

fn draw_confirm(frame: &mut Frame, area: Rect, question: &str, consequence: &str, theme: &Theme) {
    let width = 60.min(area.width);
    let inner_width = width.saturating_sub(4).max(1) as usize;
    // Wrapped lines of the consequence, so the box is as tall as needed.
    let wrapped = consequence.len().div_ceil(inner_width) as u16;
    let rect = centered(area, width, 6 + wrapped);
    let block = Block::bordered()
        .border_style(theme.warn())
        .title(Line::styled(" confirm ", theme.title()));
    let text = vec![
        Line::styled(question.to_string(), theme.title()),
        Line::default(),
        Line::raw(consequence.to_string()),
        Line::default(),
        Line::from(vec![
            Span::styled("<y>", theme.key()),
            Span::raw(" yes, do it    "),
            Span::styled("<n>", theme.key()),
            Span::raw("/"),
            Span::styled("<esc>", theme.key()),
            Span::raw(" no"),
        ]),
    ];
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(text)
            .wrap(Wrap { trim: true })
            .block(block.padding(ratatui::widgets::Padding::horizontal(1))),
        rect,
    );
}

/// Every key, with what it does.
pub fn help_lines() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            ":name",
            "view: overview workers vms generations events pipelines",
        ),
        (
            "/text",
            "filter rows; k=v matches a column or label, k!=v excludes",
        ),
        ("j k ↓ ↑", "move (in a detail pane: scroll)"),
        ("g G", "first, last"),
        ("PgDn PgUp", "page (also ctrl-f, ctrl-b)"),
        (
            "enter",
            "details of the row; on a worker's details, its VMs",
        ),
        ("esc", "clear the filter, then back"),
        ("tab", "next view"),
        ("c", "cordon / uncordon the worker (asks first)"),
        ("d", "drain the worker (asks first)"),
        ("p", "promote the VM's canary rollout (asks first)"),
        (
            "r",
            "restart the VM / roll back to the generation (asks first)",
        ),
        ("?", "this help"),
        ("q ctrl-c", "quit"),
    ]
}

fn draw_help(frame: &mut Frame, area: Rect, theme: &Theme) {
    let keys = help_lines();
    let rect = centered(area, 76, keys.len() as u16 + 4);
    let lines: Vec<Line> = keys
        .into_iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!("{k:>10}  "), theme.key()),
                Span::raw(what),
            ])
        })
        .collect();
    let block = Block::bordered()
        .border_style(theme.accent())
        .title(Line::styled(" keys ", theme.title()))
        .title_bottom(Line::styled(" esc closes ", theme.dim()))
        .padding(ratatui::widgets::Padding::vertical(1));
    frame.render_widget(Clear, rect);
    frame.render_widget(Paragraph::new(lines).block(block), rect);
}
