//! The shared cluster's deployments: page, fragment, JSON and live stream.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::Response;
use axum::Json;
use futures::Stream;

use super::auth::Viewer;
use super::pages::{self, Section};
use super::views::*;
use crate::AppState;

use super::error::Result;

use super::common::{chrome, page};

/// Generation → the pipeline that published it (linked only for the viewer's projects).
pub(super) async fn generation_links(
    app: &AppState,
    viewer: &Viewer,
) -> Result<HashMap<u64, GenerationLink>> {
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

pub(super) async fn load_deployments(app: &AppState, viewer: &Viewer) -> Result<DeploymentsView> {
    Ok(DeploymentsView {
        snapshot: app.cluster.snapshot(),
        links: generation_links(app, viewer).await?,
    })
}

pub(super) async fn deployments_page(
    State(app): State<AppState>,
    viewer: Viewer,
) -> Result<Response> {
    let v = load_deployments(&app, &viewer).await?;
    Ok(page(pages::deployments_page(
        &chrome(&viewer, Section::Deployments),
        &v,
    )))
}

pub(super) async fn deployments_fragment(
    State(app): State<AppState>,
    viewer: Viewer,
) -> Result<Response> {
    let v = load_deployments(&app, &viewer).await?;
    Ok(page(pages::deployments_live(&v)))
}

pub(super) async fn deployments_api(
    State(app): State<AppState>,
    viewer: Viewer,
) -> Result<Json<DeploymentsView>> {
    Ok(Json(load_deployments(&app, &viewer).await?))
}

/// One `update` event (data: the snapshot version) whenever the cluster changes, at most
/// one a second per viewer; the page then fetches the fresh fragment.
pub(super) async fn deployments_stream(
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
