//! A Nix HTTP binary cache that `nix copy --to http://…` pushes to and `nix copy --from` (or a
//! substituter setting) pulls from: the only cache a Procurator cluster needs.
//!
//! Uploads are streamed to a temporary file while they are hashed and decompressed, checked
//! against their file name, and renamed into place; a narinfo is accepted only once its NAR is
//! stored with the hash and size it claims and every path it references is in the cache. The
//! cache then signs it with its own ed25519 key (Nix's key-file format), so workers trust one
//! public key. Garbage collection keeps pinned roots and recently used paths with their whole
//! closures. NARs are served from disk as streams with `Range` support; narinfo lookups are one
//! prepared SQLite query.
//!
//! Use [`Cache::open`] and [`router`] to embed it (tests drive the router in-process), or
//! [`serve`] to run it; the `pcr-cache` binary wraps both.

pub mod gc;
mod hot;
mod http;
mod index;
mod ingest;
mod metrics;
pub mod names;
pub mod narinfo;
pub mod signing;
mod store;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use http::{parse_range, router, App, Auth, ByteRange};
pub use ingest::IngestError;
pub use store::{Cache, GcReport, PinError, StoreConfig, UploadError, DEFAULT_GC_GRACE};

/// What went wrong inside the cache (as opposed to a refused request).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("storage operation on {path} failed")]
    Storage {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the index {path}")]
    OpenIndex {
        path: String,
        #[source]
        source: support::sqlite::MigrateError,
    },
    #[error("index query failed")]
    Index(#[from] rusqlite::Error),
    #[error("the index is corrupt: {0}")]
    CorruptIndex(String),
    #[error("a background task failed: {0}")]
    Task(String),
    #[error("serving HTTP failed")]
    Serve(#[source] std::io::Error),
}

/// When the server collects garbage on its own.
#[derive(Clone, Copy, Debug)]
pub struct GcPolicy {
    pub interval: Duration,
    pub retention: Duration,
}

/// How often downloads are written back as access times (which garbage collection reads).
const ACCESS_FLUSH_INTERVAL: Duration = Duration::from_secs(10);
/// How often the index is checked for commits by another process; well under the GC grace
/// period, so that no narinfo outlives its NAR.
const INDEX_WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// Serves `app` on `listener` until `shutdown` resolves, with the background work a running
/// cache needs: flushing access times and, if `gc` is set, periodic garbage collection.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    gc: Option<GcPolicy>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    use axum::serve::ListenerExt as _;

    let background = tokio::spawn(background(Arc::clone(&app.cache), gc));
    // Small responses (narinfos) would otherwise wait on Nagle's algorithm for the client's ACK.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let result = axum::serve(listener, router(Arc::clone(&app)))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Error::Serve);
    background.abort();
    let cache = Arc::clone(&app.cache);
    tokio::task::spawn_blocking(move || cache.flush_access())
        .await
        .map_err(|e| Error::Task(e.to_string()))??;
    result
}

enum Maintenance {
    FlushAccess,
    Gc(Duration),
}

async fn background(cache: Arc<Cache>, gc: Option<GcPolicy>) {
    let mut flush = tokio::time::interval(ACCESS_FLUSH_INTERVAL);
    let mut watch = tokio::time::interval(INDEX_WATCH_INTERVAL);
    let mut collect = gc.map(|p| {
        let mut i = tokio::time::interval_at(tokio::time::Instant::now() + p.interval, p.interval);
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        (i, p.retention)
    });
    loop {
        let gc_tick = async {
            match &mut collect {
                Some((interval, retention)) => {
                    interval.tick().await;
                    Some(*retention)
                }
                None => std::future::pending().await,
            }
        };
        let job = tokio::select! {
            _ = watch.tick() => {
                // A single PRAGMA on a memory-mapped WAL index: cheap enough to run in place.
                if let Err(e) = cache.watch_index() {
                    tracing::error!(error = %error_chain(&e), "cannot watch the index");
                }
                continue;
            }
            _ = flush.tick() => Maintenance::FlushAccess,
            Some(retention) = gc_tick => Maintenance::Gc(retention),
        };
        let cache = Arc::clone(&cache);
        let run = move || match job {
            Maintenance::FlushAccess => cache.flush_access(),
            Maintenance::Gc(retention) => cache.gc(retention).map(|_| ()),
        };
        match tokio::task::spawn_blocking(run).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %error_chain(&e), "background maintenance failed")
            }
            Err(e) => tracing::error!(error = %e, "background maintenance panicked"),
        }
    }
}

/// The error and its sources, as one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
