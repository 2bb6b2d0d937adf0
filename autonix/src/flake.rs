//! Writing a flake from an [`Analysis`]. Pure and deterministic: the same analysis gives the
//! same bytes, because every collection it walks is ordered.
//!
//! The flake pins the nixpkgs branch the analysis chose ([`Analysis::nixpkgs`]) and uses its builders; each package, check and
//! VM carries a comment saying which file it comes from and what was assumed. Hashes of
//! fixed-output dependency fetches cannot be known without the network, so they are
//! `lib.fakeHash` with a comment: the first build prints the real one.

use std::collections::BTreeSet;

use crate::detect::nix::path_expr;
use crate::model::{
    Analysis, Ecosystem, EcosystemKind, Evidence, Facts, Finding, Process, ProcessSource, Project,
    Service, TestCommand, TestSource, Tool, Toolchain,
};

/// Why a flake was not written.
#[derive(Debug, thiserror::Error)]
pub enum FlakeError {
    #[error("refusing to guess: {}", format_findings(.0))]
    Refused(Vec<String>),
    #[error(
        "found nothing to build or run: no ecosystem, container or start command was detected"
    )]
    NothingToBuild,
    #[error(
        "found nothing to build or run, and {count} paths could not be read (first: {first}); make them readable and run autonix again"
    )]
    NothingReadable { count: u64, first: String },
}

fn format_findings(list: &[String]) -> String {
    list.join("; ")
}

/// Resources every generated VM gets; deliberately small, stated in the flake.
const DEFAULT_CPU: u32 = 1;
const DEFAULT_MEMORY_MB: u32 = 512;
/// Port given to a process that listens on whatever `$PORT` says.
const FALLBACK_PORT: u16 = 8080;

/// Generates the flake text. A project autonix refuses to guess about is left out, with
/// its reasons in a comment, so one bad member does not block the others; the flake is
/// refused only when nothing else is left to build or run.
pub fn generate(analysis: &Analysis) -> Result<String, FlakeError> {
    let mut errors: Vec<String> = analysis
        .errors()
        .map(|(p, e)| format!("in {}: {}", p.path, e.message))
        .collect();
    let mut plans: Vec<Plan<'_>> = analysis
        .projects
        .iter()
        .filter(|p| p.errors.is_empty())
        .map(Plan::new)
        .collect();
    // A workspace member runs from its workspace's package: without one (the workspace was
    // refused, or has no lockfile to build from) there is nothing to run it from.
    let built: BTreeSet<String> = plans
        .iter()
        .filter(|p| p.builder.is_some())
        .map(|p| p.project.path.clone())
        .collect();
    for plan in &mut plans {
        if let Some(ws) = plan
            .project
            .workspace
            .as_ref()
            .filter(|ws| !built.contains(*ws))
        {
            if plan.start.take().is_some() {
                plan.port = None;
                errors.push(format!(
                    "in {}: it is a member of the workspace at {ws}, which the flake does not build, so it is not run",
                    plan.project.path
                ));
            }
        }
    }
    let useful = plans
        .iter()
        .any(|p| p.builder.is_some() || p.start.is_some() || !p.project.toolchains().is_empty());
    if !useful {
        if !errors.is_empty() {
            return Err(FlakeError::Refused(errors));
        }
        if analysis.stats.unreadable > 0 {
            return Err(FlakeError::NothingReadable {
                count: analysis.stats.unreadable,
                first: analysis
                    .stats
                    .unreadable_examples
                    .first()
                    .cloned()
                    .unwrap_or_default(),
            });
        }
        return Err(FlakeError::NothingToBuild);
    }
    Ok(Writer::new(analysis, &plans, &errors).write())
}

/// What the flake does about running one project, as `explain` shows it: `Some` with the
/// VM's port and why, or why no VM is generated. `None` for projects with nothing to run.
pub fn deployment(project: &Project) -> Option<Result<String, String>> {
    let plan = Plan::new(project);
    let (_, program) = plan.program()?;
    Some(match &plan.port {
        Some((port, why)) => Ok(format!("runs `{program}` as a service on port {port}: {why}")),
        None => Err(format!(
            "`{program}` gets a package but no deployment: nothing shows it serves (no serving framework, declared port, listen call or Procfile `web` entry)"
        )),
    })
}

/// How a project's package is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Builder {
    NixFile,
    Rust,
    Go,
    Mix,
    Bundler,
    Composer,
    PythonPackage,
    PythonEnv,
    Maven,
    Gradle,
    Zig,
    Npm,
    Yarn,
    Pnpm,
    Cmake,
    Meson,
    Make,
}

/// Ecosystems in the order that picks a project's builder: the project's own Nix file
/// first, language ecosystems before JavaScript (which Rails, Django and Phoenix use for
/// assets only), generic build systems last.
const BUILD_ORDER: &[(EcosystemKind, Builder)] = &[
    (EcosystemKind::Nix, Builder::NixFile),
    (EcosystemKind::Cargo, Builder::Rust),
    (EcosystemKind::Go, Builder::Go),
    (EcosystemKind::Mix, Builder::Mix),
    (EcosystemKind::Bundler, Builder::Bundler),
    (EcosystemKind::Composer, Builder::Composer),
    (EcosystemKind::PythonPackage, Builder::PythonPackage),
    (EcosystemKind::Poetry, Builder::PythonPackage),
    (EcosystemKind::Uv, Builder::PythonPackage),
    (EcosystemKind::Pdm, Builder::PythonPackage),
    (EcosystemKind::Pipenv, Builder::PythonEnv),
    (EcosystemKind::Pip, Builder::PythonEnv),
    (EcosystemKind::Maven, Builder::Maven),
    (EcosystemKind::Gradle, Builder::Gradle),
    (EcosystemKind::Zig, Builder::Zig),
    (EcosystemKind::Npm, Builder::Npm),
    (EcosystemKind::Yarn, Builder::Yarn),
    (EcosystemKind::Pnpm, Builder::Pnpm),
    (EcosystemKind::Cmake, Builder::Cmake),
    (EcosystemKind::Meson, Builder::Meson),
    (EcosystemKind::Make, Builder::Make),
];

impl Builder {
    /// Whether the package is an executable in itself (compiled or released), so a VM runs
    /// its binary rather than a start command in the source tree.
    fn runs_own_binary(self) -> bool {
        matches!(
            self,
            Builder::Rust
                | Builder::Go
                | Builder::Zig
                | Builder::Cmake
                | Builder::Meson
                | Builder::Make
                | Builder::NixFile
                | Builder::Mix
        )
    }
}

impl Project {
    fn toolchains(&self) -> Vec<&Toolchain> {
        self.facts()
            .filter_map(|f| match f {
                Facts::Toolchain(t) => Some(t),
                _ => None,
            })
            .collect()
    }
}

/// What the flake does with one project.
struct Plan<'a> {
    project: &'a Project,
    builder: Option<(Builder, &'a Ecosystem)>,
    start: Option<(&'a Process, &'a Evidence)>,
    port: Option<(u16, String)>,
    tests: Vec<(&'a TestCommand, &'a Evidence)>,
}

