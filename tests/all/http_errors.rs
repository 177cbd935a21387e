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
