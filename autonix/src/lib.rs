//! autonix: understand a repository and write a flake that builds and deploys it.
//!
//! [`analyze`] walks a repository once ([`scan`]), finds its project roots (several
//! in a monorepo) and records, per project, what it detected — languages, ecosystems and
//! lockfiles, tool versions, containers, compose services, start commands, frameworks, CI
//! test commands — each with a confidence and the evidence (file, line, reason) behind it.
//! The [`Analysis`] is plain serde data with a stable JSON shape, shown by repohub and by
//! `autonix scan --json`. [`generate_flake`] turns it into a formatted, deterministic
//! flake using nixpkgs builders, a dev shell, checks from the test commands and a
//! Procurator cluster entry; it refuses, with the reasons, when a requested tool version
//! cannot be satisfied rather than guessing another.
//!
//! ```no_run
//! let analysis = autonix::analyze(std::path::Path::new("."), &Default::default())?;
//! let flake = autonix::generate_flake(&analysis)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// The modules flow one way, each using only those listed before it: the data model at the
// bottom, then the walk, the per-ecosystem detectors, the analysis that runs them per
// project, and the flake written from an analysis.
pub mod analysis;
pub mod detect;
pub mod flake;
pub mod model;
pub mod scan;

use std::path::Path;

pub use flake::FlakeError;
pub use model::*;
pub use scan::{ScanError, ScanOptions};

/// Scans and analyses the repository at `root`.
pub fn analyze(root: &Path, options: &ScanOptions) -> Result<Analysis, ScanError> {
    let inventory = scan::scan(root, options)?;
    let name = root
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "repository".to_string());
    Ok(analysis::analyze(&inventory, &name))
}

/// The flake for an analysis; see [`flake`].
pub fn generate_flake(analysis: &Analysis) -> Result<String, FlakeError> {
    flake::generate(analysis)
}