impl<'a> Plan<'a> {
    fn new(project: &'a Project) -> Plan<'a> {
        let builder = BUILD_ORDER
            .iter()
            .find_map(|(kind, b)| {
                project
                    .ecosystems()
                    .find(|e| e.ecosystem == *kind)
                    .map(|e| (*b, e))
            })
            // importNpmLock reads package-lock.json while evaluating: without one there is
            // no package to write (the dev shell still has node).
            .filter(|(b, e)| !(*b == Builder::Npm && e.lockfile.is_none()))
            // A workspace member is built by its workspace's package.
            .filter(|_| project.workspace.is_none());
        // Bun has no nixpkgs builder: such a project gets a dev shell and nothing else.
        let processes: Vec<(&Process, &Evidence)> = project
            .detections
            .iter()
            .filter_map(|d| match &d.facts {
                Facts::Process(p) => d.evidence.first().map(|e| (p, e)),
                _ => None,
            })
            .collect();
        let source_rank = |s: ProcessSource| match s {
            ProcessSource::Procfile => 0,
            ProcessSource::PackageJson => 1,
            ProcessSource::Dockerfile => 2,
            ProcessSource::Framework => 3,
            ProcessSource::Binary => 4,
        };
        let start = processes
            .iter()
            .filter(|(p, _)| p.name == "web")
            .min_by_key(|(p, _)| source_rank(p.source))
            .or_else(|| processes.first())
            .copied();
        let explicit_port = project.detections.iter().find_map(|d| match &d.facts {
            Facts::Port { port } => Some((
                *port,
                d.evidence
                    .first()
                    .map(|e| format!("{} at {}", e.reason, location(e)))
                    .unwrap_or_default(),
            )),
            _ => None,
        });
        let framework_port = project.facts().find_map(|f| match f {
            Facts::Framework {
                framework,
                default_port: Some(p),
            } => Some((
                *p,
                format!("{} listens on {p} by default", framework.name()),
            )),
            _ => None,
        });
        let command_port = start.and_then(|(p, _)| {
            port_in_command(&p.command)
                .map(|port| (port, format!("the start command names port {port}")))
        });
        let mut port = explicit_port.or(command_port).or(framework_port);
        // A serving framework whose port nothing names (actix-web, echo): it serves, the
        // port is a guess and the flake says so.
        if port.is_none() {
            port = project.facts().find_map(|f| match f {
                Facts::Framework { framework, .. } => Some((
                    FALLBACK_PORT,
                    format!(
                        "assumed: {} serves but nothing names its port, so {FALLBACK_PORT} (change it here)",
                        framework.name()
                    ),
                )),
                _ => None,
            });
        }
        // A Procfile `web` process, or a command that reads $PORT, serves on the port it
        // is given: Procurator gives it one.
        if port.is_none() {
            if let Some((p, e)) = start {
                let reads_port = p.command.contains("$PORT") || p.command.contains("${PORT}");
                if reads_port || (p.name == "web" && p.source == ProcessSource::Procfile) {
                    port = Some((
                        FALLBACK_PORT,
                        format!(
                            "{} at {} listens on $PORT, set to {FALLBACK_PORT} here",
                            e.reason,
                            location(e)
                        ),
                    ));
                }
            }
        }
        let mut tests: Vec<(&TestCommand, &Evidence)> = project
            .detections
            .iter()
            .filter_map(|d| match &d.facts {
                Facts::Test(t) => d.evidence.first().map(|e| (t, e)),
                _ => None,
            })
            .collect();
        tests.sort_by_key(|(t, _)| match t.source {
            TestSource::Ci => 0,
            TestSource::PackageJson => 1,
            TestSource::Makefile => 2,
            TestSource::Convention => 3,
        });
        Plan {
            project,
            builder,
            start,
            port,
            tests,
        }
    }

    fn name(&self) -> &str {
        &self.project.name
    }

    fn toolchain(&self, tool: Tool) -> Option<&'a Toolchain> {
        self.project.toolchain(tool)
    }

    /// `./.` or `./services/api`, quoted when the directory name is no Nix path literal,
    /// and given a store name when its own is not one (`my app`: a store path name may not
    /// hold a space, so copying the directory would fail).
    fn src(&self) -> String {
        let expr = path_expr(&self.project.path);
        let base = self.project.path.rsplit('/').next().unwrap_or(".");
        let store_safe = base
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.' | '_' | '?' | '='));
        if store_safe {
            expr
        } else {
            format!(
                "(builtins.path {{ path = {expr}; name = {}; }})",
                nix_str(&sanitize_store_name(base))
            )
        }
    }

    /// A file of the project as a Nix path: `./Cargo.lock`, `./api/Cargo.lock`.
    fn file(&self, name: &str) -> String {
        if self.project.path == "." {
            path_expr(name)
        } else {
            path_expr(&format!("{}/{name}", self.project.path))
        }
    }

    fn version(&self) -> String {
        self.builder
            .and_then(|(_, e)| e.version.clone())
            .unwrap_or_else(|| "0.1.0".to_string())
    }

    /// Whether a VM runs this project, and the package attribute and program it runs: only
    /// with evidence that it serves (a port from configuration, its start command, a serving
    /// framework or a listen call, or a Procfile `web` entry). A CLI tool, an example
    /// program or a background job gets a package and no deployment.
    fn runnable(&self) -> Option<(String, String)> {
        self.port.as_ref()?;
        self.program()
    }

    /// The package attribute and program that would run this project.
    fn program(&self) -> Option<(String, String)> {
        if let Some((b, eco)) = self.builder {
            if b.runs_own_binary() {
                let program = self.main_program(b, eco)?;
                return Some((self.name().to_string(), program));
            }
        }
        self.start.map(|_| {
            let server = format!("{}-server", self.name());
            (server.clone(), server)
        })
    }

    /// The binary a compiled package's VM runs.
    fn main_program(&self, b: Builder, eco: &Ecosystem) -> Option<String> {
        match b {
            Builder::Go => {
                let bins: Vec<String> = eco
                    .binaries
                    .iter()
                    .map(|d| {
                        if d == "." {
                            eco.package
                                .clone()
                                .unwrap_or_else(|| self.name().to_string())
                        } else {
                            d.rsplit('/').next().unwrap_or(d).to_string()
                        }
                    })
                    .collect();
                // The main package with a listen call is the server among several.
                let prefix = format!("{}/", self.project.path);
                let listening = self.project.detections.iter().find_map(|d| match d.facts {
                    Facts::Port { .. } => d.evidence.first().and_then(|e| {
                        let local = e.file.strip_prefix(&prefix).unwrap_or(&e.file);
                        local.strip_suffix("/main.go")
                    }),
                    _ => None,
                });
                if let Some(i) = listening.and_then(|l| eco.binaries.iter().position(|d| d == l)) {
                    return bins.get(i).cloned();
                }
                bins.iter()
                    .find(|b| *b == self.name())
                    .or(bins.first())
                    .cloned()
            }
            Builder::Mix => eco.package.clone(),
            Builder::NixFile => self.start.map(|_| self.name().to_string()),
            _ => {
                let bins = &eco.binaries;
                bins.iter()
                    .find(|b| Some(b.as_str()) == eco.package.as_deref())
                    .or(bins.first())
                    .cloned()
            }
        }
    }
}

