//! Scan speed: autonix's full analysis of a generated 100,000-file repository against bare
//! walks of the same tree in the same run (`rg --files` when installed, and the `ignore`
//! crate's own walk, sequential and parallel). Prints best and median of several rounds.
//!
//! Also runs the `autonix scan --json` binary as a whole process against `rg --files`.
//!
//! `cargo bench -p autonix --bench scan [-- FILES]`

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const ROUNDS: usize = 5;

/// A monorepo-shaped tree: `services/sNNNN/{src,tests,docs,assets}` with sources in several
/// languages, one manifest per service and binary assets. No vendored trees: every
/// contender walks exactly the same files.
fn generate(root: &Path, files: usize) -> std::io::Result<usize> {
    let per_service = 200;
    let services = files.div_ceil(per_service);
    let mut written = 0;
    for s in 0..services {
        let dir = root.join(format!("services/s{s:04}"));
        for sub in ["src", "tests", "docs", "assets"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let manifest = match s % 4 {
            0 => (
                "Cargo.toml",
                format!("[package]\nname = \"s{s}\"\nversion = \"0.1.0\"\n"),
            ),
            1 => (
                "package.json",
                format!("{{\"name\":\"s{s}\",\"scripts\":{{\"start\":\"node src/f0.js\"}}}}\n"),
            ),
            2 => (
                "pyproject.toml",
                format!("[project]\nname = \"s{s}\"\nversion = \"0.1.0\"\n"),
            ),
            _ => ("go.mod", format!("module example.com/s{s}\n\ngo 1.22\n")),
        };
        std::fs::write(dir.join(manifest.0), manifest.1)?;
        written += 1;
        for i in 0..per_service - 1 {
            if written >= files {
                return Ok(written);
            }
            let (path, body): (String, Vec<u8>) = match i % 10 {
                0..=3 => (
                    format!("src/f{i}.rs"),
                    b"fn f() -> u32 {\n    1 + 1\n}\n\n// trailing comment\n".repeat(4),
                ),
                4 | 5 => (
                    format!("src/f{i}.js"),
                    b"export function f() {\n  return 1;\n}\n".repeat(4),
                ),
                6 => (
                    format!("tests/t{i}.py"),
                    b"def test_f():\n    assert 1\n".repeat(4),
                ),
                7 => (
                    format!("docs/d{i}.md"),
                    b"# Title\n\nSome prose for the docs.\n".repeat(8),
                ),
                8 => (
                    format!("assets/a{i}.png"),
                    (0..2048u32).map(|x| (x * 31 % 251) as u8).collect(),
                ),
                _ => (
                    format!("src/m{i}.go"),
                    b"package main\n\nfunc g() int { return 1 }\n".to_vec(),
                ),
            };
            std::fs::write(dir.join(path), body)?;
            written += 1;
        }
    }
    Ok(written)
}

fn time<F: FnMut() -> usize>(name: &str, mut f: F) -> Duration {
    let mut samples = Vec::new();
    let mut count = 0;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        count = f();
        samples.push(start.elapsed());
    }
    samples.sort();
    let best = samples[0];
    let median = samples[ROUNDS / 2];
    println!(
        "{name:<38} best {:>8.1} ms  median {:>8.1} ms  ({count} files)",
        best.as_secs_f64() * 1e3,
        median.as_secs_f64() * 1e3
    );
    median
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000);
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("bench-repo");
    let start = Instant::now();
    let written = generate(&root, files)?;
    println!(
        "generated {written} files in {:.1} s under {}",
        start.elapsed().as_secs_f64(),
        root.display()
    );
    // Warm the page cache so every contender reads from memory.
    let _ = autonix::analyze(&root, &Default::default())?;

    let rg = Command::new("rg").arg("--version").output().is_ok();
    let rg_time = rg.then(|| {
        time("rg --files", || {
            let out = Command::new("rg")
                .arg("--files")
                .arg(&root)
                .output()
                .map(|o| o.stdout)
                .unwrap_or_default();
            out.iter().filter(|b| **b == b'\n').count()
        })
    });
    time("ignore walk, 1 thread", || {
        ignore::WalkBuilder::new(&root)
            .hidden(false)
            .build()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_some_and(|t| t.is_file()))
            .count()
    });
    let par = time("ignore walk, parallel", || {
        let count = std::sync::atomic::AtomicUsize::new(0);
        ignore::WalkBuilder::new(&root)
            .hidden(false)
            .build_parallel()
            .run(|| {
                Box::new(|e| {
                    if e.is_ok_and(|e| e.file_type().is_some_and(|t| t.is_file())) {
                        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    ignore::WalkState::Continue
                })
            });
        count.into_inner()
    });
    time("autonix walk + reads only", || {
        autonix::scan::scan(&root, &Default::default())
            .map(|i| i.files.len())
            .unwrap_or(0)
    });
    let rg_read = rg.then(|| {
        time("rg -c '' (walk + read every file)", || {
            let out = Command::new("rg")
                .args(["-c", "--no-messages", ""])
                .arg(&root)
                .output()
                .map(|o| o.stdout)
                .unwrap_or_default();
            out.iter().filter(|b| **b == b'\n').count()
        })
    });
    let counted = time("autonix scan + analysis, --line-counts", || {
        let options = autonix::ScanOptions {
            count_lines: true,
            ..Default::default()
        };
        autonix::analyze(&root, &options)
            .map(|a| a.stats.files as usize)
            .unwrap_or(0)
    });
    let full = time("autonix scan + analysis (default)", || {
        autonix::analyze(&root, &Default::default())
            .map(|a| a.stats.files as usize)
            .unwrap_or(0)
    });
    // The whole program as a user runs it, process start and JSON output included.
    let process = time("autonix scan --json (whole process)", || {
        let out = Command::new(env!("CARGO_BIN_EXE_autonix"))
            .args(["scan", "--json"])
            .arg(&root)
            .output()
            .map(|o| o.stdout)
            .unwrap_or_default();
        serde_json::from_slice::<serde_json::Value>(&out)
            .ok()
            .and_then(|a| a["stats"]["files"].as_u64())
            .unwrap_or(0) as usize
    });
    let analysis = autonix::analyze(&root, &Default::default())?;
    println!(
        "autonix found {} projects, {} binary files",
        analysis.projects.len(),
        analysis.stats.binary_files
    );
    if let Some(rg) = rg_time {
        println!(
            "ratio autonix scan process / rg --files: {:.2}x",
            process.as_secs_f64() / rg.as_secs_f64()
        );
        println!(
            "ratio autonix / rg --files: {:.2}x; with --line-counts: {:.2}x",
            full.as_secs_f64() / rg.as_secs_f64(),
            counted.as_secs_f64() / rg.as_secs_f64()
        );
    }
    if let Some(rg) = rg_read {
        println!(
            "ratio autonix --line-counts / rg -c '' (both read every file): {:.2}x",
            counted.as_secs_f64() / rg.as_secs_f64()
        );
    }
    println!(
        "ratio autonix / parallel ignore walk: {:.2}x",
        full.as_secs_f64() / par.as_secs_f64()
    );
    Ok(())
}
