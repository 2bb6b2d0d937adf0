//! A project's pipelines, one pipeline, its log (plain and as a live event stream).

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::Stream;

use super::auth::Viewer;
use super::error::AppError;
use super::pages::{self, Section};
use super::views::*;
use crate::AppState;

use super::error::Result;

use super::common::{chrome, page, project_for, project_pipelines};

pub(super) async fn load_pipelines(
    app: &AppState,
    viewer: &Viewer,
    p: &str,
) -> Result<PipelinesView> {
    let (project, _) = project_for(app, viewer, p)?;
    let repos = app.db.repositories(project.id)?;
    let (pipelines, ci_error) = project_pipelines(app, &repos, 100).await;
    Ok(PipelinesView {
        project: project.name,
        pipelines,
        ci_error,
    })
}

pub(super) async fn pipelines_page(
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

pub(super) async fn pipelines_api(
    State(app): State<AppState>,
    viewer: Viewer,
    Path(p): Path<String>,
) -> Result<Json<PipelinesView>> {
    Ok(Json(load_pipelines(&app, &viewer, &p).await?))
}

/// The pipeline if it belongs to one of the project's repositories (and the viewer is a
/// member); 404 otherwise, whether or not the pipeline exists.
pub(super) async fn load_pipeline(
    app: &AppState,
    viewer: &Viewer,
    p: &str,
    id: u64,
) -> Result<PipelineView> {
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

pub(super) async fn pipeline_page(
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

pub(super) async fn pipeline_api(
    State(app): State<AppState>,
    viewer: Viewer,
    Path((p, id)): Path<(String, u64)>,
) -> Result<Json<PipelineView>> {
    Ok(Json(load_pipeline(&app, &viewer, &p, id).await?))
}

/// The whole log as text, with a header line where each step begins.
pub(super) async fn pipeline_log(
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
pub(super) async fn pipeline_stream(
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
pub(super) const LOG_WAIT: Duration = Duration::from_secs(20);

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
