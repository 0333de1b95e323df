//! Authenticates viewers before the cache lookup, with API keys kept in the
//! customer's KV store, HS256 JSON Web Tokens, or both. A request that passes
//! goes on with an `x-auth-subject` header naming who it is; any other gets a
//! `401 Unauthorized` with an RFC 6750 `www-authenticate` challenge.
//!
//! # Configuration
//!
//! ```json
//! {
//!   "api_key_header": "x-api-key",
//!   "kv_prefix": "apikey:",
//!   "jwt": { "secret": "a-secret-of-at-least-32-bytes....", "audience": "my-api", "leeway_seconds": 30 },
//!   "bypass_paths": ["/public/*", "/health"],
//!   "strip_credentials": false
//! }
//! ```
//!
//! At least one method must be configured; unknown fields are refused.
//!
//! - `kv_prefix` turns on **API keys**: the value of header `api_key_header`
//!   (default `x-api-key`) is looked up as `kv_prefix + key` in the KV store.
//!   A present entry lets the request through, with its value as the subject.
//!   The prefix must not be empty, so other KV entries never count as keys.
//! - `jwt` turns on **bearer tokens** (`authorization: Bearer <jwt>`), signed
//!   with HMAC-SHA256 under `secret` (its UTF-8 bytes, at least 32 of them as
//!   RFC 7518 §3.2 requires). The header's `alg` must be `HS256` (`none` and
//!   every other algorithm are refused) and it may not carry `crit`. The
//!   signature is checked in constant time, then the claims: `exp` is
//!   required and must be in the future, `nbf` (if any) in the past, both
//!   with `leeway_seconds` (default 30) of tolerance for clock skew, and
//!   `aud` (a string or an array) must contain `audience`. The subject is the
//!   `sub` claim; a token without one passes without a subject.
//! - `bypass_paths` lists paths that need no credentials: an exact path, or a
//!   prefix ending in `*` (`/public/*` matches `/public/a` but not `/public`).
//!   A path with `.`/`..` segments or encoded slashes never bypasses, so
//!   `/public/../admin` cannot sneak past.
//! - `strip_credentials: true` removes the credential that authenticated the
//!   request (the API key header or `authorization`) before it goes on; by
//!   default the origin sees it.
//!
//! When a request carries an API key header, that key decides; otherwise the
//! bearer token does. An incoming `x-auth-subject` header is always removed,
//! so viewers cannot forge it. The subject is percent-encoded where it has
//! bytes outside printable ASCII, spaces or `%`, to stay a valid header value.
//!
//! Failures answer `401` with `content-type: text/plain`, a body saying why,
//! and `www-authenticate: Bearer realm="parapet"` (plus
//! `error="invalid_token", error_description="..."` when a credential was
//! given but is wrong). Secrets and tokens are never logged.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use parapet_sdk::{
    export_plugin, kv, log, metrics, PathPattern, PathPatternError, Plugin, Request, RequestAction,
    Response,
};
use percent_encoding::{percent_encode, AsciiSet, CONTROLS};
use serde::Deserialize;
use sha2::Sha256;

/// The request header that carries the authenticated subject to the origin.
const SUBJECT_HEADER: &str = "x-auth-subject";
/// The realm named in challenges.
const REALM: &str = "parapet";
/// Longest API key looked up; longer ones are unknown without a KV call.
const MAX_API_KEY_LEN: usize = 512;
/// Longest bearer token parsed; longer ones are malformed.
const MAX_TOKEN_LEN: usize = 8192;
/// Shortest HS256 secret, in bytes (RFC 7518 §3.2: at least the hash size).
const MIN_SECRET_LEN: usize = 32;

/// Bytes escaped in `x-auth-subject`: controls, non-ASCII, space and `%`.
const SUBJECT_ESCAPES: &AsciiSet = &CONTROLS.add(b' ').add(b'%');

/// The plugin's configuration, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    api_key_header: Option<String>,
    kv_prefix: Option<String>,
    jwt: Option<JwtConfig>,
    #[serde(default)]
    bypass_paths: Vec<String>,
    #[serde(default)]
    strip_credentials: bool,
}

/// The `jwt` section of the configuration.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JwtConfig {
    secret: String,
    audience: String,
    #[serde(default = "default_leeway")]
    leeway_seconds: u32,
}

fn default_leeway() -> u32 {
    30
}

/// API key checking: where the key is and where it is looked up.
struct ApiKeys {
    header: String,
    kv_prefix: String,
}

/// The `auth` plugin, built from a validated configuration.
struct Auth {
    api_keys: Option<ApiKeys>,
    jwt: Option<JwtConfig>,
    bypass: Vec<PathPattern>,
    strip_credentials: bool,
}

