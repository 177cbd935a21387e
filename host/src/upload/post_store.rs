//! Post-store work: extension plugins run after the upload was answered,
//! from the durable job queue ([`crate::jobs`]); their artifacts are stored
//! beside the upload and its record updated (unless it was deleted
//! meanwhile), and only then does the job leave the queue.
//!
//! A plugin's own failure (budget stop, crash, quarantine) is a result and
//! is recorded in `skipped`; a failure of the host's (storage down, no free
//! instance, a full bulkhead) is retried with backoff, and a job that keeps
//! failing goes to the dead letters, its plugins listed as skipped.

use std::sync::Arc;
use std::time::Duration;

use super::{
    DerivedRecord, HookedPlugin, SkippedPlugin, StoredContent, UploadError, UploadRecord,
    UploadService, keys,
};
use crate::jobs::{Claimed, Job};
use crate::runtime::{ContentSource, HookKind, InvokeError, UploadInfo};
use crate::storage::StorageError;
use crate::supervisor::Refusal;
use crate::text::chain;

use super::plugins::PluginFailure;

/// A job whose record is not there yet (it is written right after the job
/// is queued) is tried again this soon, without counting an attempt.
const RECORD_NOT_YET: Duration = Duration::from_secs(1);
/// After this long without a record, the upload never completed (or was
/// deleted): the job is dropped.
const RECORD_GRACE: Duration = Duration::from_secs(60);
/// Backoff of host-side failures: 1 s, doubling, at most this.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// How one run of a job ended.
enum Ran {
    /// The record holds the results.
    Done(Box<UploadRecord>),
    /// No record (yet): written right after the job was queued, or the
    /// upload failed.
    NoRecord,
    /// The upload was deleted.
    Deleted,
    /// The host could not do its part; worth another attempt.
    HostFailure(String),
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.min(6)).min(MAX_BACKOFF)
}

impl UploadService {
    /// Queues the post-store job of `record` (whose `pending` lists the
    /// extensions to run), durably, before its record is written.
    pub(super) async fn queue_post_store(&self, record: &UploadRecord) -> Result<(), UploadError> {
        self.jobs
            .push(&Job::new(&record.upload.id))
            .await
            .map_err(UploadError::Queue)?;
        self.metrics.post_store_job("queued");
        Ok(())
    }

    #[tracing::instrument(name = "post_store", skip_all, fields(id = %claimed.job.upload, attempt = claimed.job.attempt))]
    pub(super) async fn run_job(&self, claimed: Claimed) {
        let job = claimed.job.clone();
        let settled = match self.post_store(&job.upload).await {
            Ran::Done(record) => {
                self.waiters.wake(&record);
                self.metrics.post_store_job("done");
                self.jobs.ack(claimed).await
            }
            Ran::NoRecord if job.age() < RECORD_GRACE => {
                self.jobs
                    .retry(claimed, job.retried(RECORD_NOT_YET, false))
                    .await
            }
            Ran::NoRecord => {
                tracing::info!(
                    "no record: the upload was never stored; dropping its post-store job"
                );
                self.metrics.post_store_job("dropped");
                self.jobs.ack(claimed).await
            }
            Ran::Deleted => {
                self.metrics.post_store_job("dropped");
                self.jobs.ack(claimed).await
            }
            Ran::HostFailure(reason) if job.attempt + 1 >= self.post_store.max_attempts => {
                tracing::error!(%reason, attempts = job.attempt + 1, "post-store job given up (dead letter)");
                self.metrics.post_store_job("dead");
                let reason = format!(
                    "post-store job given up after {} attempts: {reason}",
                    job.attempt + 1
                );
                self.give_up(&job.upload, &reason).await;
                self.jobs.bury(claimed, &reason).await
            }
            Ran::HostFailure(reason) => {
                let delay = backoff(job.attempt);
                tracing::warn!(%reason, ?delay, "post-store job failed for a host reason; retrying");
                self.metrics.post_store_job("retried");
                self.jobs.retry(claimed, job.retried(delay, true)).await
            }
        };
        if let Err(err) = settled {
            // The job stays where it was: it runs again (after the
            // visibility timeout, or at the next start).
            tracing::error!(error = %chain(&err), "cannot settle a post-store job");
        }
    }

