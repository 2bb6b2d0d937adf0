//! Read-only views: cluster and worker status, rollouts, generations, events.

use super::*;

impl Cluster {
    // ---- reading ----

    pub fn worker(&self, id: &str) -> Result<WorkerStatus, RemoteError> {
        let w = self.known_worker(id)?;
        let status = self.status();
        let mut ws = status
            .workers
            .into_iter()
            .find(|s| s.info.id == id)
            .unwrap_or_default();
        ws.instances = w.stored.reports.clone();
        Ok(ws)
    }

    pub fn status(&self) -> ClusterStatus {
        let empty = self.change();
        let spec_of = |p: &StoredPlacement| {
            self.specs
                .get(&p.generation)
                .and_then(|m| m.get(&p.vm_name))
        };
        let target_specs: HashMap<&str, &VmSpec> = self
            .active
            .iter()
            .flat_map(|g| g.specs.iter())
            .map(|s| (s.name.as_str(), s))
            .collect();
        // Per-worker usage in one pass instead of one pass per worker.
        let mut used: HashMap<&str, (i64, i64, u32)> = HashMap::new();
        let mut instances = Vec::with_capacity(self.placements.len());
        let mut converged = 0usize;
        for p in self.placements.values() {
            let spec = spec_of(p).or_else(|| target_specs.get(p.vm_name.as_str()).copied());
            let desired = target_specs.get(p.vm_name.as_str()).copied().or(spec);
            let mut s = InstanceStatus {
                instance_id: p.instance_id.clone(),
                vm_name: p.vm_name.clone(),
                worker_id: p.worker_id.clone().unwrap_or_default(),
                desired_closure: desired.map(|s| s.closure.clone()).unwrap_or_default(),
                unplaced_reason: p.reason.clone(),
                backend: spec.map(|s| s.backend),
                cpu: spec.map(|s| s.cpu).unwrap_or(0),
                memory_mb: spec.map(|s| s.memory_mb).unwrap_or(0),
                phase: Phase::Pending,
                generation: p.generation,
                ..Default::default()
            };
            if let Some(wid) = &p.worker_id {
                let u = used.entry(wid.as_str()).or_default();
                u.0 += s.cpu as i64;
                u.1 += s.memory_mb as i64;
                u.2 += 1;
                let worker = self.workers.get(wid);
                let lost = worker.is_none_or(|w| w.stored.state == WorkerState::Lost);
                if let Some(r) = worker.and_then(|w| w.last_report(&p.instance_id)) {
                    s.observed_closure = r.closure.clone();
                    s.phase = r.phase;
                    s.health = r.health;
                    s.uptime_ms = r.uptime_ms;
                    s.message = r.message.clone();
                    s.restarts = r.restarts;
                    s.cpu_percent = r.cpu_percent;
                    s.memory_bytes = r.memory_bytes;
                }
                if lost {
                    s.phase = Phase::Unknown;
                    s.message = format!("worker {wid} is lost");
                } else if worker.is_some_and(|w| !w.reported) {
                    // Shown as last seen, counted as unknown: the worker (or the control plane)
                    // restarted since, and only its next report says what runs.
                    let last = s.phase;
                    s.phase = Phase::Unknown;
                    s.health = Health::Unknown;
                    s.message = format!(
                        "{last} when last reported; waiting for worker {wid} to report again"
                    );
                }
                let ok = !lost
                    && s.observed_closure == s.desired_closure
                    && self.serving(&empty, p, false);
                if ok {
                    converged += 1;
                }
                s.drifted = lost
                    || matches!(s.phase, Phase::Failed | Phase::CrashLoop | Phase::Stopped)
                    || (s.phase == Phase::Running && s.observed_closure != s.desired_closure);
            }
            instances.push(s);
        }
        let workers = self
            .workers
            .values()
            .map(|w| {
                let (cpu, mem, count) = used
                    .get(w.stored.info.id.as_str())
                    .copied()
                    .unwrap_or_default();
                WorkerStatus {
                    info: w.stored.info.clone(),
                    state: w.stored.state,
                    healthy: w.stored.state != WorkerState::Lost,
                    free_cpu: w.stored.info.cpu as i64 - cpu,
                    free_memory_mb: w.stored.info.memory_mb as i64 - mem,
                    instance_count: count,
                    last_heartbeat_ms: w.stored.last_heartbeat_ms,
                    observed_generation: w.stored.observed_generation,
                    metrics: w.stored.metrics.clone(),
                    instances: Vec::new(),
                }
            })
            .collect();
        let total = instances.len();
        ClusterStatus {
            settings: self
                .active
                .as_ref()
                .map(|g| g.settings.clone())
                .unwrap_or_default(),
            active_generation: self.active_generation(),
            commit: self
                .active
                .as_ref()
                .map(|g| g.commit.clone())
                .unwrap_or_default(),
            intent_hash: self
                .active
                .as_ref()
                .map(|g| g.intent_hash.clone())
                .unwrap_or_default(),
            published_at_ms: self.active.as_ref().map(|g| g.published_at_ms).unwrap_or(0),
            convergence_percent: if total == 0 {
                100.0
            } else {
                converged as f32 * 100.0 / total as f32
            },
            workers,
            instances,
            revision: self.revision,
            rollouts: self.rollouts(&empty),
            last_good_generation: self.last_good,
        }
    }

    pub(super) fn rollouts(&self, empty: &Change) -> Vec<RolloutStatus> {
        let Some(target) = &self.active else {
            return Vec::new();
        };
        let failed = self.bad.contains(&target.generation);
        let now = now_ms();
        let by_vm = group_by_vm(&self.placements);
        let none: Vec<String> = Vec::new();
        target
            .specs
            .iter()
            .map(|vm| {
                let ids = by_vm.get(&vm.name).unwrap_or(&none);
                let st = self.classify(empty, &self.placements, ids, target, vm, now);
                let (phase, message) =
                    rollout::phase(vm, failed, target.promoted.contains(&vm.name), &st);
                RolloutStatus {
                    vm_name: vm.name.clone(),
                    phase,
                    generation: target.generation,
                    updated: st.proven as u32,
                    total: st.total as u32,
                    message,
                }
            })
            .collect()
    }

    pub fn generations(&self, limit: u32) -> Result<Vec<GenerationInfo>, RemoteError> {
        let limit = if limit == 0 { 100 } else { limit.min(10_000) };
        Ok(self
            .store
            .generations(limit)
            .map_err(internal)?
            .into_iter()
            .map(|g| generation_info(&g))
            .collect())
    }

    pub fn generation(&self, generation: u64) -> Result<(GenerationInfo, Blueprint), RemoteError> {
        let g = self
            .store
            .generation(generation)
            .map_err(internal)?
            .ok_or_else(|| {
                err(
                    ErrorCode::NotFound,
                    format!("there is no generation {generation}"),
                )
            })?;
        Ok((
            generation_info(&g),
            Blueprint {
                cluster: g.settings,
                vms: g.specs,
            },
        ))
    }

    pub fn events(&self, since_seq: u64, limit: u32) -> Result<Vec<Event>, RemoteError> {
        let limit = if limit == 0 { 1000 } else { limit.min(10_000) };
        self.store.events(since_seq, limit).map_err(internal)
    }
}

pub(super) fn generation_info(g: &StoredGeneration) -> GenerationInfo {
    GenerationInfo {
        generation: g.generation,
        commit: g.commit.clone(),
        intent_hash: g.intent_hash.clone(),
        published_at_ms: g.published_at_ms,
        vm_count: g.specs.len() as u32,
        status: g.status.clone(),
        reason: g.reason.clone(),
    }
}
