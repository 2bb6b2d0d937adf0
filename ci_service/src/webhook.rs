//! Push webhooks from Gitea, Forgejo and GitHub: signature verification and the part of the
//! payload a pipeline needs.
//!
//! Both sign the raw body with HMAC-SHA256 under the shared secret: GitHub sends
//! `X-Hub-Signature-256: sha256=<hex>`, Gitea/Forgejo `X-Gitea-Signature: <hex>`. The
//! comparison is constant-time, and nothing in the body is looked at before the signature
//! checks out.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the request carries no X-Hub-Signature-256 or X-Gitea-Signature header")]
    Missing,
    #[error("the signature header is not hex-encoded HMAC-SHA256")]
    Malformed,
    #[error("the signature does not match the body under the configured secret")]
    Mismatch,
    #[error("this pcr-ci has no webhook secret configured, so it accepts no webhook")]
    NoSecret,
}

/// HMAC-SHA256 of `body` under `secret`, hex-encoded: what a sender puts in its header.
pub fn sign(secret: &str, body: &[u8]) -> String {
    // HMAC takes keys of any length; new_from_slice cannot fail for it.
    let mut mac = <Hmac<Sha256>>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Checks the request's signature. `header` looks a header up by (lower-case) name.
pub fn verify<'a>(
    secret: Option<&str>,
    body: &[u8],
    header: impl Fn(&str) -> Option<&'a str>,
) -> Result<(), SignatureError> {
    let secret = secret
        .filter(|s| !s.is_empty())
        .ok_or(SignatureError::NoSecret)?;
    let hex_sig = if let Some(v) = header("x-hub-signature-256") {
        v.trim()
            .strip_prefix("sha256=")
            .ok_or(SignatureError::Malformed)?
    } else if let Some(v) = header("x-gitea-signature").or_else(|| header("x-forgejo-signature")) {
        v.trim()
    } else {
        return Err(SignatureError::Missing);
    };
    let given = hex::decode(hex_sig).map_err(|_| SignatureError::Malformed)?;
    let mut mac =
        <Hmac<Sha256>>::new_from_slice(secret.as_bytes()).map_err(|_| SignatureError::Malformed)?;
    mac.update(body);
    mac.verify_slice(&given)
        .map_err(|_| SignatureError::Mismatch)
}

/// What kind of delivery a request is, from `X-GitHub-Event` / `X-Gitea-Event`.
pub fn event_kind<'a>(header: impl Fn(&str) -> Option<&'a str>) -> &'a str {
    header("x-github-event")
        .or_else(|| header("x-gitea-event"))
        .or_else(|| header("x-forgejo-event"))
        .unwrap_or("push")
}

/// The fields of a push payload a run needs (GitHub and Gitea send the same ones).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PushEvent {
    #[serde(rename = "ref")]
    pub ref_name: String,
    /// The commit the ref points at after the push; all zeros when it was deleted.
    pub after: String,
    #[serde(default)]
    pub repository: Option<PushRepository>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PushRepository {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub full_name: String,
    #[serde(default)]
    pub clone_url: String,
}

/// A webhook body that is not a push delivery.
#[derive(Debug, thiserror::Error)]
#[error("the body is not a push event (needs `ref` and `after`)")]
pub struct NotAPushEvent(#[source] serde_json::Error);

impl PushEvent {
    pub fn parse(body: &[u8]) -> Result<PushEvent, NotAPushEvent> {
        serde_json::from_slice(body).map_err(NotAPushEvent)
    }

    /// The branch the push updated, if it updated a branch.
    pub fn branch(&self) -> Option<&str> {
        self.ref_name.strip_prefix("refs/heads/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"ref":"refs/heads/main","after":"0123456789abcdef0123456789abcdef01234567","repository":{"name":"cluster","full_name":"ops/cluster","clone_url":"https://git.example/ops/cluster.git"}}"#;

    fn headers<'a>(pairs: &'a [(&'static str, String)]) -> impl Fn(&str) -> Option<&'a str> + 'a {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    #[test]
    fn signatures_of_github_and_gitea_are_checked() {
        let sig = sign("s3cret", BODY);
        let github = [("x-hub-signature-256", format!("sha256={sig}"))];
        let gitea = [("x-gitea-signature", sig.clone())];
        assert_eq!(verify(Some("s3cret"), BODY, headers(&github)), Ok(()));
        assert_eq!(verify(Some("s3cret"), BODY, headers(&gitea)), Ok(()));

        type Case<'a> = (
            Option<&'a str>,
            &'a [u8],
            Vec<(&'static str, String)>,
            SignatureError,
        );
        let cases: Vec<Case> = vec![
            (
                Some("other"),
                BODY,
                github.to_vec(),
                SignatureError::Mismatch,
            ),
            (
                Some("s3cret"),
                b"{}",
                gitea.to_vec(),
                SignatureError::Mismatch,
            ),
            (Some("s3cret"), BODY, vec![], SignatureError::Missing),
            (
                Some("s3cret"),
                BODY,
                vec![("x-hub-signature-256", sig.clone())],
                SignatureError::Malformed,
            ),
            (
                Some("s3cret"),
                BODY,
                vec![("x-gitea-signature", "zz".into())],
                SignatureError::Malformed,
            ),
            (None, BODY, gitea.to_vec(), SignatureError::NoSecret),
            (Some(""), BODY, gitea.to_vec(), SignatureError::NoSecret),
        ];
        for (secret, body, hs, want) in cases {
            assert_eq!(
                verify(secret, body, headers(&hs)),
                Err(want.clone()),
                "{want}"
            );
        }
    }

    #[test]
    fn push_payload_fields() {
        let event = PushEvent::parse(BODY).expect("parse");
        assert_eq!(event.branch(), Some("main"));
        assert_eq!(event.after, "0123456789abcdef0123456789abcdef01234567");
        assert_eq!(event.repository.expect("repo").full_name, "ops/cluster");
        assert!(PushEvent::parse(b"{\"zen\":\"hi\"}").is_err());
        let tag = PushEvent::parse(br#"{"ref":"refs/tags/v1","after":"00"}"#).expect("parse");
        assert_eq!(tag.branch(), None);
        let kind = [("X-GitHub-Event", "ping".to_string())];
        assert_eq!(event_kind(headers(&kind)), "ping");
    }
}
