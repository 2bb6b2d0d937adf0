//! One error type for every handler. It carries a status and a sentence; whether the sentence
//! becomes an HTML page or `{"error": …}` is decided once, by [`render_errors`], from the
//! request path — handlers never need to know which face of the app they serve.

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use crate::db::DbError;

#[derive(Debug)]
pub struct AppError {
    pub status: StatusCode,
    pub message: String,
    redirect: Option<String>,
    /// Seconds for `Retry-After`, on a 429.
    retry_after: Option<u64>,
}

/// Marks a response as an error to be rendered by [`render_errors`].
#[derive(Debug, Clone)]
struct ErrorMessage(String);

impl AppError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> AppError {
        AppError {
            status,
            message: message.into(),
            redirect: None,
            retry_after: None,
        }
    }

    /// 429 for a key the sign-in throttle refuses; `message` should say whose attempts were
    /// refused, and the wait is appended.
    pub fn too_many_attempts(message: &str, wait: std::time::Duration) -> AppError {
        AppError {
            retry_after: Some(crate::throttle::retry_after_secs(wait)),
            ..AppError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "{message}; wait {} before trying again",
                    crate::throttle::wait_phrase(wait)
                ),
            )
        }
    }

    /// Members and strangers alike get this for a project they cannot see, so the answer
    /// does not tell whether the project exists.
    pub fn not_found(what: impl Into<String>) -> AppError {
        AppError::new(StatusCode::NOT_FOUND, what)
    }

    pub fn bad_request(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn redirect(to: &str) -> AppError {
        AppError {
            status: StatusCode::SEE_OTHER,
            message: String::new(),
            redirect: Some(to.to_string()),
            retry_after: None,
        }
    }

    /// Seconds a client is asked to wait before trying again, if any.
    pub fn retry_after(&self) -> Option<u64> {
        self.retry_after
    }

    pub fn internal(e: &dyn std::error::Error) -> AppError {
        let text = schema::error_chain(e);
        tracing::error!(error = %text, "request failed");
        AppError::new(StatusCode::INTERNAL_SERVER_ERROR, text)
    }
}

/// What every handler returns.
pub type Result<T, E = AppError> = std::result::Result<T, E>;

impl From<crate::flakes::FlakeError> for AppError {
    fn from(e: crate::flakes::FlakeError) -> Self {
        match e {
            crate::flakes::FlakeError::Db(e) => e.into(),
            e => AppError::internal(&e),
        }
    }
}

impl From<DbError> for AppError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Conflict(msg) => AppError::new(StatusCode::CONFLICT, msg),
            other => AppError::internal(&other),
        }
    }
}

impl From<crate::ci::CiError> for AppError {
    fn from(e: crate::ci::CiError) -> Self {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        AppError::new(StatusCode::BAD_GATEWAY, text)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if let Some(to) = self.redirect {
            return Redirect::to(&to).into_response();
        }
        let mut response = (self.status, self.message.clone()).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        response.extensions_mut().insert(ErrorMessage(self.message));
        response
    }
}

/// Turns error responses into JSON under `/api/` and into a page elsewhere.
pub async fn render_errors(request: Request, next: Next) -> Response {
    let api = request.uri().path().starts_with("/api/");
    let response = next.run(request).await;
    let Some(ErrorMessage(message)) = response.extensions().get::<ErrorMessage>().cloned() else {
        return response;
    };
    let status = response.status();
    let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
    let mut r = if api {
        let mut r = (status, axum::Json(serde_json::json!({ "error": message }))).into_response();
        r.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
        r
    } else {
        (
            status,
            axum::response::Html(crate::web::pages::error_page(status, &message).into_string()),
        )
            .into_response()
    };
    if let Some(v) = retry_after {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}
