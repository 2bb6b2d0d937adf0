//! Regressions found by running autonix on real repositories it had never seen. Each test
//! is named for what broke and says in one line how it broke; its fixture under
//! `tests/fixtures/` reproduces the layout (made for the test, not copied), and the fixture
//! snapshots in `tests/fixtures.rs` hold the full analysis and flake.

use std::path::{Path, PathBuf};

use autonix::{Analysis, ScanOptions, Tool};

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(case)
}

fn analyze(case: &str) -> Analysis {
    autonix::analyze(&fixture(case), &ScanOptions::default()).expect("analysis")
}

/// `ruby file: ".ruby-version"` was read as the version `file: ".ruby-version"` and refused.
#[test]
fn gemfile_ruby_file_reads_the_version_file() {
    let analysis = analyze("ruby-gemfile-ruby-file");
    let project = &analysis.projects[0];
    assert!(project.errors.is_empty(), "{:?}", project.errors);
    let ruby = project.toolchain(Tool::Ruby).expect("ruby toolchain");
    assert_eq!(ruby.version, "3.3.6");
    let from_gemfile = ruby
        .hints
        .iter()
        .find(|h| h.evidence.reason.starts_with("Gemfile:4 reads ruby 3.3.6"))
        .expect("the Gemfile's hint names the file it reads");
    assert_eq!(from_gemfile.evidence.file, ".ruby-version");
}

/// A sub-project in `my app/` gave `src = ./my app;`, and the flake did not parse.
#[test]
fn directory_names_that_are_no_nix_path_literals_are_quoted() {
    let analysis = analyze("monorepo-unsafe-dir-names");
    let flake = autonix::generate_flake(&analysis).expect("flake");
    for line in [
        // Quoted, and given a store name: a store path name cannot hold a space.
        "src = (builtins.path { path = (./. + \"/my app\"); name = \"my-app\"; });",
        "src = (builtins.path { path = (./. + \"/a(b)\"); name = \"a-b-\"; });",
        "cargoLock.lockFile = (./. + \"/a(b)/Cargo.lock\");",
        "src = (builtins.path { path = (./. + \"/x\\\"y\"); name = \"x-y\"; });",
        "nix-tool = pkgs.callPackage (./. + \"/nix tool/default.nix\") { };",
    ] {
        assert!(flake.contains(line), "{line} missing in:\n{flake}");
    }
    assert!(!flake.contains("./my app"), "{flake}");
}

/// One member whose node version nixpkgs lacks made autonix refuse the whole monorepo.
#[test]
fn one_refused_member_does_not_block_the_others() {
    let analysis = analyze("monorepo-unsafe-dir-names");
    let legacy = analysis
        .projects
        .iter()
        .find(|p| p.path == "legacy")
        .expect("legacy project");
    assert_eq!(legacy.errors.len(), 1, "{:?}", legacy.errors);
    let flake = autonix::generate_flake(&analysis).expect("the other members still get a flake");
    assert!(flake.contains("# Left out because autonix refuses to guess: in legacy: node v14.21.3"));
    assert!(!flake.contains("legacy = "), "{flake}");
    assert!(flake.contains("myapp = pkgs.buildGo123Module"), "{flake}");
}

/// A directory whose name is not UTF-8 became a project at a path with U+FFFD in it, which
/// names no real directory.
#[test]
fn non_utf8_directory_is_refused_with_a_reason() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("repo");
    let dir = root.join(std::ffi::OsStr::from_bytes(b"caf\xe9"));
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("go.mod"), "module example.com/cafe\n\ngo 1.22\n").expect("write");
    std::fs::write(dir.join("main.go"), "package main\n\nfunc main() {}\n").expect("write");
    let analysis = autonix::analyze(&root, &ScanOptions::default()).expect("analysis");
    let errors: Vec<_> = analysis.errors().map(|(_, e)| e.message.clone()).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("is not valid UTF-8"), "{errors:?}");
    let refused = autonix::generate_flake(&analysis).expect_err("nothing else to build");
    assert!(
        refused.to_string().contains("rename the directory"),
        "{refused}"
    );
}

