//! `cache-storm` (processor, hostile): the library from the incident
//! post-mortem.
//!
//! On every upload it "rebuilds the cache": in an unbounded loop it `set`s
//! keys `page:0`, `page:1`, … with 1 KiB values, ignoring every error, trying
//! to rewrite every key it can. The host must stop it with the invocation's
//! cache-call (or cache-write-bytes) budget.

use airlock_plugin_sdk::{Content, Guest, PluginError, Upload, Verdict, cache};

struct CacheStorm;

impl Guest for CacheStorm {
    fn process(_upload: Upload, _content: &Content) -> Result<Verdict, PluginError> {
        let page = vec![b'x'; 1024];
        let mut n: u64 = 0;
        loop {
            let _ = cache::set(&format!("page:{n}"), &page, 0);
            n = n.wrapping_add(1);
        }
    }
}

airlock_plugin_sdk::export!(CacheStorm);