/// A port named by a start command: `--port 8000`, `-p 3000`, `--bind 0.0.0.0:8000`.
fn port_in_command(command: &str) -> Option<u16> {
    let words: Vec<&str> = command.split_whitespace().collect();
    for (i, w) in words.iter().enumerate() {
        if matches!(*w, "--port" | "-p" | "--bind" | "-b") {
            if let Some(p) = words
                .get(i + 1)
                .and_then(|n| n.rsplit(':').next())
                .and_then(|n| n.parse().ok())
            {
                return Some(p);
            }
        }
        if let Some(v) = w.strip_prefix("--port=") {
            if let Ok(p) = v.parse() {
                return Some(p);
            }
        }
        if let Some((host, port)) = w.rsplit_once(':') {
            if host.contains('.') && !host.contains('/') {
                if let Ok(p) = port.parse() {
                    return Some(p);
                }
            }
        }
    }
    None
}

fn location(e: &Evidence) -> String {
    match e.line {
        Some(l) => format!("{}:{l}", e.file),
        None => e.file.clone(),
    }
}

/// A Nix double-quoted string.
fn nix_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '$' if chars.peek() == Some(&'{') => out.push_str("\\$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A directory name made a valid store path name: other characters become `-`.
fn sanitize_store_name(name: &str) -> String {
    let out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.' | '_' | '?' | '=') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let out = out.trim_start_matches('.').to_string();
    if out.is_empty() {
        "source".to_string()
    } else {
        out
    }
}

/// A line inside a Nix indented string (`'' … ''`).
fn nix_indented_line(s: &str) -> String {
    s.replace("''", "'''").replace("${", "''${")
}

/// An attribute name, quoted when it is not a plain identifier.
fn attr(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '\'');
    if plain {
        name.to_string()
    } else {
        nix_str(name)
    }
}

/// Indentation-aware line writer.
struct Out {
    text: String,
    depth: usize,
}

impl Out {
    fn line(&mut self, s: &str) {
        if s.is_empty() {
            self.text.push('\n');
            return;
        }
        for _ in 0..self.depth {
            self.text.push_str("  ");
        }
        self.text.push_str(s);
        self.text.push('\n');
    }

    fn open(&mut self, s: &str) {
        self.line(s);
        self.depth += 1;
    }

    fn close(&mut self, s: &str) {
        self.depth = self.depth.saturating_sub(1);
        self.line(s);
    }

    /// A `#` comment, wrapped at 96 columns.
    fn comment(&mut self, s: &str) {
        let width = 96usize.saturating_sub(self.depth * 2 + 2).max(40);
        let mut current = String::new();
        for word in s.split_whitespace() {
            if !current.is_empty() && current.len() + 1 + word.len() > width {
                let l = format!("# {current}");
                self.line(&l);
                current.clear();
            }
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(word);
        }
        if !current.is_empty() {
            let l = format!("# {current}");
            self.line(&l);
        }
    }
}

struct Writer<'a> {
    analysis: &'a Analysis,
    plans: &'a [Plan<'a>],
    /// Why projects were left out (`in <path>: <reason>`).
    left_out: &'a [String],
    out: Out,
    rust_overlay: bool,
}

impl<'a> Writer<'a> {
    fn new(analysis: &'a Analysis, plans: &'a [Plan<'a>], left_out: &'a [String]) -> Writer<'a> {
        let rust_overlay = plans.iter().any(|p| {
            p.toolchain(Tool::Rust)
                .is_some_and(|t| t.nixpkgs.starts_with("rust-bin"))
        });
        Writer {
            analysis,
            plans,
            left_out,
            out: Out {
                text: String::new(),
                depth: 0,
            },
            rust_overlay,
        }
    }

    fn write(mut self) -> String {
        let o = &mut self.out;
        o.comment(&format!(
            "Generated by autonix from the repository `{}`. Every assumption is explained in a \
             comment; `autonix explain` shows the evidence behind each detection.",
            self.analysis.name
        ));
        for reason in self.left_out {
            o.comment(&format!(
                "Left out because autonix refuses to guess: {reason}"
            ));
        }
        o.open("{");
        o.line(&format!(
            "description = {};",
            nix_str(&format!("{} (generated by autonix)", self.analysis.name))
        ));
        o.line("");
        o.open("inputs = {");
        let nixpkgs = &self.analysis.nixpkgs;
        let branch = if nixpkgs.branch.is_empty() {
            crate::detect::versions::oldest_branch().name.as_str()
        } else {
            nixpkgs.branch.as_str()
        };
        o.comment(&format!(
            "Toolchain versions below were resolved against {branch}; changing the branch may change them."
        ));
        if branch != crate::detect::versions::oldest_branch().name {
            o.comment(&format!("autonix chose {branch}: {}", nixpkgs.reason));
        }
        o.line(&format!("nixpkgs.url = \"github:NixOS/nixpkgs/{branch}\";"));
        if self.rust_overlay {
            o.comment(
                "A pinned or newer Rust toolchain than nixpkgs' own comes from rust-overlay.",
            );
            o.line("rust-overlay.url = \"github:oxalica/rust-overlay\";");
            o.line("rust-overlay.inputs.nixpkgs.follows = \"nixpkgs\";");
        }
        o.close("};");
        o.line("");
        if self.rust_overlay {
            o.open("outputs = { self, nixpkgs, rust-overlay }:");
        } else {
            o.open("outputs = { self, nixpkgs }:");
        }
        o.open("let");
        o.comment("Procurator workers are x86_64-linux; add systems here to build elsewhere.");
        o.line("systems = [ \"x86_64-linux\" \"aarch64-linux\" ];");
        o.open("forAllSystems = f: nixpkgs.lib.genAttrs systems (system:");
        o.open("f (import nixpkgs {");
        o.line("inherit system;");
        if self.rust_overlay {
            o.line("overlays = [ rust-overlay.overlays.default ];");
        }
        o.close("}));");
        o.depth -= 1;
        o.close("in");
        o.open("{");
        self.packages();
        self.dev_shell();
        self.checks();
        self.nixos_module();
        self.procurator();
        let o = &mut self.out;
        o.close("};");
        o.depth -= 1;
        o.close("}");
        self.out.text
    }

    fn packages(&mut self) {
        let o = &mut self.out;
        o.open("packages = forAllSystems (pkgs:");
        o.open("let");
        o.line("inherit (pkgs) lib;");
        o.close("in");
        o.open("rec {");
        let mut default: Option<String> = None;
        let mut first = true;
        for plan in self.plans {
            let before = self.out.text.len();
            if !first {
                self.out.line("");
            }
            let wrote_package = package(&mut self.out, plan);
            let wrote_server = server(&mut self.out, plan, wrote_package, self.plans);
            if !wrote_package && !wrote_server {
                // Nothing for this project: remove the blank line written for it.
                self.out.text.truncate(before);
                continue;
            }
            first = false;
            if default.is_none() {
                default = Some(if wrote_package {
                    plan.name().to_string()
                } else {
                    format!("{}-server", plan.name())
                });
            }
        }
        let o = &mut self.out;
        if let Some(d) = default {
            o.line("");
            if self.plans.len() > 1 {
                o.comment("`nix build` builds the first project in path order.");
            }
            o.line(&format!("default = {};", attr(&d)));
        }
        o.close("});");
        o.depth -= 1;
        o.line("");
    }

