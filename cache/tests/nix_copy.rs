//! The cache against the real `nix`: pushes with `nix copy --to http://…`, pulls with
//! `nix copy --from` into fresh chroot stores, signature trust, tokens, GC and restarts.

mod common;

use std::path::Path;
use std::time::Duration;

use cache::signing::SecretKey;
use common::{fixture, hash_part, nix, run, stderr, TestCache};

fn in_store(dest: &Path, store_path: &str) -> std::path::PathBuf {
    dest.join(store_path.trim_start_matches('/'))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_then_pull_into_a_fresh_store_with_a_key_made_by_nix() {
    let fx = fixture();
    let dir = tempfile::tempdir().expect("tempdir");
    // The signing key comes from nix itself, and nix checks our signatures with the public half
    // it derives: proof that key files and signatures match Nix byte for byte.
    let xdg = dir.path().join("xdg");
    let secret = run(nix(&xdg).args(["key", "generate-secret", "--key-name", "nix-made-1"])).await;
    assert!(secret.status.success(), "{}", stderr(&secret));
    let secret_text = String::from_utf8(secret.stdout).expect("utf8");
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, &secret_text).expect("write key");
    let public = run(nix(&xdg)
        .args(["key", "convert-secret-to-public"])
        .stdin(std::fs::File::open(&secret_file).expect("key file")))
    .await;
    assert!(public.status.success(), "{}", stderr(&public));
    let public = String::from_utf8(public.stdout)
        .expect("utf8")
        .trim()
        .to_owned();

    let key = SecretKey::parse(&secret_text).expect("nix key parses");
    let cache = TestCache::start(&dir.path().join("storage"), Some(key)).await;
    let push = cache.push(&[&fx.top], "zstd", true).await;
    assert!(push.status.success(), "push failed: {}", stderr(&push));
    assert_eq!(cache.nar_files().len(), 3, "top, mid and leaf stored");

    let dest = dir.path().join("dest");
    let pull = cache.pull(&[&fx.top], &public, &dest).await;
    assert!(pull.status.success(), "pull failed: {}", stderr(&pull));
    for path in [&fx.top, &fx.mid, &fx.leaf] {
        assert!(in_store(&dest, path).exists(), "{path} pulled");
    }
    let hello = in_store(&dest, &fx.mid).join("bin/hello");
    assert_eq!(
        std::fs::read_to_string(&hello).expect("hello"),
        "#!/bin/sh\necho hello from mid\n"
    );
    // nix re-checks the whole closure against the NAR hashes it recorded.
    let verify = run(nix(&xdg)
        .args(["store", "verify", "--store"])
        .arg(&dest)
        .args([
            "--option",
            "trusted-public-keys",
            &public,
            "--sigs-needed",
            "1",
            "-r",
            &fx.top,
        ]))
    .await;
    assert!(
        verify.status.success(),
        "verify failed: {}",
        stderr(&verify)
    );
    cache.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_is_refused_when_the_cache_key_is_not_trusted() {
    let fx = fixture();
    let dir = tempfile::tempdir().expect("tempdir");
    let key = SecretKey::generate("cache-a").expect("key");
    let cache = TestCache::start(&dir.path().join("storage"), Some(key)).await;
    let push = cache.push(&[&fx.mid], "zstd", true).await;
    assert!(push.status.success(), "push failed: {}", stderr(&push));

    let stranger = SecretKey::generate("cache-a")
        .expect("key")
        .public()
        .to_string();
    let dest = dir.path().join("dest");
    let pull = cache.pull(&[&fx.mid], &stranger, &dest).await;
    assert!(
        !pull.status.success(),
        "pull with an untrusted key must fail"
    );
    assert!(
        stderr(&pull).contains("lacks a valid signature"),
        "{}",
        stderr(&pull)
    );
    assert!(!in_store(&dest, &fx.mid).exists());
    cache.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_without_token_gets_401_and_stores_nothing() {
    let fx = fixture();
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = TestCache::start(&dir.path().join("storage"), None).await;
    let push = cache.push(&[&fx.top], "zstd", false).await;
    assert!(!push.status.success(), "push without a token must fail");
    assert!(stderr(&push).contains("401"), "{}", stderr(&push));
    assert!(cache.nar_files().is_empty());
    let narinfo = cache
        .get(&format!("/{}.narinfo", hash_part(&fx.leaf)))
        .await;
    assert_eq!(narinfo.status(), 404);
    let metrics = cache.get("/metrics").await.text().await.expect("metrics");
    assert!(
        !metrics.contains("pcr_cache_unauthorized_total 0\n"),
        "refusals are counted:\n{metrics}"
    );
    cache.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xz_and_uncompressed_pushes_are_served_and_uncompressed_ones_stored_as_zstd() {
    let fx = fixture();
    let dir = tempfile::tempdir().expect("tempdir");
    let key = SecretKey::generate("cache-c").expect("key");
    let public = key.public().to_string();
    let cache = TestCache::start(&dir.path().join("storage"), Some(key)).await;

    let xz = cache.push(&[&fx.mid], "xz", true).await;
    assert!(xz.status.success(), "xz push failed: {}", stderr(&xz));
    let none = cache.push(&[&fx.other], "none", true).await;
    assert!(
        none.status.success(),
        "uncompressed push failed: {}",
        stderr(&none)
    );

    let files = cache.nar_files();
    assert_eq!(
        files.iter().filter(|f| f.ends_with(".nar.xz")).count(),
        2,
        "{files:?}"
    );
    assert_eq!(
        files.iter().filter(|f| f.ends_with(".nar.zst")).count(),
        2,
        "{files:?}"
    );
    assert!(!files.iter().any(|f| f.ends_with(".nar")), "{files:?}");
    let narinfo = cache
        .get(&format!("/{}.narinfo", hash_part(&fx.other)))
        .await
        .text()
        .await
        .expect("narinfo");
    assert!(narinfo.contains("Compression: zstd\n"), "{narinfo}");

    let dest = dir.path().join("dest");
    let pull = cache.pull(&[&fx.mid, &fx.other], &public, &dest).await;
    assert!(pull.status.success(), "pull failed: {}", stderr(&pull));
    for path in [&fx.mid, &fx.leaf, &fx.other, &fx.other_leaf] {
        assert!(in_store(&dest, path).exists(), "{path} pulled");
    }

    // A second push finds everything present and uploads nothing.
    let before = cache.nar_files();
    let again = cache.push(&[&fx.other], "none", true).await;
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(cache.nar_files(), before);
    cache.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_keeps_pinned_closures_whole_and_removes_the_rest() {
    let fx = fixture();
    let dir = tempfile::tempdir().expect("tempdir");
    let key = SecretKey::generate("cache-g").expect("key");
    let public = key.public().to_string();
    let cache = TestCache::start(&dir.path().join("storage"), Some(key)).await;
    let push = cache.push(&[&fx.top, &fx.other], "zstd", true).await;
    assert!(push.status.success(), "push failed: {}", stderr(&push));
    assert_eq!(cache.nar_files().len(), 5);

    let client = reqwest::Client::new();
    let pin = |body: String| {
        client
            .put(format!("{}/api/pins/generation-7", cache.url))
            .bearer_auth(common::UPLOAD_TOKEN)
            .body(body)
            .send()
    };
    let refused =
        pin(serde_json::json!(["/nix/store/00000000000000000000000000000000-nope"]).to_string())
            .await
            .expect("request");
    assert_eq!(
        refused.status(),
        409,
        "pinning what the cache lacks is refused"
    );
    let pinned = pin(serde_json::json!([fx.top]).to_string())
        .await
        .expect("request");
    assert_eq!(pinned.status(), 204, "{:?}", pinned.text().await);

    let app = std::sync::Arc::clone(&cache.app);
    let report = tokio::task::spawn_blocking(move || app.cache.gc(Duration::ZERO))
        .await
        .expect("join")
        .expect("gc");
    assert_eq!(
        (report.paths_kept, report.paths_deleted, report.nars_deleted),
        (3, 2, 2)
    );
    assert_eq!(cache.nar_files().len(), 3);
    for (path, status) in [
        (&fx.top, 200),
        (&fx.mid, 200),
        (&fx.leaf, 200),
        (&fx.other, 404),
        (&fx.other_leaf, 404),
    ] {
        let got = cache
            .get(&format!("/{}.narinfo", hash_part(path)))
            .await
            .status();
        assert_eq!(got, status, "{path}");
    }
    let dest = dir.path().join("dest");
    let pull = cache.pull(&[&fx.top], &public, &dest).await;
    assert!(
        pull.status.success(),
        "pinned closure pulls whole: {}",
        stderr(&pull)
    );

    let unpinned = client
        .delete(format!("{}/api/pins/generation-7", cache.url))
        .bearer_auth(common::UPLOAD_TOKEN)
        .send()
        .await
        .expect("request");
    assert_eq!(unpinned.status(), 204);
    let app = std::sync::Arc::clone(&cache.app);
    let report = tokio::task::spawn_blocking(move || app.cache.gc(Duration::ZERO))
        .await
        .expect("join")
        .expect("gc");
    assert_eq!((report.paths_kept, report.paths_deleted), (0, 3));
    assert!(cache.nar_files().is_empty());
    cache.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_everything_and_a_new_key_re_signs() {
    let fx = fixture();
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("storage");
    let first = SecretKey::generate("cache-r-1").expect("key");
    let cache = TestCache::start(&storage, Some(first.clone())).await;
    let push = cache.push(&[&fx.top], "zstd", true).await;
    assert!(push.status.success(), "push failed: {}", stderr(&push));
    cache.stop().await;

    let cache = TestCache::start(&storage, Some(first.clone())).await;
    let dest = dir.path().join("dest-same-key");
    let pull = cache
        .pull(&[&fx.top], &first.public().to_string(), &dest)
        .await;
    assert!(
        pull.status.success(),
        "pull after restart: {}",
        stderr(&pull)
    );
    cache.stop().await;

    let second = SecretKey::generate("cache-r-2").expect("key");
    let cache = TestCache::start(&storage, Some(second.clone())).await;
    let dest = dir.path().join("dest-new-key");
    let pull = cache
        .pull(&[&fx.top], &second.public().to_string(), &dest)
        .await;
    assert!(
        pull.status.success(),
        "pull with the new key: {}",
        stderr(&pull)
    );
    let narinfo = cache
        .get(&format!("/{}.narinfo", hash_part(&fx.top)))
        .await
        .text()
        .await
        .expect("narinfo");
    assert!(
        !narinfo.contains("Sig: cache-r-1:"),
        "old signature dropped:\n{narinfo}"
    );
    cache.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_token_protects_pulls_and_nix_sends_it_from_netrc() {
    let fx = fixture();
    let dir = tempfile::tempdir().expect("tempdir");
    let key = SecretKey::generate("cache-p").expect("key");
    let public = key.public().to_string();
    let cache = TestCache::start_with(
        &dir.path().join("storage"),
        Some(key),
        &["reader-token".to_owned()],
    )
    .await;
    // The upload token also reads, so nix can push with one netrc entry.
    let push = cache.push(&[&fx.leaf], "zstd", true).await;
    assert!(push.status.success(), "push failed: {}", stderr(&push));

    let anonymous = dir.path().join("dest-anonymous");
    let pull = cache.pull(&[&fx.leaf], &public, &anonymous).await;
    assert!(!pull.status.success(), "anonymous pull must fail");

    let netrc = dir.path().join("reader-netrc");
    std::fs::write(
        &netrc,
        "machine 127.0.0.1 login worker password reader-token\n",
    )
    .expect("netrc");
    let dest = dir.path().join("dest-reader");
    let pull = run(nix(&dir.path().join("xdg-reader"))
        .args(["copy", "--from", &cache.url, "--to"])
        .arg(&dest)
        .args(["--option", "trusted-public-keys", &public])
        .args(["--option", "netrc-file"])
        .arg(&netrc)
        .arg(&fx.leaf))
    .await;
    assert!(
        pull.status.success(),
        "pull with the read token: {}",
        stderr(&pull)
    );
    cache.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_pin_and_gc_work_next_to_a_running_server() {
    let fx = fixture();
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("storage");
    let key = SecretKey::generate("cache-cli").expect("key");
    let public = key.public().to_string();
    let cache = TestCache::start(&storage, Some(key)).await;
    let push = cache.push(&[&fx.top, &fx.other], "zstd", true).await;
    assert!(push.status.success(), "push failed: {}", stderr(&push));
    // Served once, so the server holds it in memory: the CLI's GC must still take it away.
    let other = format!("/{}.narinfo", hash_part(&fx.other));
    assert_eq!(cache.get(&other).await.status(), 200);

    let cli = |args: &[&str]| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_pcr-cache"));
        cmd.args(args)
            .arg("--storage")
            .arg(&storage)
            .kill_on_drop(true);
        cmd
    };
    let pin = run(&mut cli(&["pin", "generation-3", &fx.top])).await;
    assert!(pin.status.success(), "{}", stderr(&pin));
    let pins = run(&mut cli(&["pins"])).await;
    let pins: serde_json::Value = serde_json::from_slice(&pins.stdout).expect("json");
    assert_eq!(pins["generation-3"], serde_json::json!([fx.top]));

    let gc = run(&mut cli(&["gc", "--retention", "0"])).await;
    assert!(gc.status.success(), "{}", stderr(&gc));
    let report: serde_json::Value = serde_json::from_slice(&gc.stdout).expect("json");
    assert_eq!(report["paths_deleted"], 2, "{report}");

    let mut gone = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !gone && std::time::Instant::now() < deadline {
        gone = cache.get(&other).await.status() == 404;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        gone,
        "the server stops serving what another process collected"
    );
    assert_eq!(cache.nar_files().len(), 3);
    let dest = dir.path().join("dest");
    let pull = cache.pull(&[&fx.top], &public, &dest).await;
    assert!(
        pull.status.success(),
        "pinned closure intact: {}",
        stderr(&pull)
    );
    cache.stop().await;
}
