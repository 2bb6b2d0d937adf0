//! The Cap'n Proto edge: `Bootstrap` → `login(token)` → `Master` (operators) or
//! `WorkerGateway` (workers), plus the pushes that go the other way — "your assignment
//! changed" to workers and event batches to watchers.
//!
//! Everything runs on one tokio `LocalSet`: the cluster lives in a `RefCell` and no borrow is
//! held across an `await`, so requests are applied one at a time, in arrival order.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant};

use capnp::capability::Rc as CapRc;
use capnp::Error as CapError;
use futures::future::ready;
use schema::common_capnp::error;
use schema::convert::*;
use schema::master_capnp::{bootstrap, master, subscription, worker_gateway};
use schema::model::{Event, WorkerState};
use schema::worker_capnp::worker_callback;
use schema::{ErrorCode, RemoteError};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::auth::{Role, Tokens};
use crate::cluster::{Cluster, Outcome};

/// Events sent to a new watcher before live ones, at most.
const WATCH_BACKLOG: u32 = 1_000;

/// The control plane's shared state and its outbound channels.
pub struct Server {
    pub cluster: RefCell<Cluster>,
    callbacks: RefCell<HashMap<String, worker_callback::Client>>,
    watchers: RefCell<BTreeMap<u64, mpsc::UnboundedSender<Vec<Event>>>>,
    next_watcher: Cell<u64>,
    pub counters: RefCell<Counters>,
    /// The last cluster status and the cluster version it was computed at. UIs read the
    /// status after every event they are sent; between changes a read only encodes it.
    status_cache: RefCell<Option<(u64, schema::model::ClusterStatus)>>,
}

/// Request counters for `/metrics`.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    pub publishes: u64,
    pub publish_rejections: u64,
    pub registrations: u64,
    pub pushes: u64,
    pub assignments: u64,
    pub status_reads: u64,
    pub logins_refused: u64,
}

impl Server {
    pub fn new(cluster: Cluster) -> Rc<Server> {
        Rc::new(Server {
            cluster: RefCell::new(cluster),
            callbacks: RefCell::new(HashMap::new()),
            watchers: RefCell::new(BTreeMap::new()),
            next_watcher: Cell::new(1),
            counters: RefCell::new(Counters::default()),
            status_cache: RefCell::new(None),
        })
    }

    /// Broadcasts events and tells workers their assignment changed.
    fn dispatch(self: &Rc<Self>, outcome: Outcome) {
        if !outcome.events.is_empty() {
            for e in &outcome.events {
                tracing::info!(kind = e.kind.as_str(), "{}", e.message);
            }
            self.watchers
                .borrow_mut()
                .retain(|_, tx| tx.send(outcome.events.clone()).is_ok());
        }
        for (worker, revision) in outcome.notify {
            let Some(callback) = self.callbacks.borrow().get(&worker).cloned() else {
                continue;
            };
            let server = Rc::clone(self);
            tokio::task::spawn_local(async move {
                let mut req = callback.assignment_changed_request();
                req.get().set_revision(revision);
                if let Err(e) = req.send().promise.await {
                    // The worker will poll; forget a callback that no longer answers.
                    tracing::debug!(worker, "assignment push failed: {e}");
                    server.callbacks.borrow_mut().remove(&worker);
                }
            });
        }
    }

    /// Runs an operator action and answers with its sentence.
    fn action(
        self: &Rc<Self>,
        mut result: schema::master_capnp::action_result::Builder<'_>,
        run: impl FnOnce(&mut Cluster) -> Result<(String, Outcome), RemoteError>,
    ) {
        let outcome = run(&mut self.cluster.borrow_mut());
        match outcome {
            Ok((message, outcome)) => {
                tracing::info!("{message}");
                result.set_ok(message.as_str());
                self.dispatch(outcome);
            }
            Err(e) => write_error(result.init_err(), &e),
        }
    }

