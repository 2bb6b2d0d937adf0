//! The stylesheet and the one script, compiled into the binary (no build step, no CDN: the
//! cluster network may have no internet).

use axum::http::header;
use axum::response::IntoResponse;

const CSS: &str = include_str!("app.css");
const JS: &str = include_str!("app.js");

pub async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        CSS,
    )
}

pub async fn js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        JS,
    )
}
