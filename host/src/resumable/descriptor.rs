//! What a resumable upload is: its owner, declared length, metadata and
//! place in a concatenation, kept beside its staged bytes.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::TusError;

/// Metadata pairs one upload may carry.
const MAX_METADATA_PAIRS: usize = 64;

/// A staged upload's descriptor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Descriptor {
    /// The API client that created it.
    pub client: String,
    /// The declared length; `None` while deferred.
    pub length: Option<u64>,
    /// `Upload-Metadata` as sent, echoed on HEAD.
    pub metadata: Option<String>,
    /// From the `filename` metadata.
    pub filename: String,
    /// From the `filetype` metadata.
    pub content_type: String,
    /// Its place in a concatenation.
    pub concat: Concat,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
}

/// An upload's place in a concatenation (`Upload-Concat`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Concat {
    /// An ordinary upload.
    None,
    /// A part, to be concatenated; never processed on its own.
    Partial,
    /// The concatenation of these partial uploads.
    Final(Vec<String>),
}

impl Descriptor {
    /// As stored.
    pub fn to_bytes(&self) -> Result<Bytes, TusError> {
        serde_json::to_vec(self)
            .map(Bytes::from)
            .map_err(|e| TusError::bad_request(format!("cannot serialize a descriptor: {e}")))
    }

    /// As read back; an unreadable one is an upload that cannot be served.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TusError> {
        serde_json::from_slice(bytes).map_err(|e| {
            TusError::Storage(crate::storage::StorageError::unavailable(
                "reading a resumable upload's descriptor",
                e,
            ))
        })
    }
}

/// Parsed `Upload-Metadata`: comma-separated `key base64value` pairs (the
/// value may be left out).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata(BTreeMap<String, Option<Vec<u8>>>);

impl Metadata {
    /// Parses a header value; any malformed pair, repeated key or value
    /// that is not base64 is an error naming it.
    pub fn parse(header: &str) -> Result<Self, TusError> {
        let mut pairs = BTreeMap::new();
        for pair in header.split(',') {
            let pair = pair.trim();
            if pair.is_empty() {
                continue;
            }
            let mut parts = pair.split(' ').filter(|s| !s.is_empty());
            let (Some(key), value, None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(TusError::bad_request(format!(
                    "Upload-Metadata: `{}` is not `key base64value`",
                    truncate(pair)
                )));
            };
            if !key.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(TusError::bad_request(format!(
                    "Upload-Metadata: key `{}` is not printable ASCII",
                    truncate(key)
                )));
            }
            let value = value.map(|v| STANDARD.decode(v)).transpose().map_err(|_| {
                TusError::bad_request(format!(
                    "Upload-Metadata: the value of `{}` is not base64",
                    truncate(key)
                ))
            })?;
            if pairs.insert(key.to_string(), value).is_some() {
                return Err(TusError::bad_request(format!(
                    "Upload-Metadata: key `{}` appears twice",
                    truncate(key)
                )));
            }
            if pairs.len() > MAX_METADATA_PAIRS {
                return Err(TusError::bad_request(format!(
                    "Upload-Metadata: more than {MAX_METADATA_PAIRS} pairs"
                )));
            }
        }
        Ok(Self(pairs))
    }

    /// The value of `key` as text, if present and UTF-8.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)?
            .as_deref()
            .and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// A client's text cut short enough to quote in an error.
fn truncate(text: &str) -> &str {
    let end = text.char_indices().nth(64).map_or(text.len(), |(at, _)| at);
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_pairs() {
        let Ok(meta) =
            Metadata::parse("filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential")
        else {
            panic!("valid metadata refused");
        };
        assert_eq!(meta.text("filename"), Some("world_domination_plan.pdf"));
        assert_eq!(meta.text("is_confidential"), None);
        assert!(Metadata::parse("filename !!!").is_err());
        assert!(Metadata::parse("a YQ==,a YQ==").is_err());
        assert!(Metadata::parse("a YQ== extra").is_err());
        assert_eq!(Metadata::parse("").ok(), Some(Metadata::default()));
    }
}