    /// Checks leases and rollouts every `period`; runs until the process ends.
    pub async fn expire_leases_every(self: Rc<Self>, period: Duration) {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let outcome = self.cluster.borrow_mut().tick(Instant::now());
            match outcome {
                Ok(o) => self.dispatch(o),
                Err(e) => tracing::error!("periodic check failed: {e}"),
            }
        }
    }

    fn register(
        self: &Rc<Self>,
        params: worker_gateway::RegisterParams,
        mut results: worker_gateway::RegisterResults,
        bound: Option<&RefCell<Option<String>>>,
    ) -> Result<(), CapError> {
        let p = params.get()?;
        let info = read_worker_info(p.get_info()?)?;
        let callback = p.get_callback().ok();
        if let Some(bound) = bound {
            if let Some(existing) = bound.borrow().as_deref() {
                if existing != info.id {
                    let e = RemoteError::new(
                        ErrorCode::Unauthorized,
                        format!("this session is registered as worker {existing}; it cannot register {} too", info.id),
                    );
                    write_error(results.get().init_result().init_err(), &e);
                    return Ok(());
                }
            }
        }
        let id = info.id.clone();
        let outcome = self.cluster.borrow_mut().register(info);
        match outcome {
            Ok((revision, outcome)) => {
                self.counters.borrow_mut().registrations += 1;
                if let Some(bound) = bound {
                    *bound.borrow_mut() = Some(id.clone());
                }
                if let Some(cb) = callback {
                    self.callbacks.borrow_mut().insert(id, cb);
                }
                let config = self.cluster.borrow().config();
                let mut ok = results.get().init_result().init_ok();
                ok.set_revision(revision);
                ok.set_heartbeat_interval_ms(config.heartbeat_interval.as_millis() as u32);
                ok.set_lease_ms(config.lease.as_millis() as u32);
                self.dispatch(outcome);
            }
            Err(e) => write_error(results.get().init_result().init_err(), &e),
        }
        Ok(())
    }

    fn get_assignment(
        &self,
        params: worker_gateway::GetAssignmentParams,
        mut results: worker_gateway::GetAssignmentResults,
        bound: Option<&RefCell<Option<String>>>,
    ) -> Result<(), CapError> {
        let p = params.get()?;
        let worker_id = text(p.get_worker_id())?;
        if let Err(e) = check_bound(bound, &worker_id) {
            write_error(results.get().init_result().init_err(), &e);
            return Ok(());
        }
        self.counters.borrow_mut().assignments += 1;
        let cluster = self.cluster.borrow();
        match cluster.assignment(&worker_id, p.get_last_seen_revision()) {
            Ok(None) => results
                .get()
                .init_result()
                .set_unchanged(p.get_last_seen_revision()),
            Ok(Some(a)) => write_assignment(results.get().init_result().init_assignment(), &a),
            Err(e) => write_error(results.get().init_result().init_err(), &e),
        }
        Ok(())
    }

    fn push_data(
        self: &Rc<Self>,
        params: worker_gateway::PushDataParams,
        mut results: worker_gateway::PushDataResults,
        bound: Option<&RefCell<Option<String>>>,
    ) -> Result<(), CapError> {
        let p = params.get()?;
        let worker_id = text(p.get_worker_id())?;
        if let Err(e) = check_bound(bound, &worker_id) {
            write_error(results.get().init_result().init_err(), &e);
            return Ok(());
        }
        let reports = read_reports(p.get_running_vms()?)?;
        let metrics = read_metrics(p.get_metrics()?)?;
        self.counters.borrow_mut().pushes += 1;
        let outcome = self.cluster.borrow_mut().push_data(
            &worker_id,
            p.get_observed_generation(),
            reports,
            metrics,
        );
        match outcome {
            Ok((revision, outcome)) => {
                results.get().init_result().set_ok(revision);
                self.dispatch(outcome);
            }
            Err(e) => write_error(results.get().init_result().init_err(), &e),
        }
        Ok(())
    }
}

