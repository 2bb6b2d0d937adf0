//! The binary-cache protocol at the HTTP level: what the cache refuses and why, driven through
//! the router in-process (`oneshot`) or, where the transport matters, over a real socket.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use cache::signing::SecretKey;
use cache::{router, App, Auth, Cache, StoreConfig};
use common::{base32, sha256, Upload, UPLOAD_TOKEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

const LEAF: &str = "0q43idch209zsdngl8yl79x0y79aajib";
const TOP: &str = "1v2a5nw6kfwbysp5q9dmyq3d1kq1cbhl";

struct Harness {
    dir: tempfile::TempDir,
    app: Arc<App>,
    key: SecretKey,
}

impl Harness {
    fn new() -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = SecretKey::generate("proto-1").expect("key");
        let cache = Cache::open(StoreConfig {
            storage: dir.path().join("storage"),
            store_dir: "/nix/store".into(),
            signing_key: Some(key.clone()),
            gc_grace: std::time::Duration::from_millis(50),
        })
        .expect("cache opens");
        let app = Arc::new(App {
            cache: Arc::new(cache),
            priority: 30,
            auth: Auth::new(&[UPLOAD_TOKEN.to_owned()], &[]),
        });
        Harness { dir, app, key }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: impl Into<Body>,
    ) -> (StatusCode, String) {
        let (status, bytes) = self.send_raw(method, path, body).await;
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    async fn send_raw(
        &self,
        method: Method,
        path: &str,
        body: impl Into<Body>,
    ) -> (StatusCode, Vec<u8>) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {UPLOAD_TOKEN}"))
            .body(body.into())
            .expect("request");
        let response = router(Arc::clone(&self.app))
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        (status, bytes.to_vec())
    }

    async fn put_nar(&self, upload: &Upload) -> (StatusCode, String) {
        self.send(
            Method::PUT,
            &format!("/nar/{}", upload.file_name),
            upload.file.clone(),
        )
        .await
    }

    async fn put_narinfo(&self, upload: &Upload, text: String) -> (StatusCode, String) {
        self.send(Method::PUT, &format!("/{}.narinfo", upload.hash), text)
            .await
    }

    fn storage_files(&self) -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["nar", "tmp"] {
            for entry in std::fs::read_dir(self.dir.path().join("storage").join(sub)).expect("dir")
            {
                out.push(format!(
                    "{sub}/{}",
                    entry.expect("entry").file_name().to_string_lossy()
                ));
            }
        }
        out.sort();
        out
    }
}

#[tokio::test]
async fn cache_info_announces_store_dir_and_priority() {
    let h = Harness::new();
    let (status, body) = h.send(Method::GET, "/nix-cache-info", Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n"
    );
    let (status, _) = h
        .send(Method::PUT, "/nix-cache-info", "StoreDir: /gnu/store\n")
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "another store dir is refused"
    );
}

