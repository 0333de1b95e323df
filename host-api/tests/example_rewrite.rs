//! The `rewrite` example plugin, run through the real host.

mod common;

use std::sync::Arc;

use parapet_host::{Flow, Plugin, Request};

/// The configuration from the plugin's documentation.
const CONFIG: &str = r#"{
    "canonical_host": "example.com",
    "rules": [
        {"match": "prefix", "from": "/old/", "to": "/new/"},
        {"match": "regex", "from": "^/blog/(\\d+)/(.*)$", "to": "/posts/$2?id=$1", "redirect": 301},
        {"match": "prefix", "from": "/docs", "to": "/documentation", "redirect": 308},
        {"match": "regex", "from": "^/u/(?<user>[a-z]+)$", "to": "/users/${user}/profile"},
        {"match": "regex", "from": "^/search/([^/]+)$", "to": "/find?q=$1"}
    ]
}"#;

fn plugin() -> Arc<Plugin> {
    common::load("rewrite", CONFIG)
}

/// Status and `location` of a redirect answer.
fn redirect(flow: Flow<Request>) -> (u16, String) {
    let response = common::answered(flow);
    let location = common::header(&response.headers, "location")
        .expect("a location header")
        .to_string();
    (response.status, location)
}

#[test]
fn prefix_rewrite_changes_the_path_and_continues() {
    let plugin = plugin();
    let request = common::continued(common::viewer_request(
        &plugin,
        common::get("/old/a/b.html", &[("accept", "text/html")]),
    ));
    assert_eq!(request.path, "/new/a/b.html");
    assert_eq!(request.query, None);
    assert_eq!(request.authority, "example.com");
    assert_eq!(
        common::header(&request.headers, "accept"),
        Some("text/html")
    );
}

#[test]
fn rewrite_keeps_the_query_unless_the_target_sets_one() {
    let plugin = plugin();
    let kept = common::continued(common::viewer_request(
        &plugin,
        common::get("/old/page?x=1&y=2", &[]),
    ));
    assert_eq!(
        (kept.path.as_str(), kept.query.as_deref()),
        ("/new/page", Some("x=1&y=2"))
    );

    let replaced = common::continued(common::viewer_request(
        &plugin,
        common::get("/search/shoes?page=3", &[]),
    ));
    assert_eq!(
        (replaced.path.as_str(), replaced.query.as_deref()),
        ("/find", Some("q=shoes"))
    );
}

#[test]
fn regex_rewrite_expands_named_captures() {
    let plugin = plugin();
    let request = common::continued(common::viewer_request(
        &plugin,
        common::get("/u/alice", &[]),
    ));
    assert_eq!(request.path, "/users/alice/profile");
    // The regex is anchored: a longer path does not match and passes unchanged.
    let request = common::continued(common::viewer_request(
        &plugin,
        common::get("/u/alice/extra", &[]),
    ));
    assert_eq!(request.path, "/u/alice/extra");
}

#[test]
fn regex_redirect_uses_capture_groups_and_the_status() {
    let plugin = plugin();
    assert_eq!(
        redirect(common::viewer_request(
            &plugin,
            common::get("/blog/2024/hello-world", &[])
        )),
        (301, "/posts/hello-world?id=2024".to_string())
    );
    // The target sets a query: it replaces the request's.
    assert_eq!(
        redirect(common::viewer_request(
            &plugin,
            common::get("/blog/7/x?utm=feed", &[])
        )),
        (301, "/posts/x?id=7".to_string())
    );
}

#[test]
fn prefix_redirect_keeps_the_query_and_respects_segments() {
    let plugin = plugin();
    assert_eq!(
        redirect(common::viewer_request(&plugin, common::get("/docs", &[]))),
        (308, "/documentation".to_string())
    );
    assert_eq!(
        redirect(common::viewer_request(
            &plugin,
            common::get("/docs/intro?lang=ja&v=2", &[])
        )),
        (308, "/documentation/intro?lang=ja&v=2".to_string())
    );
    // `/docs` is a segment prefix: `/docsearch` is another path.
    let request = common::continued(common::viewer_request(
        &plugin,
        common::get("/docsearch", &[]),
    ));
    assert_eq!(request.path, "/docsearch");
}

#[test]
fn other_hosts_are_redirected_to_the_canonical_host() {
    let plugin = plugin();
    let mut request = common::get("/old/a?x=1", &[]);
    request.authority = "www.Example.com".into();
    // The canonical redirect comes first and keeps the original path and query.
    assert_eq!(
        redirect(common::viewer_request(&plugin, request)),
        (301, "https://example.com/old/a?x=1".to_string())
    );

    let mut request = common::get("/", &[]);
    request.scheme = "http".into();
    request.authority = "example.com:8080".into();
    assert_eq!(
        redirect(common::viewer_request(&plugin, request)),
        (301, "http://example.com/".to_string())
    );
}

