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

pub mod assets;
pub mod error;
pub mod format;
pub mod githttp;
pub mod pages;
pub mod views;

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use futures::Stream;
use maud::Markup;
use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::auth::{self, AnonForm, ApiJson, ApiWrite, CsrfForm, Viewer};
use crate::db::{Project, RepoKind, Repository, Role};
use crate::throttle::SignInKey;
use crate::AppState;
use error::AppError;
use pages::{Chrome, Notice, Section};
use views::*;

/// Largest request body accepted; forms and JSON here are small.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

type Result<T, E = AppError> = std::result::Result<T, E>;

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

/// Percent-encodes everything but unreserved characters (for `?next=`).
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn page(markup: Markup) -> Response {
    Html(markup.into_string()).into_response()
}

fn page_with(status: StatusCode, markup: Markup) -> Response {
    (status, Html(markup.into_string())).into_response()
}

fn chrome(v: &Viewer, section: Section) -> Chrome<'_> {
    Chrome {
        username: &v.user.username,
        is_admin: v.user.is_admin,
        csrf: v.csrf(),
        section,
    }
}

// ---- input rules ----

/// Project and repository names: they appear in URLs and, joined by `.`, as pcr-ci's
/// repository name, so they have no `.` and no upper case.
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(AppError::bad_request(format!(
            "{what} name `{name}` must be 1-40 characters of a-z, 0-9, `-` and `_`, starting with a letter or digit"
        )))
    }
}

pub fn validate_username(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(AppError::bad_request(format!(
            "username `{name}` must be 1-32 characters of a-z, 0-9, `-` and `_`, starting with a letter or digit"
        )))
    }
}

pub fn validate_password(p: &str) -> Result<()> {
    if p.chars().count() < 8 {
        return Err(AppError::bad_request(
            "the password must be at least 8 characters long",
        ));
    }
    if p.len() > 1024 {
        return Err(AppError::bad_request(
            "the password must be at most 1024 bytes long",
        ));
    }
    Ok(())
}

/// A branch name git and pcr-ci both accept, simplified to what people use.
pub fn validate_branch(b: &str) -> Result<()> {
    let ok = !b.is_empty()
        && b.len() <= 100
        && !b.starts_with(['-', '/', '.'])
        && !b.ends_with(['/', '.'])
        && !b.contains("..")
        && !b.contains("//")
        && !b.ends_with(".lock")
        && b.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-_./".contains(&c));
    if ok {
        Ok(())
    } else {
        Err(AppError::bad_request(format!(
            "branch `{b}` is not a valid branch name; use letters, digits, `-`, `_`, `.` and `/`"
        )))
    }
}

/// The remote of an external repository: `https://`, `http://`, `ssh://`, `git://` or
/// scp-like `user@host:path`. Credentials in the URL are refused: they would be shown on
/// the page and stored in plain text; pcr-ci reads them from its netrc.
pub fn validate_remote(url: &str) -> Result<String> {
    let url = url.trim();
    if url.is_empty() {
        return Err(AppError::bad_request(
            "an external repository needs its URL, e.g. https://git.example.com/team/web.git",
        ));
    }
    if url.len() > 500 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(AppError::bad_request(format!(
            "`{url}` is not a repository URL: it has spaces or is longer than 500 characters"
        )));
    }
    if let Some((user_host, path)) = url.split_once(':') {
        // scp-like syntax has no `//` after the colon and a user@host before it.
        if !url.contains("://") && user_host.contains('@') && !path.is_empty() {
            return Ok(url.to_string());
        }
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| {
        AppError::bad_request(format!(
            "`{url}` is not a repository URL ({e}); use https://host/path.git or git@host:path.git"
        ))
    })?;
    if !matches!(parsed.scheme(), "https" | "http" | "ssh" | "git") {
        return Err(AppError::bad_request(format!(
            "`{}` URLs are not supported; use https, http, ssh or git",
            parsed.scheme()
        )));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(AppError::bad_request(format!("`{url}` has no host")));
    }
    if parsed.password().is_some() {
        return Err(AppError::bad_request(
            "do not put a password in the URL; give pcr-ci the credentials in its netrc file",
        ));
    }
    Ok(url.to_string())
}

// ---- shared loaders ----

/// The project if the viewer is a member, else 404 (see the module documentation).
fn project_for(app: &AppState, viewer: &Viewer, name: &str) -> Result<(Project, Role)> {
    app.db
        .project_for(name, viewer.user.id)?
        .ok_or_else(|| AppError::not_found(format!("there is no project named {name}")))
}

fn require_role(have: Role, need: Role, action: &str) -> Result<()> {
    if have >= need {
        Ok(())
    } else {
        Err(AppError::new(
            StatusCode::FORBIDDEN,
            format!(
                "{action} needs the {} role; you are a {} of this project — ask an owner",
                need.as_str(),
                have.as_str()
            ),
        ))
    }
}

fn cluster_summary(app: &AppState) -> ClusterSummary {
    let s = app.cluster.snapshot();
    let st = s.status.as_ref();
    ClusterSummary {
        connected: s.connected,
        error: s.error.clone(),
        name: st.map(|st| st.settings.name.clone()),
        active_generation: st.map(|st| st.active_generation).unwrap_or(0),
        instances: st.map(|st| st.instances.len()).unwrap_or(0),
        running: st
            .map(|st| {
                st.instances
                    .iter()
                    .filter(|i| i.phase == schema::model::Phase::Running)
                    .count()
            })
            .unwrap_or(0),
        workers: st.map(|st| st.workers.len()).unwrap_or(0),
        workers_ready: st
            .map(|st| {
                st.workers
                    .iter()
                    .filter(|w| w.state == schema::model::WorkerState::Ready)
                    .count()
            })
            .unwrap_or(0),
    }
}

