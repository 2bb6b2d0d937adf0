//! Moves values between the generated Cap'n Proto types and [`crate::model`].
//!
//! Readers fail with a [`capnp::Error`] naming the field when the peer sent something this
//! schema does not know (an enum value from a newer schema, invalid UTF-8), so a server can
//! refuse the request whole.

use std::collections::BTreeMap;

use capnp::text_list;

use crate::common_capnp as c;
use crate::master_capnp as m;
use crate::model::*;

type R<T> = capnp::Result<T>;

pub fn text(t: capnp::Result<capnp::text::Reader<'_>>) -> R<String> {
    Ok(t?.to_str()?.to_string())
}

fn bad(what: &str) -> capnp::Error {
    capnp::Error::failed(format!(
        "unknown {what} value (is the peer running a newer schema?)"
    ))
}

// ---- small pieces ----

fn read_kv(
    list: capnp::struct_list::Reader<'_, c::key_value::Owned>,
) -> R<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for kv in list.iter() {
        map.insert(text(kv.get_key())?, text(kv.get_value())?);
    }
    Ok(map)
}

fn write_kv(
    mut list: capnp::struct_list::Builder<'_, c::key_value::Owned>,
    map: &BTreeMap<String, String>,
) {
    for (i, (k, v)) in map.iter().enumerate() {
        let mut kv = list.reborrow().get(i as u32);
        kv.set_key(k.as_str());
        kv.set_value(v.as_str());
    }
}

fn read_texts(list: text_list::Reader<'_>) -> R<Vec<String>> {
    list.iter().map(text).collect()
}

fn write_texts(mut list: text_list::Builder<'_>, items: &[String]) {
    for (i, s) in items.iter().enumerate() {
        list.set(i as u32, s.as_str());
    }
}

pub fn backend_to_wire(b: Backend) -> c::Backend {
    match b {
        Backend::CloudHypervisor => c::Backend::CloudHypervisor,
        Backend::Qemu => c::Backend::Qemu,
        Backend::Process => c::Backend::Process,
    }
}

pub fn backend_from_wire(b: c::Backend) -> Backend {
    match b {
        c::Backend::CloudHypervisor => Backend::CloudHypervisor,
        c::Backend::Qemu => Backend::Qemu,
        c::Backend::Process => Backend::Process,
    }
}

fn read_backend(b: Result<c::Backend, capnp::NotInSchema>) -> R<Backend> {
    b.map(backend_from_wire).map_err(|_| bad("backend"))
}

pub fn phase_to_wire(p: Phase) -> c::Phase {
    match p {
        Phase::Pending => c::Phase::Pending,
        Phase::Fetching => c::Phase::Fetching,
        Phase::Starting => c::Phase::Starting,
        Phase::Running => c::Phase::Running,
        Phase::Stopping => c::Phase::Stopping,
        Phase::Stopped => c::Phase::Stopped,
        Phase::Failed => c::Phase::Failed,
        Phase::CrashLoop => c::Phase::CrashLoop,
        Phase::Unknown => c::Phase::Unknown,
    }
}

fn read_phase(p: Result<c::Phase, capnp::NotInSchema>) -> Phase {
    // An unknown phase from a newer worker is shown as unknown rather than failing the report.
    match p {
        Ok(c::Phase::Pending) => Phase::Pending,
        Ok(c::Phase::Fetching) => Phase::Fetching,
        Ok(c::Phase::Starting) => Phase::Starting,
        Ok(c::Phase::Running) => Phase::Running,
        Ok(c::Phase::Stopping) => Phase::Stopping,
        Ok(c::Phase::Stopped) => Phase::Stopped,
        Ok(c::Phase::Failed) => Phase::Failed,
        Ok(c::Phase::CrashLoop) => Phase::CrashLoop,
        Ok(c::Phase::Unknown) | Err(_) => Phase::Unknown,
    }
}

pub fn health_to_wire(h: Health) -> c::Health {
    match h {
        Health::Unknown => c::Health::Unknown,
        Health::Starting => c::Health::Starting,
        Health::Healthy => c::Health::Healthy,
        Health::Unhealthy => c::Health::Unhealthy,
    }
}

