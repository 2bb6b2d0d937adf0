//! The router driven in-process: sign-in, access rules, CSRF, bad input, persistence.
//! No pcr-ci and no control plane here (see `pipelines.rs` and `deployments.rs` for those).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::{As, Hub};
use serde_json::json;

/// Every GET route, with a project `shop`, repository `web` and pipeline 1 in the paths.
const GET_ROUTES: &[&str] = &[
    "/",
    "/projects",
    "/projects/shop",
    "/projects/shop/repositories/web",
    "/projects/shop/pipelines",
    "/projects/shop/pipelines/1",
    "/projects/shop/pipelines/1/log",
    "/projects/shop/pipelines/1/stream",
    "/deployments",
    "/deployments/live",
    "/deployments/stream",
    "/admin/users",
    "/settings",
    "/api/me",
    "/api/projects",
    "/api/projects/shop",
    "/api/projects/shop/repositories/web",
    "/api/projects/shop/pipelines",
    "/api/projects/shop/pipelines/1",
    "/api/deployments",
    "/api/users",
    "/api/tokens",
];

/// Every form route.
const FORM_ROUTES: &[&str] = &[
    "/logout",
    "/projects",
    "/projects/shop/members",
    "/projects/shop/members/alice/remove",
    "/projects/shop/repositories",
    "/admin/users",
    "/settings/tokens",
    "/settings/tokens/1/revoke",
    "/settings/password",
];

/// Every JSON write route.
const API_WRITES: &[&str] = &[
    "/api/projects",
    "/api/projects/shop/members",
    "/api/projects/shop/repositories",
    "/api/users",
    "/api/tokens",
];

fn csrf_in(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..].split('"').next().unwrap().to_string()
}

#[tokio::test]
async fn first_run_setup_creates_the_admin_once() {
    let hub = Hub::new();
    let anon = As::anonymous();
    let r = hub.get("/", &anon).await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/setup"));
    let r = hub.get("/login", &anon).await;
    assert_eq!(r.location(), "/setup");

    let page = hub.get("/setup", &anon).await;
    assert_eq!(page.status, StatusCode::OK);
    let cookie = page.cookie("pcr_csrf").unwrap();
    let csrf = csrf_in(&page.body);
    assert_eq!(cookie, csrf);

    // Without the double-submit cookie the form is refused and nothing is created.
    let r = hub
        .post_form(
            "/setup",
            &anon,
            &[
                ("csrf", &csrf),
                ("username", "admin"),
                ("password", "longenough"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(hub.app.db.user_count().unwrap(), 0);

    let post = |user: &'static str, pw: &'static str| {
        let body = format!("csrf={csrf}&username={user}&password={pw}");
        let req = axum::http::Request::post("/setup")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", format!("pcr_csrf={cookie}"))
            .body(axum::body::Body::from(body))
            .unwrap();
        hub.send(req)
    };
    let r = post("admin", "short").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("at least 8 characters"), "{}", r.body);
    let r = post("Bad Name", "longenough").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(hub.app.db.user_count().unwrap(), 0);

    let r = post("admin", "longenough").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let session = r.cookie("pcr_session").unwrap();
    let set_cookie = r.headers.get("set-cookie").unwrap().to_str().unwrap();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"),
        "{set_cookie}"
    );
    let me = hub
        .get(
            "/api/me",
            &As {
                cookie: Some(session),
                ..As::default()
            },
        )
        .await;
    assert_eq!(me.json()["user"]["username"], "admin");
    assert_eq!(me.json()["user"]["isAdmin"], true);

    // Setup cannot be replayed to make another admin.
    assert_eq!(hub.get("/setup", &anon).await.location(), "/login");
    let r = post("eve", "longenough").await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.body.contains("already set up"), "{}", r.body);
    assert_eq!(hub.app.db.user_count().unwrap(), 1);
}

