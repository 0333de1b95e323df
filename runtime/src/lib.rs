//! `parapet-edge`, the Parapet PoP server: a caching reverse proxy that runs
//! the distributions' Wasm plugin chains (see ARCHITECTURE.md).
//!
//! Built so far: the configuration model and its validation, behavior path
//! patterns, routing (distribution by host, behavior by path, plugin chains
//! loaded) and cache keys. Serving, caching and the admin API are being
//! built (issue 3).

pub mod cache_key;
pub mod config;
pub mod guards;
pub mod pattern;
pub mod routing;
