//! Git's smart HTTP protocol for hosted repositories, so a team pushes to repohub rather than
//! to a path on the CI machine:
//!
//! ```sh
//! git clone http://<user>:<API token>@hub.example.com:3001/git/<project>/<repository>.git
//! ```
//!
//! Requests are handed to `git http-backend` (CGI) on the bare repository pcr-ci keeps, so
//! the protocol is git's own, and a push runs the repository's `post-receive` hook — which
//! tells pcr-ci — exactly as a push to the path does. Credentials are an API token as the
//! password of HTTP Basic auth (git's credential helpers store it), or a Bearer token.
//! Fetching needs the viewer role, pushing the member role; to a non-member the repository
//! does not exist (404), as everywhere else.

use std::process::Stdio;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::auth::Peer;
use super::error::AppError;
use crate::db::{RepoKind, Role, User};
use crate::AppState;

/// The user from `Authorization: Basic <anything>:<token>` or `Bearer <token>`.
fn git_user(app: &AppState, headers: &HeaderMap, peer: Peer) -> Result<Option<User>, AppError> {
    use base64::Engine;
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(None);
    };
    let token = if let Some(b64) = value.strip_prefix("Basic ") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
            .unwrap_or_default();
        decoded
            .split_once(':')
            .map(|(_, t)| t.to_string())
            .unwrap_or_default()
    } else if let Some(t) = value.strip_prefix("Bearer ") {
        t.trim().to_string()
    } else {
        String::new()
    };
    super::auth::token_user(app, peer, &token)
}

fn challenge() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"Procurator\"")],
        "sign in with your username and an API token (Settings → API tokens) as the password\n",
    )
        .into_response()
}

/// `GET /git/{project}/{repo}.git/info/refs?service=…`, `POST …/git-upload-pack`,
/// `POST …/git-receive-pack`.
pub async fn serve(
    State(app): State<AppState>,
    Path((project, repo, rest)): Path<(String, String, String)>,
    request: Request,
) -> Result<Response, AppError> {
    let (parts, body) = request.into_parts();
    let Some(user) = git_user(&app, &parts.headers, Peer::of(&parts))? else {
        return Ok(challenge());
    };
    let repo_name = repo.strip_suffix(".git").unwrap_or(&repo);
    let missing = || AppError::not_found(format!("there is no repository {project}/{repo_name}"));
    let (p, role) = app.db.project_for(&project, user.id)?.ok_or_else(missing)?;
    let repository = app.db.repository(p.id, repo_name)?.ok_or_else(missing)?;
    let query = parts.uri.query().unwrap_or("");
    let push = rest == "git-receive-pack" || query.contains("service=git-receive-pack");
    let fetch = rest == "git-upload-pack" || query.contains("service=git-upload-pack");
    if !(rest == "info/refs" && (push || fetch))
        && rest != "git-upload-pack"
        && rest != "git-receive-pack"
    {
        // Only the smart protocol: the dumb one would serve files of the repository directory.
        return Err(AppError::not_found(
            "only git's smart HTTP protocol is served here; use a git client",
        ));
    }
    if push {
        if repository.kind == RepoKind::External {
            return Err(AppError::new(
                StatusCode::FORBIDDEN,
                "this repository mirrors an external URL; push to that URL instead",
            ));
        }
        if role < Role::Member {
            return Err(AppError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "pushing needs the member role; you are a {} of {project}",
                    role.as_str()
                ),
            ));
        }
    }

    let repos_dir = schema::ci::repos_dir(app.ci.state_dir());
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", &repos_dir)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", format!("/{}.git/{rest}", repository.ci_name))
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("QUERY_STRING", query)
        .env("REMOTE_USER", &user.username)
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // The hook pcr-ci installed runs inside http-backend; it finds pcr-ci through its state
    // directory, so HOME is all it needs besides PATH.
    if let Some(home) = std::env::var_os("HOME") {
        cmd.env("HOME", home);
    }
    for (cgi, name) in [
        ("CONTENT_TYPE", header::CONTENT_TYPE),
        ("CONTENT_LENGTH", header::CONTENT_LENGTH),
        ("HTTP_CONTENT_ENCODING", header::CONTENT_ENCODING),
    ] {
        if let Some(v) = parts.headers.get(&name).and_then(|v| v.to_str().ok()) {
            cmd.env(cgi, v);
        }
    }
    if let Some(v) = parts
        .headers
        .get("git-protocol")
        .and_then(|v| v.to_str().ok())
    {
        cmd.env("GIT_PROTOCOL", v);
    }
    let mut child = cmd.spawn().map_err(|e| AppError::internal(&e))?;
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(AppError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "git http-backend has no pipes",
        ));
    };
    // Pushes can be large: the body streams into git, never whole in memory.
    tokio::spawn(async move {
        let mut body = body.into_data_stream();
        while let Some(Ok(chunk)) = body.next().await {
            if stdin.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = stdin.shutdown().await;
    });
    let log_user = user.username.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::warn!(user = %log_user, "git http-backend: {line}");
        }
    });

    // CGI: header lines, a blank line, then the body.
    let mut out = BufReader::new(stdout);
    let mut status = StatusCode::OK;
    let mut headers = HeaderMap::new();
    loop {
        let mut line = String::new();
        let n = out
            .read_line(&mut line)
            .await
            .map_err(|e| AppError::internal(&e))?;
        let line = line.trim_end_matches(['\r', '\n']);
        if n == 0 || line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            status = value
                .split_whitespace()
                .next()
                .and_then(|c| c.parse::<u16>().ok())
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::BAD_GATEWAY);
        } else if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::from_str(value)) {
            headers.append(n, v);
        }
    }
    let stream = tokio_util::io::ReaderStream::new(out);
    // The child is reaped when its output ends; keep it alive as long as the body streams.
    let body = Body::from_stream(stream.chain(futures::stream::once(async move {
        let _ = child.wait().await;
        Ok::<_, std::io::Error>(axum::body::Bytes::new())
    })));
    let mut response = (status, body).into_response();
    response.headers_mut().extend(headers);
    Ok(response)
}
