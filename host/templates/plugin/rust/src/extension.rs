//! `{{name}}`: an Airlock extension. It runs after an upload is durably
//! stored and returns artifacts derived from it, stored beside it.

use airlock_plugin_sdk::{Content, Derived, Guest, PluginError, Upload, info};

struct Plugin;

impl Guest for Plugin {
    fn on_stored(upload: Upload, content: &Content) -> Result<Vec<Derived>, PluginError> {
        info!("{}: {} bytes of {}", upload.filename, content.size(), upload.content_type);
        let summary = format!("{} is {} bytes of {}\n", upload.filename, content.size(), upload.content_type);
        Ok(vec![Derived {
            name: "summary.txt".into(),
            content_type: "text/plain".into(),
            bytes: summary.into_bytes(),
        }])
    }
}

airlock_plugin_sdk::export!(Plugin);
