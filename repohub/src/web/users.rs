//! User administration (administrators only).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::auth::{self, ApiJson, CsrfForm, Viewer};
use super::error::AppError;
use super::pages::{self, Notice, Section};
use crate::AppState;

use super::error::Result;

use super::common::{chrome, page, page_with};
use super::validate::{validate_password, validate_username};

#[derive(Deserialize)]
pub struct NewUserForm {
    pub username: String,
    pub password: String,
    /// A checkbox in the form (`on`), a boolean in JSON.
    #[serde(default)]
    pub admin: Option<serde_json::Value>,
}

pub(super) async fn create_user(
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

pub(super) async fn users_page(State(app): State<AppState>, viewer: Viewer) -> Result<Response> {
    viewer.require_admin()?;
    let users = app.db.users()?;
    Ok(page(pages::users_page(
        &chrome(&viewer, Section::Users),
        &users,
        &Notice::None,
        "",
    )))
}

pub(super) async fn users_api(
    State(app): State<AppState>,
    viewer: Viewer,
) -> Result<Json<Vec<crate::db::User>>> {
    viewer.require_admin()?;
    Ok(Json(app.db.users()?))
}

pub(super) async fn user_create(
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

pub(super) async fn user_create_api(
    State(app): State<AppState>,
    ApiJson(viewer, form): ApiJson<NewUserForm>,
) -> Result<Response> {
    let u = create_user(&app, &viewer, &form).await?;
    Ok((StatusCode::CREATED, Json(u)).into_response())
}
