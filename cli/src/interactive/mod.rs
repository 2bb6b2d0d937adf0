//! `pcr tui`: the cluster at a glance, live, from the terminal — Procurator's k9s.
//!
//! Three parts, so the behaviour can be tested without a terminal:
//! - [`app`]: all state and every key's meaning ([`App::handle_key`], [`App::apply`]);
//! - [`ui`] and [`views`]: drawing a frame from that state;
//! - [`live`] (and [`pipelines`] for the CI service): the feed that turns the control plane's
//!   `watch` stream into [`Update`]s, refreshing the status at most once per burst and
//!   reconnecting by itself.
//!
//! [`run`] ties them together: one `select!` over key presses, updates, signals and a
//! one-second tick for relative times; a frame is drawn only after something changed.
//! The terminal is restored on every way out, panics included ([`terminal`]).

pub mod app;
pub mod ci_feed;
pub mod list;
pub mod live;
pub mod terminal;
pub mod theme;
pub mod ui;
pub mod views;

#[cfg(test)]
mod snapshots;
#[cfg(test)]
pub(crate) mod testdata;

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use crossterm::event::{Event as TermEvent, EventStream};
use futures::StreamExt;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

pub use app::{Action, App, Update, View};
pub use theme::Theme;

use crate::conn::{operator_token, ConnArgs};
use support::now_ms;

#[derive(Args, Debug, Clone)]
pub struct TuiArgs {
    /// Where the pipelines view reads pcr-ci (`--ci`, as for `pcr pipelines`).
    #[command(flatten)]
    pub ci: crate::pipelines::CiArgs,
    /// The view to start in.
    #[arg(long, default_value = "overview", value_parser = parse_view)]
    pub view: View,
}

fn parse_view(s: &str) -> Result<View, String> {
    View::parse(s).ok_or_else(|| {
        let names: Vec<&str> = View::ALL.iter().map(|v| v.name()).collect();
        format!("no view named {s:?}; try {}", names.join(", "))
    })
}

/// Runs the TUI until the operator quits.
pub async fn run(conn: &ConnArgs, args: &TuiArgs) -> anyhow::Result<()> {
    let token = operator_token(conn)?;
    anyhow::ensure!(
        std::io::stdout().is_terminal() && std::io::stdin().is_terminal(),
        "pcr tui needs a terminal; for scripts use `pcr control status --json`"
    );
    // The first connection is made before the screen is taken over, so a wrong address or
    // token is one sentence on stderr, like every other command. Later losses are shown on
    // screen and retried.
    let session = live::Session::open(&conn.master, &token).await?;

    let ci = args.ci.client(&token);
    let mut app = App::new(&conn.master, now_ms(), views::fields);
    app.ci = Some(ci.base().to_string());
    app.switch_to(args.view);
    let theme = Theme::from_env();

    let (command_tx, command_rx) = mpsc::unbounded_channel();
    let (update_tx, mut updates) = mpsc::unbounded_channel();
    let feed = live::Feed::new(conn.master.clone(), token, command_rx, update_tx.clone());
    let mut feed = tokio::task::spawn_local(feed.run(session));
    let (interest_tx, interest_rx) = tokio::sync::watch::channel(ci_feed::Interest::default());
    let ci_task = tokio::task::spawn_local(ci_feed::feed(ci, interest_rx, update_tx));

    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut sighup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;

    let result = async {
        let mut tty = terminal::Tty::enter().context("cannot set up the terminal")?;
        let mut keys = EventStream::new();
        // Relative times ("3s ago", uptimes, the retry countdown) move once a second.
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut detail_sent = None;
        let mut dirty = true;
        loop {
            if dirty {
                app.now_ms = now_ms();
                tty.terminal
                    .draw(|frame| ui::draw(frame, &mut app, &theme))
                    .context("cannot draw")?;
                dirty = false;
            }
            tokio::select! {
                key = keys.next() => match key {
                    Some(Ok(TermEvent::Key(key))) => {
                        app.now_ms = now_ms();
                        if let Some(action) = app.handle_key(key) {
                            let _ = command_tx.send(live::Command::Run(action));
                        }
                        dirty = true;
                    }
                    Some(Ok(TermEvent::Paste(text))) => {
                        app.paste(&text);
                        dirty = true;
                    }
                    Some(Ok(TermEvent::Resize(..))) => dirty = true,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e).context("cannot read the terminal"),
                    None => break,
                },
                update = updates.recv() => match update {
                    Some(update) => {
                        app.now_ms = now_ms();
                        app.apply(update);
                        // Everything already queued goes into the same frame.
                        while let Ok(more) = updates.try_recv() {
                            app.apply(more);
                        }
                        dirty = true;
                    }
                    None => anyhow::bail!("the live feed stopped unexpectedly"),
                },
                // The feed only ends when told to; ending by itself means it panicked.
                ended = &mut feed => anyhow::bail!("the live feed stopped unexpectedly: {ended:?}"),
                _ = tick.tick() => dirty = true,
                _ = sigterm.recv() => break,
                _ = sighup.recv() => break,
                _ = sigint.recv() => break,
            }
            if app.should_quit() {
                break;
            }
            let target = app.detail_target().cloned();
            if target != detail_sent {
                let _ = command_tx.send(live::Command::Detail(target.clone()));
                detail_sent = target;
            }
            interest_tx.send_if_modified(|old| {
                let new = ci_feed::Interest::of(&app);
                let changed = *old != new;
                *old = new;
                changed
            });
        }
        Ok(())
    }
    .await;
    feed.abort();
    ci_task.abort();
    result
}
