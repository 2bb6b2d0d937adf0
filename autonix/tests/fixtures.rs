//! Snapshot tests over the fixture repositories in `tests/fixtures/<case>/`: the analysis
//! (JSON) and the generated flake of each, every flake parse-checked by the real
//! `nix-instantiate --parse` and evaluated by the real `nix-instantiate --eval` against the
//! test-only nixpkgs stand-in in `tests/nixpkgs-standin/` (its `default.nix` says what it
//! models), and every result checked to be byte-for-byte reproducible.

use std::path::{Path, PathBuf};
use std::process::Command;

use autonix::{Analysis, ScanOptions};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read fixture") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Cases whose interesting parts git cannot hold (symlinks, FIFOs, ignored files) are
/// copied to a temporary directory of the same name and completed there.
pub fn prepare(case: &str) -> (Option<tempfile::TempDir>, PathBuf) {
    let source = fixtures().join(case);
    match case {
        "symlink-loop" | "ignored-and-vendored" | "monorepo-unsafe-dir-names" => {
            let tmp = tempfile::tempdir().expect("tempdir");
            let root = tmp.path().join(case);
            copy_dir(&source, &root);
            if case == "symlink-loop" {
                std::os::unix::fs::symlink(".", root.join("self")).expect("symlink");
                std::os::unix::fs::symlink("../..", root.join("lib/up")).expect("symlink");
                std::os::unix::fs::symlink("/etc/passwd", root.join("package-lock-link.json"))
                    .expect("symlink");
                std::os::unix::fs::symlink("missing", root.join("dangling")).expect("symlink");
                let status = Command::new("mkfifo")
                    .arg(root.join("pipe"))
                    .status()
                    .expect("mkfifo runs");
                assert!(status.success(), "mkfifo failed");
            } else if case == "monorepo-unsafe-dir-names" {
                use std::os::unix::ffi::OsStrExt;
                // Latin-1 `café`: a name git and most tools accept, and no UTF-8.
                let dir = root.join(std::ffi::OsStr::from_bytes(b"caf\xe9"));
                std::fs::create_dir_all(&dir).expect("mkdir");
                std::fs::write(dir.join("go.mod"), "module example.com/cafe\n\ngo 1.22\n")
                    .expect("write");
                std::fs::write(dir.join("main.go"), "package main\n\nfunc main() {}\n")
                    .expect("write");
            } else {
                std::fs::create_dir_all(root.join("generated")).expect("mkdir");
                std::fs::write(
                    root.join("generated/Cargo.toml"),
                    "[package]\nname = \"should-not-appear\"\nversion = \"0.0.0\"\n",
                )
                .expect("write");
                std::fs::write(root.join("debug.log"), "noise\n").expect("write");
            }
            (Some(tmp), root)
        }
        _ => (None, source),
    }
}

fn analyze(path: &Path) -> Analysis {
    autonix::analyze(path, &ScanOptions::default()).expect("analysis")
}

fn flake_or_error(analysis: &Analysis) -> (String, bool) {
    match autonix::generate_flake(analysis) {
        Ok(text) => (text, true),
        Err(e) => (format!("error: {e}\n"), false),
    }
}

