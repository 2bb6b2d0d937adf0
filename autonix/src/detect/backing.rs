//! Backing services (databases, caches) found outside a root compose file: a driver among
//! the dependencies (`pg`, `redis`, `sidekiq`, `psycopg`), a connection variable in an
//! example env file (`POSTGRES_URL`, `REDIS_URL`), or a CI job's `services:`. Compose files
//! found them only under their standard service names.

use yaml_rust2::{Yaml, YamlLoader};

use crate::detect::containers::nixos_service;
use crate::detect::frameworks::dependency_line;
use crate::detect::{ev_line, line_of, Ctx, Out};
use crate::model::{confidence, Evidence, Facts, Service};

/// Driver packages and the image whose NixOS service they need.
const DRIVERS: &[(&str, &str)] = &[
    // PostgreSQL
    ("pg", "postgres"),
    ("postgres", "postgres"),
    ("pg-promise", "postgres"),
    ("psycopg", "postgres"),
    ("psycopg2", "postgres"),
    ("psycopg2-binary", "postgres"),
    ("asyncpg", "postgres"),
    ("github.com/lib/pq", "postgres"),
    ("github.com/jackc/pgx/v4", "postgres"),
    ("github.com/jackc/pgx/v5", "postgres"),
    ("tokio-postgres", "postgres"),
    ("postgrex", "postgres"),
    // Redis
    ("redis", "redis"),
    ("ioredis", "redis"),
    ("sidekiq", "redis"),
    ("bullmq", "redis"),
    ("github.com/redis/go-redis/v9", "redis"),
    ("github.com/go-redis/redis/v8", "redis"),
    ("redix", "redis"),
    // MySQL
    ("mysql2", "mysql"),
    ("mysql", "mysql"),
    ("trilogy", "mysql"),
    ("mysqlclient", "mysql"),
    ("pymysql", "mysql"),
    ("github.com/go-sql-driver/mysql", "mysql"),
    ("mysql_async", "mysql"),
    ("myxql", "mysql"),
    // MongoDB
    ("mongodb", "mongo"),
    ("mongoose", "mongo"),
    ("mongoid", "mongo"),
    ("pymongo", "mongo"),
    ("motor", "mongo"),
    ("go.mongodb.org/mongo-driver", "mongo"),
];

/// Connection variables in example env files and the image they point at.
const ENV_NAMES: &[(&str, &str)] = &[
    ("POSTGRES_URL", "postgres"),
    ("POSTGRES_HOST", "postgres"),
    ("POSTGRES_PRISMA_URL", "postgres"),
    ("PGHOST", "postgres"),
    ("REDIS_URL", "redis"),
    ("REDIS_HOST", "redis"),
    ("MYSQL_HOST", "mysql"),
    ("MYSQL_URL", "mysql"),
    ("MONGODB_URI", "mongo"),
    ("MONGO_URL", "mongo"),
];

/// Example env files: committed templates of the environment the app expects.
pub const ENV_FILES: &[&str] = &[
    ".env.example",
    ".env.sample",
    ".env.template",
    "example.env",
];

pub fn detect(ctx: &Ctx<'_>, out: &mut Out) {
    spring_default_h2(ctx, out);
    // CI images first: they carry the version; drivers and env names only say which kind.
    let mut found: Vec<(String, Option<String>, Evidence)> = Vec::new();
    if ctx.dir.is_empty() {
        ci_services(ctx, &mut found);
    }
    let ecosystems: Vec<_> = out
        .detections
        .iter()
        .filter_map(|d| match &d.facts {
            Facts::Ecosystem(e) => Some(e.clone()),
            _ => None,
        })
        .collect();
    for eco in &ecosystems {
        for (dep, image) in DRIVERS {
            if eco.dependencies.iter().any(|d| d == dep) {
                let text = ctx.inv.text(&eco.manifest).unwrap_or_default();
                found.push((
                    (*image).to_string(),
                    None,
                    ev_line(
                        &eco.manifest,
                        dependency_line(text, dep),
                        format!("depends on the {dep} driver"),
                    ),
                ));
            }
        }
    }
    for file in ENV_FILES {
        let Some(text) = ctx.text(file) else { continue };
        for (i, line) in text.lines().enumerate() {
            let line = line.trim().trim_start_matches("export ");
            let Some((name, value)) = line.split_once('=') else {
                continue;
            };
            let name = name.trim();
            let image = ENV_NAMES
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, i)| *i)
                .or_else(|| {
                    let value = value.trim().trim_matches(['"', '\'']);
                    (name == "DATABASE_URL")
                        .then(|| {
                            [
                                ("postgres", "postgres"),
                                ("mysql", "mysql"),
                                ("mongodb", "mongo"),
                            ]
                            .into_iter()
                            .find(|(scheme, _)| value.starts_with(scheme))
                            .map(|(_, i)| i)
                        })
                        .flatten()
                });
            if let Some(image) = image {
                found.push((
                    image.to_string(),
                    None,
                    ev_line(
                        ctx.path(file),
                        u32::try_from(i + 1).ok(),
                        format!("{name} names a connection"),
                    ),
                ));
            }
        }
    }
    for (image_name, image, evidence) in found {
        let Some(nixos) = nixos_service(image.as_deref().unwrap_or(&image_name)) else {
            continue;
        };
        let known = out.has(|f| {
            matches!(f, Facts::Service(s) if s.nixos.as_ref().is_some_and(|n| n.module == nixos.module))
        });
        if known {
            continue;
        }
        let name = nixos
            .package
            .trim_end_matches(|c: char| c.is_ascii_digit() || c == '_');
        out.add(
            format!("{name} ({}) → NixOS {}", evidence.reason, nixos.module),
            confidence::MEDIUM,
            vec![evidence],
            Facts::Service(Service {
                name: name.to_string(),
                image,
                build: None,
                ports: vec![nixos.port],
                depends_on: Vec::new(),
                nixos: Some(nixos),
            }),
        );
    }
}

