//! `key-flood` (processor, hostile): fills its cache namespace until the key
//! quota says no.
//!
//! Sets distinct keys `k0`, `k1`, … (16-byte values, maximum TTL) until `set`
//! fails, then returns `plugin-error` `quota reached after N keys` for
//! `quota-exceeded` (N = the number of successful `set`s in this
//! invocation), or `cache error after N keys: <error>` for any other error.
//! It tests the quota error path: it ends by itself, without a trap.

use airlock_plugin_sdk::{Content, Guest, PluginError, Upload, Verdict, cache};

struct KeyFlood;

impl Guest for KeyFlood {
    fn process(_upload: Upload, _content: &Content) -> Result<Verdict, PluginError> {
        let value = [0x5Au8; 16];
        let mut n: u64 = 0;
        loop {
            match cache::set(&format!("k{n}"), &value, 0) {
                Ok(()) => n += 1,
                Err(cache::Error::QuotaExceeded) => {
                    return Err(PluginError::new(format!("quota reached after {n} keys")));
                }
                Err(err) => {
                    return Err(PluginError::new(format!(
                        "cache error after {n} keys: {err:?}"
                    )));
                }
            }
        }
    }
}

airlock_plugin_sdk::export!(KeyFlood);
