//! A plugin that misbehaves on purpose, for the host's sandbox tests. Its
//! configuration `{"mode": "..."}` picks what `on-viewer-request` does:
//!
//! - `loop`: spins forever (the deadline must stop it);
//! - `memory-bomb`: allocates without end (the memory cap must stop it);
//! - `recursion`: recurses without end (the stack limit must stop it);
//! - `panic`: panics;
//! - `reject`: refuses its configuration in `on-launch`;
//! - `bad-header`: returns a header value with a line break (and, in
//!   `on-origin-response`, a cache override that must not take effect);
//! - `bad-path`: returns a request line that would smuggle a header;
//! - `cache`: overrides the TTL to 123 s in `on-origin-response`;
//! - `marker`: reports in `x-marker-seen` the marker an earlier request left
//!   in a global, in the plugin value and on the heap (`g|f|h`, all empty on
//!   a fresh instance), then leaves the request's path in all three;
//! - `probe` (default): reports what the host interfaces return, in
//!   `x-probe-*` request headers (`x-probe-launch-kv`: the KV `greeting` as
//!   read at launch; `x-probe-body-withheld`: whether the request's body
//!   was withheld), and counts calls in a global. Response hooks report
//!   what they got of the body in `x-probe-origin-body` and
//!   `x-probe-viewer-body`: its length, `withheld` or `none`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use parapet_sdk::{
    client, context, export_plugin, kv, log, metrics, random, CacheOverride, Plugin, Request,
    RequestAction, Response, ResponseAction,
};
use serde::Deserialize;

/// Hooks run on this instance so far: must be 1 on every request's first hook.
static CALLS: AtomicU32 = AtomicU32::new(0);

/// `marker` mode: the marker left in a global.
static MARKER: Mutex<String> = Mutex::new(String::new());
/// `marker` mode: the marker left on the heap, reached through a leaked box.
static LEAKED: Mutex<Option<&'static str>> = Mutex::new(None);

#[derive(Deserialize)]
struct Config {
    #[serde(default = "probe")]
    mode: String,
}

fn probe() -> String {
    "probe".into()
}

struct Testbed {
    mode: String,
    seen_path: Option<String>,
    /// `marker` mode: the marker left in the plugin value.
    marker: String,
    /// The KV store's `greeting` as `new` read it, at launch.
    launch_greeting: String,
}

/// Recursion whose frames live on the wasm stack (no shadow-stack locals),
/// so it ends in the engine's stack-overflow trap.
#[inline(never)]
#[allow(
    unconditional_recursion,
    reason = "unbounded recursion is what this mode tests"
)]
fn recurse(depth: u64) -> u64 {
    recurse(std::hint::black_box(depth + 1)).wrapping_mul(depth | 1)
}

impl Plugin for Testbed {
    fn new(config: &str) -> Result<Self, String> {
        let config: Config = serde_json::from_str(config).map_err(|e| e.to_string())?;
        if config.mode == "reject" {
            return Err("mode `reject` refuses every configuration".into());
        }
        Ok(Testbed {
            mode: config.mode,
            seen_path: None,
            marker: String::new(),
            launch_greeting: kv::get("greeting")
                .map_or_else(|| "-".into(), |v| String::from_utf8_lossy(&v).into_owned()),
        })
    }

    fn on_viewer_request(&mut self, mut request: Request) -> RequestAction {
        let calls = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
        match self.mode.as_str() {
            "loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "memory-bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "recursion" => {
                let n = recurse(0);
                request.set_header("x-never", &n.to_string());
            }
            "panic" => panic!("testbed asked to panic"),
            "bad-header" => request.set_header("x-bad", "a\r\nset-cookie: injected=1"),
            "bad-path" => request.path = "/a HTTP/1.1\r\nHost: evil".into(),
            "marker" => {
                let mut global = MARKER.lock().unwrap_or_else(|e| e.into_inner());
                let mut leaked = LEAKED.lock().unwrap_or_else(|e| e.into_inner());
                let seen = format!("{}|{}|{}", global, self.marker, leaked.unwrap_or(""));
                request.set_header("x-marker-seen", &seen);
                global.clone_from(&request.path);
                self.marker.clone_from(&request.path);
                *leaked = Some(Box::leak(request.path.clone().into_boxed_str()));
            }
            _ => {
                log::info("probe running");
                metrics::counter_add("probes", 1);
                self.seen_path = Some(request.path.clone());
                let geo = client::location();
                request.set_header("x-probe-calls", &calls.to_string());
                request.set_header("x-probe-request-id", &context::request_id());
                request.set_header("x-probe-pop", &context::pop_id());
                request.set_header("x-probe-hook", &format!("{:?}", context::current_hook()));
                request.set_header("x-probe-ip", &client::ip());
                request.set_header(
                    "x-probe-country",
                    geo.as_ref()
                        .and_then(|g| g.country.as_deref())
                        .unwrap_or("-"),
                );
                request.set_header(
                    "x-probe-city",
                    geo.as_ref().and_then(|g| g.city.as_deref()).unwrap_or("-"),
                );
                let kv = kv::get("greeting").map(|v| String::from_utf8_lossy(&v).into_owned());
                request.set_header("x-probe-kv", kv.as_deref().unwrap_or("-"));
                request.set_header("x-probe-launch-kv", &self.launch_greeting);
                request.set_header("x-probe-random-len", &random::bytes(16).len().to_string());
                request.set_header("x-probe-now", &parapet_sdk::now_millis().to_string());
                request.set_header(
                    "x-probe-body-len",
                    &request
                        .body
                        .as_ref()
                        .map_or("none".into(), |b| b.len().to_string()),
                );
                request.set_header(
                    "x-probe-body-withheld",
                    &context::body_withheld().to_string(),
                );
                if request.path == "/answer" {
                    return RequestAction::Respond(Response::new(418).with_body("short-circuit"));
                }
            }
        }
        RequestAction::Continue(request)
    }

    fn on_origin_response(
        &mut self,
        _request: &Request,
        mut response: Response,
        cache: &mut CacheOverride,
    ) -> ResponseAction {
        match self.mode.as_str() {
            "cache" => cache.ttl_seconds = Some(123),
            "bad-header" => {
                cache.ttl_seconds = Some(999);
                response.set_header("x-bad", "a\r\nb");
            }
            _ => response.set_header("x-probe-origin-body", &body_seen(&response)),
        }
        ResponseAction::Continue(response)
    }

    fn on_viewer_response(&mut self, _request: &Request, mut response: Response) -> ResponseAction {
        // State kept from on-viewer-request of the same request.
        response.set_header(
            "x-probe-seen-path",
            self.seen_path.as_deref().unwrap_or("-"),
        );
        response.set_header(
            "x-probe-calls",
            &(CALLS.load(Ordering::Relaxed)).to_string(),
        );
        response.set_header("x-probe-viewer-body", &body_seen(&response));
        ResponseAction::Continue(response)
    }
}

/// What a response hook got of the body: its length, `withheld` (too large
/// for the body limit, or streamed), or `none`.
fn body_seen(response: &Response) -> String {
    match (&response.body, context::body_withheld()) {
        (Some(body), _) => body.len().to_string(),
        (None, true) => "withheld".into(),
        (None, false) => "none".into(),
    }
}

export_plugin!(Testbed);
