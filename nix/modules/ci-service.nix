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
      wants = [ "network-online.target" ];
      after = [ "network-online.target" "nix-daemon.socket" ];
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
        ] ++ lib.optionals (cfg.cacheTokenFile != null) [ "--cache-token-file" "%d/cache-token" ]
          ++ lib.optionals (cfg.webhookSecretFile != null) [ "--webhook-secret-file" "%d/webhook-secret" ]
          ++ cfg.extraArgs);
        LoadCredential =
          lib.optional (cfg.cacheTokenFile != null) "cache-token:${cfg.cacheTokenFile}"
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
