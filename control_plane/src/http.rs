//! The small HTTP side: `/healthz` for load balancers and systemd, `/metrics` for Prometheus.
//!
//! The cluster lives on the RPC thread's `LocalSet` and is not `Send`; a task there renders
//! the metrics text once a second into a shared string that the axum handlers read.

use std::fmt::Write;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use schema::model::{Phase, WorkerState};
use tokio::net::TcpListener;

use crate::rpc::Server;

pub type Snapshot = Arc<Mutex<String>>;

pub fn router(snapshot: Snapshot) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/metrics",
            get(move || {
                let text = snapshot.lock().map(|s| s.clone()).unwrap_or_default();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        text,
                    )
                }
            }),
        )
}

pub async fn serve(listener: TcpListener, snapshot: Snapshot) -> std::io::Result<()> {
    axum::serve(listener, router(snapshot)).await
}

/// Renders the metrics every `period` into `snapshot`. Run on the RPC `LocalSet`.
pub async fn render_every(server: Rc<Server>, snapshot: Snapshot, period: Duration) {
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        let text = render(&server);
        if let Ok(mut s) = snapshot.lock() {
            *s = text;
        }
    }
}

pub fn render(server: &Server) -> String {
    let status = server.cluster.borrow().status();
    let c = server.counters.borrow().clone();
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, v) in samples {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    gauge(
        "procurator_active_generation",
        "The active generation.",
        &[(String::new(), status.active_generation as f64)],
    );
    gauge(
        "procurator_convergence_percent",
        "Share of instances running their desired closure, healthy.",
        &[(String::new(), status.convergence_percent as f64)],
    );
    let states = [
        WorkerState::Ready,
        WorkerState::Lost,
        WorkerState::Cordoned,
        WorkerState::Draining,
    ];
    gauge(
        "procurator_workers",
        "Workers by state.",
        &states
            .iter()
            .map(|s| {
                let n = status.workers.iter().filter(|w| w.state == *s).count();
                (format!("{{state=\"{}\"}}", s.as_str()), n as f64)
            })
            .collect::<Vec<_>>(),
    );
    let phases = [
        Phase::Pending,
        Phase::Fetching,
        Phase::Starting,
        Phase::Running,
        Phase::Stopping,
        Phase::Stopped,
        Phase::Failed,
        Phase::CrashLoop,
        Phase::Unknown,
    ];
    gauge(
        "procurator_instances",
        "Instances by phase.",
        &phases
            .iter()
            .map(|p| {
                let n = status.instances.iter().filter(|i| i.phase == *p).count();
                (format!("{{phase=\"{}\"}}", p.as_str()), n as f64)
            })
            .collect::<Vec<_>>(),
    );
    let unplaced = status
        .instances
        .iter()
        .filter(|i| i.worker_id.is_empty())
        .count();
    gauge(
        "procurator_instances_unplaced",
        "Instances no worker can take.",
        &[(String::new(), unplaced as f64)],
    );
    let _ = writeln!(out, "# HELP procurator_requests_total RPC requests handled.\n# TYPE procurator_requests_total counter");
    for (call, n) in [
        ("publishState", c.publishes),
        ("publishStateRejected", c.publish_rejections),
        ("register", c.registrations),
        ("pushData", c.pushes),
        ("getAssignment", c.assignments),
        ("getClusterStatus", c.status_reads),
        ("loginRefused", c.logins_refused),
    ] {
        let _ = writeln!(out, "procurator_requests_total{{call=\"{call}\"}} {n}");
    }
    out
}
