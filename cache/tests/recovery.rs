//! Recovery at start, the case it exists for: a published path whose NAR file went missing
//! behind the cache's back once kept pcr-cache from starting (`FOREIGN KEY constraint failed`).
//! Now the path, and every path whose closure needed it, stops being served; the rest is kept,
//! and pushing the path again heals it.

mod common;

use common::{fixture, hash_part, stderr, TestCache};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_nar_file_is_repaired_at_start_instead_of_stopping_the_cache() {
    let fx = fixture();
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("storage");
    let cache = TestCache::start(&storage, None).await;
    let push = cache.push(&[&fx.top, &fx.other], "zstd", true).await;
    assert!(push.status.success(), "push failed: {}", stderr(&push));
    let narinfo = cache
        .get(&format!("/{}.narinfo", hash_part(&fx.leaf)))
        .await
        .text()
        .await
        .expect("narinfo");
    let url = narinfo
        .lines()
        .find_map(|l| l.strip_prefix("URL: "))
        .expect("a URL line")
        .to_string();
    cache.stop().await;

    std::fs::remove_file(storage.join(&url)).expect("remove the leaf's NAR");

    let cache = TestCache::start(&storage, None).await;
    let status = |path: &str| {
        let path = format!("/{}.narinfo", hash_part(path));
        let cache = &cache;
        async move { cache.get(&path).await.status().as_u16() }
    };
    assert_eq!(status(&fx.leaf).await, 404, "the path without its NAR");
    assert_eq!(status(&fx.top).await, 404, "a path whose closure lost it");
    assert_eq!(
        status(&fx.other).await,
        404,
        "another closure that shares it"
    );
    assert_eq!(
        status(&fx.other_leaf).await,
        200,
        "a path that did not need it is kept"
    );
    // Pushing again heals it.
    let push = cache.push(&[&fx.top], "zstd", true).await;
    assert!(push.status.success(), "push failed: {}", stderr(&push));
    assert_eq!(status(&fx.leaf).await, 200);
    assert_eq!(status(&fx.top).await, 200);
    cache.stop().await;
}
