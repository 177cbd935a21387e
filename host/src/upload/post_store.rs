//! Post-store work: extension plugins run after the upload was answered,
//! from the durable job queue ([`crate::jobs`]); their artifacts are stored
//! beside the upload and its record updated (unless it was deleted
//! meanwhile), and only then does the job leave the queue.
//!
//! A plugin's own failure (budget stop, crash, quarantine) is a result and
//! is recorded in `skipped`; a failure of the host's (storage down, no free
//! instance, a full bulkhead) is retried with backoff, and a job that keeps
//! failing goes to the dead letters, its plugins listed as skipped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{
    DerivedRecord, HookedPlugin, SkippedPlugin, StoredContent, UploadError, UploadRecord,
    UploadService, keys,
};
use crate::jobs::{Claimed, Job};
use crate::runtime::{ContentSource, HookKind, InvokeError, UploadInfo};
use crate::storage::StorageError;
use crate::supervisor::Refusal;
use crate::text::chain;

use super::error::internal;
use super::plugins::PluginFailure;

/// How long an idle worker waits for a job before checking for shutdown.
const IDLE_WAIT: Duration = Duration::from_millis(500);
/// A job whose record is not there yet (it is written right after the job
/// is queued) is tried again this soon, without counting an attempt.
const RECORD_NOT_YET: Duration = Duration::from_secs(1);
/// After this long without a record, the upload never completed (or was
/// deleted): the job is dropped.
const RECORD_GRACE: Duration = Duration::from_secs(60);
/// Backoff of host-side failures: 1 s, doubling, at most this.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Post-store settings.
#[derive(Debug, Clone, Copy)]
pub struct PostStoreSettings {
    /// Worker tasks.
    pub workers: usize,
    /// Attempts of a job failing for host reasons before it is given up.
    pub max_attempts: u32,
}

/// Post-store worker tasks on their own runtime; stop them with
/// [`PostStoreWorkers::drain`].
pub struct PostStoreWorkers {
    tasks: Vec<JoinHandle<()>>,
    closing: Arc<AtomicBool>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl PostStoreWorkers {
    /// Stops taking jobs and waits up to `grace` for the running ones.
    /// Jobs not started stay queued for the next start (or another node).
    pub async fn drain(mut self, grace: Duration) -> bool {
        self.closing.store(true, Ordering::Release);
        let all = futures::future::join_all(std::mem::take(&mut self.tasks));
        tokio::time::timeout(grace, all).await.is_ok()
    }
}

impl Drop for PostStoreWorkers {
    fn drop(&mut self) {
        self.closing.store(true, Ordering::Release);
        // Never blocks: dropping a runtime from async code would panic.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Those waiting for an upload's post-store results on this node
/// (`?wait=true`).
#[derive(Default)]
pub(super) struct Waiters(Mutex<HashMap<String, Vec<oneshot::Sender<UploadRecord>>>>);

impl Waiters {
    pub(super) fn register(&self, id: &str) -> oneshot::Receiver<UploadRecord> {
        let (tx, rx) = oneshot::channel();
        let mut waiting = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // Those nobody waits on any more (answered without `wait`, timed
        // out, or their job ran on another node) go as new ones come: the
        // map holds only live waiters, not one per upload ever stored.
        waiting.retain(|_, senders| {
            senders.retain(|tx| !tx.is_closed());
            !senders.is_empty()
        });
        waiting.entry(id.to_string()).or_default().push(tx);
        rx
    }

    pub(super) fn forget(&self, id: &str) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }

    fn wake(&self, record: &UploadRecord) {
        let waiting = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&record.upload.id);
        for tx in waiting.into_iter().flatten() {
            // The waiter may have given up already.
            let _ = tx.send(record.clone());
        }
    }
}

/// Starts `workers` tasks taking jobs from the service's queue, on a
/// runtime of their own with as many threads at the lowest scheduling
/// priority: a thumbnail backlog takes only the CPU the request path
/// leaves. None: a node that only takes uploads (with Redis, other nodes
/// run its jobs).
pub(super) fn spawn_workers(
    service: &Arc<UploadService>,
    workers: usize,
) -> Result<PostStoreWorkers, UploadError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .thread_name("post-store")
        .on_thread_start(|| {
            use thread_priority::{ThreadPriority, set_current_thread_priority};
            if let Err(err) = set_current_thread_priority(ThreadPriority::Min) {
                tracing::warn!(error = ?err, "cannot lower a post-store thread's priority");
            }
        })
        .enable_all()
        .build()
        .map_err(internal("starting the post-store runtime"))?;
    let closing = Arc::new(AtomicBool::new(false));
    let tasks = (0..workers)
        .map(|_| {
            let service = Arc::clone(service);
            let closing = Arc::clone(&closing);
            runtime.spawn(async move {
                while !closing.load(Ordering::Acquire) {
                    match service.jobs.claim(IDLE_WAIT).await {
                        Ok(Some(claimed)) => service.run_job(claimed).await,
                        Ok(None) => {}
                        Err(err) => {
                            tracing::error!(error = %chain(&err), "cannot take a post-store job; trying again");
                            tokio::time::sleep(IDLE_WAIT).await;
                        }
                    }
                }
            })
        })
        .collect();
    Ok(PostStoreWorkers {
        tasks,
        closing,
        runtime: Some(runtime),
    })
}

