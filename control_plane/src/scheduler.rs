//! Which worker runs which instance: a pure function of the blueprint, the workers and the
//! current placement.
//!
//! Two passes. First every instance that already has a worker keeps it if that worker can
//! still run it (so a new generation that changes a closure restarts in place instead of
//! moving). Then the rest are placed one by one, largest first: hard filters (schedulable,
//! backend, constraints, CPU, memory, host ports), then the lowest score — fewest replicas of
//! the same VM on the worker (spread replicas), then a worker that already holds the closure,
//! then the cluster's strategy (spread: most room left; pack: least room left).
//!
//! Instances that fit nowhere get a reason a person can act on, e.g.
//! `web-2: no worker with label gpu=true has 4 CPUs free (most free: 2)`.

use std::collections::{BTreeMap, HashSet};

use schema::model::{instance_id, Backend, PlacementStrategy, VmSpec};

/// A worker as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct WorkerView {
    pub id: String,
    pub labels: BTreeMap<String, String>,
    pub backends: Vec<Backend>,
    pub cpu: u32,
    pub memory_mb: u64,
    /// Ready workers take new instances and keep theirs. Cordoned ones keep theirs only;
    /// lost and draining ones neither.
    pub takes_new: bool,
    pub keeps_existing: bool,
    /// Closures the worker reported present.
    pub closures: HashSet<String>,
}

/// The scheduler's answer; a plain model type, since `pcr plan` receives it over RPC.
pub use schema::model::Placement;

struct Slot<'a> {
    view: &'a WorkerView,
    free_cpu: i64,
    free_memory_mb: i64,
    ports: HashSet<u16>,
    backends: u8,
}

fn backend_bit(b: Backend) -> u8 {
    match b {
        Backend::CloudHypervisor => 1,
        Backend::Qemu => 2,
        Backend::Process => 4,
    }
}

impl Slot<'_> {
    fn satisfies(&self, spec: &VmSpec) -> bool {
        self.backends & backend_bit(spec.backend) != 0
            && spec
                .constraints
                .iter()
                .all(|(k, v)| self.view.labels.get(k) == Some(v))
    }

    fn fits(&self, spec: &VmSpec, host_ports: &[u16]) -> bool {
        self.free_cpu >= spec.cpu as i64
            && self.free_memory_mb >= spec.memory_mb as i64
            && host_ports.iter().all(|p| !self.ports.contains(p))
    }

    fn take(&mut self, spec: &VmSpec, host_ports: &[u16]) {
        self.free_cpu -= spec.cpu as i64;
        self.free_memory_mb -= spec.memory_mb as i64;
        self.ports.extend(host_ports.iter().copied());
    }

    /// Room left after placing `spec`, as a fraction of the worker in 1/1,000,000ths
    /// (integer, so ties are exact and the result does not depend on float rounding).
    fn room_after(&self, spec: &VmSpec) -> i64 {
        let cpu = (self.free_cpu - spec.cpu as i64) * 1_000_000 / (self.view.cpu.max(1) as i64);
        let mem = (self.free_memory_mb - spec.memory_mb as i64) * 1_000_000
            / (self.view.memory_mb.max(1) as i64);
        cpu + mem
    }
}