fn read_health(h: Result<c::Health, capnp::NotInSchema>) -> Health {
    match h {
        Ok(c::Health::Starting) => Health::Starting,
        Ok(c::Health::Healthy) => Health::Healthy,
        Ok(c::Health::Unhealthy) => Health::Unhealthy,
        Ok(c::Health::Unknown) | Err(_) => Health::Unknown,
    }
}

// ---- VmSpec ----

pub fn write_vm_spec(mut b: c::vm_spec::Builder<'_>, s: &VmSpec) {
    b.set_name(s.name.as_str());
    b.set_role(s.role.as_str());
    b.set_replicas(s.replicas);
    b.set_cpu(s.cpu);
    b.set_memory_mb(s.memory_mb);
    write_kv(b.reborrow().init_labels(s.labels.len() as u32), &s.labels);
    write_kv(
        b.reborrow().init_constraints(s.constraints.len() as u32),
        &s.constraints,
    );
    b.set_backend(backend_to_wire(s.backend));
    b.set_closure(s.closure.as_str());
    b.set_stop_after_disconnect_ms(s.stop_after_disconnect_ms);
    b.set_exec(s.exec.as_str());
    write_texts(b.reborrow().init_args(s.args.len() as u32), &s.args);
    write_kv(b.reborrow().init_env(s.env.len() as u32), &s.env);
    {
        let mut ports = b.reborrow().init_ports(s.ports.len() as u32);
        for (i, p) in s.ports.iter().enumerate() {
            let mut pb = ports.reborrow().get(i as u32);
            pb.set_name(p.name.as_str());
            pb.set_guest(p.guest);
            pb.set_host(p.host);
        }
    }
    {
        let mut checks = b
            .reborrow()
            .init_health_checks(s.health_checks.len() as u32);
        for (i, hc) in s.health_checks.iter().enumerate() {
            let mut cb = checks.reborrow().get(i as u32);
            cb.set_interval_ms(hc.interval_ms);
            cb.set_timeout_ms(hc.timeout_ms);
            cb.set_retries(hc.retries);
            cb.set_grace_period_ms(hc.grace_period_ms);
            match &hc.kind {
                CheckKind::Tcp { port } => cb.init_tcp().set_port(*port),
                CheckKind::Http {
                    port,
                    path,
                    expect_status,
                } => {
                    let mut h = cb.init_http();
                    h.set_port(*port);
                    h.set_path(path.as_str());
                    h.set_expect_status(*expect_status);
                }
                CheckKind::Command { argv } => {
                    write_texts(cb.init_command().init_argv(argv.len() as u32), argv)
                }
            }
        }
    }
    {
        let r = &s.rollout;
        let mut rb = b.reborrow().init_rollout();
        rb.set_strategy(match r.strategy {
            RolloutStrategy::Rolling => c::RolloutStrategy::Rolling,
            RolloutStrategy::Canary => c::RolloutStrategy::Canary,
        });
        rb.set_max_parallel(r.max_parallel);
        rb.set_max_unavailable(r.max_unavailable);
        rb.set_min_healthy_time_ms(r.min_healthy_time_ms);
        rb.set_healthy_deadline_ms(r.healthy_deadline_ms);
        rb.set_progress_deadline_ms(r.progress_deadline_ms);
        rb.set_canary_count(r.canary_count);
        rb.set_auto_promote(r.auto_promote);
        rb.set_auto_rollback(r.auto_rollback);
    }
    {
        let r = &s.restart;
        let mut rb = b.init_restart();
        rb.set_mode(match r.mode {
            RestartMode::Always => c::RestartMode::Always,
            RestartMode::OnFailure => c::RestartMode::OnFailure,
            RestartMode::Never => c::RestartMode::Never,
        });
        rb.set_initial_backoff_ms(r.initial_backoff_ms);
        rb.set_max_backoff_ms(r.max_backoff_ms);
        rb.set_crash_loop_threshold(r.crash_loop_threshold);
        rb.set_crash_loop_window_ms(r.crash_loop_window_ms);
    }
}

