//! One module per view: the columns it shows, how a row of its data reads as cells, and the
//! fields a filter can match. The shared table drawing lives here; it builds rows only for
//! the window on screen, so a 10,000-row list costs what a 20-row one does.

pub mod detail;
pub mod events;
pub mod generations;
pub mod overview;
pub mod pipelines;
pub mod vms;
pub mod workers;

use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, TableState};
use ratatui::Frame;

use super::app::{App, View};
use super::theme::Theme;

pub use super::app::RowFields;

/// The filterable fields of one row of a view.
pub fn fields<'a>(app: &'a App, view: View, row: usize) -> RowFields<'a> {
    match view {
        View::Overview => RowFields {
            fields: Vec::new(),
            labels: None,
        },
        View::Workers => workers::fields(app, row),
        View::Vms => vms::fields(app, row),
        View::Generations => generations::fields(app, row),
        View::Events => events::fields(app, row),
        View::Pipelines => pipelines::fields(app, row),
    }
}

/// A table column: its title, the narrowest and widest it may be, and when it is dropped on a
/// narrow terminal (0: never; higher numbers go first).
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub title: &'static str,
    pub min: u16,
    pub max: u16,
    pub drop: u8,
}

impl Column {
    pub const fn new(title: &'static str, min: u16, max: u16, drop: u8) -> Column {
        Column {
            title,
            min,
            max,
            drop,
        }
    }
}

pub const SPACING: u16 = 1;

/// Which columns fit in `width`, and how wide each is. Columns are dropped in `drop` order
/// until the minimum widths fit. The space left first widens columns towards their content
/// (`natural`, capped at `max`), then goes to the last column that may grow without bound.
pub fn fit(columns: &[Column], width: u16, natural: &[u16]) -> Vec<(usize, u16)> {
    let mut keep: Vec<usize> = (0..columns.len()).collect();
    let needed = |keep: &[usize]| -> u32 {
        keep.iter().map(|&i| columns[i].min as u32).sum::<u32>()
            + SPACING as u32 * keep.len().saturating_sub(1) as u32
    };
    while needed(&keep) > width as u32 {
        // The most droppable column; among equals, the rightmost.
        let Some(pos) = keep
            .iter()
            .enumerate()
            .filter(|(_, &i)| columns[i].drop > 0)
            .max_by_key(|(p, &i)| (columns[i].drop, *p))
            .map(|(p, _)| p)
        else {
            break;
        };
        keep.remove(pos);
    }
    let mut widths: Vec<u16> = keep.iter().map(|&i| columns[i].min).collect();
    let mut extra = (width as u32).saturating_sub(needed(&keep));
    let want = |i: usize| -> u16 {
        let content = natural.get(i).copied().unwrap_or(columns[i].max);
        content.clamp(columns[i].min, columns[i].max)
    };
    // Left to right: the columns that identify a row come first.
    for (p, &i) in keep.iter().enumerate() {
        let add = (want(i) - widths[p]).min(extra.min(u16::MAX as u32) as u16);
        widths[p] += add;
        extra -= add as u32;
    }
    if let Some(p) = keep.iter().rposition(|&i| columns[i].max == u16::MAX) {
        widths[p] = widths[p].saturating_add(extra.min(u16::MAX as u32) as u16);
    }
    keep.into_iter().zip(widths).collect()
}

/// Draws the list of `view` in `area`: a titled block, a header, and the rows in the window
/// around the selection. `row` gives one row's cells (all columns) and style.
pub fn draw_table<'a>(
    frame: &mut Frame,
    area: Rect,
    app: &'a mut App,
    theme: &Theme,
    view: View,
    columns: &[Column],
    row: impl Fn(&'a App, usize) -> (Vec<Line<'a>>, Style),
) {
    let title = list_title(app, view, theme);
    let block = Block::bordered().border_style(theme.border()).title(title);
    let inner = block.inner(area);
    // One line for the header.
    let height = inner.height.saturating_sub(1) as usize;
    app.page = height.max(1);
    let list = app.list_mut(view);
    list.scroll_to_fit(height);
    let (offset, selected) = (list.offset, list.selected);
    let app: &'a App = app;
    let list = app.list(view);
    let end = (offset + height).min(list.rows.len());
    // Only the rows on screen are built, whatever the list's length.
    let visible: Vec<(Vec<Line>, Style)> = list.rows[offset..end]
        .iter()
        .map(|&r| row(app, r))
        .collect();
    let mut natural: Vec<u16> = columns.iter().map(|c| c.title.len() as u16).collect();
    for (cells, _) in &visible {
        for (n, cell) in natural.iter_mut().zip(cells) {
            *n = (*n).max(cell.width().min(u16::MAX as usize) as u16);
        }
    }
    let layout = fit(columns, inner.width, &natural);
    let header = Row::new(
        layout
            .iter()
            .map(|(i, _)| Cell::from(columns[*i].title))
            .collect::<Vec<_>>(),
    )
    .style(theme.header());
    let rows: Vec<Row> = visible
        .into_iter()
        .map(|(mut cells, style)| {
            let picked: Vec<Cell> = layout
                .iter()
                .map(|(i, _)| Cell::from(std::mem::take(&mut cells[*i])))
                .collect();
            Row::new(picked).style(style)
        })
        .collect();
    let empty = rows.is_empty();
    let widths: Vec<Constraint> = layout.iter().map(|(_, w)| Constraint::Length(*w)).collect();
    let table = Table::new(rows, widths)
        .header(header)
        .column_spacing(SPACING)
        .row_highlight_style(theme.selected())
        .block(block);
    let mut state =
        TableState::default().with_selected(if empty { None } else { Some(selected - offset) });
    frame.render_stateful_widget(table, area, &mut state);
    if empty {
        let why = empty_reason(app, view);
        let at = Rect {
            y: inner.y + 1,
            height: inner.height.saturating_sub(1),
            ..inner
        };
        frame.render_widget(Paragraph::new(Line::styled(why, theme.dim())), at);
    }
}

