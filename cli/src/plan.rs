//! `pcr plan`: evaluate a cluster flake (or read a blueprint) and say what publishing it would
//! change against the active generation — VMs added, removed, restarted, unchanged; where the
//! scheduler would put each instance (the control plane answers that over RPC, against its
//! workers as they are); which closures the cache does not have yet. Nothing is published.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use schema::diff::{self, Change, Plan};
use schema::model::{Blueprint, ClusterStatus, Placement};

use crate::conn::ConnArgs;
use crate::table::{short_path, Table};

#[derive(Args, Debug, Clone)]
pub struct PlanArgs {
    /// The cluster flake to evaluate (`nix eval --json DIR#blueprintJSON`).
    #[arg(long, default_value = ".", conflicts_with = "blueprint")]
    pub flake: PathBuf,
    /// A blueprint JSON file instead of a flake.
    #[arg(long)]
    pub blueprint: Option<PathBuf>,
    /// Binary cache to check the closures against (default: the cache `pcr up` started).
    #[arg(long, env = "PROCURATOR_CACHE_URL")]
    pub cache: Option<String>,
    #[arg(long)]
    pub json: bool,
}

/// Where `pcr up` notes its cache's URL for other commands.
pub fn cache_url_file() -> PathBuf {
    schema::defaults::state_dir().join("cache.url")
}

