//! The Wasmtime host that runs Parapet plugins.
//!
//! A [`PluginEngine`] holds the shared Wasmtime engine (pooling allocator,
//! copy-on-write memory images, epoch deadlines) and the linker with the
//! `parapet:plugin` host interfaces. [`Plugin::load`] checks a component
//! against the world, runs its `on-launch` once and compiles the snapshot
//! taken after it (the launch image, made with Wizer; cached on disk per
//! component, distribution, configuration, KV contents and memory limit),
//! so each request's instance
//! starts from the launched state. For each request, a [`RequestSession`]
//! runs each hook's chain (a slice of plugins; [`Chains`] holds a behavior's
//! four), making one fresh instance per plugin that the request's hooks
//! share, applying each plugin's [`FailurePolicy`], and keeping a
//! [`PluginReceipt`] per plugin.
//!
//! Hooks are async: the session's methods return `Send` futures that run
//! the plugin's code on a Wasmtime fiber, on whichever task polls them (on
//! the edge, the I/O worker serving the request). At each epoch tick (1 ms
//! by default) a running hook yields its thread with
//! `tokio::task::yield_now`, so the worker's other requests and its I/O go
//! first, and the hooks yielded on a thread resume one per executor pass,
//! in turn. A hook's deadline counts the time it ran, summed over those
//! slices, not the time it waited to be polled again; a hook past it traps
//! and gets its plugin's failure policy. Any executor can drive the futures
//! (outside tokio a yield is a plain wake-up). Host interfaces stay
//! synchronous: none waits on I/O. `on-launch` runs once per launch image,
//! on the loading thread ([`Plugin::load`] blocks), under its launch
//! deadline and without yielding.
//!
//! Each distribution's plugin run time (instantiations and hooks, yields
//! excluded) is counted in `parapet_plugin_cpu_microseconds_total`, and
//! each plugin's receipts are summed until [`Plugin::take_cost`] reads them
//! (the edge reports them to the controller).

mod bindings;
mod budget;
mod cost;
mod engine;
mod failure;
mod geo;
mod hooks;
mod image;
mod kv;
mod limits;
mod load;
mod metrics;
mod output;
mod plugin;
mod receipt;
mod session;
mod state;

pub use bindings::{
    CacheOverride, Geo, Hook, Request, RequestAction, Response, ResponseAction, WIT_PACKAGE,
};
pub use cost::PluginCost;
pub use engine::{Allocator, EngineConfig, EngineError, PluginEngine};
pub use geo::{GeoDb, GeoError};
pub use kv::{KvError, KvStore};
pub use limits::{LimitExceeded, PluginLimits, MAX_CORE_INSTANCES, MAX_MEMORIES, MAX_TABLES};
pub use load::{content_hash, LoadError};
pub use plugin::{FailurePolicy, Plugin, PluginOptions};
pub use receipt::PluginReceipt;
pub use session::{BodyAccess, Chains, Flow, OriginResponseFlow, RequestSession};
pub use state::RequestContext;
