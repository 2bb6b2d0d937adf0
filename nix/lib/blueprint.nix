# config.cluster → the blueprint document and the closures CI builds.
#
# The document is what `nix eval --json .#blueprintJSON` prints and `schema::model::Blueprint::
# from_json` reads: camelCase keys, one entry per VM, each with its closure's store path. The
# checks here are the ones the option types cannot express (they relate several options); their
# messages name the option path, like the evaluator's.
{
  # config.cluster from either evaluator.
  cluster
, # name → NixOS module → toplevel derivation; null without nixpkgs.
  buildNixos ? null
}:
let
  inherit (builtins)
    attrNames attrValues concatStringsSep filter genList head isAttrs length listToAttrs map
    mapAttrs match sort;

  nameOk = name: match "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?" name != null;
  relativeOk = p: match "/.*" p == null && match "(.*/)?\\.\\.(/.*)?" p == null && match "(.*//.*)|(.*/)" p == null && p != "";

  checkVm = name: vm:
    let
      at = "cluster.vms.${name}";
      isVm = vm.deployment.backend != "process";
      hostPorts = map (p: p.host) (attrValues vm.ports);
      dupPort = filter (p: length (filter (q: q == p) hostPorts) > 1) hostPorts;
      badCheck = filter (c: c.problem != null) (genList
        (i:
          let c = builtins.elemAt vm.deployment.healthChecks i; in {
            index = i;
            problem =
              if (c.type == "http" || c.type == "tcp") && c.port == null then "the ${c.type} check needs `port`"
              else if c.type == "command" && (c.argv == [ ] || head c.argv == "") then "the command check needs `argv`"
              else null;
          })
        (length vm.deployment.healthChecks));
      sources = filter (x: x) [ (vm.package != null) (vm.nixos != null) ];
    in
    if !nameOk name then
      throw "${at}: VM names must be 1-63 characters of a-z, 0-9 and `-`, not starting or ending with `-`"
    else if dupPort != [ ] then
      throw "${at}.ports: host port ${toString (head dupPort)} is forwarded twice"
    else if badCheck != [ ] then
      throw "${at}.deployment.healthChecks.[${toString (head badCheck).index}]: ${(head badCheck).problem}"
    else if vm.deployment.rollout.strategy == "canary" && vm.deployment.rollout.canaryCount == 0 then
      throw "${at}.deployment.rollout: a canary rollout needs canaryCount of at least 1"
    else if length sources > 1 then
      throw "${at}: set one of `package` and `nixos`, not both"
    else if isVm && vm.exec != null then
      throw "${at}.exec: only process workloads have `exec`; a VM boots its toplevel's init"
    else if !isVm && vm.nixos != null then
      throw "${at}.nixos: a NixOS configuration needs a VM backend; set deployment.backend = \"qemu\" or \"cloud-hypervisor\""
    else true;

  closureOf = name: vm:
    let at = "cluster.vms.${name}"; in
    if vm.package != null then vm.package
    else if vm.nixos != null then
      (if buildNixos == null then
        throw "${at}.nixos: building a NixOS VM needs nixpkgs; call evalCluster with `nixpkgs = inputs.nixpkgs;`, or give `package` = procurator.lib.mkToplevel { … }"
      else buildNixos name vm.nixos)
    else if vm.deployment.backend == "process" then
      throw "${at}: a process workload needs `package`, the package holding its executable"
    else
      throw "${at}: a ${vm.deployment.backend} VM needs `package` (a toplevel from procurator.lib.mkToplevel) or `nixos` (a NixOS module, with nixpkgs)";

  execOf = name: vm:
    let
      at = "cluster.vms.${name}.exec";
      exec =
        if vm.exec != null then vm.exec
        else if isAttrs vm.package && vm.package ? meta.mainProgram then "bin/${vm.package.meta.mainProgram}"
        else "bin/${name}";
    in
    if vm.deployment.backend != "process" then ""
    else if relativeOk exec then exec
    else throw "${at}: `${exec}` must be a path relative to the package, without `..` or empty components";

  healthCheck = c:
    let timing = { inherit (c) intervalMs timeoutMs retries gracePeriodMs; type = c.type; }; in
    if c.type == "http" then timing // { inherit (c) port path expectStatus; }
    else if c.type == "tcp" then timing // { inherit (c) port; }
    else timing // { inherit (c) argv; };

  specOf = name: vm:
    assert checkVm name vm;
    {
      inherit (vm) role replicas cpu labels constraints args env;
      memoryMb = vm.memory;
      backend = vm.deployment.backend;
      # Interpolation keeps the string context: evaluating the blueprint does not build
      # anything, but the path printed is the one `nix build .#closures.<name>` produces.
      closure = "${closureOf name vm}";
      exec = execOf name vm;
      ports = map (p: { name = p; inherit (vm.ports.${p}) guest host; }) (sort (a: b: a < b) (attrNames vm.ports));
      healthChecks = map healthCheck vm.deployment.healthChecks;
      rollout = vm.deployment.rollout // { inherit (vm.deployment) autoRollback; };
      restart = vm.deployment.restart;
      inherit (vm.deployment) stopAfterDisconnectMs;
    };
in
{
  blueprint = {
    cluster = { inherit (cluster) name strategy; };
    vms = mapAttrs specOf cluster.vms;
  };
  closures = mapAttrs closureOf cluster.vms;
}
