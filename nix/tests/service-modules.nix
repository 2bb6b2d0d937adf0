# Evaluates the NixOS service modules (../modules) with the built-in module evaluator, against a
# stub of the NixOS options they set, because nixpkgs is not available on machines like the CI's.
# This proves their option declarations, defaults, assertions and the units they render (the
# command lines of the binaries, and that every credential a command line reads is loaded);
# that NixOS itself accepts them is checked only by reading. Warnings are returned, not printed.
#
#   nix-instantiate --eval --strict --json nix/tests/service-modules.nix \
#     --arg config '{ services.procurator.worker = { enable = true; … }; }'
{ config ? { } }:
let
  mini = import ../lib/modules.nix;

  # The few nixpkgs lib functions the service modules use, with nixpkgs' behaviour.
  lib = mini // {
    optional = cond: x: if cond then [ x ] else [ ];
    optionals = cond: xs: if cond then xs else [ ];
    inherit (builtins) concatMap attrNames;
    escapeShellArg = arg:
      if builtins.match "[[:alnum:],._+:@%/=-]+" arg != null then arg
      else "'${builtins.replaceStrings [ "'" ] [ "'\\''" ] arg}'";
    escapeShellArgs = args: builtins.concatStringsSep " " (map lib.escapeShellArg args);
    splitString = sep: s: builtins.filter builtins.isString (builtins.split (builtins.replaceStrings [ "." ] [ "\\." ] sep) s);
    last = list: builtins.elemAt list (builtins.length list - 1);
    toInt = s:
      let n = builtins.fromJSON s; in
      if builtins.match "[0-9]+" s != null then n else throw "toInt: ${s} is not a number";
  };

  fakePackage = name: "/nix/store/00000000000000000000000000000000-${name}";
  pkgs = {
    qemu_kvm = fakePackage "qemu";
    virtiofsd = fakePackage "virtiofsd";
    cloud-hypervisor = fakePackage "cloud-hypervisor";
    git = fakePackage "git";
  };

  # The NixOS options the service modules define values for.
  nixosStub = { lib, ... }:
    let
      inherit (lib) mkOption types;
      attrs = mkOption { type = types.attrsOf types.anything; default = { }; };
    in
    {
      options = {
        assertions = mkOption { type = types.listOf types.anything; default = [ ]; };
        warnings = mkOption { type = types.listOf types.str; default = [ ]; };
        boot.kernelModules = mkOption { type = types.listOf types.str; default = [ ]; };
        networking.hostName = mkOption { type = types.str; default = "node-1"; };
        networking.firewall.allowedTCPPorts = mkOption { type = types.listOf types.port; default = [ ]; };
        nix.package = mkOption { type = types.package; default = fakePackage "nix"; };
        nix.settings = attrs;
        systemd.services = attrs;
        users.users = attrs;
        users.groups = attrs;
      };
    };

  evaluated = (mini.evalModules {
    modules = [ nixosStub ../modules config ];
    specialArgs = { inherit lib pkgs; };
  }).config;

  failed = builtins.filter (a: !a.assertion) evaluated.assertions;

  # Every `%d/<name>` a command line reads must be a credential its unit loads, and every
  # credential loaded must be read: on a real host a mismatch shows only when the unit starts.
  credentialErrors = builtins.concatMap
    (unit:
      let
        service = evaluated.systemd.services.${unit}.serviceConfig or { };
        read = map builtins.head (builtins.filter builtins.isList
          (builtins.split "%d/([A-Za-z0-9_.-]+)" (service.ExecStart or "")));
        loaded = map (c: builtins.head (builtins.split ":" c)) (service.LoadCredential or [ ]);
        missing = builtins.filter (n: !builtins.elem n loaded) read;
        unused = builtins.filter (n: !builtins.elem n read) loaded;
      in
      map (n: "${unit}: ExecStart reads %d/${n} but LoadCredential does not load it") missing
      ++ map (n: "${unit}: LoadCredential loads ${n} but ExecStart never reads it") unused)
    (builtins.attrNames evaluated.systemd.services);
in
if failed != [ ] then throw (builtins.head failed).message
else if credentialErrors != [ ] then throw (builtins.head credentialErrors)
else {
  inherit (evaluated) systemd networking users warnings;
  nix = { inherit (evaluated.nix) settings; };
  boot = { inherit (evaluated.boot) kernelModules; };
}
