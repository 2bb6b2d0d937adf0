//! Nix files already in the repository.

use crate::detect::{ev, Ctx, Out};
use crate::model::{confidence, Ecosystem, EcosystemKind, Facts};

pub fn detect(ctx: &Ctx<'_>, out: &mut Out) {
    for (name, reason) in [
        ("flake.nix", "the repository already has a flake"),
        ("shell.nix", "a nix-shell environment exists"),
        ("flake.lock", "flake inputs are locked"),
    ] {
        if ctx.has(name) {
            out.add(
                name,
                confidence::CERTAIN,
                vec![ev(ctx.path(name), reason)],
                Facts::Nix {
                    file: ctx.path(name),
                },
            );
        }
    }
    if ctx.has("flake.nix") {
        out.warn(
            format!(
                "{} exists; `autonix flake` will not overwrite it unless forced, compare before replacing",
                ctx.path("flake.nix")
            ),
            vec![ev(ctx.path("flake.nix"), "existing flake")],
        );
    }
    if ctx.has("default.nix") {
        let text = ctx.text("default.nix").unwrap_or_default();
        let mut eco = Ecosystem::new(EcosystemKind::Nix, ctx.path("default.nix"));
        // A function of its dependencies can be `callPackage`d; anything else is imported.
        let callable = text.trim_start().starts_with('{');
        eco.backend = Some(if callable { "callPackage" } else { "import" }.into());
        out.add(
            "Nix expression default.nix",
            confidence::CERTAIN,
            vec![ev(ctx.path("default.nix"), "a Nix build expression exists")],
            Facts::Ecosystem(eco),
        );
    }
}
