//! Python projects: pyproject.toml (PEP 621, Poetry, PDM, uv), Pipfile, setup.py and
//! plain requirements files.

use crate::detect::toolchains::between;
use crate::detect::{ev, ev_line, line_of, parse_failure, Ctx, Out};
use crate::model::{
    confidence, Ecosystem, EcosystemKind, Evidence, Facts, TestCommand, TestSource,
};

/// PEP 503 name normalisation, which is also how nixpkgs names most Python packages.
pub fn normalise(name: &str) -> String {
    let mut out = String::new();
    let mut last_dash = false;
    for c in name.trim().chars() {
        if c == '-' || c == '_' || c == '.' {
            if !last_dash {
                out.push('-');
            }
            last_dash = true;
        } else {
            out.push(c.to_ascii_lowercase());
            last_dash = false;
        }
    }
    out
}

/// The distribution name of a PEP 508 requirement (`Flask[async]>=2; python_version>"3"`).
pub fn requirement_name(req: &str) -> Option<String> {
    let req = req.trim();
    if req.is_empty() || req.starts_with('#') || req.starts_with('-') || req.contains("://") {
        return None;
    }
    let end = req
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
        .unwrap_or(req.len());
    let name = &req[..end];
    if name.is_empty() {
        None
    } else {
        Some(normalise(name))
    }
}

fn requirements_file(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| requirement_name(l.split('#').next().unwrap_or("")))
        .collect()
}

