//! `memory-hog` (processor, hostile): allocates memory forever on every
//! upload.
//!
//! Allocates 1 MiB buffers, writes to every page of each, and keeps them all.
//! The host's memory limit must stop it (the failed allocation traps).

use std::hint::black_box;

use airlock_plugin_sdk::{Content, Guest, PluginError, Upload, Verdict};

/// Size of each allocation.
const MIB: usize = 1 << 20;

struct MemoryHog;

impl Guest for MemoryHog {
    fn process(_upload: Upload, _content: &Content) -> Result<Verdict, PluginError> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut block = vec![0u8; MIB];
            for byte in block.iter_mut().step_by(4096) {
                *byte = 1;
            }
            hoard.push(black_box(block));
        }
    }
}

airlock_plugin_sdk::export!(MemoryHog);
