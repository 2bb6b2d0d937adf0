//! The bridge to the control plane.
//!
//! capnp-rpc clients are `!Send` and axum handlers must be `Send`, so the RPC client lives on
//! its own thread (a current-thread runtime with a `LocalSet`) and the web side talks to it
//! through channels: the thread keeps the latest [`Snapshot`] of the cluster in a `watch`
//! channel (pages render from it without an RPC round trip, which is what keeps the
//! deployments page fast with thousands of VMs), and answers one-off questions sent over an
//! mpsc with a oneshot for the reply.
//!
//! The snapshot is refreshed when the control plane's `watch` stream reports events (batched
//! for [`DEBOUNCE`], so a rollout of 1,000 instances is a handful of refreshes, not 1,000) and
//! every [`REFRESH`] for the numbers that change without events (free resources, metrics).
//! When the connection drops — the control plane restarted — the thread reconnects with
//! back-off and says so in the snapshot meanwhile.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use schema::client::MasterClient;
use schema::model::{Blueprint, ClusterStatus, Event, GenerationInfo};
use tokio::sync::{mpsc, oneshot, watch};

/// Events collected before the snapshot is refreshed.
const DEBOUNCE: Duration = Duration::from_millis(200);
/// Refresh interval without events.
const REFRESH: Duration = Duration::from_secs(3);
/// Generations and events kept in the snapshot.
const HISTORY: usize = 50;

/// Where the control plane is and how to sign in.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: String,
    pub token: TokenSource,
}

/// The operator token, given or read from a file when connecting (so a control plane that
/// was set up after repohub started is still found).
#[derive(Debug, Clone)]
pub enum TokenSource {
    Value(String),
    File(std::path::PathBuf),
}

impl TokenSource {
    pub(crate) fn read(&self) -> Result<String, BridgeError> {
        match self {
            TokenSource::Value(v) => Ok(v.clone()),
            TokenSource::File(path) => std::fs::read_to_string(path)
                .map(|t| t.trim().to_string())
                .map_err(|source| BridgeError::Token {
                    path: path.display().to_string(),
                    source,
                }),
        }
    }
}

/// What went wrong between repohub and the control plane; shown on the pages as a sentence.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("cannot read the operator token {path} (pass --operator-token-file)")]
    Token {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Connect(#[from] schema::net::NetError),
    #[error(transparent)]
    Call(#[from] schema::client::ClientError),
    #[error("the control plane ended the event stream")]
    StreamEnded,
    #[error("the connection to the control plane at {0} closed")]
    Closed(String),
    #[error("the control plane at {0} is not reachable right now")]
    Unreachable(String),
    #[error("the control plane bridge has stopped")]
    Stopped,
    #[error("the control plane connection dropped; try again")]
    Dropped,
}

/// What the deployments page shows.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub addr: String,
    /// Whether the last refresh reached the control plane.
    pub connected: bool,
    /// Why the control plane is not reachable, as a sentence.
    pub error: Option<String>,
    pub status: Option<ClusterStatus>,
    /// Newest first.
    pub generations: Vec<GenerationInfo>,
    /// Newest first.
    pub events: Vec<Event>,
    pub fetched_ms: u64,
    /// Increases with every new snapshot; live views use it to skip what they have.
    pub version: u64,
}

enum Request {
    Generation(
        u64,
        oneshot::Sender<Result<(GenerationInfo, Blueprint), BridgeError>>,
    ),
}

/// The web side's end of the bridge. Cheap to clone.
#[derive(Clone)]
pub struct ControlPlane {
    snapshot: watch::Receiver<Arc<Snapshot>>,
    requests: mpsc::Sender<Request>,
}

impl ControlPlane {
    /// Starts the bridge thread. It ends when every handle is dropped.
    pub fn spawn(target: Target) -> std::io::Result<ControlPlane> {
        let (snap_tx, snapshot) = watch::channel(Arc::new(Snapshot {
            addr: target.addr.clone(),
            error: Some("connecting to the control plane…".into()),
            ..Snapshot::default()
        }));
        let (requests, req_rx) = mpsc::channel(64);
        support::runtime::spawn_local_thread("control-plane".into(), move || {
            run(target, snap_tx, req_rx)
        })?;
        Ok(ControlPlane { snapshot, requests })
    }

    /// The latest snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    /// A receiver that wakes on every new snapshot (for live updates).
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshot.clone()
    }

    /// One generation with its full blueprint.
    pub async fn generation(&self, n: u64) -> Result<(GenerationInfo, Blueprint), BridgeError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(Request::Generation(n, tx))
            .await
            .map_err(|_| BridgeError::Stopped)?;
        rx.await.map_err(|_| BridgeError::Dropped)?
    }
}

