//! Stacks autonix recognises but cannot build: Haskell (Cabal, Stack), .NET and Hugo sites.
//! Recognising them turns a wrong flake (only a language counted, a Hugo site's `go.mod`
//! taken for a Go program) into a refusal that says what to use instead.

use crate::detect::{ev, ev_line, Ctx, Out};
use crate::model::Evidence;

pub fn detect(ctx: &Ctx<'_>, out: &mut Out) {
    // One pass over the project's top-level files: this runs for every project.
    let mut root_files: Vec<&str> = Vec::new();
    for f in &ctx.files {
        let local = ctx.local(&f.path);
        if !local.contains('/') {
            root_files.push(local);
        }
    }
    // Files at the project root, in the order of `suffixes` (the package file first).
    let top_level = |suffixes: &[&str]| -> Vec<String> {
        suffixes
            .iter()
            .flat_map(|s| {
                root_files
                    .iter()
                    .filter(move |p| p.ends_with(s))
                    .map(|p| ctx.path(p))
            })
            .collect()
    };
    let haskell = top_level(&[".cabal", "cabal.project", "stack.yaml"]);
    if let Some(first) = haskell.first() {
        out.error(
            format!(
                "{first} makes this a Haskell project, which autonix cannot build yet; write its flake by hand with nixpkgs' haskellPackages.callCabal2nix"
            ),
            haskell.iter().map(|f| ev(f, "Haskell build file")).collect(),
        );
    }
    let dotnet = top_level(&[".csproj", ".fsproj", ".vbproj", ".sln"]);
    if let Some(first) = dotnet.first() {
        out.error(
            format!(
                "{first} makes this a .NET project, which autonix cannot build yet; write its flake by hand with nixpkgs' buildDotnetModule"
            ),
            dotnet.iter().map(|f| ev(f, ".NET project file")).collect(),
        );
    }
    if let Some(config) = hugo_config(ctx) {
        let mut evidence = vec![ev(&config, "Hugo site configuration")];
        let pin = hugo_version(ctx);
        if let Some((_, e)) = &pin {
            evidence.push(e.clone());
        }
        let asks = pin
            .map(|(v, e)| {
                format!(
                    " (it asks for Hugo {v} at {}:{})",
                    e.file,
                    e.line.unwrap_or(0)
                )
            })
            .unwrap_or_default();
        out.error(
            format!(
                "{config} makes this a Hugo site{asks}, which autonix cannot build yet; write its flake by hand with pkgs.hugo"
            ),
            evidence,
        );
    }
}

/// The configuration file of a Hugo site: `hugo.toml` (or `.yaml`/`.json`), or the older
/// `config.toml` beside the `content/` and `layouts/` or `themes/` a site has.
pub fn hugo_config(ctx: &Ctx<'_>) -> Option<String> {
    for name in ["hugo.toml", "hugo.yaml", "hugo.json"] {
        if ctx.has(name) {
            return Some(ctx.path(name));
        }
    }
    let config = ["config.toml", "config.yaml"].iter().find(|n| ctx.has(n))?;
    let has_dir = |dir: &str| ctx.find(|p| p.starts_with(dir)).next().is_some();
    let site = has_dir("content/") && (has_dir("layouts/") || has_dir("themes/"));
    site.then(|| ctx.path(config))
}

/// `HUGO_VERSION` as CI or Netlify sets it.
fn hugo_version(ctx: &Ctx<'_>) -> Option<(String, Evidence)> {
    let mut candidates: Vec<String> = vec![ctx.path("netlify.toml")];
    candidates.extend(
        ctx.inv
            .texts
            .range(".github/workflows/".to_string()..)
            .take_while(|(p, _)| p.starts_with(".github/workflows/"))
            .map(|(p, _)| p.clone()),
    );
    for path in candidates {
        let Some(text) = ctx.inv.text(&path) else {
            continue;
        };
        for (i, line) in text.lines().enumerate() {
            let Some(at) = line.find("HUGO_VERSION") else {
                continue;
            };
            let rest = line[at + "HUGO_VERSION".len()..].trim_start_matches(|c: char| {
                c == '"' || c == '\'' || c == ':' || c == '=' || c.is_whitespace()
            });
            let version: String = rest
                .trim_start_matches('v')
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            if version.contains('.') {
                let line_no = u32::try_from(i + 1).ok();
                return Some((
                    version.clone(),
                    ev_line(&path, line_no, format!("HUGO_VERSION {version}")),
                ));
            }
        }
    }
    None
}
