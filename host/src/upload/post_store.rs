//! Post-store work: extension plugins run on a bounded background queue
//! after the upload was answered; their artifacts are stored beside it and
//! its record updated, unless it was deleted meanwhile.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{DerivedRecord, PluginSet, SkippedPlugin, UploadRecord, UploadService, keys};
use crate::runtime::{ContentSource, HookKind};
use crate::storage::StorageError;
use crate::text::chain;

pub(super) struct PostStoreJob {
    pub(super) record: UploadRecord,
    pub(super) content: Arc<dyn ContentSource>,
    pub(super) plugins: Arc<PluginSet>,
    pub(super) done: oneshot::Sender<UploadRecord>,
    // Keeps a temp file alive (and deletes it after) when the content was
    // uploaded to remote storage.
    pub(super) _temp: Option<tempfile::TempPath>,
}

/// Post-store worker tasks; await them after closing the queue to drain it.
pub struct PostStoreWorkers(Vec<JoinHandle<()>>);

impl PostStoreWorkers {
    /// Waits for queued jobs to finish, up to `grace`.
    pub async fn drain(self, grace: Duration) -> bool {
        let all = futures::future::join_all(self.0);
        tokio::time::timeout(grace, all).await.is_ok()
    }
}

/// Starts `workers` tasks taking jobs from `rx` until it closes.
pub(super) fn spawn_workers(
    service: &Arc<UploadService>,
    rx: mpsc::Receiver<PostStoreJob>,
    workers: usize,
) -> PostStoreWorkers {
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let handles = (0..workers)
        .map(|_| {
            let service = Arc::clone(service);
            let rx = Arc::clone(&rx);
            tokio::spawn(async move {
                loop {
                    let job = rx.lock().await.recv().await;
                    let Some(job) = job else { break };
                    service.post_store(job).await;
                }
            })
        })
        .collect();
    PostStoreWorkers(handles)
}

impl UploadService {
    /// Reserves a post-store queue slot and lists the extensions as pending,
    /// or, when the queue is full or closing, lists them as skipped. Never
    /// waits: a full queue must not slow uploads down.
    pub(super) fn reserve_post_store(
        &self,
        plugins: &PluginSet,
        record: &mut UploadRecord,
    ) -> Option<mpsc::OwnedPermit<PostStoreJob>> {
        if plugins.extensions.is_empty() {
            return None;
        }
        let queue = self
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let permit = queue.and_then(|tx| tx.try_reserve_owned().ok());
        let names = plugins
            .extensions
            .iter()
            .map(|h| h.plugin.name().to_string());
        if permit.is_some() {
            record.pending = names.collect();
        } else {
            self.metrics.post_store_dropped();
            record.skipped.extend(names.map(|plugin| SkippedPlugin {
                plugin,
                hook: HookKind::Extension,
                reason: "post-store queue full or closing".into(),
                limit: None,
            }));
        }
        permit
    }

    #[tracing::instrument(name = "post_store", skip_all, fields(id = %job.record.upload.id))]
    async fn post_store(&self, job: PostStoreJob) {
        let record = &job.record;
        let upload = &record.upload;
        let mut derived = Vec::new();
        let mut skipped = Vec::new();
        for hooked in &job.plugins.extensions {
            let items = self
                .run_plugin(hooked, async |plugin| {
                    plugin.derive(upload, Arc::clone(&job.content)).await
                })
                .await;
            match items {
                Ok(items) => {
                    for item in items {
                        let key = keys::derived(&upload.id, &item.name);
                        let size = item.bytes.len() as u64;
                        match self
                            .store
                            .put_bytes(&key, item.bytes, &item.content_type)
                            .await
                        {
                            Ok(()) => derived.push(DerivedRecord {
                                name: item.name,
                                content_type: item.content_type,
                                size,
                                plugin: hooked.plugin.name().into(),
                            }),
                            Err(err) => skipped.push(SkippedPlugin {
                                plugin: hooked.plugin.name().into(),
                                hook: HookKind::Extension,
                                reason: format!("storing {}: {err}", item.name),
                                limit: None,
                            }),
                        }
                    }
                }
                Err(failure) => {
                    let reason = failure.reason();
                    tracing::warn!(plugin = hooked.plugin.name(), error = %reason, "post-store plugin failed");
                    skipped.push(SkippedPlugin {
                        plugin: hooked.plugin.name().into(),
                        hook: HookKind::Extension,
                        reason,
                        limit: failure.limit(),
                    });
                }
            }
        }
        let final_record = self.finish_record(record, derived, skipped).await;
        let _ = job.done.send(final_record);
    }

    /// Adds post-store results to the stored record. If the upload was
    /// deleted meanwhile, removes the artifacts instead.
    async fn finish_record(
        &self,
        record: &UploadRecord,
        derived: Vec<DerivedRecord>,
        skipped: Vec<SkippedPlugin>,
    ) -> UploadRecord {
        let current = match self.store.get_bytes(&keys::record(&record.upload.id)).await {
            Ok(bytes) => serde_json::from_slice::<UploadRecord>(&bytes).ok(),
            Err(StorageError::NotFound(_)) => None,
            Err(err) => {
                tracing::error!(error = %chain(&err), "cannot read record after post-store hooks");
                Some(record.clone())
            }
        };
        let Some(mut current) = current else {
            for item in &derived {
                let key = keys::derived(&record.upload.id, &item.name);
                if let Err(err) = self.store.delete(&key).await {
                    // The orphan sweep removes it later.
                    tracing::warn!(key, error = %chain(&err), "cannot remove an artifact of a deleted upload");
                }
            }
            // Deleted before this update: no writer is left to race with.
            self.remove_tombstone(&record.upload.id).await;
            return record.clone();
        };
        current.derived.extend(derived);
        current.skipped.extend(skipped);
        current.pending.clear();
        if let Err(err) = self.write_record(&current).await {
            tracing::error!(error = %chain(&err), "cannot update record after post-store hooks");
        }
        // A delete writes its tombstone before removing the record: if it
        // removed the record before the write above, the tombstone is
        // visible now, and the write must not bring the upload back.
        match self
            .store
            .get_bytes(&keys::tombstone(&record.upload.id))
            .await
        {
            Ok(_) => {
                self.remove_resurrected(&current).await;
                self.remove_tombstone(&record.upload.id).await;
            }
            Err(StorageError::NotFound(_)) => {}
            Err(err) => {
                tracing::error!(error = %chain(&err), "cannot check for a delete after post-store hooks")
            }
        }
        current
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
