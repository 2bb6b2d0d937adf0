//! Pieces of a simulated worker for tests and benches that drive a real control plane
//! without booting anything: the callback a worker registers, the report of an instance
//! that runs its spec and is healthy, and publishing specs as CI would.

use schema::client::{ClientError, MasterClient, Published};
use schema::model::{
    content_hash, ClusterSettings, Health, InstanceReport, Phase, PlacementStrategy, VmSpec,
};
use schema::worker_capnp::worker_callback;
use tokio::sync::mpsc;

/// A worker's callback: each "your assignment changed" push sends its revision to a channel,
/// or, built with [`ignoring`], is only acknowledged.
pub struct Pushes(Option<mpsc::UnboundedSender<u64>>);

impl worker_callback::Server for Pushes {
    fn assignment_changed(
        self: capnp::capability::Rc<Self>,
        params: worker_callback::AssignmentChangedParams,
        _: worker_callback::AssignmentChangedResults,
    ) -> impl std::future::Future<Output = capnp::Result<()>> + 'static {
        let r = params.get().map(|p| {
            if let Some(tx) = &self.0 {
                let _ = tx.send(p.get_revision());
            }
        });
        std::future::ready(r)
    }
}

/// A callback whose pushed revisions arrive on the returned receiver.
pub fn callback() -> (worker_callback::Client, mpsc::UnboundedReceiver<u64>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (capnp_rpc::new_client(Pushes(Some(tx))), rx)
}

/// A callback that acknowledges pushes and nothing else.
pub fn ignoring() -> worker_callback::Client {
    capnp_rpc::new_client(Pushes(None))
}

/// `instance` running `spec`'s closure, healthy, at `generation`; change fields with
/// `InstanceReport { uptime_ms: …, ..running(…) }`.
pub fn running(instance: &str, spec: &VmSpec, generation: u64) -> InstanceReport {
    InstanceReport {
        instance_id: instance.to_string(),
        vm_name: spec.name.clone(),
        closure: spec.closure.clone(),
        phase: Phase::Running,
        health: Health::Healthy,
        generation,
        ..Default::default()
    }
}

/// Publishes `specs` as generation `generation` of cluster `test` (spread), with commit
/// `commit<generation>` and the content hash as intent hash, as CI would.
pub async fn publish(
    op: &MasterClient,
    generation: u64,
    specs: &[VmSpec],
) -> Result<Published, ClientError> {
    let settings = ClusterSettings {
        name: "test".into(),
        strategy: PlacementStrategy::Spread,
    };
    op.publish_state(
        &format!("commit{generation}"),
        generation,
        &content_hash(&settings, specs),
        specs,
        &settings,
    )
    .await
}
