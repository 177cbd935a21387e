//! `sha256` (processor): hashes the content and flags duplicates.
//!
//! Streams the content in 64 KiB chunks through SHA-256 and accepts with
//! metadata `sha256` = the lowercase hex digest.
//!
//! De-duplication: `cache.add("sha256:<hex>", <upload id>, 86400)` records the
//! first upload seen with this digest. When the key was already there, the
//! stored upload id is fetched with `cache.get` and added as metadata
//! `duplicate-of` (unless it is this very upload, e.g. on a retry). Cache
//! errors (`unavailable`, quota, …) are logged as warnings and never fail the
//! plugin: it still accepts with the digest.

use std::io::Read;

use airlock_plugin_sdk::{
    CHUNK_SIZE, Content, ContentReader, Guest, PluginError, Upload, Verdict, cache, warn,
};
use sha2::{Digest, Sha256};

/// How long a digest is remembered for de-duplication (one day).
const DEDUPE_TTL_SECONDS: u32 = 86_400;

struct Sha256Plugin;

impl Guest for Sha256Plugin {
    fn process(upload: Upload, content: &Content) -> Result<Verdict, PluginError> {
        let mut reader = ContentReader::new(content);
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; CHUNK_SIZE];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let hex = format!("{:x}", hasher.finalize());

        let mut metadata = vec![("sha256".to_string(), hex.clone())];
        if let Some(original) = duplicate_of(&format!("sha256:{hex}"), &upload.id) {
            metadata.push(("duplicate-of".to_string(), original));
        }
        Ok(Verdict::Accept(metadata))
    }
}

/// Records `upload_id` under `key`; returns the id stored earlier by another
/// upload, if any. Cache failures are logged and treated as "not a duplicate".
fn duplicate_of(key: &str, upload_id: &str) -> Option<String> {
    match cache::add(key, upload_id.as_bytes(), DEDUPE_TTL_SECONDS) {
        Ok(true) => None,
        Ok(false) => match cache::get(key) {
            Ok(Some(stored)) => {
                let original = String::from_utf8_lossy(&stored).into_owned();
                (original != upload_id).then_some(original)
            }
            // Expired between `add` and `get`: nothing to point at.
            Ok(None) => None,
            Err(err) => {
                warn(&format!(
                    "sha256: cache get failed ({err:?}); skipping dedupe"
                ));
                None
            }
        },
        Err(err) => {
            warn(&format!(
                "sha256: cache add failed ({err:?}); skipping dedupe"
            ));
            None
        }
    }
}

airlock_plugin_sdk::export!(Sha256Plugin);
