//! pcr-ci end to end with real git, nix, `pcr-cache` and `pcr-control-plane` processes: a push
//! becomes a published generation with its closures in the cache; broken flakes and failing
//! builds publish nothing; webhooks are verified; of pushes in a row only the branch head is deployed.

mod common;

use std::time::Duration;

use ci_service::store::{Status, StepStatus, Trigger};
use common::*;
use test_support::ControlPlane;

const PIPELINE_TIMEOUT: Duration = Duration::from_secs(240);

fn step_statuses(detail: &ci_service::store::PipelineDetail) -> Vec<(String, StepStatus)> {
    detail
        .steps
        .iter()
        .map(|s| (s.name.clone(), s.status))
        .collect()
}

async fn operator(cp: &ControlPlane) -> schema::client::MasterClient {
    cp.operator().await
}

#[tokio::test(flavor = "current_thread")]
async fn push_builds_pushes_pins_and_publishes_then_skips_an_unchanged_blueprint() {
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let cp = ControlPlane::start();
            let cache = Cache::start(dir.path());
            let ci = Ci::start(dir.path(), &cp, Some(&cache));
            let bare = ci.create_repo("cluster", None);

            let src = Source::new();
            src.write_cluster(&[
                Service::new("web", free_port()),
                Service::new("api", free_port()),
            ]);
            let commit = src.commit("two services");
            let pushed = src.push(&bare);
            assert!(
                pushed.contains("pcr-ci: pipeline 1 queued (deploy) for refs/heads/main"),
                "{pushed}"
            );

            let id = ci.pipeline_of(&commit).await;
            let detail = ci.finished(id, PIPELINE_TIMEOUT).await;
            let log = ci.log(id).await;
            assert_succeeded(&detail, &log);
            assert_eq!(detail.summary.trigger, Trigger::Push);
            assert_eq!(
                (detail.summary.generation, detail.summary.published),
                (Some(1), true)
            );
            assert!(
                step_statuses(&detail)
                    .iter()
                    .all(|(_, s)| *s == StepStatus::Succeeded),
                "{detail:#?}"
            );
            assert!(detail.steps.iter().all(|s| s.duration_ms().is_some()));
            assert!(
                log.contains("cluster ci-test: 2 VMs (api, web), 2 instances"),
                "{log}"
            );

            // The control plane runs the blueprint CI evaluated; the cache holds and pins it.
            let op = operator(&cp).await;
            let status = op.cluster_status().await.expect("status");
            assert_eq!(
                (status.active_generation, status.commit.as_str()),
                (1, commit.as_str())
            );
            let (_, blueprint) = op.generation(1).await.expect("generation 1");
            assert_eq!(Some(blueprint.intent_hash()), detail.intent_hash);
            for vm in &blueprint.vms {
                assert!(
                    cache.has(&vm.closure).await,
                    "{} is not in the cache",
                    vm.closure
                );
            }
            let pins = cache.pins().await;
            let mut pinned: Vec<&str> = pins["generation-1"]
                .as_array()
                .expect("pin generation-1")
                .iter()
                .filter_map(|p| p.as_str())
                .collect();
            pinned.sort();
            let mut closures: Vec<&str> =
                blueprint.vms.iter().map(|v| v.closure.as_str()).collect();
            closures.sort();
            assert_eq!(pinned, closures);

            // A commit that changes nothing the cluster runs publishes nothing.
            src.write("README", "notes\n");
            let readme = src.commit("docs only");
            src.push(&bare);
            let id = ci.pipeline_of(&readme).await;
            let detail = ci.finished(id, PIPELINE_TIMEOUT).await;
            assert_succeeded(&detail, &ci.log(id).await);
            assert_eq!(
                (detail.summary.generation, detail.summary.published),
                (Some(1), false)
            );
            assert!(
                detail
                    .summary
                    .message
                    .contains("generation 1 already runs this blueprint"),
                "{}",
                detail.summary.message
            );
            assert_eq!(
                op.cluster_status().await.expect("status").active_generation,
                1
            );

            // A branch other than the deploy branch gets checks only.
            let out = std::process::Command::new("git")
                .args(["push", "-q"])
                .arg(&bare)
                .arg("HEAD:refs/heads/feature")
                .current_dir(src.path())
                .output()
                .expect("git push");
            assert!(String::from_utf8_lossy(&out.stderr).contains("(checks)"));
            let list = ci
                .client
                .pipelines(Some("cluster"), 10)
                .await
                .expect("list");
            let feature = list
                .iter()
                .find(|p| p.ref_name == "refs/heads/feature")
                .expect("feature run");
            let detail = ci.finished(feature.id, PIPELINE_TIMEOUT).await;
            assert_succeeded(&detail, "");
            assert!(!detail.summary.deploy);
            assert_eq!(detail.steps.len(), 4, "checkout, check, eval, build only");
            assert_eq!(detail.summary.generation, None);
        })
        .await;
}

