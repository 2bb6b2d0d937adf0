//! A simulated cluster on a real control plane: workers registered and VMs published through
//! `MasterClient`, and each worker reporting its instances running and healthy — what the
//! deployments page shows, without booting anything.
#![allow(dead_code, clippy::unwrap_used)]

use schema::client::{AssignmentUpdate, MasterClient};
use schema::model::{
    Backend, ClusterSettings, Health, InstanceReport, VmSpec, WorkerInfo, WorkerMetrics,
};

pub const CLOSURE_HASH: &str = "0c9hj2bl0ajiyqslkmbhizbgshrdw9jl";

/// Registers `workers` workers, publishes generation `generation` with `vms` single-replica
/// VMs, and reports every placed instance running (healthy unless its index is a multiple of
/// `unhealthy_every`). Call inside a `LocalSet`.
pub async fn populate(
    addr: &str,
    token: &str,
    workers: usize,
    vms: usize,
    generation: u64,
    unhealthy_every: usize,
) -> MasterClient {
    let (master, _conn) = schema::net::connect_master(addr, token).await.unwrap();
    let op = MasterClient::new(master);
    let gw = op.gateway();
    for w in 0..workers {
        let info = WorkerInfo {
            id: format!("worker-{w:02}"),
            cpu: 64,
            memory_mb: 65_536,
            backends: vec![Backend::Process],
            hostname: format!("host-{w:02}.example"),
            version: "sim".into(),
            ..Default::default()
        };
        gw.register(&info, test_support::sim::ignoring())
            .await
            .unwrap();
    }
    let specs: Vec<VmSpec> = (0..vms)
        .map(|i| {
            let mut s = VmSpec::process(
                &format!("svc-{i:04}"),
                &format!("/nix/store/{CLOSURE_HASH}-svc-{}", i % 7),
            );
            s.memory_mb = 64;
            s
        })
        .collect();
    op.publish_state(
        &format!("{:040x}", generation),
        generation,
        &format!("intent-{generation}"),
        &specs,
        &ClusterSettings {
            name: "sim".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut n = 0usize;
    for w in 0..workers {
        let id = format!("worker-{w:02}");
        let AssignmentUpdate::Changed(a) = gw.get_assignment(&id, 0).await.unwrap() else {
            continue;
        };
        let reports: Vec<InstanceReport> = a
            .instances
            .iter()
            .map(|(instance, spec)| {
                n += 1;
                InstanceReport {
                    health: if unhealthy_every > 0 && n.is_multiple_of(unhealthy_every) {
                        Health::Unhealthy
                    } else {
                        Health::Healthy
                    },
                    uptime_ms: 60_000 + n as u64 * 1000,
                    cpu_percent: (n % 50) as f32,
                    memory_bytes: 48 << 20,
                    ..test_support::sim::running(instance, spec, a.generation)
                }
            })
            .collect();
        let metrics = WorkerMetrics {
            memory_total_bytes: 64 << 30,
            ..Default::default()
        };
        gw.push_data(&id, a.generation, &reports, &metrics)
            .await
            .unwrap();
    }
    op
}