#[tokio::test]
async fn published_narinfo_is_signed_and_points_at_the_stored_nar() {
    let h = Harness::new();
    let leaf = Upload::new(LEAF, "leaf", b"leaf contents\n");
    assert_eq!(h.put_nar(&leaf).await.0, StatusCode::OK);
    let (status, body) = h.put_narinfo(&leaf, leaf.narinfo(&[])).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, text) = h
        .send(Method::GET, &format!("/{LEAF}.narinfo"), Body::empty())
        .await;
    assert_eq!(status, StatusCode::OK);
    let info = cache::narinfo::NarInfo::parse("/nix/store", &text).expect("served narinfo parses");
    assert_eq!(info.url, format!("nar/{}", leaf.file_name));
    assert!(text.ends_with('\n'), "nix needs the final newline");
    let sig = info
        .sigs
        .iter()
        .find(|s| s.starts_with("proto-1:"))
        .expect("signed");
    assert!(h.key.public().verify(&info.fingerprint("/nix/store"), sig));

    let (status, nar) = h
        .send_raw(
            Method::GET,
            &format!("/nar/{}", leaf.file_name),
            Body::empty(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(nar, leaf.file);
}

#[tokio::test]
async fn corrupt_nar_upload_is_refused_and_leaves_nothing() {
    let h = Harness::new();
    let mut leaf = Upload::new(LEAF, "leaf", b"leaf contents\n");
    let last = leaf.file.len() - 1;
    leaf.file[last] ^= 0x55;
    let (status, body) = h.put_nar(&leaf).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(h.storage_files().is_empty(), "{:?}", h.storage_files());
    let (status, _) = h
        .send(
            Method::HEAD,
            &format!("/nar/{}", leaf.file_name),
            Body::empty(),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Bytes that hash right but are not a NAR at all.
    let junk = b"#!/bin/sh\nrm -rf /\n".to_vec();
    let name = format!("{}.nar", base32(&sha256(&junk)));
    let (status, body) = h.send(Method::PUT, &format!("/nar/{name}"), junk).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("not a NAR"), "{body}");
    assert!(h.storage_files().is_empty());
}

#[tokio::test]
async fn narinfo_that_disagrees_with_its_nar_is_refused() {
    let h = Harness::new();
    let leaf = Upload::new(LEAF, "leaf", b"leaf contents\n");

    let (status, body) = h.put_narinfo(&leaf, leaf.narinfo(&[])).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "narinfo before its NAR: {body}"
    );
    assert!(body.contains("has not been uploaded"), "{body}");

    assert_eq!(h.put_nar(&leaf).await.0, StatusCode::OK);
    let other = base32(&sha256(b"something else"));
    let wrong_hash = leaf
        .narinfo(&[])
        .replace(&base32(&sha256(&leaf.nar)), &other);
    let (status, body) = h.put_narinfo(&leaf, wrong_hash).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("NarHash"), "{body}");

    let wrong_size = leaf.narinfo(&[]).replace(
        &format!("NarSize: {}", leaf.nar.len()),
        &format!("NarSize: {}", leaf.nar.len() + 8),
    );
    let (status, body) = h.put_narinfo(&leaf, wrong_size).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("NarSize"), "{body}");

    let (status, body) = h.put_narinfo(&leaf, leaf.narinfo(&[])).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the honest narinfo still goes in: {body}"
    );
}

