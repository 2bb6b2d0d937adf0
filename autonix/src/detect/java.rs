//! Java and Kotlin projects built with Maven or Gradle.

use crate::detect::toolchains::between;
use crate::detect::{ev, ev_line, line_of, Ctx, Out};
use crate::model::{confidence, Ecosystem, EcosystemKind, Facts, TestCommand, TestSource};

/// Text of every `<tag>` element in order.
fn all_tags<'t>(text: &'t str, tag: &str) -> Vec<&'t str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        out.push(after[..end].trim());
        rest = &after[end + close.len()..];
    }
    out
}

/// `text` without the `<parent>` element, whose artifactId is not the project's.
fn without_parent(text: &str) -> String {
    match (text.find("<parent>"), text.find("</parent>")) {
        (Some(a), Some(b)) if b > a => format!("{}{}", &text[..a], &text[b + "</parent>".len()..]),
        _ => text.to_string(),
    }
}

pub fn detect(ctx: &Ctx<'_>, out: &mut Out) {
    if let Some(text) = ctx.text("pom.xml") {
        let manifest = ctx.path("pom.xml");
        let mut eco = Ecosystem::new(EcosystemKind::Maven, manifest.clone());
        let own = without_parent(text);
        eco.package = all_tags(&own, "artifactId").first().map(|s| s.to_string());
        eco.version = all_tags(&own, "version").first().map(|s| s.to_string());
        eco.members = all_tags(text, "module")
            .into_iter()
            .map(String::from)
            .collect();
        let mut deps: Vec<String> = all_tags(&own, "artifactId")
            .into_iter()
            .skip(1)
            .map(String::from)
            .collect();
        if text.contains("spring-boot") {
            deps.push("spring-boot".into());
        }
        deps.sort();
        deps.dedup();
        eco.dependencies = deps;
        let wrapper = ctx.has("mvnw");
        out.add(
            format!(
                "Maven project {}",
                eco.package.as_deref().unwrap_or("(unnamed)")
            ),
            confidence::CERTAIN,
            vec![ev(&manifest, "Maven POM")],
            Facts::Ecosystem(eco),
        );
        let command = if wrapper { "./mvnw test" } else { "mvn test" };
        out.add(
            command,
            confidence::MEDIUM,
            vec![ev(&manifest, "Maven runs tests in its `test` phase")],
            Facts::Test(TestCommand {
                command: command.into(),
                source: TestSource::Convention,
            }),
        );
        if let Some(gradle) = ["build.gradle.kts", "build.gradle"]
            .into_iter()
            .find(|f| ctx.has(f))
        {
            out.warn(
                format!(
                    "{manifest} and {} both build this project; the flake builds with Maven, so check which one CI and releases use",
                    ctx.path(gradle)
                ),
                vec![ev(&manifest, "Maven POM"), ev(ctx.path(gradle), "Gradle build script")],
            );
        }
        return;
    }
    let build = ["build.gradle.kts", "build.gradle"]
        .into_iter()
        .find(|f| ctx.has(f));
    let settings = ["settings.gradle.kts", "settings.gradle"]
        .into_iter()
        .find(|f| ctx.has(f));
    let Some(main) = build.or(settings) else {
        return;
    };
    let manifest = ctx.path(main);
    let mut eco = Ecosystem::new(EcosystemKind::Gradle, manifest.clone());
    let mut evidence = vec![ev(&manifest, "Gradle build script")];
    if let Some(s) = settings {
        let text = ctx.text(s).unwrap_or_default();
        eco.package = between(text, "rootProject.name = \"", "\"")
            .or_else(|| between(text, "rootProject.name = '", "'"))
            .map(String::from);
        for line in text
            .lines()
            .filter(|l| l.trim_start().starts_with("include"))
        {
            for piece in line.split(['"', '\'']).skip(1).step_by(2) {
                eco.members
                    .push(piece.trim_start_matches(':').replace(':', "/"));
            }
        }
        evidence.push(ev(ctx.path(s), "Gradle settings"));
    }
    let mut texts: Vec<&str> = build.and_then(|b| ctx.text(b)).into_iter().collect();
    for m in &eco.members {
        for f in ["build.gradle.kts", "build.gradle"] {
            if let Some(t) = ctx.text(&format!("{m}/{f}")) {
                texts.push(t);
            }
        }
    }
    if texts.iter().any(|t| t.contains("org.springframework.boot")) {
        eco.dependencies.push("spring-boot".into());
    }
    if texts.iter().any(|t| t.contains("application")) {
        eco.backend = Some("application".into());
    }
    let wrapper = ctx.has("gradlew");
    out.add(
        format!(
            "Gradle project {}",
            eco.package.as_deref().unwrap_or("(unnamed)")
        ),
        confidence::CERTAIN,
        evidence,
        Facts::Ecosystem(eco),
    );
    let command = if wrapper {
        "./gradlew test"
    } else {
        "gradle test"
    };
    let text = build.and_then(|b| ctx.text(b)).unwrap_or_default();
    out.add(
        command,
        confidence::MEDIUM,
        vec![ev_line(
            &manifest,
            line_of(text, "test"),
            "Gradle's java plugin defines `test`",
        )],
        Facts::Test(TestCommand {
            command: command.into(),
            source: TestSource::Convention,
        }),
    );
}
