//! The OpenAPI description at /openapi.json: generated from the handlers
//! that serve the routes, so every documented operation answers, and no
//! route is registered without its description.

use reqwest::{Method, StatusCode};

use crate::common::root;
use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_answers() {
    let server = TestServer::start(Backends::Local).await;
    let response = server
        .http
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let spec: serde_json::Value = response.json().await.unwrap();
    assert_eq!(spec["openapi"], "3.1.0");
    let schemes = spec["components"]["securitySchemes"].as_object().unwrap();
    assert!(schemes.contains_key("api_key") && schemes.contains_key("admin_token"));

    // A real upload for `{id}`, so that routes answer for it (HEAD has no
    // body to tell a missing route from a missing upload).
    let created = server
        .http
        .post(server.url("/v1/tus"))
        .bearer_auth(ALICE)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", "10")
        .send()
        .await
        .unwrap();
    let id = created.headers()["location"]
        .to_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();

    let mut operations = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if method != "parameters" {
                operations.push((path.clone(), method.to_ascii_uppercase()));
            }
        }
    }
    // Deletes last: they end the upload the others use.
    operations.sort_by_key(|(_, method)| method == "DELETE");
    assert!(operations.len() >= 17, "{operations:?}");
    for (path, method) in operations {
        let url = path
            .replace("{id}", &id)
            .replace("{name}", "thumbnail")
            .replace("{action}", "enable");
        let response = server
            .http
            .request(
                Method::from_bytes(method.as_bytes()).unwrap(),
                server.url(&url),
            )
            .bearer_auth(ALICE)
            .header("tus-resumable", "1.0.0")
            .send()
            .await
            .unwrap();
        let status = response.status();
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        if method == "HEAD" {
            assert!(status.is_success(), "{method} {path}: {status}");
            continue;
        }
        let body = response.text().await.unwrap();
        assert!(
            !body.contains("no such route"),
            "{method} {path}: {status} {body}"
        );
    }
    server.stop().await;
}

/// Routes are only registered with `routes!(handler)`, which registers the
/// handler's description with it: a plain axum `.route(…)` would serve an
/// undocumented route.
#[test]
fn every_route_is_registered_with_its_description() {
    let mut files = vec![root().join("host/src/http")];
    let mut plain = Vec::new();
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            for call in [".route(", ".route_service(", ".nest(", ".nest_service("] {
                if line.contains(call) {
                    plain.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                }
            }
        }
        // Each registered handler carries its description.
        let registered = text.matches("routes!(").count();
        if registered > 0 {
            assert!(text.contains("#[utoipa::path("), "{}", path.display());
        }
    }
    assert!(
        plain.is_empty(),
        "routes without a description:\n{}",
        plain.join("\n")
    );
}