#[tokio::test(flavor = "current_thread")]
async fn broken_flake_and_failing_build_fail_with_the_error_and_publish_nothing() {
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let cp = ControlPlane::start();
            let cache = Cache::start(dir.path());
            let ci = Ci::start(dir.path(), &cp, Some(&cache));
            let bare = ci.create_repo("cluster", None);
            let src = Source::new();
            let web = Service::new("web", free_port());
            src.write_cluster(std::slice::from_ref(&web));
            let good = src.commit("good");
            src.push(&bare);
            let detail = ci
                .finished(ci.pipeline_of(&good).await, PIPELINE_TIMEOUT)
                .await;
            assert_succeeded(&detail, "");
            let op = operator(&cp).await;

            // An evaluation error: the module system's sentence is the run's message.
            let mut broken = web.clone();
            broken.extra = "cpu = 0;".into();
            src.write_cluster(&[broken]);
            let commit = src.commit("cpu 0");
            src.push(&bare);
            let id = ci.pipeline_of(&commit).await;
            let detail = ci.finished(id, PIPELINE_TIMEOUT).await;
            assert_eq!(detail.summary.status, Status::Failed);
            assert!(
                detail
                    .summary
                    .message
                    .contains("cluster.vms.web.cpu: expected an integer between 1 and 1024, got 0"),
                "{}",
                detail.summary.message
            );
            let failed: Vec<&str> = detail
                .steps
                .iter()
                .filter(|s| s.status == StepStatus::Failed)
                .map(|s| s.name.as_str())
                .collect();
            assert_eq!(failed.len(), 1, "{detail:#?}");
            let publish = detail
                .steps
                .iter()
                .find(|s| s.name == "publish")
                .expect("publish step");
            assert_eq!(publish.status, StepStatus::Skipped);
            assert!(ci.log(id).await.contains("cluster.vms.web.cpu"));

            // A build that fails: its output is in the log, and the step names the derivation.
            src.write(
                "cluster.nix",
                r#"{ ... }: {
  cluster.vms.web.package = builtins.derivation {
    name = "web-broken";
    system = "x86_64-linux";
    builder = "/bin/sh";
    args = [ "-c" "echo 'compile error: expected ; at main.c:3' >&2; exit 2" ];
  };
}
"#,
            );
            let commit = src.commit("failing build");
            src.push(&bare);
            let id = ci.pipeline_of(&commit).await;
            let detail = ci.finished(id, PIPELINE_TIMEOUT).await;
            assert_eq!(detail.summary.status, Status::Failed);
            let build = detail
                .steps
                .iter()
                .find(|s| s.name == "build")
                .expect("build step");
            assert_eq!(build.status, StepStatus::Failed, "{detail:#?}");
            assert!(build.exit_code.is_some_and(|c| c != 0), "{build:?}");
            assert!(
                detail.summary.message.contains("web-broken.drv"),
                "{}",
                detail.summary.message
            );
            let log = ci.log(id).await;
            assert!(
                log.contains("web-broken> compile error: expected ; at main.c:3"),
                "{log}"
            );

            // Through both failures the cluster stayed on the first generation.
            let status = op.cluster_status().await.expect("status");
            assert_eq!(
                (status.active_generation, status.commit.as_str()),
                (1, good.as_str())
            );
            assert_eq!(op.generations(10).await.expect("generations").len(), 1);
        })
        .await;
}

