# Option types for the evaluator in ./modules.nix, named and behaving like their nixpkgs
# counterparts (`types.str`, `types.ints.positive`, `types.attrsOf`, `types.submodule`, …) so a
# module written against nixpkgs' lib evaluates the same here. `description` is the noun phrase
# used in "expected <description>, got <value>".
{ evalModules, mergeDefinitions, pushDown, showLoc, showValue, showFiles }:
let
  inherit (builtins)
    all attrNames concatLists concatMap concatStringsSep elem filter genList head isAttrs isBool
    isFunction isInt isList isPath isString length listToAttrs map match substring tail toJSON;

  last = list: builtins.elemAt list (length list - 1);

  mkOptionType =
    { name
    , description
    , check ? (_: true)
    , merge ? mergeEqualOption
    , getSubOptions ? (_: { })
    , nestedTypes ? { }
    }:
    { _type = "option-type"; inherit name description check merge getSubOptions nestedTypes; };

  # A scalar may be defined in several modules only if they agree.
  mergeEqualOption = loc: defs:
    let first = head defs; in
    if all (d: d.value == first.value) (tail defs) then first.value
    else throw "${showLoc loc}: defined with different values (${concatStringsSep ", " (map (d: "${showValue d.value} in ${d.file}") defs)}); keep one, or use mkForce / mkDefault";

  mergeOneOption = loc: defs:
    if length defs == 1 then (head defs).value
    else throw "${showLoc loc}: defined more than once (in ${showFiles (map (d: d.file) defs)}); keep one, or use mkForce / mkDefault";

  isDerivation = v: isAttrs v && (v.type or "") == "derivation";
  isStorePath = v: isString v && match "/nix/store/[0-9a-z]{32}-[^/]+" v != null;

  int = mkOptionType { name = "int"; description = "an integer"; check = isInt; };
  between = lo: hi: mkOptionType {
    name = "intBetween";
    description = "an integer between ${toString lo} and ${toString hi}";
    check = v: isInt v && v >= lo && v <= hi;
  };

  types = rec {
    inherit mkOptionType isDerivation;

    anything = mkOptionType { name = "anything"; description = "any value"; };
    raw = mkOptionType { name = "raw"; description = "a raw value"; merge = mergeOneOption; };
    bool = mkOptionType { name = "bool"; description = "a boolean (true or false)"; check = isBool; };
    inherit int;
    ints = {
      inherit between;
      positive = mkOptionType { name = "positiveInt"; description = "a positive integer"; check = v: isInt v && v > 0; };
      unsigned = mkOptionType { name = "unsignedInt"; description = "a non-negative integer"; check = v: isInt v && v >= 0; };
      u16 = between 0 65535;
      u32 = between 0 4294967295;
    };
    port = ints.u16;
    str = mkOptionType { name = "str"; description = "a string"; check = isString; };
    nonEmptyStr = mkOptionType { name = "nonEmptyStr"; description = "a non-empty string"; check = v: isString v && v != ""; };
    lines = mkOptionType {
      name = "lines";
      description = "a string (definitions are joined with newlines)";
      check = isString;
      merge = _loc: defs: concatStringsSep "\n" (map (d: d.value) defs);
    };
    strMatching = pattern: mkOptionType {
      name = "strMatching";
      description = "a string matching the pattern ${pattern}";
      check = v: isString v && match pattern v != null;
    };
    enum = values: mkOptionType {
      name = "enum";
      description = "one of ${concatStringsSep ", " (map toJSON values)}";
      check = v: elem v values;
    };
    path = mkOptionType {
      name = "path";
      description = "an absolute path";
      check = v: isPath v || isDerivation v || (isString v && substring 0 1 v == "/");
    };
    package = mkOptionType {
      name = "package";
      description = "a derivation or a store path";
      check = v: isDerivation v || isStorePath v;
      merge = mergeOneOption;
    };

    nullOr = elemType: mkOptionType {
      name = "nullOr";
      description = "null or ${elemType.description}";
      check = v: v == null || elemType.check v;
      merge = loc: defs:
        let nulls = filter (d: d.value == null) defs; in
        if length nulls == length defs then null
        else if nulls != [ ] then throw "${showLoc loc}: defined both as null and as a value (in ${showFiles (map (d: d.file) defs)})"
        else elemType.merge loc defs;
      nestedTypes.elemType = elemType;
    };

    listOf = elemType: mkOptionType {
      name = "listOf";
      description = "a list of ${elemType.description}";
      check = isList;
      merge = loc: defs:
        let
          elems = concatMap (d: genList (i: { inherit (d) file; index = i; value = builtins.elemAt d.value i; }) (length d.value)) defs;
          numbered = genList (n: builtins.elemAt elems n // { inherit n; }) (length elems);
          merged = map (e: mergeDefinitions (loc ++ [ "[${toString e.n}]" ]) elemType [{ inherit (e) file value; }]) numbered;
        in
        map (m: m.value) (filter (m: m.isDefined) merged);
      nestedTypes.elemType = elemType;
    };

    attrsOf = elemType: mkOptionType {
      name = "attrsOf";
      description = "an attribute set of ${elemType.description}";
      check = isAttrs;
      merge = loc: defs:
        let
          pushed = concatMap (d: map (value: { inherit (d) file; inherit value; }) (pushDown loc d.file d.value)) defs;
          names = attrNames (builtins.foldl' (acc: d: acc // d.value) { } pushed);
          defsOf = name: concatMap (d: if d.value ? ${name} then [{ inherit (d) file; value = d.value.${name}; }] else [ ]) pushed;
          merged = map (name: { inherit name; m = mergeDefinitions (loc ++ [ name ]) elemType (defsOf name); }) names;
        in
        listToAttrs (map (e: { inherit (e) name; value = e.m.value; }) (filter (e: e.m.isDefined) merged));
      nestedTypes.elemType = elemType;
    };

    # A set of options of its own. Each definition is a module (usually the shorthand attribute
    # set); inside, `name` is the attribute name when the submodule sits in an attrsOf.
    submodule = modules: mkOptionType {
      name = "submodule";
      description = "an attribute set of sub-options";
      check = v: isAttrs v || isFunction v || isPath v;
      merge = loc: defs:
        (evalModules {
          prefix = loc;
          specialArgs.name = last loc;
          modules = (if isList modules then modules else [ modules ])
            ++ map (d: { _file = d.file; imports = [ d.value ]; }) defs;
        }).config;
      getSubOptions = loc: (evalModules { prefix = loc; specialArgs.name = "<name>"; modules = if isList modules then modules else [ modules ]; }).options;
    };

    # A module kept for later evaluation (the NixOS configuration of a VM).
    deferredModule = mkOptionType {
      name = "deferredModule";
      description = "a module";
      check = v: isAttrs v || isFunction v || isPath v;
      merge = _loc: defs: { imports = map (d: { _file = d.file; imports = [ d.value ]; }) defs; };
    };
  };
in
types
