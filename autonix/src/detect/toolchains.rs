//! Collecting version hints in precedence order and resolving them against nixpkgs.
//! The precedence table and the resolution rules are documented in [`super::versions`];
//! [`hints`] is the one place that implements the order.

use std::collections::BTreeSet;

use crate::detect::versions::{Branch, Catalog, Line, Partial, Range, Table, Version};
use crate::detect::{ev, ev_line, line_of, tool_versions, Ctx, Out};
use crate::model::{
    confidence, EcosystemKind, Evidence, Facts, HintRole, Tool, Toolchain, VersionHint,
};

/// Resolves every tool in `tools` for the project against `branch` and records the result
/// in `out`.
pub fn detect(ctx: &Ctx<'_>, tools: &BTreeSet<Tool>, branch: &Branch, out: &mut Out) {
    for &tool in tools {
        let hints = hints(ctx, tool);
        let resolved = match table(tool) {
            None => resolve_rust(&hints, branch, out),
            Some(t) => resolve(tool, branch.catalog(t), &branch.name, &hints, out),
        };
        if let Some(toolchain) = resolved {
            let mut evidence: Vec<Evidence> = hints.iter().map(|h| h.evidence.clone()).collect();
            if evidence.is_empty() {
                evidence.push(ev(
                    ctx.path("."),
                    format!("no {} version requested anywhere", tool.name()),
                ));
            }
            let conf = if hints.is_empty() {
                confidence::MEDIUM
            } else {
                confidence::HIGH
            };
            out.add(
                format!(
                    "{} {} (nixpkgs `{}`)",
                    tool.name(),
                    toolchain.version,
                    toolchain.nixpkgs
                ),
                conf,
                evidence,
                Facts::Toolchain(toolchain),
            );
        }
    }
}

/// What resolving one project's toolchains against one branch gave.
#[derive(Debug, Default)]
pub struct Resolution {
    /// Toolchain detections, and the warnings and errors of resolving them.
    pub out: Out,
    /// The nixpkgs pnpm attribute, for a project built with pnpm.
    pub pnpm: Option<String>,
    /// Database packages the branch lacks, replaced by its default: (service name, the
    /// package the image asked for, the branch's package).
    pub services: Vec<(String, String, String)>,
    /// Requirements the branch does not meet, as the messages that say so: refused
    /// toolchains, and a pnpm or database major it lacks (served by another with a warning).
    pub unmet: Vec<String>,
}

/// Resolves the project's toolchains (see [`detect`]) and its pnpm against `branch`;
/// `base` holds the project's other detections.
pub fn resolve_on(
    ctx: &Ctx<'_>,
    tools: &BTreeSet<Tool>,
    base: &Out,
    branch: &Branch,
) -> Resolution {
    let mut r = Resolution::default();
    detect(ctx, tools, branch, &mut r.out);
    r.unmet = r.out.errors.iter().map(|e| e.message.clone()).collect();
    let pnpm_manifest = base.detections.iter().find_map(|d| match &d.facts {
        Facts::Ecosystem(e) if e.ecosystem == EcosystemKind::Pnpm => Some(e.manifest.as_str()),
        _ => None,
    });
    for d in &base.detections {
        let Facts::Service(service) = &d.facts else {
            continue;
        };
        let Some(nixos) = &service.nixos else {
            continue;
        };
        if let Some(fallback) = database_release(service, &nixos.package, branch, d, &mut r.out) {
            r.services
                .push((service.name.clone(), nixos.package.clone(), fallback));
            r.unmet
                .extend(r.out.warnings.last().map(|w| w.message.clone()));
        }
    }
    if let Some(manifest) = pnpm_manifest {
        // A workspace member's pnpm is its workspace's.
        let workspace_manifest = ctx.workspace_path("package.json");
        let manifest = workspace_manifest.as_deref().unwrap_or(manifest);
        let text = ctx.inv.text(manifest).unwrap_or_default();
        let (attr, met) = pnpm_release(manifest, text, branch, &mut r.out);
        r.pnpm = Some(attr);
        if !met {
            r.unmet
                .extend(r.out.warnings.last().map(|w| w.message.clone()));
        }
    }
    r
}

