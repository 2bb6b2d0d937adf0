{
  description = "Procurator reference cluster: two busybox HTTP services and a QEMU microVM, built without nixpkgs";

  # The microVM boots the host's Debian cloud kernel, copied here by scripts/example-kernel (it is
  # taken from the machine, not committed). The repository commits no flake.lock for it: nix locks
  # it by the content it finds where the flake is evaluated, so any kernel package the host has
  # works. If you commit a lock, relock on a host with another kernel
  # (`nix flake lock --update-input kernel`). Inputs are fetched lazily: only the `vm` closure
  # reads this one, so the process workloads evaluate and build without it.
  inputs.kernel = {
    url = "path:/var/lib/procurator/example-kernel";
    flake = false;
  };

  outputs = { self, kernel }:
    let
      # `nix` is a symlink to the repository's nix/ folder. To use this cluster on its own (a
      # repository of its own, as `pcr up` pushes it), copy the folder with `cp -rL`.
      procurator = import ./nix/lib;
      cluster = procurator.evalCluster {
        modules = [ ./cluster.nix ];
        specialArgs = { inherit kernel; };
      };
    in
    # blueprintJSON, closures.<vm>, packages.x86_64-linux.<vm>, checks.x86_64-linux.closures
    cluster.outputs;
}
