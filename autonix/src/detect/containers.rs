//! Dockerfiles, docker-compose files and Procfiles: how the project runs today.

use yaml_rust2::{Yaml, YamlLoader};

use crate::detect::{ev, ev_line, line_of, parse_failure, Ctx, Out};
use crate::model::{confidence, Container, Facts, NixosService, Process, ProcessSource, Service};

/// Dockerfile instructions as (first line, KEYWORD, arguments), continuations joined.
fn instructions(text: &str) -> Vec<(u32, String, String)> {
    let mut out = Vec::new();
    let mut current: Option<(u32, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line_no = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let trimmed = raw.trim();
        if current.is_none() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if current.is_some() && trimmed.starts_with('#') {
            continue;
        }
        let (start, mut acc) = current.take().unwrap_or((line_no, String::new()));
        if let Some(body) = trimmed.strip_suffix('\\') {
            acc.push_str(body);
            acc.push(' ');
            current = Some((start, acc));
            continue;
        }
        acc.push_str(trimmed);
        let (keyword, args) = acc.split_once(char::is_whitespace).unwrap_or((&acc, ""));
        out.push((start, keyword.to_ascii_uppercase(), args.trim().to_string()));
    }
    out
}

/// `FROM` images with their lines; stage aliases (`FROM build AS run`) are resolved away.
pub fn from_lines(text: &str) -> Vec<(u32, String)> {
    let mut stages: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for (line, keyword, args) in instructions(text) {
        if keyword != "FROM" {
            continue;
        }
        let mut words = args.split_whitespace().filter(|w| !w.starts_with("--"));
        let Some(image) = words.next() else { continue };
        if let (Some(as_kw), Some(alias)) = (words.next(), words.next()) {
            if as_kw.eq_ignore_ascii_case("as") {
                stages.push(alias.to_string());
            }
        }
        if !stages.iter().any(|s| s == image) {
            out.push((line, image.to_string()));
        }
    }
    out
}

/// `["a", "b"]` exec form or shell form, as one shell command line.
fn command_line(args: &str) -> String {
    let args = args.trim();
    if args.starts_with('[') {
        if let Ok(list) = serde_json::from_str::<Vec<String>>(args) {
            return list
                .iter()
                .map(|a| {
                    if a.is_empty() || a.contains(char::is_whitespace) {
                        format!("'{a}'")
                    } else {
                        a.clone()
                    }
                })
                .collect::<Vec<_>>()
                .join(" ");
        }
    }
    args.to_string()
}

/// Lines of the final stage's instructions, so evidence points at the stage that runs and
/// not at a build or dev stage's `CMD`.
#[derive(Default)]
struct FinalLines {
    command: Option<u32>,
    expose: Option<u32>,
}

fn parse_dockerfile(path: &str, text: &str) -> (Container, FinalLines) {
    let mut container = Container {
        file: path.to_string(),
        base_images: Vec::new(),
        exposed_ports: Vec::new(),
        command: None,
        workdir: None,
    };
    let mut lines = FinalLines::default();
    let mut entrypoint = None;
    let mut cmd = None;
    for (line, keyword, args) in instructions(text) {
        match keyword.as_str() {
            "FROM" => {
                if let Some(image) = args.split_whitespace().find(|w| !w.starts_with("--")) {
                    container.base_images.push(image.to_string());
                }
                // A new stage starts afresh.
                container.exposed_ports.clear();
                entrypoint = None;
                cmd = None;
                container.workdir = None;
                lines = FinalLines::default();
            }
            "EXPOSE" => {
                for p in args.split_whitespace() {
                    if let Ok(port) = p.split('/').next().unwrap_or(p).parse::<u16>() {
                        container.exposed_ports.push(port);
                    }
                }
                lines.expose.get_or_insert(line);
            }
            "CMD" => {
                cmd = Some(command_line(&args));
                lines.command = Some(line);
            }
            "ENTRYPOINT" => {
                entrypoint = Some(command_line(&args));
                lines.command.get_or_insert(line);
            }
            "WORKDIR" => container.workdir = Some(args.clone()),
            _ => {}
        }
    }
    container.command = match (entrypoint, cmd) {
        (Some(e), Some(c)) => Some(format!("{e} {c}")),
        (Some(e), None) => Some(e),
        (None, c) => c,
    };
    (container, lines)
}

