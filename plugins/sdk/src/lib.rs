//! Guest SDK for Airlock plugins.
//!
//! A plugin is a `cdylib` crate built for `wasm32-unknown-unknown` and turned
//! into a WebAssembly component (see `scripts/build-plugins.sh`). It depends on
//! this crate with exactly one feature, naming the WIT world it targets:
//!
//! - `processor`: implement [`Guest`] (`process`) to accept, reject or replace
//!   an upload before it is stored;
//! - `extension`: implement [`Guest`] (`on_stored`) to return derived artifacts
//!   after the upload is stored.
//!
//! ```ignore
//! use airlock_plugin_sdk::{Content, Guest, PluginError, Upload, Verdict};
//!
//! struct Plugin;
//!
//! impl Guest for Plugin {
//!     fn process(upload: Upload, content: &Content) -> Result<Verdict, PluginError> {
//!         Ok(Verdict::Accept(vec![("seen-by".into(), "me".into())]))
//!     }
//! }
//!
//! airlock_plugin_sdk::export!(Plugin);
//! ```
//!
//! Besides the generated bindings it offers [`ContentReader`] (`Read + Seek`
//! over the upload's bytes), [`read_all`], logging helpers ([`info`],
//! [`warn`], …) and [`install_panic_hook`].

#[cfg(all(feature = "processor", feature = "extension"))]
compile_error!(
    "airlock-plugin-sdk: enable exactly one of the features `processor` and `extension`, not both \
     (build plugins one at a time with `cargo build -p NAME`)"
);
#[cfg(not(any(feature = "processor", feature = "extension")))]
compile_error!("airlock-plugin-sdk: enable exactly one of the features `processor` or `extension`");

/// Bindings generated from `wit/airlock.wit` by `wit_bindgen::generate!`.
///
/// Plugin authors use the re-exports at the crate root instead.
#[doc(hidden)]
#[allow(missing_docs)]
pub mod bindings {
    #[cfg(feature = "processor")]
    wit_bindgen::generate!({
        world: "processor",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "airlock_plugin_sdk::bindings",
    });

    #[cfg(all(feature = "extension", not(feature = "processor")))]
    wit_bindgen::generate!({
        world: "extension",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "airlock_plugin_sdk::bindings",
    });
}

use std::io::{self, Read, Seek, SeekFrom};

/// The host's key-value cache (`airlock:plugin/cache`), namespaced per plugin.
pub use bindings::airlock::plugin::cache;
/// The host's log (`airlock:plugin/log`); see also [`info`], [`warn`], ….
pub use bindings::airlock::plugin::log;
pub use bindings::airlock::plugin::types::{Content, PluginError, Upload};
/// Exports a type implementing [`Guest`] as the plugin: `export!(MyPlugin);`.
pub use bindings::export;
#[cfg(all(feature = "extension", not(feature = "processor")))]
pub use bindings::{airlock::plugin::types::Derived, exports::airlock::plugin::post_store::Guest};
#[cfg(feature = "processor")]
pub use bindings::{
    airlock::plugin::types::{Replacement, Verdict},
    exports::airlock::plugin::pre_store::Guest,
};

/// The largest read [`ContentReader`] asks the host for in one call (64 KiB).
pub const CHUNK_SIZE: usize = 64 * 1024;

impl PluginError {
    /// A plugin error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        PluginError {
            message: message.into(),
        }
    }
}

impl From<io::Error> for PluginError {
    fn from(err: io::Error) -> Self {
        PluginError::new(err.to_string())
    }
}

/// `std::io::Read + Seek` over an upload's [`Content`].
///
/// Each `read` is one host call for at most [`CHUNK_SIZE`] bytes, and every
/// byte returned counts against the invocation's `read-bytes` budget. Wrap it
/// in a `std::io::BufReader` for decoders that make many small reads.
pub struct ContentReader<'a> {
    content: &'a Content,
    size: u64,
    pos: u64,
}

impl<'a> ContentReader<'a> {
    /// A reader positioned at the start of `content`.
    pub fn new(content: &'a Content) -> Self {
        ContentReader {
            size: content.size(),
            content,
            pos: 0,
        }
    }

    /// Total size of the content in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Read for ContentReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let remaining = self.size.saturating_sub(self.pos);
        let want = buf
            .len()
            .min(CHUNK_SIZE)
            .min(remaining.try_into().unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        // `want` <= 64 KiB, so it fits in a u32.
        let bytes = self.content.read(self.pos, want as u32);
        let n = bytes.len().min(want);
        buf[..n].copy_from_slice(&bytes[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for ContentReader<'_> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let target = match pos {
            SeekFrom::Start(offset) => Some(offset),
            SeekFrom::End(delta) => self.size.checked_add_signed(delta),
            SeekFrom::Current(delta) => self.pos.checked_add_signed(delta),
        };
        let target = target.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the content",
            )
        })?;
        self.pos = target;
        Ok(target)
    }
}

/// Reads the whole content into memory, in chunks of [`CHUNK_SIZE`].
pub fn read_all(content: &Content) -> Vec<u8> {
    let size = content.size();
    let mut out = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    while (out.len() as u64) < size {
        let want = (size - out.len() as u64).min(CHUNK_SIZE as u64) as u32;
        let bytes = content.read(out.len() as u64, want);
        if bytes.is_empty() {
            break;
        }
        out.extend_from_slice(&bytes);
    }
    out
}

/// Logs `message` at trace level.
pub fn trace(message: &str) {
    log::write(log::Level::Trace, message);
}

/// Logs `message` at debug level.
pub fn debug(message: &str) {
    log::write(log::Level::Debug, message);
}

/// Logs `message` at info level.
pub fn info(message: &str) {
    log::write(log::Level::Info, message);
}

/// Logs `message` at warn level.
pub fn warn(message: &str) {
    log::write(log::Level::Warn, message);
}

/// Logs `message` at error level.
pub fn error(message: &str) {
    log::write(log::Level::Error, message);
}

/// Makes panics visible: the panic message and location are logged at error
/// level through the host's log before the plugin aborts.
///
/// On `wasm32-unknown-unknown` a panic is otherwise a bare `unreachable` trap
/// with no message. Call it first thing in your hook; calling it again is
/// harmless.
pub fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            error(&format!("plugin panicked: {info}"));
        }));
    });
}