/// For a database service whose image asks for a major `branch` lacks (`postgres:18` on
/// nixos-24.11): the branch's default package to use instead, with a warning — a data
/// directory only opens with the major that wrote it. `None` when the branch has it.
fn database_release(
    service: &crate::model::Service,
    package: &str,
    branch: &Branch,
    detection: &crate::model::Detection,
    out: &mut Out,
) -> Option<String> {
    let table = if package.starts_with("postgresql") {
        Table::Postgresql
    } else if package.starts_with("mysql") {
        Table::Mysql
    } else {
        return None;
    };
    let cat = branch.catalog(table);
    if package == "postgresql" || cat.lines.iter().any(|l| l.attr == package) {
        return None;
    }
    let fallback = cat.default_line()?;
    let image = service.image.as_deref().unwrap_or(package);
    let tag = image.rsplit_once(':').map_or("", |(_, t)| t);
    let wanted = match table {
        Table::Mysql => tag.split(['-', '@']).next().unwrap_or(tag).to_string(),
        _ => tag.chars().take_while(char::is_ascii_digit).collect(),
    };
    let provided = match table {
        Table::Mysql => format!("{}.{}", fallback.version.major, fallback.version.minor),
        _ => fallback.version.major.to_string(),
    };
    let file = detection
        .evidence
        .first()
        .map_or_else(String::new, |e| format!("{}: ", e.file));
    out.warn(
        format!(
            "{file}{image} asks for major version {wanted}, which nixpkgs {} does not carry; the flake uses pkgs.{} ({provided}) — a data directory written by another major does not open, so check before deploying",
            branch.name, fallback.attr
        ),
        detection.evidence.clone(),
    );
    Some(fallback.attr.clone())
}

/// The nixpkgs pnpm attribute for `packageManager: "pnpm@x.y.z"` on `branch`, and whether
/// the branch has that major. Another major is served by the branch's default pnpm with a
/// warning, not silently; no packageManager field gets plain `pnpm`.
fn pnpm_release(manifest: &str, text: &str, branch: &Branch, out: &mut Out) -> (String, bool) {
    let declared = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("packageManager")?.as_str().map(str::to_string));
    let Some(version) = declared
        .as_deref()
        .and_then(|pm| pm.strip_prefix("pnpm@"))
        .map(|v| v.split('+').next().unwrap_or(v).to_string())
    else {
        return ("pnpm".to_string(), true);
    };
    let cat = branch.catalog(Table::Pnpm);
    if let Some(line) = Partial::parse(&version).and_then(|p| cat.line_for(&p)) {
        return (line.attr.clone(), true);
    }
    let fallback = cat.default_line();
    out.warn(
        format!(
            "{manifest} asks for pnpm {version}, but nixpkgs {} carries pnpm {}; the flake uses pnpm {}, so check that it installs the lockfile",
            branch.name,
            cat.describe(),
            fallback.map_or_else(|| "?".to_string(), |l| l.version.major.to_string()),
        ),
        vec![ev_line(
            manifest,
            line_of(text, "\"packageManager\""),
            format!("packageManager is pnpm@{version}"),
        )],
    );
    (
        fallback.map_or_else(|| "pnpm".to_string(), |l| l.attr.clone()),
        false,
    )
}

/// The branch table a tool resolves against; Rust has its own resolution.
fn table(tool: Tool) -> Option<Table> {
    Some(match tool {
        Tool::Node => Table::Node,
        Tool::Python => Table::Python,
        Tool::Go => Table::Go,
        Tool::Ruby => Table::Ruby,
        Tool::Php => Table::Php,
        Tool::Java => Table::Java,
        Tool::Elixir => Table::Elixir,
        Tool::Zig => Table::Zig,
        Tool::Rust => return None,
    })
}

fn hint(
    requested: &str,
    role: HintRole,
    enforced: bool,
    file: &str,
    line: Option<u32>,
    reason: String,
) -> VersionHint {
    VersionHint {
        requested: requested.trim().to_string(),
        role,
        enforced,
        evidence: ev_line(file, line, reason),
    }
}

