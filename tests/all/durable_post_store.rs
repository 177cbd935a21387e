//! Post-store work is never lost: uploads answered 201 keep their queued
//! thumbnails through SIGKILL and SIGTERM (they run after the restart), on
//! local disk (the journal) and on S3 + Redis (the stream); and two nodes
//! sharing a stream finish each other's jobs, including the one a killed
//! node was running.

use std::time::Duration;

use airlock::config::Config;
use bytes::Bytes;
use serde_json::Value;

use crate::common::*;
use crate::harness::{ALICE, Backends};
use crate::on_both_backends;
use crate::served::{ServeSetup, ServerProcess};

on_both_backends!(thumbnails_queued_at_a_sigkill_are_made_after_the_restart);

/// How long a restarted server may take to work off the queue.
const CATCH_UP: Duration = Duration::from_secs(120);

/// A 2048×1536 JPEG photo-like picture (the thumbnail plugin needs a
/// while for one), different for each `seed`.
fn photo(seed: u32) -> Bytes {
    let img = image::RgbImage::from_fn(2048, 1536, |x, y| {
        let v = (x ^ y).wrapping_mul(seed | 1);
        image::Rgb([(x / 8) as u8, (y / 6) as u8, (v >> 3) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, image::ImageFormat::Jpeg)
        .unwrap();
    Bytes::from(out.into_inner())
}

/// One post-store worker, so jobs queue up behind it.
fn one_worker(config: &mut Config) {
    config.server.post_store_workers = 1;
    config.server.post_store_visibility_seconds = 3;
}

/// Uploads `n` photos at once (made first, so that the uploads outpace the
/// one worker); their ids.
async fn upload_photos(server: &ServerProcess, n: u32) -> Vec<String> {
    use futures::StreamExt as _;
    let photos: Vec<Bytes> = (0..n).map(photo).collect();
    let http = reqwest::Client::new();
    let uploads = photos.into_iter().enumerate().map(|(i, body)| {
        let http = http.clone();
        let url = server.url(&format!("/v1/uploads?filename=p{i}.jpg"));
        async move {
            let response = http
                .post(url)
                .bearer_auth(ALICE)
                .header("content-type", "image/jpeg")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 201);
            let record: Value = response.json().await.unwrap();
            assert_eq!(
                record["pending"],
                serde_json::json!(["thumbnail"]),
                "{record}"
            );
            record["id"].as_str().unwrap().to_string()
        }
    });
    futures::stream::iter(uploads)
        .buffer_unordered(8)
        .collect()
        .await
}

/// How many of `ids` still list pending plugins.
async fn pending(server: &ServerProcess, ids: &[String]) -> usize {
    let mut n = 0;
    for id in ids {
        if server.record(id).await.get("pending").is_some() {
            n += 1;
        }
    }
    n
}

/// Waits until every upload has its thumbnail and nothing pending or
/// skipped.
async fn all_thumbnails(server: &ServerProcess, ids: &[String]) {
    let done = eventually(CATCH_UP, || async {
        (pending(server, ids).await == 0).then_some(())
    })
    .await;
    assert!(
        done.is_some(),
        "thumbnails still pending after {CATCH_UP:?}:\n{}",
        server.log()
    );
    for id in ids {
        let record = server.record(id).await;
        assert_eq!(record["derived"][0]["name"], "thumbnail.png", "{record}");
        assert!(record.get("skipped").is_none(), "{record}");
    }
}

async fn thumbnails_queued_at_a_sigkill_are_made_after_the_restart(backends: Backends) {
    let setup = ServeSetup::new(backends, one_worker);
    let mut server = setup.serve("before").await;
    let ids = upload_photos(&server, 12).await;
    let left = pending(&server, &ids).await;
    assert!(
        left > 0,
        "every thumbnail was made before the kill: nothing tested"
    );
    server.child.kill().unwrap();
    server.wait_exit(Duration::from_secs(10)).await.unwrap();
    // What a write cut short by the kill leaves beside its destination.
    let cut_short = setup
        .data()
        .join(format!("uploads/{}/.tmp-cut-short", ids[0]));
    if backends == Backends::Local {
        std::fs::write(&cut_short, b"half").unwrap();
    }

    let server = setup.serve("after").await;
    // The start's sweep, in the background.
    let gone = eventually(Duration::from_secs(10), || async {
        (!cut_short.exists()).then_some(())
    })
    .await;
    assert!(gone.is_some(), "the restart left a temporary file");
    all_thumbnails(&server, &ids).await;
    eprintln!("{left} of {} thumbnails were queued at the kill", ids.len());
}

#[tokio::test]
async fn thumbnails_queued_at_a_sigterm_are_made_after_the_restart() {
    let setup = ServeSetup::new(Backends::Local, |config| {
        one_worker(config);
        config.server.shutdown_grace_seconds = 1;
    });
    let mut server = setup.serve("before").await;
    let ids = upload_photos(&server, 12).await;
    assert!(pending(&server, &ids).await > 0, "nothing left to test");
    server.terminate();
    let status = server.wait_exit(Duration::from_secs(30)).await.unwrap();
    assert!(status.success(), "{status}:\n{}", server.log());

    let server = setup.serve("after").await;
    all_thumbnails(&server, &ids).await;
}

/// Node A takes uploads and is killed while its one worker runs a job;
/// node B, on the same stream, makes every thumbnail, the one A was
/// running included (taken over after the visibility timeout).
#[tokio::test]
async fn two_nodes_share_one_stream_and_a_killed_nodes_job_is_taken_over() {
    let setup_a = ServeSetup::new(Backends::S3Redis, one_worker);
    let setup_b = setup_a.another_node();
    let mut node_a = setup_a.serve("node-a").await;
    let ids = upload_photos(&node_a, 8).await;
    node_a.child.kill().unwrap();
    node_a.wait_exit(Duration::from_secs(10)).await.unwrap();

    let node_b = setup_b.serve("node-b").await;
    all_thumbnails(&node_b, &ids).await;
    let done_by_b = node_b
        .metric("airlock_post_store_jobs_total{event=\"done\"}")
        .await;
    assert!(
        done_by_b >= 1.0,
        "node B made no thumbnail:\n{}",
        node_b.log()
    );
}

/// A node with no post-store workers (Redis only) takes uploads and leaves
/// their jobs to the other nodes; `?wait=true` on it still answers with
/// the thumbnail, seen in the record another node wrote.
#[tokio::test]
async fn an_upload_only_node_leaves_its_jobs_to_the_others_and_waits_for_them() {
    let setup_a = ServeSetup::new(Backends::S3Redis, |config| {
        config.server.post_store_workers = 0;
    });
    let setup_b = setup_a.another_node_with(|config| config.server.post_store_workers = 1);
    let node_a = setup_a.serve("upload-only").await;
    let node_b = setup_b.serve("worker").await;
    let response = reqwest::Client::new()
        .post(node_a.url("/v1/uploads?filename=p.jpg&wait=true"))
        .bearer_auth(ALICE)
        .header("content-type", "image/jpeg")
        .body(fixture_bytes("photo-with-gps.jpg"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let record: Value = response.json().await.unwrap();
    assert_eq!(record["derived"][0]["name"], "thumbnail.png", "{record}");
    assert!(record.get("pending").is_none(), "{record}");
    let done = "airlock_post_store_jobs_total{event=\"done\"}";
    assert_eq!(
        node_a.metric(done).await,
        0.0,
        "the upload-only node ran a job"
    );
    assert_eq!(node_b.metric(done).await, 1.0);
}

/// A job that keeps failing for a host reason (its artifact cannot be
/// stored: a directory sits where the file goes) is retried, then given up:
/// the record says so in `skipped`, and the metrics count a dead letter.
#[tokio::test]
async fn a_job_that_keeps_failing_for_the_host_goes_to_the_dead_letters() {
    let setup = ServeSetup::new(Backends::Local, |config| {
        one_worker(config);
        config.server.post_store_max_attempts = 2;
    });
    let server = setup.serve("dead-letter").await;
    // The one worker is busy with these while the last upload's artifact
    // path is blocked.
    let busy = upload_photos(&server, 6).await;
    let victim = upload_photos(&server, 1).await.remove(0);
    std::fs::create_dir_all(
        setup
            .data()
            .join(format!("uploads/{victim}/derived/thumbnail.png/blocked")),
    )
    .unwrap();
    let given_up = eventually(CATCH_UP, || async {
        let record = server.record(&victim).await;
        (record.get("pending").is_none()).then_some(record)
    })
    .await
    .expect("the failing job was never given up");
    let skipped = &given_up["skipped"][0];
    assert_eq!(skipped["plugin"], "thumbnail", "{given_up}");
    let reason = skipped["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("post-store job given up after 2 attempts: storing thumbnail.png"),
        "{given_up}"
    );
    assert_eq!(
        server
            .metric("airlock_post_store_jobs_total{event=\"retried\"}")
            .await,
        1.0
    );
    assert_eq!(
        server
            .metric("airlock_post_store_jobs_total{event=\"dead\"}")
            .await,
        1.0
    );
    let dead = eventually(Duration::from_secs(10), || async {
        let n = server.metric("airlock_post_store_dead_letters").await;
        (n >= 1.0).then_some(n)
    })
    .await;
    assert_eq!(dead, Some(1.0));
    // The others were not held up by it.
    all_thumbnails(&server, &busy).await;
}

/// Post-store threads run under Linux's `SCHED_IDLE`: only when no request
/// thread wants the CPU, so a thumbnail backlog cannot slow uploads.
#[tokio::test]
async fn post_store_threads_run_at_idle_priority() {
    let setup = ServeSetup::new(Backends::Local, |config| {
        config.server.post_store_workers = 2;
    });
    let server = setup.serve("idle").await;
    let tasks = std::path::PathBuf::from(format!("/proc/{}/task", server.child.id()));
    let mut policies = Vec::new();
    for task in std::fs::read_dir(&tasks).unwrap() {
        let task = task.unwrap().path();
        let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if !comm.starts_with("post-store") {
            continue;
        }
        let stat = std::fs::read_to_string(task.join("stat")).unwrap();
        // Fields after the command name start at the 3rd; `policy` is the
        // 41st (proc_pid_stat(5)).
        let (_, rest) = stat.rsplit_once(')').unwrap();
        let policy: u32 = rest
            .split_whitespace()
            .nth(41 - 3)
            .unwrap()
            .parse()
            .unwrap();
        policies.push(policy);
    }
    const SCHED_IDLE: u32 = 5;
    assert_eq!(policies, vec![SCHED_IDLE; 2], "{}", server.log());
}
