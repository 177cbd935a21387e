//! A shared queue (Redis) with this node's journal standing by: a job that
//! cannot be queued in Redis is queued on local disk instead and run by
//! this node's workers, so a Redis outage neither fails an upload nor loses
//! its post-store work.

use std::time::Duration;

use async_trait::async_trait;

use super::{Claimed, Job, JobError, JobQueue, Journal, QueueStats};

/// How often an idle worker looks at both queues.
const POLL: Duration = Duration::from_millis(200);

/// `primary`, or `fallback` when it fails.
pub struct WithFallback<P> {
    primary: P,
    fallback: Journal,
}

impl<P: JobQueue> WithFallback<P> {
    /// Jobs go to `primary`; to `fallback` when it refuses them.
    pub fn new(primary: P, fallback: Journal) -> Self {
        Self { primary, fallback }
    }

    fn queue_of(&self, claimed: &Claimed) -> &dyn JobQueue {
        if claimed.from_fallback {
            &self.fallback
        } else {
            &self.primary
        }
    }
}

#[async_trait]
impl<P: JobQueue> JobQueue for WithFallback<P> {
    fn kind(&self) -> &'static str {
        self.primary.kind()
    }

    async fn push(&self, job: &Job) -> Result<(), JobError> {
        match self.primary.push(job).await {
            Ok(()) => Ok(()),
            Err(err) => {
                tracing::warn!(error = %crate::text::chain(&err), upload = %job.upload, "cannot queue a post-store job in the shared queue; queueing it on this node");
                self.fallback.push(job).await
            }
        }
    }

    async fn claim(&self, wait: Duration) -> Result<Option<Claimed>, JobError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(mut claimed) = self.fallback.claim(Duration::ZERO).await? {
                claimed.from_fallback = true;
                return Ok(Some(claimed));
            }
            match self.primary.claim(Duration::ZERO).await {
                Ok(Some(claimed)) => return Ok(Some(claimed)),
                Ok(None) => {}
                // Jobs on this node's journal still run meanwhile.
                Err(err) => {
                    tracing::warn!(error = %crate::text::chain(&err), "cannot take a job from the shared queue")
                }
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            tokio::time::sleep(POLL.min(left)).await;
        }
    }

    async fn ack(&self, claimed: Claimed) -> Result<(), JobError> {
        self.queue_of(&claimed).ack(claimed).await
    }

    async fn retry(&self, claimed: Claimed, next: Job) -> Result<(), JobError> {
        self.queue_of(&claimed).retry(claimed, next).await
    }

    async fn bury(&self, claimed: Claimed, reason: &str) -> Result<(), JobError> {
        self.queue_of(&claimed).bury(claimed, reason).await
    }

    async fn stats(&self) -> Result<QueueStats, JobError> {
        let local = self.fallback.stats().await?;
        let shared = self.primary.stats().await?;
        Ok(QueueStats {
            depth: shared.depth + local.depth,
            oldest_age_ms: shared.oldest_age_ms.max(local.oldest_age_ms),
            dead: shared.dead + local.dead,
        })
    }
}
