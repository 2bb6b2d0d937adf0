//! `pcr-ci`: serve repositories and run a pipeline for every push; `pcr-ci repo create` makes a
//! repository; `pcr-ci notify` is what the repositories' post-receive hooks run.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use ci_service::config::{self, CacheTarget, Config};
use ci_service::repos::HookTarget;
use ci_service::server::{self, Ci, PushReport, RefUpdate};
use ci_service::Store;
use clap::{Args, Parser, Subcommand};
use schema::ci::client::{self, CiClient};

#[derive(Parser)]
#[command(
    name = "pcr-ci",
    version,
    about = "Procurator CI: git push → nix flake check → eval → build → push to the cache → publishState",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Args)]
struct StateArgs {
    /// State directory: the pipeline database, the repositories, checkouts.
    #[arg(long, env = "PCR_CI_STATE_DIR")]
    state_dir: Option<PathBuf>,
}

impl StateArgs {
    fn dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(config::default_state_dir)
    }
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    state: StateArgs,
    /// Address of the API, the webhook and the hooks' endpoint; port 0 picks a free port (the
    /// address is printed and written to ci.url in the state directory).
    #[arg(long, env = "PCR_CI_LISTEN", default_value = config::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Control plane address.
    #[arg(long, env = "PROCURATOR_MASTER", default_value = schema::defaults::MASTER_ADDR)]
    master: String,
    /// Operator token of the control plane.
    #[arg(long, env = "PROCURATOR_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// File with the operator token (default: operator.token in Procurator's state directory).
    #[arg(long, env = "PROCURATOR_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Binary cache closures are pushed to (`pcr-cache serve`); without one, nothing is pushed.
    #[arg(long, env = "PROCURATOR_CACHE_URL")]
    cache_url: Option<String>,
    /// Upload token of the cache.
    #[arg(long, env = "PCR_CI_CACHE_TOKEN", hide_env_values = true)]
    cache_token: Option<String>,
    /// File with the upload token of the cache.
    #[arg(long, env = "PCR_CI_CACHE_TOKEN_FILE")]
    cache_token_file: Option<PathBuf>,
    /// Compression of pushed NARs: zstd, xz or none.
    #[arg(long, default_value = "zstd", value_parser = ["zstd", "xz", "none"])]
    cache_compression: String,
    /// File with the secret Gitea/GitHub sign webhook deliveries with; without it the webhook
    /// refuses every delivery.
    #[arg(long, env = "PCR_CI_WEBHOOK_SECRET_FILE")]
    webhook_secret_file: Option<PathBuf>,
    /// Seconds between polls of repositories that have a remote; 0 turns polling off.
    #[arg(long, default_value_t = 60)]
    poll_interval_secs: u64,
    /// Generation pins kept in the cache.
    #[arg(long, default_value_t = 10)]
    keep_pins: u64,
    /// Longest a rollout is watched after a publish, in seconds.
    #[arg(long, default_value_t = 600)]
    rollout_timeout_secs: u64,
    /// Pipelines of different repositories that may run at once.
    #[arg(long, default_value_t = 2)]
    jobs: usize,
}

#[derive(Subcommand)]
enum Command {
    /// Repositories.
    Repo {
        #[command(subcommand)]
        command: RepoCommand,
    },
    /// Report a push to the running pcr-ci (what post-receive hooks run; reads the ref updates
    /// on stdin).
    Notify {
        #[command(flatten)]
        state: StateArgs,
        #[arg(long)]
        repo: String,
    },
}

