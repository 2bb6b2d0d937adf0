//! Elixir projects built with Mix, umbrella projects included.

use crate::detect::toolchains::between;
use crate::detect::{ev, ev_line, line_of, Ctx, Out};
use crate::model::{confidence, Ecosystem, EcosystemKind, Facts, TestCommand, TestSource};

pub fn detect(ctx: &Ctx<'_>, out: &mut Out) {
    let Some(text) = ctx.text("mix.exs") else {
        return;
    };
    let manifest = ctx.path("mix.exs");
    let mut eco = Ecosystem::new(EcosystemKind::Mix, manifest.clone());
    let mut evidence = vec![ev(&manifest, "Mix project")];
    if ctx.has("mix.lock") {
        eco.lockfile = Some(ctx.path("mix.lock"));
        evidence.push(ev(ctx.path("mix.lock"), "Mix lockfile"));
    }
    eco.package = between(text, "app: :", ",")
        .or_else(|| between(text, "app: :", "\n"))
        .map(|s| s.trim().to_string());
    eco.version = between(text, "version: \"", "\"").map(String::from);
    if let Some(apps) = between(text, "apps_path: \"", "\"") {
        let prefix = format!("{apps}/");
        let mut members: Vec<String> = ctx
            .find(|p| {
                p.strip_prefix(&prefix)
                    .and_then(|r| r.strip_suffix("/mix.exs"))
                    .is_some_and(|n| !n.contains('/'))
            })
            .map(|f| ctx.local(&f.path).trim_end_matches("/mix.exs").to_string())
            .collect();
        members.sort();
        evidence.push(ev_line(
            &manifest,
            line_of(text, "apps_path"),
            "umbrella project",
        ));
        eco.members = members;
    }
    // Dependencies look like `{:phoenix, "~> 1.7"}`, here and in umbrella apps.
    let mut sources = vec![text];
    for m in &eco.members {
        if let Some(t) = ctx.text(&format!("{m}/mix.exs")) {
            sources.push(t);
        }
    }
    for src in sources {
        for piece in src.split("{:").skip(1) {
            let name: String = piece
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && piece[name.len()..].trim_start().starts_with(',') {
                eco.dependencies.push(name);
            }
        }
    }
    eco.dependencies.sort();
    eco.dependencies.dedup();
    out.add(
        format!(
            "Mix project {}",
            eco.package.as_deref().unwrap_or("(unnamed)")
        ),
        confidence::CERTAIN,
        evidence,
        Facts::Ecosystem(eco),
    );
    out.add(
        "mix test",
        confidence::MEDIUM,
        vec![ev(&manifest, "Mix projects test with `mix test`")],
        Facts::Test(TestCommand {
            command: "mix test".into(),
            source: TestSource::Convention,
        }),
    );
}
