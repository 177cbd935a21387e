//! Log lines through the host, and panics made visible.

/// Writes one line at `level`; what the log macros expand to.
#[doc(hidden)]
pub fn write(level: crate::log::Level, message: &str) {
    crate::log::write(level, message);
}

/// Logs a formatted line at trace level: `trace!("read {n} bytes")`.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)*) => {
        $crate::__write($crate::log::Level::Trace, &::std::format!($($arg)*))
    };
}

/// Logs a formatted line at debug level: `debug!("read {n} bytes")`.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => {
        $crate::__write($crate::log::Level::Debug, &::std::format!($($arg)*))
    };
}

/// Logs a formatted line at info level: `info!("{} is {size} bytes", upload.id)`.
///
/// Each line counts against the invocation's `log-lines` budget.
///
/// ```no_run
/// # #[cfg(feature = "processor")] fn f(size: u64) {
/// airlock_plugin_sdk::info!("content is {size} bytes");
/// # }
/// ```
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => {
        $crate::__write($crate::log::Level::Info, &::std::format!($($arg)*))
    };
}

/// Logs a formatted line at warn level: `warn!("cache down: {err:?}")`.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => {
        $crate::__write($crate::log::Level::Warn, &::std::format!($($arg)*))
    };
}

/// Logs a formatted line at error level: `error!("cannot decode: {e}")`.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => {
        $crate::__write($crate::log::Level::Error, &::std::format!($($arg)*))
    };
}

/// Makes panics visible: the panic message and location are logged at error
/// level through the host's log before the plugin aborts.
///
/// On `wasm32-unknown-unknown` a panic is otherwise a bare `unreachable` trap
/// with no message. [`export!`](crate::export) calls it before every hook
/// call; calling it again is harmless.
pub fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            write(
                crate::log::Level::Error,
                &format!("plugin panicked: {info}"),
            );
        }));
    });
}
