//! PHP projects managed with Composer.

use serde_json::Value;

use crate::detect::{ev, ev_line, line_of, parse_failure, Ctx, Out};
use crate::model::{confidence, Ecosystem, EcosystemKind, Facts, TestCommand, TestSource};

pub fn detect(ctx: &Ctx<'_>, out: &mut Out) {
    let Some(text) = ctx.text("composer.json") else {
        return;
    };
    let manifest = ctx.path("composer.json");
    let mut eco = Ecosystem::new(EcosystemKind::Composer, manifest.clone());
    let mut evidence = vec![ev(&manifest, "Composer manifest")];
    if ctx.has("composer.lock") {
        eco.lockfile = Some(ctx.path("composer.lock"));
        evidence.push(ev(ctx.path("composer.lock"), "Composer lockfile"));
    } else {
        out.warn(
            format!("{manifest} has no composer.lock; the Nix build needs one (run `composer update --lock`)"),
            vec![ev(&manifest, "no lockfile")],
        );
    }
    let json: Value = serde_json::from_str(text).unwrap_or_else(|e| {
        out.warn(
            parse_failure(ctx.inv, &manifest, "JSON", e),
            vec![ev(&manifest, "invalid JSON")],
        );
        Value::Null
    });
    eco.package = json
        .get("name")
        .and_then(Value::as_str)
        .map(|n| n.rsplit('/').next().unwrap_or(n).to_string());
    eco.version = json
        .get("version")
        .and_then(Value::as_str)
        .map(String::from);
    let mut dev = Vec::new();
    for (table, into) in [("require", false), ("require-dev", true)] {
        if let Some(o) = json.get(table).and_then(Value::as_object) {
            for k in o.keys().filter(|k| *k != "php" && !k.starts_with("ext-")) {
                if into {
                    dev.push(k.clone());
                } else {
                    eco.dependencies.push(k.clone());
                }
            }
        }
    }
    eco.dependencies.sort();
    if let Some(o) = json.get("scripts").and_then(Value::as_object) {
        for (k, v) in o {
            let v = match v {
                Value::String(s) => s.clone(),
                Value::Array(a) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" && "),
                _ => continue,
            };
            eco.scripts.insert(k.clone(), v);
        }
    }
    let has_test_script = eco.scripts.contains_key("test");
    out.add(
        format!(
            "Composer package {}",
            eco.package.as_deref().unwrap_or("(unnamed)")
        ),
        confidence::CERTAIN,
        evidence,
        Facts::Ecosystem(eco),
    );
    if has_test_script {
        out.add(
            "composer test",
            confidence::HIGH,
            vec![ev_line(
                &manifest,
                line_of(text, "\"test\""),
                "scripts.test",
            )],
            Facts::Test(TestCommand {
                command: "composer test".into(),
                source: TestSource::PackageJson,
            }),
        );
    } else if dev.iter().any(|d| d == "phpunit/phpunit") {
        out.add(
            "vendor/bin/phpunit",
            confidence::MEDIUM,
            vec![ev_line(
                &manifest,
                line_of(text, "phpunit/phpunit"),
                "phpunit is a dev dependency",
            )],
            Facts::Test(TestCommand {
                command: "vendor/bin/phpunit".into(),
                source: TestSource::Convention,
            }),
        );
    }
}
