# NixOS module for `pcr-worker`: reconciles the VMs assigned to this machine — fetches their
# closures from the cache with `nix copy`, boots them (QEMU microvm, cloud-hypervisor, or a
# supervised process), checks their health and reports to the control plane.
#
# The worker is the one service that needs the machine: it writes /nix/store (through the nix
# daemon), opens /dev/kvm, /dev/net/tun and /dev/vhost-*, starts virtiofsd (which needs
# CAP_SYS_ADMIN for its namespace sandbox) and creates cgroups for process workloads. It runs
# as root with the sandboxing that leaves those working.
{ config, lib, pkgs, ... }:
let
  cfg = config.services.procurator.worker;
  util = import ./lib.nix { inherit lib; };
  stateDir = "/var/lib/procurator-worker";
  labelArgs = lib.concatMap (k: [ "--label" "${k}=${cfg.labels.${k}}" ]) (lib.attrNames cfg.labels);
  # `or`: this module may be imported without the control plane's.
  controlPlaneHere = (config.services.procurator.control-plane or { }).enable or false;
  workerTokenHere = "${util.controlPlaneStateDir}/worker.token";
  # Token given some other way, e.g. `extraArgs = [ "--token-file" … ]`.
  tokenInExtraArgs = builtins.any (a: builtins.match "--token(-file)?(=.*)?" a != null) cfg.extraArgs;
  # Not both: pcr-worker refuses `--token` beside `--token-file`, and a repeated flag.
  passTokenFile = cfg.controlPlaneTokenFile != null && !tokenInExtraArgs;