pub fn read_vm_spec(r: c::vm_spec::Reader<'_>) -> R<VmSpec> {
    let mut ports = Vec::new();
    for p in r.get_ports()?.iter() {
        ports.push(PortForward {
            name: text(p.get_name())?,
            guest: p.get_guest(),
            host: p.get_host(),
        });
    }
    let mut health_checks = Vec::new();
    for hc in r.get_health_checks()?.iter() {
        let kind = match hc.which().map_err(|_| bad("health check kind"))? {
            c::health_check::Tcp(t) => CheckKind::Tcp { port: t.get_port() },
            c::health_check::Http(h) => CheckKind::Http {
                port: h.get_port(),
                path: text(h.get_path())?,
                expect_status: h.get_expect_status(),
            },
            c::health_check::Command(cmd) => CheckKind::Command {
                argv: read_texts(cmd.get_argv()?)?,
            },
        };
        health_checks.push(HealthCheck {
            kind,
            interval_ms: hc.get_interval_ms(),
            timeout_ms: hc.get_timeout_ms(),
            retries: hc.get_retries(),
            grace_period_ms: hc.get_grace_period_ms(),
        });
    }
    let ro = r.get_rollout()?;
    let rollout = RolloutPolicy {
        strategy: match ro.get_strategy().map_err(|_| bad("rollout strategy"))? {
            c::RolloutStrategy::Rolling => RolloutStrategy::Rolling,
            c::RolloutStrategy::Canary => RolloutStrategy::Canary,
        },
        max_parallel: ro.get_max_parallel(),
        max_unavailable: ro.get_max_unavailable(),
        min_healthy_time_ms: ro.get_min_healthy_time_ms(),
        healthy_deadline_ms: ro.get_healthy_deadline_ms(),
        progress_deadline_ms: ro.get_progress_deadline_ms(),
        canary_count: ro.get_canary_count(),
        auto_promote: ro.get_auto_promote(),
        auto_rollback: ro.get_auto_rollback(),
    };
    let re = r.get_restart()?;
    let restart = RestartPolicy {
        mode: match re.get_mode().map_err(|_| bad("restart mode"))? {
            c::RestartMode::Always => RestartMode::Always,
            c::RestartMode::OnFailure => RestartMode::OnFailure,
            c::RestartMode::Never => RestartMode::Never,
        },
        initial_backoff_ms: re.get_initial_backoff_ms(),
        max_backoff_ms: re.get_max_backoff_ms(),
        crash_loop_threshold: re.get_crash_loop_threshold(),
        crash_loop_window_ms: re.get_crash_loop_window_ms(),
    };
    Ok(VmSpec {
        name: text(r.get_name())?,
        role: text(r.get_role())?,
        replicas: r.get_replicas(),
        cpu: r.get_cpu(),
        memory_mb: r.get_memory_mb(),
        labels: read_kv(r.get_labels()?)?,
        constraints: read_kv(r.get_constraints()?)?,
        backend: read_backend(r.get_backend())?,
        closure: text(r.get_closure())?,
        exec: text(r.get_exec())?,
        args: read_texts(r.get_args()?)?,
        env: read_kv(r.get_env()?)?,
        ports,
        health_checks,
        rollout,
        restart,
        stop_after_disconnect_ms: r.get_stop_after_disconnect_ms(),
    })
}

pub fn write_vm_specs(
    mut list: capnp::struct_list::Builder<'_, c::vm_spec::Owned>,
    specs: &[VmSpec],
) {
    for (i, s) in specs.iter().enumerate() {
        write_vm_spec(list.reborrow().get(i as u32), s);
    }
}

pub fn read_vm_specs(list: capnp::struct_list::Reader<'_, c::vm_spec::Owned>) -> R<Vec<VmSpec>> {
    list.iter().map(read_vm_spec).collect()
}

// ---- cluster settings ----

pub fn write_settings(mut b: c::cluster_settings::Builder<'_>, s: &ClusterSettings) {
    b.set_name(s.name.as_str());
    b.set_strategy(match s.strategy {
        PlacementStrategy::Spread => c::PlacementStrategy::Spread,
        PlacementStrategy::Pack => c::PlacementStrategy::Pack,
    });
}

pub fn read_settings(r: c::cluster_settings::Reader<'_>) -> R<ClusterSettings> {
    Ok(ClusterSettings {
        name: text(r.get_name())?,
        strategy: match r.get_strategy().map_err(|_| bad("placement strategy"))? {
            c::PlacementStrategy::Spread => PlacementStrategy::Spread,
            c::PlacementStrategy::Pack => PlacementStrategy::Pack,
        },
    })
}

// ---- worker side ----

