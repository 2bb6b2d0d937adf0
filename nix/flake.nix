{
  description = "Procurator: declare a cluster of microVMs and processes in Nix; NixOS modules for its services";

  # No inputs: the library works without nixpkgs. Pass your nixpkgs to `lib.evalCluster` to build
  # VMs from NixOS configurations.
  outputs = { self }: {
    # evalCluster, mkProcessService, mkToplevel, … (see README.md)
    lib = import ./lib;

    nixosModules = {
      default = import ./modules;
      control-plane = import ./modules/control-plane.nix;
      worker = import ./modules/worker.nix;
      cache = import ./modules/cache.nix;
      ci-service = import ./modules/ci-service.nix;
      repohub = import ./modules/repohub.nix;
    };
  };
}
