//! Host-side bindings for the `parapet:plugin` world, generated from `wit/`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    additional_derives: [PartialEq],
    // The OS random source can fail; that fails the plugin, not the host.
    imports: {
        "parapet:plugin/random.bytes": trappable,
        "parapet:plugin/random.next-u64": trappable,
    },
    // Hooks are called with `call_async` so that they can yield at epoch
    // ticks; host interfaces stay synchronous (none waits on I/O).
    exports: { default: async },
});

pub use parapet::plugin::client::Geo;
pub use parapet::plugin::log::Level;
pub use parapet::plugin::types::{CacheOverride, Hook};

/// The WIT package and version this host implements.
pub const WIT_PACKAGE: &str = "parapet:plugin@0.1.0";

/// Interfaces a plugin may import, as component import names.
pub const ALLOWED_IMPORTS: [&str; 9] = [
    "parapet:plugin/types@0.1.0",
    "parapet:plugin/log@0.1.0",
    "parapet:plugin/config@0.1.0",
    "parapet:plugin/kv@0.1.0",
    "parapet:plugin/client@0.1.0",
    "parapet:plugin/context@0.1.0",
    "parapet:plugin/clock@0.1.0",
    "parapet:plugin/random@0.1.0",
    "parapet:plugin/metrics@0.1.0",
];

impl Hook {
    /// The hook's name as written in WIT (`on-viewer-request`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Hook::OnLaunch => "on-launch",
            Hook::OnViewerRequest => "on-viewer-request",
            Hook::OnOriginRequest => "on-origin-request",
            Hook::OnOriginResponse => "on-origin-response",
            Hook::OnViewerResponse => "on-viewer-response",
        }
    }
}
