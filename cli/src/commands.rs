//! The `pcr-test` / `pcr` command line: its arguments, and the dispatch of each command to
//! the module that carries it out. Connecting lives in [`crate::conn`], rendering in
//! [`crate::render`].

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use schema::model::*;
use sha2::{Digest, Sha256};

use crate::conn::{connect, ConnArgs};
use crate::render::{render_instances, render_rollouts, render_status, render_workers};
use crate::table::{ago, duration, short_path, Table};
use support::now_ms;

#[derive(Parser, Debug)]
#[command(
    name = "pcr-test",
    version,
    about = "Talk to a Procurator control plane",
    long_about = "Talk to a Procurator control plane.\n\nThe control plane address comes from --master or PROCURATOR_MASTER; the operator token from --token, PROCURATOR_TOKEN, --token-file, or the operator.token file beside the control plane's database in the default state directory."
)]
pub struct Cli {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// The interactive terminal UI: the whole cluster, live, navigable by keyboard.
    Tui(crate::interactive::TuiArgs),
    /// Publish desired state.
    State {
        #[command(subcommand)]
        command: StateCommand,
    },
    /// Cluster overview.
    Control {
        #[command(subcommand)]
        command: ControlCommand,
    },
    /// Workers.
    Workers {
        #[command(subcommand)]
        command: WorkersCommand,
    },
    /// VM instances.
    Vms {
        #[command(subcommand)]
        command: VmsCommand,
    },
    /// Published generations.
    Generations {
        #[command(subcommand)]
        command: GenerationsCommand,
    },
    /// Make an earlier generation active again.
    Rollback {
        /// Generation to return to (default: the last one that rolled out completely).
        #[arg(long)]
        to: Option<u64>,
    },
    /// Rollouts of the active generation.
    Rollout {
        #[command(subcommand)]
        command: RolloutCommand,
    },
    /// Cluster events; `--follow` streams new ones as they happen.
    Events {
        /// Keep printing events as they happen.
        #[arg(short, long)]
        follow: bool,
        /// How many past events to show first.
        #[arg(short = 'n', long, default_value_t = 20)]
        last: u32,
        #[arg(long)]
        json: bool,
    },
    /// pcr-ci's pipeline runs: list, show (steps, push → healthy by phase), logs.
    Pipelines {
        #[command(flatten)]
        ci: crate::pipelines::CiArgs,
        #[command(subcommand)]
        command: crate::pipelines::PipelinesCommand,
    },
    /// Start a local cluster (control plane, cache, pcr-ci, workers), deploy the example
    /// through git, and follow it; Ctrl-C stops everything.
    Up(crate::up::UpArgs),
    /// What publishing a flake or blueprint would change, without publishing it.
    Plan(crate::plan::PlanArgs),
}

