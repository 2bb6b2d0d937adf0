//! A real browser (Debian's headless Chromium through chromedriver) signs up, creates a
//! project, adds a repository, watches a pipeline's log lines arrive live, and takes
//! screenshots (written to the target directory, to be looked at).
#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/sim.rs"]
mod sim;

use std::time::{Duration, Instant};

use common::webdriver::Browser;
use common::{Ci, Source};
use test_support::{ControlPlane, Options};

fn save(name: &str, png: &[u8]) -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, png).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{name} is not a PNG");
    path
}

/// A simulated cluster of 4 workers and 40 VMs as generation `generation`.
fn populate(cp: &ControlPlane, generation: u64) {
    let (addr, token) = (cp.addr.clone(), cp.operator_token.clone());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        tokio::task::LocalSet::new().block_on(&rt, async {
            sim::populate(&addr, &token, 4, 40, generation, 9).await;
        });
    })
    .join()
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_signs_up_adds_a_repository_and_watches_a_live_log() {
    let cp = ControlPlane::start_with(Options {
        lease_ms: 600_000,
        heartbeat_ms: 2_000,
    });
    populate(&cp, 1);
    let dir = tempfile::tempdir().unwrap();
    let ci = Ci::start(dir.path(), &cp);
    let app = repohub::App::start(common::config(
        dir.path(),
        &cp.addr,
        &cp.operator_token,
        Some(ci.url.clone()),
        &ci.state,
    ))
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, repohub::router(app)).await });

    let browser = Browser::start(&dir.path().join("chromedriver.log")).await;
    browser.goto(&format!("{base}/")).await;
    assert!(browser.current_url().await.ends_with("/setup"));
    browser.type_into("input[name=username]", "admin").await;
    browser
        .type_into("input[name=password]", "correct horse battery")
        .await;
    browser.click("button[type=submit]").await;
    browser.wait_for_url("/projects").await;

    browser
        .type_into("form[action='/projects'] input[name=name]", "shop")
        .await;
    browser
        .type_into(
            "form[action='/projects'] input[name=description]",
            "The web shop and its workers",
        )
        .await;
    browser
        .click("form[action='/projects'] button[type=submit]")
        .await;
    browser.wait_for_url("/projects/shop").await;
    browser
        .find("form[action='/projects/shop/repositories']")
        .await;
    browser.click("details.card > summary").await;
    browser
        .type_into(
            "form[action='/projects/shop/repositories'] input[name=name]",
            "web",
        )
        .await;
    browser
        .click("form[action='/projects/shop/repositories'] button[type=submit]")
        .await;
    // The project page has its own empty-state paragraph: wait for the navigation, not for
    // an element both pages may show.
    browser
        .wait_for_url("/projects/shop/repositories/web")
        .await;
    browser.find("table.commits, p.empty").await;

    // Push: a pipeline whose check prints a line every 0.4 s.
    let src = Source::new();
    src.write(
        "Cargo.toml",
        "[package]\nname = \"web\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    );
    src.write("src/main.rs", "fn main() {}\n");
    src.write_ticking_flake(25, "0.4");
    src.commit("Add the web service");
    src.push(&ci.state.join("repos/shop.web.git"));

    // The pipelines page lists it; open it while it runs.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        browser
            .goto(&format!("{base}/projects/shop/pipelines"))
            .await;
        if browser.count("table.pipelines tbody tr").await > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no pipeline listed");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    browser.click("table.pipelines tbody tr td a").await;
    browser.find("pre#log").await;

    // Lines arrive without reloading: the count grows while we watch.
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut seen = Vec::new();
    loop {
        let n = browser.count("pre#log span.line").await;
        if seen.last() != Some(&n) {
            seen.push(n);
        }
        let state = browser.text("#log-state").await;
        if state.contains("pipeline succeeded") || state.contains("pipeline failed") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the pipeline did not finish; counts seen {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let log = browser.text("pre#log").await;
    assert!(log.contains("tick 1") && log.contains("tick 25"), "{log}");
    // Live: the page showed some lines before it had them all, without being reloaded.
    let total = *seen.last().unwrap();
    assert!(
        seen.iter().any(|&n| n > 0 && n < total),
        "lines arrived all at once: {seen:?}"
    );
    let shot = save("repohub-pipeline.png", &browser.screenshot().await);
    println!("screenshot: {}", shot.display());

    browser
        .goto(&format!("{base}/projects/shop/repositories/web"))
        .await;
    browser.find("pre.code").await;
    println!(
        "screenshot: {}",
        save("repohub-repository.png", &browser.screenshot().await).display()
    );
    // The pipeline published an empty cluster; bring the simulated VMs back as a newer
    // generation, and the page (already open) updates itself.
    browser.goto(&format!("{base}/deployments")).await;
    browser.find("table#vms").await;
    populate(&cp, 10);
    let deadline = Instant::now() + Duration::from_secs(30);
    while browser.count("table#vms tbody tr").await < 40 {
        assert!(
            Instant::now() < deadline,
            "the deployments page did not update live"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "screenshot: {}",
        save("repohub-deployments.png", &browser.screenshot().await).display()
    );
    browser.set_window(390, 844).await;
    browser.goto(&format!("{base}/projects/shop")).await;
    browser.find("h1").await;
    println!(
        "screenshot: {}",
        save("repohub-project-phone.png", &browser.screenshot().await).display()
    );
    browser.goto(&format!("{base}/deployments")).await;
    browser.find("table#vms").await;
    println!(
        "screenshot: {}",
        save("repohub-deployments-phone.png", &browser.screenshot().await).display()
    );
    browser.quit().await;
    server.abort();
}
