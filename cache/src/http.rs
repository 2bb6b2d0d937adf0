//! The HTTP face of the cache: Nix's binary-cache protocol, the pin API, metrics, and the
//! token check in front of them.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use futures::StreamExt;
use sha2::{Digest, Sha256};

use crate::ingest::IngestError;
use crate::metrics;
use crate::names::{NarFileName, StoreHash};
use crate::store::{Cache, NarBody, PinError, UploadError};

/// Largest narinfo accepted. Real ones are well under 1 KiB plus ~60 bytes per reference.
const MAX_NARINFO: usize = 1024 * 1024;
/// Read size when streaming NARs: large enough that per-read overhead (each read is a hop to
/// the blocking pool) is noise next to the copy, small enough to keep memory flat.
const STREAM_CHUNK: usize = 256 * 1024;

const NARINFO_TYPE: &str = "text/x-nix-narinfo";
const NAR_TYPE: &str = "application/x-nix-nar";

/// Who may do what. Tokens are kept as SHA-256 digests and compared in constant time, so
/// neither memory dumps nor response timing give them away.
#[derive(Clone, Default)]
pub struct Auth {
    upload: Vec<[u8; 32]>,
    read: Vec<[u8; 32]>,
}

impl Auth {
    /// `upload` tokens may write (and read); when `read` is non-empty, reads need one of
    /// `read` or `upload` too, otherwise reads are public.
    pub fn new(upload: &[String], read: &[String]) -> Auth {
        let digest = |t: &String| -> [u8; 32] { Sha256::digest(t.as_bytes()).into() };
        Auth {
            upload: upload.iter().map(digest).collect(),
            read: read.iter().map(digest).collect(),
        }
    }

    fn matches(tokens: &[[u8; 32]], candidate: &[u8; 32]) -> bool {
        tokens.iter().fold(false, |found, t| {
            let diff = t
                .iter()
                .zip(candidate)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            found | (diff == 0)
        })
    }

    fn allows(&self, write: bool, headers: &HeaderMap) -> bool {
        if !write && self.read.is_empty() {
            return true;
        }
        let Some(token) = presented_token(headers) else {
            return false;
        };
        let candidate: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        Auth::matches(&self.upload, &candidate) || (!write && Auth::matches(&self.read, &candidate))
    }
}

/// The token of `Authorization: Bearer <token>`, or the password of `Basic` credentials (what
/// Nix sends from a netrc file; the user name is ignored).
fn presented_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        Some(rest.trim().to_owned())
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = BASE64.decode(rest.trim()).ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        decoded
            .split_once(':')
            .map(|(_, password)| password.to_owned())
    } else {
        None
    }
}

/// Everything a request handler needs.
pub struct App {
    pub cache: Arc<Cache>,
    pub priority: u32,
    pub auth: Auth,
}

/// The cache's routes, ready to serve or to drive in-process with `tower::ServiceExt::oneshot`.
pub fn router(app: Arc<App>) -> Router {
    let router = Router::new()
        .route("/nix-cache-info", get(cache_info).put(put_cache_info))
        .route("/nar/{file}", get(get_nar).head(head_nar).put(put_nar))
        .route("/{file}", get(get_narinfo).put(put_narinfo))
        .route("/metrics", get(metrics))
        .route("/api/pins", get(list_pins))
        .route("/api/pins/{name}", put(put_pin).delete(delete_pin))
        .route_layer(middleware::from_fn_with_state(app.clone(), authorize))
        .route("/healthz", get(|| async { "ok\n" }));
    // Only layered in when it would log: even an idle middleware costs a boxed future per request.
    let router = if tracing::enabled!(tracing::Level::DEBUG) {
        router.layer(middleware::from_fn(log_request))
    } else {
        router
    };
    router.with_state(app)
}

/// One debug line per request: the exchange with `nix copy` can be followed with
/// `RUST_LOG=cache=debug`.
async fn log_request(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    tracing::debug!(
        %method,
        %path,
        status = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}

async fn authorize(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let write = !matches!(*req.method(), Method::GET | Method::HEAD);
    if app.auth.allows(write, req.headers()) {
        return next.run(req).await;
    }
    metrics::inc(&app.cache.metrics.unauthorized);
    tracing::warn!(method = %req.method(), path = %req.uri().path(), "refused: no valid token");
    let what = if write { "uploads" } else { "reads" };
    let mut response = (
        StatusCode::UNAUTHORIZED,
        format!(
            "{what} need a token: send `Authorization: Bearer <token>`, or give the token as \
             the password for this host in Nix's netrc-file\n"
        ),
    )
        .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"pcr-cache\""),
    );
    response
}

