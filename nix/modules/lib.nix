# Small helpers shared by the service modules.
{ lib }:
{
  # The control plane keeps its database here, and beside it the tokens it generates on first
  # start (mode 0600): `operator.token` for pcr-ci, repohub and the CLI, `worker.token` for
  # workers. Other modules default to these files when the control plane runs on the same host.
  controlPlaneStateDir = "/var/lib/procurator-control-plane";

  # The cache keeps its store here and, unless `uploadTokenFile` names another file, the upload
  # token its unit generates on first start (`upload.token`, mode 0600), which pcr-ci on the
  # same host defaults to.
  cacheStateDir = "/var/lib/procurator-cache";

  # "0.0.0.0:7000" / "[::]:7000" → 7000
  portOf = address: lib.toInt (lib.last (lib.splitString ":" address));

  # Options every Procurator service has.
  commonOptions = { name, binary }: {
    enable = lib.mkEnableOption "the Procurator ${name}";
    package = lib.mkOption {
      type = lib.types.package;
      description = "Package providing `bin/${binary}`.";
    };
    openFirewall = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = "Open the ${name}'s listening port in the firewall.";
    };
    logLevel = lib.mkOption {
      type = lib.types.str;
      default = "info";
      example = "info,worker=debug";
      description = "`RUST_LOG` filter of the ${name}.";
    };
    extraArgs = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      description = "Further command-line arguments of `${binary}`.";
    };
  };
}
