//! Benchmark program (not a test): prints the control plane's figures.
//!
//! `cargo bench -p control_plane` (add `-- --quick` for a short run).
//!
//! 1. Scheduler: 10,000 instances on 1,000 workers, spread and pack, one core.
//! 2. RPC round trip of `getAssignment` and `getClusterStatus` against a bare capnp-rpc call
//!    to a server that does nothing, measured in the same run over loopback TCP, with the
//!    server on its own thread as in production.
//! 3. `publishState` of a 1,000-VM blueprint, end to end including the SQLite commit.

use std::collections::{BTreeMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use control_plane::auth::Tokens;
use control_plane::cluster::{Cluster, Config};
use control_plane::rpc::Server;
use control_plane::scheduler::{schedule, WorkerView};
use control_plane::store::SqliteStore;
use schema::client::{GatewayClient, MasterClient};
use schema::model::*;
use schema::worker_capnp::worker_callback;

fn closure(i: usize) -> String {
    let alphabet = b"0123456789abcdfghijklmnpqrsvwxyz";
    let hash: String = (0..32)
        .map(|k| alphabet[(i * 7 + k * 13) % 32] as char)
        .collect();
    format!("/nix/store/{hash}-svc{i}")
}

fn specs(n_specs: usize, replicas: u32, generation: usize) -> Vec<VmSpec> {
    (0..n_specs)
        .map(|i| VmSpec {
            replicas,
            cpu: 1 + (i % 4) as u32,
            memory_mb: 256 * (1 + (i % 8) as u64),
            ..VmSpec::process(&format!("svc{i}"), &closure(i + generation * 100_000))
        })
        .collect()
}

fn workers(n: usize) -> Vec<WorkerView> {
    (0..n)
        .map(|i| WorkerView {
            id: format!("worker{i:04}"),
            labels: BTreeMap::from([("zone".to_string(), format!("z{}", i % 3))]),
            backends: vec![Backend::Process, Backend::Qemu],
            cpu: 64,
            memory_mb: 262_144,
            takes_new: true,
            keeps_existing: true,
            closures: HashSet::new(),
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn bench_scheduler(runs: usize) {
    println!("## Scheduler: 10,000 instances (1,000 VMs x 10 replicas) on 1,000 workers");
    let specs = specs(1_000, 10, 0);
    let workers = workers(1_000);
    for strategy in [PlacementStrategy::Spread, PlacementStrategy::Pack] {
        let mut times = Vec::new();
        let mut placed = 0;
        for _ in 0..runs {
            let t = Instant::now();
            let p = schedule(&specs, strategy, &workers, &BTreeMap::new());
            times.push(t.elapsed().as_secs_f64());
            placed = p.assigned.len();
            assert_eq!(p.unplaced.len(), 0);
        }
        let m = median(times);
        println!(
            "{strategy:?}: {placed} placed in {:.1} ms (median of {runs}) = {:.0} placements/s",
            m * 1e3,
            placed as f64 / m
        );
    }
    // A new generation that changes every closure but keeps sizes: everything stays put.
    let first = schedule(
        &specs,
        PlacementStrategy::Spread,
        &workers,
        &BTreeMap::new(),
    );
    let next = self::specs(1_000, 10, 1);
    let mut times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let p = schedule(&next, PlacementStrategy::Spread, &workers, &first.assigned);
        times.push(t.elapsed().as_secs_f64());
        assert_eq!(p.assigned, first.assigned);
    }
    let m = median(times);
    println!(
        "Spread, re-placing onto the existing placement (nothing moves): {:.1} ms = {:.0} placements/s",
        m * 1e3,
        10_000.0 / m
    );
}

/// Runs `f` on its own thread with a current-thread runtime and a LocalSet, forever.
fn server_thread<F, Fut>(f: F) -> std::net::SocketAddr
where
    F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    support::runtime::spawn_local_thread("server".into(), move || async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        tx.send(listener.local_addr().expect("addr"))
            .expect("send addr");
        f(listener).await;
    })
    .expect("server thread");
    rx.recv().expect("server started")
}

async fn time_calls<F, Fut>(n: usize, mut call: F) -> (f64, f64, f64)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..n / 10 {
        call().await; // warm up
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        call().await;
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    let mean = samples.iter().sum::<f64>() / n as f64;
    (mean, samples[n / 2], samples[n * 99 / 100])
}

fn start_control_plane(dir: &std::path::Path) -> (std::net::SocketAddr, String) {
    let db = dir.join("bench.db");
    let op = "operator-token".to_string();
    let tokens = Tokens::new(op.clone(), "worker-token".into());
    let addr = server_thread(move |listener| async move {
        let store = SqliteStore::open(&db, false).expect("db");
        let cluster = Cluster::load(
            store,
            Config {
                lease: Duration::from_secs(3600),
                ..Config::default()
            },
        )
        .expect("load");
        let server = Server::new(cluster);
        let _ = control_plane::rpc::serve(listener, Rc::clone(&server), tokens, usize::MAX).await;
    });
    (addr, op)
}

fn bench_rpc(n: usize) {
    println!("\n## RPC round trip over loopback TCP, server on its own thread ({n} sequential calls each)");
    let echo_addr = server_thread(|listener| async move {
        let cb: worker_callback::Client = test_support::sim::ignoring();
        loop {
            let (stream, _) = listener.accept().await.expect("accept");
            let system = schema::net::rpc_over(
                stream,
                capnp_rpc::rpc_twoparty_capnp::Side::Server,
                Some(cb.clone().client),
            );
            tokio::task::spawn_local(system);
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let (cp_addr, token) = start_control_plane(dir.path());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    tokio::task::LocalSet::new().block_on(&rt, async move {
        // Echo: a call with one integer argument to a server that does nothing.
        let stream = tokio::net::TcpStream::connect(echo_addr).await.expect("connect echo");
        let mut system = schema::net::rpc_over(stream, capnp_rpc::rpc_twoparty_capnp::Side::Client, None);
        let echo: worker_callback::Client = system.bootstrap(capnp_rpc::rpc_twoparty_capnp::Side::Server);
        tokio::task::spawn_local(system);
        let (echo_mean, echo_p50, echo_p99) = time_calls(n, || {
            let mut req = echo.assignment_changed_request();
            req.get().set_revision(1);
            async move {
                req.send().promise.await.expect("echo");
            }
        })
        .await;
        println!("bare capnp-rpc call (echo):       mean {echo_mean:6.1} µs  p50 {echo_p50:6.1} µs  p99 {echo_p99:6.1} µs");

        let (master, _conn) = schema::net::connect_master(&cp_addr.to_string(), &token).await.expect("login");
        let op = MasterClient::new(master);
        let gw: GatewayClient = op.gateway();
        // A realistic small cluster: 10 workers, 50 instances.
        for i in 0..10 {
            let info = WorkerInfo {
                id: format!("w{i}"),
                cpu: 32,
                memory_mb: 65_536,
                backends: vec![Backend::Process],
                ..Default::default()
            };
            gw.register(&info, test_support::sim::ignoring()).await.expect("register");
        }
        let bp = specs(10, 5, 0);
        op.publish_state("c1", 1, "h1", &bp, &ClusterSettings::default()).await.expect("publish");

        let (a_mean, a_p50, a_p99) = time_calls(n, || {
            let gw = gw.clone();
            async move {
                gw.get_assignment("w0", 0).await.expect("assignment");
            }
        })
        .await;
        println!(
            "getAssignment (5 instances):       mean {a_mean:6.1} µs  p50 {a_p50:6.1} µs  p99 {a_p99:6.1} µs  = {:.2}x echo (p50)",
            a_p50 / echo_p50
        );
        let current = match gw.get_assignment("w0", 0).await.expect("assignment") {
            schema::client::AssignmentUpdate::Changed(a) => a.revision,
            schema::client::AssignmentUpdate::Unchanged(r) => r,
        };
        let (u_mean, u_p50, u_p99) = time_calls(n, || {
            let gw = gw.clone();
            async move {
                gw.get_assignment("w0", current).await.expect("assignment");
            }
        })
        .await;
        println!(
            "getAssignment (unchanged, a poll): mean {u_mean:6.1} µs  p50 {u_p50:6.1} µs  p99 {u_p99:6.1} µs  = {:.2}x echo (p50)",
            u_p50 / echo_p50
        );
        let (s_mean, s_p50, s_p99) = time_calls(n, || {
            let op = op.clone();
            async move {
                op.cluster_status().await.expect("status");
            }
        })
        .await;
        println!(
            "getClusterStatus (10 w, 50 inst):  mean {s_mean:6.1} µs  p50 {s_p50:6.1} µs  p99 {s_p99:6.1} µs  = {:.2}x echo (p50), decoded into Rust types",
            s_p50 / echo_p50
        );
        let (r_mean, r_p50, r_p99) = time_calls(n, || {
            let req = op.inner.get_cluster_status_request();
            async move {
                let resp = req.send().promise.await.expect("status");
                let _ = resp.get().expect("result").get_result().expect("result").which().is_ok();
            }
        })
        .await;
        println!(
            "getClusterStatus, not decoded:     mean {r_mean:6.1} µs  p50 {r_p50:6.1} µs  p99 {r_p99:6.1} µs  = {:.2}x echo (p50)",
            r_p50 / echo_p50
        );
        // The first read after a change builds the status; later reads copy the encoded one.
        let mut samples = Vec::with_capacity(n / 4);
        let mut words = 0;
        for _ in 0..n / 4 {
            gw.push_data("w0", 1, &[], &WorkerMetrics::default()).await.expect("push");
            let t = Instant::now();
            let resp = op.inner.get_cluster_status_request().send().promise.await.expect("status");
            samples.push(t.elapsed().as_secs_f64() * 1e6);
            words = resp.get().expect("result").total_size().expect("size").word_count;
        }
        let f_p50 = median(samples);
        println!(
            "getClusterStatus after a change:   p50 {f_p50:6.1} µs  = {:.2}x echo (p50), not decoded; the answer is {:.1} KiB",
            f_p50 / echo_p50,
            words as f64 * 8.0 / 1024.0
        );
    });
}

fn bench_publish(runs: usize) {
    println!("\n## publishState of a 1,000-VM blueprint (1,000 instances, 100 workers), end to end with the SQLite commit");
    let dir = tempfile::tempdir().expect("tempdir");
    let (cp_addr, token) = start_control_plane(dir.path());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    tokio::task::LocalSet::new().block_on(&rt, async move {
        let (master, _conn) = schema::net::connect_master(&cp_addr.to_string(), &token).await.expect("login");
        let op = MasterClient::new(master);
        let gw = op.gateway();
        for i in 0..100 {
            let info = WorkerInfo {
                id: format!("w{i:03}"),
                cpu: 64,
                memory_mb: 262_144,
                backends: vec![Backend::Process],
                ..Default::default()
            };
            gw.register(&info, test_support::sim::ignoring()).await.expect("register");
        }
        let settings = ClusterSettings::default();
        let mut first = Vec::new();
        let mut later = Vec::new();
        for g in 1..=runs as u64 {
            let bp = specs(1_000, 1, g as usize);
            let hash = content_hash(&settings, &bp);
            let t = Instant::now();
            let p = op.publish_state(&format!("c{g}"), g, &hash, &bp, &settings).await.expect("publish");
            let ms = t.elapsed().as_secs_f64() * 1e3;
            assert_eq!(p.placed, 1_000);
            if g == 1 { first.push(ms) } else { later.push(ms) }
        }
        println!("first generation (everything placed anew): {:.1} ms", first[0]);
        println!(
            "next generations (every closure changed, nothing moves): median {:.1} ms, max {:.1} ms over {} runs",
            median(later.clone()),
            later.iter().cloned().fold(0.0, f64::max),
            later.len()
        );
    });
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    println!(
        "control plane benchmarks ({})\n",
        if quick { "quick" } else { "full" }
    );
    bench_scheduler(if quick { 3 } else { 11 });
    bench_rpc(if quick { 2_000 } else { 20_000 });
    bench_publish(if quick { 4 } else { 11 });
}
