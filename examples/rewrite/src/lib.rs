//! URL rewrites and redirects at the edge, in `on-viewer-request`.
//!
//! ```json
//! {
//!   "canonical_host": "www.example.com",
//!   "rules": [
//!     {"match": "prefix", "from": "/old/", "to": "/new/"},
//!     {"match": "regex", "from": "^/blog/(\\d+)/(.*)$", "to": "/posts/$2?id=$1", "redirect": 301},
//!     {"match": "prefix", "from": "/docs", "to": "/documentation", "redirect": 308}
//!   ]
//! }
//! ```
//!
//! - `canonical_host` (optional): a request addressed to any other host gets a
//!   `301` to `scheme://canonical_host/path?query`. Hosts are compared
//!   case-insensitively and a default port (`:80` for http, `:443` for
//!   https) is ignored. This check runs before the rules, so the rules apply
//!   on the canonical host only.
//! - `rules`: tried in order on the request path (never the query); the first
//!   that matches wins and the others are skipped.
//!   - `"match": "prefix"`: `from` is a path prefix that ends at a segment
//!     boundary: `/docs` matches `/docs` and `/docs/a` but not `/docsearch`
//!     (a `from` ending in `/` matches anything below it). The prefix is
//!     replaced by `to` and the rest of the path is kept.
//!   - `"match": "regex"`: `from` is a regular expression
//!     ([`regex-lite`](https://docs.rs/regex-lite) syntax, linear time)
//!     searched in the path; on a match the whole path becomes `to`, in which
//!     `$1`, `${1}` or `${name}` insert capture groups (use `${1}` when a
//!     letter, digit or `_` follows) and `$$` a literal `$`.
//!   - If the resulting target has a `?`, what follows replaces the query
//!     (`/x?` drops it); otherwise the request's query is kept.
//!   - Without `redirect`, the rule rewrites the request's path (and query)
//!     and the request goes on; `to` must then be a path starting with `/`.
//!   - With `redirect` (301, 302, 307 or 308), the edge answers with that
//!     status and a `location` header; `to` may then also be an absolute
//!     `http://` or `https://` URL.
//!
//! The configuration is refused at launch, with the index of the faulty rule,
//! when a regex does not compile, a redirect status is not one of the four
//! above, a target is not a path (or URL, for redirects) or contains spaces or
//! control characters, or a field is unknown.

use parapet_sdk::{export_plugin, Plugin, Request, RequestAction, Response};
use regex_lite::Regex;
use serde::Deserialize;

/// The redirect statuses a rule may answer with.
const REDIRECT_STATUSES: [u16; 4] = [301, 302, 307, 308];

/// The plugin's configuration, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    canonical_host: Option<String>,
    #[serde(default)]
    rules: Vec<Rule>,
}

/// How a rule's `from` is matched against the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum MatchKind {
    /// A path prefix, ending at a segment boundary.
    Prefix,
    /// A regular expression searched in the path.
    Regex,
}

/// One rewrite or redirect rule.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    #[serde(rename = "match")]
    kind: MatchKind,
    from: String,
    to: String,
    /// Answer with this redirect status instead of rewriting.
    #[serde(default)]
    redirect: Option<u16>,
    /// `from` compiled, for regex rules: made once, at launch.
    #[serde(skip)]
    regex: Option<Regex>,
}

impl Rule {
    /// Checks the rule and compiles its regex.
    fn prepare(&mut self) -> Result<(), String> {
        if let Some(status) = self.redirect {
            if !REDIRECT_STATUSES.contains(&status) {
                return Err(format!(
                    "redirect status {status} is not supported: use 301, 302, 307 or 308"
                ));
            }
        }
        match self.kind {
            MatchKind::Prefix if !self.from.starts_with('/') => {
                return Err(format!(
                    "a prefix `from` must start with `/`, got {:?}",
                    self.from
                ));
            }
            MatchKind::Regex => {
                let regex = Regex::new(&self.from)
                    .map_err(|e| format!("invalid regex {:?}: {e}", self.from))?;
                self.regex = Some(regex);
            }
            _ => {}
        }
        if self.to.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "`to` {:?} contains a space or a control character",
                self.to
            ));
        }
        let is_path = self.to.starts_with('/');
        if self.redirect.is_none() && !is_path {
            return Err(format!(
                "a rewrite target must be a path starting with `/`, got {:?} (only redirects may point elsewhere)",
                self.to
            ));
        }
        if !is_path && !self.to.starts_with("http://") && !self.to.starts_with("https://") {
            return Err(format!(
                "a redirect target must be a path starting with `/` or an http(s) URL, got {:?}",
                self.to
            ));
        }
        Ok(())
    }

    /// The target (path or URL, maybe with a query) this rule maps `path`
    /// to, or `None` when it does not match.
    fn apply(&self, path: &str) -> Option<String> {
        match self.kind {
            MatchKind::Prefix => {
                let rest = path.strip_prefix(self.from.as_str())?;
                let at_boundary =
                    self.from.ends_with('/') || rest.is_empty() || rest.starts_with('/');
                at_boundary.then(|| format!("{}{rest}", self.to))
            }
            MatchKind::Regex => {
                let captures = self.regex.as_ref()?.captures(path)?;
                let mut target = String::new();
                captures.expand(&self.to, &mut target);
                Some(target)
            }
        }
    }
}

