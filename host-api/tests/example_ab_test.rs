//! The `ab-test` example plugin, run through the real host.

mod common;

use std::sync::Arc;

use common::Blocking;
use parapet_host::{BodyAccess, Flow, Plugin, Request, RequestSession, Response};

/// The configuration from the plugin's documentation.
const CONFIG: &str = r#"{
    "cookie": "ab_bucket",
    "paths": ["/landing*"],
    "variants": [
        {"name": "control", "weight": 50, "prefix": ""},
        {"name": "new", "weight": 50, "prefix": "/variants/new"}
    ],
    "cookie_max_age": 2592000
}"#;

/// What one request looked like at each step of its run.
struct Run {
    /// After `on-viewer-request`.
    viewer: Request,
    /// After `on-origin-request`.
    origin: Request,
    /// After `on-origin-response`.
    stored: Response,
    /// After `on-viewer-response`.
    answer: Response,
}

impl Run {
    /// The variant the request was put in, from `x-ab-variant`.
    fn variant(&self) -> Option<&str> {
        common::header(&self.viewer.headers, "x-ab-variant")
    }

    /// The `set-cookie` header sent to the viewer.
    fn set_cookie(&self) -> Option<&str> {
        common::header(&self.answer.headers, "set-cookie")
    }
}

/// Runs every hook of `plugin` for `request` in one session, as the edge
/// does on a cache miss.
fn run(plugin: &Arc<Plugin>, request: Request) -> Run {
    let chain = [plugin.clone()];
    let mut session: RequestSession = common::session();
    let Flow::Continue(viewer) = session.on_viewer_request(&chain, request).block() else {
        panic!("on-viewer-request answered");
    };
    let Flow::Continue(origin) = session.on_origin_request(&chain, viewer.clone()).block() else {
        panic!("on-origin-request answered");
    };
    let Flow::Continue(stored) = session
        .on_origin_response(
            &chain,
            &origin,
            common::response(200, &[]),
            BodyAccess::Held,
        )
        .block()
        .flow
    else {
        panic!("on-origin-response answered");
    };
    let Flow::Continue(answer) = session
        .on_viewer_response(&chain, &viewer, stored.clone(), BodyAccess::Held)
        .block()
    else {
        panic!("on-viewer-response answered");
    };
    Run {
        viewer,
        origin,
        stored,
        answer,
    }
}

#[test]
fn a_valid_cookie_sticks_and_routes_to_the_variant_path() {
    let plugin = common::load("ab-test", CONFIG);
    for _ in 0..10 {
        let run = run(
            &plugin,
            common::get(
                "/landing/spring?ref=mail",
                &[("cookie", "theme=dark; ab_bucket=new")],
            ),
        );
        assert_eq!(run.variant(), Some("new"));
        assert_eq!(
            run.viewer.path, "/landing/spring",
            "the viewer's URL (the cache key) is unchanged"
        );
        assert_eq!(run.origin.path, "/variants/new/landing/spring");
        assert_eq!(run.origin.query.as_deref(), Some("ref=mail"));
        assert_eq!(run.set_cookie(), None, "a valid cookie is not set again");
    }
    let run = run(
        &plugin,
        common::get("/landing", &[("cookie", "ab_bucket=control")]),
    );
    assert_eq!(run.variant(), Some("control"));
    assert_eq!(
        run.origin.path, "/landing",
        "an empty prefix leaves the origin path alone"
    );
    assert_eq!(run.set_cookie(), None);
}

#[test]
fn without_a_cookie_a_variant_is_drawn_and_the_cookie_set() {
    let plugin = common::load("ab-test", CONFIG);
    let run = run(&plugin, common::get("/landing", &[]));
    let variant = run.variant().expect("an x-ab-variant header");
    let (expected_path, cookie) = match variant {
        "control" => ("/landing", "ab_bucket=control"),
        "new" => ("/variants/new/landing", "ab_bucket=new"),
        other => panic!("unknown variant {other}"),
    };
    assert_eq!(run.origin.path, expected_path);
    assert_eq!(
        run.set_cookie(),
        Some(format!("{cookie}; Path=/; Max-Age=2592000; SameSite=Lax; HttpOnly; Secure").as_str())
    );
}

