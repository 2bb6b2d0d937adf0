//! `pcr-test pipelines list|show|logs`: the runs of pcr-ci, read over its JSON API.

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use schema::ci::client::CiClient;
use schema::ci::{PipelineDetail, PipelineSummary, StepRecord, StepStatus};

use crate::table::{ago, Table};

#[derive(Args, Debug, Clone)]
pub struct CiArgs {
    /// pcr-ci's address (default: the ci.url a local pcr-ci wrote in the state directory,
    /// else http://127.0.0.1:7100).
    #[arg(long, global = true, env = "PROCURATOR_CI")]
    pub ci: Option<String>,
}

impl CiArgs {
    /// A client for pcr-ci, sending `token` (the cluster's operator token) as its API needs.
    pub fn client(&self, token: &str) -> CiClient {
        let url = self.ci.clone().unwrap_or_else(|| {
            schema::ci::client::url_from_state_dir(&schema::ci::default_state_dir())
                .unwrap_or_else(|| format!("http://{}", schema::ci::DEFAULT_LISTEN))
        });
        CiClient::new(&url).with_token(token)
    }
}

#[derive(Subcommand, Debug)]
pub enum PipelinesCommand {
    /// Runs, newest first.
    List {
        /// Only this repository's runs.
        #[arg(short, long)]
        repository: Option<String>,
        #[arg(short = 'n', long, default_value_t = 20)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// One run: its steps with timings, the time from push to healthy split by phase.
    Show {
        id: u64,
        #[arg(long)]
        json: bool,
    },
    /// A run's log; `--follow` keeps printing until the run ends.
    Logs {
        id: u64,
        #[arg(short, long)]
        follow: bool,
    },
}

pub async fn run(
    conn: &crate::conn::ConnArgs,
    ci: &CiArgs,
    command: &PipelinesCommand,
) -> anyhow::Result<()> {
    let client = ci.client(&crate::conn::operator_token(conn)?);
    match command {
        PipelinesCommand::List {
            repository,
            limit,
            json,
        } => {
            let list = client.pipelines(repository.as_deref(), *limit).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print!("{}", render_list(&list, support::now_ms()));
            }
        }
        PipelinesCommand::Show { id, json } => {
            let detail = client.pipeline(*id).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&detail)?);
            } else {
                print!("{}", render_detail(&detail, support::now_ms()));
                if detail.summary.status == schema::ci::Status::Failed {
                    // The failing step's last lines: usually the whole story.
                    if let Some(step) = detail.steps.iter().find(|s| s.status == StepStatus::Failed)
                    {
                        let page = client.logs(*id, 0, Duration::ZERO).await?;
                        let lines: Vec<&str> = page
                            .lines
                            .iter()
                            .filter(|l| l.step == step.index)
                            .map(|l| l.line.as_str())
                            .collect();
                        let tail = &lines[lines.len().saturating_sub(15)..];
                        println!("\nlast lines of {}:", step.name);
                        for line in tail {
                            println!("  {line}");
                        }
                    }
                }
            }
        }
        PipelinesCommand::Logs { id, follow } => {
            let (id, follow) = (*id, *follow);
            let detail = client.pipeline(id).await?;
            let names: Vec<String> = detail.steps.iter().map(|s| s.name.clone()).collect();
            let mut after = 0;
            loop {
                let wait = if follow {
                    Duration::from_secs(20)
                } else {
                    Duration::ZERO
                };
                let page = client
                    .logs(id, after, wait)
                    .await
                    .with_context(|| format!("cannot read the log of pipeline {id}"))?;
                for line in &page.lines {
                    let step = names
                        .get(line.step as usize)
                        .map(String::as_str)
                        .unwrap_or("?");
                    println!("{step:>8} | {}", line.line);
                    after = line.seq;
                }
                if !follow || page.done {
                    if follow {
                        let detail = client.pipeline(id).await?;
                        println!(
                            "pipeline {id} {}: {}",
                            detail.summary.status, detail.summary.message
                        );
                    }
                    break;
                }
            }
        }
    }
    Ok(())
}

