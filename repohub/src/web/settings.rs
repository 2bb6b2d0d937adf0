//! A user's own settings: API tokens and password.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use serde::de::IgnoredAny;
use serde::Deserialize;

use super::auth::{self, ApiJson, ApiWrite, CsrfForm, Viewer};
use super::error::AppError;
use super::pages::{self, Notice, Section};
use crate::throttle::SignInKey;
use crate::AppState;

use super::error::Result;

use super::common::{chrome, page_with};
use super::session::with_retry_after;
use super::validate::validate_password;

#[derive(Deserialize)]
pub struct TokenForm {
    pub name: String,
}

pub(super) fn create_token(
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

pub(super) fn settings(
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

pub(super) async fn settings_page(State(app): State<AppState>, viewer: Viewer) -> Result<Response> {
    settings(&app, &viewer, StatusCode::OK, Notice::None, None)
}

pub(super) async fn token_create(
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

pub(super) async fn token_revoke(
    State(app): State<AppState>,
    Path(id): Path<i64>,
    CsrfForm(viewer, _): CsrfForm<IgnoredAny>,
) -> Result<Response> {
    if !app.db.revoke_token(viewer.user.id, id)? {
        return Err(AppError::not_found("you have no such token"));
    }
    Ok(Redirect::to("/settings").into_response())
}

pub(super) async fn tokens_api(
    State(app): State<AppState>,
    viewer: Viewer,
) -> Result<Json<Vec<crate::db::ApiToken>>> {
    Ok(Json(app.db.tokens(viewer.user.id)?))
}

pub(super) async fn token_create_api(
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

pub(super) async fn token_revoke_api(
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
pub(super) struct PasswordForm {
    current: String,
    new: String,
}

pub(super) async fn password_change(
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
