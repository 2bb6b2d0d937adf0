# A small implementation of the NixOS module system for machines without nixpkgs.
#
# It supports the part of `nixpkgs.lib` that cluster definitions use — `mkOption`, the common
# `types`, `imports`, `mkIf`, `mkMerge`, `mkDefault`, `mkForce`, `mkOverride` — with the same
# semantics, so a cluster module evaluates the same under this evaluator and under
# `nixpkgs.lib.evalModules`. What it adds is strictness with readable errors: a definition of an
# option nobody declared, or a value of the wrong type, stops evaluation with a sentence naming
# the option path and the file that defined it, e.g.
#   cluster.vms.web.cpu: expected a positive integer, got 0 (defined in /nix/store/…/cluster.nix)
let
  inherit (builtins)
    attrNames concatMap concatStringsSep elem filter foldl' functionArgs genericClosure head
    intersectAttrs isAttrs isBool isFloat isFunction isInt isList isPath isString length
    listToAttrs mapAttrs removeAttrs toJSON typeOf;

  # ---- properties (the `_type` markers nixpkgs uses, with the same priorities) ----

  mkIf = condition: content: { _type = "if"; inherit condition content; };
  mkMerge = contents: { _type = "merge"; inherit contents; };
  mkOverride = priority: content: { _type = "override"; inherit priority content; };
  mkOptionDefault = mkOverride 1500;
  mkDefault = mkOverride 1000;
  mkForce = mkOverride 50;
  # A definition without an explicit priority.
  defaultPriority = 100;

  mkOption = attrs: attrs // { _type = "option"; };
  mkEnableOption = name: mkOption {
    type = types.bool;
    default = false;
    description = "Whether to enable ${name}.";
  };
  literalExpression = text: { _type = "literalExpression"; inherit text; };

  kindOf = v: if isAttrs v then v._type or "" else "";
  isOption = v: kindOf v == "option";

  # ---- rendering for error messages ----

  showLoc = loc: if loc == [ ] then "<top level>" else concatStringsSep "." loc;

  showValue = v:
    if isInt v || isFloat v then toString v
    else if isString v then toJSON v
    else if isBool v then (if v then "true" else "false")
    else if v == null then "null"
    else if isPath v then toString v
    else if isList v then "a list"
    else if isFunction v then "a function"
    else if isAttrs v && v ? outPath && (v.type or "") == "derivation" then "the derivation ${v.name or "?"}"
    else if isAttrs v then "an attribute set"
    else typeOf v;

  showFiles = files: concatStringsSep ", " files;

  # ---- properties at a node: what NixOS calls pushDownProperties / dischargeProperties ----

  # `mkIf c { a = 1; b = 2; }` at an attribute-set node becomes `{ a = mkIf c 1; b = mkIf c 2; }`,
  # so the names a module defines are known without evaluating any condition (a condition may
  # read `config`, and the names are needed to build `config`).
  pushDown = loc: file: v:
    let k = kindOf v; in
    if k == "merge" then concatMap (pushDown loc file) v.contents
    else if k == "if" then map (mapAttrs (_: mkIf v.condition)) (pushDown loc file v.content)
    else if k == "override" then map (mapAttrs (_: mkOverride v.priority)) (pushDown loc file v.content)
    else if isAttrs v && k == "" then [ v ]
    else throw "${showLoc loc}: expected an attribute set of options, got ${showValue v} (defined in ${file})";

  # At an option: evaluate `mkIf` conditions and flatten `mkMerge`; keep priorities.
  discharge = loc: file: v:
    let k = kindOf v; in
    if k == "merge" then concatMap (discharge loc file) v.contents
    else if k == "if" then
      (if isBool v.condition then (if v.condition then discharge loc file v.content else [ ])
       else throw "${showLoc loc}: the condition of mkIf must be true or false, got ${showValue v.condition} (defined in ${file})")
    else if k == "override" then map (mkOverride v.priority) (discharge loc file v.content)
    else [ v ];

  priorityOf = v: if kindOf v == "override" then v.priority else defaultPriority;
  stripPriority = v: if kindOf v == "override" then stripPriority v.content else v;

  # Merge the definitions `defs` ([{ file; value; }]) of an option of type `type` at `loc`:
  # evaluate properties, keep the definitions of the highest priority, check each against the
  # type, and let the type combine them.
  mergeDefinitions = loc: type: defs:
    let
      discharged = concatMap (d: map (value: { inherit (d) file; inherit value; }) (discharge loc d.file d.value)) defs;
      best = foldl' (p: d: let q = priorityOf d.value; in if q < p then q else p) 100000 discharged;
      chosen = map (d: { inherit (d) file; value = stripPriority d.value; })
        (filter (d: priorityOf d.value == best) discharged);
      checked = map
        (d:
          if type.check d.value then d
          else throw "${showLoc loc}: expected ${type.description}, got ${showValue d.value} (defined in ${d.file})")
        chosen;
    in
    {
      isDefined = chosen != [ ];
      value = type.merge loc checked;
    };

  # ---- collecting modules ----

  # The arguments a module function receives. Only the ones it names are passed, as nixpkgs
  # does, so `{ config }: …` without `...` works; one it names that does not exist is an error
  # that says where it can come from.
  applyModule = file: args: f:
    let
      wanted = functionArgs f;
      missing = filter (n: !(args ? ${n}) && !wanted.${n}) (attrNames wanted);
    in
    if missing != [ ] then
      throw "module ${file} asks for the argument `${head missing}`, which this evaluator does not provide (it has: ${concatStringsSep ", " (attrNames args)}); `pkgs` exists only when evalCluster is given nixpkgs"
    else if wanted == { } then f args
    else f (intersectAttrs wanted args);

  # Turn whatever a module is (path, function, attribute set; full or shorthand) into
  # { file; imports; options; config; }.
  loadModule = args: fallbackFile: m:
    let
      fromPath = isPath m || (isString m && builtins.substring 0 1 m == "/");
      file0 = if fromPath then toString m else fallbackFile;
      imported = if fromPath then import m else m;
      applied = if isFunction imported then applyModule file0 args imported else imported;
      file = if isAttrs applied && applied ? _file then toString applied._file else file0;
      full = applied ? options || applied ? config;
      structural = [ "imports" "options" "config" "_file" "key" "meta" ];
      stray = filter (n: !(elem n structural)) (attrNames applied);
    in
    if !isAttrs applied then
      throw "module ${file0} must be an attribute set or a function returning one, got ${showValue applied}"
    else if full && stray != [ ] then
      throw "module ${file} sets `${head stray}` next to `options`/`config`; move it under `config`"
    else {
      inherit file;
      imports = applied.imports or [ ];
      options = applied.options or { };
      config = if full then applied.config or { } else removeAttrs applied [ "imports" "_file" "key" "meta" ];
    };

  # All modules reachable through `imports`, each once (paths are deduplicated by name, as in
  # nixpkgs; inline modules by their position).
  collectModules = args: file: modules:
    let
      isFileRef = m: isPath m || (isString m && builtins.substring 0 1 m == "/");
      entry = parentKey: parentFile: i: m: {
        key = if isFileRef m then toString m else "${parentKey}:${toString i}";
        # Loaded once, lazily; genericClosure keeps the whole item.
        loaded = loadModule args parentFile m;
      };
      indexed = list: f: builtins.genList (i: f i (builtins.elemAt list i)) (length list);
      closure = genericClosure {
        startSet = indexed modules (entry file file);
        operator = item:
          indexed item.loaded.imports (entry item.key item.loaded.file);
      };
    in
    map (item: item.loaded) closure;

  # ---- the option tree ----

  mergeDeclarations = loc: decls:
    let
      names = attrNames (foldl' (acc: d: acc // d.options) { } decls);
      declsOf = name: concatMap (d: if d.options ? ${name} then [{ inherit (d) file; options = d.options.${name}; }] else [ ]) decls;
      one = name:
        let
          here = declsOf name;
          sub = loc ++ [ name ];
          opts = filter (d: isOption d.options) here;
        in
        if opts != [ ] then
          (if length here > 1 then
            throw "${showLoc sub}: the option is declared more than once (in ${showFiles (map (d: d.file) here)})"
          else (head opts).options // {
            loc = sub;
            declarations = [ (head opts).file ];
            type = (head opts).options.type or types.anything;
          })
        else
          let bad = filter (d: !isAttrs d.options) here; in
          if bad != [ ] then
            throw "${showLoc sub}: expected an option made with mkOption or an attribute set of options (in ${(head bad).file})"
          else mergeDeclarations sub here;
    in
    listToAttrs (map (name: { inherit name; value = one name; }) names);

  # The value of the configuration under `loc`, from the option tree `tree` and the definitions
  # `defs` ([{ file; value; }]) made there.
  evalNode = loc: tree: defs:
    let
      pushed = concatMap (d: map (value: { inherit (d) file; inherit value; }) (pushDown loc d.file d.value)) defs;
      defsOf = name: concatMap (d: if d.value ? ${name} then [{ inherit (d) file; value = d.value.${name}; }] else [ ]) pushed;
      unknown = concatMap (d: map (name: { inherit name; inherit (d) file; }) (filter (n: !(tree ? ${n})) (attrNames d.value))) pushed;
      firstUnknown = head unknown;
      node = mapAttrs
        (name: sub:
          if isOption sub then evalOption sub (defsOf name)
          else evalNode (loc ++ [ name ]) sub (defsOf name))
        tree;
    in
    if unknown == [ ] then node
    else throw "${showLoc (loc ++ [ firstUnknown.name ])}: no such option (defined in ${firstUnknown.file}); the options here are: ${concatStringsSep ", " (attrNames tree)}";

  evalOption = opt: defs:
    let
      withDefault = defs ++ (if opt ? default then [{ file = "the default of ${showLoc opt.loc}"; value = mkOptionDefault opt.default; }] else [ ]);
      merged = mergeDefinitions opt.loc opt.type withDefault;
    in
    if merged.isDefined then merged.value
    else throw "${showLoc opt.loc}: this option has no value and no default; define it (declared in ${showFiles opt.declarations})";

  # evalModules { modules; specialArgs ? {}; prefix ? []; } → { config; options; }
  evalModules = { modules, specialArgs ? { }, prefix ? [ ] }:
    let
      args = { inherit lib config options; } // specialArgs;
      collected = collectModules args "<evalModules>" modules;
      options = mergeDeclarations prefix (map (m: { inherit (m) file options; }) collected);
      config = evalNode prefix options (map (m: { inherit (m) file; value = m.config; }) collected);
    in
    { inherit config options; };

  types = import ./types.nix {
    inherit evalModules mergeDefinitions pushDown showLoc showValue showFiles;
  };

  lib = {
    inherit evalModules mkOption mkEnableOption mkIf mkMerge mkOverride mkDefault mkForce
      mkOptionDefault literalExpression types;
  };
in
lib
