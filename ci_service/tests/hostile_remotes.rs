//! Remotes and branches that would make git run commands on the CI host, against the real
//! pcr-ci: refused at creation with a sentence saying what is accepted, and never handed to
//! git by the fetch and poll paths either (a database written by an older pcr-ci may hold one).

mod common;

use std::path::Path;

use common::*;
use test_support::ControlPlane;

/// Remotes a hostile user stored once: each would run `touch <marker>` if git ever saw it.
fn hostile_remotes(marker: &Path) -> Vec<String> {
    let m = marker.display();
    vec![
        format!("--upload-pack=touch {m}"),
        format!("-uupload-pack=touch {m}"),
        format!("ext::sh -c touch% {m}"),
        format!("ext::sh -c 'touch {m}'"),
        "fd::17".to_string(),
        format!("https://example.invalid/x --upload-pack=touch {m}"),
        "file://-oProxyCommand=x".to_string(),
        "ssh://-oProxyCommand=touch/x".to_string(),
    ]
}

#[tokio::test(flavor = "current_thread")]
async fn a_stored_remote_cannot_run_commands_on_the_ci_host() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("pwned");
    let cp = ControlPlane::start();
    let ci = Ci::start(dir.path(), &cp, None);
    let http = reqwest::Client::new();
    for (i, remote) in hostile_remotes(&marker).into_iter().enumerate() {
        let answer = http
            .post(format!("{}/api/repositories", ci.url))
            .bearer_auth(&cp.operator_token)
            .json(&serde_json::json!({ "name": format!("evil-{i}"), "remote": remote }))
            .send()
            .await
            .expect("POST /api/repositories");
        let status = answer.status();
        let body = answer.text().await.expect("body");
        assert_eq!(status, 400, "remote {remote:?} was accepted: {body}");
        assert!(
            body.contains("is not one pcr-ci fetches from: give an https://"),
            "refusal for {remote:?} does not say what to do: {body}"
        );
    }
    let answer = http
        .post(format!("{}/api/repositories", ci.url))
        .bearer_auth(&cp.operator_token)
        .json(&serde_json::json!({ "name": "evil-branch", "branch": "--upload-pack=x" }))
        .send()
        .await
        .expect("POST /api/repositories");
    assert_eq!(answer.status(), 400);
    assert!(!marker.exists(), "a hostile remote ran a command");
    // A plain remote is still accepted.
    let upstream = dir.path().join("upstream.git");
    let answer = http
        .post(format!("{}/api/repositories", ci.url))
        .bearer_auth(&cp.operator_token)
        .json(&serde_json::json!({ "name": "fine", "remote": upstream.display().to_string() }))
        .send()
        .await
        .expect("POST /api/repositories");
    assert!(
        answer.status().is_success(),
        "{}",
        answer.text().await.unwrap_or_default()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn fetch_and_ls_remote_never_hand_git_a_hostile_remote() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("pwned");
    let bare = dir.path().join("repo.git");
    let out = std::process::Command::new("git")
        .args(["init", "-q", "--bare"])
        .arg(&bare)
        .output()
        .expect("git init");
    assert!(out.status.success());
    for remote in hostile_remotes(&marker) {
        let fetched = ci_service::repos::fetch(&bare, &remote, |_| {}).await;
        assert!(
            matches!(fetched, Err(ci_service::repos::GitError::Remote(_))),
            "fetch from {remote:?}: {fetched:?}"
        );
        let listed = ci_service::repos::ls_remote(&remote, "main").await;
        assert!(
            matches!(listed, Err(ci_service::repos::GitError::Remote(_))),
            "ls-remote of {remote:?}: {listed:?}"
        );
    }
    // Even a remote that looks fine cannot reach a transport that runs commands.
    let fetched = ci_service::repos::fetch(&bare, "/nonexistent/repo.git", |_| {}).await;
    assert!(matches!(
        fetched,
        Err(ci_service::repos::GitError::Failed { .. })
    ));
    assert!(!marker.exists(), "a hostile remote ran a command");
}

/// Anyone who reached pcr-ci's port once deployed to the cluster: `POST /api/repositories`
/// needed no credentials, and the poller then built and published the new repository with the
/// operator token. Every `/api/` route now takes the cluster's operator token.
#[tokio::test(flavor = "current_thread")]
async fn pcr_cis_api_refuses_anyone_without_the_operator_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cp = ControlPlane::start();
    let ci = Ci::start(dir.path(), &cp, None);
    let http = reqwest::Client::new();
    let upstream = bare_upstream(dir.path());
    let create =
        serde_json::json!({ "name": "intruder", "remote": upstream.display().to_string() });
    for token in [None, Some("wrong"), Some("")] {
        let requests = [
            http.post(format!("{}/api/repositories", ci.url))
                .json(&create),
            http.get(format!("{}/api/repositories", ci.url)),
            http.get(format!("{}/api/pipelines", ci.url)),
            http.get(format!("{}/api/pipelines/1", ci.url)),
            http.get(format!("{}/api/pipelines/1/logs", ci.url)),
        ];
        for request in requests {
            let request = match token {
                Some(t) => request.bearer_auth(t),
                None => request,
            };
            let answer = request.send().await.expect("request");
            let status = answer.status();
            let body = answer.text().await.expect("body");
            assert_eq!(status, 401, "token {token:?}: {body}");
            assert!(
                body.contains("needs the cluster's operator token"),
                "the refusal does not say what to send: {body}"
            );
        }
    }
    assert!(
        !dir.path().join("ci/repos/intruder.git").exists(),
        "a repository was created without credentials"
    );
    // With the token: the same request works, and the health check stays open.
    let answer = http
        .post(format!("{}/api/repositories", ci.url))
        .bearer_auth(&cp.operator_token)
        .json(&create)
        .send()
        .await
        .expect("request");
    assert!(answer.status().is_success());
    let health = http
        .get(format!("{}/healthz", ci.url))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
}
