//! `pcr-control-plane`: serves the Master over Cap'n Proto RPC, keeps state in SQLite.

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use control_plane::auth::Tokens;
use control_plane::cluster::{Cluster, Config};
use control_plane::rpc::Server;
use control_plane::store::SqliteStore;
use tokio::net::TcpListener;

#[derive(Parser, Debug)]
#[command(
    name = "pcr-control-plane",
    version,
    about = "Procurator control plane"
)]
struct Args {
    /// Address for Cap'n Proto RPC (port 0 picks a free port).
    #[arg(long, env = "PROCURATOR_LISTEN", default_value = schema::defaults::MASTER_ADDR)]
    listen: String,
    /// SQLite database; the tokens are kept beside it. Default: $PROCURATOR_HOME/control-plane.db.
    #[arg(long, env = "PROCURATOR_DB")]
    db: Option<PathBuf>,
    /// Address for /healthz and /metrics over HTTP (off unless given).
    #[arg(long, env = "PROCURATOR_HTTP")]
    http: Option<String>,
    /// A worker silent for this long is lost and its instances move.
    #[arg(long, env = "PROCURATOR_LEASE_MS", default_value_t = 10_000)]
    lease_ms: u64,
    /// How often workers report.
    #[arg(long, env = "PROCURATOR_HEARTBEAT_MS", default_value_t = 2_000)]
    heartbeat_ms: u64,
    /// fsync every commit (survives power loss, slower); the default survives process crashes.
    #[arg(long, env = "PROCURATOR_FULL_SYNC")]
    full_sync: bool,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if args.heartbeat_ms == 0 || args.lease_ms <= args.heartbeat_ms {
        anyhow::bail!(
            "--lease-ms ({}) must be longer than --heartbeat-ms ({}), or every worker is lost between two reports",
            args.lease_ms,
            args.heartbeat_ms
        );
    }
    let db = args
        .db
        .clone()
        .unwrap_or_else(schema::defaults::control_plane_db);
    let dir = db
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tokens = Tokens::load_or_create(&dir).context("cannot set up the access tokens")?;
    let store = SqliteStore::open(&db, args.full_sync).context("cannot open the database")?;
    let config = Config {
        lease: Duration::from_millis(args.lease_ms),
        heartbeat_interval: Duration::from_millis(args.heartbeat_ms),
    };
    let cluster = Cluster::load(store, config).context("cannot load the cluster state")?;

    // One thread: capnp-rpc objects are !Send, and SQLite commits in WAL mode are short.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let listener = TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        let generation = cluster.active_generation();
        let server = Server::new(cluster);
        // This line is read by scripts and tests to learn the port; keep its shape.
        println!("pcr-control-plane listening on {addr}");
        tracing::info!(
            db = %db.display(),
            generation,
            "operator token: {}, worker token: {}",
            dir.join(control_plane::auth::OPERATOR_TOKEN_FILE).display(),
            dir.join(control_plane::auth::WORKER_TOKEN_FILE).display()
        );
        if let Some(http) = &args.http {
            let snapshot = Arc::new(Mutex::new(String::new()));
            let http_listener = TcpListener::bind(http)
                .await
                .with_context(|| format!("cannot listen on {http}"))?;
            println!("pcr-control-plane http on {}", http_listener.local_addr()?);
            tokio::task::spawn_local(control_plane::http::render_every(
                Rc::clone(&server),
                snapshot.clone(),
                Duration::from_secs(1),
            ));
            tokio::spawn(control_plane::http::serve(http_listener, snapshot));
        }
        let fd_limit = raise_fd_limit();
        let max_connections = control_plane::rpc::max_connections(fd_limit);
        tracing::info!(fd_limit, max_connections, "open files");
        // Leases are checked to a tenth of their length; rollouts look at reports within 200 ms.
        let period = (config.lease / 10).clamp(Duration::from_millis(50), Duration::from_millis(200));
        tokio::task::spawn_local(Rc::clone(&server).expire_leases_every(period));
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = control_plane::rpc::serve(listener, server, tokens, max_connections) => r.context("accepting connections failed"),
            _ = tokio::signal::ctrl_c() => { tracing::info!("interrupted; every acknowledged change is on disk"); Ok(()) }
            _ = term.recv() => { tracing::info!("terminated; every acknowledged change is on disk"); Ok(()) }
        }
    })
}

/// Raises the soft limit on open files to the hard one (a fleet's workers each hold a
/// connection) and answers the limit now in force.
fn raise_fd_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => limit = raised,
            Err(e) => tracing::warn!(error = %e, "cannot raise the open files limit"),
        }
    }
    limit.current.unwrap_or(u64::MAX)
}