#[test]
fn the_canonical_host_ignores_case_and_default_ports() {
    let plugin = plugin();
    for (scheme, authority) in [
        ("https", "EXAMPLE.COM"),
        ("https", "example.com:443"),
        ("http", "Example.Com:80"),
    ] {
        let mut request = common::get("/plain", &[]);
        request.scheme = scheme.into();
        request.authority = authority.into();
        let request = common::continued(common::viewer_request(&plugin, request));
        assert_eq!(request.path, "/plain", "{scheme}://{authority}");
    }
    // A default port of the other scheme is not a default port.
    let mut request = common::get("/plain", &[]);
    request.authority = "example.com:80".into();
    assert_eq!(
        redirect(common::viewer_request(&plugin, request)),
        (301, "https://example.com/plain".to_string())
    );
}

#[test]
fn requests_no_rule_matches_pass_unchanged() {
    let plugin = plugin();
    let original = common::get("/elsewhere/old/x?old=1", &[("cookie", "a=b")]);
    let request = common::continued(common::viewer_request(&plugin, original.clone()));
    assert_eq!(request, original);
}

#[test]
fn the_first_matching_rule_wins() {
    let plugin = common::load(
        "rewrite",
        r#"{"rules": [
            {"match": "prefix", "from": "/a/", "to": "/first/"},
            {"match": "regex", "from": "^/a/.*$", "to": "/second", "redirect": 302},
            {"match": "regex", "from": "^/b/(.*)$", "to": "/third/$1", "redirect": 307},
            {"match": "prefix", "from": "/b/", "to": "/fourth/"}
        ]}"#,
    );
    let request = common::continued(common::viewer_request(&plugin, common::get("/a/x", &[])));
    assert_eq!(request.path, "/first/x");
    assert_eq!(
        redirect(common::viewer_request(&plugin, common::get("/b/y", &[]))),
        (307, "/third/y".to_string())
    );
}

#[test]
fn without_a_canonical_host_any_host_is_served() {
    let plugin = common::load(
        "rewrite",
        r#"{"rules": [{"match": "prefix", "from": "/old/", "to": "/new/"}]}"#,
    );
    let mut request = common::get("/old/x", &[]);
    request.authority = "cdn.example.net".into();
    let request = common::continued(common::viewer_request(&plugin, request));
    assert_eq!(
        (request.authority.as_str(), request.path.as_str()),
        ("cdn.example.net", "/new/x")
    );
}

#[test]
fn an_invalid_regex_is_refused_with_the_rule_index() {
    let message = common::refusal(
        "rewrite",
        r#"{"rules": [
            {"match": "prefix", "from": "/a/", "to": "/b/"},
            {"match": "regex", "from": "^/blog/(\\d+", "to": "/posts/$1"}
        ]}"#,
    );
    assert_eq!(
        message,
        r#"rules[1]: invalid regex "^/blog/(\\d+": found open group without closing ')'"#
    );
}

#[test]
fn an_unsupported_redirect_status_is_refused() {
    let message = common::refusal(
        "rewrite",
        r#"{"rules": [{"match": "prefix", "from": "/a", "to": "/b", "redirect": 303}]}"#,
    );
    assert_eq!(
        message,
        "rules[0]: redirect status 303 is not supported: use 301, 302, 307 or 308"
    );
}

#[test]
fn other_invalid_configs_are_refused_precisely() {
    let message = common::refusal(
        "rewrite",
        r#"{"rules": [{"match": "prefix", "from": "/a", "to": "https://elsewhere.example/"}]}"#,
    );
    assert!(
        message.starts_with("rules[0]: a rewrite target must be a path starting with `/`"),
        "{message}"
    );

    let message = common::refusal(
        "rewrite",
        r#"{"rules": [{"match": "prefix", "from": "a", "to": "/b"}]}"#,
    );
    assert_eq!(
        message,
        "rules[0]: a prefix `from` must start with `/`, got \"a\""
    );

    let message = common::refusal(
        "rewrite",
        r#"{"rules": [{"match": "prefix", "from": "/a", "to": "/b\r\nx: y", "redirect": 302}]}"#,
    );
    assert!(message.starts_with("rules[0]: `to` "), "{message}");

    let message = common::refusal(
        "rewrite",
        r#"{"rules": [{"match": "glob", "from": "/a", "to": "/b"}]}"#,
    );
    assert!(
        message.starts_with("invalid rewrite configuration: unknown variant `glob`"),
        "{message}"
    );

    let message = common::refusal(
        "rewrite",
        r#"{"rules": [{"match": "prefix", "from": "/a", "to": "/b", "redirct": 301}]}"#,
    );
    assert!(message.contains("unknown field `redirct`"), "{message}");

    let message = common::refusal(
        "rewrite",
        r#"{"canonical_host": "https://www.example.com/"}"#,
    );
    assert!(
        message.starts_with("canonical_host \"https://www.example.com/\" is not a host name"),
        "{message}"
    );
}

#[test]
fn redirects_may_point_to_absolute_urls() {
    let plugin = common::load(
        "rewrite",
        r#"{"rules": [{"match": "prefix", "from": "/shop", "to": "https://shop.example.com", "redirect": 302}]}"#,
    );
    assert_eq!(
        redirect(common::viewer_request(
            &plugin,
            common::get("/shop/cart?id=9", &[])
        )),
        (302, "https://shop.example.com/cart?id=9".to_string())
    );
}
