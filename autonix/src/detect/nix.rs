//! Nix files already in the repository, and how a repository path is written as a Nix path.

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

/// A repository-relative path (`.` for the root) as a Nix path expression relative to the
/// flake: `./api` when the path is a valid Nix path literal, else `(./. + "/my app")` —
/// a literal may only hold letters, digits and `._-+`, and anything else (`my app`,
/// `a(b)`, `x"y`) would not parse.
pub fn path_expr(rel: &str) -> String {
    let rel = rel.trim_start_matches("./");
    if rel.is_empty() || rel == "." {
        return "./.".to_string();
    }
    let literal = rel.split('/').all(|part| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'))
    });
    if literal {
        return format!("./{rel}");
    }
    let mut quoted = String::with_capacity(rel.len() + 12);
    quoted.push_str("(./. + \"/");
    let mut chars = rel.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '$' if chars.peek() == Some(&'{') => quoted.push_str("\\$"),
            c => quoted.push(c),
        }
    }
    quoted.push_str("\")");
    quoted
}

#[cfg(test)]
mod tests {
    use super::path_expr;

    #[test]
    fn paths_that_are_not_nix_literals_are_quoted() {
        let cases = [
            (".", "./."),
            ("api", "./api"),
            ("services/api-v2/Cargo.lock", "./services/api-v2/Cargo.lock"),
            ("my app", "(./. + \"/my app\")"),
            ("a(b)/Cargo.lock", "(./. + \"/a(b)/Cargo.lock\")"),
            ("x\"y", "(./. + \"/x\\\"y\")"),
            ("c\\d", "(./. + \"/c\\\\d\")"),
            ("${x}", "(./. + \"/\\${x}\")"),
        ];
        for (rel, want) in cases {
            assert_eq!(path_expr(rel), want, "{rel}");
        }
    }
}
