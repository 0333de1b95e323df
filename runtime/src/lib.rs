//! `parapet-edge`, the Parapet PoP server: a caching reverse proxy that runs
//! the distributions' Wasm plugin chains (see ARCHITECTURE.md).
//!
//! Built so far: the configuration model and its validation, and behavior
//! path patterns. Serving, caching and the admin API are being built
//! (issue 3).

pub mod config;
pub mod pattern;
