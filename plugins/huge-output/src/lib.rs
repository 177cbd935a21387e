//! `huge-output` (processor, hostile): replaces every upload with 64 MiB of
//! `A` bytes (`application/octet-stream`, no metadata).
//!
//! The host's output-bytes budget must refuse it.

use airlock_plugin_sdk::{Content, Guest, PluginError, Replacement, Upload, Verdict};

/// Size of the replacement.
const OUTPUT_BYTES: usize = 64 << 20;

struct HugeOutput;

impl Guest for HugeOutput {
    fn process(_upload: Upload, _content: &Content) -> Result<Verdict, PluginError> {
        Ok(Verdict::Replace(Replacement {
            bytes: vec![b'A'; OUTPUT_BYTES],
            content_type: "application/octet-stream".to_string(),
            metadata: Vec::new(),
        }))
    }
}

airlock_plugin_sdk::export!(HugeOutput);
