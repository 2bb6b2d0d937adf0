//! `pcr-repohub`: serves repohub on :3001.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use repohub::cluster::{Target, TokenSource};

/// Procurator's web UI and JSON API.
#[derive(Parser, Debug)]
#[command(name = "pcr-repohub", version)]
struct Args {
    /// Address to listen on.
    #[arg(
        long,
        env = "PROCURATOR_REPOHUB_LISTEN",
        default_value = "127.0.0.1:3001"
    )]
    listen: SocketAddr,
    /// Repohub's database (default: repohub.db in the state directory).
    #[arg(long, env = "PROCURATOR_REPOHUB_DB")]
    db: Option<PathBuf>,
    /// Control plane address.
    #[arg(long, env = "PROCURATOR_MASTER", default_value = schema::defaults::MASTER_ADDR)]
    master: String,
    /// File holding the control plane's operator token (default: operator.token in the
    /// state directory).
    #[arg(long, env = "PROCURATOR_TOKEN_FILE")]
    operator_token_file: Option<PathBuf>,
    /// pcr-ci's URL (default: read from ci.url in pcr-ci's state directory).
    #[arg(long, env = "PROCURATOR_CI")]
    ci: Option<String>,
    /// pcr-ci's state directory, where its repositories live.
    #[arg(long, env = "PROCURATOR_CI_STATE_DIR")]
    ci_state_dir: Option<PathBuf>,
    /// The URL people reach repohub at. An https:// URL turns on Secure cookies.
    #[arg(long, env = "PROCURATOR_REPOHUB_URL")]
    public_url: Option<String>,
    /// Mark cookies Secure (set this when a TLS proxy serves repohub).
    #[arg(long, env = "PROCURATOR_REPOHUB_SECURE_COOKIES")]
    secure_cookies: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let state = schema::defaults::state_dir();
    let db = args.db.unwrap_or_else(|| state.join("repohub.db"));
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let secure = args.secure_cookies
        || args
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"));
    let config = repohub::Config {
        db,
        cluster: Target {
            addr: args.master,
            token: TokenSource::File(
                args.operator_token_file
                    .unwrap_or_else(|| state.join("operator.token")),
            ),
        },
        ci_url: args.ci,
        ci_state_dir: args
            .ci_state_dir
            .unwrap_or_else(schema::ci::default_state_dir),
        settings: repohub::Settings {
            secure_cookies: secure,
            public_url: args.public_url,
            ..Default::default()
        },
    };
    let app = repohub::App::start(config).context("cannot start repohub")?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr().context("no local address")?;
    // Tests and scripts read this line to find the port when started with :0.
    println!("pcr-repohub listening on http://{addr}");
    // With the peer address, failed sign-ins are counted per client (see repohub::throttle).
    axum::serve(
        listener,
        repohub::router(app).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .context("the server failed")?;
    Ok(())
}
