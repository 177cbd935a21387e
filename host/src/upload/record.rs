//! The upload record: what the API returns and what is stored beside the
//! content as JSON, so every node sharing the storage sees the same uploads.

use serde::{Deserialize, Serialize};

use crate::budget::Limit;
use crate::runtime::{HookKind, UploadInfo};

/// One stored upload: the upload as the plugins saw it (id, owner, file
/// name, content type and metadata, at the top level of the JSON), and what
/// storing it gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    /// The upload; its content type is that of the stored bytes.
    #[serde(flatten)]
    pub upload: UploadInfo,
    /// Size of the stored bytes.
    pub size: u64,
    /// SHA-256 of the stored bytes (hex).
    pub sha256: String,
    /// Bytes the client sent, when a processor replaced them (so `size`
    /// differs): where a resumable upload's client stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_size: Option<u64>,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    /// Plugins that did not run to completion on this upload, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedPlugin>,
    /// Artifacts derived by post-store plugins.
    #[serde(default)]
    pub derived: Vec<DerivedRecord>,
    /// Post-store plugins still to run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<String>,
}

/// A plugin that was skipped (fail-open) on an upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedPlugin {
    /// The plugin.
    pub plugin: String,
    /// Its hook.
    pub hook: HookKind,
    /// Why, e.g. "exceeded its fuel budget: used …".
    pub reason: String,
    /// The budget limit hit, if that was the cause.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<Limit>,
}

/// A derived artifact stored beside an upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DerivedRecord {
    /// Name, unique per upload.
    pub name: String,
    /// Content type.
    pub content_type: String,
    /// Size in bytes.
    pub size: u64,
    /// The plugin that made it.
    pub plugin: String,
}

/// Storage keys of an upload's objects.
pub mod keys {
    /// Prefix of every upload's objects.
    pub const UPLOADS: &str = "uploads/";
    /// Prefix of the tombstones.
    pub const TOMBSTONES: &str = "deleted/";

    /// The prefix of every object of upload `id`.
    pub fn upload_prefix(id: &str) -> String {
        format!("{UPLOADS}{id}/")
    }

    /// The content.
    pub fn content(id: &str) -> String {
        format!("{UPLOADS}{id}/content")
    }

    /// The record; written last, so its presence means the upload is whole.
    pub fn record(id: &str) -> String {
        format!("{UPLOADS}{id}/record.json")
    }

    /// A derived artifact.
    pub fn derived(id: &str, name: &str) -> String {
        format!("{UPLOADS}{id}/derived/{name}")
    }

    /// Written by a delete before the record goes while post-store work is
    /// pending: an update that lands after the delete sees it and undoes
    /// itself (and then removes it). Outside the upload's own prefix, so
    /// the upload is gone whole even while its tombstone is kept.
    pub fn tombstone(id: &str) -> String {
        format!("{TOMBSTONES}{id}")
    }
}
