//! `deep-recursion` (processor, hostile): recurses without bound on every
//! upload, until the stack overflows.
//!
//! The recursion is not a tail call (the result is used after it returns) and
//! every value goes through `black_box`, so it cannot be optimized into a
//! loop. The host must see a trap (stack overflow), not a hang.

use std::hint::black_box;

use airlock_plugin_sdk::{Content, Guest, PluginError, Upload, Verdict};

struct DeepRecursion;

/// Recurses forever in practice: `depth` never reaches `u64::MAX`.
fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth; 8]);
    if black_box(depth) == u64::MAX {
        return frame[0];
    }
    black_box(recurse(black_box(depth + 1))).wrapping_add(frame[7])
}

impl Guest for DeepRecursion {
    fn process(_upload: Upload, _content: &Content) -> Result<Verdict, PluginError> {
        let depth = recurse(0);
        Ok(Verdict::Accept(vec![(
            "depth".to_string(),
            depth.to_string(),
        )]))
    }
}

airlock_plugin_sdk::export!(DeepRecursion);
