//! `{{name}}`: an Airlock processor. It runs before every upload is stored
//! and decides: accept it (with metadata), reject it, or replace its bytes.

use airlock_plugin_sdk::{Content, Guest, Metadata, PluginError, Upload, Verdict, info};

struct Plugin;

impl Guest for Plugin {
    fn process(upload: Upload, content: &Content) -> Result<Verdict, PluginError> {
        info!("{}: {} bytes of {}", upload.filename, content.size(), upload.content_type);
        if content.size() == 0 {
            return Ok(Verdict::Reject("empty files are not accepted".into()));
        }
        Ok(Metadata::new().with("greeting", "hello").accept())
    }
}

airlock_plugin_sdk::export!(Plugin);
