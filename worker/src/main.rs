//! `pcr-worker`: runs the instances the control plane assigns to this machine.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use schema::model::{Backend, WorkerInfo};
use worker::agent::{self, AgentConfig};
use worker::closure::{CacheConfig, Fetcher};
use worker::config::{self, AccelChoice, BackendSettings};
use worker::procfs;
use worker::reconcile::{Reconciler, Runtime};
use worker::state::StateDir;

#[derive(Parser, Debug)]
#[command(
    name = "pcr-worker",
    version,
    about = "Procurator worker: runs the microVMs and processes the control plane assigns to this machine"
)]
struct Args {
    /// Control plane address (host:port).
    #[arg(long, env = "PROCURATOR_MASTER", default_value = "127.0.0.1:7000")]
    master: String,
    /// Worker token (the control plane writes it to `worker.token` beside its database).
    #[arg(
        long,
        env = "PROCURATOR_WORKER_TOKEN",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    token: Option<String>,
    /// File holding the worker token.
    #[arg(long, env = "PROCURATOR_WORKER_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Worker id; defaults to the host name.
    #[arg(long, env = "PROCURATOR_WORKER_ID")]
    id: Option<String>,
    /// Label `key=value` the scheduler can match constraints against (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// vCPUs offered to the scheduler; defaults to the CPUs this process may use.
    #[arg(long)]
    cpu: Option<u32>,
    /// Memory offered to the scheduler in MiB; defaults to MemTotal from /proc/meminfo.
    #[arg(long)]
    memory_mb: Option<u64>,
    /// State directory (instance folders, logs, sockets); defaults to
    /// ~/.local/state/procurator/worker-<id>.
    #[arg(long, env = "PROCURATOR_WORKER_STATE")]
    state_dir: Option<PathBuf>,
    /// Binary cache closures are copied from (`nix copy --from`).
    #[arg(long, env = "PROCURATOR_CACHE_URL")]
    cache_url: Option<String>,
    /// Public key the cache signs with (`name:base64`); the only key trusted for copies.
    #[arg(long, env = "PROCURATOR_CACHE_PUBLIC_KEY")]
    cache_public_key: Option<String>,
    /// Backends to offer, comma-separated, instead of probing (process, qemu, cloud-hypervisor).
    #[arg(long, value_delimiter = ',')]
    backends: Option<Vec<Backend>>,
    /// QEMU acceleration: auto (KVM if a test boot works), kvm or tcg.
    #[arg(long, default_value = "auto")]
    accel: AccelChoice,
    /// QEMU binary.
    #[arg(long, default_value = "qemu-system-x86_64")]
    qemu: String,
    /// virtiofsd binary (shares /nix/store into guests).
    #[arg(long, default_value = "/usr/lib/qemu/virtiofsd")]
    virtiofsd: PathBuf,
    /// cloud-hypervisor binary.
    #[arg(long, default_value = "cloud-hypervisor")]
    cloud_hypervisor: String,
    /// Seconds a guest or process gets to shut down before it is killed.
    #[arg(long, default_value_t = 10)]
    stop_grace_secs: u64,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("label `{s}` must look like key=value")),
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .init();
    let args = Args::parse();

    let token = match (&args.token, &args.token_file) {
        (Some(token), _) => token.trim().to_string(),
        (None, Some(file)) => std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the worker token from {}", file.display()))?
            .trim()
            .to_string(),
        (None, None) => bail!(
            "no worker token: pass --token-file <control-plane-dir>/worker.token (or --token / PROCURATOR_WORKER_TOKEN)"
        ),
    };
    let hostname = procfs::hostname();
    let id = args.id.clone().unwrap_or_else(|| hostname.clone());
    schema::model::validate_name(&id)
        .map_err(|e| anyhow::anyhow!("worker id `{id}` is not usable: {e}; pass --id"))?;
    let state_dir = match &args.state_dir {
        Some(dir) => dir.clone(),
        None => {
            let home = std::env::var_os("HOME").context("HOME is not set; pass --state-dir")?;
            PathBuf::from(home).join(format!(".local/state/procurator/worker-{id}"))
        }
    };
    let state = StateDir::open(&state_dir)
        .with_context(|| format!("cannot use state directory {}", state_dir.display()))?;

    let (drivers, notes) = config::drivers(&BackendSettings {
        only: args.backends.clone(),
        qemu: args.qemu.clone(),
        virtiofsd: args.virtiofsd.clone(),
        cloud_hypervisor: args.cloud_hypervisor.clone(),
        accel: args.accel,
    });
    for note in &notes {
        tracing::info!("backend {note}");
    }
    let (mem_total, _) = procfs::meminfo().unwrap_or((0, 0));
    let info = WorkerInfo {
        id: id.clone(),
        labels: args.labels.iter().cloned().collect(),
        cpu: args.cpu.unwrap_or_else(procfs::cpu_count),
        memory_mb: args.memory_mb.unwrap_or(mem_total / (1024 * 1024)),
        backends: drivers.backends(),
        hostname,
        version: env!("CARGO_PKG_VERSION").to_string(),
    };
    tracing::info!(
        "worker {} offers {} vCPUs, {} MiB, backends {:?}; state in {}",
        info.id,
        info.cpu,
        info.memory_mb,
        info.backends.iter().map(|b| b.as_str()).collect::<Vec<_>>(),
        state_dir.display()
    );

    let fetcher = Fetcher::new(CacheConfig {
        url: args.cache_url.clone(),
        public_key: args.cache_public_key.clone(),
    });
    let mut runtime = Runtime::new(state, fetcher, drivers);
    runtime.stop_grace = Duration::from_secs(args.stop_grace_secs);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let mut reconciler = Reconciler::new(Arc::new(runtime));
        let adopted = reconciler
            .adopt_existing()
            .context("cannot scan the state directory")?;
        if adopted > 0 {
            tracing::info!("re-adopted {adopted} running instances");
        }
        let config = AgentConfig {
            master: args.master.clone(),
            token,
            info,
            max_backoff: Duration::from_secs(5),
            rpc_timeout: Duration::from_secs(10),
        };
        tokio::select! {
            _ = agent::run(config, reconciler) => {}
            _ = support::signal::shutdown_signal() => {
                // Instances are detached on purpose: they keep running and the next worker
                // start re-adopts them.
                tracing::info!("worker stopping; instances keep running and will be re-adopted");
            }
        }
        anyhow::Ok(())
    })
}
