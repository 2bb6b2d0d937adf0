//! A small cluster with one of everything worth seeing — a drifted VM, a failed one, an
//! unplaced one, a cordoned worker, a canary waiting for promotion, a failed generation —
//! at a fixed clock, so key tests and snapshots are deterministic.

use std::collections::BTreeMap;

use schema::model::*;

use super::app::{App, Link, Update};
use super::app::{Pipeline, PipelineRun};
use schema::ci::{LogLine, PhaseRecord, StepRecord};

/// 2027-01-15 08:00:00 UTC.
pub const NOW: u64 = 1_800_000_000_000;

pub fn closure(name: &str, version: &str) -> String {
    // 32 nix-base32 characters, different per name and version.
    let alphabet = b"0123456789abcdfghijklmnpqrsvwxyz";
    let seed: u64 = name
        .bytes()
        .chain(version.bytes())
        .fold(1469598103934665603, |h, b| {
            (h ^ b as u64).wrapping_mul(1099511628211)
        });
    let hash: String = (0..32)
        .map(|i| alphabet[((seed >> (i % 13 * 4)) as usize + i * 7) % 32] as char)
        .collect();
    format!("/nix/store/{hash}-{name}-{version}")
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn worker(
    id: &str,
    state: WorkerState,
    cpu: (i64, u32),
    mem: (i64, u64),
    vms: u32,
    l: &[(&str, &str)],
) -> WorkerStatus {
    WorkerStatus {
        info: WorkerInfo {
            id: id.into(),
            labels: labels(l),
            cpu: cpu.1,
            memory_mb: mem.1,
            backends: vec![Backend::Qemu, Backend::Process],
            hostname: format!("{id}.lab"),
            version: "0.1.0".into(),
        },
        state,
        healthy: state != WorkerState::Lost,
        free_cpu: cpu.0,
        free_memory_mb: mem.0,
        instance_count: vms,
        last_heartbeat_ms: NOW - 2_000,
        observed_generation: 7,
        metrics: WorkerMetrics {
            cpu_used_percent: 23.5,
            memory_used_bytes: 3 << 30,
            memory_total_bytes: mem.1 << 20,
            disk_free_bytes: 120 << 30,
            closures_present: 9,
            load_average: 0.42,
        },
        instances: Vec::new(),
    }
}

#[allow(clippy::too_many_arguments)]
pub fn instance(
    id: &str,
    vm: &str,
    worker: &str,
    phase: Phase,
    health: Health,
    version: &str,
    observed: &str,
    uptime_s: u64,
) -> InstanceStatus {
    InstanceStatus {
        instance_id: id.into(),
        vm_name: vm.into(),
        worker_id: worker.into(),
        desired_closure: closure(vm, version),
        observed_closure: if observed.is_empty() {
            String::new()
        } else {
            closure(vm, observed)
        },
        phase,
        health,
        drifted: !observed.is_empty() && observed != version,
        backend: Some(Backend::Qemu),
        cpu: 2,
        memory_mb: 512,
        uptime_ms: uptime_s * 1000,
        cpu_percent: if phase == Phase::Running { 12.0 } else { 0.0 },
        memory_bytes: if phase == Phase::Running {
            300 << 20
        } else {
            0
        },
        generation: 7,
        ..Default::default()
    }
}

pub fn status() -> ClusterStatus {
    let mut db = instance(
        "db-0",
        "db",
        "w2",
        Phase::Failed,
        Health::Unhealthy,
        "15.4",
        "15.4",
        0,
    );
    db.message = "exited with status 1".into();
    db.restarts = 4;
    let batch = InstanceStatus {
        unplaced_reason:
            "batch-0 cannot be placed: no worker with label gpu=true has 32 CPUs free (most free: 14)"
                .into(),
        worker_id: String::new(),
        phase: Phase::Pending,
        ..instance("batch-0", "batch", "", Phase::Pending, Health::Unknown, "1.0", "", 0)
    };
    ClusterStatus {
        settings: ClusterSettings {
            name: "demo".into(),
            strategy: PlacementStrategy::Spread,
        },
        active_generation: 7,
        commit: "3f2a9c1d07e4b5a6c7d8e9f00112233445566778".into(),
        intent_hash: "9b1c".repeat(16),
        published_at_ms: NOW - 300_000,
        convergence_percent: 71.4,
        workers: vec![
            worker(
                "w1",
                WorkerState::Ready,
                (4, 8),
                (15_360, 16_384),
                2,
                &[("zone", "a")],
            ),
            worker(
                "w2",
                WorkerState::Ready,
                (0, 4),
                (1_024, 8_192),
                2,
                &[("zone", "b")],
            ),
            worker(
                "w3",
                WorkerState::Ready,
                (12, 16),
                (30_720, 32_768),
                2,
                &[("gpu", "true"), ("zone", "a")],
            ),
            worker(
                "w4",
                WorkerState::Cordoned,
                (4, 4),
                (8_192, 8_192),
                0,
                &[("zone", "b")],
            ),
        ],
        instances: vec![
            instance(
                "web-0",
                "web",
                "w1",
                Phase::Running,
                Health::Healthy,
                "2.1",
                "2.1",
                3_700,
            ),
            instance(
                "web-1",
                "web",
                "w2",
                Phase::Running,
                Health::Healthy,
                "2.1",
                "2.1",
                3_650,
            ),
            instance(
                "web-2",
                "web",
                "w3",
                Phase::Running,
                Health::Healthy,
                "2.1",
                "2.0",
                86_400,
            ),
            instance(
                "api-0",
                "api",
                "w1",
                Phase::Running,
                Health::Healthy,
                "1.8",
                "1.8",
                95,
            ),
            instance(
                "api-1",
                "api",
                "w3",
                Phase::Starting,
                Health::Starting,
                "1.8",
                "",
                0,
            ),
            db,
            batch,
        ],
        revision: 42,
        rollouts: vec![RolloutStatus {
            vm_name: "api".into(),
            phase: RolloutPhase::WaitingForPromotion,
            generation: 7,
            updated: 1,
            total: 2,
            message: "canary api-0 healthy; waiting for promotion".into(),
        }],
        last_good_generation: 6,
    }
}

pub fn blueprint() -> Blueprint {
    let mut web = VmSpec {
        replicas: 3,
        cpu: 2,
        memory_mb: 512,
        labels: labels(&[("tier", "frontend")]),
        exec: "bin/web".into(),
        args: vec!["--port".into(), "8080".into()],
        ports: vec![PortForward {
            name: "http".into(),
            guest: 8080,
            host: 18080,
        }],
        health_checks: vec![HealthCheck {
            kind: CheckKind::Http {
                port: 8080,
                path: "/healthz".into(),
                expect_status: 0,
            },
            interval_ms: 5_000,
            timeout_ms: 1_000,
            retries: 3,
            grace_period_ms: 10_000,
        }],
        backend: Backend::Qemu,
        ..VmSpec::process("web", &closure("web", "2.1"))
    };
    web.env.insert("RUST_LOG".into(), "info".into());
    let api = VmSpec {
        replicas: 2,
        cpu: 2,
        memory_mb: 512,
        labels: labels(&[("tier", "backend")]),
        backend: Backend::Qemu,
        rollout: RolloutPolicy {
            strategy: RolloutStrategy::Canary,
            canary_count: 1,
            auto_promote: false,
            ..RolloutPolicy::default()
        },
        ..VmSpec::process("api", &closure("api", "1.8"))
    };
    let db = VmSpec {
        cpu: 2,
        memory_mb: 512,
        labels: labels(&[("tier", "data")]),
        backend: Backend::Qemu,
        ..VmSpec::process("db", &closure("db", "15.4"))
    };
    let batch = VmSpec {
        cpu: 32,
        memory_mb: 512,
        constraints: labels(&[("gpu", "true")]),
        backend: Backend::Qemu,
        ..VmSpec::process("batch", &closure("batch", "1.0"))
    };
    Blueprint {
        cluster: ClusterSettings {
            name: "demo".into(),
            strategy: PlacementStrategy::Spread,
        },
        vms: vec![web, api, db, batch],
    }
}

pub fn generations() -> Vec<GenerationInfo> {
    (1..=7u64)
        .rev()
        .map(|g| GenerationInfo {
            generation: g,
            commit: format!("{:x}", 0x3f2a9c1d07e4u64 - (7 - g) * 0x1111),
            intent_hash: format!("{g:02}").repeat(32),
            published_at_ms: NOW - 300_000 - (7 - g) * 3_600_000,
            vm_count: 4,
            status: match g {
                7 => "active",
                4 => "failed",
                _ => "superseded",
            }
            .into(),
            reason: if g == 4 {
                "db-0 was not healthy within 60s; rolled back to generation 3".into()
            } else {
                String::new()
            },
        })
        .collect()
}

pub fn events() -> Vec<Event> {
    let rows: [(EventKind, &str, &str, &str); 10] = [
        (EventKind::WorkerRegistered, "w1", "", "worker w1 registered (8 CPUs, 16 GiB)"),
        (EventKind::WorkerRegistered, "w2", "", "worker w2 registered (4 CPUs, 8 GiB)"),
        (EventKind::GenerationPublished, "", "", "generation 7 published from commit 3f2a9c1d07e4"),
        (EventKind::PlacementChanged, "w1", "web-0", "web-0 placed on w1"),
        (EventKind::PlacementChanged, "w3", "api-1", "api-1 placed on w3"),
        (EventKind::Unplaced, "", "batch-0", "batch-0 cannot be placed: no worker with label gpu=true has 32 CPUs free (most free: 14)"),
        (EventKind::InstancePhase, "w1", "web-0", "web-0 on w1 is running"),
        (EventKind::InstancePhase, "w2", "db-0", "db-0 on w2 failed: exited with status 1"),
        (EventKind::Rollout, "", "", "api: canary api-0 healthy; waiting for promotion"),
        (EventKind::WorkerState, "w4", "", "worker w4 is cordoned: it keeps its instances and gets no new ones"),
    ];
    rows.iter()
        .enumerate()
        .map(|(n, (kind, worker, instance, message))| Event {
            seq: n as u64 + 1,
            timestamp_ms: NOW - 60_000 + n as u64 * 5_000,
            kind: *kind,
            generation: 7,
            worker_id: worker.to_string(),
            instance_id: instance.to_string(),
            message: message.to_string(),
        })
        .collect()
}

/// w1's report, as `getWorker` returns it: its instances with their console log.
pub fn worker_detail(id: &str) -> WorkerStatus {
    let s = status();
    let mut w = s
        .workers
        .iter()
        .find(|w| w.info.id == id)
        .cloned()
        .unwrap_or_default();
    w.instances = s
        .instances
        .iter()
        .filter(|i| i.worker_id == id)
        .map(|i| InstanceReport {
            instance_id: i.instance_id.clone(),
            vm_name: i.vm_name.clone(),
            closure: i.observed_closure.clone(),
            phase: i.phase,
            health: i.health,
            uptime_ms: i.uptime_ms,
            cpu_percent: i.cpu_percent,
            memory_bytes: i.memory_bytes,
            restarts: i.restarts,
            message: i.message.clone(),
            log_tail: format!(
                "[    0.000000] Linux version 6.1.0-cloud-amd64\n[    1.204113] Run /nix/store/…/init as init process\n{} listening on :8080\nGET /healthz 200 0.4ms",
                i.vm_name
            ),
            generation: 7,
        })
        .collect();
    w
}

pub fn pipelines() -> Vec<Pipeline> {
    use schema::ci::{Rollout, Status, Trigger};
    let run = |id: u64, status: Status, rollout: Rollout, message: &str, took: u64| Pipeline {
        id,
        repository: "demo-cluster".into(),
        commit: format!("{:x}", 0x3f2a9c1d07e4u64 - (12 - id) * 0x1111),
        ref_name: "refs/heads/main".into(),
        trigger: Trigger::Push,
        deploy: true,
        status,
        message: message.into(),
        created_ms: NOW - (13 - id) * 600_000,
        started_ms: Some(NOW - (13 - id) * 600_000 + 1_000),
        finished_ms: (status != Status::Running).then(|| NOW - (13 - id) * 600_000 + took),
        generation: (status == Status::Succeeded).then_some(id - 5),
        published: status == Status::Succeeded,
        rollout,
        rollout_message: String::new(),
    };
    vec![
        run(12, Status::Running, Rollout::None, "", 0),
        run(
            11,
            Status::Succeeded,
            Rollout::Converged,
            "published generation 6",
            74_000,
        ),
        run(
            10,
            Status::Failed,
            Rollout::None,
            "nix flake check failed: attribute 'web' missing",
            9_000,
        ),
    ]
}

pub fn pipeline_run() -> PipelineRun {
    use schema::ci::StepStatus;
    let summary = pipelines().remove(1);
    let started = summary.started_ms.unwrap_or(NOW);
    let step = |index: u32, name: &str, secs: u64, summary: &str| StepRecord {
        index,
        name: name.into(),
        status: StepStatus::Succeeded,
        started_ms: Some(started + index as u64 * 10_000),
        finished_ms: Some(started + index as u64 * 10_000 + secs * 1000),
        exit_code: Some(0),
        summary: summary.into(),
    };
    PipelineRun {
        detail: schema::ci::PipelineDetail {
            summary,
            intent_hash: Some("9b1c".repeat(16)),
            steps: vec![
                step(0, "checkout", 1, "3f2a9c1d07e4"),
                step(1, "check", 4, "flake check passed"),
                step(2, "eval", 2, "4 VMs, 7 instances"),
                step(3, "build", 31, "built 4/4"),
                step(4, "push", 6, "4 closures, 212 MiB"),
                step(5, "publish", 1, "generation 6"),
            ],
            phases: vec![PhaseRecord {
                name: "healthy".into(),
                started_ms: started + 60_000,
                finished_ms: started + 74_000,
            }],
        },
        log: (0..6)
            .map(|i| LogLine {
                seq: i + 1,
                step: 3,
                ts_ms: started + 30_000 + i * 1_000,
                line: format!("building '/nix/store/…-vm{i}.drv'..."),
            })
            .collect(),
    }
}

/// An app that has received all of the above over a live connection.
pub fn app() -> App {
    let mut app = App::new("127.0.0.1:7000", NOW, crate::interactive::views::fields);
    app.ci = Some("http://127.0.0.1:7080".into());
    app.apply(Update::Link(Link::Live {
        since_ms: NOW - 60_000,
    }));
    app.apply(Update::Status(Box::new(status())));
    app.apply(Update::Blueprint(7, Box::new(blueprint())));
    app.apply(Update::Generations(generations()));
    app.apply(Update::Events(events()));
    app.apply(Update::Pipelines(Ok(pipelines())));
    app
}
