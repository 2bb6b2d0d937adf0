# Evaluates the NixOS service modules (../modules) with the built-in module evaluator, against a
# stub of the NixOS options they set, because nixpkgs is not available on machines like the CI's.
# This proves their option declarations, defaults, assertions and the units they render (the
# command lines of the binaries, and that every credential a command line reads is loaded);
# that NixOS itself accepts them is checked only by reading. Warnings are returned, not printed.
# Every run also evaluates a few fixed hosts (below `selfCheckErrors`): which token file each
# unit loads on the control plane's and the cache's host and elsewhere, and that the worker and
# ci modules refuse a host where their binary would not start for want of a token.
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
    optionalString = cond: s: if cond then s else "";
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

  # The configuration of one host: its evaluated options, the messages of its failed
  # assertions, and its credential mismatches.
  evaluate = config:
    let
      evaluated = (mini.evalModules {
        modules = [ nixosStub ../modules config ];
        specialArgs = { inherit lib pkgs; };
      }).config;
    in
    {
      inherit evaluated;
      failed = map (a: a.message) (builtins.filter (a: !a.assertion) evaluated.assertions);

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
    };

  host = evaluate config;
  inherit (host) evaluated;

  # Fixed hosts checked on every run, whatever `config` is: which token each unit gets where,
  # and the assertions that stop a unit that would not start.
  package = fakePackage "procurator";
  worker = { enable = true; inherit package; master = "10.0.0.1:7000"; cacheUrl = "http://10.0.0.1:5000"; cachePublicKey = "cache-1:abc="; };
  # Literal substring search (`builtins.split` finds a regex anywhere, across lines).
  escapeRegex = builtins.replaceStrings
    [ "\\" "." "*" "+" "?" "(" ")" "[" "]" "{" "}" "|" "^" "$" ]
    [ "\\\\" "\\." "\\*" "\\+" "\\?" "\\(" "\\)" "\\[" "\\]" "\\{" "\\}" "\\|" "\\^" "\\$" ];
  contains = needle: haystack: builtins.length (builtins.split (escapeRegex needle) haystack) > 1;
  has = x: list: builtins.elem x list;
  unit = h: name: h.evaluated.systemd.services.${name};
  # A host evaluated without throwing; the name says which in a failure.
  clean = name: cfg:
    let h = evaluate cfg; in
    if h.failed != [ ] then throw "${name}: ${builtins.head h.failed}"
    else if h.credentialErrors != [ ] then throw "${name}: ${builtins.head h.credentialErrors}"
    else h;
  # Only the assertions fail, in that order; their messages must mention every fragment.
  refused = name: cfg: fragments:
    let h = evaluate cfg; in
    if h.failed == [ ] then [ "${name}: evaluated without a failed assertion" ]
    else map (f: "${name}: no failed assertion mentions `${f}`: ${builtins.concatStringsSep " / " h.failed}")
      (builtins.filter (f: !builtins.any (m: contains f m) h.failed) fragments);

  allOnOneHost = clean "all on one host" {
    services.procurator = {
      control-plane = { enable = true; inherit package; };
      inherit worker;
      cache = { enable = true; inherit package; };
      ci = { enable = true; inherit package; };
    };
  };
  cacheTokenGiven = clean "cache with uploadTokenFile" {
    services.procurator = {
      cache = { enable = true; inherit package; uploadTokenFile = "/run/keys/upload"; };
      ci = { enable = true; inherit package; controlPlaneTokenFile = "/run/keys/operator"; };
    };
  };
  workerElsewhere = clean "worker with controlPlaneTokenFile" {
    services.procurator.worker = worker // { controlPlaneTokenFile = "/run/keys/worker"; };
  };
  workerTokenInExtraArgs = clean "worker with --token-file in extraArgs" {
    services.procurator.control-plane = { enable = true; inherit package; };
    services.procurator.worker = worker // { extraArgs = [ "--token-file" "/run/keys/worker" ]; };
  };

  selfCheckErrors =
    let
      expect = name: ok: if ok then [ ] else [ name ];
      w = unit allOnOneHost "procurator-worker";
      ci = unit allOnOneHost "procurator-ci";
      cache = unit allOnOneHost "procurator-cache";
    in
    expect "worker: --token-file %d/worker-token" (contains "--token-file %d/worker-token" w.serviceConfig.ExecStart)
    ++ expect "worker: loads the control plane's worker.token"
      (has "worker-token:/var/lib/procurator-control-plane/worker.token" w.serviceConfig.LoadCredential)
    ++ expect "worker: after the control plane on its host" (has "procurator-control-plane.service" w.after)
    ++ expect "worker elsewhere: loads controlPlaneTokenFile"
      ((unit workerElsewhere "procurator-worker").serviceConfig.LoadCredential == [ "worker-token:/run/keys/worker" ])
    ++ expect "worker elsewhere: not after a control plane it does not have"
      (!has "procurator-control-plane.service" (unit workerElsewhere "procurator-worker").after)
    ++ expect "worker: no --token-file of its own beside the one of extraArgs"
      (let u = unit workerTokenInExtraArgs "procurator-worker"; in
        builtins.length (builtins.filter (x: x == "--token-file") (builtins.split " " u.serviceConfig.ExecStart)) == 1
        && u.serviceConfig.LoadCredential == [ ])
    ++ expect "cache: reads the token its unit generates"
      (contains "--upload-token-file /var/lib/procurator-cache/upload.token" cache.serviceConfig.ExecStart
        && contains "upload.token" cache.preStart)
    ++ expect "ci: --cache-token-file %d/cache-token" (contains "--cache-token-file %d/cache-token" ci.serviceConfig.ExecStart)
    ++ expect "ci: loads the cache's generated upload.token"
      (has "cache-token:/var/lib/procurator-cache/upload.token" ci.serviceConfig.LoadCredential)
    ++ expect "ci: after the cache on its host" (has "procurator-cache.service" ci.after)
    ++ expect "ci: loads the cache's uploadTokenFile"
      (has "cache-token:/run/keys/upload" (unit cacheTokenGiven "procurator-ci").serviceConfig.LoadCredential)
    ++ expect "cache with uploadTokenFile: generates no token"
      (!(contains "upload.token" (unit cacheTokenGiven "procurator-cache").preStart))
    ++ expect "cache without signingKeyFile: creates its key on first start"
      (contains "pcr-cache keygen" (unit cacheTokenGiven "procurator-cache").preStart)
    ++ refused "worker without the control plane" { services.procurator.worker = worker; }
      [ "services.procurator.worker" "controlPlaneTokenFile" "/var/lib/procurator-control-plane/worker.token" ]
    ++ refused "ci without the cache"
      { services.procurator.ci = { enable = true; inherit package; controlPlaneTokenFile = "/run/keys/operator"; }; }
      [ "services.procurator.ci" "cacheTokenFile" "/var/lib/procurator-cache/upload.token" ];
in
if host.failed != [ ] then throw (builtins.head host.failed)
else if host.credentialErrors != [ ] then throw (builtins.head host.credentialErrors)
else if selfCheckErrors != [ ] then throw "service-modules self-check failed: ${builtins.head selfCheckErrors}"
else {
  inherit (evaluated) systemd networking users warnings;
  nix = { inherit (evaluated.nix) settings; };
  boot = { inherit (evaluated.boot) kernelModules; };
}
