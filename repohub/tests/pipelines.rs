//! Repositories and pipelines against a real pcr-ci (and the control plane it publishes to):
//! adding repositories creates them in pcr-ci, a push shows up as a pipeline whose log streams
//! live, the repository page shows commits with their status and autonix's analysis, and the
//! generated flake's diff from one commit to the next.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::{eventually, Ci, Hub, Source};
use serde_json::json;
use test_support::ControlPlane;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_becomes_a_pipeline_with_a_live_log_and_an_analysed_flake() {
    let cp = ControlPlane::start();
    let dir = tempfile::tempdir().unwrap();
    let ci = Ci::start(dir.path(), &cp);
    let hub = Hub::with_ci(
        &cp.addr,
        &cp.operator_token,
        Some(ci.url.clone()),
        Some(&ci.state),
    );
    let (alice, api) = hub.user("alice", true);
    let (_, bob_api) = hub.user("bob", false);
    hub.post_form("/projects", &alice, &[("name", "shop")])
        .await;
    hub.post_form("/projects", &alice, &[("name", "other")])
        .await;

    // A hosted repository: the form creates it in pcr-ci, which makes the bare repository.
    let r = hub
        .post_form(
            "/projects/shop/repositories",
            &alice,
            &[("name", "web"), ("kind", "hosted"), ("branch", "main")],
        )
        .await;
    assert_eq!(
        (r.status, r.location()),
        (StatusCode::SEE_OTHER, "/projects/shop/repositories/web"),
        "{}",
        r.body
    );
    let repos: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/api/repositories", ci.url))
        .bearer_auth(&cp.operator_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(repos.to_string().contains("\"shop.web\""), "{repos}");
    let bare = ci.state.join("repos/shop.web.git");
    assert!(bare.join("HEAD").exists());
    // The same name again is refused, by repohub, before pcr-ci is asked.
    let r = hub
        .post_json(
            "/api/projects/shop/repositories",
            &api,
            json!({ "name": "web" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);

    // An external one: pcr-ci records the remote it will poll.
    let r = hub
        .post_json("/api/projects/shop/repositories", &api, json!({ "name": "api", "kind": "external", "url": "https://git.example.com/team/api.git" }))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let repos: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/api/repositories", ci.url))
        .bearer_auth(&cp.operator_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        repos
            .to_string()
            .contains("https://git.example.com/team/api.git"),
        "{repos}"
    );

    // First push: a Rust project with its own cluster flake.
    let src = Source::new();
    src.write(
        "Cargo.toml",
        "[package]\nname = \"web\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n",
    );
    src.write("src/main.rs", "fn main() { println!(\"hi\"); }\n");
    src.write_ticking_flake(6, "0.3");
    let first = src.commit("first");
    src.push(&bare);

    let id = eventually(
        Duration::from_secs(60),
        "the pipeline to appear",
        || async {
            let v = hub.get("/api/projects/shop/pipelines", &api).await.json();
            v["pipelines"]
                .as_array()?
                .iter()
                .find(|p| p["commit"] == first.as_str())?["id"]
                .as_u64()
        },
    )
    .await;

    // The live log, as a browser's EventSource gets it.
    let mut stream = hub
        .get_stream(&format!("/projects/shop/pipelines/{id}/stream"), &alice)
        .await;
    let mut lines = Vec::new();
    let end = loop {
        let event = stream.next_event(Duration::from_secs(240)).await;
        assert!(!event.is_empty(), "the stream ended without an end event");
        if event.contains("event: end") {
            break event;
        }
        if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
            if event.contains("event: lines") {
                let batch: Vec<serde_json::Value> = serde_json::from_str(data).unwrap();
                lines.extend(
                    batch
                        .into_iter()
                        .map(|l| l["line"].as_str().unwrap().to_string()),
                );
            }
        }
    };
    assert!(
        end.contains("data: succeeded") || end.contains("data: failed"),
        "{end}"
    );
    let log = lines.join("\n");
    for i in 1..=6 {
        assert!(
            log.contains(&format!("tick {i}")),
            "line {i} missing from the streamed log:\n{log}\npcr-ci:\n{}",
            ci.proc.log_text()
        );
    }
    let raw = hub
        .get(&format!("/projects/shop/pipelines/{id}/log"), &alice)
        .await;
    assert_eq!(raw.status, StatusCode::OK);
    assert!(
        raw.body.contains("==> ") && raw.body.contains("tick 6"),
        "{}",
        raw.body
    );
    assert_eq!(raw.body.matches("tick 3").count(), 1);

    let detail = hub
        .get(&format!("/api/projects/shop/pipelines/{id}"), &api)
        .await
        .json();
    assert_eq!(detail["repository"], "web");
    assert!(
        detail["pipeline"]["steps"].as_array().unwrap().len() >= 3,
        "{detail}"
    );
    let page = hub
        .get(&format!("/projects/shop/pipelines/{id}"), &alice)
        .await;
    assert!(
        page.body.contains("checkout") && page.body.contains("data-stream"),
        "{}",
        page.body
    );

    // Pipelines belong to their project: not visible under another one, nor to non-members.
    assert_eq!(
        hub.get(&format!("/projects/other/pipelines/{id}"), &alice)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        hub.get(&format!("/api/projects/shop/pipelines/{id}"), &bob_api)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        hub.get(&format!("/api/projects/shop/pipelines/{id}/log"), &bob_api)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        hub.get("/api/projects/shop/pipelines/999999", &api)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // The repository page: the commit with its pipeline, autonix's analysis and flakes.
    let repo = hub
        .get("/api/projects/shop/repositories/web", &api)
        .await
        .json();
    assert_eq!(repo["commits"][0]["sha"], first.as_str());
    assert_eq!(repo["commits"][0]["pipeline"]["id"], id);
    let flake = &repo["flake"];
    assert_eq!(flake["commit"], first.as_str());
    let analysis = flake["analysis"].to_string();
    assert!(
        analysis.contains("Cargo.toml"),
        "evidence names the manifest: {analysis}"
    );
    assert!(
        flake["flake"].as_str().unwrap().contains("outputs"),
        "{flake}"
    );
    assert!(flake["ownFlake"].as_str().unwrap().contains("ticks"));
    assert!(flake["diff"].is_null(), "nothing to compare with yet");
    let page = hub.get("/projects/shop/repositories/web", &alice).await;
    assert!(page.body.contains("Generated flake.nix") && page.body.contains("own flake.nix"));
    assert!(page.body.contains("Cargo.toml"), "evidence is on the page");

    let badge = hub
        .get(
            &format!(
                "/badge/{}.json",
                hub.app
                    .db
                    .repository_by_ci_name("shop.web")
                    .unwrap()
                    .unwrap()
                    .badge_key
            ),
            &common::As::anonymous(),
        )
        .await
        .json();
    let want = if end.contains("succeeded") {
        "passing"
    } else {
        "failing"
    };
    assert_eq!(badge["message"], want);

    // Second push changes what autonix sees: the generated flake changes, and the page shows
    // the diff against the first commit's.
    src.write(
        "package.json",
        "{\"name\":\"web-ui\",\"version\":\"1.0.0\",\"scripts\":{\"start\":\"node server.js\"}}\n",
    );
    src.write(
        "package-lock.json",
        "{\"name\":\"web-ui\",\"lockfileVersion\":3,\"packages\":{}}\n",
    );
    src.write("server.js", "require('http').createServer().listen(3000)\n");
    let second = src.commit("second");
    src.push(&bare);
    let repo = eventually(Duration::from_secs(60), "the second commit", || async {
        let v = hub
            .get("/api/projects/shop/repositories/web", &api)
            .await
            .json();
        (v["commits"][0]["sha"] == second.as_str()).then_some(v)
    })
    .await;
    assert_eq!(repo["flake"]["previousCommit"], first.as_str());
    let diff = repo["flake"]["diff"]
        .as_str()
        .unwrap_or_else(|| panic!("no diff: {}", repo["flake"]));
    assert!(
        diff.contains("@@") && diff.lines().any(|l| l.starts_with('+')),
        "{diff}"
    );
    // The first commit's analysis is still there, unchanged.
    let old = hub
        .get(
            &format!("/api/projects/shop/repositories/web?commit={first}"),
            &api,
        )
        .await
        .json();
    assert_eq!(old["flake"]["commit"], first.as_str());
    assert!(old["flake"]["diff"].is_null());
    let r = hub
        .get(
            "/api/projects/shop/repositories/web?commit=0000000000000000000000000000000000000000",
            &api,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

/// Runs git with no credential prompts; answers (success, stdout + stderr).
fn git_try(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("git")
        .args([
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.com",
            "-c",
            "credential.helper=",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_over_http_needs_a_token_and_the_member_role_to_push() {
    let cp = ControlPlane::start();
    let dir = tempfile::tempdir().unwrap();
    let ci = Ci::start(dir.path(), &cp);
    let hub = Hub::with_ci(
        &cp.addr,
        &cp.operator_token,
        Some(ci.url.clone()),
        Some(&ci.state),
    );
    let (_, alice) = hub.user("alice", true);
    let (_, bob) = hub.user("bob", false);
    let (_, carol) = hub.user("carol", false);
    hub.post_json("/api/projects", &alice, json!({ "name": "shop" }))
        .await;
    hub.post_json(
        "/api/projects/shop/members",
        &alice,
        json!({ "username": "bob", "role": "viewer" }),
    )
    .await;
    let r = hub
        .post_json(
            "/api/projects/shop/repositories",
            &alice,
            json!({ "name": "web" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let base = common::serve(hub.app.clone()).await;
    let host = base.strip_prefix("http://").unwrap();
    let url = |user: &str, who: &common::As| {
        format!(
            "http://{user}:{}@{host}/git/shop/web.git",
            who.bearer.as_deref().unwrap()
        )
    };
    let page = hub
        .get("/api/projects/shop/repositories/web", &alice)
        .await
        .json();
    assert!(
        page["cloneUrl"]
            .as_str()
            .unwrap()
            .ends_with("/git/shop/web.git"),
        "{page}"
    );

    let work = tempfile::tempdir().unwrap();
    let (ok, out) = git_try(work.path(), &["clone", "-q", &url("alice", &alice), "web"]);
    assert!(ok, "clone: {out}");
    let repo = work.path().join("web");
    let src = Source {
        dir: tempfile::tempdir().unwrap(),
    };
    std::fs::remove_dir_all(src.dir.path()).unwrap();
    std::fs::rename(&repo, src.dir.path()).unwrap();
    src.write_ticking_flake(2, "0.1");
    let commit = src.commit("over http");
    let (ok, out) = git_try(
        src.dir.path(),
        &["push", "-q", "origin", "HEAD:refs/heads/main"],
    );
    assert!(ok, "push: {out}");
    // The push ran pcr-ci's hook: the commit has a pipeline.
    eventually(
        Duration::from_secs(60),
        "the pipeline of the HTTP push",
        || async {
            let v = hub.get("/api/projects/shop/pipelines", &alice).await.json();
            v["pipelines"]
                .as_array()?
                .iter()
                .any(|p| p["commit"] == commit.as_str())
                .then_some(())
        },
    )
    .await;

    // Without a token git is asked for credentials (and has none to give).
    let anon = format!("{base}/git/shop/web.git");
    let (ok, out) = git_try(work.path(), &["ls-remote", &anon]);
    assert!(
        !ok && (out.contains("Authentication failed") || out.contains("could not read Username")),
        "{out}"
    );
    let (ok, out) = git_try(
        work.path(),
        &[
            "ls-remote",
            &format!("http://alice:pcr_wrong@{host}/git/shop/web.git"),
        ],
    );
    assert!(!ok, "{out}");
    // A viewer fetches but cannot push; a non-member does not see the repository.
    let (ok, out) = git_try(work.path(), &["ls-remote", &url("bob", &bob)]);
    assert!(ok && out.contains(&commit), "{out}");
    let (ok, out) = git_try(
        src.dir.path(),
        &["push", &url("bob", &bob), "HEAD:refs/heads/other"],
    );
    assert!(!ok && out.contains("403"), "{out}");
    let (ok, out) = git_try(work.path(), &["ls-remote", &url("carol", &carol)]);
    assert!(!ok && out.contains("not found"), "{out}");
    let branches = common::git(&ci.state.join("repos/shop.web.git"), &["branch", "--list"]);
    assert!(
        !branches.contains("other"),
        "the refused push changed nothing: {branches}"
    );
}
