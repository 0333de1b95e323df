//! Write Parapet edge plugins in Rust.
//!
//! A plugin is a type that implements [`Plugin`], exported with
//! [`export_plugin!`] and built into a WebAssembly component with
//! `parapet plugin build`. The edge makes one fresh instance of the plugin for
//! every request: [`Plugin::new`] runs lazily on the first hook of a request,
//! and the same value serves the request's later hooks, so a plugin can carry
//! state from `on_viewer_request` to `on_viewer_response`. Nothing survives to
//! the next request.
//!
//! ```no_run
//! use parapet_sdk::{export_plugin, log, Plugin, Request, RequestAction, Response};
//!
//! /// Answers `/ping` itself and tags every other request.
//! struct Ping {
//!     tag: String,
//! }
//!
//! impl Plugin for Ping {
//!     fn new(config: &str) -> Result<Self, String> {
//!         let tag = if config.trim() == "{}" { "pong".to_string() } else { config.to_string() };
//!         Ok(Ping { tag })
//!     }
//!
//!     fn on_viewer_request(&mut self, mut request: Request) -> RequestAction {
//!         if request.path == "/ping" {
//!             log::info("answering /ping");
//!             return RequestAction::Respond(Response::new(200).with_body(self.tag.clone()));
//!         }
//!         request.set_header("x-tag", &self.tag);
//!         RequestAction::Continue(request)
//!     }
//! }
//!
//! export_plugin!(Ping);
//! ```
//!
//! The crate must be a `cdylib`:
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib"]
//! ```

mod http;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "plugin",
        pub_export_macro: true,
        default_bindings_module: "parapet_sdk::bindings",
    });
}

pub use bindings::parapet::plugin::types::{
    CacheOverride, Hook, OriginResponseOutcome, Request, RequestAction, Response, ResponseAction,
};

use bindings::parapet::plugin as host;

/// A Parapet plugin. Every hook has a default that passes the message on
/// unchanged, so a plugin implements only the hooks it needs.
pub trait Plugin: Sized + 'static {
    /// Builds the plugin from its JSON configuration (`{}` when none is set).
    ///
    /// Runs once at launch to validate the configuration (an `Err` refuses the
    /// plugin with that message) and then once per request, on its first hook.
    fn new(config: &str) -> Result<Self, String>;

    /// Before the cache lookup, with the viewer's request.
    fn on_viewer_request(&mut self, request: Request) -> RequestAction {
        RequestAction::Continue(request)
    }

    /// Before a cache miss goes upstream.
    fn on_origin_request(&mut self, request: Request) -> RequestAction {
        RequestAction::Continue(request)
    }

    /// When the upstream answered, before the response is stored. Set fields
    /// of `cache` to override how the edge caches this response.
    fn on_origin_response(
        &mut self,
        request: &Request,
        response: Response,
        cache: &mut CacheOverride,
    ) -> ResponseAction {
        let _ = (request, cache);
        ResponseAction::Continue(response)
    }

    /// Before the response goes to the viewer, cache hits included.
    fn on_viewer_response(&mut self, request: &Request, response: Response) -> ResponseAction {
        let _ = request;
        ResponseAction::Continue(response)
    }
}

/// Log lines, tagged by the edge with the plugin, request id and hook.
pub mod log {
    use super::host::log::{write, Level};

    /// Logs at trace level.
    pub fn trace(message: &str) {
        write(Level::Trace, message);
    }
    /// Logs at debug level.
    pub fn debug(message: &str) {
        write(Level::Debug, message);
    }
    /// Logs at info level.
    pub fn info(message: &str) {
        write(Level::Info, message);
    }
    /// Logs at warn level.
    pub fn warn(message: &str) {
        write(Level::Warn, message);
    }
    /// Logs at error level.
    pub fn error(message: &str) {
        write(Level::Error, message);
    }
}

/// The plugin's JSON configuration, as given to [`Plugin::new`].
pub fn config() -> String {
    host::config::get()
}

/// The customer's read-only key-value store.
pub mod kv {
    /// The value stored under `key`, if any.
    pub fn get(key: &str) -> Option<Vec<u8>> {
        super::host::kv::get(key)
    }
}

