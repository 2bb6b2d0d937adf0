# Types shared by the control plane, workers and operator tools.
#
# Wire types only: every struct here has a plain Rust twin in `schema::model`, and
# `schema::convert` moves between the two. Fields are only ever added, never renumbered.
@0xeb0b5b3129f3cb14;

# Every fallible call answers with a union of its value and one of these.
struct Error {
  # One sentence a person can act on, e.g. "generation 3 is not newer than active generation 5".
  message @0 :Text;
  code @1 :ErrorCode;
}

enum ErrorCode {
  invalid @0;       # the request itself is malformed
  stale @1;         # a generation or revision older than what the master holds
  notFound @2;      # unknown worker, instance or generation
  unauthorized @3;  # wrong token, or a capability used for what it does not allow
  conflict @4;      # same generation published with other content, name clash
  internal @5;      # storage or other server-side failure; nothing was changed
  unavailable @6;   # nothing can satisfy it right now (e.g. no capacity)
}

struct Empty {}

enum Backend {
  cloudHypervisor @0;
  qemu @1;
  process @2;
}

struct KeyValue {
  key @0 :Text;
  value @1 :Text;
}

struct PortForward {
  name @0 :Text;
  # Port the workload listens on (inside the guest for VMs, on the host for processes).
  guest @1 :UInt16;
  # Port on the worker's host; two instances using the same host port never share a worker.
  host @2 :UInt16;
}

struct HealthCheck {
  union {
    tcp :group {
      port @0 :UInt16;
    }
    http :group {
      port @1 :UInt16;
      path @2 :Text;
      expectStatus @3 :UInt16;   # 0 means any 2xx
    }
    command :group {
      argv @4 :List(Text);
    }
  }
  intervalMs @5 :UInt32;
  timeoutMs @6 :UInt32;
  # Consecutive failures before the instance counts as unhealthy.
  retries @7 :UInt32;
  # Failures during this time after start do not count.
  gracePeriodMs @8 :UInt32;
}

enum RolloutStrategy {
  rolling @0;
  canary @1;
}

struct RolloutPolicy {
  strategy @0 :RolloutStrategy;
  maxParallel @1 :UInt32;
  maxUnavailable @2 :UInt32;
  minHealthyTimeMs @3 :UInt64;
  healthyDeadlineMs @4 :UInt64;
  progressDeadlineMs @5 :UInt64;
  canaryCount @6 :UInt32;
  autoPromote @7 :Bool;
  autoRollback @8 :Bool;
}

enum RestartMode {
  always @0;
  onFailure @1;
  never @2;
}

struct RestartPolicy {
  mode @0 :RestartMode;
  initialBackoffMs @1 :UInt32;
  maxBackoffMs @2 :UInt32;
  # Restarts within `crashLoopWindowMs` after which the instance is in crash loop.
  crashLoopThreshold @3 :UInt32;
  crashLoopWindowMs @4 :UInt32;
}

# One VM (or process workload) of the blueprint. `replicas` instances of it are scheduled,
# named `<name>-<index>`.
struct VmSpec {
  name @0 :Text;
  role @1 :Text;
  replicas @2 :UInt32;
  cpu @3 :UInt32;            # whole vCPUs
  memoryMb @4 :UInt64;
  labels @5 :List(KeyValue);
  # Hard constraints: the worker must carry every one of these labels with this value.
  constraints @6 :List(KeyValue);
  backend @7 :Backend;
  # Store path of the closure: a toplevel (kernel, initrd, kernel-params, init) for VMs,
  # a package holding the executable for process workloads.
  closure @8 :Text;
  # For process workloads: the executable, relative to `closure` (empty: `closure` itself).
  exec @9 :Text;
  args @10 :List(Text);
  env @11 :List(KeyValue);
  ports @12 :List(PortForward);
  healthChecks @13 :List(HealthCheck);
  rollout @14 :RolloutPolicy;
  restart @15 :RestartPolicy;
  # 0: instances keep running while their worker cannot reach the control plane. Otherwise
  # the worker stops them after this long without an answer from the control plane, so an
  # instance rescheduled elsewhere never runs twice (when it is at most the lease).
  stopAfterDisconnectMs @16 :UInt32;
}

enum PlacementStrategy {
  spread @0;
  pack @1;
}

struct ClusterSettings {
  name @0 :Text;
  strategy @1 :PlacementStrategy;
}

enum Phase {
  pending @0;      # assigned, nothing done yet
  fetching @1;     # closure being copied from the cache
  starting @2;     # VMM or process launched, not yet booted
  running @3;
  stopping @4;
  stopped @5;
  failed @6;       # gave up; `message` says why
  crashLoop @7;    # restarting too often
  unknown @8;      # nothing reported (yet)
}

