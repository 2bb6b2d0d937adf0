//! Scaffolding for repohub's integration tests: an app on a temporary database driven
//! in-process, real pcr-ci and control plane processes, and git sources to push.
#![allow(dead_code, clippy::unwrap_used)]

pub mod webdriver;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use repohub::cluster::{Target, TokenSource};
use repohub::password::PasswordCost;
use repohub::{App, AppState, Config, Settings};
use test_support::{cargo_bin, ControlPlane};
use tower::ServiceExt;

pub const NIX_CONFIG: &str =
    "experimental-features = nix-command flakes\nsubstituters =\nsandbox = false";

/// Argon2 at full cost takes seconds in a debug build; tests use a cheap one.
pub const CHEAP: PasswordCost = PasswordCost {
    memory_kib: 64,
    passes: 1,
};

/// A repohub app on a fresh database, driven in-process with `oneshot`.
pub struct Hub {
    pub dir: tempfile::TempDir,
    pub app: AppState,
    pub router: Router,
    pub ci_state: PathBuf,
    master: String,
    token: String,
    ci_url: Option<String>,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The value a `Set-Cookie` header gives `name`.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|c| {
                c.split(';')
                    .next()?
                    .strip_prefix(&format!("{name}="))
                    .map(str::to_string)
            })
    }
}

/// Who sends a request.
#[derive(Clone, Default)]
pub struct As {
    pub cookie: Option<String>,
    pub csrf: String,
    pub bearer: Option<String>,
}

impl As {
    pub fn anonymous() -> As {
        As::default()
    }
}

pub fn config(
    dir: &Path,
    master: &str,
    token: &str,
    ci_url: Option<String>,
    ci_state: &Path,
) -> Config {
    Config {
        db: dir.join("repohub.db"),
        cluster: Target {
            addr: master.to_string(),
            token: TokenSource::Value(token.to_string()),
        },
        ci_url,
        ci_state_dir: ci_state.to_path_buf(),
        settings: Settings {
            password_cost: CHEAP,
            // Stands still unless a test steps it over the sign-in throttle's window.
            clock: repohub::throttle::Clock::manual(),
            ..Settings::default()
        },
    }
}

impl Hub {
    /// With no control plane (a closed port) and no pcr-ci.
    pub fn new() -> Hub {
        Hub::with("127.0.0.1:9", "no-token", None)
    }

    pub fn with(master: &str, token: &str, ci_url: Option<String>) -> Hub {
        Hub::with_ci(master, token, ci_url, None)
    }

    /// With pcr-ci's URL and state directory (where its repositories are).
    pub fn with_ci(
        master: &str,
        token: &str,
        ci_url: Option<String>,
        ci_state: Option<&Path>,
    ) -> Hub {
        let dir = tempfile::tempdir().unwrap();
        let ci_state = ci_state.map_or_else(|| dir.path().join("ci"), Path::to_path_buf);
        let app = App::start(config(dir.path(), master, token, ci_url.clone(), &ci_state)).unwrap();
        Hub {
            router: repohub::router(app.clone()),
            app,
            ci_state,
            dir,
            master: master.to_string(),
            token: token.to_string(),
            ci_url,
        }
    }

    /// Drops the app and opens the same database again, as a restart does.
    pub fn restart(&mut self) {
        let app = App::start(config(
            self.dir.path(),
            &self.master,
            &self.token,
            self.ci_url.clone(),
            &self.ci_state,
        ))
        .unwrap();
        self.router = repohub::router(app.clone());
        self.app = app;
    }

