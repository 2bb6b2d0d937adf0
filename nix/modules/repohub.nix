# NixOS module for `pcr-repohub`: the web UI and JSON API (port 3001) over users, projects,
# repositories, pipelines and deployments.
{ config, lib, ... }:
let
  cfg = config.services.procurator.repohub;
  util = import ./lib.nix { inherit lib; };
  stateDir = "/var/lib/procurator-repohub";
  # `or`: this module may be imported without the control plane's.
  controlPlaneHere = (config.services.procurator.control-plane or { }).enable or false;
  operatorTokenHere = "${util.controlPlaneStateDir}/operator.token";
in
{
  options.services.procurator.repohub = util.commonOptions { name = "web UI"; binary = "pcr-repohub"; } // {
    listen = lib.mkOption {
      type = lib.types.str;
      default = "0.0.0.0:3001";
      description = "Address of the web UI and its JSON API.";
    };
    master = lib.mkOption {
      type = lib.types.str;
      default = "127.0.0.1:7000";
      description = "Control plane the UI shows and controls.";
    };
    controlPlaneTokenFile = lib.mkOption {
      type = lib.types.nullOr lib.types.path;
      default = if controlPlaneHere then operatorTokenHere else null;
      defaultText = lib.literalExpression ''
        if config.services.procurator.control-plane.enable
        then "${operatorTokenHere}" else null'';
      example = "/run/keys/procurator-operator.token";
      description = ''
        File holding the control plane's operator token, which the UI needs to show and
        control deployments (the control plane writes it to `${operatorTokenHere}` on first
        start). Read by systemd as root and handed to the service as a credential.
      '';
    };
    ciUrl = lib.mkOption {
      type = lib.types.str;
      default = "http://127.0.0.1:3002";
      description = "CI service whose pipelines the UI shows.";
    };
  };

  config = lib.mkIf cfg.enable {
    # Not an assertion: without the token the UI still serves users, projects and
    # pipelines; only its deployments pages fail.
    warnings = lib.optional (cfg.controlPlaneTokenFile == null)
      "services.procurator.repohub: without controlPlaneTokenFile the deployments pages cannot reach the control plane at ${cfg.master}; set it to a copy of ${operatorTokenHere} from the control plane's host";

    systemd.services.procurator-repohub = {
      description = "Procurator web UI";
      wantedBy = [ "multi-user.target" ];
      # On the control plane's host, start after it: it creates the token file we load.
      wants = [ "network-online.target" ] ++ lib.optional controlPlaneHere "procurator-control-plane.service";
      after = [ "network-online.target" ] ++ lib.optional controlPlaneHere "procurator-control-plane.service";
      environment = {
        RUST_LOG = cfg.logLevel;
        PROCURATOR_HOME = stateDir;
      };
      serviceConfig = import ./hardening.nix // {
        ExecStart = lib.escapeShellArgs ([
          "${cfg.package}/bin/pcr-repohub"
          "--listen" cfg.listen
          "--db" "${stateDir}/repohub.db"
          "--master" cfg.master
          "--ci" cfg.ciUrl
        ] ++ lib.optionals (cfg.controlPlaneTokenFile != null) [ "--operator-token-file" "%d/control-plane-token" ]
          ++ cfg.extraArgs);
        LoadCredential =
          lib.optional (cfg.controlPlaneTokenFile != null) "control-plane-token:${cfg.controlPlaneTokenFile}";
        DynamicUser = true;
        StateDirectory = "procurator-repohub";
        StateDirectoryMode = "0700";
        Restart = "on-failure";
        RestartSec = "1s";
      };
    };

    networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall [ (util.portOf cfg.listen) ];
  };
}