fn empty_reason(app: &App, view: View) -> String {
    let list = app.list(view);
    if list.total > 0 {
        return format!(
            "no row matches the filter \"{}\" (Esc clears it)",
            list.filter.raw()
        );
    }
    match view {
        View::Workers if app.status().is_none() => "waiting for the control plane…".into(),
        View::Workers => "no workers registered".into(),
        View::Vms if app.status().is_none() => "waiting for the control plane…".into(),
        View::Vms => "no VMs: publish a generation".into(),
        View::Generations => "no generation has been published yet".into(),
        View::Events => "no events yet".into(),
        View::Pipelines => match app.pipelines() {
            None => "waiting for the CI service…".into(),
            Some(Err(e)) => format!("the CI service did not answer: {e}"),
            Some(Ok(_)) => "no pipelines have run yet".into(),
        },
        View::Overview => String::new(),
    }
}

/// ` workers [3/10] </gpu=true> `: the view, how many rows pass the filter, and the filter.
fn list_title<'a>(app: &App, view: View, theme: &Theme) -> Line<'a> {
    let list = app.list(view);
    let count = if list.filter.is_empty() {
        format!("[{}]", list.total)
    } else {
        format!("[{}/{}]", list.rows.len(), list.total)
    };
    let mut spans = vec![
        Span::raw(" "),
        Span::styled(view.name().to_string(), theme.title()),
        Span::raw(" "),
        Span::styled(count, theme.accent()),
    ];
    if !list.filter.is_empty() {
        spans.push(Span::raw(" "));
        spans.push(Span::styled(
            format!("</{}>", list.filter.raw()),
            theme.warn(),
        ));
    }
    spans.push(Span::raw(" "));
    Line::from(spans)
}

/// A text bar `width` cells wide, `fraction` of it filled. Readable without colour.
pub fn bar(fraction: f64, width: usize) -> String {
    let fraction = if fraction.is_finite() {
        fraction.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let filled = (fraction * width as f64).round() as usize;
    let mut s = String::with_capacity(width * 3);
    for i in 0..width {
        s.push(if i < filled { '█' } else { '░' });
    }
    s
}

/// `12:03:04` in UTC: enough to order what happened during a deploy.
pub fn clock(ms: u64) -> String {
    let s = (ms / 1000) % 86400;
    format!("{:02}:{:02}:{:02}", s / 3600, (s % 3600) / 60, s % 60)
}

/// Mebibytes for people: `512 MiB`, `1.5 GiB`.
pub fn mib(mb: i64) -> String {
    if mb.abs() >= 1024 {
        format!("{:.1} GiB", mb as f64 / 1024.0)
    } else {
        format!("{mb} MiB")
    }
}

pub fn bytes(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
    } else if b >= 1 << 20 {
        format!("{:.0} MiB", b as f64 / (1u64 << 20) as f64)
    } else if b >= 1 << 10 {
        format!("{:.0} KiB", b as f64 / 1024.0)
    } else {
        format!("{b} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLS: [Column; 4] = [
        Column::new("NAME", 10, 20, 0),
        Column::new("A", 5, 5, 2),
        Column::new("B", 5, 10, 1),
        Column::new("NOTE", 4, u16::MAX, 3),
    ];

    #[test]
    fn fit_drops_by_priority_then_grows() {
        let natural = [12, 5, 30, 40];
        // Everything at minimum: 10+5+5+4 + 3 spaces = 27.
        assert_eq!(fit(&COLS, 27, &natural), [(0, 10), (1, 5), (2, 5), (3, 4)]);
        // One short: NOTE (drop 3) goes first; the space freed widens NAME to its content.
        assert_eq!(fit(&COLS, 26, &natural), [(0, 12), (1, 5), (2, 7)]);
        // Then A, then B; NAME stays even when it does not fit.
        assert_eq!(fit(&COLS, 16, &natural), [(0, 10), (2, 5)]);
        assert_eq!(fit(&COLS, 12, &natural), [(0, 12)]);
        assert_eq!(fit(&COLS, 3, &natural), [(0, 10)]);
        // Wide: columns grow to their content within max, the last takes the rest.
        let wide = fit(&COLS, 100, &natural);
        assert_eq!(&wide[..3], [(0, 12), (1, 5), (2, 10)]);
        assert_eq!(wide[3], (3, 100 - 12 - 5 - 10 - 3));
        // Short content stays narrow: no column is padded past what it holds.
        let narrow = fit(&COLS, 100, &[4, 1, 2, 3]);
        assert_eq!(&narrow[..3], [(0, 10), (1, 5), (2, 5)]);
    }

    #[test]
    fn bars() {
        assert_eq!(bar(0.5, 8), "████░░░░");
        assert_eq!(bar(0.0, 4), "░░░░");
        assert_eq!(bar(1.7, 4), "████");
        assert_eq!(bar(f64::NAN, 2), "░░");
    }

    #[test]
    fn units() {
        assert_eq!(mib(512), "512 MiB");
        assert_eq!(mib(1536), "1.5 GiB");
        assert_eq!(bytes(3 << 20), "3 MiB");
        assert_eq!(clock(3_723_000), "01:02:03");
    }
}
