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
pub const WIT_PACKAGE: &str = "parapet:plugin@0.1.1";

/// The interfaces of the package, by name.
const INTERFACES: [&str; 9] = [
    "types", "log", "config", "kv", "client", "context", "clock", "random", "metrics",
];

/// Package versions whose components this host runs: every release of the
/// 0.1 line up to its own (later ones are additive, so Wasmtime's
/// semver-aware linker gives a 0.1.0 import the 0.1.1 definitions).
const COMPATIBLE_VERSIONS: [&str; 2] = ["0.1.0", "0.1.1"];

/// Whether a plugin may import `name` (a component import name such as
/// `parapet:plugin/log@0.1.0`): only this package's interfaces, at a
/// version this host runs.
pub(crate) fn allowed_import(name: &str) -> bool {
    let Some((interface, version)) = name
        .strip_prefix("parapet:plugin/")
        .and_then(|rest| rest.split_once('@'))
    else {
        return false;
    };
    INTERFACES.contains(&interface) && COMPATIBLE_VERSIONS.contains(&version)
}

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

#[cfg(test)]
mod tests {
    use super::allowed_import;

    #[test]
    fn imports_of_this_package_at_compatible_versions_only() {
        assert!(allowed_import("parapet:plugin/log@0.1.0"));
        assert!(allowed_import("parapet:plugin/context@0.1.1"));
        assert!(!allowed_import("parapet:plugin/context@0.2.0"));
        assert!(!allowed_import("parapet:plugin/context@0.1.2"));
        assert!(!allowed_import("parapet:plugin/context"));
        assert!(!allowed_import("parapet:plugin/sockets@0.1.0"));
        assert!(!allowed_import("wasi:cli/environment@0.2.0"));
    }
}
