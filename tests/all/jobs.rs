//! The durable post-store queues on their own: the local journal (jobs
//! outlive the process, retries wait for their time, dead letters) and the
//! Redis Stream (a dead worker's job goes to another node; a Redis that
//! lost its data gets its consumer group back).

use std::time::Duration;

use airlock::jobs::{Job, JobQueue, Journal, StreamQueue};

use crate::harness::redis_url;

async fn redis() -> redis::aio::ConnectionManager {
    let client = redis::Client::open(redis_url()).unwrap();
    redis::aio::ConnectionManager::new(client).await.unwrap()
}

fn prefix() -> String {
    format!("t{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn journal_jobs_outlive_the_process_and_come_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path()).await.unwrap();
    for id in ["a", "b", "c"] {
        journal.push(&Job::new(id)).await.unwrap();
    }
    let a = journal.claim(Duration::ZERO).await.unwrap().unwrap();
    assert_eq!(a.job.upload, "a");
    journal.ack(a).await.unwrap();
    // `b` is taken and never finished: its worker died with the process.
    let b = journal.claim(Duration::ZERO).await.unwrap().unwrap();
    assert_eq!(b.job.upload, "b");
    assert_eq!(journal.stats().await.unwrap().depth, 2);
    drop(journal);

    let journal = Journal::open(dir.path()).await.unwrap();
    let mut order = Vec::new();
    while let Some(claimed) = journal.claim(Duration::ZERO).await.unwrap() {
        order.push(claimed.job.upload.clone());
        journal.ack(claimed).await.unwrap();
    }
    assert_eq!(order, ["b", "c"]);
    assert_eq!(journal.stats().await.unwrap().depth, 0);
    drop(journal);
    let journal = Journal::open(dir.path()).await.unwrap();
    assert!(journal.claim(Duration::ZERO).await.unwrap().is_none());
}

#[tokio::test]
async fn journal_retries_wait_for_their_time_and_dead_letters_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path()).await.unwrap();
    journal.push(&Job::new("x")).await.unwrap();
    let claimed = journal.claim(Duration::ZERO).await.unwrap().unwrap();
    let next = claimed.job.retried(Duration::from_millis(300), true);
    journal.retry(claimed, next).await.unwrap();
    // Not due yet.
    assert!(journal.claim(Duration::ZERO).await.unwrap().is_none());
    // Waits for it to become due (a bounded wait, not a sleep).
    let again = journal
        .claim(Duration::from_secs(10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.job.upload.as_str(), again.job.attempt), ("x", 1));
    journal.bury(again, "storage down").await.unwrap();
    let stats = journal.stats().await.unwrap();
    assert_eq!((stats.depth, stats.dead), (0, 1));
    // The dead letter is on disk, with its reason.
    let dead: Vec<_> = std::fs::read_dir(dir.path().join("dead"))
        .unwrap()
        .collect();
    assert_eq!(dead.len(), 1);
    let letter = std::fs::read_to_string(dead[0].as_ref().unwrap().path()).unwrap();
    assert!(letter.contains("storage down"), "{letter}");
    drop(journal);
    let journal = Journal::open(dir.path()).await.unwrap();
    assert_eq!(journal.stats().await.unwrap().dead, 1);
}

#[tokio::test]
async fn an_unreadable_journal_file_goes_to_the_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("00000000000000000001-000001-x.json"),
        b"{not json",
    )
    .unwrap();
    std::fs::write(dir.path().join(".tmp-cut-short"), b"{\"upload\"").unwrap();
    let journal = Journal::open(dir.path()).await.unwrap();
    let stats = journal.stats().await.unwrap();
    assert_eq!((stats.depth, stats.dead), (0, 1));
    // A write cut short by a crash is not a job and is removed.
    assert!(!dir.path().join(".tmp-cut-short").exists());
}

#[tokio::test]
async fn a_push_wakes_a_waiting_journal_worker() {
    let dir = tempfile::tempdir().unwrap();
    let journal = std::sync::Arc::new(Journal::open(dir.path()).await.unwrap());
    let waiting = {
        let journal = std::sync::Arc::clone(&journal);
        tokio::spawn(async move { journal.claim(Duration::from_secs(30)).await })
    };
    journal.push(&Job::new("late")).await.unwrap();
    let claimed = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the push did not wake the worker")
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(claimed.job.upload, "late");
}

#[tokio::test]
async fn a_dead_workers_stream_job_is_taken_over_by_another_node() {
    let prefix = prefix();
    let visibility = Duration::from_millis(500);
    let node_a = StreamQueue::open(redis().await, &prefix, visibility)
        .await
        .unwrap();
    let node_b = StreamQueue::open(redis().await, &prefix, visibility)
        .await
        .unwrap();
    node_a.push(&Job::new("u1")).await.unwrap();
    let taken = node_a.claim(Duration::ZERO).await.unwrap().unwrap();
    assert_eq!(taken.job.upload, "u1");
    // Node A dies holding it: B cannot have it before the visibility
    // timeout, and gets it after.
    drop(taken);
    drop(node_a);
    assert!(node_b.claim(Duration::ZERO).await.unwrap().is_none());
    let reclaimed = node_b
        .claim(Duration::from_secs(10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reclaimed.job.upload, "u1");
    node_b.ack(reclaimed).await.unwrap();
    assert_eq!(node_b.stats().await.unwrap().depth, 0);
    assert!(node_b.claim(Duration::ZERO).await.unwrap().is_none());
}

#[tokio::test]
async fn stream_retries_and_dead_letters() {
    let prefix = prefix();
    let queue = StreamQueue::open(redis().await, &prefix, Duration::from_secs(60))
        .await
        .unwrap();
    queue.push(&Job::new("r")).await.unwrap();
    let claimed = queue.claim(Duration::ZERO).await.unwrap().unwrap();
    let next = claimed.job.retried(Duration::from_millis(200), true);
    queue.retry(claimed, next).await.unwrap();
    let again = queue.claim(Duration::from_secs(10)).await.unwrap().unwrap();
    assert_eq!(again.job.attempt, 1);
    // Claimed only once it was due.
    assert!(again.job.due_in().is_zero());
    queue.bury(again, "gave up").await.unwrap();
    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.depth, stats.dead), (0, 1));
}

#[tokio::test]
async fn a_stream_whose_redis_lost_its_data_works_again() {
    let prefix = prefix();
    let queue = StreamQueue::open(redis().await, &prefix, Duration::from_secs(60))
        .await
        .unwrap();
    // What a Redis that restarted empty looks like: no stream, no group.
    let mut conn = redis().await;
    let _: () = redis::cmd("DEL")
        .arg(format!("{prefix}::jobs"))
        .query_async(&mut conn)
        .await
        .unwrap();
    queue.push(&Job::new("after")).await.unwrap();
    let claimed = crate::common::eventually(Duration::from_secs(10), || async {
        queue.claim(Duration::ZERO).await.unwrap()
    })
    .await
    .expect("the job pushed after the loss was never claimed");
    assert_eq!(claimed.job.upload, "after");
}
