//! Sticky, weighted A/B tests: each viewer is put in one variant, kept there
//! by a cookie, and each variant is fetched from its own origin path.
//!
//! ```json
//! {
//!   "cookie": "ab_bucket",
//!   "paths": ["/landing*"],
//!   "variants": [
//!     {"name": "control", "weight": 50, "prefix": ""},
//!     {"name": "new", "weight": 50, "prefix": "/variants/new"}
//!   ],
//!   "cookie_max_age": 2592000
//! }
//! ```
//!
//! - `cookie` (default `ab_bucket`): the cookie that remembers the variant.
//! - `paths` (default `["*"]`): the request paths in the test, with the
//!   edge's behavior-pattern rules: `*` matches any run of characters, `/`
//!   included, and `?` exactly one.
//! - `variants`: at least one; `name` is unique and cookie-safe, `weight`
//!   the share of new viewers it gets (weights need not add up to 100 but must
//!   not all be 0), `prefix` (default `""`: none) is put before the path of
//!   requests sent to the origin for this variant.
//! - `cookie_max_age` (default 30 days): the cookie's lifetime in seconds.
//!
//! On a request for a path in the test, `on-viewer-request` reads the cookie.
//! If it names a variant whose weight is not 0, the viewer stays there;
//! otherwise a variant is drawn at random by weight (so setting a weight to 0
//! drains a variant: its viewers are moved on their next request). The
//! request gets an `x-ab-variant: <name>` header for the cache and the origin.
//! `on-origin-request` prefixes the path with the variant's `prefix`, so the
//! viewer's URL does not change but the origin serves the variant's page.
//! `on-origin-response` adds `x-ab-variant` to the response's `vary` header,
//! so a cache keyed on the viewer's URL keeps the variants apart. When the
//! variant was drawn, `on-viewer-response` sets the cookie:
//! `ab_bucket=<name>; Path=/; Max-Age=...; SameSite=Lax`, plus
//! `HttpOnly; Secure` for https requests.

use parapet_sdk::{
    export_plugin, random, CacheOverride, Plugin, Request, RequestAction, Response, ResponseAction,
};
use serde::Deserialize;
use wildmatch::WildMatch;

/// The request header naming the variant, and the `vary` entry for it.
const VARIANT_HEADER: &str = "x-ab-variant";

/// The plugin's configuration, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_cookie")]
    cookie: String,
    #[serde(default = "default_paths")]
    paths: Vec<String>,
    variants: Vec<Variant>,
    #[serde(default = "default_max_age")]
    cookie_max_age: u64,
}

fn default_cookie() -> String {
    "ab_bucket".into()
}

fn default_paths() -> Vec<String> {
    vec!["*".into()]
}

/// Thirty days.
fn default_max_age() -> u64 {
    30 * 24 * 60 * 60
}

/// One arm of the test.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Variant {
    name: String,
    weight: u32,
    #[serde(default)]
    prefix: String,
}

impl Config {
    /// Checks what serde cannot.
    fn validate(&self) -> Result<(), String> {
        if self.cookie.is_empty() || !self.cookie.bytes().all(is_token_byte) {
            return Err(format!(
                "cookie name {:?} is not a valid cookie name",
                self.cookie
            ));
        }
        if self.cookie_max_age == 0 {
            return Err("cookie_max_age must be at least 1 second".into());
        }
        if self.paths.is_empty() {
            return Err(
                "paths is empty: no request would be in the test (use [\"*\"] for all paths)"
                    .into(),
            );
        }
        if let Some(path) = self
            .paths
            .iter()
            .find(|p| !(p.starts_with('/') || p.starts_with('*')))
        {
            return Err(format!("path pattern {path:?} must start with `/` or `*`"));
        }
        if self.variants.is_empty() {
            return Err("variants is empty: at least one variant is needed".into());
        }
        for (index, variant) in self.variants.iter().enumerate() {
            variant
                .validate()
                .map_err(|e| format!("variants[{index}]: {e}"))?;
            if self.variants[..index]
                .iter()
                .any(|v| v.name == variant.name)
            {
                return Err(format!(
                    "variants[{index}]: the name {:?} is used twice",
                    variant.name
                ));
            }
        }
        if self.variants.iter().all(|v| v.weight == 0) {
            return Err("every variant has weight 0: at least one weight must be positive".into());
        }
        Ok(())
    }
}

impl Variant {
    fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() || !self.name.bytes().all(is_cookie_value_byte) {
            return Err(format!(
                "the name {:?} cannot be a cookie value: use letters, digits and `-_.`, without spaces, `\"`, `,`, `;` or `\\`",
                self.name
            ));
        }
        if !self.prefix.is_empty() {
            let valid = self.prefix.starts_with('/')
                && !self.prefix.ends_with('/')
                && !self
                    .prefix
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#'));
            if !valid {
                return Err(format!(
                    "prefix {:?} must be empty or a path like `/variants/new`: starting with `/`, not ending with `/`, without spaces, `?` or `#`",
                    self.prefix
                ));
            }
        }
        Ok(())
    }
}

