//! Taking the terminal over and always giving it back.
//!
//! Raw mode and the alternate screen are undone in three places: when [`Tty`] is dropped
//! (normal exit, `?` errors, signals handled by the event loop), in a panic hook (a panic
//! anywhere, before the message is printed so it lands on a sane screen), and nowhere else —
//! restoring is idempotent, so running it twice is harmless.

use std::io::{self, Stdout, Write};
use std::sync::Once;

use crossterm::cursor::{Hide, Show};
use crossterm::event::{DisableBracketedPaste, EnableBracketedPaste};
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use crossterm::{execute, queue};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;

pub type Backend = CrosstermBackend<Stdout>;

/// The terminal in raw mode on the alternate screen; restored on drop.
pub struct Tty {
    pub terminal: Terminal<Backend>,
}

impl Tty {
    pub fn enter() -> io::Result<Tty> {
        install_panic_hook();
        enable_raw_mode()?;
        // From here on, any failure must still restore what was changed.
        let entered = (|| {
            let mut out = io::stdout();
            // Bracketed paste: a pasted filter arrives as one event, not as keys that could
            // trigger commands.
            execute!(out, EnterAlternateScreen, Hide, EnableBracketedPaste)?;
            Terminal::new(CrosstermBackend::new(io::stdout()))
        })();
        match entered {
            Ok(mut terminal) => {
                terminal.clear()?;
                Ok(Tty { terminal })
            }
            Err(e) => {
                restore();
                Err(e)
            }
        }
    }
}

impl Drop for Tty {
    fn drop(&mut self) {
        restore();
    }
}

/// Leaves the alternate screen, shows the cursor and turns raw mode off. Errors are ignored:
/// there is nothing better to do with them on the way out.
pub fn restore() {
    let mut out = io::stdout();
    let _ = queue!(out, DisableBracketedPaste, LeaveAlternateScreen, Show);
    let _ = out.flush();
    let _ = disable_raw_mode();
}

fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}
