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
