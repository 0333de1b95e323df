//! The `auth` example plugin through the real host: API keys from the KV
//! store, HS256 JWTs signed here, bypass paths, 401 challenges, and configs
//! it refuses.

mod common;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use parapet_host::{KvStore, Plugin, PluginOptions, Response};
use sha2::Sha256;

const SECRET: &str = "0123456789abcdef0123456789abcdef-test-secret";

/// API keys and JWTs, bypassing `/public/*` and `/health`.
const CONFIG: &str = r#"{
    "api_key_header": "x-api-key",
    "kv_prefix": "apikey:",
    "jwt": {"secret": "0123456789abcdef0123456789abcdef-test-secret", "audience": "my-api", "leeway_seconds": 30},
    "bypass_paths": ["/public/*", "/health"]
}"#;

fn load(config: &str) -> Arc<Plugin> {
    common::load_with(
        "auth",
        PluginOptions {
            config: config.into(),
            kv: Arc::new(KvStore::from_entries([
                ("apikey:good", "alice"),
                ("apikey:spaced", "bob smith"),
            ])),
            ..Default::default()
        },
    )
}

/// Checks `response` is a 401 for an invalid credential, saying `why`.
fn assert_invalid_token(response: &Response, why: &str) {
    assert_eq!(response.status, 401);
    assert_eq!(
        common::header(&response.headers, "www-authenticate"),
        Some(
            format!(r#"Bearer realm="parapet", error="invalid_token", error_description="{why}""#)
                .as_str()
        )
    );
    assert_eq!(
        common::header(&response.headers, "content-type"),
        Some("text/plain; charset=utf-8")
    );
    let body = String::from_utf8_lossy(response.body.as_deref().unwrap_or_default()).into_owned();
    assert!(body.contains(why), "body {body:?} should say {why:?}");
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// Unpadded base64url (RFC 4648 §5), as JWTs use.
fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// HMAC-SHA256 of `message` with `key`.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// A JWT with JOSE header `header` and `claims`, signed with `secret`.
fn sign(header: &str, claims: &serde_json::Value, secret: &str) -> String {
    let signing_input = format!(
        "{}.{}",
        b64url(header.as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let signature = hmac_sha256(secret.as_bytes(), signing_input.as_bytes());
    format!("{signing_input}.{}", b64url(&signature))
}

/// An HS256 JWT with `claims`, signed with the configured secret.
fn jwt(claims: serde_json::Value) -> String {
    sign(r#"{"alg":"HS256","typ":"JWT"}"#, &claims, SECRET)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[test]
fn a_known_api_key_passes_with_its_subject() {
    let plugin = load(CONFIG);
    let request = common::continued(common::viewer_request(
        &plugin,
        common::get("/api/orders", &[("x-api-key", "good"), ("accept", "*/*")]),
    ));
    assert_eq!(
        common::header(&request.headers, "x-auth-subject"),
        Some("alice")
    );
    // Credentials stay for the origin unless strip_credentials is set.
    assert_eq!(common::header(&request.headers, "x-api-key"), Some("good"));
    assert_eq!(common::header(&request.headers, "accept"), Some("*/*"));
}

#[test]
fn a_subject_that_is_not_a_plain_token_is_percent_encoded() {
    let plugin = load(CONFIG);
    let request = common::continued(common::viewer_request(
        &plugin,
        common::get("/api", &[("x-api-key", "spaced")]),
    ));
    assert_eq!(
        common::header(&request.headers, "x-auth-subject"),
        Some("bob%20smith")
    );
}

#[test]
fn an_unknown_api_key_is_refused() {
    let plugin = load(CONFIG);
    let response = common::answered(common::viewer_request(
        &plugin,
        common::get("/api", &[("x-api-key", "bad")]),
    ));
    assert_invalid_token(&response, "unknown API key");
    // The key header decides even when a valid JWT is also present.
    let token = jwt(serde_json::json!({"sub": "carol", "aud": "my-api", "exp": now_secs() + 600}));
    let response = common::answered(common::viewer_request(
        &plugin,
        common::get(
            "/api",
            &[("x-api-key", "bad"), ("authorization", &bearer(&token))],
        ),
    ));
    assert_invalid_token(&response, "unknown API key");
}

#[test]
fn a_forged_subject_header_is_removed() {
    let plugin = load(CONFIG);
    let request = common::continued(common::viewer_request(
        &plugin,
        common::get("/public/logo.png", &[("x-auth-subject", "admin")]),
    ));
    assert_eq!(common::header(&request.headers, "x-auth-subject"), None);
    let request = common::continued(common::viewer_request(
        &plugin,
        common::get(
            "/api",
            &[("x-auth-subject", "admin"), ("x-api-key", "good")],
        ),
    ));
    let subjects: Vec<_> = request
        .headers
        .iter()
        .filter(|(n, _)| n == "x-auth-subject")
        .collect();
    assert_eq!(
        subjects,
        [&("x-auth-subject".to_string(), "alice".to_string())]
    );
}

#[test]
fn a_valid_jwt_passes_with_its_subject() {
    let plugin = load(CONFIG);
    let token = jwt(
        serde_json::json!({"sub": "carol", "aud": "my-api", "exp": 4_102_444_800_i64, "nbf": now_secs() - 60}),
    );
    let request = common::continued(common::viewer_request(
        &plugin,
        common::get("/api", &[("authorization", &bearer(&token))]),
    ));
    assert_eq!(
        common::header(&request.headers, "x-auth-subject"),
        Some("carol")
    );
    assert_eq!(
        common::header(&request.headers, "authorization"),
        Some(bearer(&token).as_str())
    );

    // `aud` may be an array, and the scheme is case-insensitive.
    let token = jwt(
        serde_json::json!({"sub": "dave", "aud": ["other", "my-api"], "exp": now_secs() + 600}),
    );
    let request = common::continued(common::viewer_request(
        &plugin,
        common::get("/api", &[("authorization", &format!("bearer {token}"))]),
    ));
    assert_eq!(
        common::header(&request.headers, "x-auth-subject"),
        Some("dave")
    );
}

#[test]
fn leeway_tolerates_small_clock_skew() {
    let plugin = load(CONFIG);
    let now = now_secs();
    let token = jwt(serde_json::json!({"aud": "my-api", "exp": now - 5, "nbf": now + 5}));
    let request = common::continued(common::viewer_request(
        &plugin,
        common::get("/api", &[("authorization", &bearer(&token))]),
    ));
    // No `sub`: the request passes without a subject.
    assert_eq!(common::header(&request.headers, "x-auth-subject"), None);
}

#[test]
fn an_expired_jwt_is_refused() {
    let plugin = load(CONFIG);
    let token = jwt(serde_json::json!({"sub": "carol", "aud": "my-api", "exp": now_secs() - 120}));
    let response = common::answered(common::viewer_request(
        &plugin,
        common::get("/api", &[("authorization", &bearer(&token))]),
    ));
    assert_invalid_token(&response, "token expired");
}

#[test]
fn a_jwt_without_expiry_is_refused() {
    let plugin = load(CONFIG);
    let token = jwt(serde_json::json!({"sub": "carol", "aud": "my-api"}));
    let response = common::answered(common::viewer_request(
        &plugin,
        common::get("/api", &[("authorization", &bearer(&token))]),
    ));
    assert_invalid_token(&response, "token has no expiry (exp)");
}

#[test]
fn a_jwt_not_yet_valid_is_refused() {
    let plugin = load(CONFIG);
    let now = now_secs();
    let token = jwt(
        serde_json::json!({"sub": "carol", "aud": "my-api", "exp": now + 7200, "nbf": now + 3600}),
    );
    let response = common::answered(common::viewer_request(
        &plugin,
        common::get("/api", &[("authorization", &bearer(&token))]),
    ));
    assert_invalid_token(&response, "token not yet valid");
}

#[test]
fn a_jwt_for_another_audience_is_refused() {
    let plugin = load(CONFIG);
    let exp = now_secs() + 600;
    for claims in [
        serde_json::json!({"aud": "other-api", "exp": exp}),
        serde_json::json!({"aud": ["a", "b"], "exp": exp}),
        serde_json::json!({"exp": exp}),
    ] {
        let response = common::answered(common::viewer_request(
            &plugin,
            common::get("/api", &[("authorization", &bearer(&jwt(claims)))]),
        ));
        assert_invalid_token(&response, "wrong audience");
    }
}

#[test]
fn a_bad_signature_is_refused() {
    let plugin = load(CONFIG);
    let claims = serde_json::json!({"sub": "carol", "aud": "my-api", "exp": now_secs() + 600});
    let forged = sign(
        r#"{"alg":"HS256"}"#,
        &claims,
        "another-secret-of-at-least-32-bytes!!",
    );
    let response = common::answered(common::viewer_request(
        &plugin,
        common::get("/api", &[("authorization", &bearer(&forged))]),
    ));
    assert_invalid_token(&response, "bad signature");

    // A valid signature over other claims does not carry over.
    let good = jwt(claims);
    let evil_claims = b64url(br#"{"sub":"admin","aud":"my-api","exp":4102444800}"#);
    let mut parts: Vec<&str> = good.split('.').collect();
    parts[1] = &evil_claims;
    let response = common::answered(common::viewer_request(
        &plugin,
        common::get("/api", &[("authorization", &bearer(&parts.join(".")))]),
    ));
    assert_invalid_token(&response, "bad signature");
}

#[test]
fn algorithms_other_than_hs256_are_refused() {
    let plugin = load(CONFIG);
    let claims = serde_json::json!({"sub": "admin", "aud": "my-api", "exp": now_secs() + 600});
    let unsigned = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT"}"#),
        b64url(claims.to_string().as_bytes())
    );
    let response = common::answered(common::viewer_request(
        &plugin,
        common::get("/api", &[("authorization", &bearer(&unsigned))]),
    ));
    assert_invalid_token(&response, "unsupported algorithm, only HS256 is accepted");

    // Signed with the right secret, but announcing another algorithm.
    let hs512 = sign(r#"{"alg":"HS512"}"#, &claims, SECRET);
    let response = common::answered(common::viewer_request(
        &plugin,
        common::get("/api", &[("authorization", &bearer(&hs512))]),
    ));
    assert_invalid_token(&response, "unsupported algorithm, only HS256 is accepted");
}

#[test]
fn malformed_tokens_are_refused() {
    let plugin = load(CONFIG);
    let claims = serde_json::json!({"aud": "my-api", "exp": now_secs() + 600});
    let critical = sign(r#"{"alg":"HS256","crit":["exp"]}"#, &claims, SECRET);
    let string_exp = jwt(serde_json::json!({"aud": "my-api", "exp": "tomorrow"}));
    for token in [
        "not-a-jwt",
        "a.b",
        "a.b.c.d",
        "!!!.???.***",
        critical.as_str(),
        string_exp.as_str(),
    ] {
        let response = common::answered(common::viewer_request(
            &plugin,
            common::get("/api", &[("authorization", &bearer(token))]),
        ));
        assert_invalid_token(&response, "malformed token");
    }
}

#[test]
fn missing_credentials_get_a_bare_challenge() {
    let plugin = load(CONFIG);
    for headers in [
        vec![],
        vec![("authorization", "Basic YWxpY2U6c2VjcmV0")],
        vec![("authorization", "Bearer ")],
    ] {
        let response = common::answered(common::viewer_request(
            &plugin,
            common::get("/api", &headers),
        ));
        assert_eq!(response.status, 401);
        assert_eq!(
            common::header(&response.headers, "www-authenticate"),
            Some(r#"Bearer realm="parapet""#)
        );
        assert_eq!(
            common::header(&response.headers, "content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(
            response.body.as_deref(),
            Some(&b"401 Unauthorized: missing credentials\n"[..])
        );
    }
}

#[test]
fn bypass_paths_need_no_credentials() {
    let plugin = load(CONFIG);
    common::continued(common::viewer_request(
        &plugin,
        common::get("/public/logo.png", &[]),
    ));
    common::continued(common::viewer_request(
        &plugin,
        common::get("/public/a/b?x=1", &[]),
    ));
    common::continued(common::viewer_request(&plugin, common::get("/health", &[])));
    // Exact paths are exact, prefixes need their slash, and dot segments or
    // encoded slashes never bypass.
    for path in [
        "/health/x",
        "/public",
        "/publicity",
        "/public/../admin",
        "/public/%2e%2E/admin",
        "/public%2Fx",
    ] {
        let response = common::answered(common::viewer_request(&plugin, common::get(path, &[])));
        assert_eq!(response.status, 401, "{path}");
    }
}

#[test]
fn strip_credentials_removes_the_credential_used() {
    let plugin = load(&CONFIG.replacen('{', r#"{"strip_credentials": true,"#, 1));
    let request = common::continued(common::viewer_request(
        &plugin,
        common::get(
            "/api",
            &[("x-api-key", "good"), ("authorization", "Basic eA==")],
        ),
    ));
    assert_eq!(common::header(&request.headers, "x-api-key"), None);
    assert_eq!(
        common::header(&request.headers, "authorization"),
        Some("Basic eA==")
    );
    assert_eq!(
        common::header(&request.headers, "x-auth-subject"),
        Some("alice")
    );

    let token = jwt(serde_json::json!({"sub": "carol", "aud": "my-api", "exp": now_secs() + 600}));
    let request = common::continued(common::viewer_request(
        &plugin,
        common::get("/api", &[("authorization", &bearer(&token))]),
    ));
    assert_eq!(common::header(&request.headers, "authorization"), None);
    assert_eq!(
        common::header(&request.headers, "x-auth-subject"),
        Some("carol")
    );
}

#[test]
fn either_method_works_alone() {
    let api_keys_only = load(r#"{"kv_prefix": "apikey:"}"#);
    common::continued(common::viewer_request(
        &api_keys_only,
        common::get("/", &[("x-api-key", "good")]),
    ));
    let token = jwt(serde_json::json!({"aud": "my-api", "exp": now_secs() + 600}));
    // Without a jwt section, a bearer token is no credential.
    let response = common::answered(common::viewer_request(
        &api_keys_only,
        common::get("/", &[("authorization", &bearer(&token))]),
    ));
    assert_eq!(
        common::header(&response.headers, "www-authenticate"),
        Some(r#"Bearer realm="parapet""#)
    );

    let jwt_only = load(&format!(
        r#"{{"jwt": {{"secret": "{SECRET}", "audience": "my-api"}}}}"#
    ));
    common::continued(common::viewer_request(
        &jwt_only,
        common::get("/", &[("authorization", &bearer(&token))]),
    ));
    let response = common::answered(common::viewer_request(
        &jwt_only,
        common::get("/", &[("x-api-key", "good")]),
    ));
    assert_eq!(
        common::header(&response.headers, "www-authenticate"),
        Some(r#"Bearer realm="parapet""#)
    );
}

#[test]
fn invalid_configs_are_refused_at_load() {
    let no_audience = format!(r#"{{"jwt": {{"secret": "{SECRET}"}}}}"#);
    let empty_audience = format!(r#"{{"jwt": {{"secret": "{SECRET}", "audience": ""}}}}"#);
    let cases = [
        ("{}", "no authentication method configured"),
        (
            r#"{"kv_prefix": "apikey:", "extra": 1}"#,
            "unknown field `extra`",
        ),
        (
            r#"{"jwt": {"secret": "x", "audience": "a", "issuer": "i"}}"#,
            "unknown field `issuer`",
        ),
        (
            r#"{"api_key_header": "x-api-key"}"#,
            "api_key_header is set but kv_prefix is not",
        ),
        (r#"{"kv_prefix": ""}"#, "kv_prefix must not be empty"),
        (
            r#"{"kv_prefix": "k:", "api_key_header": "x api key"}"#,
            "is not a valid header name",
        ),
        (
            r#"{"kv_prefix": "k:", "api_key_header": "Authorization"}"#,
            "api_key_header may not be \"authorization\"",
        ),
        (
            r#"{"jwt": {"secret": "short", "audience": "a"}}"#,
            "jwt.secret is 5 bytes long; HS256 needs at least 32",
        ),
        (no_audience.as_str(), "missing field `audience`"),
        (empty_audience.as_str(), "jwt.audience must not be empty"),
        (
            r#"{"kv_prefix": "k:", "bypass_paths": ["public/*"]}"#,
            "must start with `/`",
        ),
        (
            r#"{"kv_prefix": "k:", "bypass_paths": ["/a/*/b"]}"#,
            "may have `*` only at its end",
        ),
    ];
    common::assert_refusals("auth", &cases);
}
