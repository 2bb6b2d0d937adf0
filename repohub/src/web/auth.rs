//! Who is asking: passwords (argon2id), browser sessions (cookies), API tokens (Bearer), and
//! the CSRF checks that go with cookie-authenticated writes.
//!
//! - A session cookie is `HttpOnly; SameSite=Lax; Path=/`, plus `Secure` when repohub is served
//!   over TLS (`--secure-cookies`, implied by an `https://` `--public-url`). Only a SHA-256 of
//!   the cookie value is stored.
//! - Every form carries the session's CSRF token; a form whose token does not match is
//!   refused before anything is read from it. Forms shown before sign-in (setup, login) use a
//!   double-submit cookie instead. JSON writes with a session cookie need the token in
//!   `X-CSRF-Token`; with a Bearer token they need nothing more, as no browser sends one on
//!   its own.
//! - API tokens are random, shown once, and stored as SHA-256.
//! - Failed passwords and API tokens are counted, and guessing is refused with 429 after a
//!   few failures ([`crate::throttle`]).

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use super::error::AppError;
use crate::db::User;
use crate::AppState;

/// Largest request body accepted; forms and JSON here are small.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub const SESSION_COOKIE: &str = "pcr_session";
/// Double-submit cookie for the forms shown before sign-in.
pub const ANON_CSRF_COOKIE: &str = "pcr_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How long a session lasts.
pub const SESSION_LIFETIME_MS: u64 = 14 * 24 * 3600 * 1000;

pub use crate::password::{hash_password, verify_password, HashError, PasswordCost};

/// Compares secrets in time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    use sha2::{Digest, Sha256};
    Sha256::digest(a.as_bytes()) == Sha256::digest(b.as_bytes())
}

/// The value of cookie `name`.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value with the attributes every repohub cookie has.
pub fn set_cookie(name: &str, value: &str, max_age_s: u64, secure: bool) -> String {
    format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_s}{}",
        if secure { "; Secure" } else { "" }
    )
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// The client's address, when the server was started with `ConnectInfo` (`pcr-repohub` is;
/// a router driven in-process is not).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub Option<IpAddr>);

impl Peer {
    pub fn of(parts: &Parts) -> Peer {
        Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip()),
        )
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Peer::of(parts))
    }
}

/// The owner of API token `token`, counting a wrong token against the client's address and
/// refusing with 429, without looking the token up, once the address has failed too often.
pub fn token_user(state: &AppState, peer: Peer, token: &str) -> Result<Option<User>, AppError> {
    let key = peer.0.map(crate::throttle::address_key);
    let now = state.settings.clock.now();
    if let Some(key) = &key {
        state.limits.tokens.check(key, now).map_err(|wait| {
            AppError::too_many_attempts("too many wrong API tokens from your address", wait)
        })?;
    }
    let user = state.db.user_by_token(token)?;
    if let (None, Some(key)) = (&user, key) {
        state.limits.tokens.record_failure(key, now);
    }
    Ok(user)
}

/// How the user proved who they are.
#[derive(Debug, Clone)]
pub enum Via {
    Session { token: String, csrf: String },
    Token,
}

/// The signed-in user. Extracting it refuses anonymous requests: pages redirect to the
/// sign-in form (or first-run setup), the API answers 401.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub user: User,
    pub via: Via,
}

impl Viewer {
    /// The CSRF token to put in forms (empty for token-authenticated requests, which get JSON).
    pub fn csrf(&self) -> &str {
        match &self.via {
            Via::Session { csrf, .. } => csrf,
            Via::Token => "",
        }
    }

    pub fn require_admin(&self) -> Result<(), AppError> {
        if self.user.is_admin {
            Ok(())
        } else {
            Err(AppError::new(
                StatusCode::FORBIDDEN,
                "only administrators manage users",
            ))
        }
    }
}

/// Signed-in user, if any; never refuses.
pub async fn current(
    state: &AppState,
    headers: &HeaderMap,
    peer: Peer,
) -> Result<Option<Viewer>, AppError> {
    if let Some(token) = bearer(headers) {
        // A wrong Bearer token is an error, not "anonymous": a script should learn its token
        // is bad rather than get a sign-in page.
        return match token_user(state, peer, token)? {
            Some(user) => Ok(Some(Viewer {
                user,
                via: Via::Token,
            })),
            None => Err(AppError::new(
                StatusCode::UNAUTHORIZED,
                "the API token is not valid; create one under Settings",
            )),
        };
    }
    if let Some(token) = cookie(headers, SESSION_COOKIE) {
        if let Some(session) = state.db.session(token)? {
            return Ok(Some(Viewer {
                user: session.user,
                via: Via::Session {
                    token: token.to_string(),
                    csrf: session.csrf,
                },
            }));
        }
    }
    Ok(None)
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        if let Some(v) = current(state, &parts.headers, Peer::of(parts)).await? {
            return Ok(v);
        }
        let path = parts.uri.path();
        if path.starts_with("/api/") {
            return Err(AppError::new(
                StatusCode::UNAUTHORIZED,
                "sign in first: send `Authorization: Bearer <API token>`",
            ));
        }
        if state.db.user_count()? == 0 {
            return Err(AppError::redirect("/setup"));
        }
        let next = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        Err(AppError::redirect(&format!(
            "/login?next={}",
            super::format::urlencode(next)
        )))
    }
}

