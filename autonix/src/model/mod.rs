//! The analysis as plain, serializable data. Its JSON shape is a contract: repohub shows it,
//! `autonix scan --json` prints it. Fields are only ever added; [`SCHEMA_VERSION`] changes
//! when one is renamed or removed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

mod language;

pub use language::Language;

/// Version of the JSON shape below.
pub const SCHEMA_VERSION: u32 = 1;

/// Confidence levels used throughout, so that the numbers mean the same thing everywhere.
pub mod confidence {
    /// A file exists whose only purpose is to say this (`Cargo.toml` means Cargo).
    pub const CERTAIN: f32 = 1.0;
    /// Explicit configuration says it (`FROM postgres:16`, a `flask` dependency).
    pub const HIGH: f32 = 0.9;
    /// Read from free text or a convention that usually holds (a test command in a CI
    /// script, a framework's default port).
    pub const MEDIUM: f32 = 0.6;
    /// Inferred from weak hints only.
    pub const LOW: f32 = 0.3;
}

/// The whole analysis of one repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub schema: u32,
    /// The repository's name: its directory name, made safe for a Nix attribute.
    pub name: String,
    /// The nixpkgs branch toolchains were resolved against and the flake pins.
    #[serde(default)]
    pub nixpkgs: NixpkgsChoice,
    /// Project roots in path order; `.` is the repository root.
    pub projects: Vec<Project>,
    pub stats: ScanStats,
}

/// Which nixpkgs branch a repository gets, and why: the oldest that satisfies every
/// project's version requirements.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NixpkgsChoice {
    /// `nixos-24.11`, `nixos-unstable`.
    pub branch: String,
    pub reason: String,
}

impl Analysis {
    /// Every problem that stops a flake from being generated, with its project.
    pub fn errors(&self) -> impl Iterator<Item = (&Project, &Finding)> {
        self.projects
            .iter()
            .flat_map(|p| p.errors.iter().map(move |e| (p, e)))
    }
}

/// One project root: a directory built by one tool (or a few that belong together).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Project {
    /// Relative path of the root, `.` for the repository root.
    pub path: String,
    /// Name used for packages and VMs: from the manifest, else the directory name.
    pub name: String,
    /// For a member of a JavaScript workspace (pnpm, npm or Yarn workspaces, turbo): the
    /// path of the project whose package builds the whole workspace. The member is
    /// analysed on its own and runs from that package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    pub detections: Vec<Detection>,
    /// Things worth knowing that did not stop anything (conflicting version hints...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Finding>,
    /// Things autonix refuses to guess about (an unsatisfiable version...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<Finding>,
}

impl Project {
    pub fn facts(&self) -> impl Iterator<Item = &Facts> {
        self.detections.iter().map(|d| &d.facts)
    }

    pub fn ecosystems(&self) -> impl Iterator<Item = &Ecosystem> {
        self.facts().filter_map(|f| match f {
            Facts::Ecosystem(e) => Some(e),
            _ => None,
        })
    }

    pub fn toolchain(&self, tool: Tool) -> Option<&Toolchain> {
        self.facts().find_map(|f| match f {
            Facts::Toolchain(t) if t.tool == tool => Some(t),
            _ => None,
        })
    }
}

/// Where a conclusion comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Evidence {
    /// Path relative to the repository root.
    pub file: String,
    /// 1-based line, when the conclusion rests on one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    pub reason: String,
}

/// A warning or an error, with the evidence behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub message: String,
    pub evidence: Vec<Evidence>,
}

/// One conclusion about a project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// Short human description: "Rust", "Cargo workspace (2 members)", "postgres 16".
    pub what: String,
    /// 0.0–1.0; see [`confidence`] for what the levels mean.
    pub confidence: f32,
    pub evidence: Vec<Evidence>,
    /// Typed facts; `kind` in JSON says which.
    #[serde(flatten)]
    pub facts: Facts,
}

/// The typed part of a detection, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Facts {
    Language {
        language: Language,
        files: u64,
        /// Only when asked for ([`crate::ScanOptions::count_lines`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lines: Option<u64>,
    },
    Ecosystem(Ecosystem),
    Toolchain(Toolchain),
    Framework {
        framework: Framework,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        default_port: Option<u16>,
    },
    Container(Container),
    Service(Service),
    Process(Process),
    Port {
        port: u16,
    },
    Ci {
        system: CiSystem,
        file: String,
        jobs: Vec<String>,
    },
    Test(TestCommand),
    Nix {
        file: String,
    },
}