#[tokio::test(flavor = "current_thread")]
async fn of_two_quick_pushes_only_the_branch_head_is_deployed_and_the_first_says_why() {
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let cp = ControlPlane::start();
            let cache = Cache::start(dir.path());
            let ci = Ci::start(dir.path(), &cp, Some(&cache));
            let bare = ci.create_repo("cluster", None);
            let src = Source::new();
            let mut web = Service::new("web", free_port());
            src.write_cluster(std::slice::from_ref(&web));
            let first = src.commit("first");
            src.push(&bare);
            web.version = "v2".into();
            src.write_cluster(std::slice::from_ref(&web));
            let second = src.commit("second");
            src.push(&bare);

            let (a, b) = (ci.pipeline_of(&first).await, ci.pipeline_of(&second).await);
            assert!(a < b);
            let (a, b) = (
                ci.finished(a, PIPELINE_TIMEOUT).await,
                ci.finished(b, PIPELINE_TIMEOUT).await,
            );
            assert_succeeded(&a, "");
            assert_succeeded(&b, "");
            // The first run checks and builds its commit, but the branch has moved on: publishing
            // it would deploy an older commit as the newest generation.
            assert_eq!(a.summary.generation, None, "{a:#?}");
            assert!(
                a.summary.message.contains("is behind the head of main"),
                "{}",
                a.summary.message
            );
            assert_eq!(b.summary.generation, Some(1));
            // One repository's runs never overlap: the second started after the first ended.
            assert!(b.summary.started_ms >= a.summary.finished_ms);
            let op = operator(&cp).await;
            let status = op.cluster_status().await.expect("status");
            assert_eq!(
                (status.active_generation, status.commit.as_str()),
                (1, second.as_str())
            );
        })
        .await;
}

/// Regression: nix remembers for 30 days, per cache URL, that a path is in a cache. When the
/// cache at an address no longer had it (garbage-collected, or replaced by a new cache), the
/// push skipped the path and pinning it failed with "not in the cache".
#[tokio::test(flavor = "current_thread")]
async fn a_cache_that_lost_a_path_gets_it_pushed_again() {
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let cp = ControlPlane::start();
            let first_dir = dir.path().join("first-cache");
            std::fs::create_dir_all(&first_dir).expect("mkdir");
            let first_cache = Cache::start(&first_dir);
            let listen = first_cache.url.trim_start_matches("http://").to_string();
            let ci = Ci::start(dir.path(), &cp, Some(&first_cache));
            let bare = ci.create_repo("cluster", None);
            let src = Source::new();
            let web = Service::new("web", free_port());
            let mut api = Service::new("api", free_port());
            src.write_cluster(&[web.clone(), api.clone()]);
            let first = src.commit("first");
            src.push(&bare);
            let run = ci
                .finished(ci.pipeline_of(&first).await, PIPELINE_TIMEOUT)
                .await;
            assert_succeeded(&run, "");

            // A new, empty cache takes over the same address.
            drop(first_cache);
            let second_dir = dir.path().join("second-cache");
            std::fs::create_dir_all(&second_dir).expect("mkdir");
            let second_cache = Cache::start_at(&second_dir, &listen);
            assert_eq!(second_cache.url, format!("http://{listen}"));

            // Only api changes; web's closure is the same and must be pushed again.
            api.version = "v2".into();
            src.write_cluster(&[web.clone(), api.clone()]);
            let second = src.commit("second");
            src.push(&bare);
            let run = ci
                .finished(ci.pipeline_of(&second).await, PIPELINE_TIMEOUT)
                .await;
            assert_succeeded(&run, "");
            let status = operator(&cp).await.cluster_status().await.expect("status");
            for i in &status.instances {
                assert!(
                    second_cache.has(&i.desired_closure).await,
                    "{} is in the new cache",
                    i.desired_closure
                );
            }
        })
        .await;
}

