//! The job queue in Redis, shared by every node: a Stream
//! (`<prefix>::jobs`) read through one consumer group. A worker claims an
//! entry (`XREADGROUP`), and acknowledges and deletes it once done; an
//! entry a worker took and did not acknowledge within the visibility
//! timeout (the worker died) is claimed by another (`XAUTOCLAIM`). Dead
//! letters go to `<prefix>::jobs:dead`.
//!
//! Reads do not block on the server (`BLOCK` would hold the multiplexed
//! connection every other command shares): an idle worker asks again after
//! a short nap, or at once when this node queued a job.

use std::time::Duration;

use async_trait::async_trait;
use redis::Value;
use redis::aio::ConnectionManager;
use tokio::sync::Notify;

use super::{Claimed, DeadLetter, Job, JobError, JobQueue, QueueStats, now_ms};

/// The consumer group every node reads through.
const GROUP: &str = "post-store";
/// How long an idle worker naps before asking the stream again.
const POLL: Duration = Duration::from_millis(200);
/// Dead letters kept (the oldest go first).
const DEAD_KEPT: u64 = 100_000;

/// What takes the place of a settled entry.
enum Next {
    /// The job's next attempt (JSON), in the stream.
    Job(String),
    /// A dead letter (JSON), in the dead letters' stream.
    DeadLetter(String),
}

/// Jobs in a Redis Stream.
pub struct StreamQueue {
    connection: ConnectionManager,
    key: String,
    dead_key: String,
    consumer: String,
    visibility: Duration,
    pushed: Notify,
}

fn failed(what: &'static str) -> impl FnOnce(redis::RedisError) -> JobError {
    move |source| JobError::Redis {
        what: what.into(),
        source,
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// Entries `[[id, [field, value, …]], …]` as (id, the `job` field).
fn entries(value: &Value) -> Vec<(String, Option<String>)> {
    let Value::Array(items) = value else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|entry| {
            let Value::Array(parts) = entry else {
                return None;
            };
            let id = text(parts.first()?)?;
            let job = match parts.get(1) {
                Some(Value::Array(fields)) => fields
                    .chunks(2)
                    .find(|pair| pair.first().and_then(text).as_deref() == Some("job"))
                    .and_then(|pair| pair.get(1).and_then(text)),
                _ => None,
            };
            Some((id, job))
        })
        .collect()
}

impl StreamQueue {
    /// The queue under `prefix` (`<prefix>::jobs`), this node reading as a
    /// consumer of its own; entries unacknowledged for `visibility` are
    /// taken over by another consumer.
    pub async fn open(
        connection: ConnectionManager,
        prefix: &str,
        visibility: Duration,
    ) -> Result<Self, JobError> {
        let queue = Self {
            connection,
            key: format!("{prefix}::jobs"),
            dead_key: format!("{prefix}::jobs:dead"),
            consumer: format!("node-{}", uuid::Uuid::new_v4().simple()),
            visibility,
            pushed: Notify::new(),
        };
        queue.ensure_group().await?;
        Ok(queue)
    }

    /// Creates the stream and its consumer group unless they exist (again,
    /// after a Redis that lost its data came back).
    async fn ensure_group(&self) -> Result<(), JobError> {
        let mut conn = self.connection.clone();
        // From the start of the stream: jobs queued before the group existed
        // are run too.
        let created: Result<Value, _> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.key)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(failed("creating the consumer group")(e)),
        }
    }

    /// Takes entry `id` out of the stream (acknowledged and deleted),
    /// adding `next` in the same transaction: a job is never in the stream
    /// twice, nor lost between the two.
    async fn settle(
        &self,
        id: &str,
        next: Option<Next>,
        what: &'static str,
    ) -> Result<(), JobError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        match next {
            Some(Next::Job(json)) => {
                pipe.cmd("XADD")
                    .arg(&self.key)
                    .arg("*")
                    .arg("job")
                    .arg(json)
                    .ignore();
            }
            Some(Next::DeadLetter(json)) => {
                pipe.cmd("XADD")
                    .arg(&self.dead_key)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(DEAD_KEPT)
                    .arg("*")
                    .arg("letter")
                    .arg(json)
                    .ignore();
            }
            None => {}
        }
        pipe.cmd("XACK")
            .arg(&self.key)
            .arg(GROUP)
            .arg(id)
            .ignore()
            .cmd("XDEL")
            .arg(&self.key)
            .arg(id)
            .ignore();
        let mut conn = self.connection.clone();
        pipe.query_async::<()>(&mut conn)
            .await
            .map_err(failed(what))
    }

    /// A claimed entry; an unreadable one is buried at once.
    async fn claimed(&self, id: String, job: Option<String>) -> Result<Option<Claimed>, JobError> {
        let parsed = job.as_deref().map(serde_json::from_str::<Job>).transpose();
        match parsed {
            Ok(Some(job)) => Ok(Some(Claimed {
                job,
                handle: id,
                from_fallback: false,
            })),
            Ok(None) | Err(_) => {
                tracing::error!(entry = %id, "an unreadable post-store job goes to the dead letters");
                let letter = serde_json::json!({ "raw": job, "reason": "unreadable job" });
                self.settle(
                    &id,
                    Some(Next::DeadLetter(letter.to_string())),
                    "burying an unreadable job",
                )
                .await?;
                Ok(None)
            }
        }
    }

    /// One attempt: a dead worker's entry, else a new one.
    async fn try_claim(&self) -> Result<Option<Claimed>, JobError> {
        match self.claim_once().await {
            Err(JobError::Redis { source, .. }) if source.code() == Some("NOGROUP") => {
                tracing::warn!(
                    "the job stream's consumer group is gone (Redis lost its data?); creating it again"
                );
                self.ensure_group().await?;
                Ok(None)
            }
            other => other,
        }
    }

    async fn claim_once(&self) -> Result<Option<Claimed>, JobError> {
        let mut conn = self.connection.clone();
        let reclaimed: Value = redis::cmd("XAUTOCLAIM")
            .arg(&self.key)
            .arg(GROUP)
            .arg(&self.consumer)
            .arg(u64::try_from(self.visibility.as_millis()).unwrap_or(u64::MAX))
            .arg("0-0")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await
            .map_err(failed("XAUTOCLAIM"))?;
        if let Value::Array(parts) = &reclaimed
            && let Some((id, job)) = parts.get(1).map(entries).and_then(|e| e.into_iter().next())
        {
            tracing::info!(entry = %id, "took over a post-store job whose worker stopped answering");
            return self.claimed(id, job).await;
        }
        let read: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(1)
            .arg("STREAMS")
            .arg(&self.key)
            .arg(">")
            .query_async(&mut conn)
            .await
            .map_err(failed("XREADGROUP"))?;
        // [[key, entries]] or nil.
        let first = match &read {
            Value::Array(streams) => streams.first().and_then(|s| match s {
                Value::Array(pair) => pair.get(1).map(entries),
                _ => None,
            }),
            _ => None,
        };
        match first.and_then(|e| e.into_iter().next()) {
            Some((id, job)) => self.claimed(id, job).await,
            None => Ok(None),
        }
    }
}

