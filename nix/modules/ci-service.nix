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
  cacheHere = (config.services.procurator.cache or { }).enable or false;
  # The file the cache on this host reads its upload tokens from (its unit generates it unless
  # `uploadTokenFile` names another).
  cacheTokenHere =
    let file = config.services.procurator.cache.uploadTokenFile or null; in
    if file != null then file else "${util.cacheStateDir}/upload.token";
  cacheTokenInExtraArgs = builtins.any (a: builtins.match "--cache-token(-file)?(=.*)?" a != null) cfg.extraArgs;
  # Not both a flag of ours and one of `extraArgs`: pcr-ci refuses a repeated flag.
  passTokenFile = cfg.controlPlaneTokenFile != null && !tokenInExtraArgs;
  passCacheTokenFile = cfg.cacheTokenFile != null && !cacheTokenInExtraArgs;
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
        stay readable by root only. Not passed when `extraArgs` carries `--token`/`--token-file`.
      '';
    };
    cacheTokenFile = lib.mkOption {
      type = lib.types.nullOr lib.types.path;
      default = if cacheHere then cacheTokenHere else null;
      defaultText = lib.literalExpression ''
        if config.services.procurator.cache.enable
        then (if config.services.procurator.cache.uploadTokenFile != null
          then config.services.procurator.cache.uploadTokenFile
          else "${util.cacheStateDir}/upload.token")
        else null'';
      example = "/run/keys/procurator-cache-upload.token";
      description = ''
        File holding the upload token of the cache at `cacheUrl`, without which pcr-ci does not
        start: it pushes closures with it. On the cache's host this defaults to the file the
        cache reads its tokens from (generated in `${util.cacheStateDir}/upload.token` unless
        `services.procurator.cache.uploadTokenFile` is set); when that file lists several
        tokens, point this option at a file holding only pcr-ci's. Read by systemd as root and
        handed to the service as a credential. Not passed when `extraArgs` carries
        `--cache-token`/`--cache-token-file`.
      '';
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
    assertions = [
      {
        assertion = cfg.controlPlaneTokenFile != null || tokenInExtraArgs;
        message = "services.procurator.ci: pcr-ci does not start without the operator token of the control plane at ${cfg.master}, which it publishes generations to; set controlPlaneTokenFile to a copy of ${operatorTokenHere} from the control plane's host";
      }
      {
        # pcr-ci is always given `--cache-url`, and refuses to start with it but no token.
        assertion = cfg.cacheTokenFile != null || cacheTokenInExtraArgs;
        message = "services.procurator.ci: pcr-ci does not start without the upload token of the cache at ${cfg.cacheUrl}, which it pushes closures to; set cacheTokenFile to a copy of ${util.cacheStateDir}/upload.token (or of the file services.procurator.cache.uploadTokenFile names) from the cache's host";
      }
    ];

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
      # On the control plane's and the cache's host, start after them: they create the token
      # files we load.
      wants = [ "network-online.target" ]
        ++ lib.optional controlPlaneHere "procurator-control-plane.service"
        ++ lib.optional cacheHere "procurator-cache.service";
      after = [ "network-online.target" "nix-daemon.socket" ]
        ++ lib.optional controlPlaneHere "procurator-control-plane.service"
        ++ lib.optional cacheHere "procurator-cache.service";
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
        ] ++ lib.optionals passTokenFile [ "--token-file" "%d/control-plane-token" ]
          ++ lib.optionals passCacheTokenFile [ "--cache-token-file" "%d/cache-token" ]
          ++ lib.optionals (cfg.webhookSecretFile != null) [ "--webhook-secret-file" "%d/webhook-secret" ]
          ++ cfg.extraArgs);
        LoadCredential =
          lib.optional passTokenFile "control-plane-token:${cfg.controlPlaneTokenFile}"
          ++ lib.optional passCacheTokenFile "cache-token:${cfg.cacheTokenFile}"
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
