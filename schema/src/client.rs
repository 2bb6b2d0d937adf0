//! Typed calls on the control plane: each method sends one RPC and turns the `Result` union
//! into a Rust `Result` of model types. The CLI, TUI, worker, CI service and repohub all use
//! these instead of touching builders.

use tokio::sync::mpsc;

use crate::convert::*;
use crate::master_capnp::{
    action_result, assignment_result, event_sink, events_result, generation_result,
    generations_result, master, placement_result, publish_result, push_result, register_result,
    status_result, subscription, watch_result, worker_gateway, worker_result,
};
use crate::model::*;
use crate::worker_capnp::worker_callback;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The control plane answered with an error; its message is the sentence to show.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error("the RPC call failed")]
    Rpc(#[from] capnp::Error),
}

impl From<capnp::NotInSchema> for ClientError {
    fn from(e: capnp::NotInSchema) -> Self {
        ClientError::Rpc(e.into())
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// What `publishState` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub generation: u64,
    pub changed: bool,
    pub placed: u32,
    pub unplaced: u32,
    pub revision: u64,
}

/// A worker's assignment: what should run on it (declared once, in the model).
pub use crate::model::Assignment;

#[derive(Debug, Clone, PartialEq)]
pub enum AssignmentUpdate {
    Unchanged(u64),
    Changed(Assignment),
}

/// Registration answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered {
    pub revision: u64,
    pub heartbeat_interval_ms: u32,
    pub lease_ms: u32,
}

/// The calls a worker makes.
#[derive(Clone)]
pub struct GatewayClient {
    pub inner: worker_gateway::Client,
}

impl GatewayClient {
    pub fn new(inner: worker_gateway::Client) -> Self {
        GatewayClient { inner }
    }

    pub async fn register(
        &self,
        info: &WorkerInfo,
        callback: worker_callback::Client,
    ) -> Result<Registered> {
        let mut req = self.inner.register_request();
        write_worker_info(req.get().init_info(), info);
        req.get().set_callback(callback);
        let resp = req.send().promise.await?;
        match resp.get()?.get_result()?.which()? {
            register_result::Ok(r) => {
                let r = r?;
                Ok(Registered {
                    revision: r.get_revision(),
                    heartbeat_interval_ms: r.get_heartbeat_interval_ms(),
                    lease_ms: r.get_lease_ms(),
                })
            }
            register_result::Err(e) => Err(read_error(e?)?.into()),
        }
    }

    pub async fn get_assignment(
        &self,
        worker_id: &str,
        last_seen_revision: u64,
    ) -> Result<AssignmentUpdate> {
        let mut req = self.inner.get_assignment_request();
        req.get().set_worker_id(worker_id);
        req.get().set_last_seen_revision(last_seen_revision);
        let resp = req.send().promise.await?;
        match resp.get()?.get_result()?.which()? {
            assignment_result::Unchanged(rev) => Ok(AssignmentUpdate::Unchanged(rev)),
            assignment_result::Assignment(a) => Ok(AssignmentUpdate::Changed(read_assignment(a?)?)),
            assignment_result::Err(e) => Err(read_error(e?)?.into()),
        }
    }

    /// Reports what runs; doubles as the heartbeat. Answers the worker's current revision.
    pub async fn push_data(
        &self,
        worker_id: &str,
        observed_generation: u64,
        running: &[InstanceReport],
        metrics: &WorkerMetrics,
    ) -> Result<u64> {
        let mut req = self.inner.push_data_request();
        {
            let mut p = req.get();
            p.set_worker_id(worker_id);
            p.set_observed_generation(observed_generation);
            write_reports(p.reborrow().init_running_vms(running.len() as u32), running);
            write_metrics(p.init_metrics(), metrics);
        }
        let resp = req.send().promise.await?;
        match resp.get()?.get_result()?.which()? {
            push_result::Ok(rev) => Ok(rev),
            push_result::Err(e) => Err(read_error(e?)?.into()),
        }
    }
}

/// The calls an operator (CLI, TUI, CI, repohub) makes.
#[derive(Clone)]
pub struct MasterClient {
    pub inner: master::Client,
}