/// Version hints for `tool`, most specific first (the documented precedence).
pub fn hints(ctx: &Ctx<'_>, tool: Tool) -> Vec<VersionHint> {
    let mut out = Vec::new();
    let pin_file = |out: &mut Vec<VersionHint>, name: &str| {
        if let Some((path, text)) = ctx.find_upward(name) {
            if let Some((i, first)) = text
                .lines()
                .enumerate()
                .find(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            {
                out.push(hint(
                    first,
                    HintRole::Pin,
                    true,
                    &path,
                    u32::try_from(i + 1).ok(),
                    format!("{name} pins {} {}", tool.name(), first.trim()),
                ));
            }
        }
    };
    let asdf = |out: &mut Vec<VersionHint>, names: &[&str]| {
        if let Some((path, text)) = ctx.find_upward(".tool-versions") {
            if let Some((version, line)) = tool_versions(text, names) {
                out.push(hint(
                    version,
                    HintRole::Pin,
                    true,
                    &path,
                    Some(line),
                    format!(".tool-versions pins {} {version}", names[0]),
                ));
            }
        }
    };
    match tool {
        Tool::Rust => {
            if let Some((path, text)) = ctx.find_upward("rust-toolchain.toml") {
                if let Some(channel) = toml_channel(text) {
                    out.push(hint(
                        &channel,
                        HintRole::Pin,
                        true,
                        &path,
                        line_of(text, "channel"),
                        format!("rustup toolchain file selects channel {channel}"),
                    ));
                }
            } else if let Some((path, text)) = ctx.find_upward("rust-toolchain") {
                // The legacy file holds either TOML or a bare channel name.
                let channel = toml_channel(text).or_else(|| {
                    text.lines()
                        .map(str::trim)
                        .find(|l| !l.is_empty())
                        .map(str::to_string)
                });
                if let Some(channel) = channel {
                    out.push(hint(
                        &channel,
                        HintRole::Pin,
                        true,
                        &path,
                        line_of(text, &channel),
                        format!("rustup toolchain file selects channel {channel}"),
                    ));
                }
            }
            asdf(&mut out, &["rust"]);
            if let Some(text) = ctx.text("Cargo.toml") {
                if let Some(msrv) = cargo_rust_version(text) {
                    out.push(hint(
                        &format!(">={msrv}"),
                        HintRole::Range,
                        true,
                        &ctx.path("Cargo.toml"),
                        // The line with the value, not `rust-version.workspace = true`.
                        text.lines()
                            .position(|l| {
                                l.trim_start().starts_with("rust-version")
                                    && l.contains(&format!("\"{msrv}\""))
                            })
                            .and_then(|i| u32::try_from(i + 1).ok())
                            .or_else(|| line_of(text, "rust-version")),
                        format!("rust-version = \"{msrv}\": cargo refuses older compilers"),
                    ));
                }
            }
        }
        Tool::Node => {
            pin_file(&mut out, ".nvmrc");
            pin_file(&mut out, ".node-version");
            asdf(&mut out, &["nodejs", "node"]);
            if let Some(pkg) = ctx.text("package.json").and_then(|t| {
                serde_json::from_str::<serde_json::Value>(t)
                    .ok()
                    .map(|v| (t, v))
            }) {
                let (text, json) = pkg;
                if let Some(v) = json.pointer("/volta/node").and_then(|v| v.as_str()) {
                    out.push(hint(
                        v,
                        HintRole::Pin,
                        true,
                        &ctx.path("package.json"),
                        line_of(text, "\"volta\""),
                        format!("Volta pins node {v}"),
                    ));
                }
                if let Some(v) = json.pointer("/engines/node").and_then(|v| v.as_str()) {
                    out.push(hint(
                        v,
                        HintRole::Range,
                        false,
                        &ctx.path("package.json"),
                        line_of(text, "\"node\""),
                        format!("engines.node accepts {v} (npm only warns outside it)"),
                    ));
                }
            }
        }
        Tool::Python => {
            pin_file(&mut out, ".python-version");
            asdf(&mut out, &["python"]);
            if let Some(text) = ctx.text("runtime.txt") {
                let v = text.trim();
                if v.starts_with("python-") {
                    out.push(hint(
                        v,
                        HintRole::Pin,
                        true,
                        &ctx.path("runtime.txt"),
                        Some(1),
                        format!("runtime.txt pins {v}"),
                    ));
                }
            }
            if let Some(text) = ctx.text("Pipfile") {
                if let Some(v) = toml_str(text, &["requires", "python_version"]) {
                    out.push(hint(
                        &v,
                        HintRole::Pin,
                        true,
                        &ctx.path("Pipfile"),
                        line_of(text, "python_version"),
                        format!("Pipfile requires python {v}"),
                    ));
                }
            }
            if let Some(text) = ctx.text("pyproject.toml") {
                if let Some(v) = toml_str(text, &["project", "requires-python"]) {
                    out.push(hint(
                        &v,
                        HintRole::Range,
                        true,
                        &ctx.path("pyproject.toml"),
                        line_of(text, "requires-python"),
                        format!("requires-python = \"{v}\": pip refuses other interpreters"),
                    ));
                } else if let Some(v) =
                    toml_str(text, &["tool", "poetry", "dependencies", "python"])
                {
                    out.push(hint(
                        &v,
                        HintRole::Range,
                        true,
                        &ctx.path("pyproject.toml"),
                        line_of(text, "python ="),
                        format!("Poetry's python dependency accepts {v}"),
                    ));
                }
            }
        }
        Tool::Go => {
            let gomod = ctx.text("go.mod");
            if let Some(text) = gomod {
                if let Some((v, line)) = directive(text, "toolchain") {
                    out.push(hint(
                        v,
                        HintRole::Pin,
                        true,
                        &ctx.path("go.mod"),
                        Some(line),
                        format!("toolchain directive selects {v}"),
                    ));
                }
            }
            asdf(&mut out, &["golang", "go"]);
            if let Some(text) = gomod {
                if let Some((v, line)) = directive(text, "go") {
                    out.push(hint(
                        &format!(">={v}"),
                        HintRole::Range,
                        true,
                        &ctx.path("go.mod"),
                        Some(line),
                        format!("go {v} directive: older go commands refuse the module"),
                    ));
                }
            }
        }
        Tool::Ruby => {
            pin_file(&mut out, ".ruby-version");
            asdf(&mut out, &["ruby"]);
            if let Some(text) = ctx.text("Gemfile") {
                if let Some((i, line)) = text
                    .lines()
                    .enumerate()
                    .find(|(_, l)| l.trim_start().starts_with("ruby "))
                {
                    let args = line.trim_start().trim_start_matches("ruby ").trim();
                    let gemfile_line = u32::try_from(i + 1).ok();
                    if let Some(file) = gemfile_ruby_file(args) {
                        // `ruby file: ".ruby-version"` (or `File.read(...)`): Bundler reads the
                        // version from that file and enforces it like a literal one.
                        let path = ctx.path(file);
                        let version = ctx.inv.text(&path).and_then(|t| {
                            if file.ends_with(".tool-versions") {
                                tool_versions(t, &["ruby"]).map(|(v, l)| (v, Some(l)))
                            } else {
                                t.lines()
                                    .enumerate()
                                    .find(|(_, l)| !l.trim().is_empty())
                                    .map(|(n, l)| (l.trim(), u32::try_from(n + 1).ok()))
                            }
                        });
                        if let Some((v, line)) = version {
                            out.push(hint(
                                v,
                                HintRole::Range,
                                true,
                                &path,
                                line,
                                format!(
                                    "Gemfile:{} reads ruby {v} from {file}: bundler refuses other rubies",
                                    gemfile_line.unwrap_or(0)
                                ),
                            ));
                        }
                    } else if args.starts_with(['"', '\'']) {
                        let req = args
                            .split(',')
                            .next()
                            .unwrap_or(args)
                            .trim()
                            .trim_matches(|c| c == '"' || c == '\'');
                        // A requirement, not a pin, even when bare: Bundler reads `ruby "3.2.2"`
                        // as `= 3.2.2` and `bundle exec` stops on any other ruby, so nixpkgs'
                        // 3.2.6 must not stand in for it the way it may for `.ruby-version`.
                        out.push(hint(
                            req,
                            HintRole::Range,
                            true,
                            &ctx.path("Gemfile"),
                            gemfile_line,
                            format!("Gemfile asks for ruby {req}: bundler refuses other rubies"),
                        ));
                    }
                    // Any other Ruby expression (`ruby ENV["RUBY"]`) cannot be read without
                    // running the Gemfile; the other version files still apply.
                }
            }
        }
        Tool::Php => {
            asdf(&mut out, &["php"]);
            if let Some(text) = ctx.text("composer.json") {
                if let Some(v) = serde_json::from_str::<serde_json::Value>(text)
                    .ok()
                    .and_then(|j| {
                        j.pointer("/require/php")
                            .and_then(|v| v.as_str())
                            .map(String::from)
                    })
                {
                    out.push(hint(
                        &v,
                        HintRole::Range,
                        true,
                        &ctx.path("composer.json"),
                        line_of(text, "\"php\""),
                        format!("composer requires php {v}"),
                    ));
                }
            }
        }
        Tool::Java => {
            pin_file(&mut out, ".java-version");
            asdf(&mut out, &["java"]);
            if let Some(text) = ctx.text("pom.xml") {
                for tag in [
                    "maven.compiler.release",
                    "java.version",
                    "maven.compiler.source",
                ] {
                    if let Some(v) = xml_tag(text, tag) {
                        out.push(hint(
                            &format!(">={v}"),
                            HintRole::Range,
                            true,
                            &ctx.path("pom.xml"),
                            line_of(text, &format!("<{tag}>")),
                            format!("<{tag}>{v}</{tag}>: older compilers cannot target it"),
                        ));
                        break;
                    }
                }
            }
            for file in ["build.gradle.kts", "build.gradle"] {
                if let Some(text) = ctx.text(file) {
                    if let Some(v) = between(text, "JavaLanguageVersion.of(", ")") {
                        out.push(hint(
                            v,
                            HintRole::Pin,
                            true,
                            &ctx.path(file),
                            line_of(text, "JavaLanguageVersion.of("),
                            format!("Gradle toolchain asks for Java {v}"),
                        ));
                    } else if let Some(v) = between(text, "JavaVersion.VERSION_", "\n") {
                        let v = v.trim().replace("1_", "").replace('_', ".");
                        out.push(hint(
                            &format!(">={v}"),
                            HintRole::Range,
                            true,
                            &ctx.path(file),
                            line_of(text, "JavaVersion.VERSION_"),
                            format!("sourceCompatibility targets Java {v}"),
                        ));
                    }
                }
            }
        }
        Tool::Elixir => {
            asdf(&mut out, &["elixir"]);
            if let Some(text) = ctx.text("mix.exs") {
                if let Some(v) = between(text, "elixir: \"", "\"") {
                    out.push(hint(
                        v,
                        HintRole::Range,
                        true,
                        &ctx.path("mix.exs"),
                        line_of(text, "elixir:"),
                        format!("mix.exs requires elixir {v}: mix refuses other versions"),
                    ));
                }
            }
        }
        Tool::Zig => {
            asdf(&mut out, &["zig"]);
            if let Some(text) = ctx.text("build.zig.zon") {
                if let Some(v) = between(text, ".minimum_zig_version = \"", "\"") {
                    out.push(hint(
                        &format!(">={v}"),
                        HintRole::Range,
                        true,
                        &ctx.path("build.zig.zon"),
                        line_of(text, "minimum_zig_version"),
                        format!("minimum_zig_version {v}"),
                    ));
                }
            }
        }
    }
    // The image a Dockerfile builds on is what production runs today: the weakest pin.
    for (path, line, image) in dockerfile_images(ctx) {
        if let Some(v) = image_version(tool, &image) {
            out.push(hint(
                &v,
                HintRole::Pin,
                true,
                &path,
                Some(line),
                format!("base image {image}"),
            ));
        }
    }
    out
}

/// The file a Gemfile's `ruby` line takes its version from: `file: ".ruby-version"`,
/// `file: File.expand_path(".ruby-version", __dir__)` or `File.read(".ruby-version").strip`.
fn gemfile_ruby_file(args: &str) -> Option<&str> {
    if !(args.contains("file:") || args.contains("File.read")) {
        return None;
    }
    let start = args.find(['"', '\''])?;
    let quote = args[start..].chars().next()?;
    let rest = &args[start + 1..];
    let end = rest.find(quote)?;
    let file = rest[..end].trim_start_matches("./");
    (!file.is_empty() && !file.contains("..")).then_some(file)
}

/// `FROM` images of the project's own `Dockerfile`, with their lines.
pub fn dockerfile_images(ctx: &Ctx<'_>) -> Vec<(String, u32, String)> {
    let path = ctx.path("Dockerfile");
    let Some(text) = ctx.inv.text(&path) else {
        return Vec::new();
    };
    crate::detect::containers::from_lines(text)
        .into_iter()
        .map(|(line, image)| (path.clone(), line, image))
        .collect()
}

/// The tool a well-known base image provides.
pub fn image_tool(image: &str) -> Option<Tool> {
    let name = image.split([':', '@']).next().unwrap_or(image);
    let name = name.rsplit('/').next().unwrap_or(name);
    Some(match name {
        "rust" => Tool::Rust,
        "node" => Tool::Node,
        "python" => Tool::Python,
        "golang" => Tool::Go,
        "ruby" => Tool::Ruby,
        "php" => Tool::Php,
        "eclipse-temurin" | "openjdk" | "amazoncorretto" => Tool::Java,
        "elixir" => Tool::Elixir,
        _ => return None,
    })
}

/// The version a base image's tag names for `tool` (`node:18-alpine` → `18`).
fn image_version(tool: Tool, image: &str) -> Option<String> {
    if image_tool(image)? != tool {
        return None;
    }
    let tag = image.split_once(':')?.1;
    let version: String = tag
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let version = version.trim_end_matches('.');
    if version.is_empty() {
        None
    } else {
        Some(version.to_string())
    }
}

fn toml_channel(text: &str) -> Option<String> {
    toml_str(text, &["toolchain", "channel"])
}

/// A string at `path` in a TOML document; `None` when the document does not parse.
pub fn toml_str(text: &str, path: &[&str]) -> Option<String> {
    let value: toml::Value = toml::from_str(text).ok()?;
    let mut cur = &value;
    for key in path {
        cur = cur.get(key)?;
    }
    cur.as_str().map(str::to_string)
}

fn cargo_rust_version(text: &str) -> Option<String> {
    toml_str(text, &["package", "rust-version"])
        .or_else(|| toml_str(text, &["workspace", "package", "rust-version"]))
}

/// A `go.mod` directive's argument and line.
pub fn directive<'t>(text: &'t str, name: &str) -> Option<(&'t str, u32)> {
    text.lines().enumerate().find_map(|(i, l)| {
        let mut words = l.split_whitespace();
        (words.next() == Some(name))
            .then(|| words.next())
            .flatten()
            .and_then(|v| Some((v, u32::try_from(i + 1).ok()?)))
    })
}