/// A refusal or failure, rendered as a status and a sentence.
struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        if self.0.is_server_error() {
            tracing::error!(status = %self.0, error = %self.1, "request failed");
        } else {
            tracing::info!(status = %self.0, reason = %self.1, "request refused");
        }
        (self.0, format!("{}\n", self.1)).into_response()
    }
}

use crate::error_chain as chain;

impl From<crate::Error> for Failure {
    fn from(e: crate::Error) -> Failure {
        Failure(StatusCode::INTERNAL_SERVER_ERROR, chain(&e))
    }
}

impl From<UploadError> for Failure {
    fn from(e: UploadError) -> Failure {
        let status = match &e {
            UploadError::Ingest(IngestError::Disk(_)) | UploadError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            UploadError::NarMissing(_)
            | UploadError::MissingReferences(_)
            | UploadError::Conflict(_) => StatusCode::CONFLICT,
            _ => StatusCode::BAD_REQUEST,
        };
        Failure(status, chain(&e))
    }
}

impl From<PinError> for Failure {
    fn from(e: PinError) -> Failure {
        let status = match &e {
            PinError::Name(_) | PinError::Path(..) => StatusCode::BAD_REQUEST,
            PinError::NotInCache(_) => StatusCode::CONFLICT,
            PinError::Unknown(_) => StatusCode::NOT_FOUND,
            PinError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Failure(status, chain(&e))
    }
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

async fn cache_info(State(app): State<Arc<App>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/x-nix-cache-info")],
        format!(
            "StoreDir: {}\nWantMassQuery: 1\nPriority: {}\n",
            app.cache.store_dir(),
            app.priority
        ),
    )
        .into_response()
}

/// Nix writes `/nix-cache-info` when it finds none; ours always exists, so a write is only
/// accepted if it agrees on the store directory.
async fn put_cache_info(State(app): State<Arc<App>>, body: String) -> Result<StatusCode, Failure> {
    let store_dir = body
        .lines()
        .find_map(|l| l.strip_prefix("StoreDir: "))
        .unwrap_or(app.cache.store_dir());
    if store_dir != app.cache.store_dir() {
        return Err(Failure(
            StatusCode::BAD_REQUEST,
            format!(
                "this cache holds paths of {}, not {store_dir}",
                app.cache.store_dir()
            ),
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn get_narinfo(
    State(app): State<Arc<App>>,
    method: Method,
    Path(file): Path<String>,
) -> Result<Response, Failure> {
    let Some(hash) = StoreHash::from_narinfo_file(&file) else {
        return Ok(not_found());
    };
    // A HEAD is a pusher asking whether to upload, not a client using the path.
    match app.cache.narinfo(&hash, method == Method::GET)? {
        Some(text) => Ok(([(header::CONTENT_TYPE, NARINFO_TYPE)], text).into_response()),
        None => Ok(not_found()),
    }
}

async fn put_narinfo(
    State(app): State<Arc<App>>,
    Path(file): Path<String>,
    body: Body,
) -> Result<StatusCode, Failure> {
    let Some(hash) = StoreHash::from_narinfo_file(&file) else {
        return Err(Failure(
            StatusCode::BAD_REQUEST,
            format!("{file:?} is not a narinfo name: uploads go to <32-character hash>.narinfo"),
        ));
    };
    let bytes = axum::body::to_bytes(body, MAX_NARINFO).await.map_err(|_| {
        Failure(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("narinfo is larger than {MAX_NARINFO} bytes or its body broke off"),
        )
    })?;
    let text = String::from_utf8(bytes.to_vec())
        .map_err(|_| Failure(StatusCode::BAD_REQUEST, "narinfo is not UTF-8".to_owned()))?;
    app.cache.upload_narinfo(hash, text).await?;
    Ok(StatusCode::OK)
}

async fn head_nar(
    State(app): State<Arc<App>>,
    Path(file): Path<String>,
) -> Result<Response, Failure> {
    if NarFileName::parse(&file).is_none() {
        return Ok(not_found());
    }
    let Some(row) = app.cache.nar(&file)? else {
        return Ok(not_found());
    };
    let len = if row.file == file {
        row.file_size
    } else {
        row.nar_size
    };
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(NAR_TYPE)),
            (header::CONTENT_LENGTH, HeaderValue::from(len)),
            (header::ACCEPT_RANGES, HeaderValue::from_static("bytes")),
        ],
        Body::empty(),
    )
        .into_response())
}

async fn get_nar(
    State(app): State<Arc<App>>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    if NarFileName::parse(&file).is_none() {
        return Ok(not_found());
    }
    let Some(body) = app.cache.open_nar(&file).await? else {
        metrics::inc(&app.cache.metrics.nar_misses);
        return Ok(not_found());
    };
    metrics::inc(&app.cache.metrics.nar_hits);
    let counter = Arc::clone(&app);
    let count = move |chunk: &std::io::Result<Bytes>| {
        if let Ok(b) = chunk {
            metrics::add(&counter.cache.metrics.nar_bytes_served, b.len() as u64);
        }
    };
    match body {
        NarBody::File { file, len } => {
            let range = headers
                .get(header::RANGE)
                .and_then(|v| v.to_str().ok())
                .map_or(ByteRange::Full, |r| parse_range(r, len));
            let (status, start, count_bytes) = match range {
                ByteRange::Full => (StatusCode::OK, 0, len),
                ByteRange::Partial(start, end) => {
                    (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
                }
                ByteRange::Unsatisfiable => {
                    return Ok((
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        [(header::CONTENT_RANGE, format!("bytes */{len}"))],
                    )
                        .into_response());
                }
            };
            let reader = move || -> std::io::Result<_> {
                use std::io::{Read, Seek};
                let mut file = file;
                file.seek(std::io::SeekFrom::Start(start))?;
                Ok(file.take(count_bytes))
            };
            let stream = blocking_stream(reader).inspect(count);
            let mut response = Response::new(Body::from_stream(stream));
            *response.status_mut() = status;
            let h = response.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(NAR_TYPE));
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(count_bytes));
            h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            if status == StatusCode::PARTIAL_CONTENT {
                let end = start + count_bytes - 1;
                if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
                    h.insert(header::CONTENT_RANGE, v);
                }
            }
            Ok(response)
        }
        NarBody::Decompressed { path, nar_size } => {
            let reader =
                move || std::fs::File::open(&path).and_then(zstd::stream::read::Decoder::new);
            let stream = blocking_stream(reader).inspect(count);
            let mut response = Response::new(Body::from_stream(stream));
            let h = response.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(NAR_TYPE));
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(nar_size));
            Ok(response)
        }
    }
}

