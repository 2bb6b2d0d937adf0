# A test-only stand-in for nixpkgs, for evaluating the flakes autonix generates on machines
# without nixpkgs. It provides the builders and packages the generator uses, under their
# nixpkgs names, with their real argument names: required arguments are required, closed
# argument sets (writeShellApplication, runCommand…) reject unknown ones, and files real
# nixpkgs reads while evaluating (Cargo.lock, package-lock.json, gemset.nix, deps.json) are
# read here too. Every package is a `builtins.derivation` that is instantiated, never built.
# Versioned packages (nodejs_22, go_1_24, postgresql_17…) are those of the branch the flake
# pins, from autonix/data/nixpkgs.json. It is not nixpkgs: versions, outputs and build logic
# are not modelled.
{ system ? builtins.currentSystem, overlays ? [ ], config ? { } }:
let
  lib = import ./lib.nix;

  # A derivation with the attributes callers use on packages.
  drv = name: extra:
    let
      base = derivation {
        inherit name system;
        builder = "/bin/sh";
        args = [ "-c" "echo > $out" ];
      };
      self = base // extra // {
        overrideAttrs = f: self;
        override = f: self;
        inherit name;
      };
    in self;

  # Forces what a builder's arguments refer to (packages, paths that must exist, strings),
  # the way instantiating the real derivation would.
  force = value: builtins.deepSeq (builtins.toJSON (strip value)) true;
  strip = v:
    if builtins.isFunction v then null
    else if builtins.isAttrs v && v ? drvPath then v.drvPath
    else if builtins.isAttrs v then builtins.mapAttrs (_: strip) v
    else if builtins.isList v then map strip v
    else if builtins.isPath v then "${v}"
    else v;
  requirePath = what: p:
    if builtins.pathExists p then p
    else throw "${what}: ${toString p} does not exist (nixpkgs reads it while evaluating)";

  # stdenv.mkDerivation: a set, or a function of the final attributes.
  mkDerivation = argsOrFun:
    let
      args = if builtins.isFunction argsOrFun then lib.fix argsOrFun else argsOrFun;
      name = args.name or "${args.pname}-${args.version}";
    in
    assert force args;
    drv name { passthru = args.passthru or { }; };

  tool = name: drv name { };

  pythonSet = version:
    let
      ps = builtins.listToAttrs (map (n: { name = n; value = tool "python${version}-${n}"; })
        [ "beautifulsoup4" "click" "django" "fastapi" "flask" "gunicorn" "jinja2" "numpy" "pika"
          "psycopg" "psycopg2-binary" "pytest" "pyyaml" "redis" "requests" "uvicorn"
          "setuptools" "hatchling" "poetry" "poetry-core" "pdm" "pdm-backend" "flit-core" "wheel" ]);
      interpreter = drv "python${version}" {
        pkgs = ps // {
          buildPythonApplication = { pname, version, src, pyproject ? null, format ? null, build-system ? [ ], dependencies ? [ ], ... }@args:
            assert force args; drv "${pname}-${version}" { };
          buildPythonPackage = { pname, version, src, ... }@args:
            assert force args; drv "${pname}-${version}" { };
        };
        withPackages = f: assert force (f ps); drv "python${version}-env" { };
      };
    in interpreter;

  php = version: drv "php${version}" {
    packages = { composer = tool "composer"; };
    buildComposerProject = fun:
      let args = if builtins.isFunction fun then lib.fix fun else fun;
      in assert args ? pname && args ? version && args ? src && args ? vendorHash;
      assert force args; drv "${args.pname}-${args.version}" { };
  };

  beamPackages = {
    extend = f: beamPackages // (f beamPackages beamPackages);
    mixRelease = { pname, version, src, mixFodDeps ? null, mixNixDeps ? { }, ... }@args:
      assert force args; drv "${pname}-${version}" { };
    fetchMixDeps = { pname, version, src, hash ? "", sha256 ? "", ... }@args:
      assert force args; drv "${pname}-${version}" { };
  };

  buildGoModule = { pname, version, src, vendorHash, ... }@args:
    assert force args; drv "${pname}-${version}" { };

  rustPlatform = {
    buildRustPackage = { pname, version, src, cargoLock ? null, cargoHash ? null, ... }@args:
      assert cargoLock != null || cargoHash != null
        || throw "buildRustPackage: set cargoLock or cargoHash";
      assert cargoLock == null || builtins.isString (builtins.readFile (requirePath "cargoLock.lockFile" cargoLock.lockFile));
      assert force args; drv "${pname}-${version}" { };
  };

  mkJdk = v: tool "openjdk-${v}";

  pkgs = rec {
    inherit lib system;
    stdenv = { inherit mkDerivation; };
    mkShell = { packages ? [ ], buildInputs ? [ ], nativeBuildInputs ? [ ], shellHook ? "", ... }@args:
      assert force args; drv "nix-shell" { };
    writeShellApplication = { name, text, runtimeInputs ? [ ], runtimeEnv ? null, meta ? { }, passthru ? { }, checkPhase ? null, excludeShellChecks ? [ ], extraShellCheckFlags ? [ ], bashOptions ? [ "errexit" "nounset" "pipefail" ], inheritPath ? true, derivationArgs ? { } }:
      assert force { inherit text runtimeInputs; }; drv name { };
    runCommand = name: env: script:
      assert force env && builtins.isString script; drv name { };
    callPackage = fn: overrides:
      let f = if builtins.isFunction fn then fn else import fn;
          wanted = builtins.functionArgs f;
      in f (builtins.intersectAttrs wanted (pkgs // { inherit pkgs; }) // overrides);
    writeShellScriptBin = name: text: assert builtins.isString text; drv name { };
    inherit rustPlatform buildGoModule beamPackages;
    makeRustPlatform = { cargo, rustc }: assert force [ cargo rustc ]; rustPlatform;
    buildNpmPackage = { pname ? null, name ? null, version ? null, src, npmDeps ? null, npmDepsHash ? null, ... }@args:
      assert npmDeps != null || npmDepsHash != null || throw "buildNpmPackage: set npmDeps or npmDepsHash";
      assert force args; drv "${args.pname}-${args.version}" { };
    # A function with attributes, as in nixpkgs: `importNpmLock { … }` and its hook.
    importNpmLock = {
      __functor = _: { npmRoot ? null, package ? null, packageLock ? null, pname ? null, version ? null, fetcherOpts ? { }, packageSourceOverrides ? { } }:
        let lock = if packageLock != null then packageLock
          else builtins.fromJSON (builtins.readFile (requirePath "importNpmLock" (npmRoot + "/package-lock.json")));
        in assert force lock; drv "npm-deps" { };
      npmConfigHook = tool "npm-config-hook";
    };
    fetchYarnDeps = { yarnLock ? null, src ? null, hash ? "", sha256 ? "", ... }@args:
      assert yarnLock != null || src != null || throw "fetchYarnDeps: set yarnLock or src";
      assert force args; drv "yarn-deps" { };
    yarnConfigHook = tool "yarn-config-hook";
    yarnBuildHook = tool "yarn-build-hook";
    yarnInstallHook = tool "yarn-install-hook";
    pnpm = pkgs.${if branch == null then "pnpm_9" else branch.tools.pnpm.default};
    pnpmRelease = v: drv "pnpm-${v}" {
      fetchDeps = { pname, src, hash ? "", version ? null, ... }@args:
        assert force args; drv "${pname}-pnpm-deps" { };
      configHook = tool "pnpm-config-hook";
    };
    bundlerEnv = { name ? null, pname ? null, ruby, gemdir ? null, gemfile ? null, lockfile ? null, gemset ? null, ... }@args:
      let gems = if gemset != null then gemset else requirePath "bundlerEnv" (gemdir + "/gemset.nix");
      in assert force args && builtins.isAttrs (import gems);
      drv (if name != null then name else pname) { wrappedRuby = tool "wrapped-ruby"; };
    maven = drv "maven" {
      override = o: maven;
      buildMavenPackage = { pname, version, src, mvnHash ? "", ... }@args:
        assert force args; drv "${pname}-${version}" { };
    };
    gradle = drv "gradle" {
      fetchDeps = { pname ? null, pkg ? null, data, ... }@args:
        assert force args && builtins.isAttrs (builtins.fromJSON (builtins.readFile (requirePath "gradle.fetchDeps data" data)));
        drv "gradle-deps" { };
    };
    jdk = pkgs.jdk21;
  }
  # Every release line of every branch autonix has tables for (autonix/data/nixpkgs.json),
  # made the way nixpkgs makes that kind of package.
  // builtins.listToAttrs (map (attr: { name = attr; value = lineOf attr; }) lineAttrs)
  // goModuleBuilders
  // builtins.listToAttrs (map (n: { name = n; value = tool n; }) [
    "nodejs" "ruby" "bundler" "go" "elixir"
    "rustc" "cargo" "clippy" "rustfmt" "rust-analyzer"
    "yarn" "bun" "poetry" "uv" "pdm" "pipenv"
    "cmake" "meson" "ninja" "gnumake" "pkg-config"
    "postgresql"
    "redis" "valkey" "mariadb" "mongodb" "rabbitmq-server" "memcached" "nginx" "minio" "elasticsearch"
  ]);
  # The branch the flake pins (AUTONIX_STANDIN_BRANCH, set by the test from the flake's
  # nixpkgs.url): only its release lines exist, as in that branch. Unset: every branch's.
  branchName = builtins.getEnv "AUTONIX_STANDIN_BRANCH";
  allBranches = (builtins.fromJSON (builtins.readFile ../../data/nixpkgs.json)).branches;
  branches = if branchName == "" then allBranches
    else builtins.filter (b: b.branch == branchName) allBranches;
  branch = if branchName == "" then null
    else if branches == [ ] then throw "nixpkgs stand-in: no tables for branch ${branchName}"
    else builtins.head branches;
  tables = builtins.concatMap (b: builtins.attrValues b.tools) branches;
  lineAttrs = builtins.attrNames (builtins.foldl' (acc: t: acc // t.lines) { } tables);
  hasPrefix = p: s: builtins.substring 0 (builtins.stringLength p) s == p;
  after = p: s: builtins.substring (builtins.stringLength p) 99 s;
  # python312 -> "3.12", php83 -> "8.3", go_1_24 -> its buildGo124Module too.
  lineOf = attr:
    if hasPrefix "python3" attr then pythonSet "3.${after "python3" attr}"
    else if hasPrefix "php" attr then php "${builtins.substring 3 1 attr}.${builtins.substring 4 9 attr}"
    else if hasPrefix "jdk" attr then mkJdk (after "jdk" attr)
    else if hasPrefix "pnpm_" attr then pkgs.pnpmRelease (after "pnpm_" attr)
    else if hasPrefix "zig_" attr then drv attr { hook = tool "zig-hook"; }
    else tool attr;
  goModuleBuilders = builtins.listToAttrs (map
    (attr: { name = "buildGo${builtins.replaceStrings [ "go_" "_" ] [ "" "" ] attr}Module"; value = buildGoModule; })
    (builtins.filter (hasPrefix "go_") lineAttrs));
in
builtins.foldl' (acc: overlay: acc // overlay acc acc) pkgs overlays