/// The viewer: address and location.
pub mod client {
    pub use super::host::client::Geo;

    /// The viewer's IP address as text.
    pub fn ip() -> String {
        super::host::client::ip()
    }

    /// The viewer's location, when the edge has a GeoIP database that knows it.
    pub fn location() -> Option<Geo> {
        super::host::client::location()
    }
}

/// Facts about the request being handled.
pub mod context {
    pub use super::Hook;

    /// The request id, also sent to the viewer in `x-request-id`.
    pub fn request_id() -> String {
        super::host::context::request_id()
    }
    /// The point of presence running the plugin.
    pub fn pop_id() -> String {
        super::host::context::pop_id()
    }
    /// The hook being run.
    pub fn current_hook() -> Hook {
        super::host::context::current_hook()
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> u64 {
    host::clock::now_millis()
}

/// Cryptographically secure randomness from the host.
pub mod random {
    /// `len` random bytes (at most 1024).
    pub fn bytes(len: u32) -> Vec<u8> {
        super::host::random::bytes(len)
    }
    /// A random 64-bit number.
    pub fn next_u64() -> u64 {
        super::host::random::next_u64()
    }
}

/// Plugin metrics, exported by the edge with a `plugin` label.
pub mod metrics {
    /// Adds `value` to the counter `name`.
    pub fn counter_add(name: &str, value: u64) {
        super::host::metrics::counter_add(name, value);
    }
    /// Records `value` in the histogram `name`.
    pub fn histogram_record(name: &str, value: f64) {
        super::host::metrics::histogram_record(name, value);
    }
}

/// Exports a [`Plugin`] type as the component's hooks.
///
/// Use it once, at the crate root: `export_plugin!(MyPlugin);`.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        const _: () = {
            ::std::thread_local! {
                static PARAPET_PLUGIN: ::std::cell::RefCell<::std::option::Option<$plugin>> =
                    const { ::std::cell::RefCell::new(::std::option::Option::None) };
            }

            /// Runs `f` on this instance's plugin value, made on first use.
            fn with_plugin<R>(f: impl FnOnce(&mut $plugin) -> R) -> R {
                PARAPET_PLUGIN.with(|cell| {
                    let mut slot = cell.borrow_mut();
                    if slot.is_none() {
                        let config = $crate::config();
                        match <$plugin as $crate::Plugin>::new(&config) {
                            Ok(plugin) => *slot = Some(plugin),
                            // on-launch accepted this configuration, so this
                            // cannot happen unless `new` is not deterministic.
                            Err(message) => panic!("plugin configuration refused: {message}"),
                        }
                    }
                    match slot.as_mut() {
                        Some(plugin) => f(plugin),
                        None => unreachable!("plugin value was just made"),
                    }
                })
            }

            struct ParapetGuest;

            impl $crate::bindings::Guest for ParapetGuest {
                fn on_launch(config: String) -> Result<(), String> {
                    <$plugin as $crate::Plugin>::new(&config).map(drop)
                }

                fn on_viewer_request(request: $crate::Request) -> $crate::RequestAction {
                    with_plugin(|p| p.on_viewer_request(request))
                }

                fn on_origin_request(request: $crate::Request) -> $crate::RequestAction {
                    with_plugin(|p| p.on_origin_request(request))
                }

                fn on_origin_response(
                    request: $crate::Request,
                    response: $crate::Response,
                ) -> $crate::OriginResponseOutcome {
                    let mut cache = $crate::CacheOverride {
                        cacheable: None,
                        ttl_seconds: None,
                    };
                    let action =
                        with_plugin(|p| p.on_origin_response(&request, response, &mut cache));
                    $crate::OriginResponseOutcome { action, cache }
                }

                fn on_viewer_response(
                    request: $crate::Request,
                    response: $crate::Response,
                ) -> $crate::ResponseAction {
                    with_plugin(|p| p.on_viewer_response(&request, response))
                }
            }

    $crate::bindings::export!(ParapetGuest with_types_in $crate::bindings);
        };
    };
}