async fn run(
    target: Target,
    snap_tx: watch::Sender<Arc<Snapshot>>,
    mut requests: mpsc::Receiver<Request>,
) {
    let mut version = 0u64;
    let mut backoff = Duration::from_millis(250);
    let mut events: VecDeque<Event> = VecDeque::new();
    loop {
        let outcome = tokio::select! {
            r = session(&target, &snap_tx, &mut requests, &mut version, &mut events) => r,
            _ = snap_tx.closed() => return,
        };
        let error = match outcome {
            Ok(()) => return, // every handle dropped
            Err(e) => schema::error_chain(&e),
        };
        tracing::warn!(addr = %target.addr, error = %error, "control plane unavailable");
        version += 1;
        let previous = snap_tx.borrow().clone();
        // Keep the last known state visible, marked as stale, rather than an empty page.
        let _ = snap_tx.send(Arc::new(Snapshot {
            connected: false,
            error: Some(error),
            version,
            ..(*previous).clone()
        }));
        // Answer questions asked while disconnected instead of letting them hang.
        let deadline = tokio::time::sleep(backoff);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                _ = snap_tx.closed() => return,
                req = requests.recv() => match req {
                    Some(Request::Generation(_, reply)) => {
                        let _ = reply.send(Err(BridgeError::Unreachable(target.addr.clone())));
                    }
                    None => return,
                },
            }
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// One connection's life: refresh, watch, answer requests. Returns `Ok` when the web side is
/// gone, `Err` when the connection failed.
async fn session(
    target: &Target,
    snap_tx: &watch::Sender<Arc<Snapshot>>,
    requests: &mut mpsc::Receiver<Request>,
    version: &mut u64,
    events: &mut VecDeque<Event>,
) -> Result<(), BridgeError> {
    let token = target.token.read()?;
    let (master, conn) = schema::net::connect_master(&target.addr, &token).await?;
    let client = MasterClient::new(master);
    tracing::info!(addr = %target.addr, "connected to the control plane");
    let since = events.front().map(|e| e.seq).unwrap_or(0);
    let (_subscription, mut batches) = client.watch(since).await?;
    let mut closed = conn.closed.clone();
    refresh(&client, target, snap_tx, version, events).await?;
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut dirty_since: Option<tokio::time::Instant> = None;
    loop {
        let debounce = async {
            match dirty_since {
                Some(t) => tokio::time::sleep_until(t + DEBOUNCE).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            batch = batches.recv() => match batch {
                Some(batch) => {
                    for e in batch {
                        if events.front().is_some_and(|f| f.seq >= e.seq) {
                            continue;
                        }
                        events.push_front(e);
                    }
                    events.truncate(HISTORY);
                    dirty_since.get_or_insert_with(tokio::time::Instant::now);
                }
                None => return Err(BridgeError::StreamEnded),
            },
            _ = debounce => {
                dirty_since = None;
                refresh(&client, target, snap_tx, version, events).await?;
            }
            _ = tick.tick() => {
                if dirty_since.is_none() {
                    refresh(&client, target, snap_tx, version, events).await?;
                }
            }
            req = requests.recv() => match req {
                Some(Request::Generation(n, reply)) => {
                    let answer = client.generation(n).await.map_err(BridgeError::from);
                    let _ = reply.send(answer);
                }
                None => return Ok(()),
            },
            _ = &mut closed => return Err(BridgeError::Closed(target.addr.clone())),
            _ = snap_tx.closed() => return Ok(()),
        }
    }
}

async fn refresh(
    client: &MasterClient,
    target: &Target,
    snap_tx: &watch::Sender<Arc<Snapshot>>,
    version: &mut u64,
    events: &VecDeque<Event>,
) -> Result<(), BridgeError> {
    let status = client.cluster_status().await?;
    let mut generations = client.generations(HISTORY as u32).await?;
    generations.sort_by_key(|g| std::cmp::Reverse(g.generation));
    let events: Vec<Event> = events.iter().cloned().collect();
    // Only a change makes a new snapshot: live views re-fetch on every new version, and an
    // idle cluster should not make every open browser re-render a thousand rows.
    let unchanged = {
        let prev = snap_tx.borrow();
        prev.connected
            && prev.status.as_ref() == Some(&status)
            && prev.generations == generations
            && prev.events == events
    };
    if unchanged {
        return Ok(());
    }
    *version += 1;
    let _ = snap_tx.send(Arc::new(Snapshot {
        addr: target.addr.clone(),
        connected: true,
        error: None,
        status: Some(status),
        generations,
        events,
        fetched_ms: crate::now_ms(),
        version: *version,
    }));
    Ok(())
}