pub fn detect(ctx: &Ctx<'_>, out: &mut Out) {
    let pyproject = ctx.text("pyproject.toml");
    let requirements: Vec<&str> = [
        "requirements.txt",
        "requirements-dev.txt",
        "requirements_dev.txt",
        "requirements-test.txt",
    ]
    .into_iter()
    .filter(|f| ctx.has(f))
    .collect();
    let mut evidence: Vec<Evidence> = Vec::new();
    let mut dev_deps: Vec<String> = Vec::new();
    let mut eco = if let Some(text) = pyproject {
        let manifest = ctx.path("pyproject.toml");
        let doc: toml::Value = match toml::from_str(text) {
            Ok(d) => d,
            Err(e) => {
                out.warn(
                    parse_failure(ctx.inv, &manifest, "TOML", e.message()),
                    vec![ev(&manifest, "invalid TOML")],
                );
                toml::Value::Table(Default::default())
            }
        };
        let project = doc.get("project");
        let poetry = doc.get("tool").and_then(|t| t.get("poetry"));
        let kind = if poetry.is_some() || ctx.has("poetry.lock") {
            EcosystemKind::Poetry
        } else if ctx.has("uv.lock") || doc.get("tool").and_then(|t| t.get("uv")).is_some() {
            EcosystemKind::Uv
        } else if ctx.has("pdm.lock") || doc.get("tool").and_then(|t| t.get("pdm")).is_some() {
            EcosystemKind::Pdm
        } else {
            EcosystemKind::PythonPackage
        };
        let mut eco = Ecosystem::new(kind, manifest.clone());
        evidence.push(ev(&manifest, "pyproject.toml"));
        eco.lockfile = match kind {
            EcosystemKind::Poetry => Some("poetry.lock"),
            EcosystemKind::Uv => Some("uv.lock"),
            EcosystemKind::Pdm => Some("pdm.lock"),
            _ => None,
        }
        .filter(|f| ctx.has(f))
        .map(|f| ctx.path(f));
        if let Some(lock) = &eco.lockfile {
            evidence.push(ev(lock, format!("{} lockfile", kind.name())));
        }
        let str_at = |v: Option<&toml::Value>, k: &str| {
            v.and_then(|t| t.get(k))
                .and_then(|v| v.as_str())
                .map(String::from)
        };
        eco.package = str_at(project, "name").or_else(|| str_at(poetry, "name"));
        eco.version = str_at(project, "version").or_else(|| str_at(poetry, "version"));
        eco.backend = doc
            .get("build-system")
            .and_then(|b| b.get("build-backend"))
            .and_then(|v| v.as_str())
            .map(|b| {
                match b {
                    "poetry.core.masonry.api" => "poetry-core",
                    "hatchling.build" => "hatchling",
                    "setuptools.build_meta" | "setuptools.build_meta:__legacy__" => "setuptools",
                    "pdm.backend" | "pdm.pep517.api" => "pdm-backend",
                    "flit_core.buildapi" => "flit-core",
                    "maturin" => "maturin",
                    other => other,
                }
                .to_string()
            });
        if let Some(deps) = project
            .and_then(|p| p.get("dependencies"))
            .and_then(|d| d.as_array())
        {
            eco.dependencies.extend(
                deps.iter()
                    .filter_map(|d| d.as_str())
                    .filter_map(requirement_name),
            );
        }
        if let Some(opt) = project
            .and_then(|p| p.get("optional-dependencies"))
            .and_then(|d| d.as_table())
        {
            for list in opt.values().filter_map(|v| v.as_array()) {
                dev_deps.extend(
                    list.iter()
                        .filter_map(|d| d.as_str())
                        .filter_map(requirement_name),
                );
            }
        }
        if let Some(groups) = doc.get("dependency-groups").and_then(|d| d.as_table()) {
            for list in groups.values().filter_map(|v| v.as_array()) {
                dev_deps.extend(
                    list.iter()
                        .filter_map(|d| d.as_str())
                        .filter_map(requirement_name),
                );
            }
        }
        if let Some(deps) = poetry
            .and_then(|p| p.get("dependencies"))
            .and_then(|d| d.as_table())
        {
            eco.dependencies.extend(
                deps.keys()
                    .filter(|k| k.as_str() != "python")
                    .map(|k| normalise(k)),
            );
        }
        if let Some(groups) = poetry
            .and_then(|p| p.get("group"))
            .and_then(|g| g.as_table())
        {
            for g in groups.values() {
                if let Some(d) = g.get("dependencies").and_then(|d| d.as_table()) {
                    dev_deps.extend(d.keys().map(|k| normalise(k)));
                }
            }
        }
        for scripts in [
            project.and_then(|p| p.get("scripts")),
            poetry.and_then(|p| p.get("scripts")),
        ]
        .into_iter()
        .flatten()
        {
            if let Some(t) = scripts.as_table() {
                for (k, v) in t {
                    if let Some(v) = v.as_str() {
                        eco.scripts.insert(k.clone(), v.to_string());
                        eco.binaries.push(k.clone());
                    }
                }
            }
        }
        if text.contains("[tool.pytest") {
            dev_deps.push("pytest".into());
        }
        eco
    } else if let Some(text) = ctx.text("Pipfile") {
        let manifest = ctx.path("Pipfile");
        evidence.push(ev(&manifest, "Pipfile"));
        let mut eco = Ecosystem::new(EcosystemKind::Pipenv, manifest);
        if ctx.has("Pipfile.lock") {
            eco.lockfile = Some(ctx.path("Pipfile.lock"));
            evidence.push(ev(ctx.path("Pipfile.lock"), "Pipenv lockfile"));
        }
        if let Ok(doc) = toml::from_str::<toml::Value>(text) {
            if let Some(t) = doc.get("packages").and_then(|p| p.as_table()) {
                eco.dependencies.extend(t.keys().map(|k| normalise(k)));
            }
            if let Some(t) = doc.get("dev-packages").and_then(|p| p.as_table()) {
                dev_deps.extend(t.keys().map(|k| normalise(k)));
            }
        }
        eco
    } else if let Some(text) = ctx.text("setup.py") {
        let manifest = ctx.path("setup.py");
        evidence.push(ev(&manifest, "setuptools setup script"));
        let mut eco = Ecosystem::new(EcosystemKind::PythonPackage, manifest);
        eco.backend = Some("setuptools".into());
        eco.package = between(text, "name=\"", "\"")
            .or_else(|| between(text, "name='", "'"))
            .map(String::from);
        eco.version = between(text, "version=\"", "\"")
            .or_else(|| between(text, "version='", "'"))
            .map(String::from);
        if let Some(list) = between(text, "install_requires=[", "]") {
            eco.dependencies.extend(
                list.split(',')
                    .map(|s| s.trim().trim_matches(|c| c == '"' || c == '\''))
                    .filter_map(requirement_name),
            );
        }
        eco
    } else if let Some(first) = requirements.first() {
        let manifest = ctx.path(first);
        evidence.push(ev(&manifest, "pip requirements"));
        Ecosystem::new(EcosystemKind::Pip, manifest)
    } else {
        return;
    };
    for req in &requirements {
        if let Some(text) = ctx.text(req) {
            let names = requirements_file(text);
            if *req == "requirements.txt" {
                if eco.ecosystem == EcosystemKind::Pip {
                    eco.dependencies.extend(names);
                } else if !names.is_empty() {
                    evidence.push(ev(
                        ctx.path(req),
                        "requirements alongside the package manifest",
                    ));
                }
            } else {
                dev_deps.extend(names);
                evidence.push(ev(ctx.path(req), "development requirements"));
            }
        }
    }
    eco.dependencies.sort();
    eco.dependencies.dedup();
    eco.binaries.sort();
    eco.binaries.dedup();
    let what = format!(
        "{}{}",
        eco.ecosystem.name(),
        eco.package
            .as_deref()
            .map(|p| format!(" package {p}"))
            .unwrap_or_default()
    );
    let django = eco.dependencies.iter().any(|d| d == "django") && ctx.has("manage.py");
    let pytest = dev_deps
        .iter()
        .chain(&eco.dependencies)
        .any(|d| d == "pytest")
        || ctx
            .find(|p| p.starts_with("tests/") || p.starts_with("test/"))
            .next()
            .is_some();
    let manifest = eco.manifest.clone();
    out.add(what, confidence::CERTAIN, evidence, Facts::Ecosystem(eco));
    if django {
        out.add(
            "python manage.py test",
            confidence::MEDIUM,
            vec![ev(
                ctx.path("manage.py"),
                "Django projects test with manage.py test",
            )],
            Facts::Test(TestCommand {
                command: "python manage.py test".into(),
                source: TestSource::Convention,
            }),
        );
    } else if pytest {
        let text = ctx.inv.text(&manifest).unwrap_or_default();
        out.add(
            "pytest",
            confidence::MEDIUM,
            vec![ev_line(
                &manifest,
                line_of(text, "pytest"),
                "pytest is a dependency or tests/ exists",
            )],
            Facts::Test(TestCommand {
                command: "pytest".into(),
                source: TestSource::Convention,
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirement_names() {
        let cases = [
            ("Flask[async]>=2.0; python_version > '3'", Some("flask")),
            ("python_dateutil==2.8", Some("python-dateutil")),
            ("zope.interface", Some("zope-interface")),
            ("-r base.txt", None),
            ("# comment", None),
            ("git+https://example.org/x.git", None),
        ];
        for (req, want) in cases {
            assert_eq!(requirement_name(req).as_deref(), want, "{req}");
        }
    }
}
