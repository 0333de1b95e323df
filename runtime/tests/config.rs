//! Reading and validating edge configuration files.

use std::path::PathBuf;

use parapet_config::{ConfigError, EdgeConfig, QueryKey};

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/edge.toml")
}

/// The example config with `from` replaced by `to` (which must occur).
fn variant(from: &str, to: &str) -> String {
    let text = std::fs::read_to_string(example()).unwrap();
    assert!(text.contains(from), "the example has no {from:?}");
    text.replacen(from, to, 1)
}

/// Parses and validates `text`; returns the refusal.
fn refusal(text: &str) -> ConfigError {
    match EdgeConfig::parse(text).and_then(|c| c.validate().map(|()| c)) {
        Ok(_) => panic!("accepted"),
        Err(e) => e,
    }
}

#[test]
fn the_documented_example_is_valid() {
    let config = EdgeConfig::from_file(&example()).unwrap();
    assert_eq!(config.pop.id, "demo1");
    let dist = &config.distributions[0];
    assert_eq!(dist.plugins.len(), 4);
    assert_eq!(dist.plugins[0].config["mode"], "block");
    assert_eq!(dist.behaviors[1].viewer_request, ["waf", "rewrite", "auth"]);
    assert_eq!(dist.behaviors[0].cache.key.query, QueryKey::None);
    assert_eq!(
        dist.behaviors[1].cache.max_ttl, 31_536_000,
        "defaults fill what is not set"
    );
}

#[test]
fn refusals_name_the_file_the_field_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.toml");
    std::fs::write(&path, variant("min_ttl = 60", "min_ttl = \"a minute\"")).unwrap();
    let err = EdgeConfig::from_file(&path).unwrap_err();
    assert_eq!(err.file.as_deref(), Some(path.as_path()));
    assert_eq!(err.field, "distribution[0].behavior[0].cache.min_ttl");
    assert!(
        err.reason.contains("invalid type: string \"a minute\""),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with(&format!("{}: distribution[0]", path.display())),
        "{err}"
    );

    let missing = EdgeConfig::from_file(&dir.path().join("none.toml")).unwrap_err();
    assert!(missing.reason.starts_with("cannot read"), "{missing}");
}

#[test]
fn type_errors_and_unknown_fields_are_refused_with_their_path() {
    let err = refusal(&variant(
        "memory_bytes = 268435456",
        "memory_byte = 268435456",
    ));
    assert_eq!(err.field, "cache.memory_byte");
    assert!(
        err.reason.starts_with("unknown field `memory_byte`"),
        "{err}"
    );

    let err = refusal(&variant(
        "address = \"127.0.0.1:8080\"",
        "address = \"localhost\"",
    ));
    assert_eq!(err.field, "listener[0].address");

    let err = refusal(&variant(
        "failure = \"fail-closed\"",
        "failure = \"closed\"",
    ));
    assert_eq!(err.field, "distribution[0].plugin[0].failure");

    let err = refusal(&variant(
        "ip_deny = [\"192.0.2.0/24\"]",
        "ip_deny = [\"192.0.2.0/33\"]",
    ));
    assert_eq!(err.field, "distribution[0].behavior[1].ip_deny[0]");

    let err = refusal("[pop\nid = 1");
    assert_eq!(err.field, "");
    assert!(err.reason.contains("line 1"), "{err}");
}