pub fn body_rejection(status: StatusCode, text: String) -> AppError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        AppError::new(
            status,
            format!(
                "the request is larger than the {} KiB repohub accepts",
                MAX_BODY_BYTES / 1024
            ),
        )
    } else {
        AppError::new(status, format!("the request could not be read: {text}"))
    }
}

/// A form posted by a signed-in user, its CSRF token checked before anything else in the
/// form is looked at.
pub struct CsrfForm<T>(pub Viewer, pub T);

/// The body of a form, as pairs; refuses what is not `application/x-www-form-urlencoded`.
async fn form_body(req: Request, state: &AppState) -> Result<bytes_pairs::Body, AppError> {
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let bytes = axum::body::Bytes::from_request(req, state)
        .await
        .map_err(|e| body_rejection(e.status(), e.body_text()))?;
    if !is_form {
        return Err(AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "forms must be sent as application/x-www-form-urlencoded",
        ));
    }
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes)
        .map_err(|e| AppError::bad_request(format!("the form could not be read: {e}")))?;
    Ok(bytes_pairs::Body { bytes, pairs })
}

mod bytes_pairs {
    pub struct Body {
        pub bytes: axum::body::Bytes,
        pub pairs: Vec<(String, String)>,
    }

    impl Body {
        pub fn field(&self, name: &str) -> &str {
            self.pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or("")
        }
    }
}

fn parse_form<T: DeserializeOwned>(body: &bytes_pairs::Body) -> Result<T, AppError> {
    serde_urlencoded::from_bytes(&body.bytes)
        .map_err(|e| AppError::bad_request(format!("the form could not be read: {e}")))
}

impl<T: DeserializeOwned + Send> FromRequest<AppState> for CsrfForm<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, AppError> {
        let (mut parts, body) = req.into_parts();
        let viewer = Viewer::from_request_parts(&mut parts, state).await?;
        let body = form_body(Request::from_parts(parts, body), state).await?;
        if viewer.csrf().is_empty() || !same_secret(body.field("csrf"), viewer.csrf()) {
            return Err(csrf_refused());
        }
        Ok(CsrfForm(viewer, parse_form(&body)?))
    }
}

fn csrf_refused() -> AppError {
    AppError::new(
        StatusCode::FORBIDDEN,
        "the form's security token does not match your session; reload the page and try again",
    )
}

/// A form shown before sign-in (setup, login), checked against the double-submit cookie.
pub struct AnonForm<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequest<AppState> for AnonForm<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, AppError> {
        let expected = cookie(req.headers(), ANON_CSRF_COOKIE).map(str::to_string);
        let body = form_body(req, state).await?;
        match expected {
            Some(e) if !e.is_empty() && same_secret(&e, body.field("csrf")) => {
                Ok(AnonForm(parse_form(&body)?))
            }
            _ => Err(csrf_refused()),
        }
    }
}

/// A JSON write through the API. With a session cookie the `X-CSRF-Token` header must match.
pub struct ApiJson<T>(pub Viewer, pub T);

impl<T: DeserializeOwned + Send> FromRequest<AppState> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, AppError> {
        let (mut parts, body) = req.into_parts();
        let viewer = Viewer::from_request_parts(&mut parts, state).await?;
        check_api_csrf(&viewer, &parts.headers)?;
        let req = Request::from_parts(parts, body);
        let axum::Json(value) = axum::Json::<T>::from_request(req, state)
            .await
            .map_err(|e| body_rejection(e.status(), e.body_text()))?;
        Ok(ApiJson(viewer, value))
    }
}

/// A body-less API write (DELETE): the same CSRF rule as [`ApiJson`].
pub struct ApiWrite(pub Viewer);

impl FromRequestParts<AppState> for ApiWrite {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let viewer = Viewer::from_request_parts(parts, state).await?;
        check_api_csrf(&viewer, &parts.headers)?;
        Ok(ApiWrite(viewer))
    }
}

fn check_api_csrf(viewer: &Viewer, headers: &HeaderMap) -> Result<(), AppError> {
    if let Via::Session { csrf, .. } = &viewer.via {
        let sent = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !same_secret(sent, csrf) {
            return Err(AppError::new(
                StatusCode::FORBIDDEN,
                "API writes with a session cookie need the X-CSRF-Token header; scripts should use a Bearer token",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn password_round_trip() {
        let cost = PasswordCost {
            memory_kib: 64,
            passes: 1,
        };
        let h = hash_password("correct horse", cost).unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=1; pcr_session=abc; b=2".parse().unwrap());
        assert_eq!(cookie(&h, "pcr_session"), Some("abc"));
        assert_eq!(cookie(&h, "pcr"), None);
        let c = set_cookie("x", "y", 10, true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Lax") && c.ends_with("Secure"));
        assert!(!set_cookie("x", "y", 10, false).contains("Secure"));
    }
}