impl Facts {
    /// Sort key: the order detections are listed in.
    pub fn rank(&self) -> u8 {
        match self {
            Facts::Ecosystem(_) => 0,
            Facts::Toolchain(_) => 1,
            Facts::Framework { .. } => 2,
            Facts::Process(_) => 3,
            Facts::Port { .. } => 4,
            Facts::Container(_) => 5,
            Facts::Service(_) => 6,
            Facts::Test(_) => 7,
            Facts::Ci { .. } => 8,
            Facts::Nix { .. } => 9,
            Facts::Language { .. } => 10,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Facts::Language { .. } => "language",
            Facts::Ecosystem(_) => "ecosystem",
            Facts::Toolchain(_) => "toolchain",
            Facts::Framework { .. } => "framework",
            Facts::Container(_) => "container",
            Facts::Service(_) => "service",
            Facts::Process(_) => "process",
            Facts::Port { .. } => "port",
            Facts::Ci { .. } => "ci",
            Facts::Test(_) => "test",
            Facts::Nix { .. } => "nix",
        }
    }
}

/// The tool that builds a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EcosystemKind {
    Cargo,
    Go,
    Mix,
    Bundler,
    Composer,
    Poetry,
    Uv,
    Pdm,
    Pipenv,
    /// A `pyproject.toml`/`setup.py` package built by its declared backend.
    PythonPackage,
    /// Only `requirements*.txt`: an application, not a package.
    Pip,
    Maven,
    Gradle,
    Zig,
    Npm,
    Yarn,
    Pnpm,
    Bun,
    Cmake,
    Meson,
    Make,
    Nix,
}

impl EcosystemKind {
    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            EcosystemKind::Cargo => "Cargo",
            EcosystemKind::Go => "Go modules",
            EcosystemKind::Mix => "Mix",
            EcosystemKind::Bundler => "Bundler",
            EcosystemKind::Composer => "Composer",
            EcosystemKind::Poetry => "Poetry",
            EcosystemKind::Uv => "uv",
            EcosystemKind::Pdm => "PDM",
            EcosystemKind::Pipenv => "Pipenv",
            EcosystemKind::PythonPackage => "Python package",
            EcosystemKind::Pip => "pip requirements",
            EcosystemKind::Maven => "Maven",
            EcosystemKind::Gradle => "Gradle",
            EcosystemKind::Zig => "Zig build",
            EcosystemKind::Npm => "npm",
            EcosystemKind::Yarn => "Yarn",
            EcosystemKind::Pnpm => "pnpm",
            EcosystemKind::Bun => "Bun",
            EcosystemKind::Cmake => "CMake",
            EcosystemKind::Meson => "Meson",
            EcosystemKind::Make => "Make",
            EcosystemKind::Nix => "Nix",
        }
    }

    pub fn is_node(self) -> bool {
        matches!(
            self,
            EcosystemKind::Npm | EcosystemKind::Yarn | EcosystemKind::Pnpm | EcosystemKind::Bun
        )
    }

    pub fn is_python(self) -> bool {
        matches!(
            self,
            EcosystemKind::Poetry
                | EcosystemKind::Uv
                | EcosystemKind::Pdm
                | EcosystemKind::Pipenv
                | EcosystemKind::PythonPackage
                | EcosystemKind::Pip
        )
    }
}

/// A build tool's view of a project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ecosystem {
    pub ecosystem: EcosystemKind,
    pub manifest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lockfile: Option<String>,
    /// Package name declared by the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Workspace members / subprojects, relative to the project root.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    /// Executables the project builds (Cargo bins, Go main packages, Python scripts...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub binaries: Vec<String>,
    /// Direct dependency names, normalised the ecosystem's way.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<String>,
    /// Named scripts (`package.json` scripts, `[project.scripts]`, composer scripts).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scripts: BTreeMap<String, String>,
    /// Build backend or plugin that matters to the generated build (`hatchling`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
}

impl Ecosystem {
    pub fn new(ecosystem: EcosystemKind, manifest: String) -> Ecosystem {
        Ecosystem {
            ecosystem,
            manifest,
            lockfile: None,
            package: None,
            version: None,
            members: Vec::new(),
            binaries: Vec::new(),
            dependencies: Vec::new(),
            scripts: BTreeMap::new(),
            backend: None,
        }
    }
}

/// A language toolchain whose version was requested or defaulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tool {
    Rust,
    Node,
    Python,
    Go,
    Ruby,
    Php,
    Java,
    Elixir,
    Zig,
}