/// Places every instance of `specs` on `workers`, starting from `current` (instance → worker).
pub fn schedule(
    specs: &[VmSpec],
    strategy: PlacementStrategy,
    workers: &[WorkerView],
    current: &BTreeMap<String, String>,
) -> Placement {
    let mut slots: Vec<Slot> = workers
        .iter()
        .map(|w| Slot {
            view: w,
            free_cpu: w.cpu as i64,
            free_memory_mb: w.memory_mb as i64,
            ports: HashSet::new(),
            backends: w.backends.iter().fold(0, |acc, b| acc | backend_bit(*b)),
        })
        .collect();
    let index: BTreeMap<&str, usize> = workers
        .iter()
        .enumerate()
        .map(|(i, w)| (w.id.as_str(), i))
        .collect();

    let mut placement = Placement::default();
    let host_ports: Vec<Vec<u16>> = specs
        .iter()
        .map(|s| s.ports.iter().map(|p| p.host_port()).collect())
        .collect();

    // Pass 1: keep what runs where it can stay.
    let mut pending: Vec<(usize, u32)> = Vec::new();
    // Workers holding kept replicas, per spec: the starting point for spreading the rest.
    let mut kept_on: Vec<Vec<usize>> = vec![Vec::new(); specs.len()];
    for (si, spec) in specs.iter().enumerate() {
        for r in 0..spec.replicas {
            let id = instance_id(&spec.name, r);
            let kept = current
                .get(&id)
                .and_then(|w| index.get(w.as_str()).copied())
                .filter(|&wi| {
                    let slot = &slots[wi];
                    slot.view.keeps_existing
                        && slot.satisfies(spec)
                        && slot.fits(spec, &host_ports[si])
                });
            match kept {
                Some(wi) => {
                    slots[wi].take(spec, &host_ports[si]);
                    kept_on[si].push(wi);
                    placement.assigned.insert(id, workers[wi].id.clone());
                }
                None => pending.push((si, r)),
            }
        }
    }

    // Pass 2: largest first, so big instances are not starved by many small ones.
    pending.sort_by(|a, b| {
        let (sa, sb) = (&specs[a.0], &specs[b.0]);
        (sb.cpu, sb.memory_mb)
            .cmp(&(sa.cpu, sa.memory_mb))
            .then(a.0.cmp(&b.0))
            .then(a.1.cmp(&b.1))
    });

    // Replicas of one VM on each worker, for the VM being placed (pending is grouped by spec).
    let mut same_vm = vec![0u32; slots.len()];
    let mut same_vm_touched: Vec<usize> = Vec::new();
    let mut current_spec = usize::MAX;
    let mut eligible: Vec<usize> = Vec::new();
    let mut unplaced: Vec<(usize, String)> = Vec::new();

    for (si, r) in pending {
        let spec = &specs[si];
        if si != current_spec {
            for &wi in &same_vm_touched {
                same_vm[wi] = 0;
            }
            same_vm_touched.clear();
            for &wi in &kept_on[si] {
                if same_vm[wi] == 0 {
                    same_vm_touched.push(wi);
                }
                same_vm[wi] += 1;
            }
            eligible = (0..slots.len())
                .filter(|&wi| slots[wi].view.takes_new && slots[wi].satisfies(spec))
                .collect();
            current_spec = si;
        }
        let id = instance_id(&spec.name, r);
        let ports = &host_ports[si];
        let mut best: Option<(usize, (u32, u8, i64))> = None;
        for &wi in &eligible {
            let slot = &slots[wi];
            if !slot.fits(spec, ports) {
                continue;
            }
            let has_closure = u8::from(!slot.view.closures.contains(&spec.closure));
            let room = slot.room_after(spec);
            let key = (
                same_vm[wi],
                has_closure,
                match strategy {
                    PlacementStrategy::Spread => -room,
                    PlacementStrategy::Pack => room,
                },
            );
            if best.as_ref().is_none_or(|(_, k)| key < *k) {
                best = Some((wi, key));
            }
        }
        match best {
            Some((wi, _)) => {
                slots[wi].take(spec, ports);
                if same_vm[wi] == 0 {
                    same_vm_touched.push(wi);
                }
                same_vm[wi] += 1;
                placement.assigned.insert(id, workers[wi].id.clone());
            }
            None => unplaced.push((si, id)),
        }
    }
    // Explained against the final capacity, which is what the operator will see.
    for (si, id) in unplaced {
        let reason = explain(&specs[si], &slots, &host_ports[si]);
        placement.unplaced.insert(id, reason);
    }
    placement
}