    fn dev_shell(&mut self) {
        let mut packages: BTreeSet<String> = BTreeSet::new();
        let mut notes: Vec<String> = Vec::new();
        let mut chosen_tools: Vec<(Tool, String, String)> = Vec::new();
        for plan in self.plans {
            for t in plan.project.toolchains() {
                if let Some((_, expr, from)) =
                    chosen_tools.iter().find(|(tool, _, _)| *tool == t.tool)
                {
                    if *expr != t.nixpkgs {
                        notes.push(format!(
                            "{} asks for {} `{}` but the shell already has `{expr}` from {from}; one shell cannot hold both.",
                            plan.project.path,
                            t.tool.name(),
                            t.nixpkgs
                        ));
                    }
                    continue;
                }
                chosen_tools.push((t.tool, t.nixpkgs.clone(), plan.project.path.clone()));
                match t.tool {
                    Tool::Rust if t.nixpkgs.starts_with("rust-bin") => {
                        packages.insert(format!("({})", t.nixpkgs));
                    }
                    Tool::Rust => {
                        for p in ["cargo", "rustc", "clippy", "rustfmt"] {
                            packages.insert(p.to_string());
                        }
                    }
                    Tool::Go => {
                        packages.insert(t.nixpkgs.clone());
                    }
                    Tool::Python => {
                        packages.insert(t.nixpkgs.clone());
                    }
                    Tool::Ruby => {
                        packages.insert(t.nixpkgs.clone());
                        packages.insert("bundler".into());
                    }
                    Tool::Php => {
                        packages.insert(t.nixpkgs.clone());
                        packages.insert(format!("{}.packages.composer", t.nixpkgs));
                    }
                    Tool::Java => {
                        packages.insert(t.nixpkgs.clone());
                    }
                    Tool::Elixir => {
                        packages.insert(t.nixpkgs.clone());
                    }
                    Tool::Node | Tool::Zig => {
                        packages.insert(t.nixpkgs.clone());
                    }
                }
            }
            for eco in plan.project.ecosystems() {
                if eco.ecosystem == EcosystemKind::Pnpm {
                    packages.insert(eco.backend.clone().unwrap_or_else(|| "pnpm".into()));
                    continue;
                }
                let extra: &[&str] = match eco.ecosystem {
                    EcosystemKind::Yarn => &["yarn"],
                    EcosystemKind::Bun => &["bun"],
                    EcosystemKind::Poetry => &["poetry"],
                    EcosystemKind::Uv => &["uv"],
                    EcosystemKind::Pdm => &["pdm"],
                    EcosystemKind::Pipenv => &["pipenv"],
                    EcosystemKind::Maven => &["maven"],
                    EcosystemKind::Gradle => &["gradle"],
                    EcosystemKind::Cmake => &["cmake"],
                    EcosystemKind::Meson => &["meson", "ninja"],
                    EcosystemKind::Make => &["gnumake"],
                    _ => &[],
                };
                packages.extend(extra.iter().map(|s| s.to_string()));
            }
            for s in services(plan.project) {
                if let Some(n) = &s.nixos {
                    packages.insert(n.package.clone());
                }
            }
        }
        let o = &mut self.out;
        o.open("devShells = forAllSystems (pkgs: {");
        o.open("default = pkgs.mkShell {");
        for n in &notes {
            o.comment(n);
        }
        if packages.iter().any(|p| {
            p.starts_with("postgresql")
                || p == "redis"
                || p == "valkey"
                || p == "mariadb"
                || p == "mysql80"
        }) {
            o.comment(
                "Backing services (from compose files, drivers, env files or CI) are included so they can be run locally.",
            );
        }
        if packages.is_empty() {
            o.line("packages = [ ];");
        } else {
            o.open("packages = [");
            for p in &packages {
                let expr = if let Some(inner) = p.strip_prefix('(') {
                    format!("(pkgs.{inner}")
                } else {
                    format!("pkgs.{p}")
                };
                o.line(&expr);
            }
            o.close("];");
        }
        o.close("};");
        o.close("});");
        o.line("");
    }

    fn checks(&mut self) {
        let o = &mut self.out;
        o.open("checks = forAllSystems (pkgs: {");
        let mut any = false;
        for plan in self.plans {
            let Some((builder, _)) = plan.builder else {
                continue;
            };
            if !has_package(plan) {
                continue;
            }
            for (i, (test, evidence)) in plan.tests.iter().enumerate() {
                if i > 0 && test.source == TestSource::Convention {
                    // A convention is only a fallback when nothing said how to test.
                    continue;
                }
                let name = if i == 0 {
                    format!("{}-tests", plan.name())
                } else {
                    format!("{}-tests-{}", plan.name(), i + 1)
                };
                if any {
                    o.line("");
                }
                any = true;
                o.comment(&format!(
                    "`{}` from {} ({}), run inside the package's build environment so dependencies are already there.",
                    test.command,
                    location(evidence),
                    evidence.reason
                ));
                let (command, note) = sandbox_command(&test.command);
                if let Some(note) = note {
                    o.comment(&note);
                }
                if builder == Builder::PythonEnv {
                    o.open(&format!(
                        "{} = pkgs.runCommand {} {{ nativeBuildInputs = [ self.packages.${{pkgs.system}}.{} ]; }} ''",
                        attr(&name),
                        nix_str(&name),
                        attr(plan.name())
                    ));
                    o.line(&format!(
                        "cp -r ${{{}}} src && chmod -R u+w src && cd src",
                        plan.src()
                    ));
                    o.line(&nix_indented_line(&command));
                    o.line("touch $out");
                    o.close("'';");
                    continue;
                }
                o.open(&format!(
                    "{} = self.packages.${{pkgs.system}}.{}.overrideAttrs {{",
                    attr(&name),
                    attr(plan.name())
                ));
                o.line("doCheck = true;");
                o.open("checkPhase = ''");
                o.line("runHook preCheck");
                o.line(&nix_indented_line(&command));
                o.line("runHook postCheck");
                o.close("'';");
                o.close("};");
            }
        }
        if !any {
            o.comment("No test command was found in CI, package scripts or conventions.");
        }
        o.close("});");
        o.line("");
    }

