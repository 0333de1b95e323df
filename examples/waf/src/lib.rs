//! A web application firewall for the edge.
//!
//! In `on-viewer-request`, the plugin looks at the path, the query, every
//! header value and the body (when the edge hands it over, that is when it is
//! no larger than the plugin's body limit) for SQL injection, cross-site
//! scripting, path traversal and known attack tools. A request that matches
//! a rule is answered with `403 Forbidden`, a `x-waf-rule: <rule id>` header
//! and a short text naming the rule; the `waf_blocked` counter goes up by
//! one. In `detect` mode the match is only logged (at warn level, naming the
//! rule) and counted in `waf_detected`, and the request goes on unchanged.
//!
//! Inputs are normalized before matching: percent-decoded up to twice (to
//! catch double encoding), `+` read as a space in the query and in form
//! bodies, lower-cased, SQL `/* */` comments removed and whitespace
//! collapsed, so `UNION/**/SELECT`, `union%20select` and `%2e%2e%2f` match
//! like their plain forms. JSON bodies are parsed and each string (key or
//! value) is checked on its own, JSON escapes decoded; multipart bodies are
//! split into parts, each part's headers and content checked on their own.
//! The NUL-byte rule does not apply to bodies, which may be binary.
//!
//! # Configuration
//!
//! Every field is optional; unknown fields are refused.
//!
//! ```json
//! {
//!   "mode": "block",
//!   "rule_sets": ["sqli", "xss", "traversal", "scanner"],
//!   "custom_rules": [
//!     {"id": "no-wp-admin", "pattern": "/wp-admin", "in": ["path"]}
//!   ],
//!   "allow_paths": ["/healthz", "/static/*"]
//! }
//! ```
//!
//! - `mode`: `block` (default) answers 403; `detect` only logs.
//! - `rule_sets`: the built-in sets to enable (default: all four).
//!   `scanner` checks the `user-agent` header; the others check path, query,
//!   headers and body. Rule ids: `sqli-union-select`, `sqli-tautology`,
//!   `sqli-comment`, `sqli-stacked-query`, `sqli-time-based`,
//!   `sqli-schema-probe`, `sqli-file-access`, `xss-script-tag`,
//!   `xss-event-handler`, `xss-javascript-uri`, `xss-dangerous-tag`,
//!   `xss-js-sink`, `traversal-dotdot`, `traversal-sensitive-file`,
//!   `traversal-null-byte`, and `scanner-<tool>` (e.g. `scanner-sqlmap`).
//! - `custom_rules`: extra rules, checked before the built-in ones and
//!   whatever `rule_sets` says. `pattern` is a case-insensitive substring
//!   matched against the normalized input; `in` lists where to look among
//!   `path`, `query`, `headers` and `body` (default: all). `id` (letters,
//!   digits, `-`, `_`, `.`; at most 64 characters) is what `x-waf-rule`
//!   reports.
//! - `allow_paths`: requests whose (percent-decoded) path is one of these are
//!   not inspected. A trailing `*` matches any rest of the path. A path with
//!   a `.` or `..` segment is never allow-listed, so `/static/../admin`
//!   cannot slip through `/static/*`.
//! - `uninspected_bodies`: `block` (default) or `allow`. The edge hands the
//!   plugin a body only up to the plugin's body limit, so an attack padded
//!   past it would go unseen. With `block`, a request that declares a body
//!   (`content-length` above 0, or `transfer-encoding`) which the plugin did
//!   not get is answered `413` with `x-waf-rule: body-not-inspected`. Use
//!   `allow` for routes taking large uploads, and raise the body limit to
//!   what you want inspected.

mod normalize;
mod rules;

use std::collections::HashSet;

use parapet_sdk::{
    context, export_plugin, log, metrics, PathPattern, PathPatternError, Plugin, Request,
    RequestAction, Response,
};
use serde::Deserialize;