/// Init wrappers that only exist to reap zombies inside a container.
const INIT_WRAPPERS: &[&str] = &["tini", "dumb-init", "catatonit"];

/// A container's command as it would run from the sources: init wrappers and the image's
/// entrypoint script dropped, paths under `WORKDIR` made relative. `Err` names the part
/// that exists only inside the image (or says the command is just a shell).
fn host_command(command: &str, workdir: Option<&str>) -> Result<(String, Vec<String>), String> {
    let mut words: Vec<&str> = command.split_whitespace().collect();
    let mut dropped = Vec::new();
    loop {
        let Some(first) = words.first().copied() else {
            return Err("it is empty once the container's wrappers are left out".into());
        };
        let base = first.rsplit('/').next().unwrap_or(first);
        if INIT_WRAPPERS.contains(&base) {
            dropped.push(first.to_string());
            words.remove(0);
            while words.first().is_some_and(|w| w.starts_with('-')) {
                words.remove(0);
            }
            continue;
        }
        if base.contains("docker-entrypoint") || base == "entrypoint.sh" {
            dropped.push(first.to_string());
            words.remove(0);
            continue;
        }
        break;
    }
    let first = words[0];
    let base = first.rsplit('/').next().unwrap_or(first);
    if words.len() == 1 && matches!(base, "sh" | "bash" | "ash" | "zsh") {
        return Err(format!(
            "`{first}` only opens a shell: the image is a build or tool image"
        ));
    }
    let mut rest: Vec<String> = words.iter().map(|w| (*w).to_string()).collect();
    if first.starts_with('/') {
        let under_workdir = workdir
            .map(|w| w.trim_end_matches('/'))
            .filter(|w| w.starts_with('/') && w.len() > 1)
            .and_then(|w| first.strip_prefix(w))
            .and_then(|r| r.strip_prefix('/'));
        let system = [
            "/bin/",
            "/usr/bin/",
            "/usr/local/bin/",
            "/sbin/",
            "/usr/sbin/",
        ]
        .iter()
        .any(|d| first.starts_with(d));
        match under_workdir {
            Some(rel) => rest[0] = format!("./{rel}"),
            None if system => rest[0] = base.to_string(),
            None => return Err(format!("`{first}` exists only inside the image")),
        }
    }
    Ok((rest.join(" "), dropped))
}

/// The NixOS service replacing a well-known image, with its usual port. A database image's
/// major selects the package of that major (`postgres:15` → `postgresql_15`, `mysql:8.4` →
/// `mysql84`) whether or not nixpkgs carries it: the branch tables decide that, and a major
/// the pinned branch lacks is replaced with its default and a warning
/// (`detect::toolchains::resolve_on`).
pub fn nixos_service(image: &str) -> Option<NixosService> {
    let (name, tag) = image.split_once(':').unwrap_or((image, ""));
    let name = name.rsplit('/').next().unwrap_or(name);
    let major: String = tag.chars().take_while(|c| c.is_ascii_digit()).collect();
    let (module, package, port) = match name {
        "postgres" | "postgis" => {
            let package = if major.is_empty() {
                "postgresql".to_string()
            } else {
                format!("postgresql_{major}")
            };
            ("services.postgresql", package, 5432)
        }
        "redis" => ("services.redis.servers", "redis".to_string(), 6379),
        "valkey" => ("services.redis.servers", "valkey".to_string(), 6379),
        "mysql" => {
            let minor: String = tag
                .split('.')
                .nth(1)
                .unwrap_or("")
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            let package = match (major.as_str(), minor.as_str()) {
                ("", _) | ("8", "") => "mysql80".to_string(),
                (major, "") => format!("mysql{major}0"),
                (major, minor) => format!("mysql{major}{minor}"),
            };
            ("services.mysql", package, 3306)
        }
        "mariadb" => ("services.mysql", "mariadb".to_string(), 3306),
        "mongo" | "mongodb" => ("services.mongodb", "mongodb".to_string(), 27017),
        "rabbitmq" => ("services.rabbitmq", "rabbitmq-server".to_string(), 5672),
        "memcached" => ("services.memcached", "memcached".to_string(), 11211),
        "nginx" => ("services.nginx", "nginx".to_string(), 80),
        "minio" => ("services.minio", "minio".to_string(), 9000),
        "elasticsearch" => ("services.elasticsearch", "elasticsearch".to_string(), 9200),
        _ => return None,
    };
    Some(NixosService {
        module: module.to_string(),
        package,
        port,
    })
}