#[derive(Subcommand)]
enum RepoCommand {
    /// Create a bare repository to push to (or a mirror of --remote), with its hook.
    Create {
        #[command(flatten)]
        state: StateArgs,
        name: String,
        /// Fetch from here on webhook deliveries and polls.
        #[arg(long)]
        remote: Option<String>,
        /// Branch whose commits are deployed.
        #[arg(long, default_value = server::DEFAULT_BRANCH)]
        branch: String,
    },
    /// The repositories with their paths.
    List {
        #[command(flatten)]
        state: StateArgs,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Notify { state, repo }) = &cli.command {
        // A hook must never fail a push that git already accepted: report and move on.
        notify(&state.dir(), repo);
        return Ok(());
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        None => runtime.block_on(serve(cli.serve)),
        Some(Command::Repo { command }) => runtime.block_on(repo(command)),
        Some(Command::Notify { .. }) => Ok(()),
    }
}

fn hook_target(state_dir: &std::path::Path) -> anyhow::Result<HookTarget> {
    Ok(HookTarget {
        exe: std::env::current_exe().context("cannot find this executable for the hooks")?,
        state_dir: std::path::absolute(state_dir)
            .with_context(|| format!("cannot resolve {}", state_dir.display()))?,
    })
}

async fn repo(command: RepoCommand) -> anyhow::Result<()> {
    match command {
        RepoCommand::Create {
            state,
            name,
            remote,
            branch,
        } => {
            let dir = state.dir();
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let store = Store::open(&dir.join("ci.db"))?;
            let hook = hook_target(&dir)?;
            let repos = config::repos_dir(&hook.state_dir);
            let created =
                server::create_repository(&repos, &store, &hook, &name, remote, &branch).await?;
            let path = ci_service::repos::bare_path(&repos, &name);
            if created {
                println!(
                    "created {} (deploys branch {branch}); push with: git push {} {branch}",
                    name,
                    path.display()
                );
            } else {
                println!("{name} exists at {}", path.display());
            }
            Ok(())
        }
        RepoCommand::List { state } => {
            let dir = state.dir();
            let store = Store::open(&dir.join("ci.db"))?;
            for r in store.repositories()? {
                println!(
                    "{}\t{}\t{}\t{}",
                    r.name,
                    r.branch,
                    ci_service::repos::bare_path(&config::repos_dir(&dir), &r.name).display(),
                    r.remote.as_deref().unwrap_or("-")
                );
            }
            Ok(())
        }
    }
}

