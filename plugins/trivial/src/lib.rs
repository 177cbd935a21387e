//! `trivial` (processor): accepts every upload, with no metadata, right after
//! one `cache.get("probe")` call (whose result is ignored).
//!
//! It measures the host's per-invocation overhead (instantiate, one host
//! call, return) in the benchmarks.

use airlock_plugin_sdk::{Content, Guest, PluginError, Upload, Verdict, cache};

struct Trivial;

impl Guest for Trivial {
    fn process(_upload: Upload, _content: &Content) -> Result<Verdict, PluginError> {
        let _ = cache::get("probe");
        Ok(Verdict::Accept(Vec::new()))
    }
}

airlock_plugin_sdk::export!(Trivial);
