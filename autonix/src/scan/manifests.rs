//! The file names that matter: which files the scan keeps the text of, and which of them
//! make a directory the root of a project.

/// Files whose text detection reads. Everything else is only counted.
pub fn is_interesting(rel_path: &str, name: &str) -> bool {
    if matches!(
        name,
        "Cargo.toml"
            | "Cargo.lock"
            | "rust-toolchain"
            | "rust-toolchain.toml"
            | "package.json"
            | "package-lock.json"
            | "npm-shrinkwrap.json"
            | "yarn.lock"
            | "pnpm-lock.yaml"
            | "pnpm-workspace.yaml"
            | "bun.lockb"
            | "bun.lock"
            | ".nvmrc"
            | ".node-version"
            | "pyproject.toml"
            | "setup.py"
            | "setup.cfg"
            | "Pipfile"
            | "Pipfile.lock"
            | "poetry.lock"
            | "uv.lock"
            | "pdm.lock"
            | ".python-version"
            | "runtime.txt"
            | "manage.py"
            | "app.py"
            | "main.py"
            | "wsgi.py"
            | "asgi.py"
            | "go.mod"
            | "go.sum"
            | "go.work"
            | "main.go"
            | "main.rs"
            | "server.js"
            | "server.ts"
            | "index.js"
            | "index.ts"
            | "app.js"
            | "app.ts"
            | "main.js"
            | "main.ts"
            | "Gemfile"
            | "Gemfile.lock"
            | ".ruby-version"
            | "config.ru"
            | "composer.json"
            | "composer.lock"
            | "artisan"
            | "mix.exs"
            | "mix.lock"
            | "pom.xml"
            | "build.gradle"
            | "build.gradle.kts"
            | "settings.gradle"
            | "settings.gradle.kts"
            | "gradlew"
            | ".java-version"
            | "build.zig"
            | "build.zig.zon"
            | "CMakeLists.txt"
            | "meson.build"
            | "Makefile"
            | "makefile"
            | "GNUmakefile"
            | "configure.ac"
            | "flake.nix"
            | "flake.lock"
            | "default.nix"
            | "shell.nix"
            | "Dockerfile"
            | "Containerfile"
            | "docker-compose.yml"
            | "docker-compose.yaml"
            | "compose.yml"
            | "compose.yaml"
            | "Procfile"
            | ".tool-versions"
            | ".gitlab-ci.yml"
            | "netlify.toml"
            | ".env.example"
            | ".env.sample"
            | ".env.template"
            | "example.env"
    ) {
        return true;
    }
    if name.starts_with("Dockerfile.") || name.ends_with(".dockerfile") {
        return true;
    }
    if name.starts_with("requirements") && name.ends_with(".txt") {
        return true;
    }
    if rel_path.starts_with(".github/workflows/")
        && (name.ends_with(".yml") || name.ends_with(".yaml"))
    {
        return true;
    }
    // Spring's default configuration: which database the default profile uses.
    if name.starts_with("application.")
        && matches!(
            name,
            "application.properties" | "application.yml" | "application.yaml"
        )
        && rel_path.ends_with(&format!("src/main/resources/{name}"))
    {
        return true;
    }
    // Framework markers whose text is looked at.
    matches!(
        rel_path.rsplit_once('/').map_or(rel_path, |(_, n)| n),
        "next.config.js" | "next.config.mjs" | "next.config.ts"
    ) || rel_path.ends_with("config/application.rb")
}

/// How strongly a file marks its directory as a project root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RootMarker {
    /// An ecosystem manifest: this directory is built with a known tool.
    Manifest,
    /// A Makefile, Dockerfile or Procfile: a project root only where no manifest already
    /// claims the directory or one above it.
    Weak,
}

/// Whether `name` marks its directory as a project root.
pub fn root_marker(name: &str) -> Option<RootMarker> {
    match name {
        "Cargo.toml" | "package.json" | "pyproject.toml" | "setup.py" | "Pipfile" | "go.mod"
        | "Gemfile" | "composer.json" | "mix.exs" | "pom.xml" | "build.gradle"
        | "build.gradle.kts" | "build.zig" | "CMakeLists.txt" | "meson.build" | "flake.nix"
        | "default.nix" => Some(RootMarker::Manifest),
        "Makefile" | "makefile" | "GNUmakefile" | "Dockerfile" | "Containerfile" | "Procfile" => {
            Some(RootMarker::Weak)
        }
        _ if name.starts_with("requirements") && name.ends_with(".txt") => {
            Some(RootMarker::Manifest)
        }
        // Stacks autonix recognises in order to say it cannot build them.
        "cabal.project" | "stack.yaml" | "hugo.toml" | "hugo.yaml" | "hugo.json" => {
            Some(RootMarker::Manifest)
        }
        _ if matches!(
            name.rsplit_once('.'),
            Some((stem, "cabal" | "csproj" | "fsproj" | "vbproj" | "sln")) if !stem.is_empty()
        ) =>
        {
            Some(RootMarker::Manifest)
        }
        _ => None,
    }
}
