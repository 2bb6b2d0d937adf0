//! What every resource's handlers share: rendering a page, the page chrome, and the loaders that enforce project membership.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::Markup;

use super::auth::Viewer;
use super::error::AppError;
use super::pages::{Chrome, Section};
use super::views::*;
use crate::db::{Project, Repository, Role};
use crate::AppState;

use super::error::Result;

pub(super) fn page(markup: Markup) -> Response {
    Html(markup.into_string()).into_response()
}

pub(super) fn page_with(status: StatusCode, markup: Markup) -> Response {
    (status, Html(markup.into_string())).into_response()
}

pub(super) fn chrome(v: &Viewer, section: Section) -> Chrome<'_> {
    Chrome {
        username: &v.user.username,
        is_admin: v.user.is_admin,
        csrf: v.csrf(),
        section,
    }
}

/// The project if the viewer is a member, else 404 (see the module documentation).
pub(super) fn project_for(app: &AppState, viewer: &Viewer, name: &str) -> Result<(Project, Role)> {
    app.db
        .project_for(name, viewer.user.id)?
        .ok_or_else(|| AppError::not_found(format!("there is no project named {name}")))
}

pub(super) fn require_role(have: Role, need: Role, action: &str) -> Result<()> {
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

pub(super) fn cluster_summary(app: &AppState) -> ClusterSummary {
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

pub(super) fn project_rows(app: &AppState, viewer: &Viewer) -> Result<Vec<ProjectRow>> {
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

pub(super) fn badge_paths(repo: &Repository) -> (String, String) {
    (
        format!("/badge/{}.svg", repo.badge_key),
        format!("/badge/{}.json", repo.badge_key),
    )
}

/// Pipelines of the project's repositories, newest first.
pub(super) async fn project_pipelines(
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

pub(super) async fn load_project(
    app: &AppState,
    viewer: &Viewer,
    name: &str,
) -> Result<ProjectView> {
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