use normalize::{decode, normalize, normalize_pattern, Subject};
use rules::{RuleSet, CONTENT_RULES};

/// Longest custom rule id.
const MAX_RULE_ID_LEN: usize = 64;

/// The plugin's JSON configuration, as written by the customer.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    mode: Mode,
    #[serde(default = "RuleSet::all")]
    rule_sets: Vec<RuleSet>,
    #[serde(default)]
    custom_rules: Vec<CustomRuleConfig>,
    #[serde(default)]
    allow_paths: Vec<String>,
    #[serde(default)]
    uninspected_bodies: Uninspected,
}

/// What to do with a body the plugin was not given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Uninspected {
    /// Answer 413.
    #[default]
    Block,
    /// Let the request through uninspected.
    Allow,
}

/// What to do with a request that matches a rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    /// Answer 403.
    #[default]
    Block,
    /// Log and let the request through.
    Detect,
}

/// A custom rule as configured.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CustomRuleConfig {
    id: String,
    pattern: String,
    #[serde(rename = "in", default = "Target::all")]
    targets: Vec<Target>,
}

/// A part of the request that rules look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Target {
    Path,
    Query,
    Headers,
    Body,
}

impl Target {
    fn all() -> Vec<Target> {
        vec![Target::Path, Target::Query, Target::Headers, Target::Body]
    }
}

/// A validated custom rule.
struct CustomRule {
    id: String,
    /// Lower-cased, whitespace-collapsed pattern.
    pattern: String,
    targets: Vec<Target>,
}

/// Parses an `allow_paths` entry.
fn allow_path(pattern: &str) -> Result<PathPattern, String> {
    PathPattern::parse(pattern).map_err(|e| match e {
        PathPatternError::NotAbsolute => {
            format!("allow_paths entry {pattern:?} must start with `/`")
        }
        PathPatternError::StarNotAtEnd => {
            format!("allow_paths entry {pattern:?} may contain `*` only at the end")
        }
    })
}

/// Where a rule matched, for the log.
enum Place<'r> {
    Path,
    Query,
    Header(&'r str),
    Body,
}

impl std::fmt::Display for Place<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Path => f.write_str("path"),
            Place::Query => f.write_str("query"),
            Place::Header(name) => write!(f, "header {name}"),
            Place::Body => f.write_str("body"),
        }
    }
}

/// A rule that matched.
struct Hit<'a> {
    rule: &'a str,
    place: Place<'a>,
}

/// The firewall, built from its configuration for each request.
struct Waf {
    mode: Mode,
    rule_sets: Vec<RuleSet>,
    custom_rules: Vec<CustomRule>,
    allow_paths: Vec<PathPattern>,
    uninspected_bodies: Uninspected,
}

impl Waf {
    fn from_config(config: Config) -> Result<Self, String> {
        let mut seen = HashSet::new();
        let mut custom_rules = Vec::with_capacity(config.custom_rules.len());
        for rule in config.custom_rules {
            let id_ok = !rule.id.is_empty()
                && rule.id.len() <= MAX_RULE_ID_LEN
                && rule
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if !id_ok {
                return Err(format!(
                    "custom rule id {:?} must be 1 to {MAX_RULE_ID_LEN} letters, digits, `-`, `_` or `.`",
                    rule.id
                ));
            }
            if !seen.insert(rule.id.clone()) {
                return Err(format!(
                    "custom rule id {:?} is used more than once",
                    rule.id
                ));
            }
            let pattern = normalize_pattern(&rule.pattern);
            if pattern.is_empty() {
                return Err(format!(
                    "custom rule {:?}: `pattern` must not be empty",
                    rule.id
                ));
            }
            if rule.targets.is_empty() {
                return Err(format!(
                    "custom rule {:?}: `in` must name at least one of path, query, headers, body",
                    rule.id
                ));
            }
            custom_rules.push(CustomRule {
                id: rule.id,
                pattern,
                targets: rule.targets,
            });
        }
        let allow_paths = config
            .allow_paths
            .iter()
            .map(|p| allow_path(p))
            .collect::<Result<_, _>>()?;
        Ok(Waf {
            mode: config.mode,
            rule_sets: config.rule_sets,
            custom_rules,
            allow_paths,
            uninspected_bodies: config.uninspected_bodies,
        })
    }

