# What the master may call on a worker: the callback a worker hands over when it registers.
@0x8081da33312441d4;

using Common = import "common.capnp";

interface WorkerCallback {
  # The worker's assignment changed; it should fetch it (getAssignment) and reconcile.
  assignmentChanged @0 (revision :UInt64) -> ();
  # The last `lines` lines of an instance's console or process log.
  logTail @1 (instanceId :Text, lines :UInt32) -> (result :LogTailResult);
}

struct LogTailResult {
  union {
    ok @0 :Text;
    err @1 :Common.Error;
  }
}