pub fn write_worker_info(mut b: c::worker_info::Builder<'_>, w: &WorkerInfo) {
    b.set_id(w.id.as_str());
    write_kv(b.reborrow().init_labels(w.labels.len() as u32), &w.labels);
    b.set_cpu(w.cpu);
    b.set_memory_mb(w.memory_mb);
    {
        let mut list = b.reborrow().init_backends(w.backends.len() as u32);
        for (i, be) in w.backends.iter().enumerate() {
            list.set(i as u32, backend_to_wire(*be));
        }
    }
    b.set_hostname(w.hostname.as_str());
    b.set_version(w.version.as_str());
}

pub fn read_worker_info(r: c::worker_info::Reader<'_>) -> R<WorkerInfo> {
    let mut backends = Vec::new();
    for be in r.get_backends()?.iter() {
        backends.push(read_backend(be)?);
    }
    Ok(WorkerInfo {
        id: text(r.get_id())?,
        labels: read_kv(r.get_labels()?)?,
        cpu: r.get_cpu(),
        memory_mb: r.get_memory_mb(),
        backends,
        hostname: text(r.get_hostname())?,
        version: text(r.get_version())?,
    })
}

pub fn write_report(mut b: c::instance_report::Builder<'_>, r: &InstanceReport) {
    b.set_instance_id(r.instance_id.as_str());
    b.set_vm_name(r.vm_name.as_str());
    b.set_closure(r.closure.as_str());
    b.set_phase(phase_to_wire(r.phase));
    b.set_health(health_to_wire(r.health));
    b.set_uptime_ms(r.uptime_ms);
    b.set_cpu_percent(r.cpu_percent);
    b.set_memory_bytes(r.memory_bytes);
    b.set_restarts(r.restarts);
    b.set_message(r.message.as_str());
    b.set_log_tail(r.log_tail.as_str());
    b.set_generation(r.generation);
}

pub fn read_report(r: c::instance_report::Reader<'_>) -> R<InstanceReport> {
    Ok(InstanceReport {
        instance_id: text(r.get_instance_id())?,
        vm_name: text(r.get_vm_name())?,
        closure: text(r.get_closure())?,
        phase: read_phase(r.get_phase()),
        health: read_health(r.get_health()),
        uptime_ms: r.get_uptime_ms(),
        cpu_percent: r.get_cpu_percent(),
        memory_bytes: r.get_memory_bytes(),
        restarts: r.get_restarts(),
        message: text(r.get_message())?,
        log_tail: text(r.get_log_tail())?,
        generation: r.get_generation(),
    })
}

pub fn write_reports(
    mut list: capnp::struct_list::Builder<'_, c::instance_report::Owned>,
    reports: &[InstanceReport],
) {
    for (i, r) in reports.iter().enumerate() {
        write_report(list.reborrow().get(i as u32), r);
    }
}

pub fn read_reports(
    list: capnp::struct_list::Reader<'_, c::instance_report::Owned>,
) -> R<Vec<InstanceReport>> {
    list.iter().map(read_report).collect()
}

pub fn write_metrics(mut b: c::worker_metrics::Builder<'_>, m: &WorkerMetrics) {
    b.set_cpu_used_percent(m.cpu_used_percent);
    b.set_memory_used_bytes(m.memory_used_bytes);
    b.set_memory_total_bytes(m.memory_total_bytes);
    b.set_disk_free_bytes(m.disk_free_bytes);
    b.set_closures_present(m.closures_present);
    b.set_load_average(m.load_average);
}

pub fn read_metrics(r: c::worker_metrics::Reader<'_>) -> R<WorkerMetrics> {
    Ok(WorkerMetrics {
        cpu_used_percent: r.get_cpu_used_percent(),
        memory_used_bytes: r.get_memory_used_bytes(),
        memory_total_bytes: r.get_memory_total_bytes(),
        disk_free_bytes: r.get_disk_free_bytes(),
        closures_present: r.get_closures_present(),
        load_average: r.get_load_average(),
    })
}

fn worker_state_to_wire(s: WorkerState) -> c::WorkerState {
    match s {
        WorkerState::Ready => c::WorkerState::Ready,
        WorkerState::Lost => c::WorkerState::Lost,
        WorkerState::Cordoned => c::WorkerState::Cordoned,
        WorkerState::Draining => c::WorkerState::Draining,
    }
}

