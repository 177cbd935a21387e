//! The stored records: read back for their owner, written, and deleted so
//! that a delete stays deleted.

use bytes::Bytes;
use futures::StreamExt;

use super::error::internal;
use super::names::valid_id;
use super::{DerivedRecord, SkippedPlugin, UploadError, UploadRecord, UploadService, keys};
use crate::auth::Client;
use crate::storage::StorageError;
use crate::text::chain;

impl UploadService {
    pub(super) async fn write_record(&self, record: &UploadRecord) -> Result<(), UploadError> {
        let json = serde_json::to_vec(record).map_err(internal("serializing a record"))?;
        self.store
            .put_bytes(
                &keys::record(&record.upload.id),
                json.into(),
                "application/json",
            )
            .await?;
        Ok(())
    }

    /// The record of upload `id`, if `client` owns it.
    pub async fn record(&self, client: &Client, id: &str) -> Result<UploadRecord, UploadError> {
        if !valid_id(id) {
            return Err(UploadError::NotFound);
        }
        match self.read_record(id).await? {
            Some(record) if record.upload.client == client.name => Ok(record),
            _ => Err(UploadError::NotFound),
        }
    }

    /// The stored record of `id`, `None` if there is none.
    pub(super) async fn read_record(&self, id: &str) -> Result<Option<UploadRecord>, UploadError> {
        match self.store.get_bytes(&keys::record(id)).await {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(internal("reading a stored record")),
            Err(StorageError::NotFound(_)) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// Adds post-store results to the stored record (an artifact of the
    /// same name is replaced: a job may run twice). If the upload was
    /// deleted meanwhile, removes the artifacts instead (`None`).
    pub(super) async fn finish_record(
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
    pub(super) async fn remove_tombstone(&self, id: &str) {
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

    /// Deletes upload `id` of `client`: a tombstone first while post-store
    /// work is pending (so an update racing with this delete undoes itself,
    /// see `finish_record`), then the record, so the upload disappears at
    /// once, then its objects.
    pub async fn delete(&self, client: &Client, id: &str) -> Result<(), UploadError> {
        let record = self.record(client, id).await?;
        if !record.pending.is_empty() {
            self.store
                .put_bytes(&keys::tombstone(id), Bytes::new(), "text/plain")
                .await?;
        }
        self.store.delete(&keys::record(id)).await?;
        // Every object of the upload, not just those `record` names: a
        // post-store update that finished after it was read added derived
        // artifacts (and, having found no tombstone yet, left them).
        let prefix = keys::upload_prefix(id);
        let mut pages = self.store.list(&prefix);
        while let Some(page) = pages.next().await {
            for object in page? {
                self.store.delete(&object.key).await?;
            }
        }
        Ok(())
    }
}
