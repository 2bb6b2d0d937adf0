//! Plain Rust twins of the wire types, and the rules a blueprint must follow.
//!
//! The serde form of [`Blueprint`] *is* the blueprint format: what `nix eval --json
//! .#blueprintJSON` prints and what `pcr-test state publish --blueprint FILE` reads. Field names
//! are camelCase there; every field but `closure` has a default so a cluster flake only states
//! what it cares about.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Largest blueprint the control plane accepts, in VM specs.
pub const MAX_VMS: usize = 10_000;
/// Largest replica count of one VM spec.
pub const MAX_REPLICAS: u32 = 1_000;
/// Largest vCPU count of one instance.
pub const MAX_CPU: u32 = 1_024;
/// Largest memory of one instance: 16 TiB.
pub const MAX_MEMORY_MB: u64 = 16 * 1024 * 1024;
/// Smallest memory a microVM can boot with.
pub const MIN_MEMORY_MB: u64 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    CloudHypervisor,
    Qemu,
    Process,
}

impl Backend {
    pub const ALL: [Backend; 3] = [Backend::CloudHypervisor, Backend::Qemu, Backend::Process];

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::CloudHypervisor => "cloud-hypervisor",
            Backend::Qemu => "qemu",
            Backend::Process => "process",
        }
    }

    /// Whether the closure is a bootable toplevel (as opposed to a package with an executable).
    pub fn is_vm(self) -> bool {
        !matches!(self, Backend::Process)
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Backend::ALL
            .into_iter()
            .find(|b| b.as_str() == s)
            .ok_or_else(|| {
                format!("unknown backend `{s}`; expected cloud-hypervisor, qemu or process")
            })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortForward {
    #[serde(default)]
    pub name: String,
    pub guest: u16,
    /// Host port; defaults to the guest port.
    #[serde(default)]
    pub host: u16,
}

impl PortForward {
    pub fn host_port(&self) -> u16 {
        if self.host == 0 {
            self.guest
        } else {
            self.host
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum CheckKind {
    Tcp {
        port: u16,
    },
    #[serde(rename_all = "camelCase")]
    Http {
        port: u16,
        #[serde(default = "default_http_path")]
        path: String,
        /// 0 accepts any 2xx.
        #[serde(default)]
        expect_status: u16,
    },
    Command {
        argv: Vec<String>,
    },
}

fn default_http_path() -> String {
    "/".to_string()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    #[serde(flatten)]
    pub kind: CheckKind,
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u32,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u32,
    #[serde(default = "default_retries")]
    pub retries: u32,
    #[serde(default)]
    pub grace_period_ms: u32,
}

fn default_interval_ms() -> u32 {
    1_000
}
fn default_timeout_ms() -> u32 {
    1_000
}
fn default_retries() -> u32 {
    3
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RolloutStrategy {
    #[default]
    Rolling,
    Canary,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct RolloutPolicy {
    pub strategy: RolloutStrategy,
    pub max_parallel: u32,
    pub max_unavailable: u32,
    pub min_healthy_time_ms: u64,
    pub healthy_deadline_ms: u64,
    pub progress_deadline_ms: u64,
    pub canary_count: u32,
    pub auto_promote: bool,
    pub auto_rollback: bool,
}

impl Default for RolloutPolicy {
    fn default() -> Self {
        RolloutPolicy {
            strategy: RolloutStrategy::Rolling,
            max_parallel: 1,
            max_unavailable: 1,
            min_healthy_time_ms: 2_000,
            healthy_deadline_ms: 60_000,
            progress_deadline_ms: 300_000,
            canary_count: 0,
            auto_promote: true,
            auto_rollback: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartMode {
    #[default]
    Always,
    OnFailure,
    Never,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct RestartPolicy {
    pub mode: RestartMode,
    pub initial_backoff_ms: u32,
    pub max_backoff_ms: u32,
    pub crash_loop_threshold: u32,
    pub crash_loop_window_ms: u32,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            mode: RestartMode::Always,
            initial_backoff_ms: 500,
            max_backoff_ms: 30_000,
            crash_loop_threshold: 5,
            crash_loop_window_ms: 60_000,
        }
    }
}

/// One VM or process workload of a blueprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VmSpec {
    /// Filled from the key of `vms` when the blueprint is read.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub role: String,
    #[serde(default = "one")]
    pub replicas: u32,
    #[serde(default = "one")]
    pub cpu: u32,
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u64,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub constraints: BTreeMap<String, String>,
    pub backend: Backend,
    pub closure: String,
    #[serde(default)]
    pub exec: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub ports: Vec<PortForward>,
    #[serde(default)]
    pub health_checks: Vec<HealthCheck>,
    #[serde(default)]
    pub rollout: RolloutPolicy,
    #[serde(default)]
    pub restart: RestartPolicy,
    /// 0 (the default): instances keep running while their worker is cut off from the control
    /// plane. Otherwise the worker stops them once it has had no answer for this long, so a
    /// copy rescheduled elsewhere after the lease never runs beside them (with a value no
    /// longer than the lease). For workloads that must not run twice, like a queue consumer
    /// holding a lock or a database primary.
    #[serde(default)]
    pub stop_after_disconnect_ms: u32,
}

fn one() -> u32 {
    1
}
fn default_memory_mb() -> u64 {
    256
}

impl VmSpec {
    /// A small process workload; handy for tests and `pcr-test state publish -n`.
    pub fn process(name: &str, closure: &str) -> VmSpec {
        VmSpec {
            name: name.to_string(),
            role: String::new(),
            replicas: 1,
            cpu: 1,
            memory_mb: default_memory_mb(),
            labels: BTreeMap::new(),
            constraints: BTreeMap::new(),
            backend: Backend::Process,
            closure: closure.to_string(),
            exec: String::new(),
            args: Vec::new(),
            env: BTreeMap::new(),
            ports: Vec::new(),
            health_checks: Vec::new(),
            rollout: RolloutPolicy::default(),
            restart: RestartPolicy::default(),
            stop_after_disconnect_ms: 0,
        }
    }

    /// Instance ids of this spec: `<name>-<index>`.
    pub fn instance_ids(&self) -> impl Iterator<Item = String> + '_ {
        (0..self.replicas).map(move |i| instance_id(&self.name, i))
    }

    /// Whether moving from `self` to `new` requires the instance to be restarted (anything
    /// but the replica count, rollout policy and labels that only steer scheduling).
    pub fn runtime_differs(&self, new: &VmSpec) -> bool {
        self.closure != new.closure
            || self.backend != new.backend
            || self.cpu != new.cpu
            || self.memory_mb != new.memory_mb
            || self.exec != new.exec
            || self.args != new.args
            || self.env != new.env
            || self.ports != new.ports
            || self.health_checks != new.health_checks
            || self.restart != new.restart
    }
}

pub fn instance_id(vm: &str, index: u32) -> String {
    format!("{vm}-{index}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PlacementStrategy {
    /// Each instance goes to the worker with the most room left.
    #[default]
    Spread,
    /// Each instance goes to the fullest worker it fits on.
    Pack,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ClusterSettings {
    pub name: String,
    pub strategy: PlacementStrategy,
}

/// The desired state of a cluster, as CI evaluates it from the flake.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Blueprint {
    pub cluster: ClusterSettings,
    pub vms: Vec<VmSpec>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlueprintFile {
    #[serde(default)]
    cluster: ClusterSettings,
    #[serde(default)]
    vms: BTreeMap<String, VmSpec>,
}

impl Blueprint {
    /// Reads the blueprint JSON format; validates it.
    pub fn from_json(text: &str) -> Result<Blueprint, BlueprintError> {
        let file: BlueprintFile = serde_json::from_str(text).map_err(BlueprintError::Json)?;
        let mut vms = Vec::with_capacity(file.vms.len());
        for (key, mut spec) in file.vms {
            if !spec.name.is_empty() && spec.name != key {
                return Err(BlueprintError::Invalid(ValidationError(format!(
                    "vms.{key} says its name is `{}`; drop `name` or make it match the key",
                    spec.name
                ))));
            }
            spec.name = key;
            vms.push(spec);
        }
        let blueprint = Blueprint {
            cluster: file.cluster,
            vms,
        };
        blueprint.validate().map_err(BlueprintError::Invalid)?;
        Ok(blueprint)
    }

    pub fn to_json(&self) -> String {
        let file = BlueprintFile {
            cluster: self.cluster.clone(),
            vms: self
                .vms
                .iter()
                .map(|vm| (vm.name.clone(), vm.clone()))
                .collect(),
        };
        // Serializing plain data into a String cannot fail.
        serde_json::to_string_pretty(&file).unwrap_or_default()
    }

    /// The hash of the blueprint's content: sha256 over its canonical JSON (keys sorted, VMs by
    /// name). Two blueprints with the same meaning have the same hash.
    pub fn intent_hash(&self) -> String {
        content_hash(&self.cluster, &self.vms)
    }

    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_specs(&self.vms)
    }

    pub fn instance_count(&self) -> usize {
        self.vms.iter().map(|vm| vm.replicas as usize).sum()
    }
}

/// sha256 of the canonical JSON of a cluster's settings and specs, hex-encoded.
pub fn content_hash(settings: &ClusterSettings, specs: &[VmSpec]) -> String {
    let mut sorted: Vec<&VmSpec> = specs.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let canonical = serde_json::json!({ "cluster": settings, "vms": sorted });
    // serde_json's Value keeps object keys sorted (BTreeMap), so this is canonical.
    let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

#[derive(Debug, thiserror::Error)]
pub enum BlueprintError {
    #[error("blueprint is not valid JSON for this format")]
    Json(#[source] serde_json::Error),
    #[error("blueprint is invalid: {0}")]
    Invalid(ValidationError),
}

/// Why a set of specs was refused; one sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValidationError(pub String);

fn invalid<T>(msg: String) -> Result<T, ValidationError> {
    Err(ValidationError(msg))
}

/// The rules every published set of specs follows. Checked whole before anything is stored.
pub fn validate_specs(specs: &[VmSpec]) -> Result<(), ValidationError> {
    if specs.len() > MAX_VMS {
        return invalid(format!(
            "blueprint has {} VMs; at most {MAX_VMS} are accepted",
            specs.len()
        ));
    }
    let mut names = BTreeSet::new();
    for spec in specs {
        validate_spec(spec)?;
        if !names.insert(spec.name.as_str()) {
            return invalid(format!("VM name `{}` appears twice", spec.name));
        }
    }
    Ok(())
}

pub fn validate_spec(spec: &VmSpec) -> Result<(), ValidationError> {
    let name = &spec.name;
    validate_name(name)?;
    if spec.replicas > MAX_REPLICAS {
        return invalid(format!(
            "{name}: {} replicas is more than the limit of {MAX_REPLICAS}",
            spec.replicas
        ));
    }
    if spec.cpu == 0 {
        return invalid(format!("{name}: cpu must be at least 1"));
    }
    if spec.cpu > MAX_CPU {
        return invalid(format!(
            "{name}: {} vCPUs is more than the limit of {MAX_CPU}",
            spec.cpu
        ));
    }
    if spec.memory_mb < MIN_MEMORY_MB {
        return invalid(format!(
            "{name}: memoryMb {} is below the minimum of {MIN_MEMORY_MB}",
            spec.memory_mb
        ));
    }
    if spec.memory_mb > MAX_MEMORY_MB {
        return invalid(format!(
            "{name}: memoryMb {} is more than the limit of {MAX_MEMORY_MB} (16 TiB)",
            spec.memory_mb
        ));
    }
    validate_store_path(&spec.closure).map_err(|e| ValidationError(format!("{name}: {e}")))?;
    if !spec.exec.is_empty() {
        if spec.backend.is_vm() {
            return invalid(format!(
                "{name}: `exec` is only for process workloads; a VM boots its toplevel's init"
            ));
        }
        validate_relative_path(&spec.exec)
            .map_err(|e| ValidationError(format!("{name}: exec {e}")))?;
    }
    for (key, _) in spec.labels.iter().chain(spec.constraints.iter()) {
        if key.is_empty() || key.len() > 253 || key.chars().any(|c| c.is_whitespace() || c == '=') {
            return invalid(format!(
                "{name}: label key `{key}` must be 1-253 characters without spaces or `=`"
            ));
        }
    }
    for key in spec.env.keys() {
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            return invalid(format!(
                "{name}: environment variable name `{key}` is invalid"
            ));
        }
    }
    let mut host_ports = BTreeSet::new();
    for port in &spec.ports {
        if port.guest == 0 {
            return invalid(format!("{name}: port `{}` has guest port 0", port.name));
        }
        if !host_ports.insert(port.host_port()) {
            return invalid(format!(
                "{name}: host port {} is forwarded twice",
                port.host_port()
            ));
        }
    }
    for check in &spec.health_checks {
        match &check.kind {
            CheckKind::Tcp { port } | CheckKind::Http { port, .. } if *port == 0 => {
                return invalid(format!("{name}: a health check has port 0"));
            }
            CheckKind::Http { path, .. } if !path.starts_with('/') => {
                return invalid(format!(
                    "{name}: health check path `{path}` must start with `/`"
                ));
            }
            CheckKind::Command { argv } if argv.is_empty() || argv[0].is_empty() => {
                return invalid(format!("{name}: a command health check has no command"));
            }
            _ => {}
        }
        if check.interval_ms < 50 {
            return invalid(format!(
                "{name}: health check interval {} ms is below the minimum of 50 ms",
                check.interval_ms
            ));
        }
        if check.timeout_ms == 0 {
            return invalid(format!("{name}: health check timeout must be above 0 ms"));
        }
    }
    if spec.rollout.strategy == RolloutStrategy::Canary && spec.rollout.canary_count == 0 {
        return invalid(format!(
            "{name}: canary rollout needs canaryCount of at least 1"
        ));
    }
    if spec.rollout.max_parallel == 0 {
        return invalid(format!("{name}: rollout maxParallel must be at least 1"));
    }
    Ok(())
}

/// VM names become instance ids, file names and DNS labels: keep them to `[a-z0-9-]`.
pub fn validate_name(name: &str) -> Result<(), ValidationError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        invalid(format!(
            "VM name `{name}` must be 1-63 characters of a-z, 0-9 and `-`, not starting or ending with `-`"
        ))
    }
}

const NIX_BASE32: &[u8] = b"0123456789abcdfghijklmnpqrsvwxyz";

/// A store path as Nix writes them: `/nix/store/<32 nix-base32 chars>-<name>`, nothing after.
/// Why a closure is not a store path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorePathError {
    #[error("closure `{0}` is not a /nix/store path")]
    NotInStore(String),
    #[error("closure `{0}` must be a store path itself, not a file inside one")]
    InsideStorePath(String),
    #[error("closure `{0}` does not start with a 32-character nix-base32 hash")]
    Hash(String),
    #[error("closure `{0}` has no `-` after its hash")]
    NoDash(String),
    #[error("closure `{0}` has an invalid name part")]
    Name(String),
}

/// Why a path meant to be inside a closure is not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelativePathError {
    #[error("`{0}` must be relative to the closure")]
    Absolute(String),
    #[error("`{0}` must not contain `..` or empty components")]
    Escapes(String),
}

pub fn validate_store_path(path: &str) -> Result<(), StorePathError> {
    let Some(base) = path.strip_prefix("/nix/store/") else {
        return Err(StorePathError::NotInStore(path.to_string()));
    };
    if base.contains('/') {
        return Err(StorePathError::InsideStorePath(path.to_string()));
    }
    let (hash, name) = base.split_at(base.len().min(32));
    if hash.len() != 32 || !hash.bytes().all(|b| NIX_BASE32.contains(&b)) {
        return Err(StorePathError::Hash(path.to_string()));
    }
    let Some(name) = name.strip_prefix('-') else {
        return Err(StorePathError::NoDash(path.to_string()));
    };
    let name_ok = !name.is_empty()
        && name.len() <= 211
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-._?=".contains(&b));
    if !name_ok {
        return Err(StorePathError::Name(path.to_string()));
    }
    Ok(())
}

fn validate_relative_path(path: &str) -> Result<(), RelativePathError> {
    if path.starts_with('/') {
        return Err(RelativePathError::Absolute(path.to_string()));
    }
    if path.split('/').any(|c| c == ".." || c.is_empty()) || path.contains('\0') {
        return Err(RelativePathError::Escapes(path.to_string()));
    }
    Ok(())
}

// ---- what workers observe and the master reports ----

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
    Pending,
    Fetching,
    Starting,
    Running,
    Stopping,
    Stopped,
    Failed,
    CrashLoop,
    #[default]
    Unknown,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Fetching => "fetching",
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::Stopping => "stopping",
            Phase::Stopped => "stopped",
            Phase::Failed => "failed",
            Phase::CrashLoop => "crash-loop",
            Phase::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Health {
    #[default]
    Unknown,
    Starting,
    Healthy,
    Unhealthy,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Starting => "starting",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct InstanceReport {
    pub instance_id: String,
    pub vm_name: String,
    pub closure: String,
    pub phase: Phase,
    pub health: Health,
    pub uptime_ms: u64,
    pub cpu_percent: f32,
    pub memory_bytes: u64,
    pub restarts: u32,
    pub message: String,
    pub log_tail: String,
    pub generation: u64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WorkerMetrics {
    pub cpu_used_percent: f32,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub disk_free_bytes: u64,
    pub closures_present: u32,
    pub load_average: f32,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WorkerInfo {
    pub id: String,
    pub labels: BTreeMap<String, String>,
    pub cpu: u32,
    pub memory_mb: u64,
    pub backends: Vec<Backend>,
    pub hostname: String,
    pub version: String,
}

impl WorkerInfo {
    /// The backends it supports, as `sep`-separated names (`process, qemu`).
    pub fn backend_names(&self, sep: &str) -> String {
        self.backends
            .iter()
            .map(|b| b.as_str())
            .collect::<Vec<_>>()
            .join(sep)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum WorkerState {
    #[default]
    Ready,
    Lost,
    Cordoned,
    Draining,
}

impl WorkerState {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Ready => "ready",
            WorkerState::Lost => "lost",
            WorkerState::Cordoned => "cordoned",
            WorkerState::Draining => "draining",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WorkerStatus {
    pub info: WorkerInfo,
    pub state: WorkerState,
    pub healthy: bool,
    pub free_cpu: i64,
    pub free_memory_mb: i64,
    pub instance_count: u32,
    pub last_heartbeat_ms: u64,
    pub observed_generation: u64,
    pub metrics: WorkerMetrics,
    pub instances: Vec<InstanceReport>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct InstanceStatus {
    pub instance_id: String,
    pub vm_name: String,
    pub worker_id: String,
    pub desired_closure: String,
    pub observed_closure: String,
    pub phase: Phase,
    pub health: Health,
    pub drifted: bool,
    pub unplaced_reason: String,
    pub backend: Option<Backend>,
    pub cpu: u32,
    pub memory_mb: u64,
    pub uptime_ms: u64,
    pub message: String,
    pub restarts: u32,
    pub cpu_percent: f32,
    pub memory_bytes: u64,
    /// The generation whose spec this instance runs.
    pub generation: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RolloutPhase {
    #[default]
    Complete,
    Progressing,
    WaitingForPromotion,
    Failed,
}

impl RolloutPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutPhase::Complete => "complete",
            RolloutPhase::Progressing => "progressing",
            RolloutPhase::WaitingForPromotion => "waiting-for-promotion",
            RolloutPhase::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RolloutStatus {
    pub vm_name: String,
    pub phase: RolloutPhase,
    pub generation: u64,
    pub updated: u32,
    pub total: u32,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GenerationInfo {
    pub generation: u64,
    pub commit: String,
    pub intent_hash: String,
    pub published_at_ms: u64,
    pub vm_count: u32,
    pub status: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ClusterStatus {
    pub settings: ClusterSettings,
    pub active_generation: u64,
    pub commit: String,
    pub intent_hash: String,
    pub published_at_ms: u64,
    pub convergence_percent: f32,
    pub workers: Vec<WorkerStatus>,
    pub instances: Vec<InstanceStatus>,
    pub revision: u64,
    pub rollouts: Vec<RolloutStatus>,
    pub last_good_generation: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EventKind {
    GenerationPublished,
    PlacementChanged,
    WorkerRegistered,
    WorkerLost,
    WorkerReturned,
    InstancePhase,
    InstanceHealth,
    Unplaced,
    #[default]
    Other,
    Rollout,
    Rollback,
    WorkerState,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::GenerationPublished => "generation-published",
            EventKind::PlacementChanged => "placement-changed",
            EventKind::WorkerRegistered => "worker-registered",
            EventKind::WorkerLost => "worker-lost",
            EventKind::WorkerReturned => "worker-returned",
            EventKind::InstancePhase => "instance-phase",
            EventKind::InstanceHealth => "instance-health",
            EventKind::Unplaced => "unplaced",
            EventKind::Other => "other",
            EventKind::Rollout => "rollout",
            EventKind::Rollback => "rollback",
            EventKind::WorkerState => "worker-state",
        }
    }

    pub fn parse(s: &str) -> EventKind {
        [
            EventKind::GenerationPublished,
            EventKind::PlacementChanged,
            EventKind::WorkerRegistered,
            EventKind::WorkerLost,
            EventKind::WorkerReturned,
            EventKind::InstancePhase,
            EventKind::InstanceHealth,
            EventKind::Unplaced,
            EventKind::Rollout,
            EventKind::Rollback,
            EventKind::WorkerState,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
        .unwrap_or(EventKind::Other)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Event {
    pub seq: u64,
    pub timestamp_ms: u64,
    pub kind: EventKind,
    pub generation: u64,
    pub worker_id: String,
    pub instance_id: String,
    pub message: String,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const PATH: &str = "/nix/store/0c9hj2bl0ajiyqslkmbhizbgshrdw9jl-web";

    #[test]
    fn store_paths() {
        assert!(validate_store_path(PATH).is_ok());
        for bad in [
            "/nix/store/short-web",
            "/tmp/0c9hj2bl0ajiyqslkmbhizbgshrdw9jl-web",
            "/nix/store/0c9hj2bl0ajiyqslkmbhizbgshrdw9jl-web/bin/sh",
            "/nix/store/0c9hj2bl0ajiyqslkmbhizbgshrdw9jl",
            "/nix/store/0c9hj2bl0ajiyqslkmbhizbgshrdw9jeweb",
            "/nix/store/0c9hj2bl0ajiyqslkmbhizbgshrdw9ju-web", // `u` is not nix-base32
            "/nix/store/0c9hj2bl0ajiyqslkmbhizbgshrdw9jl-..",
            "/nix/store/0c9hj2bl0ajiyqslkmbhizbgshrdw9jl-a b",
        ] {
            assert!(validate_store_path(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn specs_are_refused_with_a_sentence() {
        let ok = VmSpec::process("web", PATH);
        assert!(validate_specs(std::slice::from_ref(&ok)).is_ok());
        let cases: Vec<(VmSpec, &str)> = vec![
            (
                VmSpec {
                    cpu: 0,
                    ..ok.clone()
                },
                "cpu must be at least 1",
            ),
            (
                VmSpec {
                    memory_mb: 1 << 40,
                    ..ok.clone()
                },
                "more than the limit",
            ),
            (
                VmSpec {
                    name: "Web_1".into(),
                    ..ok.clone()
                },
                "must be 1-63 characters",
            ),
            (
                VmSpec {
                    closure: "/etc/passwd".into(),
                    ..ok.clone()
                },
                "not a /nix/store path",
            ),
            (
                VmSpec {
                    exec: "../../bin/sh".into(),
                    ..ok.clone()
                },
                "must not contain `..`",
            ),
            (
                VmSpec {
                    replicas: 5000,
                    ..ok.clone()
                },
                "replicas is more than",
            ),
        ];
        for (spec, want) in cases {
            let err = validate_specs(&[spec]).unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} lacks {want:?}");
        }
        let err = validate_specs(&[ok.clone(), ok]).unwrap_err().to_string();
        assert!(err.contains("appears twice"), "{err}");
    }

    #[test]
    fn blueprint_json_round_trip_and_hash() {
        let text = format!(
            r#"{{"cluster":{{"name":"demo","strategy":"pack"}},
                "vms":{{"web":{{"backend":"process","closure":"{PATH}","replicas":2,
                  "healthChecks":[{{"type":"http","port":8080,"path":"/healthz"}}]}}}}}}"#
        );
        let bp = Blueprint::from_json(&text).expect("valid blueprint");
        assert_eq!(bp.vms[0].name, "web");
        assert_eq!(bp.cluster.strategy, PlacementStrategy::Pack);
        assert_eq!(bp.instance_count(), 2);
        let again = Blueprint::from_json(&bp.to_json()).expect("round trip");
        assert_eq!(again, bp);
        assert_eq!(again.intent_hash(), bp.intent_hash());
        let mut changed = bp.clone();
        changed.vms[0].replicas = 3;
        assert_ne!(changed.intent_hash(), bp.intent_hash());
    }

    #[test]
    fn blueprint_rejects_unknown_backend_and_fields() {
        let unknown_backend =
            format!(r#"{{"vms":{{"web":{{"backend":"docker","closure":"{PATH}"}}}}}}"#);
        assert!(Blueprint::from_json(&unknown_backend).is_err());
        let unknown_field =
            format!(r#"{{"vms":{{"web":{{"backend":"qemu","closure":"{PATH}","cpus":2}}}}}}"#);
        assert!(Blueprint::from_json(&unknown_field).is_err());
    }
}

// ---- what the control plane decides ----

/// What a worker should run: the instances placed on it, each with the spec of its generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// The active generation.
    pub generation: u64,
    /// Changes whenever this worker's instances change.
    pub revision: u64,
    /// (instance id, spec)
    pub instances: Vec<(String, VmSpec)>,
}

/// Where the scheduler puts instances.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// instance id → worker id.
    pub assigned: BTreeMap<String, String>,
    /// instance id → why it could not be placed.
    pub unplaced: BTreeMap<String, String>,
}
