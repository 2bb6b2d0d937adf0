//! The routes. Every page `GET /x` has a JSON twin `GET /api/x` built from the same view
//! data ([`views`]); forms post to the page's path, scripts post JSON to the API path.
//!
//! Access: everything but sign-in, the static files, `/healthz` and the badges needs a
//! signed-in user. A project — and everything under it — is visible only to its members; to
//! anyone else it answers **404, not 403**, exactly as for a project that does not exist, so
//! names of other teams' projects cannot be probed. A member whose role is too low for an
//! action gets 403: they already know the project exists. Administrators manage users but
//! see only the projects they are members of. The deployments page shows the shared cluster
//! to every signed-in user; the pipeline that published a generation is linked only for
//! members of its project.
//!
//! Layout, as attic's `api/v1`: one module per resource (`session`, `projects`,
//! `repositories`, `pipelines`, `badges`, `deployments`, `users`, `settings`) with its
//! handlers and forms; the extractors that decide who is asking beside them ([`auth`]); input
//! rules in [`validate`]; what every handler shares in `common`; markup in [`pages`] from the
//! view data in [`views`]. This file only builds the router.

pub mod assets;
pub mod auth;
mod badges;
mod common;
mod deployments;
pub mod error;
pub mod format;
pub mod forms;
pub mod githttp;
pub mod pages;
mod pipelines;
mod projects;
mod repositories;
mod session;
mod settings;
mod users;
pub mod validate;
pub mod views;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue};
use axum::middleware;
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::Router;

use crate::AppState;
use badges::badge;
use deployments::{deployments_api, deployments_fragment, deployments_page, deployments_stream};
use error::AppError;
use pipelines::{
    pipeline_api, pipeline_log, pipeline_page, pipeline_stream, pipelines_api, pipelines_page,
};
use projects::{
    member_remove, member_remove_api, member_set, member_set_api, project_api, project_create,
    project_create_api, project_page, projects_api, projects_page,
};
use repositories::{repository_api, repository_create, repository_create_api, repository_page};
use session::{home, login_page, login_submit, logout, me_api, setup_page, setup_submit};
use settings::{
    password_change, settings_page, token_create, token_create_api, token_revoke, token_revoke_api,
    tokens_api,
};
use users::{user_create, user_create_api, users_api, users_page};

pub use auth::MAX_BODY_BYTES;

/// The whole app.
pub fn router(app: AppState) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/static/app.css", get(assets::css))
        .route("/static/app.js", get(assets::js))
        .route("/setup", get(setup_page).post(setup_submit))
        .route("/login", get(login_page).post(login_submit))
        .route("/logout", post(logout))
        .route("/api/me", get(me_api))
        .route("/projects", get(projects_page).post(project_create))
        .route("/api/projects", get(projects_api).post(project_create_api))
        .route("/projects/{p}", get(project_page))
        .route("/api/projects/{p}", get(project_api))
        .route("/projects/{p}/members", post(member_set))
        .route("/projects/{p}/members/{user}/remove", post(member_remove))
        .route("/api/projects/{p}/members", post(member_set_api))
        .route(
            "/api/projects/{p}/members/{user}",
            delete(member_remove_api),
        )
        .route("/projects/{p}/repositories", post(repository_create))
        .route(
            "/api/projects/{p}/repositories",
            post(repository_create_api),
        )
        .route("/projects/{p}/repositories/{r}", get(repository_page))
        .route("/api/projects/{p}/repositories/{r}", get(repository_api))
        .route("/projects/{p}/pipelines", get(pipelines_page))
        .route("/api/projects/{p}/pipelines", get(pipelines_api))
        .route("/projects/{p}/pipelines/{id}", get(pipeline_page))
        .route("/api/projects/{p}/pipelines/{id}", get(pipeline_api))
        .route("/projects/{p}/pipelines/{id}/log", get(pipeline_log))
        .route("/api/projects/{p}/pipelines/{id}/log", get(pipeline_log))
        .route("/projects/{p}/pipelines/{id}/stream", get(pipeline_stream))
        .route(
            "/api/projects/{p}/pipelines/{id}/stream",
            get(pipeline_stream),
        )
        .route("/badge/{file}", get(badge))
        .route(
            "/git/{p}/{r}/{*rest}",
            get(githttp::serve).post(githttp::serve),
        )
        .route("/deployments", get(deployments_page))
        .route("/api/deployments", get(deployments_api))
        .route("/deployments/live", get(deployments_fragment))
        .route("/deployments/stream", get(deployments_stream))
        .route("/api/deployments/stream", get(deployments_stream))
        .route("/admin/users", get(users_page).post(user_create))
        .route("/api/users", get(users_api).post(user_create_api))
        .route("/settings", get(settings_page))
        .route("/settings/tokens", post(token_create))
        .route("/settings/tokens/{id}/revoke", post(token_revoke))
        .route("/settings/password", post(password_change))
        .route("/api/tokens", get(tokens_api).post(token_create_api))
        .route("/api/tokens/{id}", delete(token_revoke_api))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(error::render_errors))
        .layer(middleware::from_fn(security_headers))
        .with_state(app)
}

async fn not_found() -> AppError {
    AppError::not_found("there is nothing at this address")
}

async fn security_headers(request: axum::extract::Request, next: middleware::Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    // Inline style attributes draw the meters; scripts only from our own file.
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
        ),
    );
    let is_html = h
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    if is_html || !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::session::safe_next;
    use super::validate::{validate_branch, validate_name, validate_remote};

    #[test]
    fn remotes() {
        for ok in [
            "https://git.example.com/team/web.git",
            "ssh://git@host:2222/x.git",
            "git@github.com:team/web.git",
            "git://host/x",
        ] {
            assert!(validate_remote(ok).is_ok(), "{ok} refused");
        }
        for (bad, why) in [
            ("", "needs its URL"),
            ("not a url", "spaces"),
            ("ftp://host/x", "not supported"),
            ("file:///etc", "not supported"),
            ("https://user:pw@host/x.git", "password"),
            ("justtext", "not a repository URL"),
        ] {
            let e = validate_remote(bad).expect_err(bad);
            assert!(e.message.contains(why), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn names_and_branches() {
        assert!(validate_name("project", "shop-2").is_ok());
        for bad in ["", "Shop", "a.b", "-x", &"x".repeat(41)] {
            assert!(validate_name("project", bad).is_err(), "{bad}");
        }
        assert!(validate_branch("feature/x-1").is_ok());
        for bad in ["", "-x", "a..b", "a/", "x.lock", "a b"] {
            assert!(validate_branch(bad).is_err(), "{bad}");
        }
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(Some("/projects/x?y=1")), "/projects/x?y=1");
    }
}