fn check_bound(
    bound: Option<&RefCell<Option<String>>>,
    worker_id: &str,
) -> Result<(), RemoteError> {
    let Some(bound) = bound else { return Ok(()) };
    match bound.borrow().as_deref() {
        Some(id) if id == worker_id => Ok(()),
        Some(id) => Err(RemoteError::new(
            ErrorCode::Unauthorized,
            format!(
                "this session is registered as worker {id}; it cannot act for worker {worker_id}"
            ),
        )),
        None => Err(RemoteError::new(
            ErrorCode::Unauthorized,
            "register this worker before asking for its assignment or reporting",
        )),
    }
}

fn write_err(b: error::Builder<'_>, e: &RemoteError) {
    write_error(b, e);
}

// ---- Bootstrap ----

pub struct BootstrapImpl {
    server: Rc<Server>,
    tokens: Tokens,
}

impl BootstrapImpl {
    pub fn client(server: Rc<Server>, tokens: Tokens) -> bootstrap::Client {
        capnp_rpc::new_client(BootstrapImpl { server, tokens })
    }
}

impl bootstrap::Server for BootstrapImpl {
    fn login(
        self: CapRc<Self>,
        params: bootstrap::LoginParams,
        mut results: bootstrap::LoginResults,
    ) -> impl std::future::Future<Output = Result<(), CapError>> + 'static {
        let result = (|| {
            let token = text(params.get()?.get_token())?;
            let mut r = results.get().init_result();
            match self.tokens.check(&token) {
                Some(Role::Operator) => {
                    r.set_master(capnp_rpc::new_client(MasterImpl {
                        server: Rc::clone(&self.server),
                    }));
                }
                Some(Role::Worker) => {
                    r.set_worker(capnp_rpc::new_client(GatewayImpl {
                        server: Rc::clone(&self.server),
                        bound: RefCell::new(None),
                    }));
                }
                None => {
                    self.server.counters.borrow_mut().logins_refused += 1;
                    write_err(
                        r.init_err(),
                        &RemoteError::new(
                            ErrorCode::Unauthorized,
                            "invalid token; use the operator.token or worker.token written beside the control plane's database",
                        ),
                    );
                }
            }
            Ok(())
        })();
        ready(result)
    }
}

// ---- WorkerGateway (worker token) ----

struct GatewayImpl {
    server: Rc<Server>,
    /// The worker id this session registered as; it may act for no other.
    bound: RefCell<Option<String>>,
}

/// The worker calls, on the worker gateway (acting only for the worker id the session
/// registered as) and on the Master (which extends it, acting for any worker).
macro_rules! worker_calls {
    ($ty:ty, |$s:ident| $bound:expr) => {
        impl worker_gateway::Server for $ty {
            fn register(
                self: CapRc<Self>,
                params: worker_gateway::RegisterParams,
                results: worker_gateway::RegisterResults,
            ) -> impl std::future::Future<Output = Result<(), CapError>> + 'static {
                let $s = &self;
                ready(self.server.register(params, results, $bound))
            }

            fn get_assignment(
                self: CapRc<Self>,
                params: worker_gateway::GetAssignmentParams,
                results: worker_gateway::GetAssignmentResults,
            ) -> impl std::future::Future<Output = Result<(), CapError>> + 'static {
                let $s = &self;
                ready(self.server.get_assignment(params, results, $bound))
            }

            fn push_data(
                self: CapRc<Self>,
                params: worker_gateway::PushDataParams,
                results: worker_gateway::PushDataResults,
            ) -> impl std::future::Future<Output = Result<(), CapError>> + 'static {
                let $s = &self;
                ready(self.server.push_data(params, results, $bound))
            }
        }
    };
}

worker_calls!(GatewayImpl, |s| Some(&s.bound));

// ---- Master (operator token) ----

struct MasterImpl {
    server: Rc<Server>,
}

worker_calls!(MasterImpl, |_s| None);

