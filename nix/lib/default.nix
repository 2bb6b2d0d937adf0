# The Procurator Nix library. `import ./nix/lib` (or the `lib` output of ./nix/flake.nix) gives:
#
#   evalCluster { modules; nixpkgs ? null; system ? "x86_64-linux"; specialArgs ? {}; }
#     Evaluates cluster modules (options in ./cluster.nix) and returns
#       config        the evaluated configuration
#       options       the option tree
#       blueprintJSON the blueprint document as an attribute set; `nix eval --json` of it is the
#                     JSON the control plane reads (schema::model::Blueprint::from_json)
#       closures      VM name → the derivation (or store path) of its closure
#       outputs       ready flake outputs: blueprintJSON, closures, packages.<system>.<vm>,
#                     checks.<system>.closures
#     With nixpkgs, modules are evaluated by nixpkgs.lib.evalModules, receive `pkgs`, and a VM's
#     `nixos` module is built with nixpkgs.lib.nixosSystem (plus ./guest.nix). Without it, the
#     built-in evaluator (./modules.nix) runs the same modules with strict, readable errors.
#     Every module also receives `procurator` (this library).
#
#   Builders for machines without nixpkgs (./builders.nix): busybox, writeText, writeScript,
#   mkProcessService, mkGuestInitrd, mkGuestInit, mkToplevel, mkLayoutCheck.
#
#   lib           the built-in module system (mkOption, types, mkIf, mkDefault, …, evalModules)
#   clusterModule the cluster options module, for documentation tools
let
  mini = import ./modules.nix;

  builders = system: import ./builders.nix { inherit system; };

  evalCluster = { modules, nixpkgs ? null, system ? "x86_64-linux", specialArgs ? { } }:
    let
      withNixpkgs = nixpkgs != null;
      procurator = library // builders system;
      allModules = [ ./cluster.nix ] ++ modules;
      evaluated =
        if withNixpkgs then
          nixpkgs.lib.evalModules {
            modules = allModules;
            specialArgs = { inherit procurator; pkgs = nixpkgs.legacyPackages.${system}; } // specialArgs;
          }
        else
          mini.evalModules {
            modules = allModules;
            specialArgs = { inherit procurator; } // specialArgs;
          };
      buildNixos =
        if withNixpkgs then
          name: module: (nixpkgs.lib.nixosSystem {
            inherit system;
            modules = [
              ./guest.nix
              { networking.hostName = nixpkgs.lib.mkDefault name; }
              module
            ];
          }).config.system.build.toplevel
        else null;
      result = import ./blueprint.nix { cluster = evaluated.config.cluster; inherit buildNixos; };
      blueprintJSON = result.blueprint;
      closures = result.closures;
    in
    {
      inherit (evaluated) config options;
      inherit blueprintJSON closures;
      outputs = {
        inherit blueprintJSON closures;
        packages.${system} = closures;
        checks.${system}.closures = (builders system).mkLayoutCheck { blueprint = blueprintJSON; };
      };
    };

  library = builders "x86_64-linux" // {
    inherit evalCluster;
    lib = mini;
    clusterModule = ./cluster.nix;
  };
in
library