/// A package.json larger than the read cap was reported as "not valid JSON": the parser
/// complained about the cut, not the file.
#[test]
fn manifest_cut_off_at_the_read_cap_is_reported_as_cut_off() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("big-manifest");
    std::fs::create_dir_all(&root).expect("mkdir");
    // Valid JSON, four times the cap: a huge `files` list as some generated manifests have.
    let files: Vec<String> = (0..4000)
        .map(|i| format!("\"dist/chunk-{i:05}.js\""))
        .collect();
    let manifest = format!(
        "{{\n  \"name\": \"big\",\n  \"version\": \"1.0.0\",\n  \"files\": [{}],\n  \"scripts\": {{ \"start\": \"node index.js\" }}\n}}\n",
        files.join(", ")
    );
    std::fs::write(root.join("package.json"), &manifest).expect("write");
    let options = ScanOptions {
        max_read_bytes: 16 * 1024,
        ..ScanOptions::default()
    };
    assert!(manifest.len() > 4 * options.max_read_bytes);
    let analysis = autonix::analyze(&root, &options).expect("analysis");
    let warnings: Vec<&str> = analysis.projects[0]
        .warnings
        .iter()
        .map(|w| w.message.as_str())
        .collect();
    assert!(
        warnings.iter().any(|w| w.starts_with(
            "package.json is larger than the 16 KiB autonix reads of a file, so it was cut off"
        )),
        "{warnings:?}"
    );
    assert!(
        !warnings.iter().any(|w| w.contains("not valid JSON")),
        "{warnings:?}"
    );
}

/// With every path unreadable, `flake` said "found nothing to build or run", hiding why.
#[test]
fn nothing_found_with_unreadable_paths_says_so() {
    let mut analysis = analyze("empty-repo");
    assert!(matches!(
        autonix::generate_flake(&analysis),
        Err(autonix::FlakeError::NothingToBuild)
    ));
    analysis.stats.unreadable = 2;
    analysis.stats.unreadable_examples = vec!["src: Permission denied (os error 13)".into()];
    let refused = autonix::generate_flake(&analysis).expect_err("still nothing to build");
    assert_eq!(
        refused.to_string(),
        "found nothing to build or run, and 2 paths could not be read (first: src: Permission \
         denied (os error 13)); make them readable and run autonix again"
    );
}

fn flake(case: &str) -> String {
    autonix::generate_flake(&analyze(case)).expect("flake")
}

/// Every executable became an HTTP service on an assumed port 8080, a CLI tool's binary too.
#[test]
fn a_binary_without_evidence_of_serving_is_not_deployed() {
    let flake = flake("c-cmake");
    assert!(
        flake.contains("# Not deployed: calc runs `calc`, but nothing shows it serves"),
        "{flake}"
    );
    assert!(flake.contains("vms = { };"), "{flake}");
    assert!(!flake.contains("port = 8080"), "{flake}");
}

/// A library's example programs became services, and the port named in their
/// `ListenAndServe(":3333")` was ignored for an assumed 8080.
#[test]
fn go_listen_call_names_the_port_and_examples_are_not_built() {
    let analysis = analyze("go-server-and-examples");
    let go = analysis.projects[0]
        .ecosystems()
        .next()
        .expect("Go ecosystem");
    assert_eq!(go.binaries, ["cmd/migrate", "cmd/server"]);
    let flake = autonix::generate_flake(&analysis).expect("flake");
    assert!(flake.contains("exec = \"bin/server\";"), "{flake}");
    assert!(flake.contains("ports.http.guest = 3333;"), "{flake}");
    assert!(
        flake.contains("# Port 3333: listens on port 3333 (`ListenAndServe(\":3333\", r)`) at"),
        "{flake}"
    );
    assert!(!flake.contains("8081"), "{flake}");
}