fn xml_tag<'t>(text: &'t str, tag: &str) -> Option<&'t str> {
    between(text, &format!("<{tag}>"), &format!("</{tag}>")).map(str::trim)
}

/// The text between the first `start` and the following `end`.
pub fn between<'t>(text: &'t str, start: &str, end: &str) -> Option<&'t str> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(&text[from..from + len])
}

/// Node's named release lines, as `.nvmrc` may use them (`lts/iron`, `node`).
fn node_alias(requested: &str) -> Option<Partial> {
    let major = match requested.trim().to_ascii_lowercase().as_str() {
        "lts/hydrogen" => "18",
        "lts/iron" => "20",
        "lts/jod" | "lts/*" | "lts" => "22",
        "node" | "latest" | "current" | "stable" => "23",
        _ => return None,
    };
    Partial::parse(major)
}

/// Strips distribution prefixes (`temurin-17.0.2`, `pypy`-less) before parsing a pin.
fn parse_pin(tool: Tool, requested: &str) -> Option<Partial> {
    if tool == Tool::Node {
        if let Some(p) = node_alias(requested) {
            return Some(p);
        }
    }
    let t = requested.trim();
    let t = match t.split_once('-') {
        Some((prefix, rest)) if tool == Tool::Java && !prefix.starts_with(char::is_numeric) => rest,
        _ => t,
    };
    Partial::parse(t)
}

