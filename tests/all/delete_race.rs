//! A delete stays deleted: a post-store update that finishes after a DELETE
//! must not bring the record back, on local disk and on S3.

use std::time::Duration;

use crate::common::*;
use crate::harness::*;

/// How many post-store jobs the server has settled: done (the thumbnail ran
/// and the update undid itself) or dropped (the upload was gone first).
async fn settled_jobs(server: &TestServer) -> u64 {
    let done = server
        .metric("airlock_post_store_jobs_total{event=\"done\"}")
        .await;
    let dropped = server
        .metric("airlock_post_store_jobs_total{event=\"dropped\"}")
        .await;
    (done + dropped) as u64
}

async fn deletes_right_after_201_stay_deleted(backends: Backends) {
    let server = TestServer::start(backends).await;
    let uploads = 20;
    let mut ids = Vec::new();
    for _ in 0..uploads {
        // The thumbnail runs after the 201; delete before it can finish.
        let record = server.upload_picture(ALICE, "", 201).await;
        let id = record["id"].as_str().unwrap().to_string();
        let deleted = server.delete(ALICE, &format!("/v1/uploads/{id}")).await;
        assert_eq!(deleted.status(), 204);
        ids.push(id);
    }
    // Wait for every post-store job to have run (and updated, or not).
    let finished = eventually(Duration::from_secs(30), || async {
        (settled_jobs(&server).await >= uploads).then_some(())
    })
    .await;
    assert!(finished.is_some(), "post-store jobs did not finish");
    for id in &ids {
        for path in [
            format!("/v1/uploads/{id}"),
            format!("/v1/uploads/{id}/content"),
        ] {
            let response = server.get(ALICE, &path).await;
            assert_eq!(response.status(), 404, "{path} came back");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn local_deletes_right_after_201_stay_deleted() {
    deletes_right_after_201_stay_deleted(Backends::Local).await;
}

#[tokio::test]
async fn s3_deletes_right_after_201_stay_deleted() {
    deletes_right_after_201_stay_deleted(Backends::S3Redis).await;
}