async fn evaluate(args: &PlanArgs) -> anyhow::Result<Blueprint> {
    if let Some(path) = &args.blueprint {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        return Blueprint::from_json(&text)
            .with_context(|| format!("{} is not a usable blueprint", path.display()));
    }
    let flake = std::path::absolute(&args.flake).context("cannot resolve the flake directory")?;
    let mut cmd = support::nix::command();
    cmd.args(["eval", "--json"])
        .arg(format!("{}#blueprintJSON", flake.display()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let out = cmd.output().await.context("cannot run nix")?;
    if !out.status.success() {
        let stderr: Vec<String> = String::from_utf8_lossy(&out.stderr)
            .lines()
            .map(support::nix::strip_ansi)
            .collect();
        bail!(
            "nix eval {}#blueprintJSON failed: {}",
            flake.display(),
            support::nix::first_error(&stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Blueprint::from_json(&text).context("the flake's blueprintJSON is not a usable blueprint")
}

/// Store paths of `paths` the binary cache at `cache_url` does not have (a `HEAD` of each
/// narinfo, as nix asks).
pub async fn missing_from_cache(
    cache_url: &str,
    paths: &[String],
) -> Result<Vec<String>, reqwest::Error> {
    let http = reqwest::Client::new();
    let base = cache_url.trim_end_matches('/');
    let mut missing = Vec::new();
    for path in paths {
        let Some(hash) = path.strip_prefix("/nix/store/").and_then(|b| b.get(..32)) else {
            missing.push(path.clone());
            continue;
        };
        let status = http
            .head(format!("{base}/{hash}.narinfo"))
            .send()
            .await?
            .status();
        if !status.is_success() {
            missing.push(path.clone());
        }
    }
    Ok(missing)
}

pub async fn run(conn: &ConnArgs, args: &PlanArgs) -> anyhow::Result<()> {
    let new = evaluate(args).await?;
    let op = crate::conn::connect(conn).await?;
    let status = op.cluster_status().await?;
    let active = if status.active_generation > 0 {
        Some(op.generation(status.active_generation).await?.1)
    } else {
        None
    };
    let plan = diff::diff(active.as_ref(), &new);
    let current: BTreeMap<String, String> = status
        .instances
        .iter()
        .filter(|i| !i.worker_id.is_empty())
        .map(|i| (i.instance_id.clone(), i.worker_id.clone()))
        .collect();
    let placement = op.plan_placement(&new.vms, &new.cluster).await?;
    let cache = args
        .cache
        .clone()
        .or_else(|| {
            std::fs::read_to_string(cache_url_file())
                .ok()
                .map(|s| s.trim().to_string())
        })
        .filter(|s| !s.is_empty());
    let closures: Vec<String> = {
        let mut c: Vec<String> = new.vms.iter().map(|v| v.closure.clone()).collect();
        c.sort();
        c.dedup();
        c
    };
    let missing = match &cache {
        Some(url) => Some(
            missing_from_cache(url, &closures)
                .await
                .with_context(|| format!("cannot ask the cache at {url}"))?,
        ),
        None => None,
    };
    if args.json {
        let value = serde_json::json!({
            "activeGeneration": status.active_generation,
            "plan": plan,
            "placement": { "assigned": placement.assigned, "unplaced": placement.unplaced },
            "cache": cache,
            "missingFromCache": missing,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    print!(
        "{}",
        render(
            &plan,
            &status,
            &current,
            &placement,
            cache.as_deref(),
            missing.as_deref()
        )
    );
    Ok(())
}

fn change_text(c: &Change) -> (char, String) {
    match c {
        Change::Added => ('+', "add".into()),
        Change::Removed => ('-', "remove".into()),
        Change::Restarted { fields } => ('~', format!("restart ({})", fields.join(", "))),
        Change::Scaled { from, to } => ('^', format!("scale {from} → {to}")),
        Change::Updated { fields } => (
            '*',
            format!("update ({}); nothing restarts", fields.join(", ")),
        ),
        Change::Unchanged => ('=', "unchanged".into()),
    }
}

pub fn render(
    plan: &Plan,
    status: &ClusterStatus,
    current: &BTreeMap<String, String>,
    placement: &Placement,
    cache: Option<&str>,
    missing: Option<&[String]>,
) -> String {
    let mut out = String::new();
    if status.active_generation == 0 {
        out.push_str("no generation is active: publishing would make generation 1\n\n");
    } else if plan.identical {
        out.push_str(&format!(
            "no changes: generation {} (commit {}) already runs this blueprint\n",
            status.active_generation,
            status.commit.chars().take(12).collect::<String>()
        ));
        return out;
    } else {
        out.push_str(&format!(
            "against generation {} (commit {}):\n\n",
            status.active_generation,
            status.commit.chars().take(12).collect::<String>()
        ));
    }
    let mut t = Table::new(&["", "VM", "CHANGE", "REPLICAS", "CLOSURE"]);
    for vm in &plan.vms {
        let (mark, text) = change_text(&vm.change);
        let closure = match (&vm.change, vm.old_closure.as_str(), vm.new_closure.as_str()) {
            (Change::Removed, old, _) => short_path(old),
            (_, old, new) if !old.is_empty() && old != new => {
                format!("{} → {}", short_path(old), short_path(new))
            }
            (_, _, new) => short_path(new),
        };
        t.row(vec![
            mark.to_string(),
            vm.name.clone(),
            text,
            vm.replicas.to_string(),
            closure,
        ]);
    }
    out.push_str(&t.render());
    if plan.cluster_changed {
        out.push_str("cluster settings (name or placement strategy) change\n");
    }

    out.push_str("\nplacement:\n");
    if placement.assigned.is_empty() && placement.unplaced.is_empty() {
        out.push_str("  no instances\n");
    }
    for (instance, worker) in &placement.assigned {
        let note = match current.get(instance) {
            Some(w) if w == worker => "stays",
            Some(_) => "moves",
            None => "new",
        };
        out.push_str(&format!("  {instance} → {worker} ({note})\n"));
    }
    for (instance, reason) in &placement.unplaced {
        out.push_str(&format!("  {instance} cannot be placed: {reason}\n"));
    }

    match (cache, missing) {
        (Some(url), Some([])) => {
            out.push_str(&format!("\nevery closure is in the cache at {url}\n"))
        }
        (Some(url), Some(paths)) => {
            out.push_str(&format!(
                "\nclosures not in the cache at {url} yet (CI pushes them):\n"
            ));
            for p in paths {
                out.push_str(&format!("  {p}\n"));
            }
        }
        _ => out.push_str("\nno cache to check the closures against (pass --cache URL)\n"),
    }
    let count = |f: fn(&Change) -> bool| plan.count(f);
    out.push_str(&format!(
        "\n{} to add, {} to restart, {} to scale, {} to remove, {} unchanged; nothing was published\n",
        count(|c| matches!(c, Change::Added)),
        count(|c| matches!(c, Change::Restarted { .. })),
        count(|c| matches!(c, Change::Scaled { .. })),
        count(|c| matches!(c, Change::Removed)),
        count(|c| matches!(c, Change::Unchanged | Change::Updated { .. })),
    ));
    out
}