fn read_worker_state(s: Result<c::WorkerState, capnp::NotInSchema>) -> WorkerState {
    match s {
        Ok(c::WorkerState::Lost) => WorkerState::Lost,
        Ok(c::WorkerState::Cordoned) => WorkerState::Cordoned,
        Ok(c::WorkerState::Draining) => WorkerState::Draining,
        Ok(c::WorkerState::Ready) | Err(_) => WorkerState::Ready,
    }
}

pub fn write_worker_status(mut b: c::worker_status::Builder<'_>, w: &WorkerStatus) {
    write_worker_info(b.reborrow().init_info(), &w.info);
    b.set_state(worker_state_to_wire(w.state));
    b.set_healthy(w.healthy);
    b.set_free_cpu(w.free_cpu);
    b.set_free_memory_mb(w.free_memory_mb);
    b.set_instance_count(w.instance_count);
    b.set_last_heartbeat_ms(w.last_heartbeat_ms);
    b.set_observed_generation(w.observed_generation);
    write_metrics(b.reborrow().init_metrics(), &w.metrics);
    write_reports(b.init_instances(w.instances.len() as u32), &w.instances);
}

pub fn read_worker_status(r: c::worker_status::Reader<'_>) -> R<WorkerStatus> {
    Ok(WorkerStatus {
        info: read_worker_info(r.get_info()?)?,
        state: read_worker_state(r.get_state()),
        healthy: r.get_healthy(),
        free_cpu: r.get_free_cpu(),
        free_memory_mb: r.get_free_memory_mb(),
        instance_count: r.get_instance_count(),
        last_heartbeat_ms: r.get_last_heartbeat_ms(),
        observed_generation: r.get_observed_generation(),
        metrics: read_metrics(r.get_metrics()?)?,
        instances: read_reports(r.get_instances()?)?,
    })
}

pub fn write_instance_status(mut b: c::instance_status::Builder<'_>, s: &InstanceStatus) {
    b.set_instance_id(s.instance_id.as_str());
    b.set_vm_name(s.vm_name.as_str());
    b.set_worker_id(s.worker_id.as_str());
    b.set_desired_closure(s.desired_closure.as_str());
    b.set_observed_closure(s.observed_closure.as_str());
    b.set_phase(phase_to_wire(s.phase));
    b.set_health(health_to_wire(s.health));
    b.set_drifted(s.drifted);
    b.set_unplaced_reason(s.unplaced_reason.as_str());
    b.set_backend(backend_to_wire(s.backend.unwrap_or(Backend::Process)));
    b.set_cpu(s.cpu);
    b.set_memory_mb(s.memory_mb);
    b.set_uptime_ms(s.uptime_ms);
    b.set_message(s.message.as_str());
    b.set_restarts(s.restarts);
    b.set_cpu_percent(s.cpu_percent);
    b.set_memory_bytes(s.memory_bytes);
    b.set_generation(s.generation);
}

pub fn read_instance_status(r: c::instance_status::Reader<'_>) -> R<InstanceStatus> {
    Ok(InstanceStatus {
        instance_id: text(r.get_instance_id())?,
        vm_name: text(r.get_vm_name())?,
        worker_id: text(r.get_worker_id())?,
        desired_closure: text(r.get_desired_closure())?,
        observed_closure: text(r.get_observed_closure())?,
        phase: read_phase(r.get_phase()),
        health: read_health(r.get_health()),
        drifted: r.get_drifted(),
        unplaced_reason: text(r.get_unplaced_reason())?,
        backend: r.get_backend().ok().map(backend_from_wire),
        cpu: r.get_cpu(),
        memory_mb: r.get_memory_mb(),
        uptime_ms: r.get_uptime_ms(),
        message: text(r.get_message())?,
        restarts: r.get_restarts(),
        cpu_percent: r.get_cpu_percent(),
        memory_bytes: r.get_memory_bytes(),
        generation: r.get_generation(),
    })
}

fn rollout_phase_to_wire(p: RolloutPhase) -> c::RolloutPhase {
    match p {
        RolloutPhase::Complete => c::RolloutPhase::Complete,
        RolloutPhase::Progressing => c::RolloutPhase::Progressing,
        RolloutPhase::WaitingForPromotion => c::RolloutPhase::WaitingForPromotion,
        RolloutPhase::Failed => c::RolloutPhase::Failed,
    }
}