#[tokio::test]
async fn sign_in_and_out() {
    let hub = Hub::new();
    hub.user("alice", true);
    let anon = As::anonymous();
    let page = hub.get("/login?next=/projects", &anon).await;
    let cookie = page.cookie("pcr_csrf").unwrap();
    let login = |pw: &str, next: &str| {
        let body = format!("csrf={cookie}&username=alice&password={pw}&next={next}");
        let req = axum::http::Request::post("/login")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", format!("pcr_csrf={cookie}"))
            .body(axum::body::Body::from(body))
            .unwrap();
        hub.send(req)
    };
    let r = login("wrong-password", "/projects").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("wrong username or password"));
    assert!(r.cookie("pcr_session").is_none());

    // An absolute URL in `next` is not followed.
    let r = login("password123", "https://evil.example/").await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/"));
    let r = login("password123", "/projects").await;
    assert_eq!(r.location(), "/projects");
    let who = As {
        cookie: r.cookie("pcr_session"),
        ..As::default()
    };
    let page = hub.get("/settings", &who).await;
    assert_eq!(page.status, StatusCode::OK);
    let who = As {
        csrf: csrf_in(&page.body),
        ..who
    };

    let r = hub.post_form("/logout", &who, &[("csrf", "forged")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(hub.get("/settings", &who).await.status, StatusCode::OK);
    let r = hub.post_form("/logout", &who, &[]).await;
    assert_eq!(r.location(), "/login");
    let r = hub.get("/settings", &who).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "the session ended");
}

/// Posts the sign-in form, from `peer` when given (as `ConnectInfo`, which `pcr-repohub`
/// serves with) or from an unknown address as in-process requests are.
async fn sign_in(hub: &Hub, user: &str, password: &str, peer: Option<&str>) -> common::Resp {
    let page = hub.get("/login", &As::anonymous()).await;
    let csrf = page.cookie("pcr_csrf").unwrap();
    let body = format!("csrf={csrf}&username={user}&password={password}&next=/projects");
    let mut req = axum::http::Request::post("/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", format!("pcr_csrf={csrf}"))
        .body(axum::body::Body::from(body))
        .unwrap();
    if let Some(peer) = peer {
        let addr: std::net::SocketAddr = peer.parse().unwrap();
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(addr));
    }
    hub.send(req).await
}

fn retry_after(r: &common::Resp) -> u64 {
    r.headers
        .get("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After: {:?}", r.headers))
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

const LOCKED: &str =
    "too many failed sign-ins with this username; wait 15 minutes before trying again";

