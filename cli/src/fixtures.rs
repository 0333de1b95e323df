//! `parapet plugin test`: runs a plugin's hooks against the cases of its
//! `fixtures.toml` with the edge's own host (launch image, limits, output
//! checks), without an edge, and reports each case.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use parapet_host::{
    Allocator, BodyAccess, EngineConfig, Flow, KvStore, Plugin, PluginEngine, PluginOptions,
    Request, RequestContext, RequestSession, Response,
};
use serde::Deserialize;

/// The fixture file's name, in the plugin crate's directory.
pub const FIXTURES: &str = "fixtures.toml";

/// A plugin's fixture file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixtures {
    /// The plugin's configuration for every case that sets none.
    #[serde(default)]
    config: Option<toml::Table>,
    /// The customer's key-value store, as the plugin sees it.
    #[serde(default)]
    kv: BTreeMap<String, String>,
    #[serde(rename = "case", default)]
    cases: Vec<Case>,
}

impl Fixtures {
    /// Refuses a file that cannot mean what it says.
    fn check(&self) -> Result<()> {
        if self.cases.is_empty() {
            bail!("no [[case]]");
        }
        if let Some(case) = self.cases.iter().find(|c| {
            c.response
                .as_ref()
                .is_some_and(|r| r.withheld && r.body.is_some())
        }) {
            bail!(
                "case `{}` sets both `withheld` and `body` on its response: a withheld body is not given to the plugin",
                case.name
            );
        }
        Ok(())
    }
}

/// One hook call and what it must return.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default)]
    hook: HookName,
    /// This case's configuration, instead of the file's.
    #[serde(default)]
    config: Option<toml::Table>,
    #[serde(default)]
    request: RequestSpec,
    /// The response given to response hooks.
    #[serde(default)]
    response: Option<ResponseSpec>,
    expect: Expect,
}

/// The hooks, as written in fixtures.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum HookName {
    #[default]
    ViewerRequest,
    OriginRequest,
    OriginResponse,
    ViewerResponse,
}

/// A request; every field has a default (`GET https://example.com/`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RequestSpec {
    method: String,
    scheme: String,
    authority: String,
    path: String,
    query: Option<String>,
    headers: BTreeMap<String, String>,
    body: Option<String>,
}

impl Default for RequestSpec {
    fn default() -> Self {
        RequestSpec {
            method: "GET".into(),
            scheme: "https".into(),
            authority: "example.com".into(),
            path: "/".into(),
            query: None,
            headers: BTreeMap::new(),
            body: None,
        }
    }
}

/// A response; `200` with no headers and no body by default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponseSpec {
    #[serde(default = "ok")]
    status: u16,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<String>,
    /// The response has a body the plugin does not get (larger than its
    /// limit, or streamed): `body` must be unset.
    #[serde(default)]
    withheld: bool,
}

fn ok() -> u16 {
    200
}

/// What a hook must return; unset fields are not checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    /// `continue` or `respond`.
    action: Option<Action>,
    /// The answer's status (`respond`, or a continued response).
    status: Option<u16>,
    /// A continued request's path and query.
    path: Option<String>,
    query: Option<String>,
    /// Headers that must be present with these values.
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// Headers that must be absent.
    #[serde(default)]
    absent: Vec<String>,
    /// The body, as text.
    body: Option<String>,
    /// `on-origin-response`'s cache override.
    ttl_seconds: Option<u32>,
    cacheable: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Action {
    Continue,
    Respond,
}

/// How a run of one plugin's fixtures went.
pub struct Outcome {
    pub passed: usize,
    pub failed: usize,
}

/// The `config` of the `fixtures.toml` in `crate_dir`, if it has one.
pub fn config_of(crate_dir: &Path) -> Result<Option<toml::Table>> {
    let path = crate_dir.join(FIXTURES);
    if !path.exists() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let file: Fixtures = toml::from_str(&text).with_context(|| format!("in {}", path.display()))?;
    Ok(file.config)
}

