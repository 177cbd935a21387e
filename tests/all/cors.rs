//! Cross-origin requests: preflights from allowed origins are answered with
//! what a browser client needs, actual answers (errors too) carry the CORS
//! headers, and an origin that is not allowed gets none of them.

use airlock::config::Config;
use reqwest::{Method, Response};

use crate::harness::*;

const APP: &str = "https://app.example.com";

async fn server(origins: &[&str]) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(Backends::Local, dir.path());
    config.server.cors.allowed_origins = origins.iter().map(|o| o.to_string()).collect();
    config.server.cors.max_age_seconds = 900;
    TestServer::with_config(config, dir).await
}

async fn preflight(server: &TestServer, origin: &str, path: &str, method: &str) -> Response {
    server
        .http
        .request(Method::OPTIONS, server.url(path))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header(
            "access-control-request-headers",
            "authorization,tus-resumable,upload-length,upload-metadata,upload-offset,content-type",
        )
        .send()
        .await
        .unwrap()
}

fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

/// The comma-separated list of header `name`, lower-cased.
fn list(response: &Response, name: &str) -> Vec<String> {
    header(response, name)
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_origin_gets_preflights_and_readable_answers() {
    let server = server(&[APP, "http://127.0.0.1:5173"]).await;
    for (path, method) in [
        ("/v1/tus", "POST"),
        ("/v1/tus/0123456789abcdef0123456789abcdef", "PATCH"),
        ("/v1/uploads", "POST"),
    ] {
        let response = preflight(&server, APP, path, method).await;
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        assert_eq!(header(&response, "access-control-allow-origin"), Some(APP));
        assert!(
            list(&response, "access-control-allow-methods").contains(&method.to_ascii_lowercase())
        );
        let allowed = list(&response, "access-control-allow-headers");
        for name in [
            "authorization",
            "tus-resumable",
            "upload-length",
            "upload-offset",
        ] {
            assert!(
                allowed.contains(&name.to_string()),
                "{name} not in {allowed:?}"
            );
        }
        assert_eq!(header(&response, "access-control-max-age"), Some("900"));
        assert!(header(&response, "access-control-allow-credentials").is_none());
    }
    // An actual request: the tus headers and Location are readable.
    let response = server
        .http
        .post(server.url("/v1/tus"))
        .header("origin", APP)
        .bearer_auth(ALICE)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", "10")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(header(&response, "access-control-allow-origin"), Some(APP));
    let exposed = list(&response, "access-control-expose-headers");
    for name in [
        "location",
        "upload-offset",
        "upload-expires",
        "upload-record",
        "tus-resumable",
        "etag",
        "content-range",
    ] {
        assert!(
            exposed.contains(&name.to_string()),
            "{name} not in {exposed:?}"
        );
    }
    // Errors too: a page can read why it was refused.
    let response = server
        .http
        .get(server.url("/v1/uploads/0123456789abcdef0123456789abcdef"))
        .header("origin", APP)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(header(&response, "access-control-allow-origin"), Some(APP));
    // A tus OPTIONS that is not a preflight (no browser sends one) still
    // reaches the tus server.
    let response = server
        .http
        .request(Method::OPTIONS, server.url("/v1/tus"))
        .header("origin", APP)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&response, "tus-version"), Some("1.0.0"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_origins_get_no_cors_headers() {
    let server = server(&[APP]).await;
    for origin in [
        "https://evil.example.com",
        "https://app.example.com.evil.net",
        "http://app.example.com",
    ] {
        let response = preflight(&server, origin, "/v1/tus", "POST").await;
        assert!(
            header(&response, "access-control-allow-origin").is_none(),
            "{origin}"
        );
        let response = server
            .http
            .get(server.url("/healthz"))
            .header("origin", origin)
            .send()
            .await
            .unwrap();
        assert!(
            header(&response, "access-control-allow-origin").is_none(),
            "{origin}"
        );
        assert!(header(&response, "access-control-expose-headers").is_none());
        // Still an answer that depends on the origin, for caches.
        assert!(
            list(&response, "vary").contains(&"origin".to_string()),
            "{:?}",
            response.headers()
        );
    }
    server.stop().await;
    // No origins configured (the default): no CORS at all.
    let server = self::server(&[]).await;
    let response = preflight(&server, APP, "/v1/tus", "POST").await;
    assert!(header(&response, "access-control-allow-origin").is_none());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_origin_with_a_star() {
    let server = server(&["*"]).await;
    let response = preflight(&server, "https://anywhere.example", "/v1/tus", "POST").await;
    assert_eq!(header(&response, "access-control-allow-origin"), Some("*"));
    assert!(header(&response, "access-control-allow-credentials").is_none());
    server.stop().await;
}

#[test]
fn origins_that_are_not_origins_are_refused_by_name() {
    for origins in [
        vec!["*", APP],
        vec!["app.example.com"],
        vec!["https://app.example.com/"],
        vec!["https://app.example.com/upload"],
        vec!["https://"],
    ] {
        let mut config = Config::default();
        config.server.cors.allowed_origins = origins.iter().map(|o| o.to_string()).collect();
        let Err(err) = config.validate() else {
            panic!("{origins:?} accepted");
        };
        assert!(
            err.to_string().contains("server.cors.allowed_origins"),
            "{err}"
        );
    }
    let mut config = Config::default();
    config.server.cors.allowed_origins = vec![APP.into(), "http://[::1]:8080".into()];
    config.validate().unwrap();
}
