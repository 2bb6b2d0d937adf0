//! Go modules.

use crate::detect::toolchains::directive;
use crate::detect::{ev, in_example_or_test_dir, Ctx, Out};
use crate::model::{confidence, Ecosystem, EcosystemKind, Facts, TestCommand, TestSource};

pub fn detect(ctx: &Ctx<'_>, out: &mut Out) {
    let Some(text) = ctx.text("go.mod") else {
        return;
    };
    let manifest = ctx.path("go.mod");
    if ctx.find(|p| p.ends_with(".go")).next().is_none() {
        // Hugo Modules and other tools use go.mod for dependencies only: no Go program,
        // nothing for `go build` or `go test` to do.
        out.warn(
            format!("{manifest} has no .go file beside it, so it is not taken for a Go program"),
            vec![ev(&manifest, "go.mod without Go sources")],
        );
        return;
    }
    let mut eco = Ecosystem::new(EcosystemKind::Go, manifest.clone());
    let mut evidence = vec![ev(&manifest, "Go module")];
    if let Some((module, _)) = directive(text, "module") {
        let module = module.trim_matches('"');
        let mut parts = module.rsplit('/');
        let mut name = parts.next().unwrap_or(module);
        // `example.com/tool/v2`: the major-version suffix is not the name.
        if name.starts_with('v') && name[1..].chars().all(|c| c.is_ascii_digit()) && name.len() > 1
        {
            name = parts.next().unwrap_or(name);
        }
        eco.package = Some(name.to_string());
    }
    if ctx.has("go.sum") {
        eco.lockfile = Some(ctx.path("go.sum"));
        evidence.push(ev(ctx.path("go.sum"), "dependency checksums"));
    }
    if ctx.skipped_dir("vendor") {
        eco.backend = Some("vendor".into());
        evidence.push(ev(ctx.path("vendor"), "dependencies are vendored"));
    }
    // `require` lines, in a block or single.
    let mut in_block = false;
    for line in text.lines() {
        let line = line.split("//").next().unwrap_or("").trim();
        if line.starts_with("require (") {
            in_block = true;
            continue;
        }
        if in_block && line == ")" {
            in_block = false;
            continue;
        }
        let dep = if in_block {
            line.split_whitespace().next()
        } else {
            line.strip_prefix("require ")
                .and_then(|r| r.split_whitespace().next())
        };
        if let Some(dep) = dep.filter(|d| !d.is_empty()) {
            eco.dependencies.push(dep.to_string());
        }
    }
    eco.dependencies.sort();
    eco.dependencies.dedup();
    // Main packages: a `main.go` declaring `package main` marks one.
    let mut examples = 0;
    for f in ctx.find(|p| p == "main.go" || p.ends_with("/main.go")) {
        let Some(src) = ctx.inv.text(&f.path) else {
            continue;
        };
        let is_main = src
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("package "))
            .is_some_and(|l| l == "package main");
        if !is_main {
            continue;
        }
        let local = ctx.local(&f.path);
        if in_example_or_test_dir(local) {
            examples += 1;
            continue;
        }
        let dir = local.strip_suffix("/main.go").unwrap_or(".");
        eco.binaries.push(dir.to_string());
        evidence.push(ev(&f.path, "package main"));
    }
    eco.binaries.sort();
    if examples > 0 {
        evidence.push(ev(
            &manifest,
            format!("{examples} main package(s) under example or test directories are not built"),
        ));
    }
    let what = format!(
        "Go module {}",
        eco.package.as_deref().unwrap_or("(unnamed)")
    );
    out.add(what, confidence::CERTAIN, evidence, Facts::Ecosystem(eco));
    out.add(
        "go test ./...",
        confidence::MEDIUM,
        vec![ev(&manifest, "Go modules test with `go test ./...`")],
        Facts::Test(TestCommand {
            command: "go test ./...".into(),
            source: TestSource::Convention,
        }),
    );
}
