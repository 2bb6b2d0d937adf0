//! npm, Yarn, pnpm and Bun projects.

use serde_json::Value;

use crate::detect::{ev, ev_line, line_of, parse_failure, Ctx, Out};
use crate::model::{
    confidence, Ecosystem, EcosystemKind, Facts, Process, ProcessSource, TestCommand, TestSource,
};

/// The placeholder `npm init` writes; it is not a test command.
const NPM_PLACEHOLDER_TEST: &str = "no test specified";

/// Lockfiles in the order that decides the package manager when `packageManager` is absent.
const LOCKFILES: [(&str, EcosystemKind); 6] = [
    ("pnpm-lock.yaml", EcosystemKind::Pnpm),
    ("yarn.lock", EcosystemKind::Yarn),
    ("bun.lock", EcosystemKind::Bun),
    ("bun.lockb", EcosystemKind::Bun),
    ("package-lock.json", EcosystemKind::Npm),
    ("npm-shrinkwrap.json", EcosystemKind::Npm),
];

pub fn detect(ctx: &Ctx<'_>, out: &mut Out) {
    let Some(text) = ctx.text("package.json") else {
        return;
    };
    let manifest = ctx.path("package.json");
    let json: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            out.warn(
                format!(
                    "{}; package details unknown",
                    parse_failure(ctx.inv, &manifest, "JSON", e)
                ),
                vec![ev(&manifest, "invalid JSON")],
            );
            out.add(
                "npm",
                confidence::HIGH,
                vec![ev(&manifest, "package.json")],
                Facts::Ecosystem(Ecosystem::new(EcosystemKind::Npm, manifest)),
            );
            return;
        }
    };
    let mut evidence = vec![ev(&manifest, "package.json")];
    // A workspace member is installed by its workspace: the lockfile and the package
    // manager are the workspace root's.
    let lock_path = |f: &str| ctx.workspace_path(f).unwrap_or_else(|| ctx.path(f));
    let present: Vec<(&str, EcosystemKind)> = LOCKFILES
        .iter()
        .copied()
        .filter(|(f, _)| ctx.inv.has_file(&lock_path(f)))
        .collect();
    let workspace_json: Option<(String, Value)> =
        ctx.workspace_path("package.json").and_then(|path| {
            let json = serde_json::from_str(ctx.inv.text(&path)?).ok()?;
            Some((path, json))
        });
    let (pm_manifest, pm_text, pm_json) = match &workspace_json {
        Some((path, ws)) if json.get("packageManager").is_none() => {
            (path.clone(), ctx.inv.text(path).unwrap_or_default(), ws)
        }
        _ => (manifest.clone(), text, &json),
    };
    let declared = pm_json
        .get("packageManager")
        .and_then(Value::as_str)
        .and_then(|pm| {
            let name = pm.split('@').next()?;
            let kind = match name {
                "npm" => EcosystemKind::Npm,
                "yarn" => EcosystemKind::Yarn,
                "pnpm" => EcosystemKind::Pnpm,
                "bun" => EcosystemKind::Bun,
                _ => return None,
            };
            Some((pm, kind))
        });
    let kind = if let Some((pm, kind)) = declared {
        evidence.push(ev_line(
            &pm_manifest,
            line_of(pm_text, "\"packageManager\""),
            format!("packageManager is {pm}"),
        ));
        kind
    } else if let Some((file, kind)) = present.first() {
        evidence.push(ev(lock_path(file), format!("{} lockfile", kind.name())));
        *kind
    } else {
        EcosystemKind::Npm
    };
    // pnpm's release (eco.backend) depends on the nixpkgs branch: chosen with the
    // toolchains (detect::toolchains::resolve_on).
    let mut eco = Ecosystem::new(kind, manifest.clone());
    eco.lockfile = present
        .iter()
        .find(|(_, k)| *k == kind)
        .map(|(f, _)| lock_path(f));
    if eco.lockfile.is_none() {
        out.warn(
            format!(
                "{manifest} has no {} lockfile; dependencies cannot be pinned for a Nix build until one is committed",
                kind.name()
            ),
            vec![ev(&manifest, "no lockfile")],
        );
    }
    let kinds: Vec<EcosystemKind> = {
        let mut k: Vec<EcosystemKind> = present.iter().map(|(_, k)| *k).collect();
        k.dedup();
        k
    };
    if kinds.len() > 1 {
        out.warn(
            format!(
                "lockfiles of several package managers are present ({}); using {}",
                present
                    .iter()
                    .map(|(f, _)| *f)
                    .collect::<Vec<_>>()
                    .join(", "),
                kind.name()
            ),
            present
                .iter()
                .map(|(f, _)| ev(lock_path(f), "lockfile"))
                .collect(),
        );
    }
    eco.package = json.get("name").and_then(Value::as_str).map(String::from);
    eco.version = json
        .get("version")
        .and_then(Value::as_str)
        .map(String::from);
    let workspaces = match json.get("workspaces") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect(),
        Some(Value::Object(o)) => o
            .get("packages")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let mut workspaces: Vec<String> = workspaces;
    if let Some(pnpm_ws) = ctx.text("pnpm-workspace.yaml") {
        if let Ok(docs) = yaml_rust2::YamlLoader::load_from_str(pnpm_ws) {
            if let Some(list) = docs.first().and_then(|d| d["packages"].as_vec()) {
                workspaces.extend(list.iter().filter_map(|p| p.as_str()).map(String::from));
            }
        }
    }
    eco.members = expand_members(ctx, &workspaces);
    if !workspaces.is_empty() {
        evidence.push(ev_line(
            &manifest,
            line_of(text, "\"workspaces\""),
            format!("workspaces: {}", workspaces.join(", ")),
        ));
    }
    let mut deps: Vec<String> = Vec::new();
    for table in ["dependencies", "devDependencies"] {
        if let Some(o) = json.get(table).and_then(Value::as_object) {
            deps.extend(o.keys().cloned());
        }
    }
    deps.sort();
    deps.dedup();
    eco.dependencies = deps;
    if let Some(scripts) = json.get("scripts").and_then(Value::as_object) {
        for (k, v) in scripts {
            if let Some(v) = v.as_str() {
                eco.scripts.insert(k.clone(), v.to_string());
            }
        }
    }
    match json.get("bin") {
        Some(Value::String(_)) => {
            if let Some(name) = &eco.package {
                eco.binaries
                    .push(name.rsplit('/').next().unwrap_or(name).to_string());
            }
        }
        Some(Value::Object(o)) => eco.binaries.extend(o.keys().cloned()),
        _ => {}
    }
    let runner = match kind {
        EcosystemKind::Yarn => "yarn",
        EcosystemKind::Pnpm => "pnpm",
        EcosystemKind::Bun => "bun run",
        _ => "npm",
    };
    if let Some(start) = eco.scripts.get("start") {
        // A member starts from its workspace's package, the way its package manager runs
        // one member's script from the workspace root.
        let command = match (&ctx.workspace, kind) {
            (None, _) => format!("{runner} start"),
            (Some(_), EcosystemKind::Pnpm) => {
                format!("pnpm --filter {} start", member_name(ctx, &eco))
            }
            (Some(_), EcosystemKind::Yarn) => {
                format!("yarn workspace {} start", member_name(ctx, &eco))
            }
            (Some(_), EcosystemKind::Bun) => {
                format!("bun run --filter {} start", member_name(ctx, &eco))
            }
            (Some(ws), _) => format!("npm start --workspace {}", member_dir(ctx, ws)),
        };
        out.add(
            format!("{command} → {start}"),
            confidence::HIGH,
            vec![ev_line(
                &manifest,
                line_of(text, "\"start\""),
                "scripts.start",
            )],
            Facts::Process(Process {
                name: "web".into(),
                command,
                source: ProcessSource::PackageJson,
            }),
        );
    } else if let Some(main) = json
        .get("main")
        .and_then(Value::as_str)
        // A workspace member's `main` is what the other members import.
        .filter(|_| ctx.workspace.is_none())
    {
        if ctx.has(main) {
            out.add(
                format!("node {main}"),
                confidence::MEDIUM,
                vec![ev_line(
                    &manifest,
                    line_of(text, "\"main\""),
                    "main entry point, no start script",
                )],
                Facts::Process(Process {
                    name: "web".into(),
                    command: format!("node {main}"),
                    source: ProcessSource::PackageJson,
                }),
            );
        }
    }
    if let Some(test) = eco.scripts.get("test") {
        if !test.contains(NPM_PLACEHOLDER_TEST) {
            let command = match kind {
                EcosystemKind::Bun => "bun run test".to_string(),
                _ => format!("{runner} test"),
            };
            out.add(
                format!("{command} → {test}"),
                confidence::HIGH,
                vec![ev_line(
                    &manifest,
                    line_of(text, "\"test\""),
                    "scripts.test",
                )],
                Facts::Test(TestCommand {
                    command,
                    source: TestSource::PackageJson,
                }),
            );
        }
    }
    let what = format!(
        "{} package {}",
        kind.name(),
        eco.package.as_deref().unwrap_or("(unnamed)")
    );
    out.add(what, confidence::CERTAIN, evidence, Facts::Ecosystem(eco));
}