/// Images of CI job services: GitHub Actions `jobs.<id>.services.<name>.image` and GitLab's
/// `services:` list.
fn ci_services(ctx: &Ctx<'_>, found: &mut Vec<(String, Option<String>, Evidence)>) {
    let mut push = |path: &str, text: &str, image: &str| {
        let name = image.split([':', '@']).next().unwrap_or(image);
        let name = name.rsplit('/').next().unwrap_or(name).to_string();
        found.push((
            name,
            Some(image.to_string()),
            ev_line(path, line_of(text, image), format!("CI service {image}")),
        ));
    };
    for (path, text) in ctx
        .inv
        .texts
        .range(".github/workflows/".to_string()..)
        .take_while(|(p, _)| p.starts_with(".github/workflows/"))
    {
        let Ok(docs) = YamlLoader::load_from_str(text) else {
            continue;
        };
        let Some(jobs) = docs.first().and_then(|d| d["jobs"].as_hash()) else {
            continue;
        };
        for job in jobs.values() {
            if let Some(services) = job["services"].as_hash() {
                for svc in services.values() {
                    let image = match svc {
                        Yaml::String(s) => Some(s.as_str()),
                        _ => svc["image"].as_str(),
                    };
                    if let Some(image) = image {
                        push(path, text, image);
                    }
                }
            }
        }
    }
    if let Some(text) = ctx.inv.text(".gitlab-ci.yml") {
        if let Ok(docs) = YamlLoader::load_from_str(text) {
            if let Some(doc) = docs.first().and_then(Yaml::as_hash) {
                for value in doc.values() {
                    for svc in value["services"].as_vec().into_iter().flatten() {
                        let image = match svc {
                            Yaml::String(s) => Some(s.as_str()),
                            _ => svc["name"].as_str(),
                        };
                        if let Some(image) = image {
                            push(".gitlab-ci.yml", text, image);
                        }
                    }
                }
                for svc in doc
                    .get(&Yaml::String("services".into()))
                    .and_then(Yaml::as_vec)
                    .into_iter()
                    .flatten()
                {
                    if let Some(image) = svc.as_str() {
                        push(".gitlab-ci.yml", text, image);
                    }
                }
            }
        }
    }
}

/// A Spring app whose default profile uses the embedded H2 database needs no database
/// service: the PostgreSQL and MySQL of its compose file serve other profiles. Those are
/// dropped with a warning instead of all becoming NixOS services.
fn spring_default_h2(ctx: &Ctx<'_>, out: &mut Out) {
    let is_spring = out.has(|f| {
        matches!(
            f,
            Facts::Framework {
                framework: crate::model::Framework::SpringBoot,
                ..
            }
        )
    });
    if !is_spring {
        return;
    }
    let config = [
        "src/main/resources/application.properties",
        "src/main/resources/application.yml",
        "src/main/resources/application.yaml",
    ]
    .iter()
    .find_map(|f| ctx.text(f).map(|t| (ctx.path(f), t)));
    let url = config.as_ref().and_then(|(path, text)| {
        text.lines()
            .enumerate()
            .find(|(_, l)| l.contains("jdbc:") && !l.trim_start().starts_with('#'))
            .map(|(i, l)| {
                (
                    path.clone(),
                    u32::try_from(i + 1).ok(),
                    l.trim().to_string(),
                )
            })
    });
    let build_files = ["pom.xml", "build.gradle", "build.gradle.kts"];
    let h2_dependency = build_files
        .iter()
        .find(|f| ctx.text(f).is_some_and(|t| t.contains("com.h2database")));
    let evidence = match (&url, h2_dependency) {
        (Some((path, line, l)), _) if l.contains("jdbc:h2") => {
            ev_line(path, *line, "the default datasource is H2")
        }
        (None, Some(build)) => ev_line(
            ctx.path(build),
            ctx.text(build).and_then(|t| line_of(t, "com.h2database")),
            "H2 is on the classpath and no datasource URL is configured, so Spring uses it",
        ),
        _ => return,
    };
    let databases: Vec<String> = out
        .detections
        .iter()
        .filter_map(|d| match &d.facts {
            Facts::Service(s)
                if s.nixos.as_ref().is_some_and(|n| {
                    n.module == "services.postgresql" || n.module == "services.mysql"
                }) =>
            {
                Some(s.image.clone().unwrap_or_else(|| s.name.clone()))
            }
            _ => None,
        })
        .collect();
    if databases.is_empty() {
        return;
    }
    out.detections.retain(|d| {
        !matches!(&d.facts, Facts::Service(s) if s.nixos.as_ref().is_some_and(|n| {
            n.module == "services.postgresql" || n.module == "services.mysql"
        }))
    });
    out.warn(
        format!(
            "{} serve other Spring profiles: the default one uses the embedded H2 database ({}:{}), so no database service is generated; add the one your profile uses",
            databases.join(" and "),
            evidence.file,
            evidence.line.unwrap_or(0)
        ),
        vec![evidence],
    );
}