/// The rewrite plugin.
pub struct Rewrite {
    /// The canonical host, lower-case.
    canonical_host: Option<String>,
    rules: Vec<Rule>,
}

impl Rewrite {
    /// Where to send a request not addressed to the canonical host.
    fn canonical_redirect(&self, request: &Request) -> Option<String> {
        let canonical = self.canonical_host.as_deref()?;
        let scheme = request.scheme.as_str();
        if normalize_authority(&request.authority, scheme) == normalize_authority(canonical, scheme)
        {
            return None;
        }
        Some(format!(
            "{scheme}://{canonical}{}",
            request.path_and_query()
        ))
    }
}

/// `authority` lower-cased, without the scheme's default port.
fn normalize_authority(authority: &str, scheme: &str) -> String {
    let default_port = match scheme {
        "http" => ":80",
        "https" => ":443",
        _ => "",
    };
    let lower = authority.to_ascii_lowercase();
    match lower.strip_suffix(default_port) {
        Some(host) if !default_port.is_empty() => host.to_string(),
        _ => lower,
    }
}

/// Checks `canonical_host` and lower-cases it.
fn validate_host(host: &str) -> Result<String, String> {
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '[' | ']'));
    if valid {
        Ok(host.to_ascii_lowercase())
    } else {
        Err(format!(
            "canonical_host {host:?} is not a host name (expected e.g. `www.example.com` or `www.example.com:8443`)"
        ))
    }
}

/// Splits a target at its `?`: the path (or URL) and the query that replaces
/// the request's (`None` for a trailing `?`); without `?`, keeps `query`.
fn split_target(target: String, query: Option<String>) -> (String, Option<String>) {
    match target.split_once('?') {
        Some((path, new_query)) => (
            path.to_string(),
            (!new_query.is_empty()).then(|| new_query.to_string()),
        ),
        None => (target, query),
    }
}

#[parapet_sdk::hooks]
impl Plugin for Rewrite {
    fn new(config: &str) -> Result<Self, String> {
        let config: Config = serde_json::from_str(config)
            .map_err(|e| format!("invalid rewrite configuration: {e}"))?;
        let canonical_host = config
            .canonical_host
            .as_deref()
            .map(validate_host)
            .transpose()?;
        // `new` runs once, at launch: the compiled regexes are part of the
        // launch image every request starts from.
        let mut rules = config.rules;
        for (index, rule) in rules.iter_mut().enumerate() {
            rule.prepare().map_err(|e| format!("rules[{index}]: {e}"))?;
        }
        Ok(Rewrite {
            canonical_host,
            rules,
        })
    }

    fn on_viewer_request(&mut self, mut request: Request) -> RequestAction {
        if let Some(location) = self.canonical_redirect(&request) {
            return RequestAction::Respond(Response::redirect(301, &location));
        }
        let Some((rule, target)) = self
            .rules
            .iter()
            .find_map(|rule| Some((rule, rule.apply(&request.path)?)))
        else {
            return RequestAction::Continue(request);
        };
        let (path, query) = split_target(target, request.query.take());
        match rule.redirect {
            Some(status) => {
                let location = match query {
                    Some(query) => format!("{path}?{query}"),
                    None => path,
                };
                RequestAction::Respond(Response::redirect(status, &location))
            }
            None => {
                request.path = path;
                request.query = query;
                RequestAction::Continue(request)
            }
        }
    }
}

export_plugin!(Rewrite);
