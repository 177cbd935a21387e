//! Every error the API answers is the documented JSON, whatever produced it
//! (router, extractors, range checks), and auth is checked before anything
//! else about a request.

use crate::common::*;
use crate::harness::*;

/// What, method, path, API key, expected status, expected code.
type Case = (
    &'static str,
    reqwest::Method,
    &'static str,
    Option<&'static str>,
    u16,
    &'static str,
);

#[tokio::test]
async fn malformed_requests_get_the_typed_json_error() {
    use reqwest::Method;
    let server = TestServer::start(Backends::Local).await;
    let cases: [Case; 10] = [
        (
            "unknown route",
            Method::GET,
            "/nope",
            None,
            404,
            "not_found",
        ),
        (
            "unknown route, authenticated",
            Method::GET,
            "/v1/nope",
            Some(ALICE),
            404,
            "not_found",
        ),
        (
            "wrong method",
            Method::PUT,
            "/v1/uploads",
            Some(ALICE),
            405,
            "method_not_allowed",
        ),
        (
            "wrong method on health",
            Method::DELETE,
            "/healthz",
            None,
            405,
            "method_not_allowed",
        ),
        (
            "path not UTF-8",
            Method::GET,
            "/v1/uploads/%FF%FE",
            Some(ALICE),
            400,
            "bad_request",
        ),
        (
            "derived name not UTF-8",
            Method::GET,
            "/v1/uploads/x/derived/%C3%28",
            Some(ALICE),
            400,
            "bad_request",
        ),
        (
            "wait not a bool",
            Method::POST,
            "/v1/uploads?wait=maybe",
            Some(ALICE),
            400,
            "bad_request",
        ),
        (
            "filename twice",
            Method::POST,
            "/v1/uploads?filename=a&filename=b",
            Some(ALICE),
            400,
            "bad_request",
        ),
        (
            "bad query, no key",
            Method::POST,
            "/v1/uploads?wait=maybe",
            None,
            401,
            "unauthorized",
        ),
        (
            "bad path, no key",
            Method::GET,
            "/v1/uploads/%FF",
            None,
            401,
            "unauthorized",
        ),
    ];
    let http = reqwest::Client::new();
    for (what, method, path, key, expected, code) in cases {
        let mut request = http.request(method, server.url(path));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.body("x").send().await.unwrap();
        let status = response.status().as_u16();
        let allow = response.headers().get("allow").cloned();
        let content_type = response.headers().get("content-type").cloned();
        let body = response.text().await.unwrap();
        assert_eq!(status, expected, "{}: {body}", what);
        assert_eq!(
            content_type.as_ref().and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{}: {body}",
            what
        );
        let json: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {body}", what));
        assert_eq!(json["error"]["code"], code, "{}: {body}", what);
        if expected == 405 {
            assert!(allow.is_some(), "{}: 405 without Allow", what);
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn an_unsatisfiable_range_is_bad_range_json_with_content_range() {
    let server = TestServer::start(Backends::Local).await;
    let record = server.upload_picture(ALICE, "", 201).await;
    let id = record["id"].as_str().unwrap();
    let response = reqwest::Client::new()
        .get(server.url(&format!("/v1/uploads/{id}/content")))
        .bearer_auth(ALICE)
        .header("range", "bytes=99999999-")
        .send()
        .await
        .unwrap();
    let size = fixture_bytes("picture.png").len();
    assert_eq!(
        response.headers()["content-range"],
        format!("bytes */{size}").as_str()
    );
    let body = json(response, 416).await;
    assert_eq!(body["error"]["code"], "bad_range");
    server.stop().await;
}

#[tokio::test]
async fn a_request_head_over_64_kib_is_refused_with_431() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start(Backends::Local).await;
    // Just over the limit (the service answers, JSON), and far over it
    // (hyper's buffer answers first, a bare 431).
    for (size, json_body) in [(70 << 10, true), (1 << 20, false)] {
        let mut stream = tokio::net::TcpStream::connect(server.base.trim_start_matches("http://"))
            .await
            .unwrap();
        let head = format!(
            "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
            "a".repeat(size)
        );
        // The server may close before it has read it all.
        let _ = stream.write_all(head.as_bytes()).await;
        let mut answer = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            stream.read_to_end(&mut answer),
        )
        .await;
        assert!(read.is_ok(), "{size}: the connection stayed open");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 431"), "{size}: {answer:?}");
        if json_body {
            assert!(answer.contains("\"header_too_large\""), "{answer:?}");
        }
    }
    // A normal head still works.
    assert_eq!(server.get("", "/healthz").await.status(), 200);
}

#[tokio::test]
async fn file_names_lose_characters_that_disguise_them() {
    let server = TestServer::start(Backends::Local).await;
    // `photo<RLO>gnp.exe` shows as `photoexe.png`; with a zero-width space.
    let response = server
        .http
        .post(server.url("/v1/uploads?filename=photo%E2%80%AEgnp%E2%80%8B.exe"))
        .bearer_auth(ALICE)
        .header("content-type", "application/octet-stream")
        .body(b"MZ".to_vec())
        .send()
        .await
        .unwrap();
    let record = json(response, 201).await;
    assert_eq!(record["filename"], "photognp.exe", "{record}");
}