fn parse_check(case: &str, flake: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flake.nix");
    std::fs::write(&path, flake).expect("write flake");
    let out = Command::new("nix-instantiate")
        .arg("--parse")
        .arg(&path)
        .env(
            "NIX_CONFIG",
            "experimental-features = nix-command flakes\nsubstituters =\nsandbox = false",
        )
        .output()
        .expect("nix-instantiate is installed");
    assert!(
        out.status.success(),
        "{case}: generated flake does not parse:\n{}\n{flake}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Copies a fixture for evaluation: regular files and directories only (Nix refuses to copy
/// a FIFO into the store, and a symlink out of the tree is not the repository's).
fn copy_regular(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read fixture") {
        let entry = entry.expect("entry");
        let kind = entry.file_type().expect("type");
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_regular(&entry.path(), &target);
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Evaluates `flake` placed in a copy of the fixture: `Ok` or the first error line.
fn eval_check(case: &str, root: &Path, flake: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join(case);
    copy_regular(root, &copy);
    std::fs::write(copy.join("flake.nix"), flake).expect("write flake");
    let standin = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/nixpkgs-standin");
    // The stand-in provides only the release lines of the branch the flake pins.
    let branch = flake
        .split_once("nixpkgs.url = \"github:NixOS/nixpkgs/")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map_or("", |(branch, _)| branch);
    let out = Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--json", "--read-write-mode"])
        .arg(standin.join("eval.nix"))
        .arg("--arg")
        .arg("dir")
        .arg(&copy)
        .arg("--arg")
        .arg("standin")
        .arg(&standin)
        .env(
            "NIX_CONFIG",
            "experimental-features = nix-command flakes\nsubstituters =\nsandbox = false",
        )
        .env("AUTONIX_STANDIN_BRANCH", branch)
        .output()
        .expect("nix-instantiate is installed");
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or("error: (no message)");
    Err(first.replace(&*copy.to_string_lossy(), "<fixture>"))
}

#[test]
fn every_fixture_matches_its_snapshots_and_parses() {
    let mut cases: Vec<String> = std::fs::read_dir(fixtures())
        .expect("fixtures dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    cases.sort();
    assert!(cases.len() >= 40, "only {} fixtures", cases.len());
    let mut parsed = 0;
    let mut evaluated = 0;
    let mut evaluation = String::new();
    for case in &cases {
        let (_guard, root) = prepare(case);
        let analysis = analyze(&root);
        let json = serde_json::to_string_pretty(&analysis).expect("json");
        let back: Analysis = serde_json::from_str(&json).expect("analysis JSON reads back");
        assert_eq!(back, analysis, "{case}: JSON round trip");
        let (flake, ok) = flake_or_error(&analysis);
        // The walk is parallel: a second run must give the same bytes.
        let again = analyze(&root);
        assert_eq!(again, analysis, "{case}: analysis is not reproducible");
        assert_eq!(
            flake_or_error(&again).0,
            flake,
            "{case}: flake is not reproducible"
        );
        insta::with_settings!({ prepend_module_to_snapshot => false, omit_expression => true }, {
            insta::assert_snapshot!(format!("{case}.analysis"), json);
            insta::assert_snapshot!(format!("{case}.flake"), flake);
        });
        if ok {
            parse_check(case, &flake);
            parsed += 1;
            match eval_check(case, &root, &flake) {
                Ok(()) => {
                    evaluated += 1;
                    evaluation.push_str(&format!("{case}: evaluates\n"));
                }
                Err(e) => evaluation.push_str(&format!("{case}: {e}\n")),
            }
        }
    }
    // Which generated flakes evaluate, and why the others do not: each remaining failure is
    // a file the flake's comments ask for (gemset.nix from bundix, Cargo.lock, deps.json).
    insta::with_settings!({ prepend_module_to_snapshot => false, omit_expression => true }, {
        insta::assert_snapshot!("flake-evaluation", evaluation);
    });
    assert!(
        evaluated >= 45,
        "only {evaluated} generated flakes evaluate"
    );
    // Most fixtures must produce a flake; the refusals are deliberate (see their snapshots).
    assert!(parsed >= 40, "only {parsed} fixtures produced a flake");
}

/// The stand-in fails where nixpkgs fails: an argument a closed builder does not take, a
/// required argument left out, a lockfile nixpkgs reads that is not there.
#[test]
fn nixpkgs_standin_rejects_what_nixpkgs_rejects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("repo");
    std::fs::create_dir_all(&root).expect("mkdir");
    let flake = |package: &str| {
        format!(
            "{{ outputs = {{ self, nixpkgs }}: let pkgs = import nixpkgs {{ system = \"x86_64-linux\"; }}; in {{\n\
             packages.x86_64-linux.default = {package};\n\
             devShells.x86_64-linux.default = pkgs.mkShell {{ }};\n\
             checks.x86_64-linux = {{ }};\n\
             procurator.cluster = {{ }};\n}}; }}\n"
        )
    };
    let cases = [
        (
            "pkgs.writeShellApplication { name = \"x\"; text = \"true\"; runtimeDeps = [ ]; }",
            "called with unexpected argument 'runtimeDeps'",
        ),
        (
            "pkgs.writeShellApplication { text = \"true\"; }",
            "called without required argument 'name'",
        ),
        (
            "pkgs.rustPlatform.buildRustPackage { pname = \"x\"; version = \"1\"; src = ./.; }",
            "buildRustPackage: set cargoLock or cargoHash",
        ),
        (
            "pkgs.rustPlatform.buildRustPackage { pname = \"x\"; version = \"1\"; src = ./.; cargoLock.lockFile = ./Cargo.lock; }",
            "Cargo.lock does not exist",
        ),
    ];
    for (package, want) in cases {
        let err = eval_check("repo", &root, &flake(package)).expect_err(package);
        assert!(err.contains(want), "{package}: {err}");
    }
    eval_check(
        "repo",
        &root,
        &flake("pkgs.writeShellApplication { name = \"x\"; text = \"true\"; }"),
    )
    .expect("a correct call evaluates");
    // Release lines are those of the branch the flake pins: nixos-24.11 has PostgreSQL 12,
    // nixos-25.05 dropped it.
    let pinned = |branch: &str| {
        flake("pkgs.postgresql_12").replace(
            "{ outputs",
            &format!("{{ inputs.nixpkgs.url = \"github:NixOS/nixpkgs/{branch}\"; outputs"),
        )
    };
    eval_check("repo", &root, &pinned("nixos-24.11")).expect("nixos-24.11 has postgresql_12");
    let err = eval_check("repo", &root, &pinned("nixos-25.05")).expect_err("25.05 lacks it");
    assert!(err.contains("attribute 'postgresql_12' missing"), "{err}");
}