fn read_rollout_phase(p: Result<c::RolloutPhase, capnp::NotInSchema>) -> RolloutPhase {
    match p {
        Ok(c::RolloutPhase::Progressing) => RolloutPhase::Progressing,
        Ok(c::RolloutPhase::WaitingForPromotion) => RolloutPhase::WaitingForPromotion,
        Ok(c::RolloutPhase::Failed) => RolloutPhase::Failed,
        Ok(c::RolloutPhase::Complete) | Err(_) => RolloutPhase::Complete,
    }
}

pub fn write_rollout(mut b: c::rollout_status::Builder<'_>, r: &RolloutStatus) {
    b.set_vm_name(r.vm_name.as_str());
    b.set_phase(rollout_phase_to_wire(r.phase));
    b.set_generation(r.generation);
    b.set_updated(r.updated);
    b.set_total(r.total);
    b.set_message(r.message.as_str());
}

pub fn read_rollout(r: c::rollout_status::Reader<'_>) -> R<RolloutStatus> {
    Ok(RolloutStatus {
        vm_name: text(r.get_vm_name())?,
        phase: read_rollout_phase(r.get_phase()),
        generation: r.get_generation(),
        updated: r.get_updated(),
        total: r.get_total(),
        message: text(r.get_message())?,
    })
}

pub fn write_cluster_status(mut b: c::cluster_status::Builder<'_>, s: &ClusterStatus) {
    write_settings(b.reborrow().init_settings(), &s.settings);
    b.set_active_generation(s.active_generation);
    b.set_commit(s.commit.as_str());
    b.set_intent_hash(s.intent_hash.as_str());
    b.set_published_at_ms(s.published_at_ms);
    b.set_convergence_percent(s.convergence_percent);
    b.set_revision(s.revision);
    b.set_last_good_generation(s.last_good_generation);
    {
        let mut list = b.reborrow().init_rollouts(s.rollouts.len() as u32);
        for (i, r) in s.rollouts.iter().enumerate() {
            write_rollout(list.reborrow().get(i as u32), r);
        }
    }
    {
        let mut list = b.reborrow().init_workers(s.workers.len() as u32);
        for (i, w) in s.workers.iter().enumerate() {
            write_worker_status(list.reborrow().get(i as u32), w);
        }
    }
    let mut list = b.init_instances(s.instances.len() as u32);
    for (i, inst) in s.instances.iter().enumerate() {
        write_instance_status(list.reborrow().get(i as u32), inst);
    }
}

pub fn read_cluster_status(r: c::cluster_status::Reader<'_>) -> R<ClusterStatus> {
    let mut workers = Vec::new();
    for w in r.get_workers()?.iter() {
        workers.push(read_worker_status(w)?);
    }
    let mut instances = Vec::new();
    for i in r.get_instances()?.iter() {
        instances.push(read_instance_status(i)?);
    }
    Ok(ClusterStatus {
        settings: read_settings(r.get_settings()?)?,
        active_generation: r.get_active_generation(),
        commit: text(r.get_commit())?,
        intent_hash: text(r.get_intent_hash())?,
        published_at_ms: r.get_published_at_ms(),
        convergence_percent: r.get_convergence_percent(),
        workers,
        instances,
        revision: r.get_revision(),
        rollouts: r
            .get_rollouts()?
            .iter()
            .map(read_rollout)
            .collect::<R<_>>()?,
        last_good_generation: r.get_last_good_generation(),
    })
}

pub fn write_generation_info(mut b: c::generation_info::Builder<'_>, g: &GenerationInfo) {
    b.set_generation(g.generation);
    b.set_commit(g.commit.as_str());
    b.set_intent_hash(g.intent_hash.as_str());
    b.set_published_at_ms(g.published_at_ms);
    b.set_vm_count(g.vm_count);
    b.set_status(g.status.as_str());
    b.set_reason(g.reason.as_str());
}

pub fn read_generation_info(r: c::generation_info::Reader<'_>) -> R<GenerationInfo> {
    Ok(GenerationInfo {
        generation: r.get_generation(),
        commit: text(r.get_commit())?,
        intent_hash: text(r.get_intent_hash())?,
        published_at_ms: r.get_published_at_ms(),
        vm_count: r.get_vm_count(),
        status: text(r.get_status())?,
        reason: text(r.get_reason())?,
    })
}

