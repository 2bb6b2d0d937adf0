//! Ruby projects managed with Bundler.

use crate::detect::{ev, Ctx, Out};
use crate::model::{confidence, Ecosystem, EcosystemKind, Facts, TestCommand, TestSource};

/// Gem names from `gem "name"` lines.
fn gems(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let rest = l.trim_start().strip_prefix("gem ")?;
            let rest = rest.trim_start();
            let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
            let rest = &rest[1..];
            Some(rest[..rest.find(quote)?].to_string())
        })
        .collect()
}

pub fn detect(ctx: &Ctx<'_>, out: &mut Out) {
    let Some(text) = ctx.text("Gemfile") else {
        return;
    };
    let manifest = ctx.path("Gemfile");
    let mut eco = Ecosystem::new(EcosystemKind::Bundler, manifest.clone());
    let mut evidence = vec![ev(&manifest, "Gemfile")];
    if ctx.has("Gemfile.lock") {
        eco.lockfile = Some(ctx.path("Gemfile.lock"));
        evidence.push(ev(ctx.path("Gemfile.lock"), "Bundler lockfile"));
    } else {
        out.warn(
            format!("{manifest} has no Gemfile.lock; bundlerEnv needs one (run `bundle lock`)"),
            vec![ev(&manifest, "no lockfile")],
        );
    }
    let mut deps = gems(text);
    deps.sort();
    deps.dedup();
    eco.dependencies = deps;
    eco.package = ctx
        .find(|p| p.ends_with(".gemspec") && !p.contains('/'))
        .next()
        .map(|f| ctx.local(&f.path).trim_end_matches(".gemspec").to_string());
    let rspec = eco.dependencies.iter().any(|d| d.starts_with("rspec"));
    let rails = eco.dependencies.iter().any(|d| d == "rails");
    out.add(
        "Bundler",
        confidence::CERTAIN,
        evidence,
        Facts::Ecosystem(eco),
    );
    let test = if rspec {
        Some(("bundle exec rspec", "rspec is in the Gemfile"))
    } else if rails {
        Some((
            "bundle exec rails test",
            "Rails projects test with `rails test`",
        ))
    } else if ctx.has("Rakefile") {
        Some((
            "bundle exec rake test",
            "a Rakefile conventionally defines `test`",
        ))
    } else {
        None
    };
    if let Some((command, reason)) = test {
        out.add(
            command,
            confidence::MEDIUM,
            vec![ev(&manifest, reason)],
            Facts::Test(TestCommand {
                command: command.into(),
                source: TestSource::Convention,
            }),
        );
    }
}
