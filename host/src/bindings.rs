//! The one place the WIT contract is turned into Rust: every host-side type
//! and trait of `airlock:plugin` comes from here.

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "host",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "airlock:plugin/types.content": crate::runtime::ContentHandle,
    },
});

pub use self::airlock::plugin::{cache, log, types};
