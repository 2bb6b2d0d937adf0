//! The status badges repositories embed (SVG), readable without signing in.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::AppError;
use super::pages::{self};
use crate::AppState;

use super::error::Result;

pub(super) async fn badge(
    State(app): State<AppState>,
    Path(file): Path<String>,
) -> Result<Response> {
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
