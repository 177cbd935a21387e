//! S3-compatible object storage (AWS S3, Garage, MinIO, Ceph RGW, …).
//!
//! Large files go up as multipart uploads read from disk part by part, so a
//! file is never held in memory. Every call has a connect and an operation
//! timeout and a short retry budget: an unreachable S3 fails fast.

mod errors;
mod multipart;
mod settings;
mod staging;

use std::ops::Range;
use std::path::Path;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation, SharedHttpClient,
};
use aws_sdk_s3::primitives::ByteStream as SdkByteStream;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use bytes::Bytes;
use tokio_util::io::ReaderStream;

use self::errors::{is_not_found, is_range_error, object_error, sdk_error};
use self::multipart::MIN_PART_SIZE;
pub use self::settings::S3Settings;
pub use self::staging::S3Staging;
use super::{
    BlobStore, ByteStream, ListPages, Listed, Object, StorageError, check_key, check_prefix,
};

const MIB: u64 = 1024 * 1024;

/// Read buffer of a streamed object.
const READ_CHUNK: usize = 64 * 1024;

/// How long to wait for a TCP connection to S3.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The HTTP(S) client of the SDK (S3 itself and the credential providers):
/// rustls with ring as its crypto, the one TLS stack of the build. Plain
/// `http://` endpoints (a local Garage) work as well.
pub fn https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// Objects in an S3 bucket under a key prefix.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
    multipart_threshold: u64,
    part_size: u64,
}

impl S3Store {
    /// Builds a client for `settings`. Nothing is sent to S3 yet: use
    /// [`BlobStore::ping`] to check it answers.
    pub async fn connect(settings: &S3Settings) -> Result<Self, StorageError> {
        if settings.bucket.is_empty() {
            return Err(StorageError::unavailable_bare("s3: no bucket configured"));
        }
        let timeout = Duration::from_millis(settings.timeout_ms.max(1));
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .operation_timeout(timeout)
            .build();
        let retries = RetryConfig::standard()
            .with_max_attempts(3)
            .with_initial_backoff(Duration::from_millis(100))
            .with_max_backoff(Duration::from_secs(1));
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(https_client())
            .region(Region::new(settings.region.clone()))
            .timeout_config(timeouts)
            .retry_config(retries);
        match (&settings.access_key_id, &settings.secret_access_key) {
            (Some(id), Some(secret)) => {
                loader = loader.credentials_provider(Credentials::new(
                    id.clone(),
                    secret.clone(),
                    None,
                    None,
                    "airlock-settings",
                ));
            }
            (None, None) => {}
            _ => {
                return Err(StorageError::unavailable_bare(
                    "s3: access_key_id and secret_access_key must be set together",
                ));
            }
        }
        let shared = loader.load().await;
        let mut config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(settings.force_path_style)
            // Garage (and other servers) reject the SDK's default streaming
            // checksum trailers; S3 itself does not need them.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(endpoint) = &settings.endpoint {
            config = config.endpoint_url(endpoint);
        }
        let part_size = settings.part_size_bytes.max(MIN_PART_SIZE);
        Ok(Self {
            client: Client::from_conf(config.build()),
            bucket: settings.bucket.clone(),
            prefix: settings.prefix.clone(),
            multipart_threshold: settings.multipart_threshold_bytes,
            part_size,
        })
    }

    /// The underlying SDK client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The S3 object key that holds `key` (the prefix plus `key`).
    pub fn object_key(&self, key: &str) -> Result<String, StorageError> {
        check_key(key)?;
        Ok(format!("{}{key}", self.prefix))
    }

    /// The size of `object` (a HEAD request).
    async fn size_of(&self, key: &str, object: &str) -> Result<u64, StorageError> {
        let head = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(object)
            .send()
            .await
            .map_err(|e| object_error("reading", key, object, e))?;
        Ok(to_u64(head.content_length()))
    }
}

