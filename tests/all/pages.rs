//! The pages built into the binary (`/`, `/admin`, `/assets/…`): served with
//! their types, a strong ETag (304 on a match), a content security policy,
//! and turned off by `server.pages = false`. What they do in a browser is
//! `browser.rs`.

use crate::harness::*;

#[tokio::test]
async fn pages_and_their_assets_are_served_with_etags_and_a_csp() {
    let server = TestServer::start(Backends::Local).await;
    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/admin", "text/html; charset=utf-8"),
        ("/assets/upload.js", "text/javascript; charset=utf-8"),
        ("/assets/upload.css", "text/css; charset=utf-8"),
        ("/assets/admin.js", "text/javascript; charset=utf-8"),
        ("/assets/admin.css", "text/css; charset=utf-8"),
    ] {
        let response = server.http.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], content_type, "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        if content_type.starts_with("text/html") {
            let csp = headers["content-security-policy"].to_str().unwrap();
            assert!(csp.contains("script-src 'self'"), "{csp}");
            assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        }
        let body = response.bytes().await.unwrap();
        assert!(!body.is_empty(), "{path}");
        // Revalidation: the same ETag gets 304 with no body.
        let etag = headers["etag"].clone();
        let again = server
            .http
            .get(server.url(path))
            .header("if-none-match", etag.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path}");
        assert_eq!(again.headers()["etag"], etag);
        assert!(again.bytes().await.unwrap().is_empty());
    }
    // The pages load only what is bundled: no CDN, no other origin.
    let index = server
        .http
        .get(server.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        index.contains("/assets/upload.js") && !index.contains("https://"),
        "{index}"
    );
    server.stop().await;
}

/// A browser that takes gzip gets the bytes compressed at build time, under
/// their own ETag; one that refuses it (`q=0`) gets them as they are.
#[tokio::test]
async fn assets_are_served_gzipped_to_browsers_that_take_it() {
    let server = TestServer::start(Backends::Local).await;
    let get = |encoding: &'static str| {
        let server = &server;
        async move {
            server
                .http
                .get(server.url("/assets/upload.js"))
                .header("accept-encoding", encoding)
                .send()
                .await
                .unwrap()
        }
    };
    let plain = get("identity").await;
    assert!(plain.headers().get("content-encoding").is_none());
    assert_eq!(plain.headers()["vary"], "accept-encoding");
    let plain_tag = plain.headers()["etag"].clone();
    let plain_body = plain.bytes().await.unwrap();

    let gzipped = get("br, gzip;q=0.8").await;
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    let gzip_tag = gzipped.headers()["etag"].clone();
    assert_ne!(gzip_tag, plain_tag);
    let gz = gzipped.bytes().await.unwrap();
    assert_eq!(&gz[..2], &[0x1f, 0x8b], "a gzip stream");
    assert!(
        gz.len() * 3 < plain_body.len(),
        "{} of {} bytes",
        gz.len(),
        plain_body.len()
    );

    let refused = get("gzip;q=0, identity").await;
    assert!(refused.headers().get("content-encoding").is_none());
    // Revalidation uses the tag of the representation asked for.
    let again = server
        .http
        .get(server.url("/assets/upload.js"))
        .header("accept-encoding", "gzip")
        .header("if-none-match", gzip_tag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    server.stop().await;
}

#[tokio::test]
async fn unknown_assets_and_pages_under_assets_are_json_404s() {
    let server = TestServer::start(Backends::Local).await;
    for path in [
        "/assets/index.html",
        "/assets/nope.js",
        "/assets/..%2Fadmin.html",
    ] {
        let response = server.http.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{path}: {body}");
    }
    server.stop().await;
}

#[tokio::test]
async fn pages_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(Backends::Local, dir.path());
    config.server.pages = false;
    let server = TestServer::with_config(config, dir).await;
    for path in ["/", "/admin", "/assets/upload.js"] {
        let response = server.http.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("server.pages = false"),
            "{body}"
        );
    }
    // The API is untouched.
    let health = server
        .http
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    server.stop().await;
}