/// An operator action: read its one argument, run it on the cluster, answer with its sentence.
macro_rules! action {
    ($name:ident, $params:ty, $results:ty, |$p:ident| $arg:expr, |$c:ident, $a:ident| $run:expr) => {
        fn $name(
            self: CapRc<Self>,
            params: $params,
            mut results: $results,
        ) -> impl std::future::Future<Output = Result<(), CapError>> + 'static {
            let result = (|| {
                let $p = params.get()?;
                let $a = $arg;
                self.server.action(results.get().init_result(), |$c| $run);
                Ok(())
            })();
            ready(result)
        }
    };
}

impl master::Server for MasterImpl {
    action!(
        cordon,
        master::CordonParams,
        master::CordonResults,
        |p| text(p.get_worker_id())?,
        |c, id| c.set_worker_state(&id, WorkerState::Cordoned)
    );
    action!(
        uncordon,
        master::UncordonParams,
        master::UncordonResults,
        |p| text(p.get_worker_id())?,
        |c, id| c.set_worker_state(&id, WorkerState::Ready)
    );
    action!(
        drain,
        master::DrainParams,
        master::DrainResults,
        |p| text(p.get_worker_id())?,
        |c, id| c.set_worker_state(&id, WorkerState::Draining)
    );
    action!(
        rollback,
        master::RollbackParams,
        master::RollbackResults,
        |p| p.get_to_generation(),
        |c, to| c.rollback(to)
    );
    action!(
        promote,
        master::PromoteParams,
        master::PromoteResults,
        |p| text(p.get_vm_name())?,
        |c, vm| c.promote(&vm)
    );
    action!(
        restart_instance,
        master::RestartInstanceParams,
        master::RestartInstanceResults,
        |p| text(p.get_instance_id())?,
        |c, id| c.restart_instance(&id)
    );
    fn publish_state(
        self: CapRc<Self>,
        params: master::PublishStateParams,
        mut results: master::PublishStateResults,
    ) -> impl std::future::Future<Output = Result<(), CapError>> + 'static {
        let result = (|| {
            let p = params.get()?;
            let commit = text(p.get_commit())?;
            let intent = text(p.get_intent_hash())?;
            let decoded = p
                .get_vm_specs()
                .and_then(read_vm_specs)
                .and_then(|specs| Ok((specs, read_settings(p.get_settings()?)?)));
            let (specs, settings) = match decoded {
                Ok(v) => v,
                Err(e) => {
                    self.server.counters.borrow_mut().publish_rejections += 1;
                    let e = RemoteError::new(
                        ErrorCode::Invalid,
                        format!("publishState rejected: the VM specs cannot be read ({}); nothing was stored", e.extra),
                    );
                    write_err(results.get().init_result().init_err(), &e);
                    return Ok(());
                }
            };
            let outcome = self.server.cluster.borrow_mut().publish(
                &commit,
                p.get_generation(),
                &intent,
                specs,
                settings,
            );
            match outcome {
                Ok((summary, outcome)) => {
                    self.server.counters.borrow_mut().publishes += 1;
                    let mut ok = results.get().init_result().init_ok();
                    ok.set_generation(summary.generation);
                    ok.set_changed(summary.changed);
                    ok.set_placed(summary.placed);
                    ok.set_unplaced(summary.unplaced);
                    ok.set_revision(summary.revision);
                    self.server.dispatch(outcome);
                }
                Err(e) => {
                    self.server.counters.borrow_mut().publish_rejections += 1;
                    tracing::warn!("{}", e.message);
                    write_err(results.get().init_result().init_err(), &e);
                }
            }
            Ok(())
        })();
        ready(result)
    }

    fn get_cluster_status(
        self: CapRc<Self>,
        _params: master::GetClusterStatusParams,
        mut results: master::GetClusterStatusResults,
    ) -> impl std::future::Future<Output = Result<(), CapError>> + 'static {
        self.server.counters.borrow_mut().status_reads += 1;
        let version = self.server.cluster.borrow().version();
        let mut cache = self.server.status_cache.borrow_mut();
        let cached = match &mut *cache {
            Some((v, status)) if *v == version => status,
            slot => {
                &mut slot
                    .insert((version, self.server.cluster.borrow().status()))
                    .1
            }
        };
        write_cluster_status(results.get().init_result().init_ok(), cached);
        ready(Ok(()))
    }

    fn get_worker(
        self: CapRc<Self>,
        params: master::GetWorkerParams,
        mut results: master::GetWorkerResults,
    ) -> impl std::future::Future<Output = Result<(), CapError>> + 'static {
        let result = (|| {
            let id = text(params.get()?.get_worker_id())?;
            match self.server.cluster.borrow().worker(&id) {
                Ok(w) => write_worker_status(results.get().init_result().init_ok(), &w),
                Err(e) => write_err(results.get().init_result().init_err(), &e),
            }
            Ok(())
        })();
        ready(result)
    }

    fn watch(
        self: CapRc<Self>,
        params: master::WatchParams,
        mut results: master::WatchResults,
    ) -> impl std::future::Future<Output = Result<(), CapError>> + 'static {
        let result = (|| {
            let p = params.get()?;
            let sink = p.get_sink()?;
            let since = p.get_since_seq();
            let server = &self.server;
            let (tx, mut rx) = mpsc::unbounded_channel::<Vec<Event>>();
            // Backlog and registration happen in the same turn of the event loop, so no
            // event falls between the two.
            let backlog = {
                let cluster = server.cluster.borrow();
                let from = since.max(cluster.last_seq().saturating_sub(WATCH_BACKLOG as u64));
                match cluster.events(from, WATCH_BACKLOG) {
                    Ok(b) => b,
                    Err(e) => {
                        write_err(results.get().init_result().init_err(), &e);
                        return Ok(());
                    }
                }
            };
            let id = server.next_watcher.get();
            server.next_watcher.set(id + 1);
            server.watchers.borrow_mut().insert(id, tx);
            let weak = Rc::downgrade(server);
            tokio::task::spawn_local(async move {
                let mut pending = if backlog.is_empty() {
                    None
                } else {
                    Some(backlog)
                };
                loop {
                    let batch = match pending.take() {
                        Some(b) => b,
                        None => match rx.recv().await {
                            Some(b) => b,
                            None => break,
                        },
                    };
                    let mut req = sink.push_request();
                    write_events(req.get().init_events(batch.len() as u32), &batch);
                    if req.send().promise.await.is_err() {
                        break;
                    }
                }
                if let Some(server) = weak.upgrade() {
                    server.watchers.borrow_mut().remove(&id);
                }
            });
            let handle: subscription::Client = capnp_rpc::new_client(SubscriptionImpl {
                server: Rc::downgrade(server),
                id,
            });
            results.get().init_result().set_ok(handle);
            Ok(())
        })();
        ready(result)
    }

    fn list_generations(
        self: CapRc<Self>,
        params: master::ListGenerationsParams,
        mut results: master::ListGenerationsResults,
    ) -> impl std::future::Future<Output = Result<(), CapError>> + 'static {
        let result = (|| {
            let limit = params.get()?.get_limit();
            match self.server.cluster.borrow().generations(limit) {
                Ok(list) => {
                    let mut b = results.get().init_result().init_ok(list.len() as u32);
                    for (i, g) in list.iter().enumerate() {
                        write_generation_info(b.reborrow().get(i as u32), g);
                    }
                }
                Err(e) => write_err(results.get().init_result().init_err(), &e),
            }
            Ok(())
        })();
        ready(result)
    }

    fn list_events(
        self: CapRc<Self>,
        params: master::ListEventsParams,
        mut results: master::ListEventsResults,
    ) -> impl std::future::Future<Output = Result<(), CapError>> + 'static {
        let result = (|| {
            let p = params.get()?;
            match self
                .server
                .cluster
                .borrow()
                .events(p.get_since_seq(), p.get_limit())
            {
                Ok(list) => write_events(
                    results.get().init_result().init_ok(list.len() as u32),
                    &list,
                ),
                Err(e) => write_err(results.get().init_result().init_err(), &e),
            }
            Ok(())
        })();
        ready(result)
    }

    fn plan_placement(
        self: CapRc<Self>,
        params: master::PlanPlacementParams,
        mut results: master::PlanPlacementResults,
    ) -> impl std::future::Future<Output = Result<(), CapError>> + 'static {
        let result = (|| {
            let p = params.get()?;
            let specs = read_vm_specs(p.get_vm_specs()?)?;
            let settings = read_settings(p.get_settings()?)?;
            match self
                .server
                .cluster
                .borrow()
                .plan_placement(&specs, &settings)
            {
                Ok(placement) => write_placement(results.get().init_result().init_ok(), &placement),
                Err(e) => write_err(results.get().init_result().init_err(), &e),
            }
            Ok(())
        })();
        ready(result)
    }

    fn get_generation(
        self: CapRc<Self>,
        params: master::GetGenerationParams,
        mut results: master::GetGenerationResults,
    ) -> impl std::future::Future<Output = Result<(), CapError>> + 'static {
        let result = (|| {
            let generation = params.get()?.get_generation();
            match self.server.cluster.borrow().generation(generation) {
                Ok((info, blueprint)) => {
                    let mut ok = results.get().init_result().init_ok();
                    write_generation_info(ok.reborrow().init_info(), &info);
                    write_settings(ok.reborrow().init_settings(), &blueprint.cluster);
                    write_vm_specs(ok.init_vm_specs(blueprint.vms.len() as u32), &blueprint.vms);
                }
                Err(e) => write_err(results.get().init_result().init_err(), &e),
            }
            Ok(())
        })();
        ready(result)
    }
}

