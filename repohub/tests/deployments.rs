//! The deployments page against a real control plane: what it reports is what the page and
//! the API show, live updates arrive, and a control plane restart is followed.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/sim.rs"]
mod sim;

use std::time::Duration;

use axum::http::StatusCode;
use common::{eventually, Hub};
use test_support::{local, ControlPlane, Options};

#[test]
fn deployments_show_the_control_plane_and_follow_its_restarts() {
    let mut cp = ControlPlane::start_with(Options {
        lease_ms: 600_000,
        heartbeat_ms: 2_000,
    });
    local(async {
        sim::populate(&cp.addr, &cp.operator_token, 3, 12, 1, 5).await;
        let hub = Hub::with(&cp.addr, &cp.operator_token, None);
        let (alice, api) = hub.user("alice", true);

        let view = eventually(
            Duration::from_secs(30),
            "the snapshot of generation 1",
            || async {
                let v = hub.get("/api/deployments", &api).await.json();
                (v["snapshot"]["status"]["activeGeneration"] == 1
                    && v["snapshot"]["status"]["instances"]
                        .as_array()
                        .map(Vec::len)
                        == Some(12))
                .then_some(v)
            },
        )
        .await;
        let s = &view["snapshot"];
        assert_eq!(s["connected"], true);
        assert_eq!(s["status"]["workers"].as_array().unwrap().len(), 3);
        assert_eq!(s["generations"][0]["status"], "active");

        let page = hub.get("/deployments", &alice).await;
        assert_eq!(page.status, StatusCode::OK);
        for want in [
            "svc-0000-0",
            "svc-0011-0",
            "worker-02",
            "unhealthy",
            "healthy",
            "sim",
            ">1<",
        ] {
            assert!(page.body.contains(want), "the page lacks {want}");
        }

        // The live stream announces the next generation.
        let mut stream = hub.get_stream("/deployments/stream", &alice).await;
        let op = {
            let (m, _c) = schema::net::connect_master(&cp.addr, &cp.operator_token)
                .await
                .unwrap();
            schema::client::MasterClient::new(m)
        };
        let mut bp = op.generation(1).await.unwrap().1;
        bp.vms.truncate(6);
        op.publish_state("c2", 2, "intent-2", &bp.vms, &bp.cluster)
            .await
            .unwrap();
        let first = stream.next_event(Duration::from_secs(30)).await;
        assert!(first.contains("event: update"), "{first}");
        eventually(
            Duration::from_secs(30),
            "generation 2 on the page",
            || async {
                let b = hub.get("/deployments/live", &alice).await.body;
                b.contains("superseded").then_some(())
            },
        )
        .await;

        // Restart: the page says the control plane is gone, then comes back by itself.
        cp.kill9();
        eventually(
            Duration::from_secs(30),
            "the disconnection to show",
            || async {
                let v = hub.get("/api/deployments", &api).await.json();
                (v["snapshot"]["connected"] == false).then_some(())
            },
        )
        .await;
        let page = hub.get("/deployments", &alice).await.body;
        assert!(
            page.contains("showing what it reported"),
            "the last state stays visible"
        );
        cp.restart();
        eventually(Duration::from_secs(60), "reconnection", || async {
            let v = hub.get("/api/deployments", &api).await.json();
            (v["snapshot"]["connected"] == true && v["snapshot"]["status"]["activeGeneration"] == 2)
                .then_some(())
        })
        .await;
    });
}
