# NixOS module for `pcr-repohub`: the web UI and JSON API (port 3001) over users, projects,
# repositories, pipelines and deployments.
{ config, lib, ... }:
let
  cfg = config.services.procurator.repohub;
  util = import ./lib.nix { inherit lib; };
  stateDir = "/var/lib/procurator-repohub";
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
    ciUrl = lib.mkOption {
      type = lib.types.str;
      default = "http://127.0.0.1:3002";
      description = "CI service whose pipelines the UI shows.";
    };
  };

  config = lib.mkIf cfg.enable {
    systemd.services.procurator-repohub = {
      description = "Procurator web UI";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
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
          "--ci-url" cfg.ciUrl
        ] ++ cfg.extraArgs);
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