    fn nixos_module(&mut self) {
        let all: Vec<(&Service, String)> = self
            .plans
            .iter()
            .flat_map(|p| {
                services(p.project)
                    .into_iter()
                    .filter(|s| s.nixos.is_some())
                    .map(|s| {
                        let file = p
                            .project
                            .detections
                            .iter()
                            .find(|d| matches!(&d.facts, Facts::Service(x) if x == s))
                            .and_then(|d| d.evidence.first())
                            .map(location)
                            .unwrap_or_default();
                        (s, file)
                    })
            })
            .collect();
        if all.is_empty() {
            return;
        }
        let o = &mut self.out;
        o.comment(
            "Backing services the repository uses (compose containers, or named by a driver, an \
             env file or CI), as NixOS services. Import this \
             module into the machines that host them; connection settings (users, passwords, \
             databases) are not carried over from the compose environment and must be set here.",
        );
        o.open("nixosModules.default = { pkgs, ... }: {");
        let mut first = true;
        for (s, file) in all {
            let Some(n) = &s.nixos else { continue };
            if !first {
                o.line("");
            }
            first = false;
            match &s.image {
                Some(image) => o.comment(&format!("`{}` ({image}) at {file}", s.name)),
                None => o.comment(&format!("`{}` at {file}", s.name)),
            }
            match n.module.as_str() {
                "services.redis.servers" => {
                    o.open(&format!("services.redis.servers.{} = {{", attr(&s.name)));
                    o.line("enable = true;");
                    if n.package == "valkey" {
                        o.line("package = pkgs.valkey;");
                    }
                    o.line(&format!(
                        "port = {};",
                        s.ports.first().copied().unwrap_or(n.port)
                    ));
                    o.close("};");
                }
                "services.postgresql" | "services.mysql" => {
                    o.open(&format!("{} = {{", n.module));
                    o.line("enable = true;");
                    o.line(&format!("package = pkgs.{};", n.package));
                    o.close("};");
                }
                module => {
                    o.line(&format!("{module}.enable = true;"));
                }
            }
        }
        o.close("};");
        o.line("");
    }