enum Health {
  unknown @0;
  starting @1;     # inside the grace period
  healthy @2;
  unhealthy @3;
}

# What a worker observes about one instance.
struct InstanceReport {
  instanceId @0 :Text;
  vmName @1 :Text;
  closure @2 :Text;
  phase @3 :Phase;
  health @4 :Health;
  uptimeMs @5 :UInt64;
  cpuPercent @6 :Float32;
  memoryBytes @7 :UInt64;
  restarts @8 :UInt32;
  # Last error, last health check result, or fetch progress.
  message @9 :Text;
  # Console/log tail, sent when the instance failed.
  logTail @10 :Text;
  generation @11 :UInt64;
}

struct WorkerMetrics {
  cpuUsedPercent @0 :Float32;
  memoryUsedBytes @1 :UInt64;
  memoryTotalBytes @2 :UInt64;
  diskFreeBytes @3 :UInt64;
  closuresPresent @4 :UInt32;
  loadAverage @5 :Float32;
}

struct WorkerInfo {
  id @0 :Text;
  labels @1 :List(KeyValue);
  cpu @2 :UInt32;
  memoryMb @3 :UInt64;
  backends @4 :List(Backend);
  hostname @5 :Text;
  version @6 :Text;
}

enum WorkerState {
  ready @0;
  lost @1;        # heartbeat lease expired
  cordoned @2;    # keeps its VMs, gets no new ones
  draining @3;    # VMs are being moved off
}

struct WorkerStatus {
  info @0 :WorkerInfo;
  state @1 :WorkerState;
  healthy @2 :Bool;
  freeCpu @3 :Int64;
  freeMemoryMb @4 :Int64;
  instanceCount @5 :UInt32;
  lastHeartbeatMs @6 :UInt64;   # unix epoch ms; 0 = never
  observedGeneration @7 :UInt64;
  metrics @8 :WorkerMetrics;
  instances @9 :List(InstanceReport);
}

struct InstanceStatus {
  instanceId @0 :Text;
  vmName @1 :Text;
  workerId @2 :Text;            # empty when unplaced
  desiredClosure @3 :Text;
  observedClosure @4 :Text;
  phase @5 :Phase;
  health @6 :Health;
  drifted @7 :Bool;             # observed closure differs from desired (or not running)
  unplacedReason @8 :Text;
  backend @9 :Backend;
  cpu @10 :UInt32;
  memoryMb @11 :UInt64;
  uptimeMs @12 :UInt64;
  message @13 :Text;
  restarts @14 :UInt32;
  cpuPercent @15 :Float32;
  memoryBytes @16 :UInt64;
  # The generation whose spec this instance runs (it trails the active one during a rollout).
  generation @17 :UInt64;
}

enum RolloutPhase {
  complete @0;
  progressing @1;
  waitingForPromotion @2;   # canary healthy, autoPromote off
  failed @3;
}

# How far the active generation has rolled out, per VM.
struct RolloutStatus {
  vmName @0 :Text;
  phase @1 :RolloutPhase;
  generation @2 :UInt64;
  updated @3 :UInt32;       # instances running the generation's spec, proven healthy
  total @4 :UInt32;
  message @5 :Text;
}

struct GenerationInfo {
  generation @0 :UInt64;
  commit @1 :Text;
  intentHash @2 :Text;
  publishedAtMs @3 :UInt64;
  vmCount @4 :UInt32;
  status @5 :Text;              # active, superseded, failed, rolled-back
  # Why it failed or was rolled back.
  reason @6 :Text;
}

struct ClusterStatus {
  settings @0 :ClusterSettings;
  # 0 when nothing was published yet.
  activeGeneration @1 :UInt64;
  commit @2 :Text;
  intentHash @3 :Text;
  publishedAtMs @4 :UInt64;
  convergencePercent @5 :Float32;
  workers @6 :List(WorkerStatus);
  instances @7 :List(InstanceStatus);
  revision @8 :UInt64;
  rollouts @9 :List(RolloutStatus);
  # The last generation that rolled out completely; automatic rollbacks return to it.
  lastGoodGeneration @10 :UInt64;
}

enum EventKind {
  generationPublished @0;
  placementChanged @1;
  workerRegistered @2;
  workerLost @3;
  workerReturned @4;
  instancePhase @5;
  instanceHealth @6;
  unplaced @7;
  other @8;
  rollout @9;
  rollback @10;
  workerState @11;
}

struct Event {
  seq @0 :UInt64;
  timestampMs @1 :UInt64;
  kind @2 :EventKind;
  generation @3 :UInt64;
  workerId @4 :Text;
  instanceId @5 :Text;
  message @6 :Text;
}