fn event_kind_to_wire(k: EventKind) -> c::EventKind {
    match k {
        EventKind::GenerationPublished => c::EventKind::GenerationPublished,
        EventKind::PlacementChanged => c::EventKind::PlacementChanged,
        EventKind::WorkerRegistered => c::EventKind::WorkerRegistered,
        EventKind::WorkerLost => c::EventKind::WorkerLost,
        EventKind::WorkerReturned => c::EventKind::WorkerReturned,
        EventKind::InstancePhase => c::EventKind::InstancePhase,
        EventKind::InstanceHealth => c::EventKind::InstanceHealth,
        EventKind::Unplaced => c::EventKind::Unplaced,
        EventKind::Other => c::EventKind::Other,
        EventKind::Rollout => c::EventKind::Rollout,
        EventKind::Rollback => c::EventKind::Rollback,
        EventKind::WorkerState => c::EventKind::WorkerState,
    }
}

fn read_event_kind(k: Result<c::EventKind, capnp::NotInSchema>) -> EventKind {
    match k {
        Ok(c::EventKind::GenerationPublished) => EventKind::GenerationPublished,
        Ok(c::EventKind::PlacementChanged) => EventKind::PlacementChanged,
        Ok(c::EventKind::WorkerRegistered) => EventKind::WorkerRegistered,
        Ok(c::EventKind::WorkerLost) => EventKind::WorkerLost,
        Ok(c::EventKind::WorkerReturned) => EventKind::WorkerReturned,
        Ok(c::EventKind::InstancePhase) => EventKind::InstancePhase,
        Ok(c::EventKind::InstanceHealth) => EventKind::InstanceHealth,
        Ok(c::EventKind::Unplaced) => EventKind::Unplaced,
        Ok(c::EventKind::Rollout) => EventKind::Rollout,
        Ok(c::EventKind::Rollback) => EventKind::Rollback,
        Ok(c::EventKind::WorkerState) => EventKind::WorkerState,
        Ok(c::EventKind::Other) | Err(_) => EventKind::Other,
    }
}

pub fn write_event(mut b: c::event::Builder<'_>, e: &Event) {
    b.set_seq(e.seq);
    b.set_timestamp_ms(e.timestamp_ms);
    b.set_kind(event_kind_to_wire(e.kind));
    b.set_generation(e.generation);
    b.set_worker_id(e.worker_id.as_str());
    b.set_instance_id(e.instance_id.as_str());
    b.set_message(e.message.as_str());
}

pub fn read_event(r: c::event::Reader<'_>) -> R<Event> {
    Ok(Event {
        seq: r.get_seq(),
        timestamp_ms: r.get_timestamp_ms(),
        kind: read_event_kind(r.get_kind()),
        generation: r.get_generation(),
        worker_id: text(r.get_worker_id())?,
        instance_id: text(r.get_instance_id())?,
        message: text(r.get_message())?,
    })
}

pub fn write_events(mut list: capnp::struct_list::Builder<'_, c::event::Owned>, events: &[Event]) {
    for (i, e) in events.iter().enumerate() {
        write_event(list.reborrow().get(i as u32), e);
    }
}

pub fn read_events(list: capnp::struct_list::Reader<'_, c::event::Owned>) -> R<Vec<Event>> {
    list.iter().map(read_event).collect()
}

// ---- errors ----

/// An error as it travels in a `Result` union.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RemoteError {
    pub message: String,
    pub code: ErrorCode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    Invalid,
    Stale,
    NotFound,
    Unauthorized,
    Conflict,
    Internal,
    Unavailable,
}

impl RemoteError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        RemoteError {
            message: message.into(),
            code,
        }
    }
}

pub fn write_error(mut b: c::error::Builder<'_>, e: &RemoteError) {
    b.set_message(e.message.as_str());
    b.set_code(match e.code {
        ErrorCode::Invalid => c::ErrorCode::Invalid,
        ErrorCode::Stale => c::ErrorCode::Stale,
        ErrorCode::NotFound => c::ErrorCode::NotFound,
        ErrorCode::Unauthorized => c::ErrorCode::Unauthorized,
        ErrorCode::Conflict => c::ErrorCode::Conflict,
        ErrorCode::Internal => c::ErrorCode::Internal,
        ErrorCode::Unavailable => c::ErrorCode::Unavailable,
    });
}

