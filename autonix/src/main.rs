//! The `autonix` command line: `scan`, `flake` and `explain` over the library.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use autonix::{Analysis, Detection, Evidence, Facts, ScanOptions};

#[derive(Parser)]
#[command(
    name = "autonix",
    version,
    about = "Understand a repository and write a flake for it"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print what autonix detects in a repository.
    Scan {
        path: PathBuf,
        /// Print the analysis as JSON (the shape repohub reads).
        #[arg(long)]
        json: bool,
        /// Also count the lines of every source file: reads each one, so a large tree
        /// takes several times longer.
        #[arg(long)]
        line_counts: bool,
    },
    /// Generate a flake.nix for a repository.
    Flake {
        path: PathBuf,
        /// Write the flake here instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Overwrite the output file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Show the evidence behind every detection.
    Explain { path: PathBuf },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("autonix: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn analyze(path: &std::path::Path) -> anyhow::Result<Analysis> {
    analyze_with(path, &ScanOptions::default())
}

fn analyze_with(path: &std::path::Path, options: &ScanOptions) -> anyhow::Result<Analysis> {
    autonix::analyze(path, options).with_context(|| format!("cannot scan {}", path.display()))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    // Output goes through one locked handle; a closed pipe (`autonix scan . | head`) ends
    // the program quietly instead of panicking in println!.
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = match cli.command {
        Command::Scan {
            path,
            json,
            line_counts,
        } => {
            let options = ScanOptions {
                count_lines: line_counts,
                ..ScanOptions::default()
            };
            let analysis = analyze_with(&path, &options)?;
            if json {
                let text = serde_json::to_string_pretty(&analysis)?;
                writeln!(out, "{text}")
            } else {
                write!(out, "{}", render_scan(&analysis))
            }
        }
        Command::Explain { path } => {
            let analysis = analyze(&path)?;
            write!(out, "{}", render_explain(&analysis))
        }
        Command::Flake {
            path,
            output,
            force,
        } => {
            let analysis = analyze(&path)?;
            for project in &analysis.projects {
                for w in &project.warnings {
                    eprintln!("warning ({}): {}", project.path, w.message);
                }
            }
            let flake = autonix::generate_flake(&analysis)
                .with_context(|| format!("no flake written for {}", path.display()))?;
            match output {
                Some(file) => {
                    if file.exists() && !force {
                        bail!(
                            "{} exists; pass --force to replace it or -o to write elsewhere",
                            file.display()
                        );
                    }
                    std::fs::write(&file, flake)
                        .with_context(|| format!("cannot write {}", file.display()))?;
                    eprintln!("wrote {}", file.display());
                    Ok(())
                }
                None => write!(out, "{flake}"),
            }
        }
    };
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to standard output"),
    }
}

fn percent(c: f32) -> u32 {
    (c * 100.0).round() as u32
}

fn at(e: &Evidence) -> String {
    match e.line {
        Some(l) => format!("{}:{l}", e.file),
        None => e.file.clone(),
    }
}

fn render_scan(a: &Analysis) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "{}: {} project{}, {} files scanned ({} binary, {} symlinks not followed, {} vendored dirs skipped, {} unreadable)\n",
        a.name,
        a.projects.len(),
        if a.projects.len() == 1 { "" } else { "s" },
        a.stats.files,
        a.stats.binary_files,
        a.stats.symlinks,
        a.stats.skipped_dirs,
        a.stats.unreadable
    ));
    s.push_str(&format!(
        "nixpkgs {}: {}\n",
        a.nixpkgs.branch, a.nixpkgs.reason
    ));
    for p in &a.projects {
        s.push_str(&format!("\n{} ({})\n", p.path, p.name));
        if let Some(ws) = &p.workspace {
            s.push_str(&format!(
                "  member of the workspace at {ws}, built by its package\n"
            ));
        }
        let mut kind = "";
        for d in &p.detections {
            if d.facts.kind() != kind {
                kind = d.facts.kind();
                s.push_str(&format!("  {kind}\n"));
            }
            s.push_str(&format!(
                "    {} [{}%]\n",
                summary(d),
                percent(d.confidence)
            ));
        }
        for w in &p.warnings {
            s.push_str(&format!("  warning: {}\n", w.message));
        }
        for e in &p.errors {
            s.push_str(&format!("  error: {}\n", e.message));
        }
    }
    s
}

fn summary(d: &Detection) -> String {
    match &d.facts {
        Facts::Language {
            files,
            lines: Some(lines),
            ..
        } => format!("{} — {files} files, {lines} lines", d.what),
        Facts::Language { files, .. } => format!("{} — {files} files", d.what),
        _ => d.what.clone(),
    }
}

fn render_explain(a: &Analysis) -> String {
    let mut s = format!("nixpkgs {}: {}\n\n", a.nixpkgs.branch, a.nixpkgs.reason);
    for p in &a.projects {
        s.push_str(&format!("{} ({})\n", p.path, p.name));
        for d in &p.detections {
            s.push_str(&format!(
                "  {} {} [{}%]\n",
                d.facts.kind(),
                summary(d),
                percent(d.confidence)
            ));
            if let Facts::Toolchain(t) = &d.facts {
                s.push_str(&format!("      because: {}\n", t.reason));
            }
            for e in &d.evidence {
                s.push_str(&format!("      {} — {}\n", at(e), e.reason));
            }
        }
        if p.errors.is_empty() {
            match autonix::flake::deployment(p) {
                Some(Ok(why)) => s.push_str(&format!("  deployment: {why}\n")),
                Some(Err(why)) => s.push_str(&format!("  not deployed: {why}\n")),
                None => {}
            }
        }
        for (label, list) in [("warning", &p.warnings), ("error", &p.errors)] {
            for f in list {
                s.push_str(&format!("  {label}: {}\n", f.message));
                for e in &f.evidence {
                    s.push_str(&format!("      {} — {}\n", at(e), e.reason));
                }
            }
        }
        s.push('\n');
    }
    s
}
