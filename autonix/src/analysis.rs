//! From an inventory to an [`Analysis`]: finding project roots, running every detector on
//! each, resolving toolchains and attaching repository-level facts (CI, compose) to the
//! project they concern. Pure: no I/O happens here.

use std::collections::{BTreeMap, BTreeSet};

use crate::detect::toolchains::{self, dockerfile_images, image_tool, Resolution};
use crate::detect::{self, ci, ev, versions, Ctx, Out};
use crate::model::{
    confidence, Analysis, Detection, EcosystemKind, Evidence, Facts, NixpkgsChoice, Project,
    TestCommand, TestSource, Tool, SCHEMA_VERSION,
};
use crate::scan::manifests::{root_marker, RootMarker};
use crate::scan::Inventory;

/// A name safe as a Nix attribute and a Procurator VM name: lowercase letters, digits and
/// dashes, starting with a letter, at most 63 characters.
pub fn sanitize_name(raw: &str) -> String {
    let raw = raw.rsplit('/').next().unwrap_or(raw);
    let mut out = String::new();
    for c in raw.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out
        .trim_start_matches(|c: char| c.is_ascii_digit())
        .trim_matches('-');
    let mut out: String = out.chars().take(63).collect();
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        "app".to_string()
    } else {
        out
    }
}

