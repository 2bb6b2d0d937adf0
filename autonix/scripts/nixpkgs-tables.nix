# What one nixpkgs checkout provides for the tools autonix resolves: for each tool, the
# attributes of its release lines with their versions and which line the unversioned
# attribute (nodejs, python3, go, ...) is. Evaluated by ./update-nixpkgs-tables; needs no
# network, only the checkout.
{ nixpkgs }:
let
  pkgs = import nixpkgs { config = { allowInsecurePredicate = _: true; }; overlays = [ ]; };
  lib = pkgs.lib;
  # Removed attributes are throwing aliases: tryEval keeps them out.
  versionOf = name:
    let r = builtins.tryEval (if pkgs ? ${name} then pkgs.${name}.version or null else null);
    in if r.success then r.value else null;
  # jdk8's version is 8u432-ga: written 8.0.432 like the other JDKs' three parts; build
  # suffixes (21.0.8+9) are dropped.
  normalise = v: builtins.head (lib.splitString "[-+]" (builtins.replaceStrings [ "u" ] [ ".0." ] v));
  table = default: names:
    let
      present = builtins.filter (n: versionOf n != null) names;
      lines = lib.genAttrs present (n: normalise (versionOf n));
      defaultVersion = normalise (versionOf default);
    in {
      default = lib.findFirst (n: lines.${n} == defaultVersion) null present;
      inherit lines;
    };
  numbered = f: from: to: map (n: f (toString n)) (lib.range from to);
in {
  version = lib.trivial.release;
  rustc = pkgs.rustc.version;
  node = table "nodejs" (numbered (n: "nodejs_${n}") 14 40);
  python = table "python3" (numbered (n: "python3${n}") 8 20);
  go = table "go" (numbered (n: "go_1_${n}") 18 40);
  ruby = table "ruby" (numbered (n: "ruby_3_${n}") 0 9 ++ numbered (n: "ruby_4_${n}") 0 5);
  php = table "php" (numbered (n: "php8${n}") 0 9 ++ numbered (n: "php9${n}") 0 5);
  java = table "jdk" (numbered (n: "jdk${n}") 8 40);
  elixir = table "elixir" (numbered (n: "elixir_1_${n}") 10 30);
  zig = table "zig" (numbered (n: "zig_0_${n}") 9 30);
  pnpm = table "pnpm" (numbered (n: "pnpm_${n}") 6 20);
  postgresql = table "postgresql" (numbered (n: "postgresql_${n}") 10 30);
  # There is no unversioned mysql: the oldest line still carried is the fallback.
  mysql = let names = [ "mysql57" "mysql80" "mysql84" ] ++ numbered (n: "mysql9${n}") 0 9;
    in table (lib.findFirst (n: versionOf n != null) "mysql80" names) names;
}
