//! Closure fetching with the real nix: a path missing from the local store is copied from a
//! signed binary cache when its key is trusted, and refused (an error, not a crash) when not.

use std::path::Path;
use std::process::Command;

use test_support::vm_image::NIX_CONFIG;
use worker::closure::{is_valid, CacheConfig, FetchError, Fetched, Fetcher};

fn nix(args: &[&str], stdin: Option<&Path>) -> String {
    let mut cmd = Command::new("nix");
    cmd.env("NIX_CONFIG", NIX_CONFIG).args(args);
    if let Some(file) = stdin {
        cmd.stdin(std::fs::File::open(file).expect("stdin file"));
    }
    let out = cmd.output().expect("run nix");
    assert!(
        out.status.success(),
        "nix {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A fresh store path (unique content), pushed signed to a `file://` cache, then deleted from
/// the local store. Returns (path, cache url, public key).
fn path_only_in_cache(root: &Path) -> (String, String, String) {
    let nonce = format!("{}-{}", std::process::id(), worker::driver::now_ms());
    let flake = root.join("flake");
    std::fs::create_dir_all(&flake).expect("flake dir");
    std::fs::write(
        flake.join("flake.nix"),
        format!(
            r#"{{ outputs = {{ self }}: {{ packages.x86_64-linux.default = builtins.derivation {{
                name = "procurator-fetch-test"; system = "x86_64-linux"; builder = "/bin/sh";
                args = [ "-c" "echo {nonce} > $out" ]; }}; }}; }}"#
        ),
    )
    .expect("flake");
    let path = test_support::vm_image::nix_build(&flake, "default");
    let secret = root.join("secret.key");
    std::fs::write(
        &secret,
        nix(
            &["key", "generate-secret", "--key-name", "procurator-test-1"],
            None,
        ),
    )
    .expect("secret");
    let public = nix(&["key", "convert-secret-to-public"], Some(&secret));
    nix(
        &[
            "store",
            "sign",
            "--key-file",
            secret.to_str().expect("utf8"),
            &path,
        ],
        None,
    );
    let cache = format!("file://{}", root.join("cache").display());
    nix(&["copy", "--to", &cache, &path], None);
    nix(&["store", "delete", &path], None);
    (path, cache, public)
}

#[tokio::test]
async fn fetches_from_a_trusted_cache_and_refuses_an_untrusted_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (path, cache, public) = tokio::task::spawn_blocking({
        let root = tmp.path().to_path_buf();
        move || path_only_in_cache(&root)
    })
    .await
    .expect("setup");
    assert!(
        !is_valid(&path).await.expect("nix-store"),
        "deleted locally"
    );

    let no_cache = Fetcher::new(CacheConfig::default());
    let err = no_cache.ensure(&path, &|_| {}).await.expect_err("no cache");
    assert!(matches!(err, FetchError::NoCache { .. }), "{err}");

    let wrong_key = Fetcher::new(CacheConfig {
        url: Some(cache.clone()),
        public_key: Some("someone-else-1:Hlz6Gpu/U9BxfA4xWAq2MC2vDFZUK0MRv/ShfLr07bc=".into()),
    });
    let err = wrong_key
        .ensure(&path, &|_| {})
        .await
        .expect_err("untrusted");
    assert!(
        matches!(err, FetchError::Copy { .. }) && err.to_string().contains("signature"),
        "the error names the signature problem: {err}"
    );
    assert!(!is_valid(&path).await.expect("nix-store"));

    let trusted = Fetcher::new(CacheConfig {
        url: Some(cache),
        public_key: Some(public),
    });
    let lines = std::sync::Mutex::new(Vec::new());
    let got = trusted
        .ensure(&path, &|line| lines.lock().expect("lock").push(line))
        .await
        .expect("copied");
    assert_eq!(got, Fetched::Copied);
    assert!(is_valid(&path).await.expect("nix-store"));
    assert!(
        !lines.lock().expect("lock").is_empty(),
        "progress was reported"
    );
    // Second time: nothing to do.
    assert_eq!(
        trusted.ensure(&path, &|_| {}).await.expect("ok"),
        Fetched::AlreadyPresent
    );
}