/// How often a wait for post-store results looks at the record (the job
/// may run on another node, which cannot tell this one).
const SETTLED_POLL: Duration = Duration::from_millis(250);

impl UploadService {
    /// `ingested`'s record once its post-store plugins have run, on this
    /// node (told at once) or another (seen in the record), or as it is
    /// after `limit`.
    pub async fn settled(&self, ingested: super::Ingested, limit: Duration) -> UploadRecord {
        let Some(mut done) = ingested.post_store_done else {
            return ingested.record;
        };
        let id = ingested.record.upload.id.clone();
        let deadline = tokio::time::Instant::now() + limit;
        let mut told = true;
        loop {
            tokio::select! {
                result = &mut done, if told => match result {
                    Ok(record) => return record,
                    // Nothing will tell: look at the record only.
                    Err(_) => told = false,
                },
                () = tokio::time::sleep(SETTLED_POLL) => {
                    if let Ok(Some(record)) = self.read_record(&id).await
                        && record.pending.is_empty()
                    {
                        return record;
                    }
                }
                () = tokio::time::sleep_until(deadline) => return ingested.record,
            }
        }
    }
}

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
    async fn run_job(&self, claimed: Claimed) {
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

    /// The stored record of `id`, `None` if there is none.
    async fn read_record(&self, id: &str) -> Result<Option<UploadRecord>, UploadError> {
        match self.store.get_bytes(&keys::record(id)).await {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(internal("reading a stored record")),
            Err(StorageError::NotFound(_)) => Ok(None),
            Err(err) => Err(err.into()),
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

    /// Adds post-store results to the stored record (an artifact of the
    /// same name is replaced: a job may run twice). If the upload was
    /// deleted meanwhile, removes the artifacts instead (`None`).
    async fn finish_record(
        &self,
        record: &UploadRecord,
        derived: Vec<DerivedRecord>,
        skipped: Vec<SkippedPlugin>,
    ) -> Result<Option<UploadRecord>, UploadError> {
        let id = &record.upload.id;
        let Some(mut current) = self.read_record(id).await? else {
            for item in &derived {
                let key = keys::derived(id, &item.name);
                if let Err(err) = self.store.delete(&key).await {
                    // The orphan sweep removes it later.
                    tracing::warn!(key, error = %chain(&err), "cannot remove an artifact of a deleted upload");
                }
            }
            // Deleted before this update: no writer is left to race with.
            self.remove_tombstone(id).await;
            return Ok(None);
        };
        current
            .derived
            .retain(|d| !derived.iter().any(|n| n.name == d.name));
        current.derived.extend(derived);
        current.skipped.retain(|s| {
            !skipped
                .iter()
                .any(|n| n.plugin == s.plugin && n.hook == s.hook)
        });
        current.skipped.extend(skipped);
        current.pending.clear();
        self.write_record(&current).await?;
        // A delete writes its tombstone before removing the record: if it
        // removed the record before the write above, the tombstone is
        // visible now, and the write must not bring the upload back.
        match self.store.get_bytes(&keys::tombstone(id)).await {
            Ok(_) => {
                self.remove_resurrected(&current).await;
                self.remove_tombstone(id).await;
                return Ok(None);
            }
            Err(StorageError::NotFound(_)) => {}
            Err(err) => {
                tracing::error!(error = %chain(&err), "cannot check for a delete after post-store hooks")
            }
        }
        Ok(Some(current))
    }

    /// The last writer of a deleted upload removes its tombstone.
    async fn remove_tombstone(&self, id: &str) {
        if let Err(err) = self.store.delete(&keys::tombstone(id)).await {
            tracing::warn!(id, error = %chain(&err), "cannot remove a tombstone");
        }
    }

    /// Undoes a record update that landed after its upload was deleted.
    async fn remove_resurrected(&self, record: &UploadRecord) {
        let mut keys_to_remove = vec![
            keys::record(&record.upload.id),
            keys::content(&record.upload.id),
        ];
        keys_to_remove.extend(
            record
                .derived
                .iter()
                .map(|d| keys::derived(&record.upload.id, &d.name)),
        );
        for key in keys_to_remove {
            if let Err(err) = self.store.delete(&key).await {
                tracing::error!(key, error = %chain(&err), "cannot remove what a racing delete removed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Waiters;
    use std::sync::PoisonError;

    #[test]
    fn waiters_nobody_waits_on_are_forgotten() {
        let waiters = Waiters::default();
        let kept = waiters.register("a");
        drop(waiters.register("b"));
        let _c = waiters.register("c");
        let ids: Vec<String> = {
            let map = waiters.0.lock().unwrap_or_else(PoisonError::into_inner);
            let mut ids: Vec<String> = map.keys().cloned().collect();
            ids.sort();
            ids
        };
        assert_eq!(ids, ["a", "c"]);
        drop(kept);
    }
}