#[test]
fn semantic_errors_are_refused_with_their_path() {
    let cases = [
        (
            ("id = \"demo1\"", "id = \"\""),
            "pop.id",
            "must not be empty",
        ),
        (
            (
                "viewer_request = [\"waf\", \"rewrite\", \"auth\"]",
                "viewer_request = [\"waf\", \"nope\"]",
            ),
            "distribution[0].behavior[1].viewer_request[1]",
            "no plugin named `nope` in this distribution",
        ),
        (
            ("path = \"*\"", "path = \"/*\""),
            "distribution[0].behavior",
            "a default behavior",
        ),
        (
            ("path = \"/static/*\"", "path = \"static/*\""),
            "distribution[0].behavior[0].path",
            "must start with",
        ),
        (
            ("min_ttl = 60", "min_ttl = 100000"),
            "distribution[0].behavior[0].cache",
            "min_ttl <= default_ttl",
        ),
        (
            (
                "key = { query = \"none\" }",
                "key = { query = \"none\" }, ranges = \"some\"",
            ),
            "distribution[0].behavior[0].cache.ranges",
            "unknown variant `some`, expected `whole` or `parts`",
        ),
        (
            ("query_params = [\"page\"]", "query_params = []"),
            "distribution[0].behavior[1].cache.key.query_params",
            "needs at least one parameter",
        ),
        (
            (
                "request_headers_deny = [\"x-debug\"]",
                "request_headers_deny = [\"x debug\"]",
            ),
            "distribution[0].behavior[1].request_headers_deny[0]",
            "not a valid header name",
        ),
        (
            ("url = \"http://127.0.0.1:8081\"", "url = \"ftp://x\""),
            "distribution[0].origin[0].url",
            "http:// or https://",
        ),
        (
            ("\"*.cdn.example.com\"", "\"bad_host!\""),
            "distribution[0].domains[1]",
            "is not a host name",
        ),
        (
            ("name = \"auth\"", "name = \"waf\""),
            "distribution[0].plugin[1].name",
            "used by another plugin",
        ),
        (
            ("token = \"change-me\"", "token = \"x\"\ntoken_file = \"t\""),
            "admin",
            "not both",
        ),
        (
            ("address = \"127.0.0.1:9901\"", "address = \"0.0.0.0:9901\""),
            "admin.token",
            "is the example configuration's token `change-me`; the admin listener on \
             0.0.0.0:9901 is reachable beyond loopback",
        ),
        (
            (
                "address = \"127.0.0.1:9901\"   # /metrics, /healthz, purge and prewarm\ntoken = \"change-me\"",
                "address = \"[2001:db8::1]:9901\"\ntoken = \"0123456789abcde\"",
            ),
            "admin.token",
            "has 15 characters; the admin listener on [2001:db8::1]:9901 is reachable beyond \
             loopback: its token needs at least 16",
        ),
    ];
    for ((from, to), field, reason) in cases {
        let err = refusal(&variant(from, to));
        assert_eq!(err.field, field, "{from} -> {to}: {err}");
        assert!(err.reason.contains(reason), "{from} -> {to}: {err}");
    }
}

#[test]
fn a_domain_is_served_by_one_distribution_only() {
    let text = std::fs::read_to_string(example()).unwrap();
    let second = "\n[[distribution]]\nid = \"other\"\ncustomer = \"b\"\ndomains = [\"WWW.example.com\"]\n\
                  [[distribution.origin]]\nurl = \"http://127.0.0.1:9\"\n[[distribution.behavior]]\npath = \"*\"\n";
    let err = refusal(&format!("{text}{second}"));
    assert_eq!(err.field, "distribution[1].domains[0]");
    assert!(
        err.reason.contains("served by another distribution"),
        "{err}"
    );
}

/// The example's token is refused beyond loopback only: on loopback (the
/// example, `make demo`) any token does, and beyond it a long one.
#[test]
fn admin_tokens_beyond_loopback_are_long_and_not_the_examples() {
    for (address, token) in [
        ("127.0.0.1:9901", "change-me"),
        ("[::1]:9901", "x"),
        ("0.0.0.0:9901", "a-secret-of-16-c"),
    ] {
        let text = variant(
            "address = \"127.0.0.1:9901\"   # /metrics, /healthz, purge and prewarm\ntoken = \"change-me\"",
            &format!("address = \"{address}\"\ntoken = \"{token}\""),
        );
        let config = EdgeConfig::parse(&text).unwrap();
        assert_eq!(config.validate(), Ok(()), "{address} {token}");
    }
    // Without a token the privileged endpoints are off: nothing to refuse.
    let text = variant(
        "address = \"127.0.0.1:9901\"   # /metrics, /healthz, purge and prewarm\ntoken = \"change-me\"",
        "address = \"0.0.0.0:9901\"",
    );
    assert_eq!(EdgeConfig::parse(&text).unwrap().validate(), Ok(()));
}
