//! CI configurations (GitHub Actions, GitLab CI) and the test commands they run.

use yaml_rust2::{Yaml, YamlLoader};

use crate::detect::{ev, ev_line, line_of, parse_failure};
use crate::model::{confidence, CiSystem, Detection, Evidence, Facts, Finding};
use crate::scan::Inventory;

/// Commands that run tests, matched at the start of a shell command.
const TEST_COMMANDS: &[&str] = &[
    "cargo test",
    "cargo nextest run",
    "npm test",
    "npm run test",
    "yarn test",
    "yarn run test",
    "pnpm test",
    "pnpm run test",
    "bun test",
    "bun run test",
    "pytest",
    "python -m pytest",
    "python3 -m pytest",
    "poetry run pytest",
    "uv run pytest",
    "pdm run pytest",
    "pipenv run pytest",
    "tox",
    "python manage.py test",
    "go test",
    "bundle exec rspec",
    "bundle exec rails test",
    "bundle exec rake test",
    "rspec",
    "mix test",
    "mvn test",
    "mvn verify",
    "mvn -B test",
    "mvn -B verify",
    "./mvnw test",
    "./mvnw verify",
    "gradle test",
    "gradle check",
    "./gradlew test",
    "./gradlew check",
    "make test",
    "make check",
    "ctest",
    "meson test",
    "zig build test",
    "vendor/bin/phpunit",
    "composer test",
];

/// A test command found in CI, with the directory it runs in.
#[derive(Debug, Clone)]
pub struct CiTest {
    /// Repository-relative working directory, empty for the root.
    pub dir: String,
    pub command: String,
    pub evidence: Evidence,
}

#[derive(Debug, Default)]
pub struct CiReport {
    pub detections: Vec<Detection>,
    pub tests: Vec<CiTest>,
    pub warnings: Vec<Finding>,
}

/// Whether `command` runs tests, by its leading words.
pub fn is_test_command(command: &str) -> bool {
    TEST_COMMANDS.iter().any(|t| {
        command
            .strip_prefix(t)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
    })
}

/// Test commands in a shell script, following `cd dir` so each keeps its directory.
fn scan_script(script: &str, start_dir: &str, file: &str, text: &str, out: &mut Vec<CiTest>) {
    let mut dir = start_dir.to_string();
    for line in script.lines() {
        for part in line.split("&&").flat_map(|p| p.split(';')) {
            let cmd = part.trim();
            if let Some(target) = cmd.strip_prefix("cd ") {
                let target = target.trim().trim_matches(['"', '\'']);
                dir = normalise_dir(&dir, target);
                continue;
            }
            if is_test_command(cmd) && !out.iter().any(|t| t.command == cmd && t.dir == dir) {
                out.push(CiTest {
                    dir: dir.clone(),
                    command: cmd.to_string(),
                    evidence: ev_line(file, line_of(text, cmd), "CI runs it"),
                });
            }
        }
    }
}

fn normalise_dir(base: &str, target: &str) -> String {
    let mut parts: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
    for piece in target.split('/') {
        match piece {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

fn script_text(y: &Yaml) -> String {
    match y {
        Yaml::String(s) => s.clone(),
        Yaml::Array(a) => a
            .iter()
            .filter_map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

pub fn detect(inv: &Inventory) -> CiReport {
    let mut report = CiReport::default();
    for (path, text) in inv.texts.range(".github/workflows/".to_string()..) {
        if !path.starts_with(".github/workflows/") {
            break;
        }
        let docs = match YamlLoader::load_from_str(text) {
            Ok(d) => d,
            Err(e) => {
                report.warnings.push(Finding {
                    message: parse_failure(inv, path, "YAML", e),
                    evidence: vec![ev(path, "invalid YAML")],
                });
                continue;
            }
        };
        let Some(doc) = docs.first() else { continue };
        let default_dir = doc["defaults"]["run"]["working-directory"]
            .as_str()
            .unwrap_or("");
        let mut jobs = Vec::new();
        if let Some(hash) = doc["jobs"].as_hash() {
            for (name, job) in hash {
                let Some(name) = name.as_str() else { continue };
                jobs.push(name.to_string());
                let job_dir = job["defaults"]["run"]["working-directory"]
                    .as_str()
                    .unwrap_or(default_dir);
                for step in job["steps"].as_vec().into_iter().flatten() {
                    let Some(run) = step["run"].as_str() else {
                        continue;
                    };
                    let dir = step["working-directory"].as_str().unwrap_or(job_dir);
                    scan_script(run, &normalise_dir("", dir), path, text, &mut report.tests);
                }
            }
        }
        report.detections.push(Detection {
            what: format!(
                "GitHub Actions workflow {}",
                path.trim_start_matches(".github/workflows/")
            ),
            confidence: confidence::CERTAIN,
            evidence: vec![ev(path, format!("{} jobs", jobs.len()))],
            facts: Facts::Ci {
                system: CiSystem::GithubActions,
                file: path.clone(),
                jobs,
            },
        });
    }
    if let Some(text) = inv.text(".gitlab-ci.yml") {
        let path = ".gitlab-ci.yml";
        match YamlLoader::load_from_str(text) {
            Ok(docs) => {
                let mut jobs = Vec::new();
                if let Some(hash) = docs.first().and_then(|d| d.as_hash()) {
                    const RESERVED: &[&str] = &[
                        "stages",
                        "variables",
                        "default",
                        "include",
                        "image",
                        "services",
                        "workflow",
                        "before_script",
                        "after_script",
                        "cache",
                    ];
                    for (name, job) in hash {
                        let Some(name) = name.as_str() else { continue };
                        if RESERVED.contains(&name)
                            || name.starts_with('.')
                            || job.as_hash().is_none()
                        {
                            continue;
                        }
                        jobs.push(name.to_string());
                        scan_script(
                            &script_text(&job["script"]),
                            "",
                            path,
                            text,
                            &mut report.tests,
                        );
                    }
                }
                report.detections.push(Detection {
                    what: "GitLab CI pipeline".into(),
                    confidence: confidence::CERTAIN,
                    evidence: vec![ev(path, format!("{} jobs", jobs.len()))],
                    facts: Facts::Ci {
                        system: CiSystem::GitlabCi,
                        file: path.into(),
                        jobs,
                    },
                });
            }
            Err(e) => report.warnings.push(Finding {
                message: parse_failure(inv, path, "YAML", e),
                evidence: vec![ev(path, "invalid YAML")],
            }),
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_commands() {
        assert!(is_test_command("cargo test --workspace"));
        assert!(is_test_command("pytest"));
        assert!(!is_test_command("pytest-cov-report"));
        assert!(!is_test_command("cargo build"));
    }

    #[test]
    fn cd_changes_directory() {
        let mut out = Vec::new();
        scan_script(
            "cd web && npm ci && npm test\ncd ../api; go test ./...",
            "",
            "ci.yml",
            "",
            &mut out,
        );
        let got: Vec<(&str, &str)> = out
            .iter()
            .map(|t| (t.dir.as_str(), t.command.as_str()))
            .collect();
        assert_eq!(got, [("web", "npm test"), ("api", "go test ./...")]);
    }
}