    /// Whether the request's path is allow-listed. `path` is percent-decoded.
    fn is_allowed(&self, path: &str) -> bool {
        let has_dot_segment = path
            .split(['/', '\\'])
            .any(|segment| matches!(segment.split(';').next(), Some("." | "..")));
        !has_dot_segment && self.allow_paths.iter().any(|p| p.matches(path))
    }

    /// The first rule `request` matches, if any.
    fn inspect<'a>(&'a self, request: &'a Request) -> Option<Hit<'a>> {
        if self.rule_sets.contains(&RuleSet::Scanner) {
            if let Some(rule) = request.header_all("user-agent").find_map(rules::scanner) {
                return Some(Hit {
                    rule,
                    place: Place::Header("user-agent"),
                });
            }
        }
        if let Some(rule) = self.check(Target::Path, &request.path, false) {
            return Some(Hit {
                rule,
                place: Place::Path,
            });
        }
        if let Some(query) = &request.query {
            if let Some(rule) = self.check(Target::Query, query, true) {
                return Some(Hit {
                    rule,
                    place: Place::Query,
                });
            }
        }
        for (name, value) in &request.headers {
            if let Some(rule) = self.check(Target::Headers, value, false) {
                return Some(Hit {
                    rule,
                    place: Place::Header(name),
                });
            }
        }
        let body = request.body.as_deref()?;
        self.check_body(request, body).map(|rule| Hit {
            rule,
            place: Place::Body,
        })
    }

    /// Checks a body: each string of a JSON document on its own, each part
    /// of a multipart body on its own (headers, then content), any other
    /// body as text (a form body with `+` as space).
    fn check_body(&self, request: &Request, body: &[u8]) -> Option<&str> {
        let text = String::from_utf8_lossy(body);
        let trimmed = text.trim_start();
        if trimmed.starts_with(['{', '[']) {
            if let Ok(document) = serde_json::from_str::<serde_json::Value>(trimmed) {
                return self.check_json(&document);
            }
        }
        let content_type = request.header("content-type").unwrap_or_default();
        if let Some(boundary) = multipart_boundary(content_type) {
            return self.check_multipart(&text, boundary);
        }
        let form = media_type(content_type) == "application/x-www-form-urlencoded";
        self.check(Target::Body, &text, form)
    }

    /// Checks each part of a multipart body, split on `--boundary`: its
    /// header block (a `filename` may carry a traversal) and its content.
    fn check_multipart(&self, text: &str, boundary: &str) -> Option<&str> {
        let delimiter = format!("--{boundary}");
        text.split(delimiter.as_str()).find_map(|part| {
            let (head, content) = part
                .split_once("\r\n\r\n")
                .or_else(|| part.split_once("\n\n"))
                .unwrap_or((part, ""));
            self.check(Target::Body, head, false)
                .or_else(|| self.check(Target::Body, content, false))
        })
    }

    /// Checks every key and string value of a JSON document.
    fn check_json(&self, value: &serde_json::Value) -> Option<&str> {
        use serde_json::Value;
        match value {
            Value::String(s) => self.check(Target::Body, s, false),
            Value::Array(items) => items.iter().find_map(|item| self.check_json(item)),
            Value::Object(map) => map.iter().find_map(|(key, item)| {
                self.check(Target::Body, key, false)
                    .or_else(|| self.check_json(item))
            }),
            Value::Null | Value::Bool(_) | Value::Number(_) => None,
        }
    }

