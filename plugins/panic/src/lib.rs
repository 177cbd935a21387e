//! `panic` (processor, hostile): panics on every upload with
//! `boom: this plugin always panics`.
//!
//! The SDK's `export!` installs its panic hook, so the host logs (level error)
//! `plugin panicked: panicked at …: boom: this plugin always panics` before
//! the invocation traps (`unreachable`).

use airlock_plugin_sdk::{Content, Guest, PluginError, Upload, Verdict};

struct Panic;

impl Guest for Panic {
    fn process(_upload: Upload, _content: &Content) -> Result<Verdict, PluginError> {
        panic!("boom: this plugin always panics");
    }
}

airlock_plugin_sdk::export!(Panic);
