//! Guest SDK for Airlock plugins.
//!
//! A plugin is a `cdylib` crate built for `wasm32-unknown-unknown` and turned
//! into a WebAssembly component (`airlock plugin build` does both). It
//! depends on this crate with exactly one feature, naming the WIT world it
//! targets:
//!
//! - `processor`: implement [`Guest`] (`process`) to accept, reject or replace
//!   an upload before it is stored;
//! - `extension`: implement [`Guest`] (`on_stored`) to return derived artifacts
//!   after the upload is stored.
//!
//! The WIT (`airlock:plugin`, in this crate's `wit/`) is the contract; this
//! crate adds what a plugin author would otherwise write each time:
//! [`export!`] (which installs a panic hook that logs the message),
//! [`ContentReader`] and [`read_all`] over the upload's bytes, log macros
//! ([`info!`], [`warn!`], …), the [`Metadata`] builder, typed cache helpers
//! ([`get_json`], [`set_json`]) and [`get_or_compute`], the stampede-safe
//! way to rebuild one cache entry.
//!
//! ```no_run
//! # #[cfg(feature = "processor")] mod plugin {
//! use airlock_plugin_sdk::{Content, Guest, Metadata, PluginError, Upload, Verdict, info};
//!
//! struct Plugin;
//!
//! impl Guest for Plugin {
//!     fn process(upload: Upload, content: &Content) -> Result<Verdict, PluginError> {
//!         info!("{} is {} bytes", upload.filename, content.size());
//!         Ok(Metadata::new().with("seen-by", "me").accept())
//!     }
//! }
//!
//! airlock_plugin_sdk::export!(Plugin);
//! # }
//! ```

#![warn(missing_docs)]

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
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "export_bindings",
        default_bindings_module: "airlock_plugin_sdk::bindings",
    });

    #[cfg(all(feature = "extension", not(feature = "processor")))]
    wit_bindgen::generate!({
        world: "extension",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "export_bindings",
        default_bindings_module: "airlock_plugin_sdk::bindings",
    });
}

#[cfg(all(
    feature = "allocator",
    target_arch = "wasm32",
    not(target_feature = "atomics")
))]
mod alloc;
mod cached;
mod content;
mod logging;
mod metadata;

/// The host's key-value cache (`airlock:plugin/cache`), namespaced per plugin.
pub use bindings::airlock::plugin::cache;
/// The host's log (`airlock:plugin/log`); the macros [`info!`], [`warn!`], …
/// format and write one line.
pub use bindings::airlock::plugin::log;
pub use bindings::airlock::plugin::types::{Content, PluginError, Upload};
#[cfg(all(feature = "extension", not(feature = "processor")))]
pub use bindings::{airlock::plugin::types::Derived, exports::airlock::plugin::post_store::Guest};
#[cfg(feature = "processor")]
pub use bindings::{
    airlock::plugin::types::{Replacement, Verdict},
    exports::airlock::plugin::pre_store::Guest,
};
pub use cached::{SingleFlight, get_or_compute};
#[cfg(feature = "json")]
pub use cached::{get_json, set_json};
pub use content::{CHUNK_SIZE, ContentReader, read_all};
pub use logging::install_panic_hook;
#[doc(hidden)]
pub use logging::write as __write;
pub use metadata::Metadata;

impl PluginError {
    /// A plugin error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        PluginError {
            message: message.into(),
        }
    }
}

impl From<std::io::Error> for PluginError {
    fn from(err: std::io::Error) -> Self {
        PluginError::new(err.to_string())
    }
}

/// Exports a type implementing [`Guest`] as the plugin: `export!(MyPlugin);`.
///
/// Every call first installs [`install_panic_hook`], so a panic reaches the
/// host's log with its message instead of a bare `unreachable` trap.
#[cfg(feature = "processor")]
#[macro_export]
macro_rules! export {
    ($plugin:ty) => {
        $crate::__export_hook!($plugin, process, $crate::Verdict);
    };
}

/// Exports a type implementing [`Guest`] as the plugin: `export!(MyPlugin);`.
///
/// Every call first installs [`install_panic_hook`], so a panic reaches the
/// host's log with its message instead of a bare `unreachable` trap.
#[cfg(all(feature = "extension", not(feature = "processor")))]
#[macro_export]
macro_rules! export {
    ($plugin:ty) => {
        $crate::__export_hook!($plugin, on_stored, ::std::vec::Vec<$crate::Derived>);
    };
}

/// [`export!`] for the world's hook `$method`, whose success is `$output`.
#[doc(hidden)]
#[macro_export]
#[rustfmt::skip] // rustfmt would pull the `with_types_in` line out of its block
macro_rules! __export_hook {
    ($plugin:ty, $method:ident, $output:ty) => {
        const _: () = {
            struct AirlockExport;
            impl $crate::Guest for AirlockExport {
                fn $method(
                    upload: $crate::Upload,
                    content: &$crate::Content,
                ) -> ::core::result::Result<$output, $crate::PluginError> {
                    $crate::install_panic_hook();
                    <$plugin as $crate::Guest>::$method(upload, content)
                }
            }
            $crate::bindings::export_bindings!(AirlockExport with_types_in $crate::bindings);
        };
    };
}