    /// The first custom or enabled built-in rule matching `raw` as found in
    /// `target`.
    fn check(&self, target: Target, raw: &str, plus_is_space: bool) -> Option<&str> {
        let content_rules = self.rule_sets.iter().any(|s| *s != RuleSet::Scanner);
        let mut custom = self
            .custom_rules
            .iter()
            .filter(|r| r.targets.contains(&target))
            .peekable();
        if !content_rules && custom.peek().is_none() {
            return None;
        }
        let text = normalize(raw, plus_is_space);
        if let Some(rule) = custom.find(|r| rules::contains(&text, &r.pattern)) {
            return Some(&rule.id);
        }
        if !content_rules {
            return None;
        }
        let subject = Subject::new(&text);
        CONTENT_RULES
            .iter()
            .filter(|rule| target != Target::Body || rule.in_body)
            .find(|rule| self.rule_sets.contains(&rule.set) && rule.matches(&subject))
            .map(|rule| rule.id)
    }
}

/// The media type of a `content-type` value, lower-cased, without
/// parameters.
fn media_type(content_type: &str) -> String {
    let essence = content_type.split(';').next().unwrap_or_default();
    essence.trim().to_ascii_lowercase()
}

/// The boundary of a `multipart/*` content type, if it names one.
fn multipart_boundary(content_type: &str) -> Option<&str> {
    if !media_type(content_type).starts_with("multipart/") {
        return None;
    }
    content_type
        .split(';')
        .skip(1)
        .filter_map(|param| param.split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, value)| value.trim().trim_matches('"'))
        .filter(|boundary| !boundary.is_empty())
}

/// The answer to a blocked request.
/// Whether `request` says it has a body.
fn declares_body(request: &Request) -> bool {
    request.header("transfer-encoding").is_some()
        || request
            .header("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|len| len > 0)
}

/// The answer to a blocked request: `status` (403, or 413 for a body that
/// could not be inspected) naming `rule`.
fn forbidden(status: u16, rule: &str) -> Response {
    let reason = if status == 413 {
        "Content Too Large"
    } else {
        "Forbidden"
    };
    let body = format!(
        "{status} {reason}: blocked by web application firewall rule {rule} (request id {})\n",
        context::request_id()
    );
    Response::new(status)
        .with_header("content-type", "text/plain; charset=utf-8")
        .with_header("cache-control", "no-store")
        .with_header("x-waf-rule", rule)
        .with_body(body)
}

#[parapet_sdk::hooks]
impl Plugin for Waf {
    fn new(config: &str) -> Result<Self, String> {
        let config: Config =
            serde_json::from_str(config).map_err(|e| format!("invalid waf configuration: {e}"))?;
        Waf::from_config(config)
    }

    fn on_viewer_request(&mut self, request: Request) -> RequestAction {
        if self.is_allowed(&decode(&request.path, false)) {
            return RequestAction::Continue(request);
        }
        if self.uninspected_bodies == Uninspected::Block
            && request.body.is_none()
            && declares_body(&request)
        {
            log::warn("blocked: the body was too large to inspect");
            metrics::counter_add("waf_blocked", 1);
            return RequestAction::Respond(forbidden(413, "body-not-inspected"));
        }
        let Some(hit) = self.inspect(&request) else {
            return RequestAction::Continue(request);
        };
        match self.mode {
            Mode::Block => {
                log::warn(&format!(
                    "blocked: rule {} matched in the {}",
                    hit.rule, hit.place
                ));
                metrics::counter_add("waf_blocked", 1);
                RequestAction::Respond(forbidden(403, hit.rule))
            }
            Mode::Detect => {
                log::warn(&format!(
                    "detected (mode detect, not blocked): rule {} matched in the {}",
                    hit.rule, hit.place
                ));
                metrics::counter_add("waf_detected", 1);
                RequestAction::Continue(request)
            }
        }
    }
}

export_plugin!(Waf);