#[test]
fn the_cookie_is_not_secure_over_http() {
    let plugin = common::load(
        "ab-test",
        r#"{"variants": [{"name": "only", "weight": 1}], "cookie_max_age": 60}"#,
    );
    let mut request = common::get("/any/page", &[]);
    request.scheme = "http".into();
    let run = run(&plugin, request);
    assert_eq!(
        run.set_cookie(),
        Some("ab_bucket=only; Path=/; Max-Age=60; SameSite=Lax")
    );
}

#[test]
fn responses_vary_on_the_variant_header() {
    let plugin = common::load("ab-test", CONFIG);
    let run = run(
        &plugin,
        common::get("/landing", &[("cookie", "ab_bucket=new")]),
    );
    assert_eq!(
        common::header(&run.stored.headers, "vary"),
        Some("x-ab-variant")
    );

    // An existing `vary` entry is kept, and the header is not added twice.
    let chain = [plugin.clone()];
    let mut session = common::session();
    let Flow::Continue(request) = session
        .on_viewer_request(&chain, common::get("/landing", &[]))
        .block()
    else {
        panic!("on-viewer-request answered");
    };
    let origin = common::response(200, &[("vary", "Accept-Encoding, X-AB-Variant")]);
    let Flow::Continue(stored) = session
        .on_origin_response(&chain, &request, origin, BodyAccess::Held)
        .block()
        .flow
    else {
        panic!("on-origin-response answered");
    };
    let vary: Vec<_> = stored
        .headers
        .iter()
        .filter(|(n, _)| n == "vary")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(vary, ["Accept-Encoding, X-AB-Variant"]);
}

#[test]
fn weights_split_new_viewers() {
    let plugin = common::load(
        "ab-test",
        r#"{"variants": [{"name": "a", "weight": 80}, {"name": "b", "weight": 20, "prefix": "/b"}]}"#,
    );
    let total = 400;
    let mut a = 0;
    for _ in 0..total {
        let run = run(&plugin, common::get("/page", &[]));
        match run.variant() {
            Some("a") => {
                a += 1;
                assert_eq!(run.origin.path, "/page");
            }
            Some("b") => assert_eq!(run.origin.path, "/b/page"),
            other => panic!("unexpected variant {other:?}"),
        }
    }
    // Expected 320 (sd 8): these bounds are over 7 standard deviations away.
    let share = f64::from(a) / f64::from(total);
    assert!(
        (0.6..=0.95).contains(&share),
        "variant a got {a} of {total}"
    );
}

#[test]
fn a_zero_weight_variant_is_never_drawn_and_drains() {
    let plugin = common::load(
        "ab-test",
        r#"{"variants": [
            {"name": "off", "weight": 0, "prefix": "/off"},
            {"name": "on", "weight": 3},
            {"name": "closed", "weight": 0, "prefix": "/closed"}
        ]}"#,
    );
    for _ in 0..100 {
        assert_eq!(run(&plugin, common::get("/", &[])).variant(), Some("on"));
    }
    // A viewer still holding a cookie for a closed variant is moved.
    let run = run(&plugin, common::get("/", &[("cookie", "ab_bucket=off")]));
    assert_eq!(run.variant(), Some("on"));
    assert_eq!(run.origin.path, "/");
    assert!(
        run.set_cookie()
            .is_some_and(|c| c.starts_with("ab_bucket=on;")),
        "{:?}",
        run.set_cookie()
    );
}

#[test]
fn paths_outside_the_test_are_untouched() {
    let plugin = common::load("ab-test", CONFIG);
    for path in ["/", "/land", "/about/landing", "/Landing"] {
        let request = common::get(path, &[("cookie", "ab_bucket=new")]);
        let run = run(&plugin, request.clone());
        assert_eq!(run.viewer, request, "{path}");
        assert_eq!(run.origin, request, "{path}");
        assert_eq!(run.stored, common::response(200, &[]), "{path}");
        assert_eq!(run.answer, common::response(200, &[]), "{path}");
    }
}