#[derive(Subcommand, Debug)]
pub enum StateCommand {
    /// Publish a generation: a blueprint file, or N generated test VM specs.
    Publish {
        /// Commit the generation comes from.
        #[arg(short, long)]
        commit: String,
        /// Generation number; must be newer than the active one.
        #[arg(short, long)]
        generation: u64,
        /// Intent hash (default: the blueprint's content hash).
        #[arg(short, long)]
        intent_hash: Option<String>,
        /// Number of generated test VM specs (process workloads with placeholder closures).
        #[arg(
            short = 'n',
            long,
            conflicts_with = "blueprint",
            required_unless_present = "blueprint"
        )]
        count: Option<u32>,
        /// Blueprint JSON, as `nix eval --json .#blueprintJSON` prints it.
        #[arg(long)]
        blueprint: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ControlCommand {
    /// Active generation, convergence, workers and VMs.
    Status {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum WorkersCommand {
    /// All workers with their state and free resources.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One worker with what it reports.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// No new instances on this worker; its instances stay.
    Cordon { id: String },
    /// Take new instances again.
    Uncordon { id: String },
    /// Move the worker's instances elsewhere, at most maxUnavailable of each VM at a time.
    Drain { id: String },
}

#[derive(Subcommand, Debug)]
pub enum RolloutCommand {
    /// Where each VM's rollout stands.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Let a canary rollout continue to every instance.
    Promote { vm: String },
}

#[derive(Subcommand, Debug)]
pub enum VmsCommand {
    /// Every instance with its worker, phase, health and closures.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Restart one instance where it runs.
    Restart { instance: String },
}

#[derive(Subcommand, Debug)]
pub enum GenerationsCommand {
    /// Newest first.
    List {
        #[arg(short = 'n', long, default_value_t = 20)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// One generation's blueprint, as JSON.
    Show { generation: u64 },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    // pcr-ci and the local cluster: these open their own connections, if any.
    match &cli.command {
        Command::Pipelines { ci, command } => {
            return crate::pipelines::run(&cli.conn, ci, command).await
        }
        Command::Up(args) => return crate::up::run(&cli.conn, args).await,
        Command::Plan(args) => return crate::plan::run(&cli.conn, args).await,
        // The TUI keeps its own connection, which it watches and re-opens when it drops.
        Command::Tui(args) => return crate::interactive::run(&cli.conn, args).await,
        _ => {}
    }
    let op = connect(&cli.conn).await?;
    match cli.command {
        Command::State {
            command:
                StateCommand::Publish {
                    commit,
                    generation,
                    intent_hash,
                    count,
                    blueprint,
                },
        } => {
            let blueprint = match (blueprint, count) {
                (Some(path), _) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    Blueprint::from_json(&text)
                        .with_context(|| format!("{} is not a usable blueprint", path.display()))?
                }
                (None, Some(n)) => test_blueprint(n),
                (None, None) => bail!("give --blueprint FILE or -n COUNT"),
            };
            let intent = intent_hash.unwrap_or_else(|| blueprint.intent_hash());
            let p = op
                .publish_state(
                    &commit,
                    generation,
                    &intent,
                    &blueprint.vms,
                    &blueprint.cluster,
                )
                .await?;
            if p.changed {
                println!(
                    "published generation {} ({} instances placed, {} unplaced)",
                    p.generation, p.placed, p.unplaced
                );
            } else {
                println!(
                    "generation {} was already active with this content; nothing changed",
                    p.generation
                );
            }
        }
        Command::Control {
            command: ControlCommand::Status { json },
        } => {
            let status = op.cluster_status().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", render_status(&status, now_ms()));
            }
        }
        Command::Workers { command } => match command {
            WorkersCommand::Cordon { id } => println!("{}", op.cordon(&id).await?),
            WorkersCommand::Uncordon { id } => println!("{}", op.uncordon(&id).await?),
            WorkersCommand::Drain { id } => println!("{}", op.drain(&id).await?),
            WorkersCommand::List { json } => {
                let status = op.cluster_status().await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&status.workers)?);
                } else {
                    print!("{}", render_workers(&status.workers, now_ms()));
                }
            }
            WorkersCommand::Show { id, json } => {
                let w = op.worker(&id).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&w)?);
                } else {
                    print!("{}", render_workers(std::slice::from_ref(&w), now_ms()));
                    let labels: Vec<String> = w
                        .info
                        .labels
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    println!(
                        "\nlabels: {}\nbackends: {}\nobserved generation: {}",
                        if labels.is_empty() {
                            "-".to_string()
                        } else {
                            labels.join(", ")
                        },
                        w.info.backend_names(", "),
                        w.observed_generation
                    );
                    if !w.instances.is_empty() {
                        let mut t = Table::new(&[
                            "INSTANCE", "PHASE", "HEALTH", "CLOSURE", "UPTIME", "MESSAGE",
                        ]);
                        for r in &w.instances {
                            t.row(vec![
                                r.instance_id.clone(),
                                r.phase.to_string(),
                                r.health.to_string(),
                                short_path(&r.closure),
                                duration(r.uptime_ms),
                                r.message.clone(),
                            ]);
                        }
                        print!("\n{}", t.render());
                    }
                }
            }
        },
        Command::Rollback { to } => println!("{}", op.rollback(to.unwrap_or(0)).await?),
        Command::Rollout {
            command: RolloutCommand::Promote { vm },
        } => println!("{}", op.promote(&vm).await?),
        Command::Rollout {
            command: RolloutCommand::Status { json },
        } => {
            let status = op.cluster_status().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status.rollouts)?);
            } else {
                print!("{}", render_rollouts(&status));
            }
        }
        Command::Vms {
            command: VmsCommand::List { json },
        } => {
            let status = op.cluster_status().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status.instances)?);
            } else {
                print!("{}", render_instances(&status.instances));
            }
        }
        Command::Vms {
            command: VmsCommand::Restart { instance },
        } => println!("{}", op.restart_instance(&instance).await?),
        Command::Generations { command } => match command {
            GenerationsCommand::List { limit, json } => {
                let list = op.generations(limit).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&list)?);
                } else {
                    let mut t = Table::new(&["GENERATION", "STATUS", "COMMIT", "VMS", "PUBLISHED"]);
                    let now = now_ms();
                    for g in &list {
                        t.row(vec![
                            g.generation.to_string(),
                            g.status.clone(),
                            g.commit.chars().take(12).collect(),
                            g.vm_count.to_string(),
                            ago(g.published_at_ms, now),
                        ]);
                    }
                    if t.is_empty() {
                        println!("no generation has been published yet");
                    } else {
                        print!("{}", t.render());
                    }
                }
            }
            GenerationsCommand::Show { generation } => {
                let (_, blueprint) = op.generation(generation).await?;
                println!("{}", blueprint.to_json());
            }
        },
        Command::Events { follow, last, json } => {
            let recent = op.events(0, 0).await?;
            let latest = recent.last().map(|e| e.seq).unwrap_or(0);
            let from = latest.saturating_sub(last as u64);
            let print = |e: &Event| {
                if json {
                    println!("{}", serde_json::to_string(e).unwrap_or_default());
                } else {
                    println!(
                        "{}  {:<20} {}",
                        clock(e.timestamp_ms),
                        e.kind.as_str(),
                        e.message
                    );
                }
            };
            if !follow {
                for e in op.events(from, last).await? {
                    print(&e);
                }
            } else {
                let (_sub, mut rx) = op.watch(from).await?;
                while let Some(batch) = rx.recv().await {
                    for e in &batch {
                        print(e);
                    }
                }
                bail!("the control plane closed the event stream");
            }
        }
        Command::Pipelines { .. } | Command::Up(_) | Command::Plan(_) | Command::Tui(_) => {
            unreachable!("handled before connecting")
        }
    }
    Ok(())
}

/// `HH:MM:SS` in UTC; enough to order what happened during a deploy.
fn clock(ms: u64) -> String {
    let s = (ms / 1000) % 86400;
    format!("{:02}:{:02}:{:02}", s / 3600, (s % 3600) / 60, s % 60)
}

/// N process specs with placeholder closures: exercises scheduling and storage without nix.
pub fn test_blueprint(n: u32) -> Blueprint {
    let vms = (0..n)
        .map(|i| {
            let name = format!("test{i}");
            let digest = Sha256::digest(name.as_bytes());
            let alphabet = b"0123456789abcdfghijklmnpqrsvwxyz";
            let hash: String = digest
                .iter()
                .take(32)
                .map(|b| alphabet[(*b as usize) % 32] as char)
                .collect();
            VmSpec {
                memory_mb: 128,
                ..VmSpec::process(&name, &format!("/nix/store/{hash}-{name}"))
            }
        })
        .collect();
    Blueprint {
        cluster: ClusterSettings {
            name: "test".into(),
            strategy: PlacementStrategy::Spread,
        },
        vms,
    }
}