/// Container ports of a compose `ports:` entry (`"8080:80"`, `5432`, `{target: 80}`).
fn compose_port(entry: &Yaml) -> Option<u16> {
    match entry {
        Yaml::Integer(i) => u16::try_from(*i).ok(),
        Yaml::String(s) => {
            let s = s.split('/').next().unwrap_or(s);
            s.rsplit(':').next()?.split('-').next()?.parse().ok()
        }
        Yaml::Hash(_) => entry["target"].as_i64().and_then(|i| u16::try_from(i).ok()),
        _ => None,
    }
}

fn string_list(y: &Yaml) -> Vec<String> {
    match y {
        Yaml::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        Yaml::Hash(h) => h
            .keys()
            .filter_map(|k| k.as_str().map(String::from))
            .collect(),
        Yaml::String(s) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// Joins a compose build context to the compose file's directory, normalising `./` and `..`.
fn join_context(dir: &str, context: &str) -> String {
    let mut parts: Vec<&str> = if dir.is_empty() {
        Vec::new()
    } else {
        dir.split('/').collect()
    };
    for piece in context.split('/') {
        match piece {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    }
}

pub fn detect(ctx: &Ctx<'_>, out: &mut Out) {
    // Dockerfiles of this project: the plain one decides the start command.
    let dockerfiles: Vec<String> = ctx
        .find(|p| {
            !p.contains('/')
                && (p == "Dockerfile"
                    || p == "Containerfile"
                    || p.starts_with("Dockerfile.")
                    || p.ends_with(".dockerfile"))
        })
        .map(|f| f.path.clone())
        .collect();
    for path in &dockerfiles {
        let Some(text) = ctx.inv.text(path) else {
            continue;
        };
        let (container, lines) = parse_dockerfile(path, text);
        let main = path == &ctx.path("Dockerfile") || path == &ctx.path("Containerfile");
        let final_image = container.base_images.last().cloned().unwrap_or_default();
        let mut evidence = Vec::new();
        for (line, image) in from_lines(text) {
            evidence.push(ev_line(path, Some(line), format!("FROM {image}")));
        }
        if main {
            for port in &container.exposed_ports {
                out.add(
                    format!("port {port}"),
                    confidence::HIGH,
                    vec![ev_line(path, lines.expose, format!("EXPOSE {port}"))],
                    Facts::Port { port: *port },
                );
            }
            if let Some(command) = &container.command {
                match host_command(command, container.workdir.as_deref()) {
                    Ok((host, dropped)) => {
                        let reason = if dropped.is_empty() {
                            "the container's start command".to_string()
                        } else {
                            format!(
                                "the container's start command without {} (container-only)",
                                dropped.join(" and ")
                            )
                        };
                        out.add(
                            host.clone(),
                            confidence::HIGH,
                            vec![ev_line(path, lines.command, reason)],
                            Facts::Process(Process {
                                name: "web".into(),
                                command: host,
                                source: ProcessSource::Dockerfile,
                            }),
                        );
                    }
                    Err(why) => out.warn(
                        format!(
                            "{path}'s command `{command}` is not used as a start command: {why}"
                        ),
                        vec![ev_line(
                            path,
                            lines.command,
                            "the container's start command",
                        )],
                    ),
                }
            }
        }
        out.add(
            format!("container image based on {final_image}"),
            confidence::CERTAIN,
            evidence,
            Facts::Container(container),
        );
    }
    const COMPOSE_FILES: [&str; 4] = [
        "compose.yaml",
        "compose.yml",
        "docker-compose.yaml",
        "docker-compose.yml",
    ];
    for name in COMPOSE_FILES {
        if let Some(text) = ctx.text(name) {
            compose(ctx, &ctx.path(name), text, false, out);
            break;
        }
    }
    // A dev container's compose file runs the databases development needs; its `app`
    // service is the editor's container, not something to deploy.
    for name in COMPOSE_FILES {
        let rel = format!(".devcontainer/{name}");
        if let Some(text) = ctx.text(&rel) {
            compose(ctx, &ctx.path(&rel), text, true, out);
            break;
        }
    }
    if let Some(text) = ctx.text("Procfile") {
        let path = ctx.path("Procfile");
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.starts_with('#') {
                continue;
            }
            let Some((name, command)) = line.split_once(':') else {
                continue;
            };
            let (name, command) = (name.trim(), command.trim());
            if name.is_empty() || command.is_empty() || name.contains(char::is_whitespace) {
                continue;
            }
            out.add(
                format!("{name}: {command}"),
                confidence::HIGH,
                vec![ev_line(
                    &path,
                    u32::try_from(i + 1).ok(),
                    format!("Procfile process `{name}`"),
                )],
                Facts::Process(Process {
                    name: name.into(),
                    command: command.into(),
                    source: ProcessSource::Procfile,
                }),
            );
        }
    }
}

/// Services of a compose file; with `backing_only`, only those a NixOS service replaces.
fn compose(ctx: &Ctx<'_>, path: &str, text: &str, backing_only: bool, out: &mut Out) {
    let docs = match YamlLoader::load_from_str(text) {
        Ok(d) => d,
        Err(e) => {
            out.warn(
                parse_failure(ctx.inv, path, "YAML", e),
                vec![ev(path, "invalid YAML")],
            );
            return;
        }
    };
    let Some(services) = docs.first().and_then(|d| d["services"].as_hash()) else {
        return;
    };
    for (key, svc) in services {
        let Some(name) = key.as_str() else { continue };
        let image = svc["image"].as_str().map(String::from);
        let build = match &svc["build"] {
            Yaml::String(s) => Some(s.clone()),
            Yaml::Hash(_) => svc["build"]["context"]
                .as_str()
                .map(String::from)
                .or(Some(".".into())),
            _ => None,
        }
        .map(|c| join_context(&ctx.dir, &c));
        let mut ports: Vec<u16> = svc["ports"]
            .as_vec()
            .map(|v| v.iter().filter_map(compose_port).collect())
            .unwrap_or_default();
        if let Some(expose) = svc["expose"].as_vec() {
            ports.extend(expose.iter().filter_map(compose_port));
        }
        let nixos = if build.is_none() {
            image.as_deref().and_then(nixos_service)
        } else {
            None
        };
        if backing_only && nixos.is_none() {
            continue;
        }
        if ports.is_empty() {
            if let Some(n) = &nixos {
                ports.push(n.port);
            }
        }
        ports.sort_unstable();
        ports.dedup();
        let mut depends_on = string_list(&svc["depends_on"]);
        depends_on.sort();
        let line = line_of(text, &format!("{name}:"));
        let what = match (&nixos, &image, &build) {
            (Some(n), Some(i), _) => format!("{name}: {i} → NixOS {}", n.module),
            (None, Some(i), None) => format!("{name}: {i} (no NixOS equivalent known)"),
            (_, _, Some(b)) => format!("{name}: built from {b}"),
            _ => name.to_string(),
        };
        out.add(
            what,
            confidence::HIGH,
            vec![ev_line(path, line, format!("compose service `{name}`"))],
            Facts::Service(Service {
                name: name.to_string(),
                image,
                build,
                ports,
                depends_on,
                nixos,
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerfile_final_stage_wins() {
        let text = "FROM rust:1.75 AS build\nRUN cargo build\nEXPOSE 9999\n\n\
                    FROM debian:bookworm-slim\nCOPY --from=build /app /app\nEXPOSE 8080/tcp 9090\n\
                    ENTRYPOINT [\"/app\"]\nCMD [\"--port\", \"8080\"]\n";
        let (c, lines) = parse_dockerfile("Dockerfile", text);
        assert_eq!(c.base_images, ["rust:1.75", "debian:bookworm-slim"]);
        assert_eq!(c.exposed_ports, [8080, 9090]);
        assert_eq!(c.command.as_deref(), Some("/app --port 8080"));
        // Evidence cites the final stage, not the build stage's EXPOSE at line 3.
        assert_eq!(lines.expose, Some(7));
        assert_eq!(lines.command, Some(9));
        assert_eq!(
            from_lines(text),
            [
                (1, "rust:1.75".to_string()),
                (5, "debian:bookworm-slim".to_string())
            ]
        );
    }

    #[test]
    fn continuation_lines_are_joined() {
        let text = "FROM python:3.11\nCMD gunicorn \\\n  # a comment inside\n  app:app\n";
        let (c, _) = parse_dockerfile("Dockerfile", text);
        assert_eq!(c.command.as_deref(), Some("gunicorn  app:app"));
    }

    #[test]
    fn container_only_parts_of_commands() {
        let cases = [
            ("node server.js", None, Ok("node server.js")),
            (
                "/usr/bin/tini -- node server.js",
                None,
                Ok("node server.js"),
            ),
            (
                "dumb-init --single-child node server.js",
                None,
                Ok("node server.js"),
            ),
            (
                "/rails/bin/docker-entrypoint ./bin/thrust ./bin/rails server",
                Some("/rails"),
                Ok("./bin/thrust ./bin/rails server"),
            ),
            (
                "/app/bin/serve --port 80",
                Some("/app/"),
                Ok("./bin/serve --port 80"),
            ),
            (
                "/usr/local/bin/gunicorn app:app",
                None,
                Ok("gunicorn app:app"),
            ),
            (
                "/app --port 8080",
                None,
                Err("`/app` exists only inside the image"),
            ),
            (
                "bash",
                None,
                Err("`bash` only opens a shell: the image is a build or tool image"),
            ),
        ];
        for (command, workdir, want) in cases {
            let got = host_command(command, workdir).map(|(c, _)| c);
            assert_eq!(
                got.as_deref(),
                want.map_err(String::from).as_deref(),
                "{command}"
            );
        }
    }

    #[test]
    fn compose_ports() {
        let docs = YamlLoader::load_from_str(
            "- \"8080:80\"\n- 5432\n- \"127.0.0.1:9000:9001/udp\"\n- target: 7000\n",
        )
        .expect("yaml");
        let ports: Vec<Option<u16>> = docs[0]
            .as_vec()
            .expect("list")
            .iter()
            .map(compose_port)
            .collect();
        assert_eq!(ports, [Some(80), Some(5432), Some(9001), Some(7000)]);
    }

    #[test]
    fn contexts() {
        assert_eq!(join_context("", "./api"), "api");
        assert_eq!(join_context("deploy", "../web"), "web");
        assert_eq!(join_context("", "."), ".");
    }

    #[test]
    fn well_known_images() {
        assert_eq!(
            nixos_service("postgres:16-alpine").map(|s| s.package),
            Some("postgresql_16".into())
        );
        assert_eq!(
            nixos_service("docker.io/library/redis:7").map(|s| s.port),
            Some(6379)
        );
        let package = |image| nixos_service(image).map(|s| s.package);
        assert_eq!(package("postgres"), Some("postgresql".into()));
        assert_eq!(package("postgres:18"), Some("postgresql_18".into()));
        assert_eq!(package("mysql:8"), Some("mysql80".into()));
        assert_eq!(package("mysql:8.4.2"), Some("mysql84".into()));
        assert_eq!(package("mysql:9.6"), Some("mysql96".into()));
        assert!(nixos_service("myorg/api:latest").is_none());
    }
}
