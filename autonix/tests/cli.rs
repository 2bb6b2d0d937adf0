//! The `autonix` binary end to end: scan, explain and flake on fixture repositories.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(case)
}

fn autonix(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_autonix"))
        .args(args)
        .output()
        .expect("autonix runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn scan_prints_projects_and_json() {
    let root = fixture("monorepo-polyglot");
    let out = autonix(&["scan", root.to_str().expect("utf-8 path")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let human = text(&out.stdout);
    for needle in [
        "api (api)",
        "web (web)",
        "worker (worker)",
        "go test -race ./...",
    ] {
        assert!(human.contains(needle), "{needle:?} missing in:\n{human}");
    }
    let out = autonix(&["scan", "--json", root.to_str().expect("utf-8 path")]);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(json["projects"].as_array().map(Vec::len), Some(4));
    assert_eq!(json["schema"], 1);
}

/// Line counts cost a read of every source file, so they are counted only when asked for.
#[test]
fn scan_counts_lines_only_when_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("lines");
    std::fs::create_dir_all(root.join("src")).expect("mkdir");
    std::fs::write(root.join("go.mod"), "module example.com/lines\n\ngo 1.22\n").expect("write");
    std::fs::write(root.join("src/a.go"), "package a\n\nfunc A() {}\n").expect("write");
    std::fs::write(root.join("src/b.go"), "package a\n\nfunc B() {}").expect("write");
    let root_s = root.to_str().expect("utf-8 path");
    let plain = text(&autonix(&["scan", root_s]).stdout);
    assert!(plain.contains("Go — 2 files ["), "{plain}");
    let counted = text(&autonix(&["scan", "--line-counts", root_s]).stdout);
    assert!(counted.contains("Go — 2 files, 6 lines ["), "{counted}");
    let json = autonix(&["scan", "--json", root_s]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON output");
    let language = json["projects"][0]["detections"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["kind"] == "language"))
        .expect("a language detection")
        .clone();
    assert_eq!(language["files"], 2);
    assert!(language.get("lines").is_none(), "{language}");
}

/// The branch autonix pins was only visible in the flake; scan and explain say it too.
#[test]
fn scan_and_explain_name_the_nixpkgs_branch() {
    let root = fixture("python-needs-newer-branch");
    let root_s = root.to_str().expect("utf-8 path");
    for command in ["scan", "explain"] {
        let out = autonix(&[command, root_s]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let s = text(&out.stdout);
        assert!(
            s.contains("nixpkgs nixos-25.11: the oldest branch that satisfies every version requirement: nixos-25.05 does not satisfy them"),
            "{command}: {s}"
        );
    }
}

#[test]
fn explain_shows_evidence_with_lines() {
    let out = autonix(&[
        "explain",
        fixture("node-conflicting-versions").to_str().expect("path"),
    ]);
    assert!(out.status.success());
    let s = text(&out.stdout);
    assert!(s.contains(".nvmrc:1 — .nvmrc pins node 18"), "{s}");
    assert!(s.contains("warning: conflicting node versions"), "{s}");
}

#[test]
fn flake_writes_file_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("flake.nix");
    let target_s = target.to_str().expect("path");
    let src = fixture("go-gin");
    let src_s = src.to_str().expect("path");
    let out = autonix(&["flake", src_s, "-o", target_s]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let written = std::fs::read_to_string(&target).expect("flake written");
    assert!(written.contains("pkgs.buildGo123Module"), "{written}");
    let again = autonix(&["flake", src_s, "-o", target_s]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("pass --force"),
        "{}",
        text(&again.stderr)
    );
    let forced = autonix(&["flake", src_s, "-o", target_s, "--force"]);
    assert!(forced.status.success());
}

#[test]
fn flake_refuses_unsatisfiable_versions_loudly() {
    let out = autonix(&[
        "flake",
        fixture("node-unsatisfiable").to_str().expect("path"),
    ]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("node v14.21.3 is requested at .nvmrc:1"),
        "{err}"
    );
    assert!(err.contains("only provides node 18, 20, 22, 23"), "{err}");
    assert!(out.stdout.is_empty(), "nothing is half-written");
}

#[test]
fn missing_path_is_a_clear_error() {
    let out = autonix(&["scan", "/nonexistent/autonix-test"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("cannot scan /nonexistent/autonix-test"));
}

/// An unreadable repository root scanned as "0 files" and `flake` said it found nothing,
/// hiding the permission error.
#[test]
fn unreadable_root_is_an_error_not_an_empty_repository() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("locked");
    std::fs::create_dir(&root).expect("mkdir");
    std::fs::write(root.join("go.mod"), "module example.com/x\n\ngo 1.22\n").expect("write");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    let root_s = root.to_str().expect("path");
    // root reads everything: run as nobody so the permission bits count.
    let out = if rustix::process::geteuid().is_root() {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_autonix"))
            .args(["flake", root_s, "-o", "/dev/null", "--force"])
            .output()
            .expect("setpriv runs")
    } else {
        autonix(&["flake", root_s, "-o", "/dev/null", "--force"])
    };
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).expect("chmod back");
    assert!(!out.status.success(), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("cannot open {root_s}")), "{err}");
    assert!(err.contains("Permission denied"), "{err}");
    assert!(!err.contains("found nothing"), "{err}");
}

/// `explain` did not say why a binary got no deployment (or why one did).
#[test]
fn explain_says_why_a_program_is_or_is_not_deployed() {
    let out = autonix(&["explain", fixture("c-cmake").to_str().expect("path")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.contains(
            "  not deployed: `calc` gets a package but no deployment: nothing shows it serves"
        ),
        "{s}"
    );
    let out = autonix(&[
        "explain",
        fixture("go-server-and-examples").to_str().expect("path"),
    ]);
    let s = text(&out.stdout);
    assert!(
        s.contains("  deployment: runs `server` as a service on port 3333: listens on port 3333"),
        "{s}"
    );
}