struct SubscriptionImpl {
    server: std::rc::Weak<Server>,
    id: u64,
}

impl subscription::Server for SubscriptionImpl {}

impl Drop for SubscriptionImpl {
    fn drop(&mut self) {
        if let Some(server) = self.server.upgrade() {
            server.watchers.borrow_mut().remove(&self.id);
        }
    }
}

/// File descriptors kept free of connections: the database, its journal, the HTTP endpoint,
/// the logs and what tokio itself needs.
pub const RESERVED_FDS: u64 = 64;

/// How many connections may be open at once when this process may open `fd_limit` files.
pub fn max_connections(fd_limit: u64) -> usize {
    usize::try_from(fd_limit.saturating_sub(RESERVED_FDS).max(1)).unwrap_or(usize::MAX)
}

/// Accepts connections for ever. Run inside a `LocalSet`.
///
/// Nothing a client does ends the control plane: when accepting fails — out of file
/// descriptors above all — it says so once per burst, waits a moment for descriptors to free
/// up and goes on. At most `max_connections` are open at once; a connection beyond that is
/// closed at once, so the descriptors the database needs stay available.
pub async fn serve(
    listener: TcpListener,
    server: Rc<Server>,
    tokens: Tokens,
    max_connections: usize,
) -> std::io::Result<()> {
    let bootstrap = BootstrapImpl::client(server, tokens);
    let open = Rc::new(std::cell::Cell::new(0usize));
    let mut refused = 0u64;
    let mut failing = false;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => {
                failing = false;
                accepted
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(
                        error = %e,
                        open = open.get(),
                        "cannot accept a connection; retrying in 100 ms"
                    );
                    failing = true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        if open.get() >= max_connections {
            refused += 1;
            if refused.is_power_of_two() {
                tracing::warn!(%peer, max_connections, refused, "too many connections; closing the new one");
            }
            drop(stream);
            continue;
        }
        tracing::debug!(%peer, "connection");
        open.set(open.get() + 1);
        let open = Rc::clone(&open);
        let bootstrap = bootstrap.clone();
        tokio::task::spawn_local(async move {
            schema::net::serve_connection(stream, bootstrap).await;
            open.set(open.get().saturating_sub(1));
        });
    }
}
