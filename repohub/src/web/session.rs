//! Home, first-run setup, sign-in and sign-out.

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use maud::Markup;
use serde::de::IgnoredAny;
use serde::Deserialize;

use super::auth::{self, AnonForm, CsrfForm, Viewer};
use super::error::AppError;
use super::pages::{self, Notice, Section};
use super::views::*;
use crate::throttle::SignInKey;
use crate::AppState;

use super::error::Result;

use super::common::{chrome, cluster_summary, page, page_with, project_rows};
use super::validate::{validate_password, validate_username};

pub(super) async fn home(State(app): State<AppState>, viewer: Viewer) -> Result<Response> {
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

pub(super) async fn me_api(State(app): State<AppState>, viewer: Viewer) -> Result<Json<HomeView>> {
    Ok(Json(HomeView {
        projects: project_rows(&app, &viewer)?,
        cluster: cluster_summary(&app),
        user: viewer.user,
    }))
}

/// A page with a fresh double-submit CSRF cookie for forms shown before sign-in.
pub(super) fn anon_form_page(
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

pub(super) fn signed_in_redirect(app: &AppState, user_id: i64, to: &str) -> Result<Response> {
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
pub(super) struct SetupForm {
    username: String,
    password: String,
}

pub(super) async fn setup_page(State(app): State<AppState>) -> Result<Response> {
    if app.db.user_count()? > 0 {
        return Ok(Redirect::to("/login").into_response());
    }
    Ok(anon_form_page(&app, StatusCode::OK, |csrf| {
        pages::setup_page(csrf, &Notice::None, "admin")
    }))
}

pub(super) async fn setup_submit(
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
pub(super) struct NextQuery {
    next: Option<String>,
}

/// Only local paths: `?next=https://evil.example` must not turn sign-in into a redirector.
pub(super) fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        _ => "/".to_string(),
    }
}

pub(super) async fn login_page(
    State(app): State<AppState>,
    Query(q): Query<NextQuery>,
) -> Result<Response> {
    if app.db.user_count()? == 0 {
        return Ok(Redirect::to("/setup").into_response());
    }
    let next = safe_next(q.next.as_deref());
    Ok(anon_form_page(&app, StatusCode::OK, |csrf| {
        pages::login_page(csrf, &Notice::None, "", &next)
    }))
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
}

/// A page answering a refused form, with the `Retry-After` the error asks for.
pub(super) fn with_retry_after(mut response: Response, e: &AppError) -> Response {
    if let Some(secs) = e.retry_after() {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

pub(super) async fn login_submit(
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

pub(super) async fn logout(
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
