//! Benchmark program: `git push` → every workload healthy, with real git, nix, pcr-cache,
//! pcr-control-plane, pcr-ci and pcr-worker processes.
//!
//! Two scenarios, each run several times:
//! - **first deploy, closures cached**: a fresh control plane, worker and pcr-ci (the cluster
//!   has never run), pushing a cluster whose closures are already built and in the cache;
//! - **one-service change**: on a converged cluster, a push that changes one service's
//!   closure (a real, small nix build; copied to the cache; fetched by the worker).
//!
//! The clock starts before `git push` and stops at the first status sample (every 10 ms) in
//! which every instance runs its desired closure and is healthy. The phase split comes from
//! pcr-ci's record of the run (what `pcr pipelines show` prints).
//!
//! `cargo bench -p ci_service --bench push_to_healthy [-- RUNS]`

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ci_service::store::{PipelineDetail, Rollout};
use common::*;
use schema::client::MasterClient;
use test_support::ControlPlane;

const SERVICES: [&str; 3] = ["web", "api", "search"];

struct Sample {
    total: Duration,
    phases: Vec<(String, u64)>,
}

/// Pushes, then waits until every instance of `generation` is running its closure and healthy.
async fn push_and_wait(
    ci: &Ci,
    op: &MasterClient,
    src: &Source,
    bare: &std::path::Path,
    commit: &str,
    generation: u64,
) -> Sample {
    let start = Instant::now();
    src.push(bare);
    loop {
        let s = op.cluster_status().await.expect("status");
        let ready = s.active_generation == generation
            && !s.instances.is_empty()
            && s.instances.iter().all(|i| {
                i.phase == schema::model::Phase::Running
                    && i.health == schema::model::Health::Healthy
                    && i.observed_closure == i.desired_closure
            });
        if ready {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no convergence: {s:#?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let total = start.elapsed();
    let id = ci.pipeline_of(commit).await;
    // pcr-ci's own record of the rollout lands a poll or two after ours.
    let detail = loop {
        let d = ci.client.pipeline(id).await.expect("pipeline");
        if d.summary.rollout != Rollout::Converging && d.summary.rollout != Rollout::None {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    Sample {
        total,
        phases: split(&detail),
    }
}

fn split(d: &PipelineDetail) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    if let Some(started) = d.summary.started_ms {
        out.push((
            "queue".to_string(),
            started.saturating_sub(d.summary.created_ms),
        ));
    }
    for s in &d.steps {
        out.push((s.name.clone(), s.duration_ms().unwrap_or(0)));
    }
    for p in &d.phases {
        out.push((p.name.clone(), p.finished_ms.saturating_sub(p.started_ms)));
    }
    out
}

fn services(version: &str, ports: &[u16]) -> Vec<Service> {
    SERVICES
        .iter()
        .zip(ports)
        .map(|(name, port)| Service {
            version: version.to_string(),
            ..Service::new(name, *port)
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn report(name: &str, samples: &[Sample]) {
    let secs: Vec<f64> = samples.iter().map(|s| s.total.as_secs_f64()).collect();
    let min = secs.iter().cloned().fold(f64::MAX, f64::min);
    let max = secs.iter().cloned().fold(0.0, f64::max);
    println!(
        "{name:<34} runs {:>2}  median {:>6.2} s  min {:>6.2} s  max {:>6.2} s",
        samples.len(),
        median(secs.clone()),
        min,
        max
    );
    let mut by_phase: BTreeMap<usize, (String, Vec<f64>)> = BTreeMap::new();
    for s in samples {
        for (i, (phase, ms)) in s.phases.iter().enumerate() {
            by_phase
                .entry(i)
                .or_insert_with(|| (phase.clone(), Vec::new()))
                .1
                .push(*ms as f64 / 1000.0);
        }
    }
    let parts: Vec<String> = by_phase
        .into_values()
        .map(|(name, v)| format!("{name} {:.2}", median(v)))
        .collect();
    println!("  median split (s): {}", parts.join(" · "));
}

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = Cache::start(dir.path());
        let ports: Vec<u16> = SERVICES.iter().map(|_| free_port()).collect();
        let src = Source::new();
        src.write_cluster(&services("v1", &ports));
        let commit = src.commit("cluster");

        // Cold caches and binaries built: one deploy nobody times.
        let mut first = Vec::new();
        for run in 0..=runs {
            let run_dir = dir.path().join(format!("fresh-{run}"));
            std::fs::create_dir_all(&run_dir).expect("mkdir");
            let cp = ControlPlane::start();
            let ci = Ci::start(&run_dir, &cp, Some(&cache));
            let _worker = start_worker(&run_dir, &cp, &cache, "worker-1");
            let op = cp.operator().await;
            test_support::eventually(Duration::from_secs(60), "the worker", || async {
                (!op.cluster_status().await.ok()?.workers.is_empty()).then_some(())
            })
            .await;
            let bare = ci.create_repo("cluster", None);
            let sample = push_and_wait(&ci, &op, &src, &bare, &commit, 1).await;
            if run > 0 {
                first.push(sample);
            }
        }

        // One cluster, one service changed per push.
        let run_dir = dir.path().join("changes");
        std::fs::create_dir_all(&run_dir).expect("mkdir");
        let cp = ControlPlane::start();
        let ci = Ci::start(&run_dir, &cp, Some(&cache));
        let _worker = start_worker(&run_dir, &cp, &cache, "worker-1");
        let op = cp.operator().await;
        let bare = ci.create_repo("cluster", None);
        push_and_wait(&ci, &op, &src, &bare, &commit, 1).await;
        let mut changes = Vec::new();
        for run in 0..runs {
            let mut cluster = services("v1", &ports);
            cluster[0].version = format!("change-{run}-{}", std::process::id());
            src.write_cluster(&cluster);
            let commit = src.commit(&format!("change {run}"));
            changes.push(push_and_wait(&ci, &op, &src, &bare, &commit, 2 + run as u64).await);
        }

        println!(
            "\ngit push → all workloads healthy: {} process services with HTTP health checks (100 ms interval), 1 worker, everything on this machine",
            SERVICES.len()
        );
        report("first deploy, closures cached", &first);
        report("one-service change (build + push)", &changes);
    });
}
