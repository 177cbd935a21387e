//! `infinite-loop` (processor, hostile): spins forever on every upload.
//!
//! The counter goes through `black_box`, so the optimizer cannot remove the
//! loop. The host must stop it (fuel or wall-clock deadline).

use std::hint::black_box;

use airlock_plugin_sdk::{Content, Guest, PluginError, Upload, Verdict};

struct InfiniteLoop;

impl Guest for InfiniteLoop {
    fn process(_upload: Upload, _content: &Content) -> Result<Verdict, PluginError> {
        let mut counter: u64 = 0;
        loop {
            counter = black_box(counter.wrapping_add(1));
        }
    }
}

airlock_plugin_sdk::export!(InfiniteLoop);