fn at(h: &VersionHint) -> String {
    match h.evidence.line {
        Some(l) => format!("{}:{l}", h.evidence.file),
        None => h.evidence.file.clone(),
    }
}

/// The line a pin selects in `cat`, or why it selects none. A pin coarser than a line
/// (`3` for Python) picks the default line if it matches, else the newest matching one.
fn select<'c>(cat: &'c Catalog, pin: &Partial) -> Option<&'c Line> {
    if pin.parts().len() >= cat.line_parts {
        return cat.line_for(pin);
    }
    if let Some(default) = cat.default_line().filter(|d| pin.contains(d.version)) {
        return Some(default);
    }
    cat.lines.iter().rev().find(|l| pin.contains(l.version))
}

fn resolve(
    tool: Tool,
    cat: &Catalog,
    branch: &str,
    hints: &[VersionHint],
    out: &mut Out,
) -> Option<Toolchain> {
    let name = tool.name();
    let mut ranges = Vec::new();
    for h in hints.iter().filter(|h| h.role == HintRole::Range) {
        match Range::parse(&h.requested) {
            Ok(r) => ranges.push((h, r)),
            Err(e) => {
                out.error(
                    format!("{e} for {name} at {}; write a plain version range", at(h)),
                    vec![h.evidence.clone()],
                );
                return None;
            }
        }
    }
    let pins: Vec<&VersionHint> = hints.iter().filter(|h| h.role == HintRole::Pin).collect();
    let toolchain = |line: &Line, reason: String| Toolchain {
        tool,
        version: line.version.to_string(),
        nixpkgs: line.attr.clone(),
        reason,
        hints: hints.to_vec(),
    };
    if let Some(first) = pins.first() {
        let Some(pin) = parse_pin(tool, &first.requested) else {
            out.error(
                format!(
                    "cannot read {name} version `{}` at {}; write a version number such as {}",
                    first.requested,
                    at(first),
                    cat.default_line()
                        .map_or_else(|| "1.0".to_string(), |l| l.version.to_string())
                ),
                vec![first.evidence.clone()],
            );
            return None;
        };
        let Some(chosen) = select(cat, &pin) else {
            out.error(
                format!(
                    "{name} {} is requested at {} but nixpkgs {branch} only provides {name} {}; \
                     update the pin or choose one of those",
                    first.requested,
                    at(first),
                    cat.describe()
                ),
                vec![first.evidence.clone()],
            );
            return None;
        };
        for other in &pins[1..] {
            let other_line = parse_pin(tool, &other.requested).and_then(|p| select(cat, &p));
            if other_line != Some(chosen) {
                out.warn(
                    format!(
                        "conflicting {name} versions: {} asks for {}, {} asks for {}; using {} ({} takes precedence)",
                        at(first),
                        first.requested,
                        at(other),
                        other.requested,
                        first.requested,
                        first.evidence.file
                    ),
                    vec![first.evidence.clone(), other.evidence.clone()],
                );
            }
        }
        for (h, range) in &ranges {
            if range.matches(chosen.version) {
                continue;
            }
            let chosen_from = if pin.contains(chosen.version) {
                format!("pinned at {}", at(first))
            } else {
                format!(
                    "(nixpkgs' release for {} pinned at {})",
                    first.requested,
                    at(first)
                )
            };
            let message = format!(
                "{name} {} {chosen_from} does not satisfy `{}` required at {}",
                chosen.version,
                h.requested,
                at(h)
            );
            if h.enforced {
                out.error(
                    format!("{message}; the build would fail, so change one of them"),
                    vec![first.evidence.clone(), h.evidence.clone()],
                );
                return None;
            }
            out.warn(
                format!("{message}; the pin wins because {name} only warns about it"),
                vec![first.evidence.clone(), h.evidence.clone()],
            );
        }
        let mut reason = format!("{} pinned at {}", first.requested, at(first));
        if pin.parts().len() > cat.line_parts && !pin.contains(chosen.version) {
            reason.push_str(&format!(
                "; nixpkgs ships {} on that release line, not {pin}",
                chosen.version
            ));
        }
        return Some(toolchain(chosen, reason));
    }
    if ranges.is_empty() {
        return match cat.default_line() {
            Some(default) => Some(toolchain(
                default,
                format!("no version requested; nixpkgs {branch} default"),
            )),
            None => {
                out.error(
                    format!("nixpkgs {branch} provides no {name}"),
                    vec![ev(".", format!("{name} is needed"))],
                );
                None
            }
        };
    }
    let ok = |l: &Line| ranges.iter().all(|(_, r)| r.matches(l.version));
    let chosen = match cat.default_line() {
        Some(default) if ok(default) => Some(default),
        _ => cat.lines.iter().rev().find(|l| ok(l)),
    };
    let asked: Vec<String> = ranges
        .iter()
        .map(|(h, _)| format!("`{}` at {}", h.requested, at(h)))
        .collect();
    match chosen {
        Some(line) => Some(toolchain(
            line,
            format!(
                "newest nixpkgs line allowed by {} (nixpkgs default preferred)",
                asked.join(" and ")
            ),
        )),
        None => {
            out.error(
                format!(
                    "no {name} in nixpkgs {branch} satisfies {}: it provides {name} {}",
                    asked.join(" and "),
                    cat.describe()
                ),
                ranges.iter().map(|(h, _)| h.evidence.clone()).collect(),
            );
            None
        }
    }
}

