//! Projects and their members: pages, forms and the JSON API.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use serde::de::IgnoredAny;
use serde::Deserialize;

use super::auth::{ApiJson, ApiWrite, CsrfForm, Viewer};
use super::error::AppError;
use super::pages::{self, Notice, Section};
use super::views::*;
use crate::db::{Project, Role};
use crate::AppState;

use super::error::Result;

use super::common::{
    chrome, load_project, page, page_with, project_for, project_rows, require_role,
};
use super::forms::{NewProjectForm, NewRepositoryForm};
use super::validate::validate_name;

pub(super) fn create_project(
    app: &AppState,
    viewer: &Viewer,
    form: &NewProjectForm,
) -> Result<Project> {
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

pub(super) async fn projects_page(State(app): State<AppState>, viewer: Viewer) -> Result<Response> {
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

pub(super) async fn projects_api(
    State(app): State<AppState>,
    viewer: Viewer,
) -> Result<Json<ProjectsView>> {
    Ok(Json(ProjectsView {
        projects: project_rows(&app, &viewer)?,
    }))
}

pub(super) async fn project_create(
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

pub(super) async fn project_create_api(
    State(app): State<AppState>,
    ApiJson(viewer, form): ApiJson<NewProjectForm>,
) -> Result<Response> {
    let p = create_project(&app, &viewer, &form)?;
    Ok((StatusCode::CREATED, Json(p)).into_response())
}

pub(super) async fn project_page(
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

pub(super) async fn project_api(
    State(app): State<AppState>,
    viewer: Viewer,
    Path(p): Path<String>,
) -> Result<Json<ProjectView>> {
    Ok(Json(load_project(&app, &viewer, &p).await?))
}

/// Re-renders the project page with an error above it, keeping what was typed.
pub(super) async fn project_page_error(
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

pub(super) fn set_member(
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

pub(super) fn remove_member(app: &AppState, viewer: &Viewer, p: &str, user: &str) -> Result<()> {
    let (project, role) = project_for(app, viewer, p)?;
    require_role(role, Role::Owner, "managing members")?;
    if !app.db.remove_member(project.id, user)? {
        return Err(AppError::not_found(format!(
            "{user} is not a member of {p}"
        )));
    }
    Ok(())
}

pub(super) async fn member_set(
    State(app): State<AppState>,
    Path(p): Path<String>,
    CsrfForm(viewer, form): CsrfForm<MemberForm>,
) -> Result<Response> {
    match set_member(&app, &viewer, &p, &form) {
        Ok(_) => Ok(Redirect::to(&format!("/projects/{p}")).into_response()),
        Err(e) => project_page_error(&app, &viewer, &p, e, &NewRepositoryForm::default()).await,
    }
}

pub(super) async fn member_set_api(
    State(app): State<AppState>,
    Path(p): Path<String>,
    ApiJson(viewer, form): ApiJson<MemberForm>,
) -> Result<Json<crate::db::Member>> {
    Ok(Json(set_member(&app, &viewer, &p, &form)?))
}

pub(super) async fn member_remove(
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

pub(super) async fn member_remove_api(
    State(app): State<AppState>,
    Path((p, user)): Path<(String, String)>,
    ApiWrite(viewer): ApiWrite,
) -> Result<StatusCode> {
    remove_member(&app, &viewer, &p, &user)?;
    Ok(StatusCode::NO_CONTENT)
}