fn project_rows(app: &AppState, viewer: &Viewer) -> Result<Vec<ProjectRow>> {
    app.db
        .projects_of(viewer.user.id)?
        .into_iter()
        .map(|(project, role)| {
            let repositories = app.db.repositories(project.id)?.len();
            Ok(ProjectRow {
                project,
                role,
                repositories,
            })
        })
        .collect()
}

fn badge_paths(repo: &Repository) -> (String, String) {
    (
        format!("/badge/{}.svg", repo.badge_key),
        format!("/badge/{}.json", repo.badge_key),
    )
}

/// Pipelines of the project's repositories, newest first.
async fn project_pipelines(
    app: &AppState,
    repos: &[Repository],
    limit: u32,
) -> (Vec<PipelineRow>, Option<String>) {
    let mut rows = Vec::new();
    for repo in repos {
        match app.ci.pipelines(Some(&repo.ci_name), limit).await {
            Ok(list) => rows.extend(list.into_iter().map(|p| PipelineRow {
                repository: repo.name.clone(),
                pipeline: p,
            })),
            Err(e) => return (rows, Some(AppError::from(e).message)),
        }
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.pipeline.id));
    rows.truncate(limit as usize);
    (rows, None)
}

async fn load_project(app: &AppState, viewer: &Viewer, name: &str) -> Result<ProjectView> {
    let (project, role) = project_for(app, viewer, name)?;
    let repos = app.db.repositories(project.id)?;
    let (pipelines, ci_error) = if repos.is_empty() {
        (Vec::new(), None)
    } else {
        project_pipelines(app, &repos, 10).await
    };
    let repositories = repos
        .into_iter()
        .map(|r| {
            let last_pipeline = pipelines
                .iter()
                .find(|p| p.repository == r.name)
                .map(|p| p.pipeline.clone());
            RepositoryRow {
                badge_svg: badge_paths(&r).0,
                repository: r,
                last_pipeline,
            }
        })
        .collect();
    Ok(ProjectView {
        members: app.db.members(project.id)?,
        project,
        role,
        repositories,
        pipelines,
        ci_error,
    })
}

// ---- home, sign-in ----

async fn home(State(app): State<AppState>, viewer: Viewer) -> Result<Response> {
    let view = HomeView {
        projects: project_rows(&app, &viewer)?,
        cluster: cluster_summary(&app),
        user: viewer.user.clone(),
    };
    Ok(page(pages::home_page(
        &chrome(&viewer, Section::Projects),
        &view,
    )))
}

async fn me_api(State(app): State<AppState>, viewer: Viewer) -> Result<Json<HomeView>> {
    Ok(Json(HomeView {
        projects: project_rows(&app, &viewer)?,
        cluster: cluster_summary(&app),
        user: viewer.user,
    }))
}

/// A page with a fresh double-submit CSRF cookie for forms shown before sign-in.
fn anon_form_page(
    app: &AppState,
    status: StatusCode,
    render: impl FnOnce(&str) -> Markup,
) -> Response {
    let token = crate::db::random_token();
    let mut response = page_with(status, render(&token));
    if let Ok(v) = HeaderValue::from_str(&auth::set_cookie(
        auth::ANON_CSRF_COOKIE,
        &token,
        3600,
        app.settings.secure_cookies,
    )) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

fn signed_in_redirect(app: &AppState, user_id: i64, to: &str) -> Result<Response> {
    let (token, _csrf) = app.db.create_session(user_id, auth::SESSION_LIFETIME_MS)?;
    let mut response = Redirect::to(to).into_response();
    let cookie = auth::set_cookie(
        auth::SESSION_COOKIE,
        &token,
        auth::SESSION_LIFETIME_MS / 1000,
        app.settings.secure_cookies,
    );
    let cookie = HeaderValue::from_str(&cookie).map_err(|e| AppError::internal(&e))?;
    response.headers_mut().append(header::SET_COOKIE, cookie);
    Ok(response)
}

#[derive(Deserialize)]
struct SetupForm {
    username: String,
    password: String,
}

async fn setup_page(State(app): State<AppState>) -> Result<Response> {
    if app.db.user_count()? > 0 {
        return Ok(Redirect::to("/login").into_response());
    }
    Ok(anon_form_page(&app, StatusCode::OK, |csrf| {
        pages::setup_page(csrf, &Notice::None, "admin")
    }))
}

async fn setup_submit(
    State(app): State<AppState>,
    AnonForm(form): AnonForm<SetupForm>,
) -> Result<Response> {
    let username = form.username.trim().to_string();
    let result = async {
        validate_username(&username)?;
        validate_password(&form.password)?;
        let hash = auth::hash_password(&form.password, app.settings.password_cost)
            .map_err(|e| AppError::internal(&e))?;
        Ok::<_, AppError>(app.db.create_user(&username, &hash, true, true)?)
    }
    .await;
    match result {
        Ok(user) => signed_in_redirect(&app, user.id, "/projects"),
        Err(e) if e.status.is_client_error() => Ok(anon_form_page(&app, e.status, |csrf| {
            pages::setup_page(csrf, &Notice::Error(e.message.clone()), &username)
        })),
        Err(e) => Err(e),
    }
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

/// Only local paths: `?next=https://evil.example` must not turn sign-in into a redirector.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        _ => "/".to_string(),
    }
}

async fn login_page(State(app): State<AppState>, Query(q): Query<NextQuery>) -> Result<Response> {
    if app.db.user_count()? == 0 {
        return Ok(Redirect::to("/setup").into_response());
    }
    let next = safe_next(q.next.as_deref());
    Ok(anon_form_page(&app, StatusCode::OK, |csrf| {
        pages::login_page(csrf, &Notice::None, "", &next)
    }))
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
}

