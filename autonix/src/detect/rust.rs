//! Cargo packages and workspaces.

use crate::detect::{ev, ev_line, line_of, parse_failure, Ctx, Out};
use crate::model::{
    confidence, Ecosystem, EcosystemKind, Evidence, Facts, TestCommand, TestSource,
};

pub fn detect(ctx: &Ctx<'_>, out: &mut Out) {
    let Some(text) = ctx.text("Cargo.toml") else {
        return;
    };
    let manifest = ctx.path("Cargo.toml");
    let mut eco = Ecosystem::new(EcosystemKind::Cargo, manifest.clone());
    let mut evidence = vec![ev(&manifest, "Cargo manifest")];
    let doc: toml::Value = match toml::from_str(text) {
        Ok(doc) => doc,
        Err(e) => {
            out.warn(
                format!(
                    "{}; package details unknown",
                    parse_failure(ctx.inv, &manifest, "TOML", e.message())
                ),
                vec![ev(&manifest, "invalid TOML")],
            );
            out.add("Cargo", confidence::HIGH, evidence, Facts::Ecosystem(eco));
            return;
        }
    };
    if ctx.has("Cargo.lock") {
        eco.lockfile = Some(ctx.path("Cargo.lock"));
        evidence.push(ev(ctx.path("Cargo.lock"), "lockfile pins every dependency"));
    } else {
        out.warn(
            format!(
                "{manifest} has no Cargo.lock beside it; rustPlatform.buildRustPackage needs one: run `cargo generate-lockfile` and commit it"
            ),
            vec![ev(&manifest, "no Cargo.lock")],
        );
    }
    let package = doc.get("package");
    eco.package = package
        .and_then(|p| p.get("name"))
        .and_then(|v| v.as_str())
        .map(String::from);
    eco.version = package
        .and_then(|p| p.get("version"))
        .and_then(|v| v.as_str())
        .map(String::from)
        .or_else(|| {
            doc.get("workspace")
                .and_then(|w| w.get("package"))
                .and_then(|p| p.get("version"))
                .and_then(|v| v.as_str())
                .map(String::from)
        });
    // Members: listed paths, with `dir/*` globs expanded against the manifests found.
    let mut member_dirs: Vec<String> = Vec::new();
    if let Some(members) = doc
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(|m| m.as_array())
    {
        for m in members.iter().filter_map(|m| m.as_str()) {
            let m = m.trim_end_matches('/');
            if let Some(prefix) = m.strip_suffix("/*") {
                let mut found: Vec<String> = ctx
                    .find(|p| {
                        p.strip_prefix(prefix)
                            .and_then(|r| r.strip_prefix('/'))
                            .and_then(|r| r.strip_suffix("/Cargo.toml"))
                            .is_some_and(|name| !name.contains('/'))
                    })
                    .map(|f| {
                        ctx.local(&f.path)
                            .trim_end_matches("/Cargo.toml")
                            .to_string()
                    })
                    .collect();
                found.sort();
                member_dirs.extend(found);
            } else {
                member_dirs.push(m.to_string());
            }
        }
        evidence.push(ev_line(
            &manifest,
            line_of(text, "[workspace]"),
            format!("workspace with {} members", member_dirs.len()),
        ));
    }
    eco.members = member_dirs.clone();
    // Binaries and dependencies of the root package and every member.
    let mut crates: Vec<(String, toml::Value)> = Vec::new();
    if package.is_some() {
        crates.push((String::new(), doc.clone()));
    }
    for dir in &member_dirs {
        let path = format!("{dir}/Cargo.toml");
        match ctx.text(&path).map(toml::from_str::<toml::Value>) {
            Some(Ok(member)) => crates.push((dir.clone(), member)),
            Some(Err(e)) => out.warn(
                parse_failure(ctx.inv, &ctx.path(&path), "TOML", e.message()),
                vec![ev(ctx.path(&path), "invalid TOML")],
            ),
            None => out.warn(
                format!("workspace member {dir} listed in {manifest} has no Cargo.toml"),
                vec![ev_line(&manifest, line_of(text, dir), "missing member")],
            ),
        }
    }
    let mut deps = Vec::new();
    for (dir, krate) in &crates {
        let name = krate
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        let join = |p: &str| {
            if dir.is_empty() {
                p.to_string()
            } else {
                format!("{dir}/{p}")
            }
        };
        let mut bins: Vec<String> = krate
            .get("bin")
            .and_then(|b| b.as_array())
            .map(|bins| {
                bins.iter()
                    .filter_map(|b| b.get("name").and_then(|n| n.as_str()).map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        if ctx.has(&join("src/main.rs")) && !bins.iter().any(|b| b == name) {
            bins.push(name.to_string());
            evidence.push(ev(
                ctx.path(&join("src/main.rs")),
                format!("binary `{name}`"),
            ));
        }
        let bin_dir = join("src/bin/");
        for f in ctx.find(|p| {
            p.strip_prefix(&bin_dir)
                .is_some_and(|rest| rest.ends_with(".rs") && !rest.contains('/'))
        }) {
            let local = ctx.local(&f.path);
            let stem = local
                .rsplit('/')
                .next()
                .unwrap_or(local)
                .trim_end_matches(".rs")
                .to_string();
            if !bins.contains(&stem) {
                evidence.push(ev(&f.path, format!("binary `{stem}`")));
                bins.push(stem);
            }
        }
        eco.binaries
            .extend(bins.into_iter().filter(|b| !b.is_empty()));
        for table in ["dependencies", "dev-dependencies"] {
            if let Some(t) = krate.get(table).and_then(|t| t.as_table()) {
                deps.extend(t.keys().cloned());
            }
        }
    }
    eco.binaries.sort();
    eco.binaries.dedup();
    deps.sort();
    deps.dedup();
    eco.dependencies = deps;
    let what = if eco.members.is_empty() {
        format!(
            "Cargo package {}",
            eco.package.as_deref().unwrap_or("(unnamed)")
        )
    } else {
        format!("Cargo workspace ({} members)", eco.members.len())
    };
    // In a workspace, plain `cargo test` tests only the root package (or the default
    // members); CI runs `--workspace` to test every member.
    let command = if eco.members.is_empty() {
        "cargo test"
    } else {
        "cargo test --workspace"
    };
    out.add(what, confidence::CERTAIN, evidence, Facts::Ecosystem(eco));
    out.add(
        command,
        confidence::MEDIUM,
        vec![Evidence {
            file: manifest,
            line: None,
            reason: format!("Cargo projects test with `{command}`"),
        }],
        Facts::Test(TestCommand {
            command: command.into(),
            source: TestSource::Convention,
        }),
    );
}