/// Container-only paths leaked into commands (`/usr/bin/tini -- node server.js`), and the
/// evidence cited a dev stage's `CMD` instead of the final stage's.
#[test]
fn dockerfile_command_is_the_final_stage_without_container_wrappers() {
    let analysis = analyze("node-dockerfile-stages");
    let (process, evidence) = analysis.projects[0]
        .detections
        .iter()
        .find_map(|d| match &d.facts {
            autonix::Facts::Process(p) => Some((p, &d.evidence[0])),
            _ => None,
        })
        .expect("a start command");
    assert_eq!(process.command, "node server.js");
    assert_eq!(
        (evidence.file.as_str(), evidence.line),
        ("Dockerfile", Some(14))
    );
    let port = analysis.projects[0]
        .detections
        .iter()
        .find(|d| matches!(d.facts, autonix::Facts::Port { port: 3000 }))
        .expect("EXPOSE 3000");
    assert_eq!(port.evidence[0].line, Some(12));
}

/// Test fixtures and test data became projects: 101 of one repository's 102 "projects"
/// were under `tests/fixtures/`, and a fixture `package.json` without a lockfile became a
/// `buildNpmPackage` that cannot evaluate.
#[test]
fn manifests_in_test_data_directories_are_not_projects() {
    let analysis = analyze("test-data-not-projects");
    let paths: Vec<&str> = analysis.projects.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["."]);
    let warning = analysis.projects[0]
        .warnings
        .iter()
        .find(|w| w.message.contains("taken as test data"))
        .expect("the skipped directories are reported");
    assert!(
        warning.message.starts_with("4 directories with a manifest under test-data directories (first: __fixtures__/plugin)"),
        "{}",
        warning.message
    );
    let flake = autonix::generate_flake(&analysis).expect("flake");
    assert!(!flake.contains("fixture-app"), "{flake}");
}

fn refusal(case: &str) -> String {
    autonix::generate_flake(&analyze(case))
        .expect_err("autonix refuses")
        .to_string()
}

/// A Haskell/Cabal tool got a flake from its language count alone.
#[test]
fn haskell_cabal_is_reported_unsupported() {
    let refused = refusal("haskell-cabal");
    assert!(
        refused.contains(
            "wordfreq.cabal makes this a Haskell project, which autonix cannot build yet"
        ),
        "{refused}"
    );
}

/// A .NET web API got no toolchain and a flake that could not build it.
#[test]
fn dotnet_is_reported_unsupported() {
    let refused = refusal("dotnet-webapi");
    assert!(
        refused.contains("Inventory.Api.csproj makes this a .NET project"),
        "{refused}"
    );
}

/// A Hugo site's go.mod (Hugo Modules) was read as a Go program: `go test ./...` on a
/// repository with no .go file, and the HUGO_VERSION pin was never seen.
#[test]
fn hugo_site_is_unsupported_and_its_go_mod_is_no_go_program() {
    let analysis = analyze("hugo-site-modules");
    let project = &analysis.projects[0];
    assert_eq!(project.ecosystems().count(), 0);
    assert!(!project
        .facts()
        .any(|f| matches!(f, autonix::Facts::Test(t) if t.command.starts_with("go "))));
    let refused = refusal("hugo-site-modules");
    assert!(
        refused.contains("hugo.toml makes this a Hugo site (it asks for Hugo 0.139.3 at .github/workflows/pages.yml:7)"),
        "{refused}"
    );
}

/// Evidence pointed at the wrong line: axum cited at `axum-extra`'s line, and
/// `rust-version.workspace = true` cited as the MSRV instead of the line with the value.
#[test]
fn evidence_cites_the_line_that_says_it() {
    let analysis = analyze("rust-inherited-msrv");
    let project = &analysis.projects[0];
    let axum = project
        .detections
        .iter()
        .find(|d| matches!(d.facts, autonix::Facts::Framework { .. }))
        .expect("axum");
    assert_eq!(axum.evidence[0].line, Some(16), "{:?}", axum.evidence);
    let rust = project.toolchain(Tool::Rust).expect("rust");
    let msrv = rust
        .hints
        .iter()
        .find(|h| h.requested == ">=1.78")
        .expect("the workspace's rust-version");
    assert_eq!(msrv.evidence.line, Some(6));
}

