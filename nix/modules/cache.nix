# NixOS module for `pcr-cache serve`: the Nix HTTP binary cache workers pull closures from and CI
# pushes them to (narinfo + NAR, ed25519-signed).
{ config, lib, ... }:
let
  cfg = config.services.procurator.cache;
  util = import ./lib.nix { inherit lib; };
  stateDir = "/var/lib/procurator-cache";
in
{
  options.services.procurator.cache = util.commonOptions { name = "binary cache"; binary = "pcr-cache"; } // {
    listen = lib.mkOption {
      type = lib.types.str;
      default = "0.0.0.0:5000";
      description = "Address of the HTTP cache (`nix copy --from http://HOST:PORT`).";
    };
    signingKeyFile = lib.mkOption {
      type = lib.types.nullOr lib.types.path;
      default = null;
      example = "/run/keys/procurator-cache.sec";
      description = ''
        Secret key (`name:base64(seed‖pubkey)`, as `nix key generate-secret` writes it) the cache
        signs narinfos with. Null: the cache creates one in its state directory on first start;
        its public half is what workers trust.
      '';
    };
    uploadTokenFile = lib.mkOption {
      type = lib.types.nullOr lib.types.path;
      default = null;
      description = "File holding the bearer token that authorizes uploads (PUT); null: uploads only from localhost.";
    };
    priority = lib.mkOption {
      type = lib.types.ints.unsigned;
      default = 30;
      description = "`Priority` advertised in /nix-cache-info (lower is preferred by nix).";
    };
  };

  config = lib.mkIf cfg.enable {
    systemd.services.procurator-cache = {
      description = "Procurator binary cache";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      environment.RUST_LOG = cfg.logLevel;
      serviceConfig = import ./hardening.nix // {
        ExecStart = lib.escapeShellArgs ([
          "${cfg.package}/bin/pcr-cache"
          "serve"
          "--listen" cfg.listen
          "--storage" "${stateDir}/store"
          "--priority" (toString cfg.priority)
          "--signing-key" (if cfg.signingKeyFile != null then "%d/signing-key" else "${stateDir}/signing-key")
        ] ++ lib.optionals (cfg.uploadTokenFile != null) [ "--upload-token-file" "%d/upload-token" ]
          ++ cfg.extraArgs);
        # Secrets are handed over as credentials, readable by the dynamic user only.
        LoadCredential =
          lib.optional (cfg.signingKeyFile != null) "signing-key:${cfg.signingKeyFile}"
          ++ lib.optional (cfg.uploadTokenFile != null) "upload-token:${cfg.uploadTokenFile}";
        DynamicUser = true;
        StateDirectory = "procurator-cache";
        StateDirectoryMode = "0700";
        Restart = "on-failure";
        RestartSec = "1s";
      };
    };

    networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall [ (util.portOf cfg.listen) ];
  };
}
