//! Durable post-store jobs. Enqueueing a job is part of storing an upload
//! (before its 201), and a job leaves the queue only once its upload's
//! record holds the result, so no job is lost to a burst, a SIGTERM or a
//! SIGKILL: after a restart, or on another node, every job still queued
//! runs. Two backends, chosen with the cache backend:
//!
//! - [`Journal`]: one file per job on local disk (the embedded defaults);
//! - [`StreamQueue`]: a Redis Stream with a consumer group, shared by every
//!   node; a dead worker's jobs are reclaimed after a visibility timeout.
//!
//! With Redis the node's journal stands by ([`WithFallback`]): a job that
//! cannot reach Redis is queued on local disk and run by this node, so an
//! outage of Redis does not fail uploads. The queue is bounded by its
//! storage, not by memory.

mod fallback;
mod journal;
mod stream;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use self::fallback::WithFallback;
pub use self::journal::Journal;
pub use self::stream::StreamQueue;

/// One upload's post-store work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The upload (its record lists the plugins still to run).
    pub upload: String,
    /// Attempts that failed for a reason of the host's (storage down…).
    #[serde(default)]
    pub attempt: u32,
    /// When it was first queued (ms since the Unix epoch).
    pub enqueued_at_ms: u64,
    /// Not to run before this (ms since the Unix epoch): a retry's backoff.
    #[serde(default)]
    pub not_before_ms: u64,
}

impl Job {
    /// A new job for `upload`, due now.
    pub fn new(upload: &str) -> Self {
        let now = now_ms();
        Self {
            upload: upload.to_string(),
            attempt: 0,
            enqueued_at_ms: now,
            not_before_ms: now,
        }
    }

    /// How long ago it was first queued.
    pub fn age(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.enqueued_at_ms))
    }

    /// The same job for its next attempt, due after `delay`.
    pub fn retried(&self, delay: Duration, counts: bool) -> Self {
        Self {
            attempt: self.attempt + u32::from(counts),
            not_before_ms: now_ms()
                .saturating_add(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)),
            ..self.clone()
        }
    }

    /// How long until it is due (zero when it is).
    pub fn due_in(&self) -> Duration {
        Duration::from_millis(self.not_before_ms.saturating_sub(now_ms()))
    }
}

/// A job taken by one worker; no other worker gets it while that worker
/// lives (with Redis: until its visibility timeout).
#[derive(Debug)]
pub struct Claimed {
    /// The job.
    pub job: Job,
    /// The backend's name for this copy of it (file name, stream entry id).
    handle: String,
    /// Taken from a [`WithFallback`]'s fallback queue.
    from_fallback: bool,
}

/// What the queue holds now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    /// Jobs queued or running.
    pub depth: u64,
    /// Age of the oldest of them.
    pub oldest_age_ms: u64,
    /// Jobs given up on (dead letters).
    pub dead: u64,
}

/// A job queue failed; the job is where it was.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The local journal could not be read or written.
    #[error("job journal: {what}")]
    Journal {
        /// What was being done.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Redis did not answer or refused.
    #[error("job stream: {what}")]
    Redis {
        /// What was being done.
        what: String,
        /// Redis' error.
        #[source]
        source: redis::RedisError,
    },
    /// A job could not be encoded.
    #[error("job queue: encoding a job")]
    Encode(#[from] serde_json::Error),
    /// A queued job could not be read; it goes to the dead letters.
    #[error("job queue: unreadable job {handle}")]
    Corrupt {
        /// Where it was.
        handle: String,
        /// Why it cannot be read.
        #[source]
        source: serde_json::Error,
    },
}

/// A durable queue of post-store jobs.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// `journal` or `redis-stream`.
    fn kind(&self) -> &'static str;

    /// Queues `job`; once this returns the job survives a crash.
    async fn push(&self, job: &Job) -> Result<(), JobError>;

    /// Takes the next due job, waiting up to `wait` for one.
    async fn claim(&self, wait: Duration) -> Result<Option<Claimed>, JobError>;

    /// The job is done: it leaves the queue.
    async fn ack(&self, claimed: Claimed) -> Result<(), JobError>;

    /// Puts the job back as `next` (its next attempt, due later).
    async fn retry(&self, claimed: Claimed, next: Job) -> Result<(), JobError>;

    /// Gives up on the job: it moves to the dead letters with `reason`.
    async fn bury(&self, claimed: Claimed, reason: &str) -> Result<(), JobError>;

    /// Depth, oldest job, dead letters.
    async fn stats(&self) -> Result<QueueStats, JobError>;
}

/// A dead letter: the job and why it was given up.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DeadLetter {
    job: Job,
    reason: String,
    buried_at_ms: u64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
