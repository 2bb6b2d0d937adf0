//! The live feed: one task owns the control plane connection and turns it into [`Update`]s.
//!
//! Nothing polls the control plane in a tight loop. The feed subscribes to `watch`; each
//! batch of events is passed on at once and schedules one status refresh, at most one per
//! [`MIN_REFRESH_GAP`], so a burst of a thousand events during a deploy costs a handful of
//! `getClusterStatus` calls. Worker metrics and uptimes change without events, so a slow
//! resync ([`RESYNC`]) keeps them honest. When the connection drops (the RPC system ends,
//! a call fails or does not answer within [`CALL_TIMEOUT`]) the feed says so and reconnects
//! with exponential backoff, resuming the event stream where it stopped.

use std::future::Future;
use std::time::Duration;

use schema::client::{ClientError, MasterClient};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::time::Instant;

use super::app::{Action, Detail, Link, Target, Update};
use support::now_ms;

/// Fewest milliseconds between two status refreshes caused by events.
pub const MIN_REFRESH_GAP: Duration = Duration::from_millis(150);
/// A refresh even without events: worker metrics and uptimes change silently.
pub const RESYNC: Duration = Duration::from_secs(5);
/// A call that takes longer than this means the connection is gone (half-open TCP).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// How many generations the history view shows.
pub const GENERATIONS: u32 = 200;

/// What the screen asks of the feed.
#[derive(Debug, Clone)]
pub enum Command {
    /// Keep this detail fresh (or none).
    Detail(Option<Target>),
    Run(Action),
}

/// A logged-in operator connection.
pub struct Session {
    client: MasterClient,
    closed: futures::future::Shared<tokio::sync::oneshot::Receiver<()>>,
}

impl Session {
    pub async fn open(addr: &str, token: &str) -> Result<Session, schema::net::NetError> {
        let (master, conn) = schema::net::connect_master(addr, token).await?;
        Ok(Session {
            client: MasterClient::new(master),
            closed: conn.closed,
        })
    }
}

/// Why a session ended.
enum End {
    /// The screen went away: stop.
    Quit,
    Lost(String),
}

/// The delay before reconnect attempt `attempt` (1-based): 250 ms doubling to 5 s.
pub fn backoff(attempt: u32) -> Duration {
    let ms = 250u64.saturating_mul(1 << attempt.saturating_sub(1).min(5));
    Duration::from_millis(ms.min(5_000))
}

/// Runs a call with the timeout; `Err` means the connection is unusable.
async fn call<T>(
    fut: impl Future<Output = Result<T, ClientError>>,
) -> Result<Result<T, String>, String> {
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Err(_) => Err(format!(
            "the control plane did not answer within {} s",
            CALL_TIMEOUT.as_secs()
        )),
        // The control plane refused: a sentence to show, the connection is fine.
        Ok(Err(ClientError::Remote(e))) => Ok(Err(e.to_string())),
        // An old control plane without this method is no reason to reconnect.
        Ok(Err(ClientError::Rpc(e))) if e.kind == capnp::ErrorKind::Unimplemented => Ok(Err(
            format!("the control plane does not offer this: {}", e.extra),
        )),
        Ok(Err(e)) => Err(schema::error_chain(&e)),
        Ok(Ok(v)) => Ok(Ok(v)),
    }
}

pub struct Feed {
    addr: String,
    token: String,
    commands: UnboundedReceiver<Command>,
    updates: UnboundedSender<Update>,
    detail: Option<Target>,
    /// The detail changed while disconnected: fetch all of it at the next refresh.
    detail_opened: bool,
    last_seq: u64,
    /// The generation whose specs the screen has.
    blueprint_generation: u64,
    /// The last generation fetched for a detail pane: its specs never change.
    generation_cache: Option<(u64, Detail)>,
}

impl Feed {
    pub fn new(
        addr: String,
        token: String,
        commands: UnboundedReceiver<Command>,
        updates: UnboundedSender<Update>,
    ) -> Feed {
        Feed {
            addr,
            token,
            commands,
            updates,
            detail: None,
            detail_opened: false,
            last_seq: 0,
            blueprint_generation: 0,
            generation_cache: None,
        }
    }