/// Why `spec` fits on no worker: the first filter that leaves nobody standing.
fn explain(spec: &VmSpec, slots: &[Slot], ports: &[u16]) -> String {
    let open: Vec<&Slot> = slots.iter().filter(|s| s.view.takes_new).collect();
    if open.is_empty() {
        return if slots.is_empty() {
            "no workers are registered".to_string()
        } else {
            "no worker is ready (all are lost, cordoned or draining)".to_string()
        };
    }
    let with_backend: Vec<&Slot> = open
        .iter()
        .copied()
        .filter(|s| s.backends & backend_bit(spec.backend) != 0)
        .collect();
    if with_backend.is_empty() {
        return format!("no ready worker supports the {} backend", spec.backend);
    }
    let matching: Vec<&Slot> = with_backend
        .iter()
        .copied()
        .filter(|s| s.satisfies(spec))
        .collect();
    let which = if spec.constraints.is_empty() {
        "worker".to_string()
    } else {
        let labels: Vec<String> = spec
            .constraints
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!(
            "worker with label{} {}",
            if labels.len() > 1 { "s" } else { "" },
            labels.join(", ")
        )
    };
    if matching.is_empty() {
        return format!("no ready {which} supports the {} backend", spec.backend);
    }
    let most_cpu = matching.iter().map(|s| s.free_cpu).max().unwrap_or(0);
    if most_cpu < spec.cpu as i64 {
        return format!(
            "no {which} has {} CPU{} free (most free: {})",
            spec.cpu,
            if spec.cpu == 1 { "" } else { "s" },
            most_cpu.max(0)
        );
    }
    let with_cpu: Vec<&Slot> = matching
        .iter()
        .copied()
        .filter(|s| s.free_cpu >= spec.cpu as i64)
        .collect();
    let most_mem = with_cpu.iter().map(|s| s.free_memory_mb).max().unwrap_or(0);
    if most_mem < spec.memory_mb as i64 {
        return format!(
            "no {which} has {} MiB of memory free next to {} CPU{} (most free: {} MiB)",
            spec.memory_mb,
            spec.cpu,
            if spec.cpu == 1 { "" } else { "s" },
            most_mem.max(0)
        );
    }
    let taken: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
    format!(
        "host port {} is already taken on every {which} with room",
        taken.join(", ")
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const CLOSURE: &str = "/nix/store/0c9hj2bl0ajiyqslkmbhizbgshrdw9jl-web";

    fn worker(id: &str, cpu: u32, mem: u64) -> WorkerView {
        WorkerView {
            id: id.into(),
            labels: BTreeMap::new(),
            backends: vec![Backend::Process, Backend::Qemu],
            cpu,
            memory_mb: mem,
            takes_new: true,
            keeps_existing: true,
            closures: HashSet::new(),
        }
    }

    fn vm(name: &str, replicas: u32, cpu: u32, mem: u64) -> VmSpec {
        VmSpec {
            replicas,
            cpu,
            memory_mb: mem,
            ..VmSpec::process(name, CLOSURE)
        }
    }

    fn on<'a>(p: &'a Placement, id: &str) -> Option<&'a str> {
        p.assigned.get(id).map(String::as_str)
    }

    struct Case {
        name: &'static str,
        specs: Vec<VmSpec>,
        workers: Vec<WorkerView>,
        strategy: PlacementStrategy,
        current: Vec<(&'static str, &'static str)>,
        /// instance → expected worker ("" = unplaced, with the reason containing `reason`).
        expect: Vec<(&'static str, &'static str)>,
        reason: &'static str,
    }

    fn run(case: Case) {
        let current = case
            .current
            .iter()
            .map(|(i, w)| (i.to_string(), w.to_string()))
            .collect();
        let p = schedule(&case.specs, case.strategy, &case.workers, &current);
        for (inst, want) in &case.expect {
            if want.is_empty() {
                let reason = p.unplaced.get(*inst).unwrap_or_else(|| {
                    panic!(
                        "{}: {inst} placed on {:?}, expected unplaced",
                        case.name,
                        on(&p, inst)
                    )
                });
                assert!(
                    reason.contains(case.reason),
                    "{}: reason {reason:?}",
                    case.name
                );
            } else {
                assert_eq!(
                    on(&p, inst),
                    Some(*want),
                    "{}: {inst} (placement {p:?})",
                    case.name
                );
            }
        }
    }

    #[test]
    fn table() {
        let mut gpu = worker("gpu", 8, 8192);
        gpu.labels.insert("gpu".into(), "true".into());
        let mut needs_gpu = vm("ml", 1, 4, 1024);
        needs_gpu.constraints.insert("gpu".into(), "true".into());
        let mut big_gpu = vm("train", 1, 16, 1024);
        big_gpu.constraints.insert("gpu".into(), "true".into());
        let mut qemu_only = worker("q", 4, 4096);
        qemu_only.backends = vec![Backend::Qemu];
        let mut cordoned = worker("c", 8, 8192);
        cordoned.takes_new = false;
        let mut lost = worker("lost", 8, 8192);
        lost.takes_new = false;
        lost.keeps_existing = false;
        let mut has_closure = worker("warm", 4, 4096);
        has_closure.closures.insert(CLOSURE.into());
        let mut port_a = vm("a", 1, 1, 64);
        port_a.ports.push(schema::model::PortForward {
            name: "http".into(),
            guest: 80,
            host: 8080,
        });
        let mut port_b = vm("b", 1, 1, 64);
        port_b.ports.push(schema::model::PortForward {
            name: "http".into(),
            guest: 80,
            host: 8080,
        });

        let cases = vec![
            Case {
                name: "replicas spread across workers",
                specs: vec![vm("web", 3, 1, 128)],
                workers: vec![
                    worker("w1", 8, 8192),
                    worker("w2", 8, 8192),
                    worker("w3", 8, 8192),
                ],
                strategy: PlacementStrategy::Pack,
                current: vec![],
                expect: vec![("web-0", "w1"), ("web-1", "w2"), ("web-2", "w3")],
                reason: "",
            },
            Case {
                name: "spread picks the emptiest worker",
                specs: vec![vm("a", 1, 1, 128)],
                workers: vec![worker("small", 2, 1024), worker("big", 16, 16384)],
                strategy: PlacementStrategy::Spread,
                current: vec![],
                expect: vec![("a-0", "big")],
                reason: "",
            },
            Case {
                name: "pack picks the fullest worker that fits",
                specs: vec![vm("a", 1, 1, 128), vm("b", 1, 1, 128)],
                workers: vec![worker("small", 2, 1024), worker("big", 16, 16384)],
                strategy: PlacementStrategy::Pack,
                current: vec![],
                expect: vec![("a-0", "small"), ("b-0", "small")],
                reason: "",
            },
            Case {
                name: "capacity is respected",
                specs: vec![vm("a", 3, 2, 128)],
                workers: vec![worker("w1", 4, 8192)],
                strategy: PlacementStrategy::Spread,
                current: vec![],
                expect: vec![("a-0", "w1"), ("a-1", "w1"), ("a-2", "")],
                reason: "no worker has 2 CPUs free (most free: 0)",
            },
            Case {
                name: "memory is respected",
                specs: vec![vm("a", 1, 1, 4096)],
                workers: vec![worker("w1", 4, 1024)],
                strategy: PlacementStrategy::Spread,
                current: vec![],
                expect: vec![("a-0", "")],
                reason: "no worker has 4096 MiB of memory free",
            },
            Case {
                name: "hard label constraints",
                specs: vec![needs_gpu.clone(), big_gpu],
                workers: vec![worker("w1", 32, 32768), gpu.clone()],
                strategy: PlacementStrategy::Spread,
                current: vec![],
                expect: vec![("ml-0", "gpu"), ("train-0", "")],
                reason: "no worker with label gpu=true has 16 CPUs free (most free: 4)",
            },
            Case {
                name: "constraint nobody carries",
                specs: vec![needs_gpu],
                workers: vec![worker("w1", 32, 32768)],
                strategy: PlacementStrategy::Spread,
                current: vec![],
                expect: vec![("ml-0", "")],
                reason: "no ready worker with label gpu=true",
            },
            Case {
                name: "backend support",
                specs: vec![vm("p", 1, 1, 64)],
                workers: vec![qemu_only],
                strategy: PlacementStrategy::Spread,
                current: vec![],
                expect: vec![("p-0", "")],
                reason: "no ready worker supports the process backend",
            },
            Case {
                name: "running instances stay put",
                specs: vec![vm("web", 2, 1, 128)],
                workers: vec![worker("w1", 2, 8192), worker("w2", 64, 65536)],
                strategy: PlacementStrategy::Spread,
                current: vec![("web-0", "w1"), ("web-1", "w1")],
                expect: vec![("web-0", "w1"), ("web-1", "w1")],
                reason: "",
            },
            Case {
                name: "cordoned keeps its instances but takes no new ones",
                specs: vec![vm("web", 2, 1, 128)],
                workers: vec![cordoned.clone(), worker("w2", 4, 4096)],
                strategy: PlacementStrategy::Spread,
                current: vec![("web-0", "c")],
                expect: vec![("web-0", "c"), ("web-1", "w2")],
                reason: "",
            },
            Case {
                name: "lost worker's instances move",
                specs: vec![vm("web", 1, 1, 128)],
                workers: vec![lost, worker("w2", 4, 4096)],
                strategy: PlacementStrategy::Spread,
                current: vec![("web-0", "lost")],
                expect: vec![("web-0", "w2")],
                reason: "",
            },
            Case {
                name: "prefers a worker that has the closure",
                specs: vec![vm("web", 1, 1, 128)],
                workers: vec![worker("cold", 64, 65536), has_closure],
                strategy: PlacementStrategy::Spread,
                current: vec![],
                expect: vec![("web-0", "warm")],
                reason: "",
            },
            Case {
                name: "host ports do not collide",
                specs: vec![port_a, port_b],
                workers: vec![worker("w1", 8, 8192)],
                strategy: PlacementStrategy::Spread,
                current: vec![],
                expect: vec![("a-0", "w1"), ("b-0", "")],
                reason: "host port 8080 is already taken",
            },
            Case {
                name: "no workers at all",
                specs: vec![vm("web", 1, 1, 128)],
                workers: vec![],
                strategy: PlacementStrategy::Spread,
                current: vec![],
                expect: vec![("web-0", "")],
                reason: "no workers are registered",
            },
            Case {
                name: "only cordoned workers",
                specs: vec![vm("web", 1, 1, 128)],
                workers: vec![cordoned],
                strategy: PlacementStrategy::Spread,
                current: vec![],
                expect: vec![("web-0", "")],
                reason: "no worker is ready",
            },
        ];
        for case in cases {
            run(case);
        }
    }

    #[test]
    fn deterministic() {
        let specs: Vec<VmSpec> = (0..50)
            .map(|i| vm(&format!("s{i}"), 3, 1 + i % 3, 128))
            .collect();
        let workers: Vec<WorkerView> = (0..20).map(|i| worker(&format!("w{i}"), 8, 8192)).collect();
        let a = schedule(
            &specs,
            PlacementStrategy::Spread,
            &workers,
            &BTreeMap::new(),
        );
        let b = schedule(
            &specs,
            PlacementStrategy::Spread,
            &workers,
            &BTreeMap::new(),
        );
        assert_eq!(a, b);
        assert_eq!(a.assigned.len() + a.unplaced.len(), 150);
    }
}
