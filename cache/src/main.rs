//! `pcr-cache`: run the binary cache, make its signing key, and maintain its storage.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use cache::signing::SecretKey;
use cache::{App, Auth, Cache, GcPolicy, StoreConfig};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "pcr-cache",
    version,
    about = "A Nix HTTP binary cache for Procurator clusters"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct StorageArgs {
    /// Directory holding the index and the NAR files.
    #[arg(long, env = "PCR_CACHE_STORAGE", default_value = "/var/lib/pcr-cache")]
    storage: PathBuf,
    /// The Nix store directory of the cached paths.
    #[arg(long, env = "PCR_CACHE_STORE_DIR", default_value = "/nix/store")]
    store_dir: String,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the cache over HTTP.
    Serve {
        /// Address to listen on; port 0 picks a free port (printed on stdout).
        #[arg(long, env = "PCR_CACHE_LISTEN", default_value = "127.0.0.1:5000")]
        listen: SocketAddr,
        #[command(flatten)]
        storage: StorageArgs,
        /// Secret key file (`nix key generate-secret` format, or `pcr-cache keygen`) used to
        /// sign every narinfo served. Without one, narinfos carry only the uploaders' signatures.
        #[arg(long, env = "PCR_CACHE_SIGNING_KEY")]
        signing_key: Option<PathBuf>,
        /// Token that allows uploads and pin changes (repeatable; comma-separated in the env).
        #[arg(long, env = "PCR_CACHE_UPLOAD_TOKENS", value_delimiter = ',')]
        upload_token: Vec<String>,
        /// File with upload tokens, one per line: keeps them out of `ps`.
        #[arg(long, env = "PCR_CACHE_UPLOAD_TOKEN_FILE")]
        upload_token_file: Option<PathBuf>,
        /// Token required for reads; when none is given, reads are public.
        #[arg(long, env = "PCR_CACHE_READ_TOKENS", value_delimiter = ',')]
        read_token: Vec<String>,
        /// Substituter priority announced in /nix-cache-info (lower is preferred;
        /// cache.nixos.org uses 40).
        #[arg(long, env = "PCR_CACHE_PRIORITY", default_value_t = 30)]
        priority: u32,
        /// How often to collect garbage; 0 turns periodic collection off.
        #[arg(long, env = "PCR_CACHE_GC_INTERVAL", default_value = "1h", value_parser = cache::gc::parse_duration)]
        gc_interval: Duration,
        /// Paths neither pinned nor uploaded or downloaded within this window are collected.
        #[arg(long, env = "PCR_CACHE_RETENTION", default_value = "30d", value_parser = cache::gc::parse_duration)]
        retention: Duration,
    },
    /// Generate a signing key pair: NAME.secret and NAME.public in DIR.
    Keygen {
        /// Key name, conventionally the cache's host name and a number: `cache.example-1`.
        name: String,
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Delete what is neither pinned nor used within the retention window, closures kept whole.
    Gc {
        #[command(flatten)]
        storage: StorageArgs,
        #[arg(long, env = "PCR_CACHE_RETENTION", default_value = "30d", value_parser = cache::gc::parse_duration)]
        retention: Duration,
    },
    /// Pin store paths (and their closures) under NAME, replacing what NAME pinned before.
    Pin {
        #[command(flatten)]
        storage: StorageArgs,
        name: String,
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Remove the pin NAME.
    Unpin {
        #[command(flatten)]
        storage: StorageArgs,
        name: String,
    },
    /// List pins as JSON.
    Pins {
        #[command(flatten)]
        storage: StorageArgs,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve {
            listen,
            storage,
            signing_key,
            mut upload_token,
            upload_token_file,
            read_token,
            priority,
            gc_interval,
            retention,
        } => {
            if let Some(file) = upload_token_file {
                upload_token.extend(read_tokens(&file)?);
            }
            upload_token.retain(|t| !t.is_empty());
            if upload_token.is_empty() {
                tracing::warn!("no upload token: every upload will be refused");
            }
            let signing_key = signing_key
                .map(|path| {
                    SecretKey::read(&path)
                        .with_context(|| format!("cannot load signing key {}", path.display()))
                })
                .transpose()?;
            if signing_key.is_none() {
                tracing::warn!("no signing key: clients must trust the uploaders' keys");
            }
            let gc = (!gc_interval.is_zero()).then_some(GcPolicy {
                interval: gc_interval,
                retention,
            });
            serve(
                listen,
                storage,
                signing_key,
                &upload_token,
                &read_token,
                priority,
                gc,
            )
        }
        Command::Keygen { name, out } => keygen(&name, &out),
        Command::Gc { storage, retention } => {
            let report = open_maintenance(storage)?
                .gc(retention)
                .context("garbage collection failed")?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Command::Pin {
            storage,
            name,
            paths,
        } => Ok(open_maintenance(storage)?.pin(&name, &paths)?),
        Command::Unpin { storage, name } => Ok(open_maintenance(storage)?.unpin(&name)?),
        Command::Pins { storage } => {
            let pins: serde_json::Map<String, serde_json::Value> = open_maintenance(storage)?
                .pins()?
                .into_iter()
                .map(|(name, paths)| (name, paths.into()))
                .collect();
            println!("{}", serde_json::to_string_pretty(&pins)?);
            Ok(())
        }
    }
}

fn store_config(storage: StorageArgs, signing_key: Option<SecretKey>) -> StoreConfig {
    StoreConfig {
        storage: storage.storage,
        store_dir: storage.store_dir,
        signing_key,
        gc_grace: cache::DEFAULT_GC_GRACE,
    }
}

fn open_maintenance(storage: StorageArgs) -> anyhow::Result<Cache> {
    let dir = storage.storage.display().to_string();
    Cache::open_for_maintenance(store_config(storage, None))
        .with_context(|| format!("cannot open the cache in {dir}"))
}

fn read_tokens(file: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read token file {}", file.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect())
}

fn serve(
    listen: SocketAddr,
    storage: StorageArgs,
    signing_key: Option<SecretKey>,
    upload_tokens: &[String],
    read_tokens: &[String],
    priority: u32,
    gc: Option<GcPolicy>,
) -> anyhow::Result<()> {
    let dir = storage.storage.display().to_string();
    let cache = Cache::open(store_config(storage, signing_key))
        .with_context(|| format!("cannot open the cache in {dir}"))?;
    let app = Arc::new(App {
        cache: Arc::new(cache),
        priority,
        auth: Auth::new(upload_tokens, read_tokens),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener
            .local_addr()
            .context("cannot read the bound address")?;
        tracing::info!(%addr, storage = %dir, "serving");
        // The bound address on stdout lets a supervisor that asked for port 0 find the port.
        let mut stdout = std::io::stdout();
        writeln!(stdout, "listening on http://{addr}")?;
        stdout.flush()?;
        cache::serve(listener, app, gc, support::signal::shutdown_signal()).await?;
        tracing::info!("stopped");
        Ok(())
    })
}

fn keygen(name: &str, out: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;

    let key = SecretKey::generate(name)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let secret_path = out.join(format!("{name}.secret"));
    let public_path = out.join(format!("{name}.public"));
    for path in [&secret_path, &public_path] {
        if path.exists() {
            bail!(
                "{} already exists: remove it first if you mean to replace the key",
                path.display()
            );
        }
    }
    // Created 0600 from the start: the secret is never readable by others, not even briefly.
    let mut secret = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&secret_path)
        .with_context(|| format!("cannot create {}", secret_path.display()))?;
    secret.write_all(key.to_file_contents().as_bytes())?;
    std::fs::write(&public_path, key.public().to_string())
        .with_context(|| format!("cannot write {}", public_path.display()))?;
    println!("{}", key.public());
    eprintln!(
        "wrote {} and {}; give workers `trusted-public-keys = {}`",
        secret_path.display(),
        public_path.display(),
        key.public()
    );
    Ok(())
}
