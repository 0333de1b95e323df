//! Filters the headers of requests on their way in and of responses on their
//! way out, and adds browser security headers.
//!
//! # Configuration
//!
//! ```json
//! {
//!   "request": {
//!     "allow": ["accept", "accept-encoding", "user-agent", "authorization"],
//!     "deny": ["x-debug", "cookie"]
//!   },
//!   "response": {
//!     "strip": ["server", "x-powered-by", "x-aspnet-version"],
//!     "security_headers": true,
//!     "hsts_max_age": 31536000,
//!     "csp": "default-src 'self'",
//!     "overwrite": false
//!   }
//! }
//! ```
//!
//! Every field is optional; unknown fields and invalid header names are
//! refused. Header names match case-insensitively.
//!
//! - `request.allow`: when present, only the listed request headers go on.
//!   Nothing is kept implicitly: list `content-type`, `content-length`,
//!   `cookie`… if the origin needs them. The method, authority (host), path
//!   and query are not headers and are never touched. An empty list is
//!   refused (omit the field to keep every header).
//! - `request.deny`: the listed request headers are removed (after `allow`).
//! - `response.strip`: the listed response headers are removed.
//! - `response.security_headers: true` adds `x-content-type-options: nosniff`,
//!   `x-frame-options: DENY`, `referrer-policy: strict-origin-when-cross-origin`
//!   and, on `https` requests only (browsers ignore it over plain HTTP),
//!   `strict-transport-security: max-age=<hsts_max_age>` (default one year).
//! - `response.csp` adds `content-security-policy` with this value.
//! - `response.overwrite: true` replaces those headers when the response
//!   already has them; by default the origin's own values win.
//!
//! Requests are filtered in `on-viewer-request`, before the cache lookup;
//! responses in `on-viewer-response`, so cache hits get the same treatment.
//! Stripping runs before adding, so a stripped security header is replaced.

use parapet_sdk::{export_plugin, Plugin, Request, RequestAction, Response, ResponseAction};
use serde::Deserialize;

/// Default `strict-transport-security` max-age: one year, in seconds.
const DEFAULT_HSTS_MAX_AGE: u64 = 31_536_000;

/// The plugin's configuration, as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    request: RequestConfig,
    #[serde(default)]
    response: ResponseConfig,
}

/// The `request` section.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RequestConfig {
    allow: Option<Vec<String>>,
    #[serde(default)]
    deny: Vec<String>,
}

/// The `response` section.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ResponseConfig {
    #[serde(default)]
    strip: Vec<String>,
    #[serde(default)]
    security_headers: bool,
    hsts_max_age: Option<u64>,
    csp: Option<String>,
    #[serde(default)]
    overwrite: bool,
}

/// The `header-filter` plugin, built from a validated configuration. Header
/// name lists are lower-case.
struct HeaderFilter {
    allow: Option<Vec<String>>,
    deny: Vec<String>,
    strip: Vec<String>,
    /// HSTS max-age when security headers are on.
    security_headers: Option<u64>,
    csp: Option<String>,
    overwrite: bool,
}

/// Whether `name` is a valid HTTP field name (RFC 9110 token).
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Checks and lower-cases the header names of config field `field`.
fn header_names(field: &str, names: Vec<String>) -> Result<Vec<String>, String> {
    names
        .into_iter()
        .map(|name| {
            if is_header_name(&name) {
                Ok(name.to_ascii_lowercase())
            } else {
                Err(format!("{field}: {name:?} is not a valid header name"))
            }
        })
        .collect()
}

/// Whether `name` is in the lower-case list `names`.
fn listed(names: &[String], name: &str) -> bool {
    names.iter().any(|n| n.eq_ignore_ascii_case(name))
}

impl HeaderFilter {
    /// Adds `name: value`, or replaces it when `overwrite` is set; keeps the
    /// response's own value otherwise.
    fn add(&self, response: &mut Response, name: &str, value: &str) {
        if self.overwrite {
            response.set_header(name, value);
        } else if response.header(name).is_none() {
            response.append_header(name, value);
        }
    }
}

#[parapet_sdk::hooks]
impl Plugin for HeaderFilter {
    fn new(config: &str) -> Result<Self, String> {
        let Config { request, response } = serde_json::from_str(config)
            .map_err(|e| format!("invalid header-filter config: {e}"))?;

        let allow =
            match request.allow {
                Some(names) if names.is_empty() => return Err(
                    "request.allow is empty: it would drop every header; omit it to keep them all"
                        .into(),
                ),
                Some(names) => Some(header_names("request.allow", names)?),
                None => None,
            };
        let deny = header_names("request.deny", request.deny)?;
        let strip = header_names("response.strip", response.strip)?;

        let security_headers = match (response.security_headers, response.hsts_max_age) {
            (true, max_age) => Some(max_age.unwrap_or(DEFAULT_HSTS_MAX_AGE)),
            (false, None) => None,
            (false, Some(_)) => {
                return Err("response.hsts_max_age is set but security_headers is not true".into())
            }
        };

        if let Some(csp) = &response.csp {
            let printable = csp.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b));
            if csp.trim().is_empty() || !printable {
                return Err(
                    "response.csp must be a non-empty header value of printable ASCII".into(),
                );
            }
        }

        Ok(HeaderFilter {
            allow,
            deny,
            strip,
            security_headers,
            csp: response.csp,
            overwrite: response.overwrite,
        })
    }

    fn on_viewer_request(&mut self, mut request: Request) -> RequestAction {
        request.headers.retain(|(name, _)| {
            self.allow.as_ref().is_none_or(|allow| listed(allow, name)) && !listed(&self.deny, name)
        });
        RequestAction::Continue(request)
    }

    fn on_viewer_response(&mut self, request: &Request, mut response: Response) -> ResponseAction {
        response
            .headers
            .retain(|(name, _)| !listed(&self.strip, name));

        if let Some(max_age) = self.security_headers {
            self.add(&mut response, "x-content-type-options", "nosniff");
            self.add(&mut response, "x-frame-options", "DENY");
            self.add(
                &mut response,
                "referrer-policy",
                "strict-origin-when-cross-origin",
            );
            if request.scheme.eq_ignore_ascii_case("https") {
                self.add(
                    &mut response,
                    "strict-transport-security",
                    &format!("max-age={max_age}"),
                );
            }
        }
        if let Some(csp) = &self.csp {
            self.add(&mut response, "content-security-policy", csp);
        }
        ResponseAction::Continue(response)
    }
}

export_plugin!(HeaderFilter);
