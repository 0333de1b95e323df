//! Per-store host state and the host side of every `parapet:plugin` import.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::bindings::parapet::plugin::{
    client, clock, config, context, kv, log, metrics, random, types,
};
use crate::bindings::{Geo, Hook, Level};
use crate::budget::RunBudget;
use crate::geo::GeoDb;
use crate::kv::KvStore;
use crate::limits::Limiter;
use crate::session::BodyAccess;

/// Longest log line a plugin may write; longer ones are cut.
const MAX_LOG_BYTES: usize = 4096;
/// Log lines one instance (one request) may write; the rest are dropped.
const MAX_LOG_LINES: u32 = 64;
/// Longest metric name, and most distinct names, a plugin may use.
const MAX_METRIC_NAME_BYTES: usize = 64;
const MAX_METRIC_NAMES: usize = 32;
/// Most random bytes one `random.bytes` call returns.
const MAX_RANDOM_BYTES: u32 = 1024;

/// What the edge knows about the request a plugin runs for.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// Unique id of the request, sent to the viewer in `x-request-id`.
    pub request_id: String,
    /// The point of presence handling it.
    pub pop_id: Arc<str>,
    /// The viewer's address.
    pub client_ip: IpAddr,
    /// GeoIP database for `client.geo`, when the edge has one.
    pub geo: Option<Arc<GeoDb>>,
    /// Whether the request's body is in the request the plugins get or
    /// streams past them.
    pub request_body: BodyAccess,
}

/// What a store knows of its plugin.
#[derive(Debug)]
pub(crate) struct PluginIdentity {
    pub(crate) name: Arc<str>,
    pub(crate) config: Arc<str>,
    pub(crate) kv: Arc<KvStore>,
    /// Metric names the plugin has used, across requests.
    pub(crate) metric_names: Mutex<HashSet<String>>,
}

impl PluginIdentity {
    /// Whether `name` may be recorded: `[a-z0-9_]`, not too long, and one of
    /// the first [`MAX_METRIC_NAMES`] names this plugin used. Keeps a plugin
    /// from growing the edge's metric series without bound.
    fn admits_metric(&self, name: &str) -> bool {
        let well_formed = !name.is_empty()
            && name.len() <= MAX_METRIC_NAME_BYTES
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !well_formed {
            return false;
        }
        let Ok(mut names) = self.metric_names.lock() else {
            return false;
        };
        names.contains(name) || (names.len() < MAX_METRIC_NAMES && names.insert(name.to_string()))
    }
}

/// The data of one plugin instance's store.
pub(crate) struct HostState {
    pub(crate) plugin: Arc<PluginIdentity>,
    pub(crate) request: Arc<RequestContext>,
    pub(crate) hook: Hook,
    /// Whether the hook under way got its message without a body it has.
    pub(crate) body_withheld: bool,
    pub(crate) host_calls: u64,
    pub(crate) log_lines: u32,
    pub(crate) limiter: Limiter,
    /// The budget of the call under way.
    pub(crate) budget: RunBudget,
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl types::Host for HostState {}

impl log::Host for HostState {
    fn write(&mut self, level: Level, message: String) {
        self.host_calls += 1;
        self.log_lines += 1;
        let (plugin, request_id, hook) = (
            &*self.plugin.name,
            &self.request.request_id,
            self.hook.name(),
        );
        if self.log_lines > MAX_LOG_LINES {
            if self.log_lines == MAX_LOG_LINES + 1 {
                tracing::warn!(target: "plugin", plugin, request_id, hook, "log limit of {MAX_LOG_LINES} lines reached; dropping the rest");
            }
            return;
        }
        // Debug formatting escapes line breaks: a plugin cannot forge lines.
        let message = truncate(&message, MAX_LOG_BYTES);
        match level {
            Level::Trace => {
                tracing::trace!(target: "plugin", plugin, request_id, hook, "{message:?}")
            }
            Level::Debug => {
                tracing::debug!(target: "plugin", plugin, request_id, hook, "{message:?}")
            }
            Level::Info => {
                tracing::info!(target: "plugin", plugin, request_id, hook, "{message:?}")
            }
            Level::Warn => {
                tracing::warn!(target: "plugin", plugin, request_id, hook, "{message:?}")
            }
            Level::Error => {
                tracing::error!(target: "plugin", plugin, request_id, hook, "{message:?}")
            }
        }
    }
}

impl config::Host for HostState {
    fn get(&mut self) -> String {
        self.host_calls += 1;
        self.plugin.config.to_string()
    }
}

impl kv::Host for HostState {
    fn get(&mut self, key: String) -> Option<Vec<u8>> {
        self.host_calls += 1;
        self.plugin.kv.get(&key).map(<[u8]>::to_vec)
    }
}

impl client::Host for HostState {
    fn ip(&mut self) -> String {
        self.host_calls += 1;
        self.request.client_ip.to_string()
    }

    fn location(&mut self) -> Option<Geo> {
        self.host_calls += 1;
        self.request.geo.as_ref()?.lookup(self.request.client_ip)
    }
}

impl context::Host for HostState {
    fn request_id(&mut self) -> String {
        self.host_calls += 1;
        self.request.request_id.clone()
    }

    fn pop_id(&mut self) -> String {
        self.host_calls += 1;
        self.request.pop_id.to_string()
    }

    fn current_hook(&mut self) -> Hook {
        self.host_calls += 1;
        self.hook
    }

    fn body_withheld(&mut self) -> bool {
        self.host_calls += 1;
        self.body_withheld
    }
}

impl clock::Host for HostState {
    fn now_millis(&mut self) -> u64 {
        self.host_calls += 1;
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

impl random::Host for HostState {
    fn bytes(&mut self, len: u32) -> wasmtime::Result<Vec<u8>> {
        self.host_calls += 1;
        let mut buf = vec![0; len.min(MAX_RANDOM_BYTES) as usize];
        getrandom::fill(&mut buf)
            .map_err(|e| wasmtime::Error::msg(format!("OS random source failed: {e}")))?;
        Ok(buf)
    }

    fn next_u64(&mut self) -> wasmtime::Result<u64> {
        self.host_calls += 1;
        getrandom::u64().map_err(|e| wasmtime::Error::msg(format!("OS random source failed: {e}")))
    }
}

impl metrics::Host for HostState {
    fn counter_add(&mut self, name: String, value: u64) {
        self.host_calls += 1;
        if self.plugin.admits_metric(&name) {
            ::metrics::counter!("parapet_plugin_counter_total", "plugin" => self.plugin.name.clone(), "name" => name)
                .increment(value);
        }
    }

    fn histogram_record(&mut self, name: String, value: f64) {
        self.host_calls += 1;
        if value.is_finite() && self.plugin.admits_metric(&name) {
            ::metrics::histogram!("parapet_plugin_histogram", "plugin" => self.plugin.name.clone(), "name" => name)
                .record(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_are_checked_and_bounded_per_plugin() {
        let plugin = PluginIdentity {
            name: "p".into(),
            config: "{}".into(),
            kv: Default::default(),
            metric_names: Default::default(),
        };
        assert!(plugin.admits_metric("requests_total"));
        assert!(!plugin.admits_metric("Bad-Name"));
        assert!(!plugin.admits_metric(&"a".repeat(65)));
        for i in 1..MAX_METRIC_NAMES {
            assert!(plugin.admits_metric(&format!("m{i}")));
        }
        assert!(!plugin.admits_metric("one_too_many"));
        assert!(
            plugin.admits_metric("requests_total"),
            "known names keep working"
        );
    }

    #[test]
    fn truncate_keeps_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("héllo", 3), "hé");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
