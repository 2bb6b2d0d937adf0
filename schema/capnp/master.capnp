# The control plane's interfaces. A connection starts at `Bootstrap`; `login` trades a token for
# `Master` (operators, CI) or the narrower `WorkerGateway` (workers).
@0xec27c0b99e188ebe;

using Common = import "common.capnp";
using Worker = import "worker.capnp";

interface Bootstrap {
  login @0 (token :Text) -> (result :LoginResult);
}

struct LoginResult {
  union {
    master @0 :Master;
    worker @1 :WorkerGateway;
    err @2 :Common.Error;
  }
}

# Everything a worker needs, nothing more.
interface WorkerGateway {
  register @0 (info :Common.WorkerInfo, callback :Worker.WorkerCallback) -> (result :RegisterResult);
  getAssignment @1 (workerId :Text, lastSeenRevision :UInt64) -> (result :AssignmentResult);
  pushData @2 (workerId :Text, observedGeneration :UInt64,
               runningVms :List(Common.InstanceReport), metrics :Common.WorkerMetrics)
           -> (result :PushResult);
}

interface Master extends(WorkerGateway) {
  publishState @0 (commit :Text, generation :UInt64, intentHash :Text,
                   vmSpecs :List(Common.VmSpec), settings :Common.ClusterSettings)
               -> (result :PublishResult);
  getClusterStatus @1 () -> (result :StatusResult);
  getWorker @2 (workerId :Text) -> (result :WorkerResult);
  watch @3 (sink :EventSink, sinceSeq :UInt64) -> (result :WatchResult);
  listGenerations @4 (limit :UInt32) -> (result :GenerationsResult);
  listEvents @5 (sinceSeq :UInt64, limit :UInt32) -> (result :EventsResult);
  getGeneration @6 (generation :UInt64) -> (result :GenerationResult);
  # No new instances; existing ones stay.
  cordon @7 (workerId :Text) -> (result :ActionResult);
  uncordon @8 (workerId :Text) -> (result :ActionResult);
  # Moves instances off, at most `maxUnavailable` of each VM at a time; cordoned when empty.
  drain @9 (workerId :Text) -> (result :ActionResult);
  # Makes `toGeneration` active again (0: the last generation that rolled out completely);
  # the generation it replaces is recorded as rolled back.
  rollback @10 (toGeneration :UInt64) -> (result :ActionResult);
  # Lets a canary rollout of `vmName` continue to all instances.
  promote @11 (vmName :Text) -> (result :ActionResult);
  # Restarts one instance where it runs. Its assignment carries PROCURATOR_RESTART=<count>,
  # which changes with every request (as `kubectl rollout restart` changes an annotation).
  restartInstance @12 (instanceId :Text) -> (result :ActionResult);
  # Where the scheduler would place these VMs now, against the workers and placements as they
  # are; nothing changes (`pcr plan`).
  planPlacement @13 (vmSpecs :List(Common.VmSpec), settings :Common.ClusterSettings)
                -> (result :PlacementResult);
}

struct PlacementResult {
  union {
    ok @0 :Placement;
    err @1 :Common.Error;
  }
}

struct Placement {
  assigned @0 :List(PlacedInstance);
  unplaced @1 :List(UnplacedInstance);
}

struct PlacedInstance {
  instanceId @0 :Text;
  workerId @1 :Text;
}

struct UnplacedInstance {
  instanceId @0 :Text;
  reason @1 :Text;
}

struct ActionResult {
  union {
    # What was done, as a sentence.
    ok @0 :Text;
    err @1 :Common.Error;
  }
}

# Operator tools implement this to receive cluster events as they happen.
interface EventSink {
  push @0 (events :List(Common.Event)) -> ();
}

# Dropping the last reference ends the subscription.
interface Subscription {}

struct RegisterResult {
  union {
    ok @0 :Registered;
    err @1 :Common.Error;
  }
}

struct Registered {
  # The current assignment revision, so the worker knows whether to fetch at once.
  revision @0 :UInt64;
  heartbeatIntervalMs @1 :UInt32;
  leaseMs @2 :UInt32;
}

struct Assignment {
  generation @0 :UInt64;
  revision @1 :UInt64;
  instances @2 :List(AssignedInstance);
}

struct AssignedInstance {
  instanceId @0 :Text;
  spec @1 :Common.VmSpec;
}

struct AssignmentResult {
  union {
    # Same revision as `lastSeenRevision`: nothing to do.
    unchanged @0 :UInt64;
    assignment @1 :Assignment;
    err @2 :Common.Error;
  }
}

struct PushResult {
  union {
    # The worker's current assignment revision; if newer than what it holds, fetch.
    ok @0 :UInt64;
    err @1 :Common.Error;
  }
}

struct Published {
  generation @0 :UInt64;
  # False when this was an idempotent retry of the active generation.
  changed @1 :Bool;
  placed @2 :UInt32;
  unplaced @3 :UInt32;
  revision @4 :UInt64;
}

struct PublishResult {
  union {
    ok @0 :Published;
    err @1 :Common.Error;
  }
}

struct StatusResult {
  union {
    ok @0 :Common.ClusterStatus;
    err @1 :Common.Error;
  }
}

struct WorkerResult {
  union {
    ok @0 :Common.WorkerStatus;
    err @1 :Common.Error;
  }
}

struct WatchResult {
  union {
    ok @0 :Subscription;
    err @1 :Common.Error;
  }
}

struct GenerationsResult {
  union {
    ok @0 :List(Common.GenerationInfo);
    err @1 :Common.Error;
  }
}

struct EventsResult {
  union {
    ok @0 :List(Common.Event);
    err @1 :Common.Error;
  }
}

struct GenerationDetail {
  info @0 :Common.GenerationInfo;
  settings @1 :Common.ClusterSettings;
  vmSpecs @2 :List(Common.VmSpec);
}

struct GenerationResult {
  union {
    ok @0 :GenerationDetail;
    err @1 :Common.Error;
  }
}