#[test]
fn wildcards_match_any_run_of_characters() {
    let plugin = common::load(
        "ab-test",
        r#"{"paths": ["/shop/*/sale*", "/exact", "/v?/page"], "variants": [{"name": "v", "weight": 1, "prefix": "/v"}]}"#,
    );
    for path in [
        "/v2/page",
        "/shop/shoes/sale",
        "/shop/a/b/sale-2024/x",
        "/shop//sale",
        "/exact",
    ] {
        assert_eq!(
            run(&plugin, common::get(path, &[])).origin.path,
            format!("/v{path}"),
            "{path} is in the test"
        );
    }
    for path in [
        "/shop/sale",
        "/shop/x/sal",
        "/exact/more",
        "/exac",
        "/x/shop/a/sale",
        "/v10/page",
    ] {
        let run = run(&plugin, common::get(path, &[]));
        assert_eq!(
            (run.variant(), run.origin.path.as_str()),
            (None, path),
            "{path} is not in the test"
        );
    }
}

#[test]
fn an_unknown_cookie_value_is_replaced() {
    let plugin = common::load("ab-test", CONFIG);
    for bogus in ["ab_bucket=bogus", "ab_bucket=", "ab_bucket=NEW"] {
        let run = run(&plugin, common::get("/landing", &[("cookie", bogus)]));
        let variant = run.variant().expect("a variant").to_string();
        assert!(["control", "new"].contains(&variant.as_str()), "{variant}");
        let cookie = run.set_cookie().expect("a new cookie");
        assert!(
            cookie.starts_with(&format!("ab_bucket={variant};")),
            "{cookie}"
        );
    }
}

#[test]
fn a_variant_header_from_the_viewer_is_overwritten() {
    let plugin = common::load("ab-test", CONFIG);
    let run = run(
        &plugin,
        common::get(
            "/landing",
            &[("cookie", "ab_bucket=control"), ("x-ab-variant", "new")],
        ),
    );
    let values: Vec<_> = run
        .viewer
        .headers
        .iter()
        .filter(|(n, _)| n == "x-ab-variant")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(values, ["control"]);
    assert_eq!(run.origin.path, "/landing");
}

#[test]
fn invalid_configs_are_refused_precisely() {
    assert_eq!(
        common::refusal("ab-test", r#"{"variants": []}"#),
        "variants is empty: at least one variant is needed"
    );
    assert_eq!(
        common::refusal(
            "ab-test",
            r#"{"variants": [{"name": "a", "weight": 0}, {"name": "b", "weight": 0}]}"#
        ),
        "every variant has weight 0: at least one weight must be positive"
    );
    assert_eq!(
        common::refusal(
            "ab-test",
            r#"{"variants": [{"name": "a", "weight": 1}, {"name": "a", "weight": 2}]}"#
        ),
        "variants[1]: the name \"a\" is used twice"
    );
    assert!(
        common::refusal("ab-test", r#"{"variants": [{"name": "a;b", "weight": 1}]}"#)
            .starts_with("variants[0]: the name \"a;b\" cannot be a cookie value"),
    );
    assert!(
        common::refusal("ab-test", r#"{"variants": [{"name": "", "weight": 1}]}"#)
            .starts_with("variants[0]: the name \"\"")
    );
    assert!(common::refusal(
        "ab-test",
        r#"{"variants": [{"name": "a", "weight": 1, "prefix": "/v/"}]}"#
    )
    .starts_with("variants[0]: prefix \"/v/\" must be empty or a path"));
    assert_eq!(
        common::refusal(
            "ab-test",
            r#"{"cookie": "a b", "variants": [{"name": "a", "weight": 1}]}"#
        ),
        "cookie name \"a b\" is not a valid cookie name"
    );
    assert!(common::refusal(
        "ab-test",
        r#"{"paths": [], "variants": [{"name": "a", "weight": 1}]}"#
    )
    .starts_with("paths is empty"));
    assert_eq!(
        common::refusal(
            "ab-test",
            r#"{"paths": ["landing*"], "variants": [{"name": "a", "weight": 1}]}"#
        ),
        "path pattern \"landing*\" must start with `/` or `*`"
    );
    assert!(
        common::refusal("ab-test", r#"{"variants": [{"name": "a", "weight": -1}]}"#)
            .starts_with("invalid ab-test configuration: invalid value: integer `-1`")
    );
    assert!(common::refusal("ab-test", r#"{"cookie": "x"}"#)
        .starts_with("invalid ab-test configuration: missing field `variants`"));
}