/// Runs the cases of `fixtures` (a `fixtures.toml`) against the component
/// `bytes`, printing one line per case.
pub fn run(name: &str, bytes: &[u8], fixtures: &Path) -> Result<Outcome> {
    let text = std::fs::read_to_string(fixtures)
        .with_context(|| format!("reading {}", fixtures.display()))?;
    let file: Fixtures =
        toml::from_str(&text).with_context(|| format!("in {}", fixtures.display()))?;
    file.check()
        .with_context(|| format!("in {}", fixtures.display()))?;
    let engine = Arc::new(PluginEngine::new(EngineConfig {
        allocator: Allocator::OnDemand,
        ..EngineConfig::default()
    })?);
    let kv = Arc::new(KvStore::from_entries(file.kv.clone()));
    let mut loaded: HashMap<String, Arc<Plugin>> = HashMap::new();
    let mut outcome = Outcome {
        passed: 0,
        failed: 0,
    };
    println!(
        "{name}: {} cases from {}",
        file.cases.len(),
        fixtures.display()
    );
    for (index, case) in file.cases.iter().enumerate() {
        let config = serde_json::to_string(
            case.config
                .as_ref()
                .or(file.config.as_ref())
                .unwrap_or(&toml::Table::new()),
        )?;
        let plugin = match loaded.get(&config) {
            Some(plugin) => plugin.clone(),
            None => {
                let options = PluginOptions {
                    config: config.clone(),
                    kv: kv.clone(),
                    ..PluginOptions::default()
                };
                let plugin = Plugin::load(&engine, name, bytes, options)
                    .map(Arc::new)
                    .with_context(|| format!("case {:?}: loading with {config}", case.name))?;
                loaded.insert(config, plugin.clone());
                plugin
            }
        };
        let (verdict, micros) = run_case(&plugin, case, index);
        match verdict {
            Ok(()) => {
                outcome.passed += 1;
                println!("  ok    {} ({micros} µs)", case.name);
            }
            Err(why) => {
                outcome.failed += 1;
                println!("  FAIL  {}: {why}", case.name);
            }
        }
    }
    Ok(outcome)
}

/// Runs one case; returns the verdict and the plugin's time in µs
/// (instantiation and hook).
fn run_case(plugin: &Arc<Plugin>, case: &Case, index: usize) -> (Result<(), String>, u128) {
    let mut session = RequestSession::new(RequestContext {
        request_id: format!("fixture-{}", index + 1),
        pop_id: "local".into(),
        client_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        geo: None,
        request_body: BodyAccess::Held,
    });
    let chain = std::slice::from_ref(plugin);
    let request = request(&case.request);
    let access = match &case.response {
        Some(spec) if spec.withheld => BodyAccess::Streamed,
        _ => BodyAccess::Held,
    };
    let response = || {
        let spec = case.response.as_ref();
        Response {
            status: spec.map_or(200, |r| r.status),
            headers: spec.map_or_else(Vec::new, |r| pairs(&r.headers)),
            body: spec.and_then(|r| r.body.clone()).map(String::into_bytes),
        }
    };
    let run = futures_executor::block_on(async {
        match case.hook {
            HookName::ViewerRequest => {
                Ran::Request(session.on_viewer_request(chain, request).await, None)
            }
            HookName::OriginRequest => {
                Ran::Request(session.on_origin_request(chain, request).await, None)
            }
            HookName::OriginResponse => {
                let flow = session
                    .on_origin_response(chain, &request, response(), access)
                    .await;
                Ran::Response(
                    flow.flow,
                    Some((flow.cache.cacheable, flow.cache.ttl_seconds)),
                )
            }
            HookName::ViewerResponse => Ran::Response(
                session
                    .on_viewer_response(chain, &request, response(), access)
                    .await,
                None,
            ),
        }
    });
    let receipts = session.receipts();
    let micros = receipts
        .iter()
        .map(|r| (r.instantiate + r.hook_time()).as_micros())
        .sum();
    let mut verdict = check(&case.expect, &run);
    if let (Err(why), Some(trap)) = (&mut verdict, receipts.iter().find_map(|r| r.trap.clone())) {
        why.push_str(&format!(" (the plugin failed: {trap})"));
    }
    (verdict, micros)
}

