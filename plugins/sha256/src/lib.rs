//! `sha256` (processor): records the content's digest and flags duplicates.
//!
//! Accepts with metadata `sha256` = the lowercase hex digest, which the host
//! computed as the bytes arrived (`content.sha256()`, WIT 0.1.1): hashing a
//! 1 GiB upload again in wasm would cost some 20 G fuel.
//!
//! De-duplication: `cache.add("sha256:<hex>", <upload id>, 86400)` records the
//! first upload seen with this digest. When the key was already there, the
//! stored upload id is fetched with `cache.get` and added as metadata
//! `duplicate-of` (unless it is this very upload, e.g. on a retry). Cache
//! errors (`unavailable`, quota, …) are logged as warnings and never fail the
//! plugin: it still accepts with the digest.

use airlock_plugin_sdk::{Content, Guest, PluginError, Upload, Verdict, cache, warn};

/// How long a digest is remembered for de-duplication (one day).
const DEDUPE_TTL_SECONDS: u32 = 86_400;

struct Sha256Plugin;

impl Guest for Sha256Plugin {
    fn process(upload: Upload, content: &Content) -> Result<Verdict, PluginError> {
        let hex = content.sha256();

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
                warn!("sha256: cache get failed ({err:?}); skipping dedupe");
                None
            }
        },
        Err(err) => {
            warn!("sha256: cache add failed ({err:?}); skipping dedupe");
            None
        }
    }
}

airlock_plugin_sdk::export!(Sha256Plugin);