    fn send(&self, u: Update) {
        // The screen is gone when this fails; the next command receive ends the feed.
        let _ = self.updates.send(u);
    }

    /// Runs until the screen goes away: serve a session, and when it is lost, reconnect.
    pub async fn run(mut self, first: Session) {
        let mut next = Some(first);
        let mut attempt = 0u32;
        loop {
            let session = match next.take() {
                Some(s) => s,
                None => {
                    self.send(Update::Link(Link::Connecting { attempt }));
                    let opened =
                        tokio::time::timeout(CALL_TIMEOUT, Session::open(&self.addr, &self.token))
                            .await;
                    match opened {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            if !self
                                .wait_to_retry(schema::error_chain(&e), &mut attempt)
                                .await
                            {
                                return;
                            }
                            continue;
                        }
                        Err(_) => {
                            let e =
                                format!("connecting took longer than {} s", CALL_TIMEOUT.as_secs());
                            if !self.wait_to_retry(e, &mut attempt).await {
                                return;
                            }
                            continue;
                        }
                    }
                }
            };
            let started = Instant::now();
            match self.serve(&session).await {
                End::Quit => return,
                End::Lost(reason) => {
                    // A session that lived a while starts the backoff over.
                    if started.elapsed() > Duration::from_secs(10) {
                        attempt = 0;
                    }
                    if !self.wait_to_retry(reason, &mut attempt).await {
                        return;
                    }
                }
            }
        }
    }

    /// Says the connection is lost and waits out the backoff, still answering the screen.
    /// False when the screen went away.
    async fn wait_to_retry(&mut self, error: String, attempt: &mut u32) -> bool {
        *attempt += 1;
        let delay = backoff(*attempt);
        self.send(Update::Link(Link::Lost {
            error,
            retry_at_ms: now_ms() + delay.as_millis() as u64,
            attempt: *attempt,
        }));
        let deadline = Instant::now() + delay;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return true,
                c = self.commands.recv() => match c {
                    None => return false,
                    Some(Command::Detail(t)) => {
                        self.detail = t;
                        self.detail_opened = true;
                    }
                    Some(Command::Run(a)) => self.send(Update::ActionDone(
                        a,
                        Err("not connected to the control plane; try again once the header says live".into()),
                    )),
                },
            }
        }
    }

    async fn serve(&mut self, session: &Session) -> End {
        let client = &session.client;
        // Subscribe before the first refresh, so nothing that happens in between is missed.
        let (subscription, mut events) = match call(client.watch(self.last_seq)).await {
            Ok(Ok(w)) => w,
            Ok(Err(e)) => {
                return End::Lost(format!("the control plane refused to stream events: {e}"))
            }
            Err(e) => return End::Lost(e),
        };
        if let Err(e) = self.refresh(client).await {
            return End::Lost(e);
        }
        self.send(Update::Link(Link::Live { since_ms: now_ms() }));
        let mut closed = session.closed.clone();
        let mut due: Option<Instant> = None;
        let mut last_refresh = Instant::now();
        let mut resync = tokio::time::interval_at(Instant::now() + RESYNC, RESYNC);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let end = loop {
            let refresh_at = due.unwrap_or_else(|| Instant::now() + RESYNC * 10);
            tokio::select! {
                _ = &mut closed => break End::Lost("the control plane closed the connection".into()),
                batch = events.recv() => match batch {
                    None => break End::Lost("the event stream ended".into()),
                    Some(batch) => {
                        if let Some(last) = batch.last() {
                            self.last_seq = self.last_seq.max(last.seq);
                        }
                        self.send(Update::Events(batch));
                        if due.is_none() {
                            due = Some((last_refresh + MIN_REFRESH_GAP).max(Instant::now()));
                        }
                    }
                },
                _ = tokio::time::sleep_until(refresh_at), if due.is_some() => {
                    due = None;
                    if let Err(e) = self.refresh(client).await {
                        break End::Lost(e);
                    }
                    last_refresh = Instant::now();
                    resync.reset();
                }
                _ = resync.tick() => {
                    if let Err(e) = self.refresh(client).await {
                        break End::Lost(e);
                    }
                    last_refresh = Instant::now();
                }
                c = self.commands.recv() => match c {
                    None => break End::Quit,
                    Some(Command::Detail(t)) => {
                        self.detail = t;
                        if let Err(e) = self.refresh_detail(client, true).await {
                            break End::Lost(e);
                        }
                    }
                    Some(Command::Run(action)) => {
                        match self.run_action(client, &action).await {
                            Ok(result) => self.send(Update::ActionDone(action, result)),
                            Err(e) => break End::Lost(e),
                        }
                        // Show the consequence at once, not at the next event.
                        due = Some(Instant::now());
                    }
                },
            }
        };
        drop(subscription);
        end
    }

    /// Status, the active generation's specs when they changed, the history, and the open
    /// detail. `Err` when the connection is unusable.
    async fn refresh(&mut self, client: &MasterClient) -> Result<(), String> {
        let status = match call(client.cluster_status()).await? {
            Ok(s) => s,
            // Refused (e.g. while the control plane starts): keep what is shown.
            Err(_) => return Ok(()),
        };
        let active = status.active_generation;
        if let Some(Target::Instance { id, worker }) = &mut self.detail {
            // The instance may have moved since the pane opened; follow it.
            if let Some(i) = status.instances.iter().find(|i| i.instance_id == *id) {
                worker.clone_from(&i.worker_id);
            }
        }
        self.send(Update::Status(Box::new(status)));
        if active != 0 && active != self.blueprint_generation {
            if let Ok((_, bp)) = call(client.generation(active)).await? {
                self.blueprint_generation = active;
                self.send(Update::Blueprint(active, Box::new(bp)));
            }
        }
        if let Ok(list) = call(client.generations(GENERATIONS)).await? {
            self.send(Update::Generations(list));
        }
        let opened = std::mem::take(&mut self.detail_opened);
        self.refresh_detail(client, opened).await
    }

    /// Fetches the open detail; `opened` when the pane just opened (what never changes is
    /// sent then, and not again on every refresh).
    async fn refresh_detail(&mut self, client: &MasterClient, opened: bool) -> Result<(), String> {
        let Some(target) = self.detail.clone() else {
            return Ok(());
        };
        let result = match &target {
            Target::Worker(id) => call(client.worker(id))
                .await?
                .map(|w| Detail::Worker(Box::new(w))),
            // Unplaced: no worker has a report of it; the status says why.
            Target::Instance { worker, .. } if worker.is_empty() => return Ok(()),
            Target::Instance { worker, .. } => call(client.worker(worker))
                .await?
                .map(|w| Detail::Worker(Box::new(w))),
            // A generation's specs never change; its status is in the history list.
            Target::Generation(_) if !opened => return Ok(()),
            Target::Generation(n) => match &self.generation_cache {
                Some((cached, d)) if cached == n => Ok(d.clone()),
                _ => {
                    let d = call(client.generation(*n))
                        .await?
                        .map(|g| Detail::Generation(Box::new(g)));
                    if let Ok(d) = &d {
                        self.generation_cache = Some((*n, d.clone()));
                    }
                    d
                }
            },
            // Events come with the stream; pipelines from the CI feed.
            Target::Event(_) | Target::Pipeline(_) => return Ok(()),
        };
        self.send(Update::Detail(target, result));
        Ok(())
    }

    async fn run_action(
        &self,
        client: &MasterClient,
        action: &Action,
    ) -> Result<Result<String, String>, String> {
        match action {
            Action::Cordon(w) => call(client.cordon(w)).await,
            Action::Uncordon(w) => call(client.uncordon(w)).await,
            Action::Drain(w) => call(client.drain(w)).await,
            Action::Rollback(g) => call(client.rollback(*g)).await,
            Action::Promote(vm) => call(client.promote(vm)).await,
            Action::Restart(id) => call(client.restart_instance(id)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_five_seconds() {
        let delays: Vec<u64> = (1..=8).map(|a| backoff(a).as_millis() as u64).collect();
        assert_eq!(delays, [250, 500, 1000, 2000, 4000, 5000, 5000, 5000]);
        assert_eq!(backoff(u32::MAX), Duration::from_millis(5000));
    }
}