impl MasterClient {
    pub fn new(inner: master::Client) -> Self {
        MasterClient { inner }
    }

    /// The worker-side calls through the same capability (Master extends WorkerGateway).
    pub fn gateway(&self) -> GatewayClient {
        use capnp::capability::FromClientHook;
        GatewayClient::new(worker_gateway::Client::new(
            self.inner.client.hook.add_ref(),
        ))
    }

    pub async fn publish_state(
        &self,
        commit: &str,
        generation: u64,
        intent_hash: &str,
        specs: &[VmSpec],
        settings: &ClusterSettings,
    ) -> Result<Published> {
        let mut req = self.inner.publish_state_request();
        {
            let mut p = req.get();
            p.set_commit(commit);
            p.set_generation(generation);
            p.set_intent_hash(intent_hash);
            write_vm_specs(p.reborrow().init_vm_specs(specs.len() as u32), specs);
            write_settings(p.init_settings(), settings);
        }
        let resp = req.send().promise.await?;
        match resp.get()?.get_result()?.which()? {
            publish_result::Ok(p) => {
                let p = p?;
                Ok(Published {
                    generation: p.get_generation(),
                    changed: p.get_changed(),
                    placed: p.get_placed(),
                    unplaced: p.get_unplaced(),
                    revision: p.get_revision(),
                })
            }
            publish_result::Err(e) => Err(read_error(e?)?.into()),
        }
    }

    pub async fn cluster_status(&self) -> Result<ClusterStatus> {
        let resp = self
            .inner
            .get_cluster_status_request()
            .send()
            .promise
            .await?;
        match resp.get()?.get_result()?.which()? {
            status_result::Ok(s) => Ok(read_cluster_status(s?)?),
            status_result::Err(e) => Err(read_error(e?)?.into()),
        }
    }

    pub async fn worker(&self, worker_id: &str) -> Result<WorkerStatus> {
        let mut req = self.inner.get_worker_request();
        req.get().set_worker_id(worker_id);
        let resp = req.send().promise.await?;
        match resp.get()?.get_result()?.which()? {
            worker_result::Ok(w) => Ok(read_worker_status(w?)?),
            worker_result::Err(e) => Err(read_error(e?)?.into()),
        }
    }

    pub async fn generations(&self, limit: u32) -> Result<Vec<GenerationInfo>> {
        let mut req = self.inner.list_generations_request();
        req.get().set_limit(limit);
        let resp = req.send().promise.await?;
        match resp.get()?.get_result()?.which()? {
            generations_result::Ok(list) => list?
                .iter()
                .map(read_generation_info)
                .collect::<capnp::Result<_>>()
                .map_err(Into::into),
            generations_result::Err(e) => Err(read_error(e?)?.into()),
        }
    }

    /// One generation with its full specs.
    pub async fn generation(&self, generation: u64) -> Result<(GenerationInfo, Blueprint)> {
        let mut req = self.inner.get_generation_request();
        req.get().set_generation(generation);
        let resp = req.send().promise.await?;
        match resp.get()?.get_result()?.which()? {
            generation_result::Ok(d) => {
                let d = d?;
                Ok((
                    read_generation_info(d.get_info()?)?,
                    Blueprint {
                        cluster: read_settings(d.get_settings()?)?,
                        vms: read_vm_specs(d.get_vm_specs()?)?,
                    },
                ))
            }
            generation_result::Err(e) => Err(read_error(e?)?.into()),
        }
    }

    pub async fn events(&self, since_seq: u64, limit: u32) -> Result<Vec<Event>> {
        let mut req = self.inner.list_events_request();
        req.get().set_since_seq(since_seq);
        req.get().set_limit(limit);
        let resp = req.send().promise.await?;
        match resp.get()?.get_result()?.which()? {
            events_result::Ok(list) => Ok(read_events(list?)?),
            events_result::Err(e) => Err(read_error(e?)?.into()),
        }
    }

    /// No new instances on the worker; its instances stay.
    pub async fn cordon(&self, worker_id: &str) -> Result<String> {
        let mut req = self.inner.cordon_request();
        req.get().set_worker_id(worker_id);
        let resp = req.send().promise.await?;
        action_result(resp.get()?.get_result()?)
    }

