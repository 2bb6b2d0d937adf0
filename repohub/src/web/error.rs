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
        }
    }

    pub fn internal(e: &dyn std::error::Error) -> AppError {
        let text = schema::error_chain(e);
        tracing::error!(error = %text, "request failed");
        AppError::new(StatusCode::INTERNAL_SERVER_ERROR, text)
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
    if api {
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
    }
}