/// Rust versions come from nixpkgs' `rustPlatform` unless a toolchain is pinned or the
/// manifest needs a newer compiler; then from rust-overlay, which carries every release.
fn resolve_rust(hints: &[VersionHint], branch: &Branch, out: &mut Out) -> Option<Toolchain> {
    let (name, rustc) = (branch.name.as_str(), branch.rustc);
    let msrv = hints
        .iter()
        .find(|h| h.role == HintRole::Range)
        .and_then(|h| Partial::parse(h.requested.trim_start_matches(">=")).map(|p| (h, p)));
    let pins: Vec<&VersionHint> = hints.iter().filter(|h| h.role == HintRole::Pin).collect();
    let toolchain = |version: String, nixpkgs: String, reason: String| Toolchain {
        tool: Tool::Rust,
        version,
        nixpkgs,
        reason,
        hints: hints.to_vec(),
    };
    if let Some(first) = pins.first() {
        let channel = first.requested.as_str();
        let numeric = Partial::parse(channel).filter(|_| channel.starts_with(char::is_numeric));
        let named = ["stable", "beta", "nightly"]
            .iter()
            .any(|c| channel == *c || channel.starts_with(&format!("{c}-")));
        if numeric.is_none() && !named {
            out.error(
                format!(
                    "cannot read rust channel `{channel}` at {}; rustup accepts stable, beta, nightly[-date] or a version",
                    at(first)
                ),
                vec![first.evidence.clone()],
            );
            return None;
        }
        for other in &pins[1..] {
            if other.requested != first.requested {
                out.warn(
                    format!(
                        "conflicting rust versions: {} asks for {}, {} asks for {}; using {} ({} takes precedence)",
                        at(first),
                        first.requested,
                        at(other),
                        other.requested,
                        first.requested,
                        first.evidence.file
                    ),
                    vec![first.evidence.clone(), other.evidence.clone()],
                );
            }
        }
        if let (Some(pinned), Some((h, min))) = (&numeric, &msrv) {
            if pinned.floor() < min.floor() && !min.contains(pinned.floor()) {
                out.error(
                    format!(
                        "rust {channel} pinned at {} is older than rust-version {min} at {}; cargo refuses to build, so raise the pin or lower rust-version",
                        at(first),
                        at(h)
                    ),
                    vec![first.evidence.clone(), h.evidence.clone()],
                );
                return None;
            }
        }
        let file = &first.evidence.file;
        let name = file.rsplit('/').next().unwrap_or(file);
        let expr = if name.starts_with("rust-toolchain") {
            // Honours components and targets listed in the file too.
            format!(
                "rust-bin.fromRustupToolchainFile {}",
                crate::detect::nix::path_expr(file)
            )
        } else if let Some(v) = &numeric {
            format!("rust-bin.stable.\"{}\".default", full(v))
        } else {
            format!("rust-bin.{channel}.latest.default")
        };
        let version = numeric
            .map(|v| v.to_string())
            .unwrap_or_else(|| channel.to_string());
        return Some(toolchain(
            version,
            expr,
            format!("{channel} pinned at {} (via rust-overlay)", at(first)),
        ));
    }
    match msrv {
        Some((h, min)) if min.floor() > rustc => Some(toolchain(
            full(&min),
            format!("rust-bin.stable.\"{}\".default", full(&min)),
            format!(
                "rust-version {min} at {} is newer than nixpkgs {name}'s rustc {rustc}; using that release from rust-overlay",
                at(h)
            ),
        )),
        Some((h, min)) => Some(toolchain(
            rustc.to_string(),
            "rustc".to_string(),
            format!(
                "nixpkgs {name}'s rustc satisfies rust-version {min} at {}",
                at(h)
            ),
        )),
        None => Some(toolchain(
            rustc.to_string(),
            "rustc".to_string(),
            format!("no version requested; nixpkgs {name} rustc"),
        )),
    }
}

/// `1.75` → `1.75.0`: rust-overlay names releases by their full version.
fn full(v: &Partial) -> String {
    let f: Version = v.floor();
    f.to_string()
}