/// `cmake_minimum_required(VERSION 3.20)` was taken as the project's version.
#[test]
fn cmake_version_comes_from_project_not_minimum_required() {
    let analysis = analyze("c-cmake");
    let cmake = analysis.projects[0].ecosystems().next().expect("CMake");
    assert_eq!(cmake.version.as_deref(), Some("1.2.0"));
}

fn services(analysis: &Analysis) -> Vec<(String, Option<String>)> {
    analysis
        .projects
        .iter()
        .flat_map(|p| p.facts())
        .filter_map(|f| match f {
            autonix::Facts::Service(s) => Some((
                s.nixos
                    .as_ref()
                    .map(|n| n.module.clone())
                    .unwrap_or_default(),
                s.image.clone(),
            )),
            _ => None,
        })
        .collect()
}

/// Databases were found only in compose files with standard names: missed from CI
/// `services:` and from driver gems (`pg`, `sidekiq`); `postgres:18` silently became the
/// default PostgreSQL.
#[test]
fn databases_from_ci_services_and_drivers() {
    let analysis = analyze("ruby-drivers-ci-services");
    assert_eq!(
        services(&analysis),
        [
            (
                "services.postgresql".to_string(),
                Some("postgres:18".to_string())
            ),
            (
                "services.redis.servers".to_string(),
                Some("redis:7".to_string())
            ),
        ]
    );
    // PostgreSQL 18 is not in nixos-24.11: the oldest branch carrying it is pinned.
    assert_eq!(analysis.nixpkgs.branch, "nixos-25.11");
    assert!(
        analysis.nixpkgs.reason.contains(
            "nixos-25.05 does not satisfy them (.github/workflows/test.yml: postgres:18 asks for major version 18, which nixpkgs nixos-25.05 does not carry"
        ),
        "{}",
        analysis.nixpkgs.reason
    );
    let flake = autonix::generate_flake(&analysis).expect("flake");
    assert!(flake.contains("pkgs.postgresql_18"), "{flake}");
    let drivers_only = analyze("go-gin");
    assert_eq!(
        services(&drivers_only),
        [("services.postgresql".to_string(), None)]
    );
}

/// Databases in a `.devcontainer/` compose file and in env names (`POSTGRES_URL`) were
/// missed, and `mysql:9.6` silently became MySQL 8.0.
#[test]
fn databases_from_devcontainer_compose_and_env_names() {
    let analysis = analyze("node-devcontainer-env");
    assert_eq!(
        services(&analysis),
        [
            ("services.mysql".to_string(), Some("mysql:9.6".to_string())),
            ("services.postgresql".to_string(), None),
        ]
    );
    // No branch carries MySQL 9.6: the default MySQL with a warning, never silently.
    assert!(analysis.projects[0]
        .warnings
        .iter()
        .any(|w| w.message.contains("mysql:9.6 asks for major version 9.6, which nixpkgs nixos-24.11 does not carry; the flake uses pkgs.mysql80 (8.0)")));
}

/// Checks that cannot run in the Nix sandbox: `poetry run pytest` (creates a venv) and
/// `./mvnw test` (the wrapper downloads Maven) were written into the flake as they were.
#[test]
fn checks_are_written_to_run_in_the_sandbox() {
    let poetry = flake("python-poetry-ci-run");
    assert!(poetry.contains("\n            pytest -q\n"), "{poetry}");
    assert!(
        !poetry.contains("            poetry run pytest"),
        "{poetry}"
    );
    assert!(poetry.contains("Run without `poetry run`"), "{poetry}");
    let maven = flake("java-maven-spring");
    assert!(maven.contains("\n            mvn test\n"), "{maven}");
    assert!(!maven.contains("            ./mvnw test"), "{maven}");
}

