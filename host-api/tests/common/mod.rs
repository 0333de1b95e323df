//! Helpers for tests that run real plugin components through the host.
//!
//! Components are built from `examples/` by `make plugins` (or `make test`)
//! into `target/plugins/`; set `PARAPET_PLUGIN_DIR` to use another directory.
#![allow(dead_code, reason = "each test file uses a different subset")]

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use parapet_host::{
    BodyAccess, EngineConfig, Flow, Plugin, PluginEngine, PluginLimits, PluginOptions, Request,
    RequestContext, RequestSession, Response,
};

/// Runs a session's hook chain (a future) to completion on this thread.
pub trait Blocking: std::future::Future + Sized {
    /// Blocks until the future is done; a hook's yields resume at once.
    fn block(self) -> Self::Output {
        futures_executor::block_on(self)
    }
}

impl<F: std::future::Future> Blocking for F {}

/// Where built example components are.
pub fn plugin_dir() -> PathBuf {
    std::env::var_os("PARAPET_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins"))
}

/// The bytes of example plugin `name`; fails the test clearly when missing.
pub fn component(name: &str) -> Vec<u8> {
    let path = plugin_dir().join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}. Build the example plugins first: `make plugins`",
            path.display()
        )
    })
}

/// One engine shared by a test binary (default settings, pooling).
pub fn engine() -> Arc<PluginEngine> {
    static ENGINE: OnceLock<Arc<PluginEngine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| Arc::new(PluginEngine::new(EngineConfig::default()).expect("engine")))
        .clone()
}

/// Loads example plugin `name` with a JSON `config`, and a hook deadline
/// generous enough for a loaded 2-core machine (tests of deadlines set their
/// own).
pub fn load(name: &str, config: &str) -> Arc<Plugin> {
    load_with(
        name,
        PluginOptions {
            config: config.into(),
            limits: relaxed_limits(),
            ..Default::default()
        },
    )
}

/// Default limits with a 2 s hook deadline.
pub fn relaxed_limits() -> PluginLimits {
    PluginLimits {
        hook_deadline: std::time::Duration::from_secs(2),
        ..Default::default()
    }
}

/// Loads example plugin `name` with `options`.
pub fn load_with(name: &str, options: PluginOptions) -> Arc<Plugin> {
    let plugin = Plugin::load(&engine(), name, &component(name), options)
        .unwrap_or_else(|e| panic!("loading {name}: {e}"));
    Arc::new(plugin)
}

/// A request context for a viewer at `ip`.
pub fn context_for(ip: &str) -> RequestContext {
    RequestContext {
        request_id: "req-test-1".into(),
        pop_id: "test-pop".into(),
        client_ip: ip.parse::<IpAddr>().expect("ip"),
        geo: None,
        request_body: BodyAccess::Held,
    }
}

/// A new session for a viewer at 192.0.2.10.
pub fn session() -> RequestSession {
    RequestSession::new(context_for("192.0.2.10"))
}

/// A GET request for `path_and_query` on example.com with `headers`.
pub fn get(path_and_query: &str, headers: &[(&str, &str)]) -> Request {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (path_and_query.to_string(), None),
    };
    Request {
        method: "GET".into(),
        scheme: "https".into(),
        authority: "example.com".into(),
        path,
        query,
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        body: None,
    }
}

/// A response with `status` and `headers`, and a small body.
pub fn response(status: u16, headers: &[(&str, &str)]) -> Response {
    Response {
        status,
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        body: Some(b"hello".to_vec()),
    }
}

/// The first value of header `name`.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Loads example plugin `name` with `config`, expecting its `on-launch` to
/// refuse it; returns the plugin's message.
pub fn refusal(name: &str, config: &str) -> String {
    let options = PluginOptions {
        config: config.into(),
        limits: relaxed_limits(),
        ..Default::default()
    };
    match Plugin::load(&engine(), name, &component(name), options) {
        Err(parapet_host::LoadError::Rejected(message)) => message,
        Err(other) => panic!("{name} {config}: expected a refusal by the plugin, got {other}"),
        Ok(_) => panic!("{name} {config}: the configuration was accepted"),
    }
}

/// Runs `request` through `plugin`'s `on-viewer-request` in a fresh session.
pub fn viewer_request(plugin: &Arc<Plugin>, request: Request) -> Flow<Request> {
    session()
        .on_viewer_request(std::slice::from_ref(plugin), request)
        .block()
}

/// The message the chain went on with; fails the test on an answer.
pub fn continued<T>(flow: Flow<T>) -> T {
    match flow {
        Flow::Continue(message) => message,
        Flow::Respond(response) => panic!(
            "expected the chain to go on, got a {} answer {:?}: {}",
            response.status,
            response.headers,
            String::from_utf8_lossy(response.body.as_deref().unwrap_or_default())
        ),
    }
}

/// The answer a plugin gave; fails the test when the chain went on.
pub fn answered<T: std::fmt::Debug>(flow: Flow<T>) -> Response {
    match flow {
        Flow::Respond(response) => response,
        Flow::Continue(message) => panic!("expected an answer, the chain went on with {message:?}"),
    }
}

/// Asserts that example plugin `name` refuses each config with a message
/// containing the expected text.
pub fn assert_refusals(name: &str, cases: &[(&str, &str)]) {
    for (config, expected) in cases {
        let message = refusal(name, config);
        assert!(
            message.contains(expected),
            "config {config}: {message:?} should contain {expected:?}"
        );
    }
}