impl Tool {
    pub fn name(self) -> &'static str {
        match self {
            Tool::Rust => "rust",
            Tool::Node => "node",
            Tool::Python => "python",
            Tool::Go => "go",
            Tool::Ruby => "ruby",
            Tool::Php => "php",
            Tool::Java => "java",
            Tool::Elixir => "elixir",
            Tool::Zig => "zig",
        }
    }
}

/// A resolved toolchain: the version delivered and the Nix expression that delivers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Toolchain {
    pub tool: Tool,
    /// The version the generated flake provides.
    pub version: String,
    /// Nix expression relative to `pkgs` (`nodejs_20`, `rust-bin.stable."1.75.0".default`).
    pub nixpkgs: String,
    /// Why this version: which hint decided, or that none was given.
    pub reason: String,
    /// Every hint found, in precedence order.
    pub hints: Vec<VersionHint>,
}

/// One place that asks for a tool version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionHint {
    /// What the file says, verbatim (`>=3.10,<3.13`, `18`).
    pub requested: String,
    /// `pin` selects a version; `range` only constrains.
    pub role: HintRole,
    /// Whether the tool refuses to work outside this constraint (cargo with
    /// `rust-version`, pip with `requires-python`) or only warns (npm `engines`).
    pub enforced: bool,
    pub evidence: Evidence,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HintRole {
    Pin,
    Range,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Framework {
    Django,
    Flask,
    Fastapi,
    Express,
    Fastify,
    Nextjs,
    Nestjs,
    Rails,
    Sinatra,
    Phoenix,
    Laravel,
    Symfony,
    Axum,
    ActixWeb,
    Rocket,
    Gin,
    Echo,
    Fiber,
    SpringBoot,
}

impl Framework {
    pub fn name(self) -> &'static str {
        match self {
            Framework::Django => "Django",
            Framework::Flask => "Flask",
            Framework::Fastapi => "FastAPI",
            Framework::Express => "Express",
            Framework::Fastify => "Fastify",
            Framework::Nextjs => "Next.js",
            Framework::Nestjs => "NestJS",
            Framework::Rails => "Rails",
            Framework::Sinatra => "Sinatra",
            Framework::Phoenix => "Phoenix",
            Framework::Laravel => "Laravel",
            Framework::Symfony => "Symfony",
            Framework::Axum => "axum",
            Framework::ActixWeb => "actix-web",
            Framework::Rocket => "Rocket",
            Framework::Gin => "Gin",
            Framework::Echo => "Echo",
            Framework::Fiber => "Fiber",
            Framework::SpringBoot => "Spring Boot",
        }
    }
}

/// What a Dockerfile says about running the project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    pub file: String,
    /// `FROM` images of every stage, in order; the last one runs.
    pub base_images: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exposed_ports: Vec<u16>,
    /// `ENTRYPOINT` and `CMD` of the final stage joined as a shell command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
}

/// A docker-compose service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Build context relative to the repository root, when the service is built here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
    /// Container ports the service listens on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// The NixOS service that replaces this image, when autonix knows one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nixos: Option<NixosService>,
}

/// A NixOS module replacing a container image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NixosService {
    /// The option path, e.g. `services.postgresql`.
    pub module: String,
    /// The package attribute, e.g. `postgresql_16`.
    pub package: String,
    pub port: u16,
}

/// A command that starts the project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    /// `web`, `worker`... (Procfile names), or `start`.
    pub name: String,
    pub command: String,
    pub source: ProcessSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessSource {
    Procfile,
    Dockerfile,
    PackageJson,
    Framework,
    Binary,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CiSystem {
    GithubActions,
    GitlabCi,
}

/// A command that runs the project's tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestCommand {
    pub command: String,
    pub source: TestSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestSource {
    Ci,
    PackageJson,
    Makefile,
    Convention,
}

/// What the walk saw besides files: counts a reader can use to judge the scan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanStats {
    pub files: u64,
    /// Files holding a NUL byte near the start: not counted as source.
    pub binary_files: u64,
    /// Symbolic links seen and not followed.
    pub symlinks: u64,
    /// FIFOs, sockets and devices: never opened.
    pub special_files: u64,
    /// Files larger than the read cap; only their beginning was looked at.
    pub truncated_files: u64,
    /// Vendored or generated directories skipped by name (first few listed).
    pub skipped_dirs: u64,
    pub skipped_dir_examples: Vec<String>,
    /// Files or directories that could not be read, with the reason (first few listed).
    pub unreadable: u64,
    pub unreadable_examples: Vec<String>,
}