/// A `tchar` of RFC 9110: what a cookie name may be made of.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A `cookie-octet` of RFC 6265: what a cookie value may be made of.
fn is_cookie_value_byte(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)
}

/// The variant this request is in.
struct Assignment {
    /// Index in `AbTest::variants`.
    variant: usize,
    /// Drawn on this request (no valid cookie): the cookie must be set.
    drawn: bool,
}

/// The A/B test plugin. One instance serves one request, so `assignment`
/// carries the choice from `on-viewer-request` to the later hooks.
pub struct AbTest {
    cookie: String,
    paths: Vec<String>,
    variants: Vec<Variant>,
    cookie_max_age: u64,
    assignment: Option<Assignment>,
}

impl AbTest {
    /// The index of the variant named `name`, unless its weight is 0.
    fn open_variant(&self, name: &str) -> Option<usize> {
        self.variants
            .iter()
            .position(|v| v.name == name && v.weight > 0)
    }

    /// Draws a variant at random, in proportion to the weights.
    fn draw(&self) -> usize {
        let total: u64 = self.variants.iter().map(|v| u64::from(v.weight)).sum();
        // Scales a uniform 64-bit number to `0..total` (multiply-shift: the
        // result is below `total`, so it fits in a u64; the bias is below
        // total / 2^64).
        let mut point = ((u128::from(random::next_u64()) * u128::from(total)) >> 64) as u64;
        for (index, variant) in self.variants.iter().enumerate() {
            let weight = u64::from(variant.weight);
            if point < weight {
                return index;
            }
            point -= weight;
        }
        // Unreachable as `point < total`; fall back to an open variant.
        self.variants
            .iter()
            .rposition(|v| v.weight > 0)
            .unwrap_or(0)
    }

    /// The variant of this request, when it is in the test.
    fn variant(&self) -> Option<(&Variant, &Assignment)> {
        let assignment = self.assignment.as_ref()?;
        Some((self.variants.get(assignment.variant)?, assignment))
    }
}

#[parapet_sdk::hooks]
impl Plugin for AbTest {
    fn new(config: &str) -> Result<Self, String> {
        let config: Config = serde_json::from_str(config)
            .map_err(|e| format!("invalid ab-test configuration: {e}"))?;
        config.validate()?;
        Ok(AbTest {
            cookie: config.cookie,
            paths: config.paths,
            variants: config.variants,
            cookie_max_age: config.cookie_max_age,
            assignment: None,
        })
    }

    fn on_viewer_request(&mut self, mut request: Request) -> RequestAction {
        if !self
            .paths
            .iter()
            .any(|pattern| WildMatch::new(pattern).matches(&request.path))
        {
            return RequestAction::Continue(request);
        }
        let assignment = match request
            .cookie(&self.cookie)
            .and_then(|name| self.open_variant(name))
        {
            Some(variant) => Assignment {
                variant,
                drawn: false,
            },
            None => Assignment {
                variant: self.draw(),
                drawn: true,
            },
        };
        self.assignment = Some(assignment);
        if let Some((variant, _)) = self.variant() {
            // Replaces any value the viewer sent.
            request.set_header(VARIANT_HEADER, &variant.name);
        }
        RequestAction::Continue(request)
    }

    fn on_origin_request(&mut self, mut request: Request) -> RequestAction {
        if let Some((variant, _)) = self.variant() {
            if !variant.prefix.is_empty() {
                request.path = format!("{}{}", variant.prefix, request.path);
            }
        }
        RequestAction::Continue(request)
    }

    fn on_origin_response(
        &mut self,
        _request: &Request,
        mut response: Response,
        _cache: &mut CacheOverride,
    ) -> ResponseAction {
        if self.variant().is_some() {
            let varies = response
                .header_all("vary")
                .flat_map(|v| v.split(','))
                .any(|v| v.trim() == "*" || v.trim().eq_ignore_ascii_case(VARIANT_HEADER));
            if !varies {
                response.append_header("vary", VARIANT_HEADER);
            }
        }
        ResponseAction::Continue(response)
    }

    fn on_viewer_response(&mut self, request: &Request, mut response: Response) -> ResponseAction {
        if let Some((variant, Assignment { drawn: true, .. })) = self.variant() {
            let mut cookie = format!(
                "{}={}; Path=/; Max-Age={}; SameSite=Lax",
                self.cookie, variant.name, self.cookie_max_age
            );
            if request.scheme == "https" {
                cookie.push_str("; HttpOnly; Secure");
            }
            response.append_header("set-cookie", &cookie);
        }
        ResponseAction::Continue(response)
    }
}

export_plugin!(AbTest);