    pub async fn uncordon(&self, worker_id: &str) -> Result<String> {
        let mut req = self.inner.uncordon_request();
        req.get().set_worker_id(worker_id);
        let resp = req.send().promise.await?;
        action_result(resp.get()?.get_result()?)
    }

    /// Moves the worker's instances elsewhere, respecting each VM's `maxUnavailable`.
    pub async fn drain(&self, worker_id: &str) -> Result<String> {
        let mut req = self.inner.drain_request();
        req.get().set_worker_id(worker_id);
        let resp = req.send().promise.await?;
        action_result(resp.get()?.get_result()?)
    }

    /// Makes `to` active again; 0 means the last generation that rolled out completely.
    pub async fn rollback(&self, to: u64) -> Result<String> {
        let mut req = self.inner.rollback_request();
        req.get().set_to_generation(to);
        let resp = req.send().promise.await?;
        action_result(resp.get()?.get_result()?)
    }

    /// Restarts one instance where it runs.
    pub async fn restart_instance(&self, instance: &str) -> Result<String> {
        let mut req = self.inner.restart_instance_request();
        req.get().set_instance_id(instance);
        let resp = req.send().promise.await?;
        action_result(resp.get()?.get_result()?)
    }

    /// Where the scheduler would place `specs` now; nothing changes.
    pub async fn plan_placement(
        &self,
        specs: &[VmSpec],
        settings: &ClusterSettings,
    ) -> Result<Placement> {
        let mut req = self.inner.plan_placement_request();
        write_vm_specs(req.get().init_vm_specs(specs.len() as u32), specs);
        write_settings(req.get().init_settings(), settings);
        let resp = req.send().promise.await?;
        match resp.get()?.get_result()?.which()? {
            placement_result::Ok(p) => Ok(read_placement(p?)?),
            placement_result::Err(e) => Err(read_error(e?)?.into()),
        }
    }

    /// Lets a canary rollout continue to every instance of `vm`.
    pub async fn promote(&self, vm: &str) -> Result<String> {
        let mut req = self.inner.promote_request();
        req.get().set_vm_name(vm);
        let resp = req.send().promise.await?;
        action_result(resp.get()?.get_result()?)
    }

    /// Subscribes to cluster events after `since_seq`. Events arrive on the receiver in
    /// batches; dropping the returned [`Subscription`] ends the stream.
    pub async fn watch(
        &self,
        since_seq: u64,
    ) -> Result<(Subscription, mpsc::UnboundedReceiver<Vec<Event>>)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let sink: event_sink::Client = capnp_rpc::new_client(ChannelSink { tx });
        let mut req = self.inner.watch_request();
        req.get().set_sink(sink);
        req.get().set_since_seq(since_seq);
        let resp = req.send().promise.await?;
        match resp.get()?.get_result()?.which()? {
            watch_result::Ok(handle) => Ok((Subscription { _handle: handle? }, rx)),
            watch_result::Err(e) => Err(read_error(e?)?.into()),
        }
    }
}

fn action_result(r: action_result::Reader<'_>) -> Result<String> {
    match r.which()? {
        action_result::Ok(t) => Ok(text(t)?),
        action_result::Err(e) => Err(read_error(e?)?.into()),
    }
}

/// Keeps a `watch` alive; drop it to unsubscribe.
pub struct Subscription {
    _handle: subscription::Client,
}

struct ChannelSink {
    tx: mpsc::UnboundedSender<Vec<Event>>,
}

impl event_sink::Server for ChannelSink {
    fn push(
        self: capnp::capability::Rc<Self>,
        params: event_sink::PushParams,
        _results: event_sink::PushResults,
    ) -> impl std::future::Future<Output = capnp::Result<()>> + 'static {
        let result = (|| {
            let events = read_events(params.get()?.get_events()?)?;
            self.tx
                .send(events)
                .map_err(|_| capnp::Error::disconnected("the watcher went away".to_string()))
        })();
        std::future::ready(result)
    }
}