in
{
  # The worker listens on nothing; the host ports of VMs are declared per VM in the cluster.
  options.services.procurator.worker = removeAttrs (util.commonOptions { name = "worker"; binary = "pcr-worker"; }) [ "openFirewall" ] // {
    master = lib.mkOption {
      type = lib.types.str;
      example = "10.0.0.1:7000";
      description = "Address of the control plane's RPC endpoint.";
    };
    controlPlaneTokenFile = lib.mkOption {
      type = lib.types.nullOr lib.types.path;
      default = if controlPlaneHere then workerTokenHere else null;
      defaultText = lib.literalExpression ''
        if config.services.procurator.control-plane.enable
        then "${workerTokenHere}" else null'';
      example = "/run/keys/procurator-worker.token";
      description = ''
        File holding the control plane's worker token, without which pcr-worker does not start:
        the control plane admits workers with it (it writes it to `${workerTokenHere}` on first start).
        Read by systemd as root and handed to the service as a credential, so the file may
        stay readable by root only. Not passed when `extraArgs` carries `--token`/`--token-file`.
      '';
    };
    id = lib.mkOption {
      type = lib.types.str;
      default = config.networking.hostName;
      defaultText = lib.literalExpression "config.networking.hostName";
      description = "Worker id, unique in the cluster.";
    };
    labels = lib.mkOption {
      type = lib.types.attrsOf lib.types.str;
      default = { };
      example = { zone = "a"; disk = "ssd"; };
      description = "Labels VM `constraints` are matched against.";
    };
    cpu = lib.mkOption {
      type = lib.types.nullOr lib.types.ints.positive;
      default = null;
      description = "vCPUs offered to the cluster; null: all of the machine's.";
    };
    memoryMb = lib.mkOption {
      type = lib.types.nullOr lib.types.ints.positive;
      default = null;
      description = "Memory offered to the cluster in MiB; null: the machine's total.";
    };
    cacheUrl = lib.mkOption {
      type = lib.types.str;
      example = "http://10.0.0.1:5000";
      description = "Binary cache closures are copied from.";
    };
    cachePublicKey = lib.mkOption {
      type = lib.types.str;
      example = "procurator-cache-1:AbCd…=";
      description = "Public key (`name:base64`) the cache signs with; closures signed otherwise are refused.";
    };
    qemuPackage = lib.mkOption {
      type = lib.types.nullOr lib.types.package;
      default = pkgs.qemu_kvm;
      defaultText = lib.literalExpression "pkgs.qemu_kvm";
      description = "QEMU for the `qemu` backend (and its virtiofsd); null disables the backend.";
    };
    virtiofsdPackage = lib.mkOption {
      type = lib.types.package;
      default = pkgs.virtiofsd;
      defaultText = lib.literalExpression "pkgs.virtiofsd";
      description = "virtiofsd sharing /nix/store into guests.";
    };
    cloudHypervisorPackage = lib.mkOption {
      type = lib.types.nullOr lib.types.package;
      default = pkgs.cloud-hypervisor;
      defaultText = lib.literalExpression "pkgs.cloud-hypervisor";
      description = "cloud-hypervisor for the `cloud-hypervisor` backend; null disables the backend.";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [{
      assertion = cfg.controlPlaneTokenFile != null || tokenInExtraArgs;
      message = "services.procurator.worker: pcr-worker does not start without the worker token of the control plane at ${cfg.master}, which admits workers with it; set controlPlaneTokenFile to a copy of ${workerTokenHere} from the control plane's host";
    }];

    # Guests reach the host's store only through virtiofs; the worker needs KVM and vhost.
    boot.kernelModules = [ "kvm-intel" "kvm-amd" "vhost_net" "vhost_vsock" ];

    # Closures arrive signed by the cluster's cache; a path asked for before CI pushed it must
    # not stay "missing" for an hour.
    nix.settings = {
      trusted-public-keys = [ cfg.cachePublicKey ];
      narinfo-cache-negative-ttl = 0;
    };

    systemd.services.procurator-worker = {
      description = "Procurator worker";
      wantedBy = [ "multi-user.target" ];
      # On the control plane's host, start after it: it creates the token file we load.
      wants = [ "network-online.target" ] ++ lib.optional controlPlaneHere "procurator-control-plane.service";
      after = [ "network-online.target" "nix-daemon.socket" ]
        ++ lib.optional controlPlaneHere "procurator-control-plane.service";
      path = [ config.nix.package cfg.virtiofsdPackage ]
        ++ lib.optional (cfg.qemuPackage != null) cfg.qemuPackage
        ++ lib.optional (cfg.cloudHypervisorPackage != null) cfg.cloudHypervisorPackage;
      environment = {
        RUST_LOG = cfg.logLevel;
        PROCURATOR_HOME = stateDir;
      };
      serviceConfig = {
        ExecStart = lib.escapeShellArgs ([
          "${cfg.package}/bin/pcr-worker"
          "--master" cfg.master
          "--id" cfg.id
          "--state-dir" stateDir
          "--cache-url" cfg.cacheUrl
          "--cache-public-key" cfg.cachePublicKey
        ] ++ lib.optionals passTokenFile [ "--token-file" "%d/worker-token" ]
          ++ labelArgs
          ++ lib.optionals (cfg.cpu != null) [ "--cpu" (toString cfg.cpu) ]
          ++ lib.optionals (cfg.memoryMb != null) [ "--memory-mb" (toString cfg.memoryMb) ]
          ++ cfg.extraArgs);
        LoadCredential =
          lib.optional passTokenFile "worker-token:${cfg.controlPlaneTokenFile}";
        StateDirectory = "procurator-worker";
        StateDirectoryMode = "0700";
        Restart = "always";
        RestartSec = "1s";
        # VMs and processes outlive a worker restart: the next worker re-adopts them from the
        # pid and socket files in its state directory instead of starting duplicates.
        KillMode = "process";
        # Process workloads get cgroups of their own below the worker's.
        Delegate = true;

        NoNewPrivileges = true;
        ProtectSystem = "full";
        ProtectHome = true;
        PrivateTmp = true;
        ProtectKernelTunables = true;
        ProtectKernelLogs = true;
        ProtectClock = true;
        RestrictRealtime = true;
        LockPersonality = true;
        SystemCallArchitectures = "native";
        RestrictAddressFamilies = [ "AF_INET" "AF_INET6" "AF_UNIX" "AF_NETLINK" "AF_VSOCK" ];
        DevicePolicy = "closed";
        DeviceAllow = [ "/dev/kvm rw" "/dev/net/tun rw" "/dev/vhost-net rw" "/dev/vhost-vsock rw" ];
        CapabilityBoundingSet = [
          "CAP_SYS_ADMIN" # virtiofsd's namespace sandbox, cgroup delegation
          "CAP_NET_ADMIN" # tap devices for guest networking
          "CAP_CHOWN" "CAP_DAC_OVERRIDE" "CAP_FOWNER" "CAP_SETUID" "CAP_SETGID" # virtiofsd serves files as their owners
          "CAP_KILL" # stopping re-adopted VMs
          "CAP_SYS_RESOURCE" # memlock for guest memory
        ];
        LimitMEMLOCK = "infinity";
        LimitNOFILE = 1048576;
      };
    };
  };
}