    fn procurator(&mut self) {
        let o = &mut self.out;
        o.comment(
            "Procurator cluster: the `cluster` options of Procurator's Nix library (nix/README.md). \
             Deploy with `(procurator.lib.evalCluster { modules = [ { cluster = \
             self.procurator.cluster; } ]; }).outputs`. One supervised process per runnable \
             project. Assumed: 1 vCPU, 512 MiB and one replica each (adjust to the load), and an \
             HTTP health check on `/` of the service port.",
        );
        o.open("procurator.cluster = {");
        o.line(&format!("name = {};", nix_str(&self.analysis.name)));
        let runnable: Vec<(&Plan<'_>, String, String)> = self
            .plans
            .iter()
            .filter_map(|p| p.runnable().map(|(pkg, prog)| (p, pkg, prog)))
            .collect();
        let mut not_deployed = false;
        for plan in self.plans {
            if plan.port.is_none() {
                if let Some((_, program)) = plan.program() {
                    o.comment(&format!(
                        "Not deployed: {} runs `{program}`, but nothing shows it serves (no serving \
                         framework, declared port, listen call or Procfile `web` entry); add it to \
                         `vms` if it does.",
                        plan.name()
                    ));
                    not_deployed = true;
                }
            }
        }
        if runnable.is_empty() {
            if !not_deployed {
                o.comment("Nothing here runs as a service: no start command, Procfile or server binary was found.");
            }
            o.line("vms = { };");
            o.close("};");
            return;
        }
        o.open("vms = {");
        for (i, (plan, pkg, prog)) in runnable.iter().enumerate() {
            if i > 0 {
                o.line("");
            }
            let Some((port, why)) = plan.port.clone() else {
                continue;
            };
            if let Some((p, e)) = plan.start {
                o.comment(&format!("Runs `{}` from {}.", p.command, location(e)));
            }
            o.comment(&format!("Port {port}: {why}."));
            o.open(&format!("{} = {{", attr(plan.name())));
            o.line(&format!("cpu = {DEFAULT_CPU};"));
            o.line(&format!("memory = {DEFAULT_MEMORY_MB};"));
            o.line("replicas = 1;");
            o.line(&format!(
                "package = self.packages.x86_64-linux.{};",
                attr(pkg)
            ));
            o.line(&format!("exec = {};", nix_str(&format!("bin/{prog}"))));
            o.line(&format!("env.PORT = {};", nix_str(&port.to_string())));
            o.open("deployment = {");
            o.line("backend = \"process\";");
            o.line(&format!(
                "healthChecks = [ {{ type = \"http\"; port = {port}; path = \"/\"; }} ];"
            ));
            o.close("};");
            o.line(&format!("ports.http.guest = {port};"));
            o.close("};");
        }
        o.close("};");
        o.close("};");
    }
}

/// A test command as it can run in the Nix sandbox, which has no network: build-tool
/// wrappers download their tool, and `poetry run`/`uv run` create a virtualenv and install
/// into it. The note says what was changed and why.
fn sandbox_command(command: &str) -> (String, Option<String>) {
    for (wrapper, tool) in [("./mvnw ", "mvn "), ("./gradlew ", "gradle ")] {
        if let Some(rest) = command.strip_prefix(wrapper) {
            return (
                format!("{tool}{rest}"),
                Some(format!(
                    "`{}` downloads its build tool, which the sandbox cannot; nixpkgs' `{}` runs the same tasks.",
                    wrapper.trim(),
                    tool.trim()
                )),
            );
        }
    }
    for runner in [
        "poetry run ",
        "uv run ",
        "pdm run ",
        "pipenv run ",
        "hatch run ",
    ] {
        if let Some(rest) = command.strip_prefix(runner) {
            return (
                rest.to_string(),
                Some(format!(
                    "Run without `{}`: it would create a virtualenv, which the sandbox cannot; test dependencies must be among the package's inputs.",
                    runner.trim()
                )),
            );
        }
    }
    (command.to_string(), None)
}

fn services(project: &Project) -> Vec<&Service> {
    project
        .facts()
        .filter_map(|f| match f {
            Facts::Service(s) => Some(s),
            _ => None,
        })
        .collect()
}

/// Whether [`package`] writes a package for this plan (checks need one).
fn has_package(plan: &Plan<'_>) -> bool {
    match plan.builder {
        Some((Builder::PythonEnv, _)) => true,
        Some(_) => true,
        None => false,
    }
}

fn toolchain_expr(plan: &Plan<'_>, tool: Tool, fallback: &str) -> String {
    plan.toolchain(tool)
        .map(|t| t.nixpkgs.clone())
        .unwrap_or_else(|| fallback.to_string())
}

/// Python dependency names as nixpkgs attributes: PEP 503 names, which nixpkgs mostly uses.
fn python_deps(eco: &Ecosystem) -> String {
    let deps: Vec<String> = eco.dependencies.iter().map(|d| attr(d)).collect();
    deps.join(" ")
}

/// Writes `packages.<name>`; false when the project has no builder.
fn package(o: &mut Out, plan: &Plan<'_>) -> bool {
    let Some((builder, eco)) = plan.builder else {
        if plan
            .project
            .ecosystems()
            .any(|e| e.ecosystem == EcosystemKind::Bun)
        {
            o.comment(&format!(
                "{}: nixpkgs has no builder for Bun lockfiles; only the dev shell provides bun.",
                plan.project.path
            ));
        }
        if let Some(npm) = plan
            .project
            .ecosystems()
            .find(|e| e.ecosystem == EcosystemKind::Npm && e.lockfile.is_none())
        {
            o.comment(&format!(
                "{}: no package-lock.json, so no package (the Nix build reads it); commit one (`npm install --package-lock-only`) and run autonix again.",
                npm.manifest
            ));
        }
        return false;
    };
    let name = plan.name();
    let src = plan.src();
    let version = plan.version();
    let manifest = &eco.manifest;
    o.comment(&format!("From {manifest} ({}).", eco.ecosystem.name()));
    match builder {
        Builder::NixFile => {
            // `{src}/default.nix` would not parse once src is quoted (`(./. + "/my app")`).
            let file = plan.file("default.nix");
            let call = if eco.backend.as_deref() == Some("callPackage") {
                format!("{} = pkgs.callPackage {file} {{ }};", attr(name))
            } else {
                format!("{} = import {file} {{ inherit pkgs; }};", attr(name))
            };
            o.comment("The repository's own Nix expression is the most faithful build.");
            o.line(&call);
        }
        Builder::Rust => {
            match plan.toolchain(Tool::Rust) {
                Some(t) if t.nixpkgs.starts_with("rust-bin") => {
                    o.comment(&format!("Rust {}: {}.", t.version, t.reason));
                    o.line(&format!("{} =", attr(name)));
                    o.depth += 1;
                    o.open("let");
                    o.line(&format!("toolchain = pkgs.{};", t.nixpkgs));
                    o.line("rustPlatform = pkgs.makeRustPlatform { cargo = toolchain; rustc = toolchain; };");
                    o.close("in");
                    o.open("rustPlatform.buildRustPackage {");
                }
                Some(t) => {
                    o.comment(&format!("Rust {}: {}.", t.version, t.reason));
                    o.open(&format!(
                        "{} = pkgs.rustPlatform.buildRustPackage {{",
                        attr(name)
                    ));
                }
                None => o.open(&format!(
                    "{} = pkgs.rustPlatform.buildRustPackage {{",
                    attr(name)
                )),
            }
            o.line(&format!("pname = {};", nix_str(name)));
            o.line(&format!("version = {};", nix_str(&version)));
            o.line(&format!("src = {src};"));
            if eco.lockfile.is_none() {
                o.comment("Cargo.lock is missing: commit it (`cargo generate-lockfile`), this build needs it.");
            }
            o.line(&format!(
                "cargoLock.lockFile = {};",
                plan.file("Cargo.lock")
            ));
            if let Some(main) = plan.main_program(builder, eco) {
                o.line(&format!("meta.mainProgram = {};", nix_str(&main)));
            }
            o.close("};");
            if plan
                .toolchain(Tool::Rust)
                .is_some_and(|t| t.nixpkgs.starts_with("rust-bin"))
            {
                o.depth -= 1;
            }
        }
        Builder::Go => {
            let go = toolchain_expr(plan, Tool::Go, "go_1_23");
            let suffix = go.trim_start_matches("go_").replace('_', "");
            if let Some(t) = plan.toolchain(Tool::Go) {
                o.comment(&format!("Go {}: {}.", t.version, t.reason));
            }
            o.open(&format!("{} = pkgs.buildGo{suffix}Module {{", attr(name)));
            o.line(&format!("pname = {};", nix_str(name)));
            o.line(&format!("version = {};", nix_str(&version)));
            o.line(&format!("src = {src};"));
            if eco.backend.as_deref() == Some("vendor") {
                o.comment("Dependencies are vendored in the repository.");
                o.line("vendorHash = null;");
            } else {
                o.comment(
                    "Hash of the module dependencies: the first build reports the real value.",
                );
                o.line("vendorHash = lib.fakeHash;");
            }
            let subs: Vec<String> = eco
                .binaries
                .iter()
                .filter(|b| *b != ".")
                .map(|b| nix_str(b))
                .collect();
            if !subs.is_empty() && !eco.binaries.iter().any(|b| b == ".") {
                o.line(&format!("subPackages = [ {} ];", subs.join(" ")));
            }
            if let Some(main) = plan.main_program(builder, eco) {
                o.line(&format!("meta.mainProgram = {};", nix_str(&main)));
            }
            o.close("};");
        }
        Builder::Npm | Builder::Yarn | Builder::Pnpm => {
            let node = toolchain_expr(plan, Tool::Node, "nodejs");
            if let Some(t) = plan.toolchain(Tool::Node) {
                o.comment(&format!("Node.js {}: {}.", t.version, t.reason));
            }
            let has_build = eco.scripts.contains_key("build");
            match builder {
                Builder::Npm => {
                    o.open(&format!("{} = pkgs.buildNpmPackage {{", attr(name)));
                    o.line(&format!("pname = {};", nix_str(name)));
                    o.line(&format!("version = {};", nix_str(&version)));
                    o.line(&format!("src = {src};"));
                    o.line(&format!("nodejs = pkgs.{node};"));
                    o.comment(
                        "Dependencies come straight from package-lock.json: no hash to maintain.",
                    );
                    o.line(&format!(
                        "npmDeps = pkgs.importNpmLock {{ npmRoot = {src}; }};"
                    ));
                    o.line("npmConfigHook = pkgs.importNpmLock.npmConfigHook;");
                    if !has_build {
                        o.comment("package.json has no `build` script.");
                        o.line("dontNpmBuild = true;");
                    }
                    o.close("};");
                }
                Builder::Yarn => {
                    o.open(&format!(
                        "{} = pkgs.stdenv.mkDerivation (finalAttrs: {{",
                        attr(name)
                    ));
                    o.line(&format!("pname = {};", nix_str(name)));
                    o.line(&format!("version = {};", nix_str(&version)));
                    o.line(&format!("src = {src};"));
                    o.open("yarnOfflineCache = pkgs.fetchYarnDeps {");
                    o.line(&format!("yarnLock = {};", plan.file("yarn.lock")));
                    o.comment("The first build reports the real hash.");
                    o.line("hash = lib.fakeHash;");
                    o.close("};");
                    let build_hook = if has_build { " pkgs.yarnBuildHook" } else { "" };
                    o.line(&format!(
                        "nativeBuildInputs = [ pkgs.yarnConfigHook{build_hook} pkgs.yarnInstallHook pkgs.{node} ];"
                    ));
                    o.close("});");
                }
                _ => {
                    o.open(&format!(
                        "{} = pkgs.stdenv.mkDerivation (finalAttrs: {{",
                        attr(name)
                    ));
                    o.line(&format!("pname = {};", nix_str(name)));
                    o.line(&format!("version = {};", nix_str(&version)));
                    o.line(&format!("src = {src};"));
                    let pnpm = eco.backend.as_deref().unwrap_or("pnpm");
                    o.open(&format!("pnpmDeps = pkgs.{pnpm}.fetchDeps {{"));
                    o.line("inherit (finalAttrs) pname version src;");
                    o.comment("The first build reports the real hash.");
                    o.line("hash = lib.fakeHash;");
                    o.close("};");
                    o.line(&format!(
                        "nativeBuildInputs = [ pkgs.{node} pkgs.{pnpm}.configHook ];"
                    ));
                    if has_build {
                        o.line("buildPhase = \"pnpm run build\";");
                    }
                    o.comment("The app runs from its directory with node_modules in place.");
                    o.line("installPhase = \"mkdir -p $out/lib && cp -r . $out/lib/${finalAttrs.pname}\";");
                    o.close("});");
                }
            }
        }
        Builder::PythonPackage => {
            let py = toolchain_expr(plan, Tool::Python, "python3");
            if let Some(t) = plan.toolchain(Tool::Python) {
                o.comment(&format!("Python {}: {}.", t.version, t.reason));
            }
            o.comment("Dependency names are PEP 503 names, which nixpkgs' Python set mostly uses.");
            o.open(&format!(
                "{} = pkgs.{py}.pkgs.buildPythonApplication {{",
                attr(name)
            ));
            o.line(&format!("pname = {};", nix_str(name)));
            o.line(&format!("version = {};", nix_str(&version)));
            o.line("pyproject = true;");
            o.line(&format!("src = {src};"));
            let backend = eco.backend.clone().unwrap_or_else(|| {
                o.comment("No build backend declared: setuptools, as pip would assume.");
                "setuptools".into()
            });
            o.line(&format!(
                "build-system = [ pkgs.{py}.pkgs.{} ];",
                attr(&backend)
            ));
            o.line(
                &format!(
                    "dependencies = with pkgs.{py}.pkgs; [ {} ];",
                    python_deps(eco)
                )
                .replace("[  ]", "[ ]"),
            );
            o.close("};");
        }
        Builder::PythonEnv => {
            let py = toolchain_expr(plan, Tool::Python, "python3");
            if let Some(t) = plan.toolchain(Tool::Python) {
                o.comment(&format!("Python {}: {}.", t.version, t.reason));
            }
            o.comment(&format!(
                "{manifest} lists requirements but no package: the application runs from its source with this interpreter."
            ));
            o.line(
                &format!(
                    "{} = pkgs.{py}.withPackages (ps: with ps; [ {} ]);",
                    attr(name),
                    python_deps(eco)
                )
                .replace("[  ]", "[ ]"),
            );
        }
        Builder::Bundler => {
            let ruby = toolchain_expr(plan, Tool::Ruby, "ruby");
            if let Some(t) = plan.toolchain(Tool::Ruby) {
                o.comment(&format!("Ruby {}: {}.", t.version, t.reason));
            }
            o.comment(
                "bundlerEnv reads gemset.nix: generate it with `bundix` next to Gemfile.lock.",
            );
            o.open(&format!("{} = pkgs.bundlerEnv {{", attr(name)));
            o.line(&format!("name = {};", nix_str(&format!("{name}-gems"))));
            o.line(&format!("ruby = pkgs.{ruby};"));
            o.line(&format!("gemdir = {src};"));
            o.close("};");
        }
        Builder::Composer => {
            let php = toolchain_expr(plan, Tool::Php, "php");
            if let Some(t) = plan.toolchain(Tool::Php) {
                o.comment(&format!("PHP {}: {}.", t.version, t.reason));
            }
            o.open(&format!(
                "{} = pkgs.{php}.buildComposerProject (finalAttrs: {{",
                attr(name)
            ));
            o.line(&format!("pname = {};", nix_str(name)));
            o.line(&format!("version = {};", nix_str(&version)));
            o.line(&format!("src = {src};"));
            o.comment("Hash of the vendored Composer dependencies: the first build reports it.");
            o.line("vendorHash = lib.fakeHash;");
            o.close("});");
        }
        Builder::Mix => {
            if let Some(t) = plan.toolchain(Tool::Elixir) {
                o.comment(&format!("Elixir {}: {}.", t.version, t.reason));
            }
            let beam = match plan.toolchain(Tool::Elixir).map(|t| t.nixpkgs.as_str()) {
                Some(attr_name) => format!(
                    "pkgs.beamPackages.extend (self: super: {{ elixir = pkgs.{attr_name}; }})"
                ),
                None => "pkgs.beamPackages".to_string(),
            };
            o.open(&format!(
                "{} = let beam = {beam}; in beam.mixRelease rec {{",
                attr(name)
            ));
            o.line(&format!("pname = {};", nix_str(name)));
            o.line(&format!("version = {};", nix_str(&version)));
            o.line(&format!("src = {src};"));
            o.open("mixFodDeps = beam.fetchMixDeps {");
            o.line("pname = \"mix-deps-${pname}\";");
            o.line("inherit src version;");
            o.comment("The first build reports the real hash.");
            o.line("hash = lib.fakeHash;");
            o.close("};");
            o.close("};");
        }
        Builder::Maven => {
            let jdk = toolchain_expr(plan, Tool::Java, "jdk");
            if let Some(t) = plan.toolchain(Tool::Java) {
                o.comment(&format!("Java {}: {}.", t.version, t.reason));
            }
            o.open(&format!(
                "{} = (pkgs.maven.override {{ jdk_headless = pkgs.{jdk}; }}).buildMavenPackage {{",
                attr(name)
            ));
            o.line(&format!("pname = {};", nix_str(name)));
            o.line(&format!("version = {};", nix_str(&version)));
            o.line(&format!("src = {src};"));
            o.comment(
                "Hash of the Maven repository the build downloads: the first build reports it.",
            );
            o.line("mvnHash = lib.fakeHash;");
            o.line(&format!(
                "installPhase = \"mkdir -p $out/share/{name} && cp target/*.jar $out/share/{name}/\";"
            ));
            o.close("};");
        }
        Builder::Gradle => {
            let jdk = toolchain_expr(plan, Tool::Java, "jdk");
            if let Some(t) = plan.toolchain(Tool::Java) {
                o.comment(&format!("Java {}: {}.", t.version, t.reason));
            }
            o.open(&format!(
                "{} = pkgs.stdenv.mkDerivation (finalAttrs: {{",
                attr(name)
            ));
            o.line(&format!("pname = {};", nix_str(name)));
            o.line(&format!("version = {};", nix_str(&version)));
            o.line(&format!("src = {src};"));
            o.line(&format!("nativeBuildInputs = [ pkgs.gradle pkgs.{jdk} ];"));
            o.comment(
                "Gradle dependencies are locked in deps.json: create it with \
                 `nix build .#<this package>.mitmCache.updateScript` and run the result.",
            );
            o.open("mitmCache = pkgs.gradle.fetchDeps {");
            o.line("inherit (finalAttrs) pname;");
            o.line("data = ./deps.json;");
            o.close("};");
            o.line("gradleBuildTask = \"build\";");
            o.line(&format!(
                "installPhase = \"mkdir -p $out/share/{name} && cp build/libs/*.jar $out/share/{name}/\";"
            ));
            o.close("});");
        }
        Builder::Zig => {
            let zig = toolchain_expr(plan, Tool::Zig, "zig");
            if let Some(t) = plan.toolchain(Tool::Zig) {
                o.comment(&format!("Zig {}: {}.", t.version, t.reason));
            }
            o.open(&format!("{} = pkgs.stdenv.mkDerivation {{", attr(name)));
            o.line(&format!("pname = {};", nix_str(name)));
            o.line(&format!("version = {};", nix_str(&version)));
            o.line(&format!("src = {src};"));
            o.line(&format!("nativeBuildInputs = [ pkgs.{zig}.hook ];"));
            o.close("};");
        }
        Builder::Cmake | Builder::Meson | Builder::Make => {
            o.open(&format!("{} = pkgs.stdenv.mkDerivation {{", attr(name)));
            o.line(&format!("pname = {};", nix_str(name)));
            o.line(&format!("version = {};", nix_str(&version)));
            o.line(&format!("src = {src};"));
            match builder {
                Builder::Cmake => o.line("nativeBuildInputs = [ pkgs.cmake ];"),
                Builder::Meson => o.line("nativeBuildInputs = [ pkgs.meson pkgs.ninja ];"),
                _ => {
                    o.comment("Assumed: the Makefile honours PREFIX for `make install`.");
                    o.line("makeFlags = [ \"PREFIX=${placeholder \"out\"}\" ];");
                }
            }
            o.close("};");
        }
    }
    true
}

/// Writes `packages.<name>-server`, the wrapper running an interpreted project's start
/// command; false when none is needed.
fn server(o: &mut Out, plan: &Plan<'_>, has_package: bool, plans: &[Plan<'_>]) -> bool {
    let Some((process, evidence)) = plan.start else {
        return false;
    };
    if plan.builder.is_some_and(|(b, _)| b.runs_own_binary()) {
        return false;
    }
    // A workspace member runs from its workspace's built package, with its tools.
    let (home, builder) = match &plan.project.workspace {
        Some(path) => match plans.iter().find(|p| p.project.path == *path) {
            Some(ws) if ws.builder.is_some() => (ws, ws.builder),
            // The workspace has no package (no lockfile): nothing to run the member from.
            _ => return false,
        },
        None => (plan, plan.builder),
    };
    let name = home.name();
    let src = plan.src();
    let mut inputs: Vec<String> = Vec::new();
    let mut dir = format!("${{{src}}}");
    match builder {
        Some((Builder::Npm, _)) => {
            inputs.push(format!(
                "pkgs.{}",
                toolchain_expr(home, Tool::Node, "nodejs")
            ));
            dir = format!("${{{}}}/lib/node_modules/{name}", attr(name));
        }
        Some((Builder::Yarn, _)) => {
            inputs.push(format!(
                "pkgs.{}",
                toolchain_expr(home, Tool::Node, "nodejs")
            ));
            inputs.push("pkgs.yarn".into());
            dir = format!("${{{}}}/lib/node_modules/{name}", attr(name));
        }
        Some((Builder::Pnpm, eco)) => {
            inputs.push(format!(
                "pkgs.{}",
                toolchain_expr(home, Tool::Node, "nodejs")
            ));
            inputs.push(format!("pkgs.{}", eco.backend.as_deref().unwrap_or("pnpm")));
            dir = format!("${{{}}}/lib/{name}", attr(name));
        }
        Some((Builder::PythonPackage, eco)) => {
            let py = toolchain_expr(home, Tool::Python, "python3");
            inputs.push(
                format!(
                    "(pkgs.{py}.withPackages (ps: with ps; [ {} ] ++ [ {} ]))",
                    python_deps(eco),
                    attr(name)
                )
                .replace("[  ]", "[ ]"),
            );
        }
        Some((Builder::PythonEnv, _)) => inputs.push(attr(name)),
        Some((Builder::Bundler, _)) => {
            inputs.push(attr(name));
            inputs.push(format!("{}.wrappedRuby", attr(name)));
        }
        Some((Builder::Composer, _)) => {
            inputs.push(format!("pkgs.{}", toolchain_expr(home, Tool::Php, "php")));
            dir = format!("${{{}}}/share/php/{name}", attr(name));
        }
        Some((Builder::Maven | Builder::Gradle, _)) => {
            inputs.push(format!("pkgs.{}", toolchain_expr(home, Tool::Java, "jdk")));
            dir = format!("${{{}}}/share/{name}", attr(name));
        }
        _ => {
            // No builder: a Dockerfile or Procfile says how to run it; its base image says
            // which interpreter.
            for t in home.project.toolchains() {
                inputs.push(match t.tool {
                    Tool::Rust if t.nixpkgs.starts_with("rust-bin") => {
                        format!("(pkgs.{})", t.nixpkgs)
                    }
                    Tool::Rust => "pkgs.cargo".into(),
                    _ => format!("pkgs.{}", t.nixpkgs),
                });
            }
        }
    }
    if has_package {
        o.line("");
    }
    let port = plan.port.as_ref().map(|(p, _)| *p).unwrap_or(FALLBACK_PORT);
    o.comment(&format!(
        "Starts `{}` ({} at {}) in {}.",
        process.command,
        evidence.reason,
        location(evidence),
        if dir.starts_with(&format!("${{{src}}}")) {
            "a store copy of the sources"
        } else {
            "the built package"
        }
    ));
    let command = process
        .command
        .replace("$PORT", "\"$PORT\"")
        .replace("${PORT}", "\"$PORT\"");
    let command = if process.source == ProcessSource::Dockerfile {
        o.comment(
            "Assumed: the container's command works outside the container, from the sources.",
        );
        command
    } else {
        command
    };
    let name = plan.name();
    o.open(&format!(
        "{} = pkgs.writeShellApplication {{",
        attr(&format!("{name}-server"))
    ));
    o.line(&format!("name = {};", nix_str(&format!("{name}-server"))));
    o.line(&format!("runtimeInputs = [ {} ];", inputs.join(" ")).replace("[  ]", "[ ]"));
    o.open("text = ''");
    o.line(&format!("export PORT=\"''${{PORT:-{port}}}\""));
    o.line(&format!("cd {dir}"));
    o.line(&format!("exec {}", nix_indented_line(&command)));
    o.close("'';");
    o.close("};");
    true
}

/// The warnings of an analysis, for printing beside a generated flake.
pub fn warnings(analysis: &Analysis) -> Vec<(&str, &Finding)> {
    analysis
        .projects
        .iter()
        .flat_map(|p| p.warnings.iter().map(move |w| (p.path.as_str(), w)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped() {
        assert_eq!(nix_str("a\"b${c}\\"), "\"a\\\"b\\${c}\\\\\"");
        assert_eq!(nix_indented_line("echo ''${HOME}"), "echo '''''${HOME}");
        assert_eq!(attr("web-app"), "web-app");
        assert_eq!(attr("1x"), "\"1x\"");
    }

    #[test]
    fn ports_in_commands() {
        let cases = [
            ("gunicorn app:app --bind 0.0.0.0:8000", Some(8000)),
            ("uvicorn main:app --host 0.0.0.0 --port 8001", Some(8001)),
            ("bundle exec rails server -b 0.0.0.0 -p 3000", Some(3000)),
            ("node server.js", None),
            ("serve --port=5000", Some(5000)),
        ];
        for (cmd, want) in cases {
            assert_eq!(port_in_command(cmd), want, "{cmd}");
        }
    }
}
