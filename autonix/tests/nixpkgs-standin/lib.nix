# The few nixpkgs `lib` functions generated flakes call, with nixpkgs' semantics.
rec {
  genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);
  fix = f: let x = f x; in x;
  # nixpkgs' fake SRI hash: evaluates; a real build would report the right one.
  fakeHash = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
  optionals = cond: list: if cond then list else [ ];
}
