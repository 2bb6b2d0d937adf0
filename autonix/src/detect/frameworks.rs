//! Web frameworks, recognised by their dependency, and how each is started when nothing
//! else (Procfile, Dockerfile, `npm start`) says so.

use crate::detect::{ev, ev_line, line_of, Ctx, Out};
use crate::model::{confidence, EcosystemKind, Facts, Framework, Process, ProcessSource};

/// (ecosystem family test, dependency name, framework, default port)
type Rule = (
    fn(EcosystemKind) -> bool,
    &'static str,
    Framework,
    Option<u16>,
);

const RULES: &[Rule] = &[
    (
        EcosystemKind::is_python,
        "django",
        Framework::Django,
        Some(8000),
    ),
    (
        EcosystemKind::is_python,
        "fastapi",
        Framework::Fastapi,
        Some(8000),
    ),
    (
        EcosystemKind::is_python,
        "flask",
        Framework::Flask,
        Some(5000),
    ),
    (
        EcosystemKind::is_node,
        "next",
        Framework::Nextjs,
        Some(3000),
    ),
    (
        EcosystemKind::is_node,
        "@nestjs/core",
        Framework::Nestjs,
        Some(3000),
    ),
    (
        EcosystemKind::is_node,
        "express",
        Framework::Express,
        Some(3000),
    ),
    (
        EcosystemKind::is_node,
        "fastify",
        Framework::Fastify,
        Some(3000),
    ),
    (is_bundler, "rails", Framework::Rails, Some(3000)),
    (is_bundler, "sinatra", Framework::Sinatra, Some(4567)),
    (is_mix, "phoenix", Framework::Phoenix, Some(4000)),
    (
        is_composer,
        "laravel/framework",
        Framework::Laravel,
        Some(8000),
    ),
    (
        is_composer,
        "symfony/framework-bundle",
        Framework::Symfony,
        Some(8000),
    ),
    (is_cargo, "axum", Framework::Axum, None),
    (is_cargo, "actix-web", Framework::ActixWeb, None),
    (is_cargo, "rocket", Framework::Rocket, Some(8000)),
    (
        is_go,
        "github.com/gin-gonic/gin",
        Framework::Gin,
        Some(8080),
    ),
    (is_go, "github.com/labstack/echo/v4", Framework::Echo, None),
    (
        is_go,
        "github.com/gofiber/fiber/v2",
        Framework::Fiber,
        Some(3000),
    ),
    (is_jvm, "spring-boot", Framework::SpringBoot, Some(8080)),
];

fn is_bundler(k: EcosystemKind) -> bool {
    k == EcosystemKind::Bundler
}
fn is_mix(k: EcosystemKind) -> bool {
    k == EcosystemKind::Mix
}
fn is_composer(k: EcosystemKind) -> bool {
    k == EcosystemKind::Composer
}
fn is_cargo(k: EcosystemKind) -> bool {
    k == EcosystemKind::Cargo
}
fn is_go(k: EcosystemKind) -> bool {
    k == EcosystemKind::Go
}
fn is_jvm(k: EcosystemKind) -> bool {
    matches!(k, EcosystemKind::Maven | EcosystemKind::Gradle)
}