#[tokio::test]
async fn narinfo_with_missing_references_is_refused_until_they_arrive() {
    let h = Harness::new();
    let leaf = Upload::new(LEAF, "leaf", b"leaf\n");
    let top = Upload::new(TOP, "top", b"top\n");
    assert_eq!(h.put_nar(&top).await.0, StatusCode::OK);
    let refs = [format!("{LEAF}-leaf"), format!("{TOP}-top")];
    let refs: Vec<&str> = refs.iter().map(String::as_str).collect();

    let (status, body) = h.put_narinfo(&top, top.narinfo(&refs)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body.contains(&format!("/nix/store/{LEAF}-leaf")), "{body}");
    let (status, _) = h
        .send(Method::GET, &format!("/{TOP}.narinfo"), Body::empty())
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "never served with an incomplete closure"
    );

    assert_eq!(h.put_nar(&leaf).await.0, StatusCode::OK);
    assert_eq!(
        h.put_narinfo(&leaf, leaf.narinfo(&[])).await.0,
        StatusCode::OK
    );
    let (status, body) = h.put_narinfo(&top, top.narinfo(&refs)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_store_path_cannot_change_contents() {
    let h = Harness::new();
    let first = Upload::new(LEAF, "leaf", b"first\n");
    let second = Upload::new(LEAF, "leaf", b"second\n");
    for u in [&first, &second] {
        assert_eq!(h.put_nar(u).await.0, StatusCode::OK);
    }
    assert_eq!(
        h.put_narinfo(&first, first.narinfo(&[])).await.0,
        StatusCode::OK
    );
    let (status, body) = h.put_narinfo(&second, second.narinfo(&[])).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    // Re-uploading the same contents is fine (nix retries do this).
    assert_eq!(
        h.put_narinfo(&first, first.narinfo(&[])).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn path_traversal_names_are_refused() {
    let h = Harness::new();
    let leaf = Upload::new(LEAF, "leaf", b"leaf\n");
    assert_eq!(h.put_nar(&leaf).await.0, StatusCode::OK);

    for path in [
        "/nar/..%2Findex.sqlite",
        "/nar/..%2F..%2F..%2Fetc%2Fpasswd",
        "/nar/%2e%2e",
        "/..%2Findex.sqlite",
        "/nar/../index.sqlite",
        "/index.sqlite",
        "/tmp",
    ] {
        let (status, _) = h.send(Method::GET, path, Body::empty()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "GET {path}");
        let (status, _) = h.send(Method::PUT, path, b"x".to_vec()).await;
        assert!(status.is_client_error(), "PUT {path}: {status}");
    }

    let sneaky = [
        leaf.narinfo(&[]).replace(
            &format!("URL: nar/{}", leaf.file_name),
            "URL: nar/../index.sqlite",
        ),
        leaf.narinfo(&[]).replace(
            &format!("StorePath: /nix/store/{LEAF}-leaf"),
            &format!("StorePath: /nix/store/../../etc/{LEAF}-leaf"),
        ),
        leaf.narinfo(&[])
            .replace("References: ", "References: ../../etc/passwd"),
    ];
    for text in sneaky {
        let (status, body) = h.put_narinfo(&leaf, text).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
    let (status, _) = h.send(Method::PUT, "/api/pins/..%2F..%2Fx", "[]").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(h.storage_files(), [format!("nar/{}", leaf.file_name)]);
}

#[tokio::test]
async fn range_requests_return_the_right_bytes() {
    let h = Harness::new();
    let contents: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let leaf = Upload::new(LEAF, "leaf", &contents);
    assert_eq!(h.put_nar(&leaf).await.0, StatusCode::OK);
    let len = leaf.file.len();

    for (range, start, end) in [
        ("bytes=0-0", 0, 0),
        ("bytes=10-99", 10, 99),
        (&format!("bytes={}-", len - 5) as &str, len - 5, len - 1),
        ("bytes=-16", len - 16, len - 1),
    ] {
        let request = Request::get(format!("/nar/{}", leaf.file_name))
            .header(header::RANGE, range)
            .body(Body::empty())
            .expect("request");
        let response = router(Arc::clone(&h.app))
            .oneshot(request)
            .await
            .expect("infallible");
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            response.headers()[header::CONTENT_RANGE],
            format!("bytes {start}-{end}/{len}").as_str()
        );
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        assert_eq!(&body[..], &leaf.file[start..=end], "{range}");
    }

    let request = Request::get(format!("/nar/{}", leaf.file_name))
        .header(header::RANGE, format!("bytes={len}-"))
        .body(Body::empty())
        .expect("request");
    let response = router(Arc::clone(&h.app))
        .oneshot(request)
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
}

#[tokio::test]
async fn uncompressed_upload_stays_readable_under_its_upload_name() {
    let h = Harness::new();
    let nar = common::nar_of(b"plain\n");
    let name = format!("{}.nar", base32(&sha256(&nar)));
    assert_eq!(
        h.send(Method::PUT, &format!("/nar/{name}"), nar.clone())
            .await
            .0,
        StatusCode::OK
    );
    let files = h.storage_files();
    assert_eq!(files.len(), 1);
    assert!(files[0].ends_with(".nar.zst"), "{files:?}");
    let (status, body) = h
        .send(Method::HEAD, &format!("/nar/{name}"), Body::empty())
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let request = Request::get(format!("/nar/{name}"))
        .body(Body::empty())
        .expect("request");
    let response = router(Arc::clone(&h.app))
        .oneshot(request)
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    assert_eq!(&body[..], &nar[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_upload_leaves_no_nar_and_no_narinfo() {
    let h = Harness::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(cache::serve(listener, Arc::clone(&h.app), None, async {
        let _ = stopped.await;
    }));

    let contents: Vec<u8> = (0..2_000_000u32).map(|i| (i % 13) as u8).collect();
    let leaf = Upload::new(LEAF, "leaf", &contents);
    let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "PUT /nar/{} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {UPLOAD_TOKEN}\r\n\
         Content-Length: {}\r\n\r\n",
        leaf.file_name,
        leaf.file.len()
    );
    socket.write_all(head.as_bytes()).await.expect("write");
    socket
        .write_all(&leaf.file[..leaf.file.len() / 2])
        .await
        .expect("write");
    // The upload's temporary file exists while the body trickles in...
    let spool = h.dir.path().join("storage/tmp");
    let spooled = common::eventually(Duration::from_secs(10), || {
        std::fs::read_dir(&spool)
            .map(|d| d.count() == 1)
            .unwrap_or(false)
    })
    .await;
    assert!(spooled, "upload is being received");
    // ...and the client dies half way.
    drop(socket);
    let cleaned = common::eventually(Duration::from_secs(10), || {
        std::fs::read_dir(&spool)
            .map(|d| d.count() == 0)
            .unwrap_or(false)
    })
    .await;
    assert!(cleaned, "temporary file removed: {:?}", h.storage_files());
    assert!(h.storage_files().is_empty(), "{:?}", h.storage_files());

    let (status, body) = h.put_narinfo(&leaf, leaf.narinfo(&[])).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _) = h
        .send(Method::GET, &format!("/{LEAF}.narinfo"), Body::empty())
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A complete upload over a socket still works afterwards.
    let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = head.replace("HTTP/1.1\r\n", "HTTP/1.1\r\nConnection: close\r\n");
    socket.write_all(head.as_bytes()).await.expect("write");
    socket.write_all(&leaf.file).await.expect("write");
    let mut response = String::new();
    socket.read_to_string(&mut response).await.expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    let _ = stop.send(());
    server.await.expect("join").expect("serve");
}

#[tokio::test]
async fn metrics_count_hits_misses_and_uploads() {
    let h = Harness::new();
    let leaf = Upload::new(LEAF, "leaf", b"leaf\n");
    h.put_nar(&leaf).await;
    h.put_narinfo(&leaf, leaf.narinfo(&[])).await;
    h.send(Method::GET, &format!("/{LEAF}.narinfo"), Body::empty())
        .await;
    h.send(Method::GET, &format!("/{TOP}.narinfo"), Body::empty())
        .await;
    h.send(
        Method::GET,
        &format!("/nar/{}", leaf.file_name),
        Body::empty(),
    )
    .await;
    let (status, text) = h.send(Method::GET, "/metrics", Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    for line in [
        "pcr_cache_narinfo_requests_total{result=\"hit\"} 1\n".to_owned(),
        "pcr_cache_narinfo_requests_total{result=\"miss\"} 1\n".to_owned(),
        "pcr_cache_nar_requests_total{result=\"hit\"} 1\n".to_owned(),
        "pcr_cache_uploads_total{kind=\"nar\"} 1\n".to_owned(),
        "pcr_cache_uploads_total{kind=\"narinfo\"} 1\n".to_owned(),
        "pcr_cache_paths 1\n".to_owned(),
        format!("pcr_cache_stored_bytes {}\n", leaf.file.len()),
    ] {
        assert!(text.contains(&line), "missing {line:?} in\n{text}");
    }
}

#[tokio::test]
async fn uploads_and_pin_changes_need_the_token() {
    let h = Harness::new();
    let leaf = Upload::new(LEAF, "leaf", b"leaf\n");
    for (method, path) in [
        (Method::PUT, format!("/nar/{}", leaf.file_name)),
        (Method::PUT, format!("/{LEAF}.narinfo")),
        (Method::PUT, "/api/pins/x".to_owned()),
        (Method::DELETE, "/api/pins/x".to_owned()),
    ] {
        let request = Request::builder()
            .method(method.clone())
            .uri(&path)
            .header(header::AUTHORIZATION, "Bearer wrong")
            .body(Body::from(leaf.file.clone()))
            .expect("request");
        let response = router(Arc::clone(&h.app))
            .oneshot(request)
            .await
            .expect("infallible");
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path}"
        );
        assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
    }
    assert!(h.storage_files().is_empty());
}
