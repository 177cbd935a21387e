//! The orphan sweep: removes what a crash can leave in storage. An upload's
//! content is stored before its record, and a record's derived artifacts
//! beside it; a process killed between those writes, or a post-store update
//! undone by a delete, leaves objects that no record owns. They are removed
//! once older than a grace period, which any upload still being written is
//! well within. Tombstones older than the grace period go too: no update of
//! their upload can still be under way; and so do the temporary files of
//! local writes cut short (`.tmp-…` beside their destination).

use std::time::{Duration, SystemTime};

use futures::StreamExt;

use super::keys;
use crate::metrics::Metrics;
use crate::storage::{BlobStore, Listed, StorageError};

/// What one sweep removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    /// Content objects without a record.
    pub content: u64,
    /// Derived artifacts without a record.
    pub derived: u64,
    /// Tombstones past the grace period.
    pub tombstones: u64,
    /// Temporary files of writes cut short (local disk).
    pub temp_files: u64,
}

/// Removes orphaned upload objects, old tombstones and temporary files older
/// than `grace`.
pub async fn sweep(
    store: &dyn BlobStore,
    grace: Duration,
    metrics: &Metrics,
) -> Result<SweepReport, StorageError> {
    let cutoff = SystemTime::now()
        .checked_sub(grace)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    sweep_with(store, cutoff, cutoff, metrics).await
}

/// [`sweep`] as the first one of a process that started at `started`: every
/// temporary file older than the process is a write cut short by the one
/// before (the local store has one process), whatever the grace.
pub async fn sweep_at_start(
    store: &dyn BlobStore,
    grace: Duration,
    started: SystemTime,
    metrics: &Metrics,
) -> Result<SweepReport, StorageError> {
    let cutoff = SystemTime::now()
        .checked_sub(grace)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    sweep_with(store, cutoff, started, metrics).await
}

async fn sweep_with(
    store: &dyn BlobStore,
    cutoff: SystemTime,
    temp_cutoff: SystemTime,
    metrics: &Metrics,
) -> Result<SweepReport, StorageError> {
    let mut report = SweepReport::default();
    // What was removed is counted even when the sweep stops part-way.
    let temp = store.sweep_temp(temp_cutoff).await;
    report.temp_files = *temp.as_ref().unwrap_or(&0);
    let swept = sweep_into(store, cutoff, &mut report).await;
    metrics.orphans_swept("content", report.content);
    metrics.orphans_swept("derived", report.derived);
    metrics.orphans_swept("tombstone", report.tombstones);
    metrics.orphans_swept("temp", report.temp_files);
    if report != SweepReport::default() {
        tracing::info!(
            content = report.content,
            derived = report.derived,
            tombstones = report.tombstones,
            temp_files = report.temp_files,
            "swept orphaned objects"
        );
    }
    temp?;
    swept.map(|()| report)
}

/// Sweeps older than `cutoff`, adding what it removes to `report`.
async fn sweep_into(
    store: &dyn BlobStore,
    cutoff: SystemTime,
    report: &mut SweepReport,
) -> Result<(), StorageError> {
    let mut group = Group::default();
    let mut pages = store.list(keys::UPLOADS);
    while let Some(page) = pages.next().await {
        for listed in page? {
            let Some(id) = upload_id(&listed.key) else {
                continue;
            };
            if group.id != id {
                group.settle(store, cutoff, report).await?;
                group = Group {
                    id: id.to_string(),
                    ..Group::default()
                };
            }
            group.add(listed);
        }
    }
    group.settle(store, cutoff, report).await?;
    drop(pages);

    let mut pages = store.list(keys::TOMBSTONES);
    while let Some(page) = pages.next().await {
        for tombstone in page?.iter().filter(|t| t.modified < cutoff) {
            store.delete(&tombstone.key).await?;
            report.tombstones += 1;
        }
    }

    Ok(())
}

/// The id of an upload object's key.
fn upload_id(key: &str) -> Option<&str> {
    key.strip_prefix(keys::UPLOADS)?.split('/').next()
}

/// The listed objects of one upload.
#[derive(Default)]
struct Group {
    id: String,
    objects: Vec<Listed>,
    has_record: bool,
}

impl Group {
    fn add(&mut self, listed: Listed) {
        if listed.key == keys::record(&self.id) {
            self.has_record = true;
        }
        self.objects.push(listed);
    }

    /// Removes the group's objects if no record owns them and all are
    /// older than `cutoff`.
    async fn settle(
        &mut self,
        store: &dyn BlobStore,
        cutoff: SystemTime,
        report: &mut SweepReport,
    ) -> Result<(), StorageError> {
        if self.id.is_empty()
            || self.has_record
            || self.objects.iter().any(|o| o.modified >= cutoff)
        {
            return Ok(());
        }
        // Listing is not atomic: look again for a record written since.
        match store.get_bytes(&keys::record(&self.id)).await {
            Err(StorageError::NotFound(_)) => {}
            Ok(_) => return Ok(()),
            Err(err) => return Err(err),
        }
        for object in &self.objects {
            store.delete(&object.key).await?;
            if object.key == keys::content(&self.id) {
                report.content += 1;
            } else {
                report.derived += 1;
            }
        }
        Ok(())
    }
}
