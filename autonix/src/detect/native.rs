//! Zig, CMake, Meson and Make builds.

use crate::detect::toolchains::between;
use crate::detect::{ev, ev_line, line_of, line_starting, Ctx, Out};
use crate::model::{
    confidence, Ecosystem, EcosystemKind, Evidence, Facts, TestCommand, TestSource,
};

fn test(out: &mut Out, command: &str, conf: f32, evidence: Evidence, source: TestSource) {
    out.add(
        command,
        conf,
        vec![evidence],
        Facts::Test(TestCommand {
            command: command.into(),
            source,
        }),
    );
}

/// First argument of every `call(` in a CMake or Meson file: target names.
fn first_args(text: &str, call: &str) -> Vec<String> {
    text.split(call)
        .skip(1)
        .filter_map(|rest| {
            let arg = rest
                .trim_start()
                .split(|c: char| c.is_whitespace() || c == ')' || c == ',')
                .next()?;
            let arg = arg.trim_matches(|c| c == '\'' || c == '"');
            (!arg.is_empty() && !arg.starts_with('$')).then(|| arg.to_string())
        })
        .collect()
}

pub fn detect(ctx: &Ctx<'_>, out: &mut Out) {
    if let Some(text) = ctx.text("build.zig") {
        let manifest = ctx.path("build.zig");
        let mut eco = Ecosystem::new(EcosystemKind::Zig, manifest.clone());
        eco.package = ctx
            .text("build.zig.zon")
            .and_then(|z| between(z, ".name = ", ","))
            .map(|n| {
                n.trim()
                    .trim_start_matches('.')
                    .trim_matches('"')
                    .to_string()
            });
        eco.binaries = between(text, "addExecutable(.{", "})")
            .and_then(|args| between(args, ".name = \"", "\""))
            .map(|n| vec![n.to_string()])
            .unwrap_or_default();
        out.add(
            "Zig build",
            confidence::CERTAIN,
            vec![ev(&manifest, "build.zig")],
            Facts::Ecosystem(eco),
        );
        if text.contains("\"test\"") {
            test(
                out,
                "zig build test",
                confidence::HIGH,
                ev_line(
                    &manifest,
                    line_of(text, "\"test\""),
                    "build.zig defines a test step",
                ),
                TestSource::Convention,
            );
        }
    }
    if let Some(text) = ctx.text("CMakeLists.txt") {
        let manifest = ctx.path("CMakeLists.txt");
        let mut eco = Ecosystem::new(EcosystemKind::Cmake, manifest.clone());
        eco.package = first_args(text, "project(").into_iter().next();
        eco.version = cmake_project_version(text);
        eco.binaries = first_args(text, "add_executable(");
        out.add(
            "CMake",
            confidence::CERTAIN,
            vec![ev(&manifest, "CMakeLists.txt")],
            Facts::Ecosystem(eco),
        );
        if text.contains("add_test(") || text.contains("enable_testing()") {
            test(
                out,
                "ctest",
                confidence::HIGH,
                ev_line(
                    &manifest,
                    line_of(text, "add_test(").or(line_of(text, "enable_testing")),
                    "CMake tests registered",
                ),
                TestSource::Convention,
            );
        }
    }
    if let Some(text) = ctx.text("meson.build") {
        let manifest = ctx.path("meson.build");
        let mut eco = Ecosystem::new(EcosystemKind::Meson, manifest.clone());
        eco.package = first_args(text, "project(").into_iter().next();
        eco.binaries = first_args(text, "executable(");
        out.add(
            "Meson",
            confidence::CERTAIN,
            vec![ev(&manifest, "meson.build")],
            Facts::Ecosystem(eco),
        );
        if text.contains("test(") {
            test(
                out,
                "meson test",
                confidence::HIGH,
                ev_line(&manifest, line_of(text, "test("), "Meson tests registered"),
                TestSource::Convention,
            );
        }
    }
    for name in ["GNUmakefile", "makefile", "Makefile"] {
        let Some(text) = ctx.text(name) else { continue };
        let manifest = ctx.path(name);
        let mut eco = Ecosystem::new(EcosystemKind::Make, manifest.clone());
        // Targets: `name:` at the start of a line, not variable assignments (`X := y`).
        let mut targets: Vec<String> = text
            .lines()
            .filter(|l| !l.starts_with(['\t', ' ', '#', '.']))
            .filter_map(|l| {
                let (target, rest) = l.split_once(':')?;
                (!rest.starts_with('=') && !target.contains(['=', '$', '%', ' ']))
                    .then(|| target.trim().to_string())
            })
            .filter(|t| !t.is_empty())
            .collect();
        targets.sort();
        targets.dedup();
        for t in &targets {
            eco.scripts.insert(t.clone(), format!("make {t}"));
        }
        out.add(
            "Make",
            confidence::CERTAIN,
            vec![ev(&manifest, name)],
            Facts::Ecosystem(eco),
        );
        for target in ["test", "check"] {
            if targets.iter().any(|t| t == target) {
                test(
                    out,
                    &format!("make {target}"),
                    confidence::HIGH,
                    ev_line(
                        &manifest,
                        line_starting(text, &format!("{target}:")),
                        format!("`{target}` target"),
                    ),
                    TestSource::Makefile,
                );
                break;
            }
        }
        break;
    }
}

/// The `VERSION` argument of CMake's `project(...)` call; `cmake_minimum_required(VERSION
/// 3.16)` names the CMake the project needs, not the project's version.
fn cmake_project_version(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(at) = lower[from..].find("project(") {
        let start = from + at;
        from = start + "project(".len();
        // `project(` inside another name (`my_project(`) is not the command.
        let before = lower[..start].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let args = &text[from..];
        let args = &args[..args.find(')').unwrap_or(args.len())];
        let mut words = args.split_whitespace();
        while let Some(w) = words.next() {
            if w == "VERSION" {
                return words.next().map(String::from);
            }
        }
        return None;
    }
    None
}

#[cfg(test)]
mod cmake_tests {
    use super::cmake_project_version;

    #[test]
    fn project_version_is_not_the_minimum_cmake() {
        let cases = [
            (
                "cmake_minimum_required(VERSION 3.16)\nproject(calc C)\n",
                None,
            ),
            (
                "cmake_minimum_required(VERSION 3.16)\nproject(calc VERSION 2.4.1 LANGUAGES C)\n",
                Some("2.4.1"),
            ),
            ("project(\n  calc\n  VERSION 0.9\n)\n", Some("0.9")),
        ];
        for (text, want) in cases {
            assert_eq!(cmake_project_version(text).as_deref(), want, "{text}");
        }
    }
}
