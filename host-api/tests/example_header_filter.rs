//! The `header-filter` example plugin through the real host: request allow
//! and deny lists, response stripping, security headers, and configs it
//! refuses.

mod common;

use std::sync::Arc;

use common::Blocking;
use parapet_host::{BodyAccess, Flow, Plugin, Request, Response};

/// Runs `on-viewer-request` of `plugin` on `request`; the request must pass.
fn filter_request(plugin: &Arc<Plugin>, request: Request) -> Request {
    match common::session()
        .on_viewer_request(std::slice::from_ref(plugin), request)
        .block()
    {
        Flow::Continue(request) => request,
        Flow::Respond(response) => panic!("the request was answered with {}", response.status),
    }
}

/// Runs `on-viewer-response` of `plugin` on `response` to `request`.
fn filter_response(plugin: &Arc<Plugin>, request: &Request, response: Response) -> Response {
    match common::session()
        .on_viewer_response(
            std::slice::from_ref(plugin),
            request,
            response,
            BodyAccess::Held,
        )
        .block()
    {
        Flow::Continue(response) => response,
        Flow::Respond(response) => panic!("the response was replaced with {}", response.status),
    }
}

/// Header names of `headers`, in order.
fn names(headers: &[(String, String)]) -> Vec<&str> {
    headers.iter().map(|(n, _)| n.as_str()).collect()
}

const VIEWER_HEADERS: &[(&str, &str)] = &[
    ("accept", "text/html"),
    // Mixed case in, lower case out: the host lower-cases plugin output.
    ("Accept-Encoding", "gzip"),
    ("user-agent", "test"),
    ("cookie", "session=1"),
    ("x-debug", "1"),
    ("x-other", "o"),
    ("accept", "application/json"),
];

#[test]
fn the_allow_list_keeps_only_listed_request_headers() {
    let plugin = common::load(
        "header-filter",
        r#"{"request": {"allow": ["ACCEPT", "accept-encoding", "cookie"]}}"#,
    );
    let request = filter_request(&plugin, common::get("/a?b=c", VIEWER_HEADERS));
    assert_eq!(
        names(&request.headers),
        ["accept", "accept-encoding", "cookie", "accept"]
    );
    assert_eq!(request.headers[3].1, "application/json");
    // Not headers: untouched.
    assert_eq!(
        (request.authority.as_str(), request.path.as_str()),
        ("example.com", "/a")
    );
    assert_eq!(request.query.as_deref(), Some("b=c"));
}

#[test]
fn the_deny_list_removes_listed_request_headers() {
    let plugin = common::load(
        "header-filter",
        r#"{"request": {"deny": ["X-Debug", "cookie"]}}"#,
    );
    let request = filter_request(&plugin, common::get("/", VIEWER_HEADERS));
    assert_eq!(
        names(&request.headers),
        [
            "accept",
            "accept-encoding",
            "user-agent",
            "x-other",
            "accept"
        ]
    );
}

#[test]
fn deny_applies_after_allow() {
    let config =
        r#"{"request": {"allow": ["accept", "user-agent", "cookie"], "deny": ["cookie"]}}"#;
    let plugin = common::load("header-filter", config);
    let request = filter_request(&plugin, common::get("/", VIEWER_HEADERS));
    assert_eq!(names(&request.headers), ["accept", "user-agent", "accept"]);
}

#[test]
fn listed_response_headers_are_stripped() {
    let plugin = common::load(
        "header-filter",
        r#"{"response": {"strip": ["server", "X-Powered-By"]}}"#,
    );
    let origin = common::response(
        200,
        &[
            ("server", "nginx/1.2"),
            ("content-type", "text/plain"),
            ("x-powered-by", "PHP"),
            ("Server", "again"),
        ],
    );
    let response = filter_response(&plugin, &common::get("/", &[]), origin);
    assert_eq!(names(&response.headers), ["content-type"]);
    assert_eq!(response.body.as_deref(), Some(&b"hello"[..]));
    // Requests are left alone without a request section.
    let request = filter_request(&plugin, common::get("/", VIEWER_HEADERS));
    assert_eq!(request.headers.len(), VIEWER_HEADERS.len());
}

#[test]
fn security_headers_are_added() {
    let config = r#"{"response": {"security_headers": true, "hsts_max_age": 600, "csp": "default-src 'self'"}}"#;
    let plugin = common::load("header-filter", config);
    let response = filter_response(
        &plugin,
        &common::get("/", &[]),
        common::response(200, &[("content-type", "text/html")]),
    );
    let h = |name| common::header(&response.headers, name);
    assert_eq!(h("strict-transport-security"), Some("max-age=600"));
    assert_eq!(h("x-content-type-options"), Some("nosniff"));
    assert_eq!(h("x-frame-options"), Some("DENY"));
    assert_eq!(
        h("referrer-policy"),
        Some("strict-origin-when-cross-origin")
    );
    assert_eq!(h("content-security-policy"), Some("default-src 'self'"));
    assert_eq!(h("content-type"), Some("text/html"));
}

