# NixOS module for `pcr-control-plane`: the Master that keeps desired and observed state
# (SQLite) and schedules VMs onto workers, over Cap'n Proto RPC.
#
# On first start it generates its access tokens beside the database, mode 0600:
#   /var/lib/procurator-control-plane/operator.token  — pcr-ci, repohub, the CLI
#   /var/lib/procurator-control-plane/worker.token    — workers
# On the same host, `controlPlaneTokenFile` of services.procurator.ci and .repohub defaults to
# the first and that of services.procurator.worker to the second; elsewhere, copy the token
# there as a secret and point the option at the copy.
{ config, lib, ... }:
let
  cfg = config.services.procurator.control-plane;
  util = import ./lib.nix { inherit lib; };
  stateDir = util.controlPlaneStateDir;
in
{
  options.services.procurator.control-plane = util.commonOptions { name = "control plane"; binary = "pcr-control-plane"; } // {
    listen = lib.mkOption {
      type = lib.types.str;
      default = "0.0.0.0:7000";
      description = "Address of the Cap'n Proto RPC endpoint that workers, CI and tools connect to.";
    };
    httpListen = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      example = "127.0.0.1:7080";
      description = "Address serving /healthz and /metrics over HTTP; off when null.";
    };
    leaseMs = lib.mkOption {
      type = lib.types.ints.positive;
      default = 10000;
      description = "A worker silent for this long is lost and its instances are placed elsewhere.";
    };
    heartbeatMs = lib.mkOption {
      type = lib.types.ints.positive;
      default = 2000;
      description = "How often workers report; must be shorter than `leaseMs`.";
    };
    fullSync = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = "fsync every commit: survives power loss, at the cost of write latency.";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [{
      assertion = cfg.heartbeatMs < cfg.leaseMs;
      message = "services.procurator.control-plane: heartbeatMs must be shorter than leaseMs, or every worker is lost between two reports";
    }];

    systemd.services.procurator-control-plane = {
      description = "Procurator control plane";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      environment = {
        RUST_LOG = cfg.logLevel;
        PROCURATOR_HOME = stateDir;
      };
      serviceConfig = import ./hardening.nix // {
        # Every worker, UI and pcr-ci holds a connection. The control plane keeps 64 descriptors
        # for itself and closes connections beyond the rest at once.
        LimitNOFILE = 65536;
        ExecStart = lib.escapeShellArgs ([
          "${cfg.package}/bin/pcr-control-plane"
          "--listen" cfg.listen
          "--db" "${stateDir}/control-plane.db"
          "--lease-ms" (toString cfg.leaseMs)
          "--heartbeat-ms" (toString cfg.heartbeatMs)
        ] ++ lib.optionals (cfg.httpListen != null) [ "--http" cfg.httpListen ]
          ++ lib.optional cfg.fullSync "--full-sync"
          ++ cfg.extraArgs);
        DynamicUser = true;
        StateDirectory = "procurator-control-plane";
        StateDirectoryMode = "0700";
        Restart = "on-failure";
        RestartSec = "1s";
        # SQLite in WAL mode: let a commit finish rather than kill it mid-write.
        TimeoutStopSec = "30s";
      };
    };

    networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall (
      [ (util.portOf cfg.listen) ] ++ lib.optional (cfg.httpListen != null) (util.portOf cfg.httpListen)
    );
  };
}
