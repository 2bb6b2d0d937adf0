//! The whole GitOps loop with a real worker: a `git push` of a cluster flake ends with its
//! workloads running and healthy, and a push that changes one service restarts only that one.

mod common;

use std::time::Duration;

use ci_service::store::Rollout;
use common::*;
use schema::model::ClusterStatus;
use test_support::{eventually, ControlPlane};

const TIMEOUT: Duration = Duration::from_secs(240);

fn instance<'a>(status: &'a ClusterStatus, id: &str) -> &'a schema::model::InstanceStatus {
    status
        .instances
        .iter()
        .find(|i| i.instance_id == id)
        .unwrap_or_else(|| panic!("no instance {id} in {status:#?}"))
}

#[tokio::test(flavor = "current_thread")]
async fn push_converges_on_the_worker_and_a_one_service_change_restarts_only_it() {
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let cp = ControlPlane::start();
            let cache = Cache::start(dir.path());
            let ci = Ci::start(dir.path(), &cp, Some(&cache));
            let worker = start_worker(dir.path(), &cp, &cache, "worker-1");
            let op = cp.operator().await;
            a_worker_registered(&op).await;
            let bare = ci.create_repo("cluster", None);

            let mut web = Service::new("web", free_port());
            let api = Service::new("api", free_port());
            let src = Source::new();
            src.write_cluster(&[web.clone(), api.clone()]);
            let first = src.commit("web and api");
            src.push(&bare);
            let id = ci.pipeline_of(&first).await;
            let detail = ci.finished(id, TIMEOUT).await;
            assert_succeeded(&detail, &ci.log(id).await);
            assert_eq!(detail.summary.generation, Some(1));

            // Generation 1 runs on the worker: every instance running its closure, healthy.
            let status = eventually(TIMEOUT, "generation 1 to converge", || async {
                let s = op.cluster_status().await.ok()?;
                (s.active_generation == 1 && s.convergence_percent >= 100.0).then_some(s)
            })
            .await;
            assert_eq!(status.instances.len(), 2);
            assert_eq!(
                http_get(web.port, "/version").as_deref(),
                Some("v1\n"),
                "worker log:\n{}",
                worker.log_text()
            );
            assert_eq!(http_get(api.port, "/healthz").as_deref(), Some("ok\n"));
            // The closures came from the cache CI pushed to (the worker trusts only its key).
            for i in &status.instances {
                assert!(cache.has(&i.desired_closure).await);
            }
            // pcr-ci watched the rollout and recorded its phases.
            let detail = eventually(TIMEOUT, "the rollout to be recorded", || async {
                let d = ci.client.pipeline(id).await.ok()?;
                (d.summary.rollout != Rollout::Converging && d.summary.rollout != Rollout::None)
                    .then_some(d)
            })
            .await;
            assert_eq!(detail.summary.rollout, Rollout::Converged, "{detail:#?}");
            let phases: Vec<&str> = detail.phases.iter().map(|p| p.name.as_str()).collect();
            assert_eq!(phases, ["schedule", "fetch", "boot", "healthy"]);

            // Change web only.
            let api_before = instance(&status, "api-0").clone();
            web.version = "v2".into();
            src.write_cluster(&[web.clone(), api.clone()]);
            let second = src.commit("web v2");
            src.push(&bare);
            let id = ci.pipeline_of(&second).await;
            let detail = ci.finished(id, TIMEOUT).await;
            assert_succeeded(&detail, &ci.log(id).await);
            assert_eq!(detail.summary.generation, Some(2));
            let status = eventually(TIMEOUT, "generation 2 to converge", || async {
                let s = op.cluster_status().await.ok()?;
                let web = s.instances.iter().find(|i| i.instance_id == "web-0")?;
                (s.active_generation == 2
                    && s.convergence_percent >= 100.0
                    && web.observed_closure == web.desired_closure)
                    .then_some(s)
            })
            .await;
            assert_eq!(http_get(web.port, "/version").as_deref(), Some("v2\n"));
            let api_after = instance(&status, "api-0");
            assert_eq!(api_after.observed_closure, api_before.observed_closure);
            assert!(
                api_after.uptime_ms > api_before.uptime_ms
                    && api_after.restarts == api_before.restarts,
                "api restarted: before {api_before:?}, after {api_after:?}"
            );
            let web_after = instance(&status, "web-0");
            assert_ne!(
                web_after.desired_closure,
                instance(&status, "api-0").desired_closure
            );
            let detail = eventually(TIMEOUT, "the second rollout to be recorded", || async {
                let d = ci.client.pipeline(id).await.ok()?;
                (d.summary.rollout == Rollout::Converged).then_some(d)
            })
            .await;
            assert!(
                detail
                    .summary
                    .rollout_message
                    .starts_with("1 changed instance healthy"),
                "{}",
                detail.summary.rollout_message
            );
        })
        .await;
}