fn seconds(ms: u64) -> String {
    if ms < 10_000 {
        format!("{:.2} s", ms as f64 / 1000.0)
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

fn short(commit: &str) -> String {
    commit.chars().take(12).collect()
}

pub fn render_list(list: &[PipelineSummary], now: u64) -> String {
    if list.is_empty() {
        return "no pipeline has run yet\n".into();
    }
    let mut t = Table::new(&[
        "ID",
        "REPOSITORY",
        "REF",
        "COMMIT",
        "TRIGGER",
        "STATUS",
        "GENERATION",
        "DURATION",
        "CREATED",
        "RESULT",
    ]);
    for p in list {
        t.row(vec![
            p.id.to_string(),
            p.repository.clone(),
            p.ref_name.trim_start_matches("refs/heads/").to_string(),
            short(&p.commit),
            p.trigger.to_string(),
            p.status.to_string(),
            match (p.generation, p.published) {
                (Some(g), true) => g.to_string(),
                (Some(g), false) => format!("({g})"),
                (None, _) => "-".into(),
            },
            match (p.started_ms, p.finished_ms) {
                (Some(s), Some(f)) => seconds(f.saturating_sub(s)),
                (Some(s), None) => format!("{}…", seconds(now.saturating_sub(s))),
                _ => "-".into(),
            },
            ago(p.created_ms, now),
            p.message.clone(),
        ]);
    }
    t.render()
}

fn step_duration(s: &StepRecord, now: u64) -> String {
    match (s.started_ms, s.finished_ms) {
        (Some(a), Some(b)) => seconds(b.saturating_sub(a)),
        (Some(a), None) => format!("{}…", seconds(now.saturating_sub(a))),
        _ => "-".into(),
    }
}

/// The push → healthy split: pipeline steps then rollout phases, each with its share.
pub fn time_split(d: &PipelineDetail) -> Option<String> {
    let healthy = d.phases.iter().find(|p| p.name == "healthy")?;
    let total = healthy.finished_ms.saturating_sub(d.summary.created_ms);
    let mut parts = Vec::new();
    if let Some(started) = d.summary.started_ms {
        parts.push((
            "queue".to_string(),
            started.saturating_sub(d.summary.created_ms),
        ));
    }
    for s in &d.steps {
        if let Some(ms) = s.duration_ms() {
            parts.push((s.name.clone(), ms));
        }
    }
    for p in &d.phases {
        parts.push((p.name.clone(), p.finished_ms.saturating_sub(p.started_ms)));
    }
    let list: Vec<String> = parts
        .iter()
        .map(|(name, ms)| format!("{name} {}", seconds(*ms)))
        .collect();
    Some(format!(
        "push → healthy {}: {}",
        seconds(total),
        list.join(" · ")
    ))
}

pub fn render_detail(d: &PipelineDetail, now: u64) -> String {
    let p = &d.summary;
    let mut out = format!(
        "pipeline {} · {} {} at {} · {} · {}\n",
        p.id,
        p.repository,
        p.ref_name.trim_start_matches("refs/heads/"),
        short(&p.commit),
        p.trigger,
        p.status
    );
    if !p.message.is_empty() {
        out.push_str(&format!("{}\n", p.message));
    }
    if p.rollout != schema::ci::Rollout::None {
        out.push_str(&format!(
            "rollout: {}{}\n",
            p.rollout,
            if p.rollout_message.is_empty() {
                String::new()
            } else {
                format!(" ({})", p.rollout_message)
            }
        ));
    }
    out.push('\n');
    let mut t = Table::new(&["STEP", "STATUS", "DURATION", "EXIT", "SUMMARY"]);
    for s in &d.steps {
        t.row(vec![
            s.name.clone(),
            s.status.to_string(),
            step_duration(s, now),
            s.exit_code
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into()),
            s.summary.clone(),
        ]);
    }
    out.push_str(&t.render());
    if !d.phases.is_empty() {
        out.push('\n');
        let mut t = Table::new(&["ROLLOUT PHASE", "DURATION"]);
        for ph in &d.phases {
            t.row(vec![
                ph.name.clone(),
                seconds(ph.finished_ms.saturating_sub(ph.started_ms)),
            ]);
        }
        out.push_str(&t.render());
    }
    if let Some(split) = time_split(d) {
        out.push_str(&format!("\n{split}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use schema::ci::{PhaseRecord, Rollout, Status, Trigger};

    #[test]
    fn time_split_adds_up_steps_and_phases() {
        let step = |i: u32, name: &str, a: u64, b: u64| StepRecord {
            index: i,
            name: name.into(),
            status: StepStatus::Succeeded,
            started_ms: Some(a),
            finished_ms: Some(b),
            exit_code: Some(0),
            summary: String::new(),
        };
        let d = PipelineDetail {
            summary: PipelineSummary {
                id: 1,
                repository: "c".into(),
                commit: "abc".into(),
                ref_name: "refs/heads/main".into(),
                trigger: Trigger::Push,
                deploy: true,
                status: Status::Succeeded,
                message: "published generation 2".into(),
                created_ms: 1000,
                started_ms: Some(1010),
                finished_ms: Some(1500),
                generation: Some(2),
                published: true,
                rollout: Rollout::Converged,
                rollout_message: String::new(),
            },
            intent_hash: None,
            steps: vec![step(0, "eval", 1010, 1200), step(1, "publish", 1200, 1500)],
            phases: vec![PhaseRecord {
                name: "healthy".into(),
                started_ms: 1500,
                finished_ms: 3000,
            }],
        };
        assert_eq!(
            time_split(&d).expect("split"),
            "push → healthy 2.00 s: queue 0.01 s · eval 0.19 s · publish 0.30 s · healthy 1.50 s"
        );
        let text = render_detail(&d, 4000);
        assert!(text.contains("rollout: converged"), "{text}");
        assert!(text.contains("publish  succeeded  0.30 s"), "{text}");
    }
}
