//! Renders of every view after scripted key presses, on ratatui's `TestBackend`, compared with
//! reviewed insta snapshots (`snapshots/`). The clock is fixed (`testdata::NOW`), so there is
//! no volatile text to filter out; the only filter is on the right edge, where trailing blanks
//! are trimmed.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Color;
use ratatui::Terminal;

use super::app::{App, Detail, Link, Target, Update};
use super::testdata;
use super::ui::{draw, Theme};

fn press(app: &mut App, keys: &str) {
    for c in keys.chars() {
        let code = match c {
            '\n' => KeyCode::Enter,
            '\x1b' => KeyCode::Esc,
            '\t' => KeyCode::Tab,
            c => KeyCode::Char(c),
        };
        app.handle_key(KeyEvent::new(code, KeyModifiers::NONE));
    }
}

fn render_buffer(app: &mut App, width: u16, height: u16, theme: Theme) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
    terminal.draw(|f| draw(f, app, &theme)).expect("draw");
    terminal.backend().buffer().clone()
}

/// The screen as text: one line per row, trailing blanks trimmed.
fn text(buffer: &Buffer) -> String {
    let area = buffer.area;
    let mut out = String::new();
    for y in 0..area.height {
        let mut line = String::new();
        for x in 0..area.width {
            line.push_str(buffer[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn render(app: &mut App, width: u16, height: u16) -> String {
    text(&render_buffer(app, width, height, Theme { color: true }))
}

fn after(keys: &str) -> App {
    let mut app = testdata::app();
    press(&mut app, keys);
    app
}

macro_rules! snapshot {
    ($name:ident, $keys:expr, $w:expr, $h:expr) => {
        #[test]
        fn $name() {
            let mut app = after($keys);
            insta::assert_snapshot!(render(&mut app, $w, $h));
        }
    };
}

snapshot!(overview_80x24, "", 80, 24);
snapshot!(overview_160x40, "", 160, 40);
snapshot!(workers_80x24, ":workers\n", 80, 24);
snapshot!(workers_160x40, ":workers\n", 160, 40);
snapshot!(vms_80x24, ":vms\n", 80, 24);
snapshot!(vms_200x30, ":vms\njj", 200, 30);
snapshot!(
    vms_filtered_by_label_120x30,
    ":vms\n/tier=frontend\n",
    120,
    30
);
snapshot!(
    vms_filter_without_match_80x24,
    ":vms\n/nothing-like-this",
    80,
    24
);
snapshot!(generations_120x30, ":gen\nj", 120, 30);
snapshot!(events_120x30, ":events\n", 120, 30);
snapshot!(pipelines_120x24, ":pipelines\n", 120, 24);
snapshot!(command_prompt_80x24, ":wo", 80, 24);
snapshot!(help_80x24, ":workers\n?", 80, 24);
snapshot!(confirm_drain_80x24, ":workers\njd", 80, 24);
snapshot!(confirm_rollback_100x30, ":generations\njjr", 100, 30);

#[test]
fn worker_detail_100x34() {
    let mut app = after(":workers\n\n");
    app.apply(Update::Detail(
        Target::Worker("w1".into()),
        Ok(Detail::Worker(Box::new(testdata::worker_detail("w1")))),
    ));
    insta::assert_snapshot!(render(&mut app, 100, 34));
}

#[test]
fn vm_detail_with_health_and_console_log_100x60() {
    let mut app = after(":vms\n\n");
    app.apply(Update::Detail(
        Target::Instance {
            id: "web-0".into(),
            worker: "w1".into(),
        },
        Ok(Detail::Worker(Box::new(testdata::worker_detail("w1")))),
    ));
    insta::assert_snapshot!(render(&mut app, 100, 60));
}

#[test]
fn vm_detail_scrolls_80x24() {
    let mut app = after(":vms\njj\n");
    app.apply(Update::Detail(
        Target::Instance {
            id: "web-2".into(),
            worker: "w3".into(),
        },
        Ok(Detail::Worker(Box::new(testdata::worker_detail("w3")))),
    ));
    // Draw once so the pane knows its height, then scroll to the end.
    render(&mut app, 80, 24);
    press(&mut app, "G");
    insta::assert_snapshot!(render(&mut app, 80, 24));
}

#[test]
fn unplaced_vm_detail_80x24() {
    let mut app = after(":vms\nG\n");
    insta::assert_snapshot!(render(&mut app, 80, 24));
}

#[test]
fn generation_detail_120x30() {
    let mut app = after(":generations\n\n");
    let info = testdata::generations().remove(0);
    app.apply(Update::Detail(
        Target::Generation(7),
        Ok(Detail::Generation(Box::new((info, testdata::blueprint())))),
    ));
    insta::assert_snapshot!(render(&mut app, 120, 30));
}

#[test]
fn pipeline_detail_with_steps_and_log_120x34() {
    let mut app = after(":pipelines\nj\n");
    app.apply(Update::Detail(
        Target::Pipeline(11),
        Ok(Detail::Pipeline(Box::new(testdata::pipeline_run()))),
    ));
    insta::assert_snapshot!(render(&mut app, 120, 34));
}

#[test]
fn event_detail_80x24() {
    let mut app = after(":events\njj\n");
    insta::assert_snapshot!(render(&mut app, 80, 24));
}

#[test]
fn disconnected_80x24() {
    let mut app = after(":workers\n");
    app.apply(Update::Link(Link::Lost {
        error: "the control plane closed the connection".into(),
        retry_at_ms: testdata::NOW + 2_000,
        attempt: 3,
    }));
    app.now_ms = testdata::NOW + 12_000 - 10_000;
    insta::assert_snapshot!(render(&mut app, 80, 24));
}

#[test]
fn waiting_for_the_first_status_80x24() {
    let mut app = App::new("127.0.0.1:7000", testdata::NOW, super::views::fields);
    insta::assert_snapshot!(render(&mut app, 80, 24));
}

#[test]
fn action_result_is_shown_80x24() {
    let mut app = after(":workers\njdy");
    insta::assert_snapshot!("action_in_flight_80x24", render(&mut app, 80, 24));
    app.apply(Update::ActionDone(
        super::app::Action::Drain("w2".into()),
        Ok("worker w2 is draining: its instances move, at most maxUnavailable of each VM at a time".into()),
    ));
    insta::assert_snapshot!("action_done_80x24", render(&mut app, 80, 24));
}

/// Every view at sizes from tiny to huge: nothing panics, nothing is drawn outside.
#[test]
fn any_size_renders() {
    let scripts = [
        "",
        ":workers\n",
        ":vms\n",
        ":gen\n",
        ":events\n",
        ":pipelines\n",
        ":vms\n\n",
        ":workers\n\n",
        "?",
        ":workers\nd",
    ];
    for keys in scripts {
        for (w, h) in [(1, 1), (10, 3), (20, 5), (80, 24), (81, 25), (300, 100)] {
            let mut app = after(keys);
            render(&mut app, w, h);
        }
    }
}

#[test]
fn no_color_means_no_colour() {
    for keys in ["", ":workers\n", ":vms\n", ":workers\njd", ":gen\n"] {
        let mut app = after(keys);
        app.apply(Update::Link(Link::Lost {
            error: "gone".into(),
            retry_at_ms: testdata::NOW,
            attempt: 1,
        }));
        let buffer = render_buffer(&mut app, 160, 40, Theme { color: false });
        for cell in buffer.content() {
            assert_eq!(cell.fg, Color::Reset, "{keys:?}: a coloured cell {cell:?}");
            assert_eq!(cell.bg, Color::Reset, "{keys:?}: a coloured cell {cell:?}");
        }
    }
}

#[test]
fn drift_is_highlighted() {
    let mut app = after(":vms\n");
    let buffer = render_buffer(&mut app, 200, 30, Theme { color: true });
    let screen = text(&buffer);
    let (y, line) = screen
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains("│web-2 "))
        .expect("web-2 on screen");
    assert!(line.contains("drift"), "{line}");
    assert!(line.contains('≠'), "the observed closure is marked: {line}");
    let x = line.find("web-2").expect("web-2") as u16;
    assert_eq!(buffer[(x, y as u16)].fg, Color::Yellow);
    // Without colour the row still says it in words and symbols.
    let mut plain = after(":vms\n");
    let screen = text(&render_buffer(&mut plain, 200, 30, Theme { color: false }));
    assert!(screen
        .lines()
        .any(|l| l.contains("│web-2 ") && l.contains("drift") && l.contains('≠')));
}

#[test]
fn the_footer_always_lists_the_keys() {
    for keys in [
        "",
        ":workers\n",
        ":vms\n\n",
        ":wo",
        "/",
        ":workers\n/x",
        "?",
        ":workers\nd",
    ] {
        let mut app = after(keys);
        let screen = render(&mut app, 80, 24);
        let footer = screen.lines().last().unwrap_or_default();
        assert!(footer.starts_with('<'), "{keys:?}: footer is {footer:?}");
    }
}