#[tokio::test]
async fn five_wrong_passwords_lock_the_username_until_fifteen_minutes_pass() {
    let hub = Hub::new();
    hub.user("alice", true);
    hub.user("bob", false);
    for i in 0..5 {
        let r = sign_in(&hub, "alice", "wrong-password", None).await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "attempt {i}: {}",
            r.body
        );
    }
    // The right password no longer helps, and is not even checked.
    let r = sign_in(&hub, "alice", "password123", None).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert_eq!(retry_after(&r), 15 * 60);
    assert!(r.cookie("pcr_session").is_none());
    // On the sign-in form itself, with the username kept, not on a bare error page.
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
        "{:?}",
        r.headers
    );
    assert!(r.body.contains(LOCKED), "{}", r.body);
    assert!(r.body.contains(r#"action="/login""#), "{}", r.body);
    assert!(r.body.contains(r#"value="alice""#), "{}", r.body);

    // Another user is not affected.
    let r = sign_in(&hub, "bob", "password123", None).await;
    assert_eq!(
        (r.status, r.location()),
        (StatusCode::SEE_OTHER, "/projects")
    );

    // A username that does not exist is counted and refused in the same words, so the
    // answers do not tell which usernames exist.
    for _ in 0..5 {
        let r = sign_in(&hub, "mallory", "wrong-password", None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(r.body.contains("wrong username or password"));
    }
    let r = sign_in(&hub, "mallory", "password123", None).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.body.contains(LOCKED), "{}", r.body);

    // The lock lasts until the first failure is fifteen minutes old, and says so.
    let clock = &hub.app.settings.clock;
    clock.advance(Duration::from_secs(15 * 60 - 40));
    let r = sign_in(&hub, "alice", "password123", None).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry_after(&r), 40);
    assert!(
        r.body.contains("wait 40 seconds before trying again"),
        "{}",
        r.body
    );
    clock.advance(Duration::from_secs(40));
    let r = sign_in(&hub, "alice", "password123", None).await;
    assert_eq!(
        (r.status, r.location()),
        (StatusCode::SEE_OTHER, "/projects")
    );
}

#[tokio::test]
async fn a_successful_sign_in_resets_the_failure_count() {
    let hub = Hub::new();
    hub.user("alice", true);
    for _ in 0..4 {
        let r = sign_in(&hub, "alice", "wrong-password", None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = sign_in(&hub, "alice", "password123", None).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    // Five more failures are allowed, not one.
    for i in 0..5 {
        let r = sign_in(&hub, "alice", "wrong-password", None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    let r = sign_in(&hub, "alice", "password123", None).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn failed_sign_ins_are_counted_per_client_address() {
    let hub = Hub::new();
    hub.user("alice", true);
    let attacker = Some("198.51.100.7:40000");
    for _ in 0..5 {
        let r = sign_in(&hub, "alice", "wrong-password", attacker).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    // A new connection (another port) from the same address is the same client.
    let r = sign_in(&hub, "alice", "password123", Some("198.51.100.7:40001")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    // So is another address in the same IPv6 /64 — but here the attacker is on IPv4, and
    // alice signing in from her own address is not locked out by the guessing.
    let r = sign_in(&hub, "alice", "password123", Some("203.0.113.9:50000")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);

    for _ in 0..5 {
        sign_in(&hub, "alice", "wrong-password", Some("[2001:db8:1:2::1]:1")).await;
    }
    let r = sign_in(&hub, "alice", "password123", Some("[2001:db8:1:2::ffff]:1")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "same /64");
    let r = sign_in(&hub, "alice", "password123", Some("[2001:db8:1:3::1]:1")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "another /64");
}

#[tokio::test]
async fn wrong_api_tokens_from_one_address_are_refused_for_a_while() {
    let hub = Hub::new();
    let (_, alice) = hub.user("alice", true);
    let from = |peer: Option<&str>, token: &str, path: &str| {
        let mut req = axum::http::Request::get(path)
            .header("authorization", format!("Bearer {token}"))
            .body(axum::body::Body::empty())
            .unwrap();
        if let Some(peer) = peer {
            let addr: std::net::SocketAddr = peer.parse().unwrap();
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(addr));
        }
        hub.send(req)
    };
    let good = alice.bearer.as_deref().unwrap();
    let guesser = Some("198.51.100.7:40000");
    // Valid tokens are not failures.
    for _ in 0..10 {
        assert_eq!(from(guesser, good, "/api/me").await.status, StatusCode::OK);
    }
    for _ in 0..5 {
        let r = from(guesser, "pcr_guess", "/api/me").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = from(guesser, good, "/api/me").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert_eq!(retry_after(&r), 15 * 60);
    assert_eq!(
        r.json()["error"],
        "too many wrong API tokens from your address; wait 15 minutes before trying again"
    );
    // git's Basic auth takes API tokens too, so it is refused from there as well.
    let r = from(
        guesser,
        good,
        "/git/shop/web.git/info/refs?service=git-upload-pack",
    )
    .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry_after(&r), 15 * 60);

    // Other addresses are unaffected; without an address nothing is counted, since every
    // client would share one counter.
    let r = from(Some("203.0.113.9:1"), good, "/api/me").await;
    assert_eq!(r.status, StatusCode::OK);
    for _ in 0..10 {
        let r = from(None, "pcr_guess", "/api/me").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(from(None, good, "/api/me").await.status, StatusCode::OK);

    hub.app.settings.clock.advance(Duration::from_secs(15 * 60));
    assert_eq!(from(guesser, good, "/api/me").await.status, StatusCode::OK);
}

#[tokio::test]
async fn guessing_the_current_password_behind_a_session_is_throttled_too() {
    let hub = Hub::new();
    let (alice, _) = hub.user("alice", true);
    let (hub, alice) = (&hub, &alice);
    let change = |current: &'static str| async move {
        hub.post_form(
            "/settings/password",
            alice,
            &[("current", current), ("new", "new-password-1")],
        )
        .await
    };
    for _ in 0..5 {
        let r = change("wrong-password").await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    }
    let r = change("password123").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry_after(&r), 15 * 60);
    assert!(
        r.body
            .contains("too many wrong passwords for this account; wait 15 minutes"),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("API tokens"),
        "the settings page: {}",
        r.body
    );
    hub.app.settings.clock.advance(Duration::from_secs(15 * 60));
    let r = change("password123").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("Password changed"));
}

#[tokio::test]
async fn every_route_requires_sign_in() {
    let hub = Hub::new();
    let (alice, _) = hub.user("alice", true);
    hub.post_form("/projects", &alice, &[("name", "shop")])
        .await;
    let anon = As::anonymous();
    for path in GET_ROUTES {
        let r = hub.get(path, &anon).await;
        if path.starts_with("/api/") {
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
            assert!(
                r.json()["error"].as_str().unwrap().contains("Bearer"),
                "{path}"
            );
        } else {
            assert_eq!(r.status, StatusCode::SEE_OTHER, "{path}");
            assert!(
                r.location().starts_with("/login?next="),
                "{path}: {}",
                r.location()
            );
        }
    }
    for path in FORM_ROUTES {
        let r = hub.post_form(path, &anon, &[("name", "x")]).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{path}");
    }
    for path in API_WRITES {
        let r = hub.post_json(path, &anon, json!({ "name": "x" })).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
    }
    let bad = As {
        bearer: Some("pcr_not_a_token".into()),
        ..As::default()
    };
    let r = hub.get("/api/projects", &bad).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.json()["error"].as_str().unwrap().contains("not valid"));
    // Nothing was created by the refused writes.
    assert_eq!(hub.app.db.projects_of(1).unwrap().len(), 1);
    assert_eq!(hub.app.db.users().unwrap().len(), 1);
    // The public parts.
    assert_eq!(hub.get("/healthz", &anon).await.status, StatusCode::OK);
    assert_eq!(
        hub.get("/static/app.css", &anon).await.status,
        StatusCode::OK
    );
    assert_eq!(
        hub.get("/static/app.js", &anon).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn forms_without_the_csrf_token_are_refused() {
    let hub = Hub::new();
    let (alice, alice_api) = hub.user("alice", true);
    assert_eq!(
        hub.post_form("/projects", &alice, &[("name", "shop")])
            .await
            .status,
        StatusCode::SEE_OTHER
    );
    for path in FORM_ROUTES {
        for forged in ["", "0123", &"a".repeat(64)] {
            let r = hub
                .post_form(
                    path,
                    &alice,
                    &[
                        ("csrf", forged),
                        ("name", "other"),
                        ("username", "bob"),
                        ("password", "longenough"),
                        ("role", "owner"),
                    ],
                )
                .await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{path} with {forged:?}");
            assert!(r.body.contains("security token"), "{path}");
        }
    }
    // JSON with the session cookie needs the header; with a Bearer token it does not.
    let r = hub
        .post_json("/api/projects", &alice, json!({ "name": "other" }))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.json()["error"].as_str().unwrap().contains("X-CSRF-Token"));
    let r = hub.delete("/api/projects/shop/members/alice", &alice).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let req = axum::http::Request::post("/api/projects")
        .header("content-type", "application/json")
        .header(
            "cookie",
            format!("pcr_session={}", alice.cookie.clone().unwrap()),
        )
        .header("x-csrf-token", &alice.csrf)
        .body(axum::body::Body::from(
            json!({ "name": "viacookie" }).to_string(),
        ))
        .unwrap();
    assert_eq!(hub.send(req).await.status, StatusCode::CREATED);
    let r = hub
        .post_json("/api/projects", &alice_api, json!({ "name": "viatoken" }))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);

    let names: Vec<String> = hub
        .app
        .db
        .projects_of(1)
        .unwrap()
        .into_iter()
        .map(|(p, _)| p.name)
        .collect();
    assert_eq!(
        names,
        ["shop", "viacookie", "viatoken"],
        "no forged form created anything"
    );
    assert_eq!(hub.app.db.users().unwrap().len(), 1);
    assert_eq!(hub.app.db.members(1).unwrap().len(), 1);
}

#[tokio::test]
async fn non_members_get_404_and_roles_are_enforced() {
    let hub = Hub::new();
    let (alice, alice_api) = hub.user("alice", true);
    let (bob, bob_api) = hub.user("bob", false);
    hub.user("carol", false);
    hub.post_form(
        "/projects",
        &alice,
        &[("name", "shop"), ("description", "the shop")],
    )
    .await;

    // A project bob is not in answers exactly like one that does not exist.
    for (real, missing) in [
        ("/projects/shop", "/projects/nope"),
        ("/api/projects/shop", "/api/projects/nope"),
        ("/projects/shop/pipelines", "/projects/nope/pipelines"),
        (
            "/api/projects/shop/repositories/web",
            "/api/projects/nope/repositories/web",
        ),
        (
            "/projects/shop/pipelines/1/stream",
            "/projects/nope/pipelines/1/stream",
        ),
    ] {
        let a = hub.get(real, &bob_api).await;
        let b = hub.get(missing, &bob_api).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{real}");
        assert_eq!(
            a.body.replace("shop", "X"),
            b.body.replace("nope", "X"),
            "{real} leaks"
        );
    }
    let r = hub
        .post_form("/projects/shop/repositories", &bob, &[("name", "web")])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = hub
        .post_json(
            "/api/projects/shop/members",
            &bob_api,
            json!({ "username": "bob", "role": "owner" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "bob cannot add himself");
    assert!(hub.get("/api/projects", &bob_api).await.json()["projects"]
        .as_array()
        .unwrap()
        .is_empty());

    // As a viewer bob sees the project but cannot change it.
    let r = hub
        .post_json(
            "/api/projects/shop/members",
            &alice_api,
            json!({ "username": "bob", "role": "viewer" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let page = hub.get("/projects/shop", &bob).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("the shop"));
    assert!(
        !page.body.contains("Add a repository"),
        "viewers get no form"
    );
    let r = hub
        .post_form("/projects/shop/repositories", &bob, &[("name", "web")])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("needs the member role"), "{}", r.body);
    let r = hub
        .post_json(
            "/api/projects/shop/members",
            &bob_api,
            json!({ "username": "carol", "role": "viewer" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        hub.get("/api/users", &bob_api).await.status,
        StatusCode::FORBIDDEN,
        "bob is no admin"
    );
    let r = hub
        .post_form(
            "/admin/users",
            &bob,
            &[("username", "mallory"), ("password", "longenough")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // As a member bob may add repositories but not manage members.
    hub.post_json(
        "/api/projects/shop/members",
        &alice_api,
        json!({ "username": "bob", "role": "member" }),
    )
    .await;
    let r = hub
        .delete("/api/projects/shop/members/alice", &bob_api)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.json()["error"].as_str().unwrap().contains("owner role"));

    // The last owner cannot leave; with a second owner she can.
    let r = hub
        .delete("/api/projects/shop/members/alice", &alice_api)
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("at least one owner"));
    hub.post_json(
        "/api/projects/shop/members",
        &alice_api,
        json!({ "username": "carol", "role": "owner" }),
    )
    .await;
    assert_eq!(
        hub.delete("/api/projects/shop/members/alice", &alice_api)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        hub.get("/api/projects/shop", &alice_api).await.status,
        StatusCode::NOT_FOUND,
        "alice left"
    );

    let members = hub.get("/api/projects/shop", &bob_api).await.json()["members"].clone();
    assert_eq!(members.as_array().unwrap().len(), 2, "{members}");
}

#[tokio::test]
async fn bad_input_is_refused_with_a_sentence_and_nothing_stored() {
    let hub = Hub::new();
    let (alice, api) = hub.user("alice", true);
    assert_eq!(
        hub.post_form("/projects", &alice, &[("name", "shop")])
            .await
            .status,
        StatusCode::SEE_OTHER
    );

    let r = hub
        .post_form("/projects", &alice, &[("name", "shop")])
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(
        r.body.contains("the project name shop is taken"),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("value=\"shop\""),
        "the form keeps what was typed"
    );
    let r = hub
        .post_json("/api/projects", &api, json!({ "name": "Shop.X" }))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("must be 1-40 characters"));
    let r = hub
        .post_json(
            "/api/projects",
            &api,
            json!({ "name": "x", "description": "d".repeat(501) }),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = hub
        .post_raw(
            "/api/projects",
            &api,
            "application/json",
            "{not json".into(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("could not be read"));

    // Oversized bodies: 413 for forms and JSON alike.
    let big = "x".repeat(100 * 1024);
    let r = hub
        .post_form(
            "/projects",
            &alice,
            &[("name", "big"), ("description", &big)],
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.body.contains("larger than the 64 KiB"), "{}", r.body);
    let r = hub
        .post_json(
            "/api/projects",
            &api,
            json!({ "name": "big", "description": big }),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.json()["error"].as_str().unwrap().contains("64 KiB"));

    // Repositories: invalid names, kinds, URLs and branches.
    for (body, want) in [
        (json!({ "name": "Web!" }), "must be 1-40 characters"),
        (
            json!({ "name": "web", "kind": "svn" }),
            "not a repository kind",
        ),
        (
            json!({ "name": "web", "kind": "external" }),
            "needs its URL",
        ),
        (
            json!({ "name": "web", "kind": "external", "url": "ftp://host/x" }),
            "not supported",
        ),
        (
            json!({ "name": "web", "kind": "external", "url": "not a url" }),
            "not a repository URL",
        ),
        (
            json!({ "name": "web", "kind": "external", "url": "https://u:secret@host/x.git" }),
            "password",
        ),
        (
            json!({ "name": "web", "kind": "hosted", "url": "https://host/x.git" }),
            "has no URL",
        ),
        (
            json!({ "name": "web", "branch": "a..b" }),
            "not a valid branch",
        ),
    ] {
        let r = hub
            .post_json("/api/projects/shop/repositories", &api, body.clone())
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        let msg = r.json()["error"].as_str().unwrap().to_string();
        assert!(msg.contains(want), "{body}: {msg}");
    }
    // The form shows the sentence and keeps the input.
    let r = hub
        .post_form(
            "/projects/shop/repositories",
            &alice,
            &[
                ("name", "web"),
                ("kind", "external"),
                ("url", "ftp://host/x"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("URLs are not supported") && r.body.contains("ftp://host/x"));

    // A valid repository while pcr-ci is not there: refused, and not recorded either.
    let r = hub
        .post_json(
            "/api/projects/shop/repositories",
            &api,
            json!({ "name": "web" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.body);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("pcr-ci is not configured"));
    assert!(hub.app.db.repositories(1).unwrap().is_empty());

    // Users and tokens.
    let r = hub
        .post_json(
            "/api/users",
            &api,
            json!({ "username": "alice", "password": "longenough" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = hub
        .post_json(
            "/api/users",
            &api,
            json!({ "username": "bob", "password": "short" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = hub
        .post_json(
            "/api/projects/shop/members",
            &api,
            json!({ "username": "ghost", "role": "viewer" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("no user named ghost"));
    let r = hub
        .post_json(
            "/api/projects/shop/members",
            &api,
            json!({ "username": "alice", "role": "god" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(hub.app.db.users().unwrap().len(), 1);
    let r = hub
        .post_json("/api/tokens", &api, json!({ "name": "" }))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = hub
        .post_json("/api/tokens", &api, json!({ "name": "deploy" }))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = hub
        .post_json("/api/tokens", &api, json!({ "name": "deploy" }))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    // Unknown routes.
    assert_eq!(hub.get("/nope", &alice).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        hub.get("/api/nope", &api).await.json()["error"],
        "there is nothing at this address"
    );
}

#[tokio::test]
async fn api_tokens_work_once_created_and_stop_when_revoked() {
    let hub = Hub::new();
    let (alice, _) = hub.user("alice", true);
    let page = hub
        .post_form("/settings/tokens", &alice, &[("name", "script")])
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let at = page.body.find("id=\"new-token\">").unwrap() + 15;
    let secret = page.body[at..].split('<').next().unwrap().to_string();
    assert!(secret.starts_with("pcr_"), "{secret}");
    let script = As {
        bearer: Some(secret),
        ..As::default()
    };
    let tokens = hub.get("/api/tokens", &script).await.json();
    let id = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "script")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    assert!(
        !tokens.to_string().contains("pcr_"),
        "secrets are never listed"
    );
    let r = hub
        .post_form(&format!("/settings/tokens/{id}/revoke"), &alice, &[])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(
        hub.get("/api/tokens", &script).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn data_survives_restart() {
    let mut hub = Hub::new();
    let (alice, api) = hub.user("alice", true);
    hub.user("bob", false);
    hub.post_form(
        "/projects",
        &alice,
        &[("name", "shop"), ("description", "kept")],
    )
    .await;
    hub.post_json(
        "/api/projects/shop/members",
        &api,
        json!({ "username": "bob", "role": "viewer" }),
    )
    .await;
    hub.restart();
    let p = hub.get("/api/projects/shop", &api).await;
    assert_eq!(p.status, StatusCode::OK, "the token still works");
    assert_eq!(p.json()["project"]["description"], "kept");
    assert_eq!(p.json()["members"].as_array().unwrap().len(), 2);
    let page = hub.get("/projects/shop", &alice).await;
    assert_eq!(page.status, StatusCode::OK, "the session still works");
}

#[tokio::test]
async fn badges_need_their_key_and_say_unknown_without_pcr_ci() {
    let hub = Hub::new();
    let (_, api) = hub.user("alice", true);
    hub.post_json("/api/projects", &api, json!({ "name": "shop" }))
        .await;
    let project = hub.app.db.project_for("shop", 1).unwrap().unwrap().0;
    let repo = hub
        .app
        .db
        .create_repository(&project, "web", repohub::db::RepoKind::Hosted, None, "main")
        .unwrap();
    let anon = As::anonymous();
    let svg = hub
        .get(&format!("/badge/{}.svg", repo.badge_key), &anon)
        .await;
    assert_eq!(svg.status, StatusCode::OK);
    assert_eq!(svg.headers["content-type"], "image/svg+xml");
    assert!(svg.body.contains("pipeline: unknown"), "{}", svg.body);
    let j = hub
        .get(&format!("/badge/{}.json", repo.badge_key), &anon)
        .await
        .json();
    assert_eq!(
        j,
        json!({ "schemaVersion": 1, "label": "pipeline", "message": "unknown", "color": "lightgrey" })
    );
    assert_eq!(
        hub.get("/badge/guess.svg", &anon).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn pages_render_for_a_new_user() {
    let hub = Hub::new();
    let (alice, _) = hub.user("alice", true);
    for path in [
        "/",
        "/projects",
        "/deployments",
        "/deployments/live",
        "/admin/users",
        "/settings",
    ] {
        let r = hub.get(path, &alice).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
        assert!(r.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'"));
    }
    let d = hub.get("/deployments", &alice).await;
    assert!(
        d.body.contains("Control plane"),
        "the page says it is not connected"
    );
}
