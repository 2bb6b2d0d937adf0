# The options of a Procurator cluster: `cluster.name`, `cluster.strategy` and `cluster.vms.<name>`.
#
# Written only against the part of `lib` that both nixpkgs and ./modules.nix provide, so the same
# module is evaluated by `nixpkgs.lib.evalModules` when nixpkgs is available and by the built-in
# evaluator when it is not. ./blueprint.nix turns the resulting `config.cluster` into the
# blueprint document (schema/src/model.rs is its reader); the defaults here are the reader's.
{ lib, ... }:
let
  inherit (lib) mkOption types;

  # Bounds match schema::model's validation, so a cluster that evaluates is one the control
  # plane accepts.
  ms = description: default: mkOption { type = types.ints.unsigned; inherit default description; };

  portModule = { config, ... }: {
    options = {
      guest = mkOption {
        type = types.ints.between 1 65535;
        description = "Port the workload listens on (inside the VM, or on the host for a process).";
      };
      host = mkOption {
        type = types.ints.between 1 65535;
        default = config.guest;
        description = "Host port forwarded to `guest` (VM backends). Defaults to the guest port.";
      };
    };
  };

  healthCheckModule = { ... }: {
    options = {
      type = mkOption {
        type = types.enum [ "http" "tcp" "command" ];
        default = "http";
        description = "`http`: GET `path` on `port` and expect `expectStatus` (any 2xx when 0); `tcp`: connect to `port`; `command`: run `argv` on the worker and expect exit status 0.";
      };
      port = mkOption {
        type = types.nullOr (types.ints.between 1 65535);
        default = null;
        description = "Port probed by `http` and `tcp` checks: the guest port (the worker probes the host port it is forwarded to).";
      };
      path = mkOption {
        type = types.strMatching "/.*";
        default = "/";
        description = "HTTP path of an `http` check.";
      };
      expectStatus = mkOption {
        type = types.ints.between 0 599;
        default = 0;
        description = "HTTP status an `http` check expects; 0 accepts any 2xx.";
      };
      argv = mkOption {
        type = types.listOf types.str;
        default = [ ];
        description = "Command of a `command` check.";
      };
      intervalMs = mkOption {
        type = types.ints.between 50 86400000;
        default = 1000;
        description = "Time between two probes, in milliseconds (at least 50).";
      };
      timeoutMs = mkOption {
        type = types.ints.positive;
        default = 1000;
        description = "Time one probe may take, in milliseconds.";
      };
      retries = mkOption {
        type = types.ints.unsigned;
        default = 3;
        description = "Consecutive failed probes before the instance counts as unhealthy.";
      };
      gracePeriodMs = ms "Time after start during which failed probes do not count, in milliseconds." 0;
    };
  };

  vmModule = { name, config, ... }: {
    options = {
      role = mkOption {
        type = types.str;
        default = name;
        description = "Free-form role shown in status; defaults to the VM's name.";
      };
      replicas = mkOption {
        type = types.ints.between 0 1000;
        default = 1;
        description = "Number of instances, named `<vm>-0`, `<vm>-1`, …";
      };
      cpu = mkOption {
        type = types.ints.between 1 1024;
        default = 1;
        description = "vCPUs per instance (for processes: the CPU share the scheduler reserves).";
      };
      memory = mkOption {
        type = types.ints.between 16 16777216;
        default = 256;
        description = "Memory per instance in MiB (at least 16).";
      };
      labels = mkOption {
        type = types.attrsOf types.str;
        default = { };
        description = "Labels of the workload, shown in status.";
      };
      constraints = mkOption {
        type = types.attrsOf types.str;
        default = { };
        description = "Worker labels an instance requires: it is only placed on workers whose labels include all of these.";
      };
      package = mkOption {
        type = types.nullOr types.package;
        default = null;
        description = ''
          The closure of the workload. For the `process` backend, a package holding the executable
          named by `exec`. For VM backends, a system toplevel (`kernel`, `initrd`, `kernel-params`,
          `init`), e.g. from `procurator.lib.mkToplevel` or a NixOS `config.system.build.toplevel`.
        '';
      };
      nixos = mkOption {
        type = types.nullOr types.deferredModule;
        default = null;
        description = "NixOS configuration of a VM (qemu or cloud-hypervisor backend); needs evalCluster to be given nixpkgs. Its toplevel becomes the closure.";
      };
      exec = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "Executable of a process workload, relative to `package`; defaults to `bin/<package.meta.mainProgram>` or `bin/<vm name>`.";
      };
      args = mkOption {
        type = types.listOf types.str;
        default = [ ];
        description = "Arguments passed to `exec`.";
      };
      env = mkOption {
        type = types.attrsOf types.str;
        default = { };
        description = "Environment of a process workload.";
      };
      ports = mkOption {
        type = types.attrsOf (types.submodule portModule);
        default = { };
        example = { http = { guest = 8080; host = 8080; }; };
        description = "Named ports. VM backends forward `host` to `guest`; a process listens on its port directly.";
      };
      deployment = {
        backend = mkOption {
          type = types.enum [ "process" "qemu" "cloud-hypervisor" ];
          default = "process";
          description = "How an instance runs: a supervised process, a QEMU microVM or a cloud-hypervisor VM.";
        };
        healthChecks = mkOption {
          type = types.listOf (types.submodule healthCheckModule);
          default = [ ];
          description = "Checks that decide whether an instance is healthy.";
        };
        stopAfterDisconnectMs = ms "0: instances keep running while their worker cannot reach the control plane. Otherwise the worker stops them after this long without an answer, so a copy rescheduled elsewhere never runs beside them when the value is at most the control plane's lease (for workloads that must not run twice). At least two heartbeats." 0;
        autoRollback = mkOption {
          type = types.bool;
          default = true;
          description = "Return to the previous closure when a rollout does not become healthy in time.";
        };
        rollout = {
          strategy = mkOption {
            type = types.enum [ "rolling" "canary" ];
            default = "rolling";
            description = "`rolling` replaces instances `maxParallel` at a time; `canary` first replaces `canaryCount` of them.";
          };
          maxParallel = mkOption { type = types.ints.positive; default = 1; description = "Instances replaced at the same time."; };
          maxUnavailable = mkOption { type = types.ints.unsigned; default = 1; description = "Instances that may be down at the same time during a rollout."; };
          minHealthyTimeMs = ms "How long a new instance must stay healthy before the next one is replaced." 2000;
          healthyDeadlineMs = ms "How long a new instance may take to become healthy." 60000;
          progressDeadlineMs = ms "How long the whole rollout may take." 300000;
          canaryCount = mkOption { type = types.ints.unsigned; default = 0; description = "Instances replaced first by a canary rollout."; };
          autoPromote = mkOption { type = types.bool; default = true; description = "Continue a canary rollout once the canaries are healthy."; };
        };
        restart = {
          mode = mkOption {
            type = types.enum [ "always" "on-failure" "never" ];
            default = "always";
            description = "When an exited or unhealthy instance is started again.";
          };
          initialBackoffMs = ms "Delay before the first restart." 500;
          maxBackoffMs = ms "Largest delay between restarts (the delay doubles each time)." 30000;
          crashLoopThreshold = mkOption { type = types.ints.unsigned; default = 5; description = "Restarts within `crashLoopWindowMs` after which the instance is reported as crash-looping."; };
          crashLoopWindowMs = ms "Window of `crashLoopThreshold`." 60000;
        };
      };
    };
  };
in
{
  options.cluster = {
    name = mkOption {
      type = types.str;
      default = "default";
      description = "Name of the cluster, shown in status.";
    };
    strategy = mkOption {
      type = types.enum [ "spread" "pack" ];
      default = "spread";
      description = "`spread` puts each instance on the worker with the most room left; `pack` on the fullest worker it fits on.";
    };
    vms = mkOption {
      type = types.attrsOf (types.submodule vmModule);
      default = { };
      description = "The workloads of the cluster, by name (a-z, 0-9 and `-`).";
    };
  };
}
