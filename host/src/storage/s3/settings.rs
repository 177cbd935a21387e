//! `[storage.s3]`: where and how to reach the bucket.

use serde::{Deserialize, Serialize};

use super::MIB;

/// Where and how to reach the bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Settings {
    /// Bucket holding the objects.
    pub bucket: String,
    /// Region of the bucket (for Garage: its `s3_region`).
    pub region: String,
    /// Endpoint URL of an S3-compatible server (`http://127.0.0.1:3900`);
    /// `None` for AWS (or `AWS_ENDPOINT_URL_S3` from the environment).
    pub endpoint: Option<String>,
    /// Address buckets as `endpoint/bucket` rather than `bucket.endpoint`
    /// (needed by most self-hosted servers).
    pub force_path_style: bool,
    /// Access key id. Set together with `secret_access_key`; when both are
    /// unset the standard AWS chain (environment, profile, instance role)
    /// provides credentials.
    pub access_key_id: Option<String>,
    /// Secret access key, set together with `access_key_id`.
    pub secret_access_key: Option<String>,
    /// Prepended verbatim to every key: include the trailing `/`
    /// (`airlock/`), or leave empty.
    pub prefix: String,
    /// Files larger than this are sent as multipart uploads.
    pub multipart_threshold_bytes: u64,
    /// Size of each part of a multipart upload (at least 5 MiB; raised as
    /// needed to stay within S3's 10,000 parts).
    pub part_size_bytes: u64,
    /// Time limit of one S3 operation, retries included, in milliseconds.
    pub timeout_ms: u64,
}

impl Default for S3Settings {
    fn default() -> Self {
        Self {
            bucket: "airlock".into(),
            region: "us-east-1".into(),
            endpoint: None,
            force_path_style: false,
            access_key_id: None,
            secret_access_key: None,
            prefix: String::new(),
            multipart_threshold_bytes: 16 * MIB,
            part_size_bytes: 8 * MIB,
            timeout_ms: 30_000,
        }
    }
}