/// A page answering a refused form, with the `Retry-After` the error asks for.
fn with_retry_after(mut response: Response, e: &AppError) -> Response {
    if let Some(secs) = e.retry_after() {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

async fn login_submit(
    State(app): State<AppState>,
    peer: auth::Peer,
    AnonForm(form): AnonForm<LoginForm>,
) -> Result<Response> {
    let next = safe_next(form.next.as_deref());
    let username = form.username.trim().to_string();
    let form_page = |e: AppError| {
        let page = anon_form_page(&app, e.status, |csrf| {
            pages::login_page(csrf, &Notice::Error(e.message.clone()), &username, &next)
        });
        Ok(with_retry_after(page, &e))
    };
    // Counted before the password is checked, and refused without checking it: a guesser
    // learns nothing more and costs no argon2 time. Unknown usernames count the same way.
    let key = SignInKey::new(&username, peer.0);
    if let Err(wait) = app
        .limits
        .passwords
        .begin(key.clone(), app.settings.clock.now())
    {
        return form_page(AppError::too_many_attempts(
            "too many failed sign-ins with this username",
            wait,
        ));
    }
    let creds = app.db.credentials(&username)?;
    let password = form.password.clone();
    let app2 = app.clone();
    // Argon2 takes tens of milliseconds on purpose; keep it off the async workers. A wrong
    // username is checked against a dummy hash so it takes as long as a wrong password.
    let verified = tokio::task::spawn_blocking(move || match &creds {
        Some((user, hash)) => auth::verify_password(&password, hash).then(|| user.clone()),
        None => {
            let _ = auth::verify_password(&password, &app2.dummy_hash);
            None
        }
    })
    .await
    .map_err(|e| AppError::internal(&e))?;
    match verified {
        Some(user) => {
            app.limits.passwords.clear(&key);
            signed_in_redirect(&app, user.id, &next)
        }
        None => form_page(AppError::new(
            StatusCode::UNAUTHORIZED,
            "wrong username or password",
        )),
    }
}

async fn logout(
    State(app): State<AppState>,
    CsrfForm(viewer, _): CsrfForm<IgnoredAny>,
) -> Result<Response> {
    if let auth::Via::Session { token, .. } = &viewer.via {
        app.db.delete_session(token)?;
    }
    let mut response = Redirect::to("/login").into_response();
    let cookie = auth::set_cookie(auth::SESSION_COOKIE, "", 0, app.settings.secure_cookies);
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(response)
}

// ---- projects ----

#[derive(Deserialize, Default)]
pub struct NewProjectForm {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

fn create_project(app: &AppState, viewer: &Viewer, form: &NewProjectForm) -> Result<Project> {
    let name = form.name.trim();
    validate_name("project", name)?;
    let description = form.description.trim();
    if description.chars().count() > 500 {
        return Err(AppError::bad_request(
            "the description must be at most 500 characters",
        ));
    }
    Ok(app.db.create_project(name, description, viewer.user.id)?)
}

async fn projects_page(State(app): State<AppState>, viewer: Viewer) -> Result<Response> {
    let v = ProjectsView {
        projects: project_rows(&app, &viewer)?,
    };
    Ok(page(pages::projects_page(
        &chrome(&viewer, Section::Projects),
        &v,
        &Notice::None,
        &NewProjectForm::default(),
    )))
}

async fn projects_api(State(app): State<AppState>, viewer: Viewer) -> Result<Json<ProjectsView>> {
    Ok(Json(ProjectsView {
        projects: project_rows(&app, &viewer)?,
    }))
}

async fn project_create(
    State(app): State<AppState>,
    CsrfForm(viewer, form): CsrfForm<NewProjectForm>,
) -> Result<Response> {
    match create_project(&app, &viewer, &form) {
        Ok(p) => Ok(Redirect::to(&format!("/projects/{}", p.name)).into_response()),
        Err(e) if e.status.is_client_error() => {
            let v = ProjectsView {
                projects: project_rows(&app, &viewer)?,
            };
            Ok(page_with(
                e.status,
                pages::projects_page(
                    &chrome(&viewer, Section::Projects),
                    &v,
                    &Notice::Error(e.message),
                    &form,
                ),
            ))
        }
        Err(e) => Err(e),
    }
}

async fn project_create_api(
    State(app): State<AppState>,
    ApiJson(viewer, form): ApiJson<NewProjectForm>,
) -> Result<Response> {
    let p = create_project(&app, &viewer, &form)?;
    Ok((StatusCode::CREATED, Json(p)).into_response())
}

async fn project_page(
    State(app): State<AppState>,
    viewer: Viewer,
    Path(p): Path<String>,
) -> Result<Response> {
    let v = load_project(&app, &viewer, &p).await?;
    Ok(page(pages::project_page(
        &chrome(&viewer, Section::Projects),
        &v,
        &Notice::None,
        &NewRepositoryForm::default(),
    )))
}

async fn project_api(
    State(app): State<AppState>,
    viewer: Viewer,
    Path(p): Path<String>,
) -> Result<Json<ProjectView>> {
    Ok(Json(load_project(&app, &viewer, &p).await?))
}

/// Re-renders the project page with an error above it, keeping what was typed.
async fn project_page_error(
    app: &AppState,
    viewer: &Viewer,
    p: &str,
    e: AppError,
    form: &NewRepositoryForm,
) -> Result<Response> {
    // pcr-ci trouble (502) is shown like bad input: the form is kept for another try.
    let shown = e.status.is_client_error() || e.status == StatusCode::BAD_GATEWAY;
    if !shown || e.status == StatusCode::NOT_FOUND {
        return Err(e);
    }
    let v = load_project(app, viewer, p).await?;
    Ok(page_with(
        e.status,
        pages::project_page(
            &chrome(viewer, Section::Projects),
            &v,
            &Notice::Error(e.message),
            form,
        ),
    ))
}

#[derive(Deserialize)]
pub struct MemberForm {
    pub username: String,
    pub role: String,
}

fn set_member(
    app: &AppState,
    viewer: &Viewer,
    p: &str,
    form: &MemberForm,
) -> Result<crate::db::Member> {
    let (project, role) = project_for(app, viewer, p)?;
    require_role(role, Role::Owner, "managing members")?;
    let new_role = Role::parse(&form.role).ok_or_else(|| {
        AppError::bad_request(format!(
            "`{}` is not a role; use owner, member or viewer",
            form.role
        ))
    })?;
    Ok(app
        .db
        .set_member(project.id, form.username.trim(), new_role)?)
}

fn remove_member(app: &AppState, viewer: &Viewer, p: &str, user: &str) -> Result<()> {
    let (project, role) = project_for(app, viewer, p)?;
    require_role(role, Role::Owner, "managing members")?;
    if !app.db.remove_member(project.id, user)? {
        return Err(AppError::not_found(format!(
            "{user} is not a member of {p}"
        )));
    }
    Ok(())
}

async fn member_set(
    State(app): State<AppState>,
    Path(p): Path<String>,
    CsrfForm(viewer, form): CsrfForm<MemberForm>,
) -> Result<Response> {
    match set_member(&app, &viewer, &p, &form) {
        Ok(_) => Ok(Redirect::to(&format!("/projects/{p}")).into_response()),
        Err(e) => project_page_error(&app, &viewer, &p, e, &NewRepositoryForm::default()).await,
    }
}

async fn member_set_api(
    State(app): State<AppState>,
    Path(p): Path<String>,
    ApiJson(viewer, form): ApiJson<MemberForm>,
) -> Result<Json<crate::db::Member>> {
    Ok(Json(set_member(&app, &viewer, &p, &form)?))
}

async fn member_remove(
    State(app): State<AppState>,
    Path((p, user)): Path<(String, String)>,
    CsrfForm(viewer, _): CsrfForm<IgnoredAny>,
) -> Result<Response> {
    match remove_member(&app, &viewer, &p, &user) {
        // Removing yourself leaves a project you can no longer see.
        Ok(()) if user == viewer.user.username => Ok(Redirect::to("/projects").into_response()),
        Ok(()) => Ok(Redirect::to(&format!("/projects/{p}")).into_response()),
        Err(e) => project_page_error(&app, &viewer, &p, e, &NewRepositoryForm::default()).await,
    }
}

async fn member_remove_api(
    State(app): State<AppState>,
    Path((p, user)): Path<(String, String)>,
    ApiWrite(viewer): ApiWrite,
) -> Result<StatusCode> {
    remove_member(&app, &viewer, &p, &user)?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- repositories ----

#[derive(Deserialize, Default)]
pub struct NewRepositoryForm {
    #[serde(default)]
    pub name: String,
    /// `hosted` (default) or `external`.
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub branch: String,
}

/// Validates everything, records the repository, then asks pcr-ci to create it; if pcr-ci
/// refuses or is unreachable the record is removed again, so a refused request stores nothing.
async fn create_repository(
    app: &AppState,
    viewer: &Viewer,
    p: &str,
    form: &NewRepositoryForm,
) -> Result<Repository> {
    let (project, role) = project_for(app, viewer, p)?;
    require_role(role, Role::Member, "adding a repository")?;
    let name = form.name.trim();
    validate_name("repository", name)?;
    let branch = match form.branch.trim() {
        "" => "main",
        b => b,
    };
    validate_branch(branch)?;
    let (kind, url) = match form.kind.as_str() {
        "" | "hosted" => {
            if !form.url.trim().is_empty() {
                return Err(AppError::bad_request(
                    "a hosted repository has no URL; choose External to watch a URL",
                ));
            }
            (RepoKind::Hosted, None)
        }
        "external" => (RepoKind::External, Some(validate_remote(&form.url)?)),
        other => {
            return Err(AppError::bad_request(format!(
                "`{other}` is not a repository kind; use hosted or external"
            )))
        }
    };
    let repo = app
        .db
        .create_repository(&project, name, kind, url.as_deref(), branch)?;
    if let Err(e) = app
        .ci
        .create_repository(&repo.ci_name, url.as_deref(), branch)
        .await
    {
        app.db.delete_repository(repo.id)?;
        return Err(e.into());
    }
    Ok(repo)
}

async fn repository_create(
    State(app): State<AppState>,
    Path(p): Path<String>,
    CsrfForm(viewer, form): CsrfForm<NewRepositoryForm>,
) -> Result<Response> {
    match create_repository(&app, &viewer, &p, &form).await {
        Ok(r) => {
            Ok(Redirect::to(&format!("/projects/{p}/repositories/{}", r.name)).into_response())
        }
        Err(e) => project_page_error(&app, &viewer, &p, e, &form).await,
    }
}

async fn repository_create_api(
    State(app): State<AppState>,
    Path(p): Path<String>,
    ApiJson(viewer, form): ApiJson<NewRepositoryForm>,
) -> Result<Response> {
    let r = create_repository(&app, &viewer, &p, &form).await?;
    Ok((StatusCode::CREATED, Json(r)).into_response())
}

#[derive(Deserialize)]
struct CommitQuery {
    commit: Option<String>,
}

/// Where people reach repohub: `--public-url`, else what their request was addressed to.
fn origin(app: &AppState, headers: &HeaderMap) -> String {
    if let Some(u) = &app.settings.public_url {
        return u.trim_end_matches('/').to_string();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost:3001");
    let scheme = if app.settings.secure_cookies {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{host}")
}

async fn load_repository(
    app: &AppState,
    viewer: &Viewer,
    p: &str,
    r: &str,
    commit: Option<&str>,
    origin: &str,
) -> Result<RepositoryView> {
    let (project, role) = project_for(app, viewer, p)?;
    let repo = app
        .db
        .repository(project.id, r)?
        .ok_or_else(|| AppError::not_found(format!("project {p} has no repository named {r}")))?;
    let bare = app.ci.bare_path(&repo.ci_name);
    let (commits, git_error) = {
        let bare = bare.clone();
        let branch = repo.branch.clone();
        match tokio::task::spawn_blocking(move || crate::git::commits(&bare, &branch, 30))
            .await
            .map_err(|e| AppError::internal(&e))?
        {
            Ok(c) => (c, None),
            Err(e) => (Vec::new(), Some(e.to_string())),
        }
    };
    let (pipelines, ci_error) = match app.ci.pipelines(Some(&repo.ci_name), 100).await {
        Ok(list) => (list, None),
        Err(e) => (Vec::new(), Some(AppError::from(e).message)),
    };
    let commits: Vec<CommitRow> = commits
        .into_iter()
        .map(|c| CommitRow {
            // Newest first, so the first match is the commit's latest run.
            pipeline: pipelines.iter().find(|p| p.commit == c.sha).cloned(),
            commit: c,
        })
        .collect();
    let selected = match commit {
        Some(c) if commits.iter().any(|row| row.commit.sha == c) => Some(c.to_string()),
        Some(c) => {
            return Err(AppError::not_found(format!(
                "commit {c} is not among the latest commits of {}",
                repo.branch
            )))
        }
        None => commits.first().map(|c| c.commit.sha.clone()),
    };
    let flake = match selected {
        Some(sha) => Some(flake_view(app, &repo, &sha).await?),
        None => None,
    };
    // Absolute, to paste into a README or shields.io.
    let (svg, json) = badge_paths(&repo);
    let (badge_svg, badge_json) = (format!("{origin}{svg}"), format!("{origin}{json}"));
    Ok(RepositoryView {
        clone_url: format!("{origin}/git/{}/{}.git", project.name, repo.name),
        project: project.name,
        role,
        push_path: bare.display().to_string(),
        badge_svg,
        badge_json,
        repository: repo,
        commits,
        flake,
        ci_error,
        git_error,
    })
}

async fn flake_view(app: &AppState, repo: &Repository, sha: &str) -> Result<FlakeView> {
    let record = crate::flakes::for_commit(app, repo, sha).await?;
    let previous = app.db.previous_flake(repo.id, &record)?;
    let diff = match (&previous, &record.flake) {
        (Some(prev), Some(new)) => prev.flake.as_deref().and_then(|old| {
            crate::flakes::diff(
                old,
                new,
                &format!("flake.nix @ {}", format::short(&prev.commit)),
                &format!("flake.nix @ {}", format::short(&record.commit)),
            )
        }),
        _ => None,
    };
    let analysis = record
        .analysis_json
        .as_deref()
        .and_then(|j| serde_json::from_str::<autonix::Analysis>(j).ok());
    Ok(FlakeView {
        commit: record.commit,
        analysis,
        flake: record.flake,
        error: record.error,
        own_flake: record.own_flake,
        previous_commit: previous.map(|p| p.commit),
        diff,
    })
}

async fn repository_page(
    State(app): State<AppState>,
    viewer: Viewer,
    Path((p, r)): Path<(String, String)>,
    Query(q): Query<CommitQuery>,
    headers: HeaderMap,
) -> Result<Response> {
    let origin = origin(&app, &headers);
    let v = load_repository(&app, &viewer, &p, &r, q.commit.as_deref(), &origin).await?;
    Ok(page(pages::repository_page(
        &chrome(&viewer, Section::Projects),
        &v,
    )))
}

async fn repository_api(
    State(app): State<AppState>,
    viewer: Viewer,
    Path((p, r)): Path<(String, String)>,
    Query(q): Query<CommitQuery>,
    headers: HeaderMap,
) -> Result<Json<RepositoryView>> {
    let origin = origin(&app, &headers);
    Ok(Json(
        load_repository(&app, &viewer, &p, &r, q.commit.as_deref(), &origin).await?,
    ))
}

// ---- pipelines ----

async fn load_pipelines(app: &AppState, viewer: &Viewer, p: &str) -> Result<PipelinesView> {
    let (project, _) = project_for(app, viewer, p)?;
    let repos = app.db.repositories(project.id)?;
    let (pipelines, ci_error) = project_pipelines(app, &repos, 100).await;
    Ok(PipelinesView {
        project: project.name,
        pipelines,
        ci_error,
    })
}

async fn pipelines_page(
    State(app): State<AppState>,
    viewer: Viewer,
    Path(p): Path<String>,
) -> Result<Response> {
    let v = load_pipelines(&app, &viewer, &p).await?;
    Ok(page(pages::pipelines_page(
        &chrome(&viewer, Section::Projects),
        &v,
    )))
}

async fn pipelines_api(
    State(app): State<AppState>,
    viewer: Viewer,
    Path(p): Path<String>,
) -> Result<Json<PipelinesView>> {
    Ok(Json(load_pipelines(&app, &viewer, &p).await?))
}

/// The pipeline if it belongs to one of the project's repositories (and the viewer is a
/// member); 404 otherwise, whether or not the pipeline exists.
async fn load_pipeline(app: &AppState, viewer: &Viewer, p: &str, id: u64) -> Result<PipelineView> {
    let (project, _) = project_for(app, viewer, p)?;
    let missing = || AppError::not_found(format!("project {p} has no pipeline {id}"));
    let detail = match app.ci.pipeline(id).await {
        Ok(d) => d,
        Err(crate::ci::CiError::Refused(_)) => return Err(missing()),
        Err(e) => return Err(e.into()),
    };
    let repo = app
        .db
        .repository_by_ci_name(&detail.summary.repository)?
        .filter(|r| r.project_id == project.id)
        .ok_or_else(missing)?;
    Ok(PipelineView {
        project: project.name,
        repository: repo.name,
        pipeline: detail,
    })
}

async fn pipeline_page(
    State(app): State<AppState>,
    viewer: Viewer,
    Path((p, id)): Path<(String, u64)>,
) -> Result<Response> {
    let v = load_pipeline(&app, &viewer, &p, id).await?;
    Ok(page(pages::pipeline_page(
        &chrome(&viewer, Section::Projects),
        &v,
    )))
}

async fn pipeline_api(
    State(app): State<AppState>,
    viewer: Viewer,
    Path((p, id)): Path<(String, u64)>,
) -> Result<Json<PipelineView>> {
    Ok(Json(load_pipeline(&app, &viewer, &p, id).await?))
}

/// The whole log as text, with a header line where each step begins.
async fn pipeline_log(
    State(app): State<AppState>,
    viewer: Viewer,
    Path((p, id)): Path<(String, u64)>,
) -> Result<Response> {
    let v = load_pipeline(&app, &viewer, &p, id).await?;
    let names: HashMap<u32, &str> = v
        .pipeline
        .steps
        .iter()
        .map(|s| (s.index, s.name.as_str()))
        .collect();
    let mut text = String::new();
    let mut after = 0;
    let mut step = None;
    loop {
        let page = app.ci.logs(id, after, Duration::ZERO).await?;
        for line in &page.lines {
            if step != Some(line.step) {
                step = Some(line.step);
                let name = names.get(&line.step).copied().unwrap_or("step");
                text.push_str(&format!("==> {} {name}\n", line.step));
            }
            text.push_str(&line.line);
            text.push('\n');
            after = line.seq;
        }
        // A page shorter than pcr-ci's page size is the end of what exists now.
        if page.done || page.lines.len() < 5_000 {
            break;
        }
    }
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "text/plain; charset=utf-8".to_string(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"pipeline-{id}.log\""),
            ),
        ],
        text,
    )
        .into_response())
}

/// Server-Sent Events: `lines` (a JSON array of log lines, `id` = last sequence number, so a
/// reconnecting browser resumes with `Last-Event-ID`), `end` (the final status) and
/// `problem` (pcr-ci unreachable; the stream keeps trying).
async fn pipeline_stream(
    State(app): State<AppState>,
    viewer: Viewer,
    Path((p, id)): Path<(String, u64)>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = std::result::Result<SseEvent, Infallible>>>> {
    load_pipeline(&app, &viewer, &p, id).await?;
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    Ok(Sse::new(log_events(app.ci.clone(), id, after)).keep_alive(KeepAlive::default()))
}

/// How long one long-poll to pcr-ci waits for new lines.
const LOG_WAIT: Duration = Duration::from_secs(20);

pub fn log_events(
    ci: crate::ci::Ci,
    id: u64,
    after: u64,
) -> impl Stream<Item = std::result::Result<SseEvent, Infallible>> {
    use futures::StreamExt;
    struct Tail {
        ci: crate::ci::Ci,
        id: u64,
        after: u64,
        finished: bool,
    }
    let start = Tail {
        ci,
        id,
        after,
        finished: false,
    };
    futures::stream::unfold(start, |mut t| async move {
        if t.finished {
            return None;
        }
        let mut events = Vec::new();
        match t.ci.logs(t.id, t.after, LOG_WAIT).await {
            Ok(page) => {
                if let Some(last) = page.lines.last() {
                    t.after = last.seq;
                    let data = serde_json::to_string(&page.lines).unwrap_or_else(|_| "[]".into());
                    events.push(
                        SseEvent::default()
                            .event("lines")
                            .id(t.after.to_string())
                            .data(data),
                    );
                }
                if page.done {
                    events.push(SseEvent::default().event("end").data(page.status.as_str()));
                    t.finished = true;
                }
            }
            Err(e) => {
                events.push(
                    SseEvent::default()
                        .event("problem")
                        .data(AppError::from(e).message),
                );
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
        Some((futures::stream::iter(events.into_iter().map(Ok)), t))
    })
    .flatten()
}

// ---- badges ----

async fn badge(State(app): State<AppState>, Path(file): Path<String>) -> Result<Response> {
    let (key, ext) = file
        .rsplit_once('.')
        .ok_or_else(|| AppError::not_found("there is no such badge"))?;
    // Unguessable per-repository key: the badge works from a README or shields.io without
    // signing in, and reveals nothing to someone without the link.
    let repo = app
        .db
        .repository_by_badge(key)?
        .ok_or_else(|| AppError::not_found("there is no such badge"))?;
    let (message, color, shields) = match app.ci.pipelines(Some(&repo.ci_name), 20).await {
        Ok(list) => match list.iter().find(|p| p.deploy) {
            Some(p) => match p.status {
                schema::ci::Status::Succeeded => ("passing", "#2e9d57", "brightgreen"),
                schema::ci::Status::Failed => ("failing", "#d73a49", "red"),
                schema::ci::Status::Running => ("running", "#dbab09", "yellow"),
                schema::ci::Status::Queued => ("queued", "#9f9f9f", "lightgrey"),
            },
            None => ("no runs", "#9f9f9f", "lightgrey"),
        },
        Err(_) => ("unknown", "#9f9f9f", "lightgrey"),
    };
    // Browsers must ask again each time (a badge is tiny); shields.io caches on its side.
    let cache = (header::CACHE_CONTROL, "no-cache");
    match ext {
        "svg" => Ok((
            [(header::CONTENT_TYPE, "image/svg+xml"), cache],
            pages::badge_svg("pipeline", message, color),
        )
            .into_response()),
        "json" => Ok((
            [cache],
            Json(serde_json::json!({
                "schemaVersion": 1,
                "label": "pipeline",
                "message": message,
                "color": shields,
            })),
        )
            .into_response()),
        _ => Err(AppError::not_found("there is no such badge")),
    }
}

// ---- deployments ----

/// Generation → the pipeline that published it (linked only for the viewer's projects).
async fn generation_links(app: &AppState, viewer: &Viewer) -> Result<HashMap<u64, GenerationLink>> {
    let Ok(pipelines) = app.ci.pipelines(None, 200).await else {
        return Ok(HashMap::new());
    };
    let mine: HashSet<i64> = app
        .db
        .projects_of(viewer.user.id)?
        .into_iter()
        .map(|(p, _)| p.id)
        .collect();
    let names: HashMap<String, (i64, String, String)> = app
        .db
        .repository_names()?
        .into_iter()
        .map(|(ci, pid, project, repo)| (ci, (pid, project, repo)))
        .collect();
    let mut links = HashMap::new();
    for p in pipelines {
        let (Some(g), true) = (p.generation, p.published) else {
            continue;
        };
        let (repository, project) = match names.get(&p.repository) {
            Some((pid, project, repo)) if mine.contains(pid) => {
                (format!("{project}/{repo}"), Some(project.clone()))
            }
            _ => (p.repository.clone(), None),
        };
        links.entry(g).or_insert(GenerationLink {
            pipeline: p.id,
            trigger: p.trigger.as_str().to_string(),
            repository,
            project,
        });
    }
    Ok(links)
}

async fn load_deployments(app: &AppState, viewer: &Viewer) -> Result<DeploymentsView> {
    Ok(DeploymentsView {
        snapshot: app.cluster.snapshot(),
        links: generation_links(app, viewer).await?,
    })
}

async fn deployments_page(State(app): State<AppState>, viewer: Viewer) -> Result<Response> {
    let v = load_deployments(&app, &viewer).await?;
    Ok(page(pages::deployments_page(
        &chrome(&viewer, Section::Deployments),
        &v,
    )))
}

async fn deployments_fragment(State(app): State<AppState>, viewer: Viewer) -> Result<Response> {
    let v = load_deployments(&app, &viewer).await?;
    Ok(page(pages::deployments_live(&v)))
}

async fn deployments_api(
    State(app): State<AppState>,
    viewer: Viewer,
) -> Result<Json<DeploymentsView>> {
    Ok(Json(load_deployments(&app, &viewer).await?))
}

/// One `update` event (data: the snapshot version) whenever the cluster changes, at most
/// one a second per viewer; the page then fetches the fresh fragment.
async fn deployments_stream(
    State(app): State<AppState>,
    _viewer: Viewer,
) -> Sse<impl Stream<Item = std::result::Result<SseEvent, Infallible>>> {
    let mut rx = app.cluster.subscribe();
    // Only changes after the page was rendered matter.
    rx.borrow_and_update();
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.changed().await.ok()?;
        let version = rx.borrow_and_update().version;
        // Throttle: a rollout of 1,000 instances must not make every browser re-fetch 1,000
        // times; the next change after the pause is picked up by `changed()`.
        tokio::time::sleep(Duration::from_secs(1)).await;
        Some((
            Ok(SseEvent::default()
                .event("update")
                .data(version.to_string())),
            rx,
        ))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

// ---- users ----

#[derive(Deserialize)]
pub struct NewUserForm {
    pub username: String,
    pub password: String,
    /// A checkbox in the form (`on`), a boolean in JSON.
    #[serde(default)]
    pub admin: Option<serde_json::Value>,
}

async fn create_user(
    app: &AppState,
    viewer: &Viewer,
    form: &NewUserForm,
) -> Result<crate::db::User> {
    viewer.require_admin()?;
    let username = form.username.trim();
    validate_username(username)?;
    validate_password(&form.password)?;
    if app.db.user_by_name(username)?.is_some() {
        return Err(AppError::new(
            StatusCode::CONFLICT,
            format!("a user named {username} already exists; choose another name"),
        ));
    }
    let admin = match &form.admin {
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::String(s)) => s == "on" || s == "true",
        _ => false,
    };
    let password = form.password.clone();
    let cost = app.settings.password_cost;
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&password, cost))
        .await
        .map_err(|e| AppError::internal(&e))?
        .map_err(|e| AppError::internal(&e))?;
    Ok(app.db.create_user(username, &hash, admin, false)?)
}

async fn users_page(State(app): State<AppState>, viewer: Viewer) -> Result<Response> {
    viewer.require_admin()?;
    let users = app.db.users()?;
    Ok(page(pages::users_page(
        &chrome(&viewer, Section::Users),
        &users,
        &Notice::None,
        "",
    )))
}

async fn users_api(
    State(app): State<AppState>,
    viewer: Viewer,
) -> Result<Json<Vec<crate::db::User>>> {
    viewer.require_admin()?;
    Ok(Json(app.db.users()?))
}

async fn user_create(
    State(app): State<AppState>,
    CsrfForm(viewer, form): CsrfForm<NewUserForm>,
) -> Result<Response> {
    let (notice, status, kept) = match create_user(&app, &viewer, &form).await {
        Ok(u) => (
            Notice::Info(format!("Added {}.", u.username)),
            StatusCode::OK,
            String::new(),
        ),
        Err(e) if e.status.is_client_error() && e.status != StatusCode::FORBIDDEN => {
            (Notice::Error(e.message), e.status, form.username.clone())
        }
        Err(e) => return Err(e),
    };
    let users = app.db.users()?;
    Ok(page_with(
        status,
        pages::users_page(&chrome(&viewer, Section::Users), &users, &notice, &kept),
    ))
}

async fn user_create_api(
    State(app): State<AppState>,
    ApiJson(viewer, form): ApiJson<NewUserForm>,
) -> Result<Response> {
    let u = create_user(&app, &viewer, &form).await?;
    Ok((StatusCode::CREATED, Json(u)).into_response())
}

// ---- settings: tokens, password ----

#[derive(Deserialize)]
pub struct TokenForm {
    pub name: String,
}

fn create_token(
    app: &AppState,
    viewer: &Viewer,
    form: &TokenForm,
) -> Result<(crate::db::ApiToken, String)> {
    let name = form.name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(AppError::bad_request(
            "a token name must be 1-64 printable characters",
        ));
    }
    Ok(app.db.create_token(viewer.user.id, name)?)
}

fn settings(
    app: &AppState,
    viewer: &Viewer,
    status: StatusCode,
    notice: Notice,
    secret: Option<&str>,
) -> Result<Response> {
    let tokens = app.db.tokens(viewer.user.id)?;
    Ok(page_with(
        status,
        pages::settings_page(&chrome(viewer, Section::Settings), &tokens, &notice, secret),
    ))
}

async fn settings_page(State(app): State<AppState>, viewer: Viewer) -> Result<Response> {
    settings(&app, &viewer, StatusCode::OK, Notice::None, None)
}

async fn token_create(
    State(app): State<AppState>,
    CsrfForm(viewer, form): CsrfForm<TokenForm>,
) -> Result<Response> {
    match create_token(&app, &viewer, &form) {
        Ok((_, secret)) => settings(&app, &viewer, StatusCode::OK, Notice::None, Some(&secret)),
        Err(e) if e.status.is_client_error() => {
            settings(&app, &viewer, e.status, Notice::Error(e.message), None)
        }
        Err(e) => Err(e),
    }
}

async fn token_revoke(
    State(app): State<AppState>,
    Path(id): Path<i64>,
    CsrfForm(viewer, _): CsrfForm<IgnoredAny>,
) -> Result<Response> {
    if !app.db.revoke_token(viewer.user.id, id)? {
        return Err(AppError::not_found("you have no such token"));
    }
    Ok(Redirect::to("/settings").into_response())
}

async fn tokens_api(
    State(app): State<AppState>,
    viewer: Viewer,
) -> Result<Json<Vec<crate::db::ApiToken>>> {
    Ok(Json(app.db.tokens(viewer.user.id)?))
}

async fn token_create_api(
    State(app): State<AppState>,
    ApiJson(viewer, form): ApiJson<TokenForm>,
) -> Result<Response> {
    let (token, secret) = create_token(&app, &viewer, &form)?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "token": token, "secret": secret })),
    )
        .into_response())
}

