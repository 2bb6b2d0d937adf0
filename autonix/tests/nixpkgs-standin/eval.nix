# Evaluates a generated flake against the nixpkgs stand-in, without flake locking or a
# git checkout: `nix-instantiate --eval --strict --json --read-write-mode eval.nix --arg dir DIR --arg standin
# DIR-OF-STANDIN`. Forces every package, dev shell and check to a derivation path and the
# Procurator cluster to JSON, which is what `nix eval` of those outputs forces.
{ dir, standin }:
let
  flake = import (dir + "/flake.nix");
  nixpkgs = { outPath = standin; lib = import (standin + "/lib.nix"); };
  rust-overlay = { overlays.default = import (standin + "/rust-overlay.nix"); };
  inputs = builtins.intersectAttrs (builtins.functionArgs flake.outputs) { inherit nixpkgs rust-overlay; };
  outputs = flake.outputs (inputs // { self = outputs // { outPath = dir; }; });
  sys = "x86_64-linux";
  drvs = set: builtins.mapAttrs (_: d: d.drvPath) set;
in {
  packages = drvs outputs.packages.${sys};
  devShells = drvs outputs.devShells.${sys};
  checks = drvs outputs.checks.${sys};
  cluster = builtins.toJSON outputs.procurator.cluster;
}
