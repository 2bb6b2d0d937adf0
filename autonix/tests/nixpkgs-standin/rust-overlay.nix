# Test-only stand-in for rust-overlay's overlay: `rust-bin` with the attributes generated
# flakes use. `fromRustupToolchainFile` reads the file, as the real one does.
final: prev: {
  rust-bin = {
    fromRustupToolchainFile = file:
      assert builtins.isString (builtins.readFile file);
      prev.rustc;
    stable = builtins.listToAttrs (map (v: { name = v; value = { default = prev.rustc; }; })
      [ "1.70.0" "1.75.0" "1.79.0" "1.80.0" "1.82.0" "1.88.0" ]) // { latest.default = prev.rustc; };
    beta.latest.default = prev.rustc;
    nightly.latest.default = prev.rustc;
  };
}
