//! Repohub under load, on loopback, against real components:
//!
//! 1. the deployments page with 1,000 VMs on 20 workers (a real control plane, the cluster
//!    simulated through `MasterClient`): server-side render time, then `wrk` for requests/s
//!    and latency percentiles of the HTML page and its JSON twin;
//! 2. a pipeline's log stream with 10 concurrent viewers (a real pcr-ci running a pipeline
//!    whose build prints 400 lines): delivery latency of live lines from the moment pcr-ci
//!    recorded them to the moment each viewer received them, then `wrk` with 10 connections
//!    replaying the finished log (each request streams the whole log and ends).
//!
//! Run: `cargo bench -p repohub` (needs `wrk`, `nix`, `git`).
#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/common/sim.rs"]
mod sim;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use test_support::{ControlPlane, Options};

fn populate(cp: &ControlPlane, workers: usize, vms: usize) {
    let (addr, token) = (cp.addr.clone(), cp.operator_token.clone());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        tokio::task::LocalSet::new().block_on(&rt, async {
            sim::populate(&addr, &token, workers, vms, 1, 25).await;
        });
    })
    .join()
    .unwrap();
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Runs wrk and picks out requests/s and the latency percentiles.
fn wrk(url: &str, token: &str, connections: u32, seconds: u32) -> String {
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            "-H",
            &format!("Authorization: Bearer {token}"),
            url,
        ])
        .output()
        .expect("run wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let pick = |prefix: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    let errors = pick("Non-2xx");
    format!(
        "{} | latency {} | {} | {}{}",
        pick("Requests/sec:"),
        pick("50%"),
        pick("99%"),
        pick("Transfer/sec:"),
        if errors.is_empty() {
            String::new()
        } else {
            format!(" | {errors}")
        }
    )
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cp = ControlPlane::start_with(Options {
        lease_ms: 3_600_000,
        heartbeat_ms: 2_000,
    });
    let dir = tempfile::tempdir().unwrap();
    let ci = common::Ci::start(dir.path(), &cp);
    println!("populating a control plane with 1,000 VMs on 20 workers…");
    populate(&cp, 20, 1000);

    rt.block_on(async {
        let app = repohub::App::start(common::config(
            dir.path(),
            &cp.addr,
            &cp.operator_token,
            Some(ci.url.clone()),
            &ci.state,
        ))
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = repohub::router(app.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });

        let hash = repohub::password::hash_password("benchmark-password", common::CHEAP).unwrap();
        let user = app.db.create_user("bench", &hash, true, true).unwrap();
        let (_, token) = app.db.create_token(user.id, "bench").unwrap();
        let project = app.db.create_project("bench", "", user.id).unwrap();

        let deadline = Instant::now() + Duration::from_secs(60);
        while app
            .cluster
            .snapshot()
            .status
            .as_ref()
            .map_or(0, |s| s.instances.len())
            < 1000
        {
            assert!(Instant::now() < deadline, "the snapshot never had 1,000 VMs");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // ---- 1. deployments ----
        let http = reqwest::Client::new();
        let page = |path: &'static str| {
            let (http, base, token) = (http.clone(), base.clone(), token.clone());
            async move {
                let t = Instant::now();
                let r = http
                    .get(format!("{base}{path}"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success());
                let body = r.bytes().await.unwrap();
                (t.elapsed().as_secs_f64() * 1e3, body.len())
            }
        };
        let mut samples = Vec::new();
        let mut size = 0;
        for _ in 0..100 {
            let (ms, len) = page("/deployments").await;
            samples.push(ms);
            size = len;
        }
        samples.sort_by(f64::total_cmp);
        println!(
            "\ndeployments page, 1,000 VMs / 20 workers: {:.0} KiB; one request at a time: p50 {:.1} ms, p99 {:.1} ms (render + loopback HTTP)",
            size as f64 / 1024.0,
            percentile(&samples, 0.5),
            percentile(&samples, 0.99)
        );
        println!(
            "  wrk -c16 /deployments      : {}",
            wrk(&format!("{base}/deployments"), &token, 16, 10)
        );
        println!(
            "  wrk -c16 /api/deployments  : {}",
            wrk(&format!("{base}/api/deployments"), &token, 16, 10)
        );

        // ---- 2. the log stream ----
        let repo = app
            .db
            .create_repository(&project, "web", repohub::db::RepoKind::Hosted, None, "main")
            .unwrap();
        app.ci.create_repository(&repo.ci_name, None, "main").await.unwrap();
        let src = common::Source::new();
        src.write_ticking_flake(400, "0.02");
        let commit = src.commit("bench");
        src.push(&app.ci.bare_path(&repo.ci_name));
        let id = loop {
            let list = app.ci.pipelines(Some(&repo.ci_name), 10).await.unwrap();
            if let Some(p) = list.iter().find(|p| p.commit == commit) {
                break p.id;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let url = format!("{base}/projects/bench/pipelines/{id}/stream");
        let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
        let started = Instant::now();
        let viewers: Vec<_> = (0..10)
            .map(|_| {
                let (http, url, token, latencies) =
                    (http.clone(), url.clone(), token.clone(), latencies.clone());
                tokio::spawn(async move {
                    use futures::StreamExt;
                    let r = http.get(&url).bearer_auth(&token).send().await.unwrap();
                    let mut body = r.bytes_stream();
                    let mut buf = String::new();
                    let mut lines = 0usize;
                    while let Some(chunk) = body.next().await {
                        buf.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
                        while let Some(end) = buf.find("\n\n") {
                            let event: String = buf.drain(..end + 2).collect();
                            let now = repohub::now_ms();
                            if let Some(data) = event
                                .lines()
                                .find_map(|l| l.strip_prefix("data: "))
                                .filter(|_| event.contains("event: lines"))
                            {
                                let batch: Vec<serde_json::Value> =
                                    serde_json::from_str(data).unwrap();
                                let mut l = latencies.lock().unwrap();
                                for line in &batch {
                                    let ts = line["tsMs"].as_u64().unwrap_or(now);
                                    l.push(now.saturating_sub(ts) as f64);
                                }
                                lines += batch.len();
                            }
                        }
                    }
                    lines
                })
            })
            .collect();
        let mut per_viewer = Vec::new();
        for v in viewers {
            per_viewer.push(v.await.unwrap());
        }
        let elapsed = started.elapsed().as_secs_f64();
        let mut l = latencies.lock().unwrap().clone();
        l.sort_by(f64::total_cmp);
        println!(
            "\npipeline log stream, 10 concurrent viewers of a running pipeline ({} lines each, {:.1} s):",
            per_viewer[0], elapsed
        );
        println!(
            "  line delivery latency (pcr-ci recorded → viewer received): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; every viewer got every line: {}",
            percentile(&l, 0.5),
            percentile(&l, 0.99),
            l.last().copied().unwrap_or(f64::NAN),
            per_viewer.iter().all(|&n| n == per_viewer[0])
        );
        println!(
            "  wrk -c10 replaying the finished log ({} lines per request): {}",
            per_viewer[0],
            wrk(&url, &token, 10, 10)
        );
    });
}