/// Gradle was silently ignored when a pom.xml was also present.
#[test]
fn maven_and_gradle_together_are_reported() {
    let analysis = analyze("java-maven-and-gradle");
    assert!(
        analysis.projects[0].warnings.iter().any(|w| w.message
            == "pom.xml and build.gradle.kts both build this project; the flake builds with Maven, so check which one CI and releases use"),
        "{:?}",
        analysis.projects[0].warnings
    );
}

/// `cargo test` on a workspace tests only the root package where CI runs `--workspace`.
#[test]
fn cargo_workspace_checks_test_every_member() {
    let analysis = analyze("rust-inherited-msrv");
    assert!(analysis.projects[0]
        .facts()
        .any(|f| matches!(f, autonix::Facts::Test(t) if t.command == "cargo test --workspace")));
}

/// `packageManager: pnpm@10` was recorded but the flake used the branch's pnpm 9 silently.
#[test]
fn pnpm_release_follows_package_manager_or_says_it_cannot() {
    // pnpm 10 is not in nixos-24.11: the oldest branch that has it is pinned.
    let analysis = analyze("node-pnpm10-turbo");
    assert_eq!(analysis.nixpkgs.branch, "nixos-25.05");
    assert!(
        analysis.nixpkgs.reason.contains(
            "nixos-24.11 does not satisfy them (package.json asks for pnpm 10.4.1, but nixpkgs nixos-24.11 carries pnpm 8, 9"
        ),
        "{}",
        analysis.nixpkgs.reason
    );
    assert!(
        analysis.projects[0]
            .warnings
            .iter()
            .all(|w| !w.message.contains("pnpm 10")),
        "{:?}",
        analysis.projects[0].warnings
    );
    let text = autonix::generate_flake(&analysis).expect("flake");
    assert!(
        text.contains("pnpmDeps = pkgs.pnpm_10.fetchDeps {"),
        "{text}"
    );
    assert!(
        text.contains("nixpkgs.url = \"github:NixOS/nixpkgs/nixos-25.05\";"),
        "{text}"
    );
    // packageManager pnpm@9.1.0 selects pnpm 9 by name, not by whatever `pnpm` is.
    let pinned = flake("node-pnpm-workspace");
    assert!(
        pinned.contains("pnpmDeps = pkgs.pnpm_9.fetchDeps {"),
        "{pinned}"
    );
    // A major no branch carries is said, not hidden: the branch's pnpm with a warning.
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("pnpm-next");
    std::fs::create_dir_all(&root).expect("mkdir");
    std::fs::write(
        root.join("package.json"),
        "{\"name\":\"next\",\"packageManager\":\"pnpm@42.0.0\",\"scripts\":{\"build\":\"tsc\"}}\n",
    )
    .expect("write");
    std::fs::write(root.join("pnpm-lock.yaml"), "lockfileVersion: '9.0'\n").expect("write");
    let analysis = autonix::analyze(&root, &ScanOptions::default()).expect("analysis");
    assert_eq!(analysis.nixpkgs.branch, "nixos-24.11");
    let warnings: Vec<&str> = analysis.projects[0]
        .warnings
        .iter()
        .map(|w| w.message.as_str())
        .collect();
    assert!(
        warnings.contains(&"package.json asks for pnpm 42.0.0, but nixpkgs nixos-24.11 carries pnpm 8, 9; the flake uses pnpm 9, so check that it installs the lockfile"),
        "{warnings:?}"
    );
    assert!(
        warnings.iter().any(|w| w.starts_with("no nixpkgs branch autonix has tables for (nixos-24.11, nixos-25.05, nixos-25.11, nixos-unstable) satisfies this project either")),
        "{warnings:?}"
    );
}