    /// Runs the pending extensions of upload `id` and records the results.
    async fn post_store(&self, id: &str) -> Ran {
        let record = match self.read_record(id).await {
            Ok(Some(record)) => record,
            Ok(None) => return self.no_record(id).await,
            Err(err) => return Ran::HostFailure(chain(&err)),
        };
        if record.pending.is_empty() {
            // Done already (by a worker whose acknowledgement was lost).
            return Ran::Done(Box::new(record));
        }
        let plugins = self.plugins();
        let content: Arc<dyn ContentSource> = Arc::new(StoredContent::new(
            Arc::clone(&self.store),
            keys::content(id),
            record.size,
        ));
        let mut derived = Vec::new();
        let mut skipped = Vec::new();
        for name in &record.pending {
            let Some(hooked) = plugins.extensions.iter().find(|h| h.plugin.name() == name) else {
                skipped.push(SkippedPlugin {
                    plugin: name.clone(),
                    hook: HookKind::Extension,
                    reason: "no longer loaded (removed by a reload)".into(),
                    limit: None,
                });
                continue;
            };
            match self.run_extension(hooked, &record, &content).await {
                Ok(Ok(items)) => derived.extend(items),
                Ok(Err(skip)) => skipped.push(skip),
                Err(reason) => return Ran::HostFailure(reason),
            }
        }
        match self.finish_record(&record, derived, skipped).await {
            Ok(Some(record)) => Ran::Done(Box::new(record)),
            Ok(None) => Ran::Deleted,
            Err(err) => Ran::HostFailure(chain(&err)),
        }
    }

    /// One extension on one upload: its stored artifacts, or why it was
    /// skipped; `Err` for a failure of the host's.
    async fn run_extension(
        &self,
        hooked: &HookedPlugin,
        record: &UploadRecord,
        content: &Arc<dyn ContentSource>,
    ) -> Result<Result<Vec<DerivedRecord>, SkippedPlugin>, String> {
        // The record keeps the digest; the hook's view of the upload gets it.
        let upload = &UploadInfo {
            sha256: record.sha256.clone(),
            ..record.upload.clone()
        };
        let plugin = hooked.plugin.name().to_string();
        // Waits briefly for a slot: a full bulkhead retries the job later
        // rather than holding a worker.
        let until = tokio::time::Instant::now()
            + Duration::from_millis(hooked.guard.containment().max_wait_ms);
        let items = match self
            .run_plugin(hooked, until, async |p| {
                p.derive(upload, Arc::clone(content)).await
            })
            .await
        {
            Ok(items) => items,
            Err(
                failure @ (PluginFailure::Invoke(InvokeError::Host { .. })
                | PluginFailure::Refused(Refusal::Busy { .. })),
            ) => {
                // Load or the host, not the plugin: never a reason to skip.
                return Err(failure.reason());
            }
            Err(failure) => {
                let reason = failure.reason();
                tracing::warn!(plugin, error = %reason, "post-store plugin skipped");
                return Ok(Err(SkippedPlugin {
                    plugin,
                    hook: HookKind::Extension,
                    reason,
                    limit: failure.limit(),
                }));
            }
        };
        let mut stored = Vec::new();
        for item in items {
            let key = keys::derived(&upload.id, &item.name);
            let size = item.bytes.len() as u64;
            self.store
                .put_bytes(&key, item.bytes, &item.content_type)
                .await
                .map_err(|err| format!("storing {}: {}", item.name, chain(&err)))?;
            stored.push(DerivedRecord {
                name: item.name,
                content_type: item.content_type,
                size,
                plugin: plugin.clone(),
            });
        }
        Ok(Ok(stored))
    }

    /// No record: deleted (its tombstone says so; this job, the last
    /// writer, removes it) or not written yet.
    async fn no_record(&self, id: &str) -> Ran {
        match self.store.get_bytes(&keys::tombstone(id)).await {
            Ok(_) => {
                self.remove_tombstone(id).await;
                Ran::Deleted
            }
            Err(StorageError::NotFound(_)) => Ran::NoRecord,
            Err(err) => Ran::HostFailure(chain(&err)),
        }
    }

    /// A dead-lettered job: its pending plugins are listed as skipped with
    /// `reason` (if the record can be written at all).
    async fn give_up(&self, id: &str, reason: &str) {
        let record = match self.read_record(id).await {
            Ok(Some(record)) => record,
            Ok(None) => return,
            Err(err) => {
                tracing::error!(error = %chain(&err), "cannot mark a dead-lettered job in its record");
                return;
            }
        };
        let skipped = record
            .pending
            .iter()
            .map(|plugin| SkippedPlugin {
                plugin: plugin.clone(),
                hook: HookKind::Extension,
                reason: reason.to_string(),
                limit: None,
            })
            .collect();
        match self.finish_record(&record, Vec::new(), skipped).await {
            Ok(Some(record)) => self.waiters.wake(&record),
            Ok(None) => {}
            Err(err) => {
                tracing::error!(error = %chain(&err), "cannot mark a dead-lettered job in its record");
            }
        }
    }
}