pub fn detect(ctx: &Ctx<'_>, out: &mut Out) {
    let ecosystems: Vec<_> = out
        .detections
        .iter()
        .filter_map(|d| match &d.facts {
            Facts::Ecosystem(e) => Some(e.clone()),
            _ => None,
        })
        .collect();
    let mut found = Vec::new();
    for eco in &ecosystems {
        for (family, dep, framework, port) in RULES {
            if !family(eco.ecosystem) || !eco.dependencies.iter().any(|d| d == dep) {
                continue;
            }
            if found.iter().any(|(f, _)| f == framework) {
                continue;
            }
            let text = ctx.inv.text(&eco.manifest).unwrap_or_default();
            out.add(
                framework.name(),
                confidence::HIGH,
                vec![ev_line(
                    &eco.manifest,
                    dependency_line(text, dep).or_else(|| line_of(text, dep)),
                    format!("depends on {dep}"),
                )],
                Facts::Framework {
                    framework: *framework,
                    default_port: *port,
                },
            );
            found.push((*framework, eco.dependencies.clone()));
        }
    }
    if out.has(|f| matches!(f, Facts::Process(_))) {
        return;
    }
    if ctx.workspace.is_some() {
        // A workspace member serves through its `start` script, run from the workspace.
        if let (Some((framework, _)), Some(eco)) = (
            found.first(),
            ecosystems.iter().find(|e| e.ecosystem.is_node()),
        ) {
            out.warn(
                format!(
                    "{} is a {} app in a {} workspace but has no `start` script, so it is not deployed; add one to {} and the flake runs it from the workspace",
                    ctx.dir,
                    framework.name(),
                    eco.ecosystem.name(),
                    eco.manifest
                ),
                vec![ev(&eco.manifest, "no scripts.start")],
            );
        }
        return;
    }
    // Only the first framework decides the start command: Django with Flask installed is a
    // Django app.
    let Some((framework, deps)) = found.first() else {
        return;
    };
    let has = |d: &str| deps.iter().any(|x| x == d);
    let (command, file, reason) = match framework {
        Framework::Django => {
            let module = ctx
                .find(|p| p.ends_with("/wsgi.py") && p.matches('/').count() == 1)
                .next()
                .map(|f| ctx.local(&f.path).trim_end_matches("/wsgi.py").to_string());
            match module.filter(|_| has("gunicorn")) {
                Some(m) => (
                    format!("gunicorn {m}.wsgi:application --bind 0.0.0.0:8000"),
                    ctx.path(&format!("{m}/wsgi.py")),
                    "Django WSGI module served by gunicorn (a dependency)",
                ),
                None => (
                    "python manage.py runserver 0.0.0.0:8000".to_string(),
                    ctx.path("manage.py"),
                    "Django's development server: no gunicorn dependency",
                ),
            }
        }
        Framework::Flask | Framework::Fastapi => {
            let marker = if *framework == Framework::Flask {
                "Flask("
            } else {
                "FastAPI("
            };
            let Some(module) = ["app.py", "main.py", "wsgi.py", "asgi.py"]
                .into_iter()
                .find(|f| ctx.text(f).is_some_and(|t| t.contains(marker)))
            else {
                return;
            };
            let m = module.trim_end_matches(".py");
            let command = match framework {
                Framework::Flask if has("gunicorn") => {
                    format!("gunicorn --bind 0.0.0.0:5000 {m}:app")
                }
                Framework::Flask => format!("flask --app {m} run --host 0.0.0.0 --port 5000"),
                _ => format!("uvicorn {m}:app --host 0.0.0.0 --port 8000"),
            };
            (
                command,
                ctx.path(module),
                "the module creating the application object",
            )
        }
        Framework::Rails => (
            "bundle exec rails server -b 0.0.0.0 -p 3000".to_string(),
            ctx.path("Gemfile"),
            "Rails' server command",
        ),
        Framework::Sinatra if ctx.has("config.ru") => (
            "bundle exec rackup -o 0.0.0.0 -p 4567".to_string(),
            ctx.path("config.ru"),
            "a Rack application",
        ),
        Framework::Phoenix => (
            "mix phx.server".to_string(),
            ctx.path("mix.exs"),
            "Phoenix's server task",
        ),
        Framework::Laravel if ctx.has("artisan") => (
            "php artisan serve --host=0.0.0.0 --port=8000".to_string(),
            ctx.path("artisan"),
            "Laravel's artisan server",
        ),
        // spring-boot-maven-plugin repackages target/<artifactId>-<version>.jar into an
        // executable jar; the flake's package copies it to share/<name>.
        Framework::SpringBoot => {
            let Some(maven) = ecosystems
                .iter()
                .find(|e| e.ecosystem == EcosystemKind::Maven)
            else {
                return;
            };
            let pom = ctx.inv.text(&maven.manifest).unwrap_or_default();
            let (Some(artifact), Some(version)) = (&maven.package, &maven.version) else {
                return;
            };
            if !pom.contains("spring-boot-maven-plugin") {
                return;
            }
            (
                format!("java -jar {artifact}-{version}.jar"),
                maven.manifest.clone(),
                "Spring Boot's executable jar (spring-boot-maven-plugin)",
            )
        }
        _ => return,
    };
    out.add(
        command.clone(),
        confidence::MEDIUM,
        vec![ev(file, reason)],
        Facts::Process(Process {
            name: "web".into(),
            command,
            source: ProcessSource::Framework,
        }),
    );
}

/// The first line naming `dep` as a whole name: `flask` in `flask==3.0` but not in
/// `flask-cors`, `rails` in `gem "rails"` but not in `gem "sprockets-rails"`.
pub fn dependency_line(text: &str, dep: &str) -> Option<u32> {
    let name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/');
    text.lines()
        .position(|line| {
            line.match_indices(dep).any(|(at, _)| {
                let before = line[..at].chars().next_back();
                let after = line[at + dep.len()..].chars().next();
                !before.is_some_and(name_char) && !after.is_some_and(name_char)
            })
        })
        .and_then(|i| u32::try_from(i + 1).ok())
}

#[cfg(test)]
mod dependency_line_tests {
    use super::dependency_line;

    #[test]
    fn a_dependency_is_cited_at_its_own_line() {
        let gemfile = "gem \"sprockets-rails\"\ngem \"rails\", \"~> 7.1\"\n";
        assert_eq!(dependency_line(gemfile, "rails"), Some(2));
        let reqs = "flask-cors==4.0\nFlask-Login\nflask==3.0.0\n";
        assert_eq!(dependency_line(reqs, "flask"), Some(3));
        let gomod = "\tgithub.com/gin-gonic/gin v1.10.0\n";
        assert_eq!(dependency_line(gomod, "github.com/gin-gonic/gin"), Some(1));
    }
}