/// Every toolchain was checked against nixos-24.11 only: `requires-python = ">=3.14"` and
/// `go 1.25` were refused although newer nixpkgs branches carry them.
#[test]
fn newer_requirements_pin_the_oldest_branch_that_has_them() {
    let analysis = analyze("python-needs-newer-branch");
    assert_eq!(analysis.nixpkgs.branch, "nixos-25.11");
    assert_eq!(
        analysis.nixpkgs.reason,
        "the oldest branch that satisfies every version requirement: nixos-25.05 does not satisfy them (no python in nixpkgs nixos-25.05 satisfies `>=3.14` at pyproject.toml:4: it provides python 3.9, 3.10, 3.11, 3.12, 3.13)"
    );
    let python = analysis.projects[0]
        .toolchain(Tool::Python)
        .expect("python");
    assert_eq!(python.nixpkgs, "python314");
    let text = autonix::generate_flake(&analysis).expect("flake");
    assert!(
        text.contains("nixpkgs.url = \"github:NixOS/nixpkgs/nixos-25.11\";"),
        "{text}"
    );
    assert!(
        text.contains("# autonix chose nixos-25.11: the oldest branch"),
        "{text}"
    );
    let go = analyze("go-directive-too-new");
    assert_eq!(go.nixpkgs.branch, "nixos-25.11");
    // Nothing newer than needed: a repository without requirements stays on the oldest.
    assert_eq!(analyze("go-gin").nixpkgs.branch, "nixos-24.11");
    // No branch has it: refused, saying so.
    let none = analyze("python-unsatisfiable");
    let errors: Vec<String> = none.errors().map(|(_, e)| e.message.clone()).collect();
    assert!(
        errors.iter().any(|e| e.ends_with("; no nixpkgs branch autonix has tables for (nixos-24.11, nixos-25.05, nixos-25.11, nixos-unstable) satisfies this project either")),
        "{errors:?}"
    );
}

/// Members needing different branches: the branch serving most members is pinned, the
/// other member is refused with the branch it needs, and the rest are still built.
#[test]
fn members_needing_different_branches_refuse_only_the_odd_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("mixed");
    for (dir, go) in [("old-a", "1.22"), ("old-b", "1.22"), ("new", "1.26")] {
        let d = root.join(dir);
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(
            d.join("go.mod"),
            format!("module example.com/{dir}\n\ngo {go}\n\ntoolchain go{go}.1\n"),
        )
        .expect("write");
        std::fs::write(d.join("main.go"), "package main\n\nfunc main() {}\n").expect("write");
    }
    let analysis = autonix::analyze(&root, &ScanOptions::default()).expect("analysis");
    assert_eq!(analysis.nixpkgs.branch, "nixos-24.11");
    let new = analysis
        .projects
        .iter()
        .find(|p| p.path == "new")
        .expect("member new");
    assert!(
        new.errors.iter().any(|e| e.message.ends_with(
            "; nixpkgs nixos-unstable would satisfy this project, but the flake pins nixos-24.11 for the others; give it a flake of its own to use nixos-unstable")),
        "{:?}",
        new.errors
    );
    let text = autonix::generate_flake(&analysis).expect("the other members are built");
    assert!(text.contains("buildGo122Module"), "{text}");
}

/// A Next.js app inside a turbo/pnpm workspace was listed as a member and never analysed:
/// not deployed, and nothing said so.
#[test]
fn workspace_member_app_is_deployed_through_the_workspace() {
    let text = flake("node-pnpm10-turbo");
    assert!(
        text.contains("web-server = pkgs.writeShellApplication {"),
        "{text}"
    );
    assert!(text.contains("cd ${storefront}/lib/storefront\n"), "{text}");
    assert!(text.contains("exec pnpm --filter web start"), "{text}");
    assert!(
        text.contains("# Port 3000: Next.js listens on 3000 by default."),
        "{text}"
    );
    // A member app without a start script is reported, not dropped silently.
    let analysis = analyze("node-pnpm-workspace");
    let server = analysis
        .projects
        .iter()
        .find(|p| p.path == "packages/server")
        .expect("the member is a project");
    assert_eq!(server.workspace.as_deref(), Some("."));
    assert!(server.warnings.iter().any(|w| w.message
        == "packages/server is a Fastify app in a pnpm workspace but has no `start` script, so it is not deployed; add one to packages/server/package.json and the flake runs it from the workspace"),
        "{:?}", server.warnings);
}

