# NixOS module for `pcr-cache serve`: the Nix HTTP binary cache workers pull closures from and CI
# pushes them to (narinfo + NAR, ed25519-signed).
#
# pcr-cache refuses every upload without an upload token. Unless `uploadTokenFile` names one, the
# unit generates it on first start: /var/lib/procurator-cache/upload.token (mode 0600). On the
# same host, `services.procurator.ci.cacheTokenFile` defaults to the token file; elsewhere, copy
# it there as a secret and point that option at the copy.
{ config, lib, ... }:
let
  cfg = config.services.procurator.cache;
  util = import ./lib.nix { inherit lib; };
  stateDir = util.cacheStateDir;
  generatedToken = "${stateDir}/upload.token";
  # Nix key names are conventionally the cache's host name and a number.
  keyName = "${config.networking.hostName or "procurator-cache"}-1";
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
        signs narinfos with. Null: the unit creates one on first start,
        `${stateDir}/signing-key`, with its public half in `signing-key.pub`: what workers trust.
      '';
    };
    uploadTokenFile = lib.mkOption {
      type = lib.types.nullOr lib.types.path;
      default = null;
      example = "/run/keys/procurator-cache-upload.token";
      description = ''
        File holding the bearer tokens that authorize uploads (PUT), one per line. Null: the unit
        generates a token on first start in `${generatedToken}` (mode 0600), which pcr-ci on
        this host loads by default.
      '';
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
      # pcr-cache does not generate tokens itself. Runs as the service's user, in its state
      # directory; written under another name and renamed so no reader sees half a token.
      preStart = lib.optionalString (cfg.uploadTokenFile == null) ''
        if [ ! -s ${generatedToken} ]; then
          (umask 077 && od -An -vtx1 -N32 /dev/urandom | tr -d ' \n' > ${generatedToken}.tmp && echo >> ${generatedToken}.tmp)
          mv ${generatedToken}.tmp ${generatedToken}
        fi
      '' + lib.optionalString (cfg.signingKeyFile == null) ''
        # pcr-cache only reads its signing key: make one on first start (the secret is created
        # 0600), and keep the public half beside it for the workers' trusted-public-keys.
        if [ ! -s ${stateDir}/signing-key ]; then
          rm -rf ${stateDir}/keygen.tmp
          ${cfg.package}/bin/pcr-cache keygen ${keyName} --out ${stateDir}/keygen.tmp
          mv ${stateDir}/keygen.tmp/${keyName}.public ${stateDir}/signing-key.pub
          mv ${stateDir}/keygen.tmp/${keyName}.secret ${stateDir}/signing-key
          rmdir ${stateDir}/keygen.tmp
        fi
      '';
      serviceConfig = import ./hardening.nix // {
        ExecStart = lib.escapeShellArgs ([
          "${cfg.package}/bin/pcr-cache"
          "serve"
          "--listen" cfg.listen
          "--storage" "${stateDir}/store"
          "--priority" (toString cfg.priority)
          "--signing-key" (if cfg.signingKeyFile != null then "%d/signing-key" else "${stateDir}/signing-key")
          "--upload-token-file" (if cfg.uploadTokenFile != null then "%d/upload-token" else generatedToken)
        ] ++ cfg.extraArgs);
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