    pub async fn send(&self, req: Request<Body>) -> Resp {
        let response = self.router.clone().oneshot(req).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 16 << 20)
            .await
            .unwrap();
        Resp {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    fn request(&self, method: Method, path: &str, who: &As) -> axum::http::request::Builder {
        let mut b = Request::builder().method(method).uri(path);
        if let Some(c) = &who.cookie {
            b = b.header(header::COOKIE, format!("pcr_session={c}"));
        }
        if let Some(t) = &who.bearer {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        b
    }

    pub async fn get(&self, path: &str, who: &As) -> Resp {
        self.send(
            self.request(Method::GET, path, who)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    /// Posts a form; the session's CSRF token is added unless `fields` has one.
    pub async fn post_form(&self, path: &str, who: &As, fields: &[(&str, &str)]) -> Resp {
        let mut body = String::new();
        if !fields.iter().any(|(k, _)| *k == "csrf") {
            body.push_str(&format!("csrf={}", who.csrf));
        }
        for (k, v) in fields {
            if !body.is_empty() {
                body.push('&');
            }
            body.push_str(&format!("{k}={}", repohub::web::format::urlencode(v)));
        }
        self.post_raw(path, who, "application/x-www-form-urlencoded", body)
            .await
    }

    pub async fn post_raw(&self, path: &str, who: &As, content_type: &str, body: String) -> Resp {
        self.send(
            self.request(Method::POST, path, who)
                .header(header::CONTENT_TYPE, content_type)
                .body(Body::from(body))
                .unwrap(),
        )
        .await
    }

    pub async fn post_json(&self, path: &str, who: &As, value: serde_json::Value) -> Resp {
        self.post_raw(path, who, "application/json", value.to_string())
            .await
    }

    /// A streaming response (Server-Sent Events), read event by event.
    pub async fn get_stream(&self, path: &str, who: &As) -> EventStream {
        let req = self
            .request(Method::GET, path, who)
            .body(Body::empty())
            .unwrap();
        let response = self.router.clone().oneshot(req).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        EventStream {
            body: Box::pin(response.into_body().into_data_stream()),
            buffer: String::new(),
        }
    }

    pub async fn delete(&self, path: &str, who: &As) -> Resp {
        self.send(
            self.request(Method::DELETE, path, who)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    /// A user with a browser session and an API token (made directly in the database;
    /// the sign-in forms have their own tests).
    pub fn user(&self, name: &str, admin: bool) -> (As, As) {
        let hash = repohub::password::hash_password("password123", CHEAP).unwrap();
        let user = match self.app.db.user_by_name(name).unwrap() {
            Some(u) => u,
            None => self.app.db.create_user(name, &hash, admin, false).unwrap(),
        };
        let (cookie, csrf) = self.app.db.create_session(user.id, 3_600_000).unwrap();
        let (_, secret) = self
            .app
            .db
            .create_token(user.id, &format!("t{}", repohub::db::random_token()))
            .unwrap();
        (
            As {
                cookie: Some(cookie),
                csrf,
                bearer: None,
            },
            As {
                bearer: Some(secret),
                ..As::default()
            },
        )
    }
}

pub use test_support::{spawn_ready, Proc};

/// A real pcr-ci with its own state directory.
pub struct Ci {
    pub proc: Proc,
    pub url: String,
    pub state: PathBuf,
}

impl Ci {
    pub fn start(dir: &Path, cp: &ControlPlane) -> Ci {
        let state = dir.join("ci");
        std::fs::create_dir_all(&state).unwrap();
        let mut cmd = Command::new(cargo_bin("pcr-ci"));
        cmd.args(["--listen", "127.0.0.1:0", "--poll-interval-secs", "0"])
            .arg("--state-dir")
            .arg(&state)
            .args(["--master", &cp.addr, "--token", &cp.operator_token])
            .env("NIX_CONFIG", NIX_CONFIG)
            .env("RUST_LOG", "info");
        let (proc, url) = spawn_ready("pcr-ci", cmd, &dir.join("ci.log"), "pcr-ci listening on ");
        Ci { proc, url, state }
    }
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A working copy to commit and push from.
pub struct Source {
    pub dir: tempfile::TempDir,
}

impl Source {
    pub fn new() -> Source {
        let dir = tempfile::tempdir().unwrap();
        git(dir.path(), &["init", "-q", "-b", "main"]);
        Source { dir }
    }

    pub fn write(&self, file: &str, text: &str) {
        let path = self.dir.path().join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, text).unwrap();
    }

    pub fn commit(&self, message: &str) -> String {
        git(self.dir.path(), &["add", "-A"]);
        git(
            self.dir.path(),
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        git(self.dir.path(), &["rev-parse", "HEAD"])
    }

    pub fn push(&self, bare: &Path) {
        git(
            self.dir.path(),
            &[
                "push",
                "-q",
                &bare.display().to_string(),
                "HEAD:refs/heads/main",
            ],
        );
    }

    /// A cluster flake with no VMs whose check prints `lines` numbered lines, `pause`
    /// seconds apart, while it builds — a pipeline whose log grows while it runs. The check
    /// is unique to each call (a nonce in the derivation), so nix builds it every time rather
    /// than finding it in the store from an earlier run.
    pub fn write_ticking_flake(&self, lines: u32, pause: &str) {
        let nonce = repohub::db::random_token();
        self.write(
            "flake.nix",
            &format!(
                r#"{{
  outputs = {{ self }}: {{
    blueprintJSON = {{ cluster = {{ name = "hub-test"; }}; vms = {{ }}; }};
    checks.x86_64-linux.ticks = builtins.derivation {{
      name = "ticks";
      nonce = "{nonce}";
      system = "x86_64-linux";
      builder = "/bin/sh";
      args = [ "-c" "i=1; while [ $i -le {lines} ]; do echo tick $i; i=$((i+1)); /bin/sleep {pause}; done; echo done > $out" ];
    }};
  }};
}}
"#
            ),
        );
    }
}

/// Polls until `check` answers `Some`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    test_support::eventually(timeout, what, check).await
}

pub struct EventStream {
    body: std::pin::Pin<Box<axum::body::BodyDataStream>>,
    buffer: String,
}

impl EventStream {
    /// The next event (its `event:`/`id:`/`data:` lines), skipping keep-alive comments.
    pub async fn next_event(&mut self, timeout: Duration) -> String {
        use futures::StreamExt;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let event: String = self.buffer.drain(..end + 2).collect();
                if event.lines().any(|l| !l.starts_with(':')) {
                    return event;
                }
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Ok(Some(Ok(bytes))) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(Some(Err(e))) => panic!("the stream failed: {e}"),
                Ok(None) => return String::new(),
                Err(_) => panic!("no event within {timeout:?}; got so far: {:?}", self.buffer),
            }
        }
    }
}

/// Serves the app on a free loopback port; answers `http://127.0.0.1:PORT`.
pub async fn serve(app: AppState) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    // As pcr-repohub serves it: with the peer address the sign-in throttle keys on.
    let service =
        repohub::router(app).into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await });
    base
}
