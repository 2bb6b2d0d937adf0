//! A replayed webhook must not roll the cluster back: re-sending an old, validly signed delivery
//! whose `after` is an older commit once published that commit as the newest generation. Against
//! the real pcr-ci and control plane, with an upstream repository pcr-ci mirrors.

mod common;

use std::time::Duration;

use common::*;
use test_support::{eventually, ControlPlane};

const TIMEOUT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "current_thread")]
async fn a_replayed_webhook_for_an_older_commit_does_not_roll_the_cluster_back() {
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let cp = ControlPlane::start();
            let ci = Ci::start(dir.path(), &cp, None);
            let upstream = bare_upstream(dir.path());
            ci.create_repo("cluster", Some(upstream.to_str().expect("utf8")));
            let http = reqwest::Client::new();
            let send = |body: String| {
                let (http, url) = (http.clone(), ci.url.clone());
                async move {
                    let response = send_gitea_push(&http, &url, body).await;
                    assert_eq!(response.status(), 202);
                }
            };

            let src = Source::new();
            let mut web = Service::new("web", free_port());
            src.write_cluster(&[web.clone()]);
            let old = src.commit("v1");
            src.push(&upstream);
            send(webhook_body(&old)).await;
            let first = ci.pipeline_of(&old).await;
            let detail = ci.finished(first, TIMEOUT).await;
            assert_succeeded(&detail, &ci.log(first).await);
            assert_eq!(detail.summary.generation, Some(1));

            web.version = "v2".into();
            src.write_cluster(&[web.clone()]);
            let new = src.commit("v2");
            src.push(&upstream);
            send(webhook_body(&new)).await;
            let second = ci.pipeline_of(&new).await;
            let detail = ci.finished(second, TIMEOUT).await;
            assert_succeeded(&detail, &ci.log(second).await);
            assert_eq!(detail.summary.generation, Some(2));

            // The old delivery, byte for byte, again.
            send(webhook_body(&old)).await;
            let replay = eventually(TIMEOUT, "the replayed delivery's pipeline", || async {
                let runs = ci.client.pipelines(None, 10).await.ok()?;
                runs.iter()
                    .find(|p| p.commit == old && p.id != first)
                    .map(|p| p.id)
            })
            .await;
            let detail = ci.finished(replay, TIMEOUT).await;
            let log = ci.log(replay).await;
            assert_eq!(detail.summary.generation, None, "{detail:#?}\n{log}");
            assert!(
                detail
                    .summary
                    .message
                    .contains("is behind the head of main")
                    && detail.summary.message.contains("pcr rollback"),
                "{}",
                detail.summary.message
            );
            let op = cp.operator().await;
            let status = op.cluster_status().await.expect("status");
            assert_eq!(status.active_generation, 2, "the cluster was rolled back");
            assert_eq!(status.commit, new);
        })
        .await;
}