pub fn read_error(r: c::error::Reader<'_>) -> R<RemoteError> {
    Ok(RemoteError {
        message: text(r.get_message())?,
        code: match r.get_code() {
            Ok(c::ErrorCode::Invalid) => ErrorCode::Invalid,
            Ok(c::ErrorCode::Stale) => ErrorCode::Stale,
            Ok(c::ErrorCode::NotFound) => ErrorCode::NotFound,
            Ok(c::ErrorCode::Unauthorized) => ErrorCode::Unauthorized,
            Ok(c::ErrorCode::Conflict) => ErrorCode::Conflict,
            Ok(c::ErrorCode::Unavailable) => ErrorCode::Unavailable,
            Ok(c::ErrorCode::Internal) | Err(_) => ErrorCode::Internal,
        },
    })
}

pub fn write_assignment(mut b: m::assignment::Builder<'_>, a: &Assignment) {
    b.set_generation(a.generation);
    b.set_revision(a.revision);
    let mut list = b.init_instances(a.instances.len() as u32);
    for (i, (id, spec)) in a.instances.iter().enumerate() {
        let mut item = list.reborrow().get(i as u32);
        item.set_instance_id(id.as_str());
        write_vm_spec(item.init_spec(), spec);
    }
}

pub fn read_assignment(r: m::assignment::Reader<'_>) -> R<Assignment> {
    let mut instances = Vec::new();
    for inst in r.get_instances()?.iter() {
        instances.push((
            text(inst.get_instance_id())?,
            read_vm_spec(inst.get_spec()?)?,
        ));
    }
    Ok(Assignment {
        generation: r.get_generation(),
        revision: r.get_revision(),
        instances,
    })
}

pub fn write_placement(b: m::placement::Builder<'_>, p: &Placement) {
    let mut b = b;
    let mut assigned = b.reborrow().init_assigned(p.assigned.len() as u32);
    for (i, (instance, worker)) in p.assigned.iter().enumerate() {
        let mut item = assigned.reborrow().get(i as u32);
        item.set_instance_id(instance.as_str());
        item.set_worker_id(worker.as_str());
    }
    let mut unplaced = b.init_unplaced(p.unplaced.len() as u32);
    for (i, (instance, reason)) in p.unplaced.iter().enumerate() {
        let mut item = unplaced.reborrow().get(i as u32);
        item.set_instance_id(instance.as_str());
        item.set_reason(reason.as_str());
    }
}

pub fn read_placement(r: m::placement::Reader<'_>) -> R<Placement> {
    let mut p = Placement::default();
    for item in r.get_assigned()?.iter() {
        p.assigned
            .insert(text(item.get_instance_id())?, text(item.get_worker_id())?);
    }
    for item in r.get_unplaced()?.iter() {
        p.unplaced
            .insert(text(item.get_instance_id())?, text(item.get_reason())?);
    }
    Ok(p)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn vm_spec_survives_the_wire() {
        let mut spec = VmSpec::process("web", "/nix/store/0c9hj2bl0ajiyqslkmbhizbgshrdw9jl-web");
        spec.labels.insert("tier".into(), "front".into());
        spec.constraints.insert("zone".into(), "a".into());
        spec.args = vec!["--port".into(), "8080".into()];
        spec.env.insert("PORT".into(), "8080".into());
        spec.ports.push(PortForward {
            name: "http".into(),
            guest: 8080,
            host: 18080,
        });
        spec.health_checks.push(HealthCheck {
            kind: CheckKind::Http {
                port: 8080,
                path: "/healthz".into(),
                expect_status: 200,
            },
            interval_ms: 500,
            timeout_ms: 300,
            retries: 2,
            grace_period_ms: 1000,
        });
        spec.health_checks.push(HealthCheck {
            kind: CheckKind::Command {
                argv: vec!["true".into()],
            },
            interval_ms: 500,
            timeout_ms: 300,
            retries: 2,
            grace_period_ms: 0,
        });
        spec.rollout.strategy = RolloutStrategy::Canary;
        spec.rollout.canary_count = 1;
        spec.restart.mode = RestartMode::OnFailure;

        let mut message = capnp::message::Builder::new_default();
        write_vm_spec(message.init_root(), &spec);
        let back = read_vm_spec(message.get_root_as_reader().expect("root")).expect("read");
        assert_eq!(back, spec);
    }
}