async fn token_revoke_api(
    State(app): State<AppState>,
    Path(id): Path<i64>,
    ApiWrite(viewer): ApiWrite,
) -> Result<StatusCode> {
    if !app.db.revoke_token(viewer.user.id, id)? {
        return Err(AppError::not_found("you have no such token"));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct PasswordForm {
    current: String,
    new: String,
}

async fn password_change(
    State(app): State<AppState>,
    peer: auth::Peer,
    CsrfForm(viewer, form): CsrfForm<PasswordForm>,
) -> Result<Response> {
    let auth::Via::Session { token, .. } = &viewer.via else {
        return Err(AppError::bad_request(
            "sign in with a password to change it",
        ));
    };
    // Someone holding a stolen session must not be able to guess the password behind it
    // at full speed either: the same counter as the sign-in form.
    let key = SignInKey::new(&viewer.user.username, peer.0);
    let result = async {
        validate_password(&form.new)?;
        app.limits
            .passwords
            .begin(key.clone(), app.settings.clock.now())
            .map_err(|wait| {
                AppError::too_many_attempts("too many wrong passwords for this account", wait)
            })?;
        let hash = app
            .db
            .password_hash(viewer.user.id)?
            .ok_or_else(|| AppError::not_found("your account is gone"))?;
        let (current, new, cost) = (
            form.current.clone(),
            form.new.clone(),
            app.settings.password_cost,
        );
        let new_hash = tokio::task::spawn_blocking(move || {
            if !auth::verify_password(&current, &hash) {
                return Err(AppError::new(
                    StatusCode::FORBIDDEN,
                    "the current password is wrong",
                ));
            }
            auth::hash_password(&new, cost).map_err(|e| AppError::internal(&e))
        })
        .await
        .map_err(|e| AppError::internal(&e))??;
        app.limits.passwords.clear(&key);
        app.db.set_password(viewer.user.id, &new_hash, token)?;
        Ok::<_, AppError>(())
    }
    .await;
    match result {
        Ok(()) => settings(
            &app,
            &viewer,
            StatusCode::OK,
            Notice::Info("Password changed; other sessions were signed out.".into()),
            None,
        ),
        Err(e) if e.status.is_client_error() => {
            let page = settings(
                &app,
                &viewer,
                e.status,
                Notice::Error(e.message.clone()),
                None,
            )?;
            Ok(with_retry_after(page, &e))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
