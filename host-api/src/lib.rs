//! The Wasmtime host that runs Parapet plugins.
//!
//! A [`PluginEngine`] holds the shared Wasmtime engine (pooling allocator,
//! copy-on-write memory images, epoch deadlines) and the linker with the
//! `parapet:plugin` host interfaces. [`Plugin::load`] checks a component
//! against the world, compiles it (or loads the cached artifact) and runs its
//! `on-launch`. For each request, a [`RequestSession`] runs each hook's chain
//! (a slice of plugins; [`Chains`] holds a behavior's four), making one fresh
//! instance per plugin that the request's hooks share, applying each plugin's
//! [`FailurePolicy`], and keeping a [`PluginReceipt`] per plugin.
//!
//! Every call is synchronous: no host interface waits on I/O, so hooks run
//! inline on the caller's thread under their epoch deadline.

mod bindings;
mod engine;
mod failure;
mod geo;
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
    CacheOverride, Geo, Hook, Request, RequestAction, Response, ResponseAction, ALLOWED_IMPORTS,
    WIT_PACKAGE,
};
pub use engine::{Allocator, EngineConfig, EngineError, PluginEngine};
pub use geo::{GeoDb, GeoError};
pub use kv::{KvError, KvStore};
pub use limits::{LimitExceeded, PluginLimits, MAX_CORE_INSTANCES, MAX_MEMORIES, MAX_TABLES};
pub use load::{content_hash, LoadError};
pub use plugin::{FailurePolicy, Plugin, PluginOptions};
pub use receipt::PluginReceipt;
pub use session::{Chains, Flow, OriginResponseFlow, RequestSession};
pub use state::RequestContext;