fn read_secret(
    value: Option<String>,
    file: Option<&PathBuf>,
    what: &str,
) -> anyhow::Result<Option<String>> {
    if let Some(v) = value {
        return Ok(Some(v.trim().to_string()));
    }
    let Some(file) = file else { return Ok(None) };
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the {what} from {}", file.display()))?;
    let text = text.trim();
    if text.is_empty() {
        bail!("the {what} file {} is empty", file.display());
    }
    Ok(Some(text.to_string()))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let state_dir =
        std::path::absolute(args.state.dir()).context("cannot resolve the state directory")?;
    std::fs::create_dir_all(config::repos_dir(&state_dir))
        .with_context(|| format!("cannot create {}", state_dir.display()))?;
    let token_file = args
        .token_file
        .clone()
        .unwrap_or_else(|| schema::defaults::state_dir().join("operator.token"));
    let operator_token = read_secret(args.token.clone(), Some(&token_file), "operator token")?
        .context("no operator token")?;
    let cache = match &args.cache_url {
        Some(url) => {
            let token = read_secret(
                args.cache_token.clone(),
                args.cache_token_file.as_ref(),
                "cache upload token",
            )?
            .context("--cache-url needs the cache's upload token: --cache-token-file FILE")?;
            let parsed = reqwest::Url::parse(url)
                .with_context(|| format!("--cache-url {url} is not a URL"))?;
            let host = parsed.host_str().context("--cache-url has no host")?;
            // nix sends the token from a netrc file: the password for the cache's host.
            config::write_private(
                &state_dir.join("netrc"),
                &format!("machine {host} login pcr-ci password {token}\n"),
            )
            .context("cannot write the netrc file for nix")?;
            Some(CacheTarget {
                url: url.trim_end_matches('/').to_string(),
                upload_token: token,
                compression: args.cache_compression.clone(),
            })
        }
        None => None,
    };
    let webhook_secret = read_secret(None, args.webhook_secret_file.as_ref(), "webhook secret")?;
    if webhook_secret.is_none() {
        tracing::info!("no --webhook-secret-file: the webhook refuses every delivery");
    }
    let hook_token = config::read_or_create_secret(&config::hook_token_file(&state_dir))
        .context("cannot create the hook token")?;
    let exe = std::env::current_exe().context("cannot find this executable for the hooks")?;
    let config = Config {
        state_dir: state_dir.clone(),
        listen: args.listen,
        master: args.master.clone(),
        operator_token,
        cache,
        poll_interval: Duration::from_secs(args.poll_interval_secs),
        webhook_secret,
        keep_pins: args.keep_pins,
        rollout_timeout: Duration::from_secs(args.rollout_timeout_secs),
        jobs: args.jobs,
        exe,
    };
    let store = Arc::new(Store::open(&config.db_path())?);
    let _ = std::fs::remove_dir_all(config.work_dir());

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener
        .local_addr()
        .context("cannot read the bound address")?;
    let url = format!("http://{addr}");
    config::write_private(&config::url_file(&state_dir), &format!("{url}\n"))
        .context("cannot write ci.url")?;

    let ci = Ci::new(config, Arc::clone(&store), hook_token);
    ci.recover()
        .await
        .context("cannot resume from the state directory")?;
    tokio::spawn(Arc::clone(&ci).poll_forever());
    tracing::info!(%url, state = %state_dir.display(), master = %args.master, "serving");
    // The address on stdout lets a supervisor that asked for port 0 find the port.
    let mut stdout = std::io::stdout();
    writeln!(stdout, "pcr-ci listening on {url}")?;
    stdout.flush()?;

    axum::serve(listener, server::router(ci))
        .with_graceful_shutdown(support::signal::shutdown_signal())
        .await
        .context("serving HTTP failed")?;
    // Runs in progress die with this process (their nix and git children too); record that,
    // so the next start does not wait for them.
    let interrupted = store.interrupt_running().unwrap_or_default();
    tracing::info!(interrupted = interrupted.len(), "stopped");
    std::process::exit(0);
}

/// The post-receive hook: reads `<old> <new> <ref>` lines and reports them. Its output
/// appears in the pusher's terminal (git prefixes it with `remote:`).
fn notify(state_dir: &std::path::Path, repo: &str) {
    let mut updates = Vec::new();
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        let mut parts = line.split_whitespace();
        if let (Some(old), Some(new), Some(ref_name)) = (parts.next(), parts.next(), parts.next()) {
            updates.push(RefUpdate {
                old: old.into(),
                new: new.into(),
                ref_name: ref_name.into(),
            });
        }
    }
    let Some(url) = client::url_from_state_dir(state_dir) else {
        println!(
            "pcr-ci: not running (no ci.url in {}); the push is built when it starts",
            state_dir.display()
        );
        return;
    };
    let token = std::fs::read_to_string(config::hook_token_file(state_dir)).unwrap_or_default();
    let report = PushReport {
        repository: repo.to_string(),
        updates,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            println!("pcr-ci: cannot report the push: {e}");
            return;
        }
    };
    let client = CiClient::new(&url);
    match runtime.block_on(client.report_push(token.trim(), &report)) {
        Ok(queued) if queued.is_empty() => println!("pcr-ci: nothing to build in this push"),
        Ok(queued) => {
            for q in queued {
                let short = q.commit.get(..12).unwrap_or(&q.commit);
                let what = if q.deploy { "deploy" } else { "checks" };
                println!(
                    "pcr-ci: pipeline {} queued ({what}) for {} at {short}; follow it with `pcr pipelines logs {} --follow`",
                    q.id, q.ref_name, q.id
                );
            }
        }
        Err(e) => println!(
            "pcr-ci: cannot report the push to {url}: {}; it is built when pcr-ci starts again",
            ci_service::pipeline::error_chain(&e)
        ),
    }
}