/// The analysis of an inventory; `name` is the repository's name.
pub fn analyze(inv: &Inventory, name: &str) -> Analysis {
    let (roots, test_data, workspace_of) = project_roots(inv);
    // Files go to the deepest project root containing them. Files come sorted by path, so
    // those of one directory are neighbours and the root is looked up once per directory.
    let index_of: BTreeMap<&str, usize> = roots
        .iter()
        .enumerate()
        .map(|(i, r)| (r.as_str(), i))
        .collect();
    let mut files_of: Vec<Vec<&crate::scan::FileRecord>> = vec![Vec::new(); roots.len()];
    let mut last: Option<(&str, Option<usize>)> = None;
    for f in &inv.files {
        let dir = f.path.rsplit_once('/').map_or("", |(dir, _)| dir);
        let owner = match last {
            Some((last_dir, owner)) if last_dir == dir => owner,
            _ => {
                let owner = index_of
                    .get(nearest_root(&f.path, |d| index_of.contains_key(d)))
                    .copied();
                last = Some((dir, owner));
                owner
            }
        };
        if let Some(list) = owner.and_then(|i| files_of.get_mut(i)) {
            list.push(f);
        }
    }
    let mut pending = Vec::new();
    for (dir, files) in roots.iter().zip(files_of) {
        let ctx = Ctx {
            inv,
            dir: dir.clone(),
            files,
            workspace: workspace_of.get(dir).cloned(),
        };
        let mut out = Out::default();
        detect::rust::detect(&ctx, &mut out);
        detect::node::detect(&ctx, &mut out);
        detect::python::detect(&ctx, &mut out);
        detect::go::detect(&ctx, &mut out);
        detect::ruby::detect(&ctx, &mut out);
        detect::php::detect(&ctx, &mut out);
        detect::elixir::detect(&ctx, &mut out);
        detect::java::detect(&ctx, &mut out);
        detect::native::detect(&ctx, &mut out);
        detect::nix::detect(&ctx, &mut out);
        detect::containers::detect(&ctx, &mut out);
        detect::frameworks::detect(&ctx, &mut out);
        detect::listen::detect(&ctx, &mut out);
        detect::unsupported::detect(&ctx, &mut out);
        detect::backing::detect(&ctx, &mut out);
        let tools = tools_needed(&ctx, &out);
        pending.push((ctx, out, tools));
    }
    let (nixpkgs, resolutions) = choose_branch(&pending);
    let mut projects = Vec::new();
    for ((ctx, mut out, _), resolution) in pending.into_iter().zip(resolutions) {
        let dir = &ctx.dir;
        merge_resolution(&mut out, resolution);
        languages(&ctx, &mut out);
        // The name comes from the ecosystem that builds the project: JavaScript tooling
        // beside a Gemfile or a pyproject only builds assets, so its name is not the app's.
        let package_of = |node: bool| {
            out.detections.iter().find_map(|d| match &d.facts {
                Facts::Ecosystem(e) if e.ecosystem.is_node() == node => e.package.clone(),
                _ => None,
            })
        };
        let has_other = out.detections.iter().any(|d| {
            matches!(&d.facts, Facts::Ecosystem(e) if !e.ecosystem.is_node() && e.ecosystem != EcosystemKind::Make)
        });
        let name = if has_other {
            package_of(false)
        } else {
            package_of(true).or_else(|| package_of(false))
        }
        .map(|p| sanitize_name(&p))
        .unwrap_or_else(|| sanitize_name(if dir.is_empty() { name } else { dir.as_str() }));
        let skipped: Vec<&String> = test_data
            .iter()
            .filter(|t| {
                nearest_root(&format!("{t}/x"), |d| index_of.contains_key(d)) == dir.as_str()
            })
            .collect();
        if let Some(first) = skipped.first() {
            let evidence: Vec<Evidence> = skipped
                .iter()
                .take(3)
                .map(|t| ev((*t).clone(), "manifest in a test-data directory"))
                .collect();
            out.warn(
                format!(
                    "{} director{} with a manifest under test-data directories (first: {first}) {} taken as test data, not as projects",
                    skipped.len(),
                    if skipped.len() == 1 { "y" } else { "ies" },
                    if skipped.len() == 1 { "is" } else { "are" },
                ),
                evidence,
            );
        }
        if dir.contains(char::REPLACEMENT_CHARACTER) {
            // The scan replaced bytes that are not UTF-8; a flake is text and cannot name
            // the real directory.
            out.error(
                format!(
                    "the directory name `{dir}` is not valid UTF-8, so a flake cannot refer to it; rename the directory"
                ),
                vec![ev(dir.clone(), "project root")],
            );
        }
        projects.push(Project {
            path: if dir.is_empty() {
                ".".into()
            } else {
                dir.clone()
            },
            name,
            workspace: ctx.workspace.as_ref().map(|w| {
                if w.is_empty() {
                    ".".into()
                } else {
                    w.clone()
                }
            }),
            detections: out.detections,
            warnings: out.warnings,
            errors: out.errors,
        });
    }
    attach_ci(inv, &mut projects);
    attach_compose(&mut projects);
    // Drop an empty root; keep it when it is the only project so the caller sees something.
    if projects.len() > 1 {
        projects.retain(|p| p.path != "." || !p.detections.is_empty() || !p.warnings.is_empty());
    }
    dedupe_names(&mut projects);
    for p in &mut projects {
        p.detections.sort_by(|a, b| {
            a.facts
                .rank()
                .cmp(&b.facts.rank())
                .then_with(|| b.confidence.total_cmp(&a.confidence))
                .then_with(|| a.what.cmp(&b.what))
        });
        // Tests found by CI and by convention: keep the more specific one only.
        let mut seen = BTreeSet::new();
        p.detections.retain(|d| match &d.facts {
            Facts::Test(t) => seen.insert(t.command.clone()),
            _ => true,
        });
    }
    Analysis {
        schema: SCHEMA_VERSION,
        name: sanitize_name(name),
        nixpkgs,
        projects,
        stats: inv.stats.clone(),
    }
}