/// Why a request is refused. Descriptions are fixed strings, safe to put in
/// a quoted `error_description` and never derived from the request.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Denial {
    MissingCredentials,
    UnknownApiKey,
    Malformed,
    UnsupportedAlgorithm,
    BadSignature,
    NoExpiry,
    Expired,
    NotYetValid,
    WrongAudience,
}

impl Denial {
    fn description(self) -> &'static str {
        match self {
            Denial::MissingCredentials => "missing credentials",
            Denial::UnknownApiKey => "unknown API key",
            Denial::Malformed => "malformed token",
            Denial::UnsupportedAlgorithm => "unsupported algorithm, only HS256 is accepted",
            Denial::BadSignature => "bad signature",
            Denial::NoExpiry => "token has no expiry (exp)",
            Denial::Expired => "token expired",
            Denial::NotYetValid => "token not yet valid",
            Denial::WrongAudience => "wrong audience",
        }
    }

    /// The `401` answer for this denial.
    fn response(self) -> Response {
        let challenge = match self {
            Denial::MissingCredentials => format!("Bearer realm=\"{REALM}\""),
            _ => format!(
                "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{}\"",
                self.description()
            ),
        };
        Response::new(401)
            .with_header("www-authenticate", &challenge)
            .with_header("content-type", "text/plain; charset=utf-8")
            .with_header("cache-control", "no-store")
            .with_body(format!("401 Unauthorized: {}\n", self.description()))
    }
}

/// Which credential let a request through.
enum Credential {
    ApiKey,
    Bearer,
}

/// A successful authentication.
struct Grant {
    credential: Credential,
    /// Raw subject bytes, escaped when put in the header.
    subject: Option<Vec<u8>>,
}

/// The JOSE header of a token; other members are ignored.
#[derive(Deserialize)]
struct JoseHeader {
    alg: String,
    crit: Option<serde_json::Value>,
}

/// The registered claims this plugin checks; others are ignored.
#[derive(Deserialize)]
struct Claims {
    /// NumericDate: seconds since the epoch, possibly fractional.
    exp: Option<f64>,
    nbf: Option<f64>,
    aud: Option<Audience>,
    sub: Option<String>,
}

/// `aud` is a single string or an array of strings (RFC 7519 §4.1.3).
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, audience: &str) -> bool {
        match self {
            Audience::One(a) => a == audience,
            Audience::Many(all) => all.iter().any(|a| a == audience),
        }
    }
}

/// Whether `name` is a valid HTTP field name (RFC 9110 token).
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether `path` is free of dot segments and encoded separators, so that a
/// prefix match on it means what it says.
fn is_plain_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") || lower.contains('\\') {
        return false;
    }
    !lower
        .replace("%2e", ".")
        .split('/')
        .any(|segment| segment == "." || segment == "..")
}

/// Parses a `bypass_paths` entry.
fn parse_pattern(pattern: &str) -> Result<PathPattern, String> {
    PathPattern::parse(pattern).map_err(|e| match e {
        PathPatternError::NotAbsolute => format!("bypass_paths: {pattern:?} must start with `/`"),
        PathPatternError::StarNotAtEnd => {
            format!("bypass_paths: {pattern:?} may have `*` only at its end")
        }
    })
}

/// The token of an `authorization: Bearer <token>` header, if it has one.
fn bearer_token(request: &Request) -> Option<&str> {
    let value = request.header("authorization")?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl JwtConfig {
    /// Verifies `token` at time `now_millis`; returns its subject.
    fn verify(&self, token: &str, now_millis: u64) -> Result<Option<String>, Denial> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(Denial::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Denial::Malformed);
        };

        let header: JoseHeader = decode_json(header_b64)?;
        if header.alg != "HS256" {
            return Err(Denial::UnsupportedAlgorithm);
        }
        if header.crit.is_some() {
            // RFC 7515 §4.1.11: extensions we do not understand must be refused.
            return Err(Denial::Malformed);
        }

        let signature = URL_SAFE_NO_PAD
            .decode(signature_b64)
            .map_err(|_| Denial::Malformed)?;
        let mut mac = Hmac::<Sha256>::new_from_slice(self.secret.as_bytes())
            .map_err(|_| Denial::BadSignature)?;
        mac.update(header_b64.as_bytes());
        mac.update(b".");
        mac.update(payload_b64.as_bytes());
        mac.verify_slice(&signature)
            .map_err(|_| Denial::BadSignature)?;

        let claims: Claims = decode_json(payload_b64)?;
        let now = now_millis as f64;
        let leeway = f64::from(self.leeway_seconds) * 1000.0;
        let exp = claims.exp.ok_or(Denial::NoExpiry)?;
        if now >= exp * 1000.0 + leeway {
            return Err(Denial::Expired);
        }
        if let Some(nbf) = claims.nbf {
            if now + leeway < nbf * 1000.0 {
                return Err(Denial::NotYetValid);
            }
        }
        if !claims.aud.is_some_and(|aud| aud.contains(&self.audience)) {
            return Err(Denial::WrongAudience);
        }
        Ok(claims.sub)
    }
}

