//! Repositories: creating one (with its pcr-ci twin), and its page with commits and flake analysis.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use serde::Deserialize;

use super::auth::{ApiJson, CsrfForm, Viewer};
use super::error::AppError;
use super::format;
use super::pages::{self, Section};
use super::views::*;
use crate::db::{RepoKind, Repository, Role};
use crate::AppState;

use super::error::Result;

use super::common::{badge_paths, chrome, page, project_for, require_role};
use super::forms::NewRepositoryForm;
use super::projects::project_page_error;
use super::validate::{validate_branch, validate_name, validate_remote};

/// Validates everything, records the repository, then asks pcr-ci to create it; if pcr-ci
/// refuses or is unreachable the record is removed again, so a refused request stores nothing.
pub(super) async fn create_repository(
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

pub(super) async fn repository_create(
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

pub(super) async fn repository_create_api(
    State(app): State<AppState>,
    Path(p): Path<String>,
    ApiJson(viewer, form): ApiJson<NewRepositoryForm>,
) -> Result<Response> {
    let r = create_repository(&app, &viewer, &p, &form).await?;
    Ok((StatusCode::CREATED, Json(r)).into_response())
}

#[derive(Deserialize)]
pub(super) struct CommitQuery {
    commit: Option<String>,
}

/// Where people reach repohub: `--public-url`, else what their request was addressed to.
pub(super) fn origin(app: &AppState, headers: &HeaderMap) -> String {
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

pub(super) async fn load_repository(
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

pub(super) async fn flake_view(app: &AppState, repo: &Repository, sha: &str) -> Result<FlakeView> {
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

pub(super) async fn repository_page(
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

pub(super) async fn repository_api(
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
