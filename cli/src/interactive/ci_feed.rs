//! The feed of CI pipelines into the TUI, read through pcr-ci's client of its JSON API.
//!
//! The list is polled every [`LIST_POLL`] while it is on screen (pipelines start on pushes the
//! control plane knows nothing of), and not at all otherwise. An open pipeline follows its
//! log with the API's long poll (`/logs?after=&waitMs=`): the request returns as soon as
//! there are new lines or the run ends, so the tail is live without a busy loop.

use std::time::Duration;

use schema::ci::client::CiClient;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::watch;

pub use schema::ci::{LogLine, PhaseRecord, StepRecord};

use super::app::{App, Detail, PipelineRun, Screen, Target, Update, View};

/// How often the list is fetched while on screen.
pub const LIST_POLL: Duration = Duration::from_secs(2);
/// How many runs the list shows.
pub const LIST_LIMIT: u32 = 100;
/// How long one log request may wait for new lines.
const LOG_WAIT: Duration = Duration::from_secs(20);
/// Log lines kept for the tail.
pub const LOG_KEEP: usize = 2_000;
/// Lines usually arrive in bursts: gather them for this long before drawing again.
const LOG_GATHER: Duration = Duration::from_millis(200);

/// What the screen shows of CI right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Interest {
    pub list: bool,
    pub detail: Option<u64>,
}

impl Interest {
    pub fn of(app: &App) -> Interest {
        match app.screen() {
            Screen::List(View::Pipelines) => Interest {
                list: true,
                detail: None,
            },
            Screen::Detail(Target::Pipeline(id)) => Interest {
                list: false,
                detail: Some(*id),
            },
            _ => Interest::default(),
        }
    }
}

/// Feeds pipelines to the screen for as long as it wants them.
pub async fn feed(
    ci: CiClient,
    mut interest: watch::Receiver<Interest>,
    updates: UnboundedSender<Update>,
) {
    loop {
        let want = *interest.borrow_and_update();
        if let Some(id) = want.detail {
            if !follow(&ci, id, &mut interest, &updates).await {
                return;
            }
            continue;
        }
        if want.list {
            let list = ci
                .pipelines(None, LIST_LIMIT)
                .await
                .map_err(|e| schema::error_chain(&e));
            if updates.send(Update::Pipelines(list)).is_err() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(LIST_POLL) => {}
                changed = interest.changed() => if changed.is_err() { return },
            }
        } else if interest.changed().await.is_err() {
            return;
        }
    }
}

/// Follows one run until the screen looks elsewhere; false when the screen is gone.
async fn follow(
    ci: &CiClient,
    id: u64,
    interest: &mut watch::Receiver<Interest>,
    updates: &UnboundedSender<Update>,
) -> bool {
    let target = Target::Pipeline(id);
    let mut log: Vec<LogLine> = Vec::new();
    let mut after = 0u64;
    loop {
        let detail = ci.pipeline(id).await.map_err(|e| schema::error_chain(&e));
        let finished = detail
            .as_ref()
            .is_ok_and(|d| d.summary.status.is_finished());
        let sent = updates.send(Update::Detail(
            target.clone(),
            detail.map(|detail| {
                Detail::Pipeline(Box::new(PipelineRun {
                    detail,
                    log: log.clone(),
                }))
            }),
        ));
        if sent.is_err() {
            return false;
        }
        let page = tokio::select! {
            page = ci.logs(id, after, LOG_WAIT) => page,
            changed = interest.changed() => return changed.is_ok(),
        };
        let pause = match page {
            Ok(page) => {
                let done = page.done && page.lines.is_empty();
                if let Some(last) = page.lines.last() {
                    after = last.seq;
                }
                log.extend(page.lines);
                if log.len() > LOG_KEEP {
                    log.drain(..log.len() - LOG_KEEP);
                }
                if done && finished {
                    // Everything is shown; nothing will change any more.
                    return interest.changed().await.is_ok();
                }
                LOG_GATHER
            }
            // pcr-ci is down or restarting: the pane keeps what it showed; try again calmly.
            Err(_) => LIST_POLL,
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            changed = interest.changed() => return changed.is_ok(),
        }
    }
}