/// The oldest nixpkgs branch whose tables satisfy every project's version requirements,
/// with each project's toolchains resolved against it. When none satisfies them all, the
/// one that satisfies the most projects (the oldest of those): the others are refused or
/// warned about on their own, with the branch that would serve them — one project's
/// requirement never blocks the others.
fn choose_branch(pending: &[(Ctx<'_>, Out, BTreeSet<Tool>)]) -> (NixpkgsChoice, Vec<Resolution>) {
    let branches = versions::branches();
    let resolve = |b: &versions::Branch| -> Vec<Resolution> {
        pending
            .iter()
            .map(|(ctx, out, tools)| toolchains::resolve_on(ctx, tools, out, b))
            .collect()
    };
    let unmet = |r: &[Resolution]| r.iter().filter(|r| !r.unmet.is_empty()).count();
    // Newer branches are resolved only when the older ones fall short.
    let mut tried: Vec<Vec<Resolution>> = Vec::new();
    for b in branches {
        let r = resolve(b);
        let done = unmet(&r) == 0;
        tried.push(r);
        if done {
            break;
        }
    }
    let best = (0..tried.len())
        .min_by_key(|&i| (unmet(&tried[i]), i))
        .unwrap_or(0);
    let chosen = &branches[best];
    // Why not an older branch: the first thing the newest older one could not provide.
    let older = best.checked_sub(1).and_then(|i| {
        let first = tried[i].iter().find_map(|r| r.unmet.first())?;
        Some(format!(
            "{} does not satisfy them ({first})",
            branches[i].name
        ))
    });
    let reason = match (unmet(&tried[best]), older) {
        (0, None) => "the oldest branch autonix has tables for; it satisfies every version requirement".to_string(),
        (0, Some(older)) => {
            format!("the oldest branch that satisfies every version requirement: {older}")
        }
        (n, _) => format!(
            "no branch satisfies every project; {} leaves the fewest projects unsatisfied ({n} of {})",
            chosen.name,
            pending.len()
        ),
    };
    let mut resolutions = tried.swap_remove(best);
    if unmet(&resolutions) > 0 {
        for (i, r) in resolutions.iter_mut().enumerate() {
            if r.unmet.is_empty() {
                continue;
            }
            let (ctx, out, tools) = &pending[i];
            // A branch that would serve this project alone, for the message.
            let alone = branches.iter().find(|b| {
                b.name != chosen.name && toolchains::resolve_on(ctx, tools, out, b).unmet.is_empty()
            });
            let message = match alone {
                Some(b) => format!(
                    "nixpkgs {} would satisfy this project, but the flake pins {} for the others; give it a flake of its own to use {}",
                    b.name, chosen.name, b.name
                ),
                None => format!(
                    "no nixpkgs branch autonix has tables for ({}) satisfies this project either",
                    branches
                        .iter()
                        .map(|b| b.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            match r.out.errors.first_mut() {
                Some(refusal) => refusal.message = format!("{}; {message}", refusal.message),
                None => {
                    let root = if ctx.dir.is_empty() {
                        "."
                    } else {
                        ctx.dir.as_str()
                    };
                    r.out.warn(message, vec![ev(root, "project root")]);
                }
            }
        }
    }
    (
        NixpkgsChoice {
            branch: chosen.name.clone(),
            reason,
        },
        resolutions,
    )
}

/// Adds a branch's toolchain resolution to a project's detections; the pnpm release goes
/// into the pnpm ecosystem it belongs to.
fn merge_resolution(out: &mut Out, r: Resolution) {
    for (name, asked, used) in &r.services {
        for d in &mut out.detections {
            if let Facts::Service(s) = &mut d.facts {
                if let Some(n) = s
                    .nixos
                    .as_mut()
                    .filter(|n| &s.name == name && &n.package == asked)
                {
                    n.package = used.clone();
                }
            }
        }
    }
    if let Some(pnpm) = r.pnpm {
        for d in &mut out.detections {
            if let Facts::Ecosystem(e) = &mut d.facts {
                if e.ecosystem == EcosystemKind::Pnpm {
                    e.backend = Some(pnpm.clone());
                }
            }
        }
    }
    out.detections.extend(r.out.detections);
    out.warnings.extend(r.out.warnings);
    out.errors.extend(r.out.errors);
}

/// The deepest root in `roots` that contains `path`, found by walking up its directories
/// (a lookup per level, not a scan of every root: monorepos have hundreds).
fn nearest_root(path: &str, is_root: impl Fn(&str) -> bool) -> &str {
    let mut dir = path;
    while let Some((parent, _)) = dir.rsplit_once('/') {
        if is_root(parent) {
            return parent;
        }
        dir = parent;
    }
    ""
}

/// Directory names that hold test data: manifests below them describe inputs to the tests
/// of the project around them (a fixture repository, a sample package), not projects.
const TEST_DATA_DIRS: &[&str] = &[
    "fixtures",
    "fixture",
    "__fixtures__",
    "test-fixtures",
    "test_fixtures",
    "testdata",
    "test-data",
    "test_data",
    "__snapshots__",
    "__mocks__",
    "__tests__",
    "test",
    "tests",
];

/// Whether `dir` lies in a test-data directory (see [`TEST_DATA_DIRS`]).
fn is_test_data(dir: &str) -> bool {
    dir.split('/').any(|part| TEST_DATA_DIRS.contains(&part))
}

/// Project roots, parents before children; `""` (the repository root) always first. The
/// second list holds the directories with a manifest that were taken as test data; the map
/// gives each JavaScript workspace member its workspace root.
fn project_roots(inv: &Inventory) -> (Vec<String>, Vec<String>, BTreeMap<String, String>) {
    let mut markers: BTreeMap<String, BTreeMap<String, RootMarker>> = BTreeMap::new();
    for f in &inv.files {
        let (dir, file) = f.path.rsplit_once('/').unwrap_or(("", f.path.as_str()));
        if let Some(m) = root_marker(file) {
            markers
                .entry(dir.to_string())
                .or_default()
                .insert(file.to_string(), m);
        }
    }
    let mut roots: Vec<String> = vec![String::new()];
    let mut accepted: BTreeSet<String> = BTreeSet::new();
    let mut test_data = Vec::new();
    let mut workspace_of = BTreeMap::new();
    for (dir, names) in &markers {
        if dir.is_empty() {
            continue;
        }
        if is_test_data(dir) && names.values().any(|m| *m == RootMarker::Manifest) {
            test_data.push(dir.clone());
            continue;
        }
        let probe = format!("{dir}/x");
        let ancestor = nearest_root(&probe, |d| accepted.contains(d)).to_string();
        let parent = markers.get(&ancestor);
        let parent_has = |n: &str| parent.is_some_and(|p| p.contains_key(n));
        let parent_text = |n: &str| {
            let path = if ancestor.is_empty() {
                n.to_string()
            } else {
                format!("{ancestor}/{n}")
            };
            inv.text(&path).unwrap_or_default()
        };
        let has = |n: &str| names.contains_key(n);
        let ancestor_has_manifest =
            parent.is_some_and(|p| p.values().any(|m| *m == RootMarker::Manifest));
        // A JavaScript workspace member is a project of its own (its framework, port and
        // start script are its own), built by its workspace's package.
        let js_member = has("package.json")
            && parent_has("package.json")
            && (parent_text("package.json").contains("\"workspaces\"")
                || inv.has_file(&join(&ancestor, "pnpm-workspace.yaml")));
        if js_member {
            // A member of a member belongs to the same workspace.
            let root = workspace_of
                .get(&ancestor)
                .cloned()
                .unwrap_or_else(|| ancestor.clone());
            workspace_of.insert(dir.clone(), root);
            roots.push(dir.clone());
            accepted.insert(dir.clone());
            continue;
        }
        let folds = (has("Cargo.toml") && parent_has("Cargo.toml") && parent_text("Cargo.toml").contains("[workspace]"))
            || (has("CMakeLists.txt") && parent_has("CMakeLists.txt"))
            || (has("meson.build") && parent_has("meson.build"))
            || ((has("build.gradle") || has("build.gradle.kts"))
                && (inv.has_file(&join(&ancestor, "settings.gradle"))
                    || inv.has_file(&join(&ancestor, "settings.gradle.kts"))))
            || (has("pom.xml") && parent_has("pom.xml") && parent_text("pom.xml").contains("<modules>"))
            || (has("mix.exs") && parent_has("mix.exs") && parent_text("mix.exs").contains("apps_path"))
            // Makefiles, Dockerfiles, Nix helper files and stray requirements inside a
            // project belong to it.
            || (ancestor_has_manifest
                && names.iter().all(|(n, m)| {
                    *m == RootMarker::Weak
                        || n == "default.nix"
                        || n == "flake.nix"
                        || (n.starts_with("requirements") && n.ends_with(".txt"))
                }));
        if !folds {
            roots.push(dir.clone());
            accepted.insert(dir.clone());
        }
    }
    (roots, test_data, workspace_of)
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// Tools whose version matters: those of the ecosystems found, and those of base images.
fn tools_needed(ctx: &Ctx<'_>, out: &Out) -> BTreeSet<Tool> {
    let mut tools = BTreeSet::new();
    for d in &out.detections {
        if let Facts::Ecosystem(e) = &d.facts {
            let tool = match e.ecosystem {
                EcosystemKind::Cargo => Some(Tool::Rust),
                EcosystemKind::Go => Some(Tool::Go),
                EcosystemKind::Mix => Some(Tool::Elixir),
                EcosystemKind::Bundler => Some(Tool::Ruby),
                EcosystemKind::Composer => Some(Tool::Php),
                EcosystemKind::Maven | EcosystemKind::Gradle => Some(Tool::Java),
                EcosystemKind::Zig => Some(Tool::Zig),
                k if k.is_python() => Some(Tool::Python),
                EcosystemKind::Npm | EcosystemKind::Yarn | EcosystemKind::Pnpm => Some(Tool::Node),
                _ => None,
            };
            tools.extend(tool);
        }
    }
    for (_, _, image) in dockerfile_images(ctx) {
        tools.extend(image_tool(&image));
    }
    tools
}

fn languages(ctx: &Ctx<'_>, out: &mut Out) {
    let mut stats: BTreeMap<crate::model::Language, (u64, u64, String)> = BTreeMap::new();
    for f in &ctx.files {
        if let Some(lang) = f.language {
            let e = stats.entry(lang).or_insert((0, 0, f.path.clone()));
            e.0 += 1;
            e.1 += f.lines;
        }
    }
    let counted = ctx.inv.lines_counted;
    for (language, (files, lines, example)) in stats {
        let reason = if counted {
            format!("{files} files, {lines} lines by name, extension or shebang")
        } else {
            format!("{files} files by name, extension or shebang")
        };
        out.add(
            language.name(),
            confidence::HIGH,
            vec![ev(example, reason)],
            Facts::Language {
                language,
                files,
                lines: counted.then_some(lines),
            },
        );
    }
}

/// Which project a CI command belongs to: the deepest one containing its directory, or,
/// from the root, the only project of the command's ecosystem.
fn attach_ci(inv: &Inventory, projects: &mut [Project]) {
    let report = ci::detect(inv);
    let root = projects.iter().position(|p| p.path == ".");
    for test in report.tests {
        let mut target = projects
            .iter()
            .enumerate()
            .rev()
            .find(|(_, p)| {
                p.path == "." || test.dir == p.path || test.dir.starts_with(&format!("{}/", p.path))
            })
            .map(|(i, _)| i);
        if target == root {
            let family = command_family(&test.command);
            let matching: Vec<usize> = projects
                .iter()
                .enumerate()
                .filter(|(_, p)| {
                    p.ecosystems()
                        .any(|e| family.is_some_and(|f| f(e.ecosystem)))
                })
                .map(|(i, _)| i)
                .collect();
            let root_matches = root.is_some_and(|r| matching.contains(&r));
            if !root_matches && matching.len() == 1 {
                target = Some(matching[0]);
            }
        }
        let Some(i) = target else { continue };
        let project = &mut projects[i];
        // The CI's command supersedes the convention for the same tool.
        let first_word = test
            .command
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        project.detections.retain(|d| match &d.facts {
            Facts::Test(t) => {
                !(t.source == TestSource::Convention && t.command.starts_with(&first_word))
            }
            _ => true,
        });
        project.detections.push(Detection {
            what: test.command.clone(),
            confidence: confidence::HIGH,
            evidence: vec![test.evidence],
            facts: Facts::Test(TestCommand {
                command: test.command,
                source: TestSource::Ci,
            }),
        });
    }
    let Some(r) = root.or(if projects.is_empty() { None } else { Some(0) }) else {
        return;
    };
    projects[r].detections.extend(report.detections);
    projects[r].warnings.extend(report.warnings);
}

fn command_family(command: &str) -> Option<fn(EcosystemKind) -> bool> {
    let word = command.split_whitespace().next()?;
    Some(match word {
        "cargo" => |k| k == EcosystemKind::Cargo,
        "npm" | "yarn" | "pnpm" | "bun" => EcosystemKind::is_node,
        "pytest" | "python" | "python3" | "poetry" | "uv" | "pdm" | "pipenv" | "tox" => {
            EcosystemKind::is_python
        }
        "go" => |k| k == EcosystemKind::Go,
        "bundle" | "rspec" => |k| k == EcosystemKind::Bundler,
        "mix" => |k| k == EcosystemKind::Mix,
        "mvn" | "./mvnw" => |k| k == EcosystemKind::Maven,
        "gradle" | "./gradlew" => |k| k == EcosystemKind::Gradle,
        "ctest" => |k| k == EcosystemKind::Cmake,
        "meson" => |k| k == EcosystemKind::Meson,
        "zig" => |k| k == EcosystemKind::Zig,
        "make" => |k| k == EcosystemKind::Make,
        "composer" | "vendor/bin/phpunit" => |k| k == EcosystemKind::Composer,
        _ => return None,
    })
}

/// A compose service built from a project's directory gives that project its ports.
fn attach_compose(projects: &mut [Project]) {
    let mut links: Vec<(String, u16, crate::model::Evidence)> = Vec::new();
    for p in projects.iter() {
        for d in &p.detections {
            if let Facts::Service(s) = &d.facts {
                if let Some(build) = &s.build {
                    for port in &s.ports {
                        if let Some(e) = d.evidence.first() {
                            links.push((build.clone(), *port, e.clone()));
                        }
                    }
                }
            }
        }
    }
    for (build, port, evidence) in links {
        if let Some(p) = projects.iter_mut().find(|p| p.path == build) {
            let known = p
                .facts()
                .any(|f| matches!(f, Facts::Port { port: q } if *q == port));
            if !known {
                p.detections.push(Detection {
                    what: format!("port {port}"),
                    confidence: confidence::HIGH,
                    evidence: vec![evidence],
                    facts: Facts::Port { port },
                });
            }
        }
    }
}

fn dedupe_names(projects: &mut [Project]) {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for p in projects.iter() {
        *counts.entry(p.name.clone()).or_default() += 1;
    }
    for p in projects.iter_mut() {
        if counts.get(&p.name).copied().unwrap_or(0) > 1 && p.path != "." {
            p.name = sanitize_name(&p.path.replace('/', "-"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let cases = [
            ("@acme/web-app", "web-app"),
            ("My_Service", "my-service"),
            ("2fast", "fast"),
            ("---", "app"),
            ("hello.world", "hello-world"),
        ];
        for (raw, want) in cases {
            assert_eq!(sanitize_name(raw), want, "{raw}");
        }
    }
}