/// Workspace members were folded into the workspace root: only the first app was deployed,
/// on its framework's default port, and a member's own listen call was never read.
#[test]
fn workspace_members_are_analysed_on_their_own() {
    let analysis = analyze("node-yarn-turbo-apps");
    let paths: Vec<(&str, Option<&str>)> = analysis
        .projects
        .iter()
        .map(|p| (p.path.as_str(), p.workspace.as_deref()))
        .collect();
    assert_eq!(
        paths,
        [
            (".", None),
            ("apps/api", Some(".")),
            ("apps/web", Some(".")),
            ("packages/ui", Some("."))
        ]
    );
    let root = &analysis.projects[0];
    assert!(root.warnings.is_empty(), "{:?}", root.warnings);
    // Members use the workspace's lockfile: no "no lockfile" warning each.
    for p in &analysis.projects[1..] {
        assert!(p.warnings.is_empty(), "{}: {:?}", p.path, p.warnings);
    }
    let text = autonix::generate_flake(&analysis).expect("flake");
    for needle in [
        // The api's port is its own listen call, the web app's its framework's.
        "# Port 4000: listens on port 4000 (`listen(4000)`) at apps/api/src/server.js:5.",
        "exec yarn workspace api start",
        "# Port 3000: Next.js listens on 3000 by default.",
        "exec yarn workspace web start",
        "cd ${shop}/lib/node_modules/shop",
    ] {
        assert!(text.contains(needle), "{needle} missing in:\n{text}");
    }
    // One package builds the workspace; a library member gets no server.
    assert_eq!(text.matches("pkgs.fetchYarnDeps").count(), 1, "{text}");
    assert!(!text.contains("ui-server"), "{text}");
}

/// A workspace member runs from its workspace's package; a workspace without one (an npm
/// workspace with no package-lock.json) must not leave the member's VM naming a server that
/// was never written.
#[test]
fn member_of_an_unbuilt_workspace_is_not_run() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("nolock");
    std::fs::create_dir_all(root.join("apps/web")).expect("mkdir");
    std::fs::write(
        root.join("package.json"),
        "{\"name\":\"nolock\",\"private\":true,\"workspaces\":[\"apps/*\"]}\n",
    )
    .expect("write");
    std::fs::write(
        root.join("apps/web/package.json"),
        "{\"name\":\"web\",\"scripts\":{\"start\":\"next start\"},\"dependencies\":{\"next\":\"14.2.3\"}}\n",
    )
    .expect("write");
    let analysis = autonix::analyze(&root, &ScanOptions::default()).expect("analysis");
    assert_eq!(analysis.projects[1].workspace.as_deref(), Some("."));
    let text = autonix::generate_flake(&analysis).expect("flake: the dev shell remains");
    assert!(!text.contains("web-server"), "{text}");
    assert!(
        text.contains("# Left out because autonix refuses to guess: in apps/web: it is a member of the workspace at .,\n# which the flake does not build, so it is not run"),
        "{text}"
    );
}

/// A Spring Boot app built with Maven got no service: nothing started its executable jar.
#[test]
fn spring_boot_runs_its_executable_jar_as_a_service() {
    let text = flake("java-spring-boot-service");
    assert!(text.contains("exec java -jar billing-0.9.0.jar"), "{text}");
    assert!(
        text.contains("# Port 8080: Spring Boot listens on 8080 by default."),
        "{text}"
    );
    assert!(text.contains("exec = \"bin/billing-server\";"), "{text}");
}

/// A Spring app whose default profile uses H2 got both MySQL and PostgreSQL as services
/// because its compose file offers both for other profiles.
#[test]
fn spring_default_h2_needs_no_database_service() {
    let analysis = analyze("java-spring-h2-compose");
    assert_eq!(services(&analysis), []);
    assert!(
        analysis.projects[0].warnings.iter().any(|w| w.message.starts_with(
            "mysql:8.4 and postgres:16 serve other Spring profiles: the default one uses the embedded H2 database (pom.xml:21)"
        )),
        "{:?}",
        analysis.projects[0].warnings
    );
}