/// What a hook returned.
enum Ran {
    Request(Flow<Request>, Option<(Option<bool>, Option<u32>)>),
    Response(Flow<Response>, Option<(Option<bool>, Option<u32>)>),
}

fn pairs(headers: &BTreeMap<String, String>) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
        .collect()
}

fn request(spec: &RequestSpec) -> Request {
    Request {
        method: spec.method.clone(),
        scheme: spec.scheme.clone(),
        authority: spec.authority.clone(),
        path: spec.path.clone(),
        query: spec.query.clone(),
        headers: pairs(&spec.headers),
        body: spec.body.clone().map(String::into_bytes),
    }
}

/// Compares what a hook returned with what the case expects.
fn check(expect: &Expect, ran: &Ran) -> Result<(), String> {
    let (action, status, headers, body, path_query, cache) = match ran {
        Ran::Request(Flow::Continue(r), cache) => (
            Action::Continue,
            None,
            &r.headers,
            &r.body,
            Some((&r.path, &r.query)),
            cache,
        ),
        Ran::Request(Flow::Respond(r), cache) | Ran::Response(Flow::Respond(r), cache) => (
            Action::Respond,
            Some(r.status),
            &r.headers,
            &r.body,
            None,
            cache,
        ),
        Ran::Response(Flow::Continue(r), cache) => (
            Action::Continue,
            Some(r.status),
            &r.headers,
            &r.body,
            None,
            cache,
        ),
    };
    let mismatch = |what: &str, want: &dyn std::fmt::Debug, got: &dyn std::fmt::Debug| {
        Err(format!("expected {what} {want:?}, got {got:?}"))
    };
    if let Some(want) = expect.action {
        if want != action {
            return mismatch("action", &want, &action);
        }
    }
    if let Some(want) = expect.status {
        if status != Some(want) {
            return mismatch("status", &want, &status);
        }
    }
    if expect.path.is_some() || expect.query.is_some() {
        let Some((path, query)) = path_query else {
            return Err("expected a continued request, got a response".into());
        };
        if let Some(want) = &expect.path {
            if want != path {
                return mismatch("path", want, path);
            }
        }
        if let Some(want) = &expect.query {
            if Some(want) != query.as_ref() {
                return mismatch("query", want, query);
            }
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    for (name, want) in &expect.headers {
        if header(name) != Some(want.as_str()) {
            return mismatch(&format!("header {name}"), want, &header(name));
        }
    }
    for name in &expect.absent {
        if let Some(value) = header(name) {
            return Err(format!("expected no header {name}, got {value:?}"));
        }
    }
    if let Some(want) = &expect.body {
        let got = body.as_deref().map(String::from_utf8_lossy);
        if got.as_deref() != Some(want.as_str()) {
            return mismatch("body", want, &got);
        }
    }
    let (cacheable, ttl) = cache.unwrap_or_default();
    if expect.ttl_seconds.is_some() && expect.ttl_seconds != ttl {
        return mismatch("ttl_seconds", &expect.ttl_seconds, &ttl);
    }
    if expect.cacheable.is_some() && expect.cacheable != cacheable {
        return mismatch("cacheable", &expect.cacheable, &cacheable);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Fixtures;

    fn check(text: &str) -> String {
        let file: Fixtures = toml::from_str(text).expect("parses");
        file.check()
            .map_or_else(|e| e.to_string(), |()| "ok".into())
    }

    #[test]
    fn a_withheld_response_cannot_have_a_body() {
        let case = |response: &str| {
            format!("[[case]]\nname = \"c\"\nhook = \"origin-response\"\nresponse = {response}\nexpect = {{}}\n")
        };
        assert_eq!(check(&case("{ withheld = true }")), "ok");
        assert_eq!(
            check(&case(r#"{ withheld = true, body = "x" }"#)),
            "case `c` sets both `withheld` and `body` on its response: a withheld body is not given to the plugin"
        );
        assert_eq!(check("config = {}"), "no [[case]]");
    }
}