#[async_trait]
impl BlobStore for S3Store {
    fn kind(&self) -> &'static str {
        "s3"
    }

    async fn put_file(
        &self,
        key: &str,
        path: &Path,
        content_type: &str,
    ) -> Result<(), StorageError> {
        let object = self.object_key(key)?;
        let meta = tokio::fs::metadata(path)
            .await
            .map_err(|e| StorageError::unavailable(format!("reading {}", path.display()), e))?;
        if !meta.is_file() {
            return Err(StorageError::unavailable_bare(format!(
                "{} is not a regular file",
                path.display()
            )));
        }
        let size = meta.len();
        if size > self.multipart_threshold {
            return self.put_multipart(&object, path, size, content_type).await;
        }
        let body = SdkByteStream::from_path(path)
            .await
            .map_err(|e| StorageError::unavailable(format!("reading {}", path.display()), e))?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&object)
            .content_type(content_type)
            .body(body)
            .send()
            .await
            .map_err(|e| sdk_error("writing", &object, e))?;
        Ok(())
    }

    async fn put_bytes(
        &self,
        key: &str,
        bytes: Bytes,
        content_type: &str,
    ) -> Result<(), StorageError> {
        let object = self.object_key(key)?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&object)
            .content_type(content_type)
            .body(SdkByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| sdk_error("writing", &object, e))?;
        Ok(())
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Object, StorageError> {
        let object = self.object_key(key)?;
        let mut request = self.client.get_object().bucket(&self.bucket).key(&object);
        if let Some(range) = &range {
            if range.end <= range.start {
                // An empty range cannot be asked of S3 (its end is
                // inclusive): answer it from the object's size.
                let size = self.size_of(key, &object).await?;
                if range.start >= size && size > 0 {
                    return Err(StorageError::RangeNotSatisfiable { size });
                }
                return Ok(empty_object(size));
            }
            request = request.range(format!("bytes={}-{}", range.start, range.end - 1));
        }
        let output = match request.send().await {
            Ok(output) => output,
            Err(e) if is_range_error(&e) => {
                let size = match e
                    .raw_response()
                    .and_then(|r| r.headers().get("content-range"))
                {
                    Some(header) => match parse_total(header) {
                        Some(size) => size,
                        None => self.size_of(key, &object).await?,
                    },
                    None => self.size_of(key, &object).await?,
                };
                // Any range of an empty object is the empty object, as on
                // the local store.
                if size == 0 {
                    return Ok(empty_object(0));
                }
                return Err(StorageError::RangeNotSatisfiable { size });
            }
            Err(e) => return Err(object_error("reading", key, &object, e)),
        };
        let len = to_u64(output.content_length());
        let total_size = match output.content_range() {
            Some(header) => parse_total(header).unwrap_or(len),
            None => len,
        };
        let reader = output.body.into_async_read();
        let body: ByteStream = Box::pin(ReaderStream::with_capacity(reader, READ_CHUNK));
        Ok(Object {
            body,
            len,
            total_size,
        })
    }

    async fn get_bytes(&self, key: &str) -> Result<Bytes, StorageError> {
        let object = self.object_key(key)?;
        let output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&object)
            .send()
            .await
            .map_err(|e| object_error("reading", key, &object, e))?;
        let body = output
            .body
            .collect()
            .await
            .map_err(|e| StorageError::unavailable(format!("s3: reading {object}"), e))?;
        Ok(body.into_bytes())
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let object = self.object_key(key)?;
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(&object)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // S3 answers 204 for a missing key; some servers say 404.
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(sdk_error("deleting", &object, e)),
        }
    }

    fn list<'a>(&'a self, prefix: &'a str) -> ListPages<'a> {
        if let Err(err) = check_prefix(prefix) {
            return Box::pin(futures::stream::once(async move { Err(err) }));
        }
        let object_prefix = format!("{}{prefix}", self.prefix);
        let pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&object_prefix)
            .into_paginator()
            .send();
        Box::pin(futures::stream::unfold(Some(pages), move |pages| {
            let object_prefix = object_prefix.clone();
            async move {
                let mut pages = pages?;
                let page = match pages.next().await? {
                    Ok(page) => page,
                    Err(e) => return Some((Err(sdk_error("listing", &object_prefix, e)), None)),
                };
                let listed = page
                    .contents()
                    .iter()
                    .filter_map(|object| {
                        let key = object.key()?.strip_prefix(&self.prefix)?;
                        // Without a time the object counts as new: never
                        // old enough to be swept.
                        let modified = object
                            .last_modified()
                            .and_then(|t| SystemTime::try_from(*t).ok())
                            .unwrap_or_else(SystemTime::now);
                        Some(Listed {
                            key: key.to_string(),
                            modified,
                        })
                    })
                    .collect();
                Some((Ok(listed), Some(pages)))
            }
        }))
    }

    async fn ping(&self) -> Result<(), StorageError> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| sdk_error("checking bucket", &self.bucket, e))?;
        Ok(())
    }
}

/// An empty body for an object of `size` bytes.
fn empty_object(size: u64) -> Object {
    Object {
        body: Box::pin(futures::stream::empty()),
        len: 0,
        total_size: size,
    }
}

/// The total size from a `Content-Range` header (`bytes 0-9/1000` or
/// `bytes */1000`).
fn parse_total(header: &str) -> Option<u64> {
    header.rsplit_once('/')?.1.trim().parse().ok()
}

/// A length the SDK reports as `i64`.
fn to_u64(len: Option<i64>) -> u64 {
    len.and_then(|n| u64::try_from(n).ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_totals() {
        assert_eq!(parse_total("bytes 0-9/1000"), Some(1000));
        assert_eq!(parse_total("bytes */42"), Some(42));
        assert_eq!(parse_total("bytes 0-9/*"), None);
        assert_eq!(parse_total("garbage"), None);
    }
}
