//! The post-store workers: tasks on a runtime of their own that take jobs
//! from the queue and run them (`post_store.rs`), and the waits of
//! `?wait=true` for their results.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::error::internal;
use super::{UploadError, UploadRecord, UploadService};
use crate::text::chain;

/// How long an idle worker waits for a job before checking for shutdown.
const IDLE_WAIT: Duration = Duration::from_millis(500);

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

/// Those waiting on this node for an upload's post-store results
/// (`?wait=true`), told when a worker here finishes its job. Only a wait
/// registers, and it unregisters when it ends.
#[derive(Default)]
pub(super) struct Waiters(Mutex<HashMap<String, Vec<oneshot::Sender<UploadRecord>>>>);

impl Waiters {
    fn register(&self, id: &str) -> oneshot::Receiver<UploadRecord> {
        let (tx, rx) = oneshot::channel();
        self.lock().entry(id.to_string()).or_default().push(tx);
        rx
    }

    /// Drops the senders of `id` nobody listens to any more.
    fn unregister(&self, id: &str) {
        let mut waiting = self.lock();
        if let Some(senders) = waiting.get_mut(id) {
            senders.retain(|tx| !tx.is_closed());
            if senders.is_empty() {
                waiting.remove(id);
            }
        }
    }

    pub(super) fn wake(&self, record: &UploadRecord) {
        let waiting = self.lock().remove(&record.upload.id);
        for tx in waiting.into_iter().flatten() {
            // The waiter may have given up already.
            let _ = tx.send(record.clone());
        }
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, Vec<oneshot::Sender<UploadRecord>>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Puts the calling thread below every other: Linux's `SCHED_IDLE` (it
/// runs only when no other thread wants the CPU, stricter than nice 19,
/// which still takes a slice of a busy core), else the lowest nice value.
fn lowest_priority() {
    use thread_priority::{ThreadPriority, set_current_thread_priority};
    #[cfg(target_os = "linux")]
    {
        use thread_priority::unix::{
            NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy,
            thread_native_id,
        };
        let idle = set_thread_priority_and_policy(
            thread_native_id(),
            ThreadPriority::Min,
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
        );
        match idle {
            Ok(()) => return,
            Err(err) => {
                tracing::debug!(error = ?err, "no SCHED_IDLE for a post-store thread; lowering its nice value")
            }
        }
    }
    if let Err(err) = set_current_thread_priority(ThreadPriority::Min) {
        tracing::warn!(error = ?err, "cannot lower a post-store thread's priority");
    }
}

/// Starts `workers` tasks taking jobs from the service's queue, on a
/// runtime of their own with as many threads at the lowest scheduling
/// priority ([`lowest_priority`]): a thumbnail backlog takes only the CPU
/// the request path leaves. None: a node that only takes uploads (with Redis, other nodes
/// run its jobs).
pub(super) fn spawn_workers(
    service: &Arc<UploadService>,
    workers: usize,
) -> Result<PostStoreWorkers, UploadError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .thread_name("post-store")
        .on_thread_start(lowest_priority)
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
    /// `record` once its post-store plugins have run, on this node (told
    /// at once) or another (seen in the stored record), or as it is after
    /// `limit`.
    pub async fn settled(&self, record: UploadRecord, limit: Duration) -> UploadRecord {
        if record.pending.is_empty() {
            return record;
        }
        let id = record.upload.id.clone();
        let mut done = self.waiters.register(&id);
        let deadline = tokio::time::Instant::now() + limit;
        let mut told = true;
        let settled = loop {
            // Read first: the job may have finished before the wait began.
            if let Ok(Some(stored)) = self.read_record(&id).await
                && stored.pending.is_empty()
            {
                break stored;
            }
            tokio::select! {
                result = &mut done, if told => match result {
                    Ok(stored) => break stored,
                    // Nothing will tell: the record is looked at only.
                    Err(_) => told = false,
                },
                () = tokio::time::sleep(SETTLED_POLL) => {}
                () = tokio::time::sleep_until(deadline) => break record,
            }
        };
        drop(done);
        self.waiters.unregister(&id);
        settled
    }
}

#[cfg(test)]
mod tests {
    use super::Waiters;

    #[test]
    fn a_wait_that_ends_leaves_nothing_behind() {
        let waiters = Waiters::default();
        let kept = waiters.register("a");
        let gone = waiters.register("b");
        drop(gone);
        waiters.unregister("b");
        // A live waiter is kept; an ended one is gone.
        waiters.unregister("a");
        assert!(waiters.lock().contains_key("a"));
        assert!(!waiters.lock().contains_key("b"));
        drop(kept);
        waiters.unregister("a");
        assert!(waiters.lock().is_empty());
    }
}