#[async_trait]
impl JobQueue for StreamQueue {
    fn kind(&self) -> &'static str {
        "redis-stream"
    }

    async fn push(&self, job: &Job) -> Result<(), JobError> {
        let json = serde_json::to_string(job)?;
        let mut conn = self.connection.clone();
        let _: String = redis::cmd("XADD")
            .arg(&self.key)
            .arg("*")
            .arg("job")
            .arg(json)
            .query_async(&mut conn)
            .await
            .map_err(failed("XADD"))?;
        self.pushed.notify_one();
        Ok(())
    }

    async fn claim(&self, wait: Duration) -> Result<Option<Claimed>, JobError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(claimed) = self.try_claim().await? {
                // A retry not due yet: this worker holds it until it is
                // (if the worker dies, another takes it over).
                let due_in = claimed.job.due_in();
                if !due_in.is_zero() {
                    tokio::time::sleep(due_in).await;
                }
                return Ok(Some(claimed));
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let _ = tokio::time::timeout(POLL.min(left), self.pushed.notified()).await;
        }
    }

    async fn ack(&self, claimed: Claimed) -> Result<(), JobError> {
        self.settle(&claimed.handle, None, "XACK").await
    }

    async fn retry(&self, claimed: Claimed, next: Job) -> Result<(), JobError> {
        let json = serde_json::to_string(&next)?;
        self.settle(&claimed.handle, Some(Next::Job(json)), "re-queueing a job")
            .await?;
        self.pushed.notify_one();
        Ok(())
    }

    async fn bury(&self, claimed: Claimed, reason: &str) -> Result<(), JobError> {
        let letter = DeadLetter {
            job: claimed.job.clone(),
            reason: reason.to_string(),
            buried_at_ms: now_ms(),
        };
        let json = serde_json::to_string(&letter)?;
        self.settle(
            &claimed.handle,
            Some(Next::DeadLetter(json)),
            "burying a job",
        )
        .await
    }

    async fn stats(&self) -> Result<QueueStats, JobError> {
        let mut conn = self.connection.clone();
        let (depth, dead, oldest): (u64, u64, Value) = redis::pipe()
            .cmd("XLEN")
            .arg(&self.key)
            .cmd("XLEN")
            .arg(&self.dead_key)
            .cmd("XRANGE")
            .arg(&self.key)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await
            .map_err(failed("reading the queue's length"))?;
        let oldest_age_ms = entries(&oldest)
            .into_iter()
            .next()
            .and_then(|(_, job)| serde_json::from_str::<Job>(&job?).ok())
            .map_or(0, |job| now_ms().saturating_sub(job.enqueued_at_ms));
        Ok(QueueStats {
            depth,
            oldest_age_ms,
            dead,
        })
    }
}