/// Decodes one base64url JSON part of a token.
fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, Denial> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Denial::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| Denial::Malformed)
}

impl Auth {
    /// Decides on `request` at time `now_millis`.
    fn authenticate(&self, request: &Request, now_millis: u64) -> Result<Grant, Denial> {
        if let Some(keys) = &self.api_keys {
            if let Some(key) = request.header(&keys.header) {
                let key = key.trim();
                if key.is_empty() || key.len() > MAX_API_KEY_LEN {
                    return Err(Denial::UnknownApiKey);
                }
                let subject =
                    kv::get(&format!("{}{key}", keys.kv_prefix)).ok_or(Denial::UnknownApiKey)?;
                return Ok(Grant {
                    credential: Credential::ApiKey,
                    subject: Some(subject),
                });
            }
        }
        if let Some(jwt) = &self.jwt {
            if let Some(token) = bearer_token(request) {
                let subject = jwt.verify(token, now_millis)?;
                return Ok(Grant {
                    credential: Credential::Bearer,
                    subject: subject.map(String::into_bytes),
                });
            }
        }
        Err(Denial::MissingCredentials)
    }
}

#[parapet_sdk::hooks]
impl Plugin for Auth {
    fn new(config: &str) -> Result<Self, String> {
        let config: Config =
            serde_json::from_str(config).map_err(|e| format!("invalid auth config: {e}"))?;

        let api_keys = match (config.kv_prefix, config.api_key_header) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(
                    "api_key_header is set but kv_prefix is not: API keys need kv_prefix".into(),
                )
            }
            (Some(prefix), _) if prefix.is_empty() => {
                return Err(
                    "kv_prefix must not be empty: every KV entry would count as an API key".into(),
                )
            }
            (Some(kv_prefix), header) => {
                let header = header
                    .unwrap_or_else(|| "x-api-key".into())
                    .to_ascii_lowercase();
                if !is_header_name(&header) {
                    return Err(format!(
                        "api_key_header {header:?} is not a valid header name"
                    ));
                }
                if header == "authorization" || header == SUBJECT_HEADER {
                    return Err(format!("api_key_header may not be {header:?}"));
                }
                Some(ApiKeys { header, kv_prefix })
            }
        };

        if let Some(jwt) = &config.jwt {
            if jwt.secret.len() < MIN_SECRET_LEN {
                return Err(format!(
                    "jwt.secret is {} bytes long; HS256 needs at least {MIN_SECRET_LEN} (RFC 7518 section 3.2)",
                    jwt.secret.len()
                ));
            }
            if jwt.audience.is_empty() {
                return Err("jwt.audience must not be empty".into());
            }
        }

        if api_keys.is_none() && config.jwt.is_none() {
            return Err(
                "no authentication method configured: set kv_prefix (API keys) and/or jwt".into(),
            );
        }

        let bypass = config
            .bypass_paths
            .iter()
            .map(|p| parse_pattern(p))
            .collect::<Result<_, _>>()?;
        Ok(Auth {
            api_keys,
            jwt: config.jwt,
            bypass,
            strip_credentials: config.strip_credentials,
        })
    }

    fn on_viewer_request(&mut self, mut request: Request) -> RequestAction {
        // Only this plugin may say who the viewer is.
        request.remove_header(SUBJECT_HEADER);

        if self.bypass.iter().any(|p| p.matches(&request.path)) && is_plain_path(&request.path) {
            return RequestAction::Continue(request);
        }

        match self.authenticate(&request, parapet_sdk::now_millis()) {
            Ok(grant) => {
                metrics::counter_add("auth_allowed", 1);
                if let Some(subject) = &grant.subject {
                    let subject = percent_encode(subject, SUBJECT_ESCAPES).to_string();
                    request.set_header(SUBJECT_HEADER, &subject);
                }
                if self.strip_credentials {
                    match grant.credential {
                        Credential::ApiKey => {
                            if let Some(keys) = &self.api_keys {
                                request.remove_header(&keys.header);
                            }
                        }
                        Credential::Bearer => {
                            request.remove_header("authorization");
                        }
                    }
                }
                RequestAction::Continue(request)
            }
            Err(denial) => {
                metrics::counter_add("auth_denied", 1);
                log::info(&format!(
                    "denied {} {}: {}",
                    request.method,
                    request.path,
                    denial.description()
                ));
                RequestAction::Respond(denial.response())
            }
        }
    }
}

export_plugin!(Auth);