#[test]
fn hsts_defaults_to_a_year_and_is_sent_over_https_only() {
    let plugin = common::load(
        "header-filter",
        r#"{"response": {"security_headers": true}}"#,
    );
    let response = filter_response(&plugin, &common::get("/", &[]), common::response(200, &[]));
    assert_eq!(
        common::header(&response.headers, "strict-transport-security"),
        Some("max-age=31536000")
    );
    assert_eq!(
        common::header(&response.headers, "content-security-policy"),
        None
    );

    let mut plain = common::get("/", &[]);
    plain.scheme = "http".into();
    let response = filter_response(&plugin, &plain, common::response(200, &[]));
    assert_eq!(
        common::header(&response.headers, "strict-transport-security"),
        None
    );
    assert_eq!(
        common::header(&response.headers, "x-frame-options"),
        Some("DENY")
    );
}

#[test]
fn no_security_headers_unless_asked() {
    let plugin = common::load("header-filter", "{}");
    let response = filter_response(
        &plugin,
        &common::get("/", &[]),
        common::response(200, &[("etag", "\"1\"")]),
    );
    assert_eq!(names(&response.headers), ["etag"]);
}

#[test]
fn origin_security_headers_are_kept_unless_overwrite() {
    let origin = || {
        common::response(
            200,
            &[
                ("x-frame-options", "SAMEORIGIN"),
                ("Content-Security-Policy", "default-src *"),
                ("server", "x"),
            ],
        )
    };
    let config = r#"{"response": {"strip": ["server"], "security_headers": true, "csp": "default-src 'self'"}}"#;
    let plugin = common::load("header-filter", config);
    let response = filter_response(&plugin, &common::get("/", &[]), origin());
    assert_eq!(
        common::header(&response.headers, "x-frame-options"),
        Some("SAMEORIGIN")
    );
    assert_eq!(
        common::header(&response.headers, "content-security-policy"),
        Some("default-src *")
    );
    assert_eq!(
        common::header(&response.headers, "x-content-type-options"),
        Some("nosniff")
    );
    assert_eq!(
        response
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("x-frame-options"))
            .count(),
        1
    );

    let config = r#"{"response": {"security_headers": true, "csp": "default-src 'self'", "overwrite": true}}"#;
    let plugin = common::load("header-filter", config);
    let response = filter_response(&plugin, &common::get("/", &[]), origin());
    assert_eq!(
        common::header(&response.headers, "x-frame-options"),
        Some("DENY")
    );
    assert_eq!(
        common::header(&response.headers, "content-security-policy"),
        Some("default-src 'self'")
    );
    assert_eq!(
        response
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("content-security-policy"))
            .count(),
        1
    );
    assert_eq!(common::header(&response.headers, "server"), Some("x"));
}

#[test]
fn invalid_configs_are_refused_at_load() {
    let cases = [
        (r#"{"requests": {}}"#, "unknown field `requests`"),
        (
            r#"{"request": {"allow": ["accept"], "strip": []}}"#,
            "unknown field `strip`",
        ),
        (
            r#"{"response": {"security-headers": true}}"#,
            "unknown field `security-headers`",
        ),
        (r#"{"request": {"allow": []}}"#, "request.allow is empty"),
        (
            r#"{"request": {"allow": ["bad header"]}}"#,
            r#"request.allow: "bad header" is not a valid header name"#,
        ),
        (
            r#"{"request": {"deny": ["x-a:b"]}}"#,
            r#"request.deny: "x-a:b" is not a valid header name"#,
        ),
        (
            r#"{"response": {"strip": [""]}}"#,
            r#"response.strip: "" is not a valid header name"#,
        ),
        (
            r#"{"response": {"hsts_max_age": 60}}"#,
            "hsts_max_age is set but security_headers is not true",
        ),
        (
            r#"{"response": {"csp": "a\r\nset-cookie: x=1"}}"#,
            "response.csp must be a non-empty header value",
        ),
        (
            r#"{"response": {"csp": " "}}"#,
            "response.csp must be a non-empty header value",
        ),
        (
            r#"{"response": {"hsts_max_age": -1, "security_headers": true}}"#,
            "invalid header-filter config",
        ),
    ];
    common::assert_refusals("header-filter", &cases);
}
