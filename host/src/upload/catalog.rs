//! The stored records: read back for their owner, written, and deleted so
//! that a delete stays deleted.

use bytes::Bytes;
use futures::StreamExt;

use super::error::internal;
use super::names::valid_id;
use super::{UploadError, UploadRecord, UploadService, keys};
use crate::auth::Client;

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
        let bytes = self.store.get_bytes(&keys::record(id)).await?;
        let record: UploadRecord =
            serde_json::from_slice(&bytes).map_err(internal("reading a stored record"))?;
        if record.upload.client != client.name {
            return Err(UploadError::NotFound);
        }
        Ok(record)
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