/// The name a package manager selects a workspace member by: its package name, else its
/// directory.
fn member_name(ctx: &Ctx<'_>, eco: &Ecosystem) -> String {
    eco.package
        .clone()
        .unwrap_or_else(|| ctx.dir.rsplit('/').next().unwrap_or(&ctx.dir).to_string())
}

/// A member's directory relative to its workspace root (npm's `--workspace` takes it).
fn member_dir(ctx: &Ctx<'_>, workspace: &str) -> String {
    if workspace.is_empty() {
        return ctx.dir.clone();
    }
    ctx.dir
        .strip_prefix(workspace)
        .and_then(|d| d.strip_prefix('/'))
        .unwrap_or(&ctx.dir)
        .to_string()
}

/// Workspace globs (`packages/*`) expanded to the directories holding a `package.json`.
fn expand_members(ctx: &Ctx<'_>, patterns: &[String]) -> Vec<String> {
    let mut members = Vec::new();
    for pattern in patterns {
        let pattern = pattern.trim_end_matches('/');
        if let Some(prefix) = pattern
            .strip_suffix("/*")
            .or_else(|| pattern.strip_suffix("/**"))
        {
            // Members are projects of their own: their files are not the workspace's.
            let base = ctx.path(prefix);
            for f in ctx.inv.files.iter().filter(|f| {
                f.path
                    .strip_prefix(base.as_str())
                    .and_then(|r| r.strip_prefix('/'))
                    .and_then(|r| r.strip_suffix("/package.json"))
                    .is_some_and(|name| !name.contains('/'))
            }) {
                members.push(
                    ctx.local(&f.path)
                        .trim_end_matches("/package.json")
                        .to_string(),
                );
            }
        } else if ctx.has(&format!("{pattern}/package.json")) {
            members.push(pattern.to_string());
        }
    }
    members.sort();
    members.dedup();
    members
}
