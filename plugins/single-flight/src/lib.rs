//! `single-flight` (processor): the SDK's `get_or_compute` under test.
//!
//! On every upload it asks for the cache entry `table` with
//! `get_or_compute`; on a miss the value is a few million rounds of integer
//! mixing (some milliseconds of fuel, the "expensive" rebuild). It accepts
//! with metadata `computed` = `yes` when this invocation ran the
//! computation, `no` when it got the value from the cache (at once, or by
//! waiting for another invocation that was computing it), and `table` = the
//! value's first 8 bytes in hex.
//!
//! With upload metadata `mode` = `wait-forever` it instead waits for a key
//! nobody sets, asking for the longest wait there is (`u32::MAX` ms), and
//! accepts with `waited` = `none` (or `some`).

use airlock_plugin_sdk::{Content, Guest, Metadata, PluginError, Upload, Verdict, cache};

/// Rounds of mixing per 8 bytes of the value.
const ROUNDS: u64 = 50_000;

struct SingleFlight;

impl Guest for SingleFlight {
    fn process(upload: Upload, _content: &Content) -> Result<Verdict, PluginError> {
        let mode = upload
            .metadata
            .iter()
            .find(|(k, _)| k == "mode")
            .map(|(_, v)| v.as_str());
        if mode == Some("wait-forever") {
            let waited = match cache::wait("nobody-sets-this", u32::MAX) {
                Ok(Some(_)) => "some",
                Ok(None) => "none",
                Err(_) => "error",
            };
            return Ok(Metadata::new().with("waited", waited).accept());
        }
        let mut computed = false;
        let table = airlock_plugin_sdk::get_or_compute("table", 600, || {
            computed = true;
            Ok::<_, PluginError>(expensive_table())
        })?;
        let head: String = table.iter().take(8).map(|b| format!("{b:02x}")).collect();
        Ok(Metadata::new()
            .with("computed", if computed { "yes" } else { "no" })
            .with("table", head)
            .accept())
    }
}

/// 64 bytes, each 8 the result of `ROUNDS` rounds of splitmix64.
fn expensive_table() -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..8 {
        for _ in 0..ROUNDS {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            x ^= z ^ (z >> 31);
        }
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

airlock_plugin_sdk::export!(SingleFlight);
