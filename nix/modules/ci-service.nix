# NixOS module for `pcr-ci`: turns a git push of a cluster flake into a generation — checks,
# evaluates and builds the flake, pushes the closures to the cache and publishes the blueprint to
# the control plane. Serves bare repositories (with a post-receive hook), a webhook endpoint and
# polls remotes.
#
# It runs as a dedicated user (not DynamicUser): its bare repositories and build roots must keep
# their owner across restarts, and it talks to the nix daemon as that user.
{ config, lib, pkgs, ... }:
let
  cfg = config.services.procurator.ci;
  util = import ./lib.nix { inherit lib; };
  stateDir = "/var/lib/procurator-ci";
  # `or`: this module may be imported without the control plane's.
  controlPlaneHere = (config.services.procurator.control-plane or { }).enable or false;
  operatorTokenHere = "${util.controlPlaneStateDir}/operator.token";
  # Token given some other way, e.g. `extraArgs = [ "--token-file" … ]`.
  tokenInExtraArgs = builtins.any (a: builtins.match "--token(-file)?(=.*)?" a != null) cfg.extraArgs;
in
{
  options.services.procurator.ci = util.commonOptions { name = "CI service"; binary = "pcr-ci"; } // {
    listen = lib.mkOption {
      type = lib.types.str;
      default = "0.0.0.0:3002";
      description = "Address of the webhook endpoint (Gitea/GitHub push payloads) and the pipeline API.";
    };
    master = lib.mkOption {
      type = lib.types.str;
      default = "127.0.0.1:7000";
      description = "Control plane generations are published to.";
    };
    cacheUrl = lib.mkOption {
      type = lib.types.str;
      default = "http://127.0.0.1:5000";
      description = "Binary cache closures are pushed to.";
    };
    controlPlaneTokenFile = lib.mkOption {
      type = lib.types.nullOr lib.types.path;
      default = if controlPlaneHere then operatorTokenHere else null;
      defaultText = lib.literalExpression ''
        if config.services.procurator.control-plane.enable
        then "${operatorTokenHere}" else null'';
      example = "/run/keys/procurator-operator.token";
      description = ''
        File holding the control plane's operator token, without which pcr-ci does not start:
        it publishes generations with it (the control plane writes it to `${operatorTokenHere}` on first start).
        Read by systemd as root and handed to the service as a credential, so the file may
        stay readable by root only.
      '';
    };
    cacheTokenFile = lib.mkOption {
      type = lib.types.nullOr lib.types.path;
      default = null;
      description = "File holding the cache's upload token.";
    };
    webhookSecretFile = lib.mkOption {
      type = lib.types.nullOr lib.types.path;
      default = null;
      description = "File holding the shared secret webhook signatures are verified with; webhooks are refused without it.";
    };
    user = lib.mkOption {
      type = lib.types.str;
      default = "procurator-ci";
      description = "User the CI service runs as and that owns the repositories.";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [{
      assertion = cfg.controlPlaneTokenFile != null || tokenInExtraArgs;
      message = "services.procurator.ci: pcr-ci does not start without the operator token of the control plane at ${cfg.master}, which it publishes generations to; set controlPlaneTokenFile to a copy of ${operatorTokenHere} from the control plane's host";
    }];

    users.users.${cfg.user} = {
      isSystemUser = true;
      group = cfg.user;
      home = stateDir;
      description = "Procurator CI service";
    };
    users.groups.${cfg.user} = { };
    # Flakes, and `nix copy --to` the cluster's cache.
    nix.settings.experimental-features = [ "nix-command" "flakes" ];

    systemd.services.procurator-ci = {
      description = "Procurator CI service";
      wantedBy = [ "multi-user.target" ];
      # On the control plane's host, start after it: it creates the token file we load.
      wants = [ "network-online.target" ] ++ lib.optional controlPlaneHere "procurator-control-plane.service";
      after = [ "network-online.target" "nix-daemon.socket" ]
        ++ lib.optional controlPlaneHere "procurator-control-plane.service";
      path = [ config.nix.package pkgs.git ];
      environment = {
        RUST_LOG = cfg.logLevel;
        PROCURATOR_HOME = stateDir;
        HOME = stateDir;
      };
      serviceConfig = import ./hardening.nix // {
        ExecStart = lib.escapeShellArgs ([
          "${cfg.package}/bin/pcr-ci"
          "--listen" cfg.listen
          "--state-dir" stateDir
          "--master" cfg.master
          "--cache-url" cfg.cacheUrl
        ] ++ lib.optionals (cfg.controlPlaneTokenFile != null) [ "--token-file" "%d/control-plane-token" ]
          ++ lib.optionals (cfg.cacheTokenFile != null) [ "--cache-token-file" "%d/cache-token" ]
          ++ lib.optionals (cfg.webhookSecretFile != null) [ "--webhook-secret-file" "%d/webhook-secret" ]
          ++ cfg.extraArgs);
        LoadCredential =
          lib.optional (cfg.controlPlaneTokenFile != null) "control-plane-token:${cfg.controlPlaneTokenFile}"
          ++ lib.optional (cfg.cacheTokenFile != null) "cache-token:${cfg.cacheTokenFile}"
          ++ lib.optional (cfg.webhookSecretFile != null) "webhook-secret:${cfg.webhookSecretFile}";
        User = cfg.user;
        Group = cfg.user;
        StateDirectory = "procurator-ci";
        StateDirectoryMode = "0750";
        Restart = "on-failure";
        RestartSec = "1s";
        # Builders spawned through the daemon are not ours, but evaluation is: nix needs
        # executable memory for its garbage collector and `git` forks.
        MemoryDenyWriteExecute = false;
        SystemCallFilter = [ "@system-service" ];
      };
    };

    networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall [ (util.portOf cfg.listen) ];
  };
}