#[tokio::test(flavor = "current_thread")]
async fn webhook_with_a_bad_signature_is_refused_and_runs_nothing() {
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let cp = ControlPlane::start();
            let ci = Ci::start(dir.path(), &cp, None);
            let upstream = bare_upstream(dir.path());
            ci.create_repo("cluster", Some(upstream.to_str().expect("utf8")));
            let src = Source::new();
            src.write_cluster(&[Service::new("web", free_port())]);
            let commit = src.commit("via webhook");
            src.push(&upstream);

            let http = reqwest::Client::new();
            let body = webhook_body(&commit);
            let url = format!("{}/webhook/cluster", ci.url);
            let forged = ci_service::webhook::sign("not-the-secret", body.as_bytes());
            for (header, value) in [
                ("X-Hub-Signature-256", format!("sha256={forged}")),
                ("X-Gitea-Signature", forged.clone()),
                ("X-Gitea-Signature", "".to_string()),
            ] {
                let response = http
                    .post(&url)
                    .header(header, value)
                    .body(body.clone())
                    .send()
                    .await
                    .expect("post");
                assert_eq!(response.status(), 401);
                let text = response.text().await.expect("body");
                assert!(text.contains("signature"), "{text}");
            }
            let unsigned = http
                .post(&url)
                .body(body.clone())
                .send()
                .await
                .expect("post");
            assert_eq!(unsigned.status(), 401);
            assert!(
                ci.client
                    .pipelines(None, 10)
                    .await
                    .expect("list")
                    .is_empty(),
                "a refused webhook ran something"
            );

            // Signed by Gitea's rules: accepted, fetched from upstream, deployed.
            let response = send_gitea_push(&http, &ci.url, body).await;
            assert_eq!(response.status(), 202);
            let id = ci.pipeline_of(&commit).await;
            let detail = ci.finished(id, PIPELINE_TIMEOUT).await;
            let log = ci.log(id).await;
            assert_succeeded(&detail, &log);
            assert_eq!(detail.summary.trigger, Trigger::Webhook);
            assert!(log.contains("fetching"), "{log}");
            // No cache configured: nothing pushed or pinned, the generation still published.
            let push = detail
                .steps
                .iter()
                .find(|s| s.name == "push")
                .expect("push");
            assert_eq!(push.status, StepStatus::Skipped);
            assert_eq!(detail.summary.generation, Some(1));
        })
        .await;
}

#[tokio::test(flavor = "current_thread")]
async fn polling_notices_a_push_to_the_remote_without_any_hook_or_webhook() {
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let cp = ControlPlane::start();
            let ci = Ci::start_polling(dir.path(), &cp, None, 1);
            let upstream = dir.path().join("upstream.git");
            let out = std::process::Command::new("git")
                .args(["init", "-q", "--bare", "-b", "main"])
                .arg(&upstream)
                .output()
                .expect("git init");
            assert!(out.status.success());
            ci.create_repo("cluster", Some(upstream.to_str().expect("utf8")));
            let src = Source::new();
            src.write_cluster(&[Service::new("web", free_port())]);
            let commit = src.commit("polled");
            // The upstream has no hook of pcr-ci's: only `git ls-remote` can see this push.
            src.push(&upstream);
            let id = ci.pipeline_of(&commit).await;
            let detail = ci.finished(id, PIPELINE_TIMEOUT).await;
            assert_succeeded(&detail, &ci.log(id).await);
            assert_eq!(detail.summary.trigger, Trigger::Poll);
            // Polled again and again, the same commit is not run twice.
            tokio::time::sleep(Duration::from_millis(2500)).await;
            let runs = ci.client.pipelines(None, 10).await.expect("list");
            assert_eq!(runs.len(), 1, "{runs:#?}");
        })
        .await;
}