/// The bytes of the reader `open` makes, read on the blocking pool by one task per response.
///
/// One task that reads straight into each chunk it sends beats `tokio::fs::File`, which pays a
/// hop to the blocking pool and an extra copy for every read. The bounded channel keeps at most
/// a few chunks in memory whatever the size of the file, and a client that goes away closes it,
/// which ends the task.
fn blocking_stream<R, F>(open: F) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send
where
    R: std::io::Read,
    F: FnOnce() -> std::io::Result<R> + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut reader = match open() {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        loop {
            let mut chunk = Vec::with_capacity(STREAM_CHUNK);
            match (&mut reader)
                .take(STREAM_CHUNK as u64)
                .read_to_end(&mut chunk)
            {
                Ok(0) => return,
                Ok(_) => {
                    if tx.blocking_send(Ok(Bytes::from(chunk))).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

async fn put_nar(
    State(app): State<Arc<App>>,
    Path(file): Path<String>,
    body: Body,
) -> Result<StatusCode, Failure> {
    let Some(name) = NarFileName::parse(&file) else {
        return Err(Failure(
            StatusCode::BAD_REQUEST,
            format!("{file:?} is not a NAR name: uploads go to nar/<nixbase32 sha256 of the file>.nar[.xz|.zst]"),
        ));
    };
    app.cache.upload_nar(name, body.into_data_stream()).await?;
    Ok(StatusCode::OK)
}

async fn metrics(State(app): State<Arc<App>>) -> Result<Response, Failure> {
    let (paths, bytes) = app.cache.totals()?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.cache.metrics.render(paths, bytes),
    )
        .into_response())
}

async fn list_pins(State(app): State<Arc<App>>) -> Result<Response, Failure> {
    let pins: serde_json::Map<String, serde_json::Value> = app
        .cache
        .pins()?
        .into_iter()
        .map(|(name, paths)| (name, paths.into()))
        .collect();
    Ok(Json(pins).into_response())
}

async fn put_pin(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<StatusCode, Failure> {
    let paths: Vec<String> = serde_json::from_slice(&body).map_err(|e| {
        Failure(
            StatusCode::BAD_REQUEST,
            format!("the body must be a JSON list of store paths: {e}"),
        )
    })?;
    let cache = Arc::clone(&app.cache);
    tokio::task::spawn_blocking(move || cache.pin(&name, &paths))
        .await
        .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_pin(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<StatusCode, Failure> {
    let cache = Arc::clone(&app.cache);
    tokio::task::spawn_blocking(move || cache.unpin(&name))
        .await
        .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(StatusCode::NO_CONTENT)
}

/// A request's `Range`, resolved against a file of known length.
#[derive(Debug, PartialEq, Eq)]
pub enum ByteRange {
    /// No usable range: send everything (RFC 9110 lets a server ignore a range it does not
    /// support, such as several ranges at once).
    Full,
    /// Inclusive first and last byte.
    Partial(u64, u64),
    Unsatisfiable,
}

pub fn parse_range(header: &str, len: u64) -> ByteRange {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return ByteRange::Full;
    };
    if spec.contains(',') {
        return ByteRange::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return ByteRange::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // Suffix range: the last N bytes.
        return match last.parse::<u64>() {
            Ok(0) => ByteRange::Unsatisfiable,
            Ok(_) if len == 0 => ByteRange::Unsatisfiable,
            Ok(n) => ByteRange::Partial(len.saturating_sub(n), len - 1),
            Err(_) => ByteRange::Full,
        };
    }
    let Ok(start) = first.parse::<u64>() else {
        return ByteRange::Full;
    };
    let end = if last.is_empty() {
        len.saturating_sub(1)
    } else {
        match last.parse::<u64>() {
            Ok(end) if end >= start => end.min(len.saturating_sub(1)),
            _ => return ByteRange::Full,
        }
    };
    if start >= len {
        return ByteRange::Unsatisfiable;
    }
    ByteRange::Partial(start, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use ByteRange::*;
        let table = [
            ("bytes=0-99", 1000, Partial(0, 99)),
            ("bytes=10-", 1000, Partial(10, 999)),
            ("bytes=-100", 1000, Partial(900, 999)),
            ("bytes=-5000", 1000, Partial(0, 999)),
            ("bytes=990-5000", 1000, Partial(990, 999)),
            ("bytes=999-999", 1000, Partial(999, 999)),
            ("bytes=1000-", 1000, Unsatisfiable),
            ("bytes=-0", 1000, Unsatisfiable),
            ("bytes=0-", 0, Unsatisfiable),
            ("bytes=5-1", 1000, Full),
            ("bytes=0-1,5-6", 1000, Full),
            ("items=0-1", 1000, Full),
            ("bytes=x-1", 1000, Full),
        ];
        for (header, len, expected) in table {
            assert_eq!(parse_range(header, len), expected, "{header} of {len}");
        }
    }

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(auth).expect("ascii"),
        );
        h
    }

    #[test]
    fn tokens() {
        let auth = Auth::new(&["up".into()], &[]);
        let basic = |user_pass: &str| format!("Basic {}", BASE64.encode(user_pass));
        assert!(auth.allows(false, &HeaderMap::new()), "reads are public");
        assert!(!auth.allows(true, &HeaderMap::new()));
        assert!(auth.allows(true, &headers("Bearer up")));
        assert!(auth.allows(true, &headers("bearer up")));
        assert!(auth.allows(true, &headers(&basic("ci:up"))));
        assert!(!auth.allows(true, &headers("Bearer upp")));
        assert!(!auth.allows(true, &headers(&basic("up:x"))));
        assert!(!auth.allows(true, &headers("Digest up")));

        let private = Auth::new(&["up".into()], &["rd".into()]);
        assert!(!private.allows(false, &HeaderMap::new()));
        assert!(private.allows(false, &headers("Bearer rd")));
        assert!(private.allows(false, &headers("Bearer up")));
        assert!(
            !private.allows(true, &headers("Bearer rd")),
            "a read token cannot upload"
        );
    }
}
