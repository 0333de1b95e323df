//! The `waf` example plugin through the real host: attacks in path, query,
//! headers and body are answered 403 with the rule id; benign traffic, detect
//! mode, allow-listed paths and disabled rule sets pass; bodies over the
//! plugin's limit are not seen and survive; bad configurations are refused.

mod common;

use std::sync::{Arc, Mutex};

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use parapet_host::{Flow, Plugin, PluginLimits, PluginOptions, Request, Response};

/// A POST of `body` with `content_type` to `path_and_query`.
fn post(path_and_query: &str, content_type: &str, body: impl AsRef<[u8]>) -> Request {
    let length = body.as_ref().len().to_string();
    let mut request = common::get(
        path_and_query,
        &[("content-type", content_type), ("content-length", &length)],
    );
    request.method = "POST".into();
    request.body = Some(body.as_ref().to_vec());
    request
}

/// Asserts `flow` is the WAF's 403 answer and returns the rule id it names.
fn blocked_rule(flow: Flow<Request>, what: &str) -> String {
    let response: Response = match flow {
        Flow::Respond(response) => response,
        Flow::Continue(request) => {
            panic!("{what}: expected a 403, the request went on: {request:?}")
        }
    };
    assert_eq!(response.status, 403, "{what}");
    assert_eq!(
        common::header(&response.headers, "content-type"),
        Some("text/plain; charset=utf-8"),
        "{what}"
    );
    let rule = common::header(&response.headers, "x-waf-rule")
        .unwrap_or_else(|| panic!("{what}: no x-waf-rule header"))
        .to_string();
    let body = String::from_utf8(response.body.unwrap_or_default()).expect("utf-8 body");
    assert!(
        body.contains(&rule),
        "{what}: body {body:?} does not name rule {rule}"
    );
    rule
}

/// Asserts each `(request, rule id)` is blocked by that rule.
fn assert_blocks(plugin: &Arc<Plugin>, cases: Vec<(Request, &str)>) {
    for (request, expected) in cases {
        let what = format!("{} {}", request.method, request_line(&request));
        assert_eq!(
            blocked_rule(common::viewer_request(plugin, request), &what),
            expected,
            "{what}"
        );
    }
}

/// Asserts `request` goes on unchanged, body included.
fn assert_passes(plugin: &Arc<Plugin>, request: Request) {
    let what = request_line(&request);
    match common::viewer_request(plugin, request.clone()) {
        Flow::Continue(after) => assert_eq!(after, request, "{what}: the request was changed"),
        Flow::Respond(response) => panic!(
            "{what}: blocked with {} by rule {:?}",
            response.status,
            common::header(&response.headers, "x-waf-rule")
        ),
    }
}

fn request_line(request: &Request) -> String {
    match &request.query {
        Some(q) => format!("{}?{q}", request.path),
        None => request.path.clone(),
    }
}

/// The value of the plugin counter `name` recorded while running `f`.
fn plugin_counter<R>(name: &str, f: impl FnOnce() -> R) -> (R, Option<u64>) {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let result = metrics::with_local_recorder(&recorder, f);
    let value = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .find_map(|(key, _, _, value)| {
            let key = key.key();
            let is_it = key.name() == "parapet_plugin_counter_total"
                && key.labels().any(|l| l.key() == "name" && l.value() == name);
            match value {
                DebugValue::Counter(n) if is_it => Some(n),
                _ => None,
            }
        });
    (result, value)
}

#[test]
fn blocks_sql_injection_in_the_query() {
    let waf = common::load("waf", "{}");
    assert_blocks(
        &waf,
        vec![
            (
                common::get("/item?id=1%27%20OR%20%271%27%3D%271", &[]),
                "sqli-tautology",
            ),
            (common::get("/item?id=1+or+1%3D1", &[]), "sqli-tautology"),
            (
                common::get(
                    "/search?q=1%20UNION/**/SELECT%20password%20FROM%20users",
                    &[],
                ),
                "sqli-union-select",
            ),
            (
                common::get("/search?q=1+union%0Aall%09select+null,null", &[]),
                "sqli-union-select",
            ),
            // Double encoding: %2520 is %20 encoded once more.
            (
                common::get("/search?q=1%2520UnIoN%2520SeLeCt%25201", &[]),
                "sqli-union-select",
            ),
            // A MySQL versioned comment runs its body: it must not hide it.
            (
                common::get("/search?q=1/*!50000union*/+select+1", &[]),
                "sqli-union-select",
            ),
            (common::get("/login?user=admin%27--", &[]), "sqli-comment"),
            (
                common::get("/item?id=1;DROP%20TABLE%20users", &[]),
                "sqli-stacked-query",
            ),
            (
                common::get("/item?id=1+AND+SLEEP(5)", &[]),
                "sqli-time-based",
            ),
            (
                common::get("/item?id=1+and+extractvalue(1,concat(0x7e,@@version))", &[]),
                "sqli-schema-probe",
            ),
            (
                common::get("/item?id=1+into+outfile+%27/tmp/x%27", &[]),
                "sqli-file-access",
            ),
            (
                common::get("/users/1%27%20or%20%27a%27%3D%27a", &[]),
                "sqli-tautology",
            ),
        ],
    );
}

#[test]
fn blocks_cross_site_scripting_in_query_and_headers() {
    let waf = common::load("waf", "{}");
    assert_blocks(
        &waf,
        vec![
            (
                common::get("/search?q=<script>alert(1)</script>", &[]),
                "xss-script-tag",
            ),
            (
                common::get("/search?q=%3CScRiPt%3Ealert(1)%3C%2Fscript%3E", &[]),
                "xss-script-tag",
            ),
            (
                common::get("/search?q=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E", &[]),
                "xss-event-handler",
            ),
            (
                common::get("/profile?name=x%22%20onmouseover%3D%22steal()", &[]),
                "xss-event-handler",
            ),
            (
                common::get("/go?next=java%09script:alert(1)", &[]),
                "xss-javascript-uri",
            ),
            (
                common::get("/page?frame=%3Ciframe%20src%3D//evil.example%3E", &[]),
                "xss-dangerous-tag",
            ),
            (
                common::get("/page?x=%22%3Bdocument.cookie", &[]),
                "xss-js-sink",
            ),
            (
                common::get(
                    "/",
                    &[("referer", "https://example.com/?q=<svg/onload=alert(1)>")],
                ),
                "xss-event-handler",
            ),
            (
                common::get("/", &[("x-forwarded-host", "\"><script>alert(1)</script>")]),
                "xss-script-tag",
            ),
            (
                common::get(
                    "/",
                    &[("cookie", "session=abc; pref=%3Cscript%3Ex%3C/script%3E")],
                ),
                "xss-script-tag",
            ),
        ],
    );
}

#[test]
fn blocks_attacks_in_the_body() {
    let waf = common::load("waf", "{}");
    assert_blocks(
        &waf,
        vec![
            (
                post(
                    "/comments",
                    "application/json",
                    r#"{"comment": "<script>alert(document.cookie)</script>"}"#,
                ),
                "xss-script-tag",
            ),
            // JSON escapes are decoded before matching.
            (
                post(
                    "/comments",
                    "application/json",
                    r#"{"comment": "\u003cscript\u003ealert(1)"}"#,
                ),
                "xss-script-tag",
            ),
            (
                post(
                    "/comments",
                    "application/x-www-form-urlencoded",
                    "name=a&comment=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
                ),
                "xss-script-tag",
            ),
            (
                post(
                    "/login",
                    "application/x-www-form-urlencoded",
                    "user=admin%27+or+%271%27%3D%271&pass=x",
                ),
                "sqli-tautology",
            ),
            (
                post(
                    "/files",
                    "application/json",
                    r#"{"items": [{"path": "../../etc/passwd"}]}"#,
                ),
                "traversal-dotdot",
            ),
            (
                post("/notes", "text/plain", "hello <svg onload=alert(1)>"),
                "xss-event-handler",
            ),
        ],
    );
}

#[test]
fn blocks_path_traversal() {
    let waf = common::load("waf", "{}");
    assert_blocks(
        &waf,
        vec![
            (common::get("/../../etc/passwd", &[]), "traversal-dotdot"),
            (
                common::get("/static/%2e%2e%2f%2e%2e%2fsecret.txt", &[]),
                "traversal-dotdot",
            ),
            (
                common::get("/static/%252e%252e%252fsecret.txt", &[]),
                "traversal-dotdot",
            ),
            (
                common::get("/download?file=..%5C..%5Cboot.ini", &[]),
                "traversal-dotdot",
            ),
            (common::get("/app/..;/admin", &[]), "traversal-dotdot"),
            (
                common::get("/show?page=%2Fetc%2Fpasswd", &[]),
                "traversal-sensitive-file",
            ),
            (common::get("/.git/config", &[]), "traversal-sensitive-file"),
            (
                common::get("/file?name=report.pdf%00.png", &[]),
                "traversal-null-byte",
            ),
        ],
    );
}

#[test]
fn blocks_scanner_user_agents() {
    let waf = common::load("waf", "{}");
    assert_blocks(
        &waf,
        vec![
            (common::get("/", &[("user-agent", "sqlmap/1.7")]), "scanner-sqlmap"),
            (common::get("/", &[("user-agent", "sqlmap/1.7.2#stable (https://sqlmap.org)")]), "scanner-sqlmap"),
            (
                common::get("/", &[("user-agent", "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)")]),
                "scanner-nmap",
            ),
            (common::get("/", &[("user-agent", "Mozilla/5.00 (Nikto/2.5.0) (Evasions:None)")]), "scanner-nikto"),
            (common::get("/", &[("user-agent", "Fuzz Faster U Fool v2.1.0")]), "scanner-ffuf"),
        ],
    );
}

#[test]
fn benign_requests_pass_unchanged() {
    let waf = common::load("waf", "{}");
    let browser = [
        (
            "user-agent",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
        ),
        ("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
        ("accept-language", "en-US,en;q=0.9,fr;q=0.8"),
        ("cookie", "session=4f2a9c; theme=dark; _ga=GA1.2.3.4"),
        ("referer", "https://example.com/search?q=rock+and+roll"),
        ("if-none-match", "W/\"33a64df5\""),
        ("sec-ch-ua", "\"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\", \"Not-A.Brand\";v=\"99\""),
        ("authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl"),
    ];
    for path in [
        "/search?q=rock+and+roll",
        "/o'brien",
        "/people?name=O%27Brien&sort=-date",
        "/it's-a-post--with-dashes",
        "/search?q=select+a+plan+from+our+menu",
        "/search?q=union+station+or+central",
        "/search?q=1%2B1%3D2",
        "/search?q=it%27s+one+or+the+other",
        "/search?q=onion%3Dtasty&lang=en",
        "/search?q=wait...+what%3F",
        "/releases/v1.2..v1.3",
        "/images/logo.svg?v=3",
        "/a/b/c.html?utm_source=news&utm_medium=email",
        "/search?q=%23hashtag+%27quoted%27",
        "/api/v1/items?filter=price%3C10%20and%20stock%3E0",
    ] {
        assert_passes(&waf, common::get(path, &browser));
    }
    assert_passes(
        &waf,
        post(
            "/api/comments",
            "application/json",
            r#"{"name": "Seán O'Brien", "comment": "Rock and roll -- or maybe jazz? Select your favourite from the list; update later.", "tags": ["a-b", "x/y"], "rating": 5, "draft": false}"#,
        ),
    );
    assert_passes(
        &waf,
        post(
            "/notes",
            "text/plain",
            "Meet me at 5; we'll select a table from the menu. Don't be late!",
        ),
    );
    assert_passes(
        &waf,
        post(
            "/signup",
            "application/x-www-form-urlencoded",
            "name=O%27Brien&city=Saint-%C3%89tienne&bio=I+like+SQL+and+HTML",
        ),
    );
}

/// A multipart form body with `boundary`: a text field `note` holding
/// `value`, and a file `filename` holding `content`.
fn multipart(boundary: &str, value: &str, filename: &str, content: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\n{value}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

#[test]
fn multipart_and_binary_bodies() {
    let waf = common::load("waf", "{}");
    let boundary = "----WebKitFormBoundary7MA4YWxkTrZu0gW";
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01";
    // An empty field, a value ending in a quote, a binary file with NULs.
    for value in ["", "the students'", "or so = it seems"] {
        assert_passes(
            &waf,
            post(
                "/upload",
                &content_type,
                multipart(boundary, value, "photo.png", png),
            ),
        );
    }
    assert_passes(&waf, post("/upload", "application/octet-stream", png));
    assert_blocks(
        &waf,
        vec![
            (
                post(
                    "/upload",
                    &content_type,
                    multipart(boundary, "hi", "../../app/config.php", png),
                ),
                "traversal-dotdot",
            ),
            (
                post(
                    "/upload",
                    &content_type,
                    multipart(boundary, "<script>alert(1)</script>", "a.png", png),
                ),
                "xss-script-tag",
            ),
        ],
    );
}

#[test]
fn blocking_counts_waf_blocked() {
    let waf = common::load("waf", "{}");
    let (rule, blocked) = plugin_counter("waf_blocked", || {
        blocked_rule(
            common::viewer_request(&waf, common::get("/search?q=<script>", &[])),
            "counted attack",
        )
    });
    assert_eq!(rule, "xss-script-tag");
    assert_eq!(blocked, Some(1));
    let ((), blocked) = plugin_counter("waf_blocked", || {
        assert_passes(&waf, common::get("/search?q=fine", &[]))
    });
    assert_eq!(blocked, None, "a benign request must not count as blocked");
}

#[test]
fn detect_mode_logs_and_lets_attacks_through() {
    let logs = LogCapture::install();
    let waf = common::load("waf", r#"{"mode": "detect"}"#);
    let attack = common::get(
        "/search?q=1+UNION+SELECT+password+FROM+users",
        &[("user-agent", "curl/8.0")],
    );
    let ((), detected) = plugin_counter("waf_detected", || assert_passes(&waf, attack));
    assert_eq!(detected, Some(1));
    let me = std::thread::current().id();
    let logs = logs.lock().expect("logs");
    assert!(
        logs.iter().any(|(thread, level, line)| *thread == me
            && *level == tracing::Level::WARN
            && line.contains("sqli-union-select")),
        "no warn log naming the rule: {logs:?}"
    );
}

#[test]
fn allow_listed_paths_are_not_inspected() {
    let waf = common::load("waf", r#"{"allow_paths": ["/healthz", "/static/*"]}"#);
    assert_passes(
        &waf,
        common::get("/healthz?probe=%27%20or%20%271%27%3D%271", &[]),
    );
    assert_passes(&waf, common::get("/static/app.js?v=<script>", &[]));
    assert_passes(
        &waf,
        common::get("/static/css/site.css", &[("user-agent", "sqlmap/1.7")]),
    );
    // Exact entries match exactly; dot segments never ride on an allow-list.
    assert_blocks(
        &waf,
        vec![
            (common::get("/healthzz?q=<script>", &[]), "xss-script-tag"),
            (
                common::get("/static/../admin?q=<script>", &[]),
                "traversal-dotdot",
            ),
            (
                common::get("/static/%2e%2e/admin?q=<script>", &[]),
                "traversal-dotdot",
            ),
            (
                common::get("/api?next=/static/x&q=<script>", &[]),
                "xss-script-tag",
            ),
        ],
    );
}

#[test]
fn custom_rules_block_where_configured() {
    let waf = common::load(
        "waf",
        r#"{"custom_rules": [
            {"id": "no-wp-admin", "pattern": "/WP-Admin", "in": ["path"]},
            {"id": "no-curl", "pattern": "curl/", "in": ["headers"]},
            {"id": "no-secret-word", "pattern": "open  sesame"}
        ]}"#,
    );
    assert_blocks(
        &waf,
        vec![
            (common::get("/wp-admin/install.php", &[]), "no-wp-admin"),
            (common::get("/blog/%77p-admin/", &[]), "no-wp-admin"),
            (common::get("/", &[("user-agent", "curl/8.4.0")]), "no-curl"),
            (common::get("/door?say=OPEN+sesame", &[]), "no-secret-word"),
            (
                post("/door", "text/plain", "open\n\tsesame"),
                "no-secret-word",
            ),
            // The built-in rules still apply.
            (common::get("/search?q=<script>", &[]), "xss-script-tag"),
        ],
    );
    // `in` restricts where a custom rule looks.
    assert_passes(&waf, common::get("/search?q=/wp-admin", &[]));
    assert_passes(&waf, common::get("/download/curl/latest", &[]));
}

#[test]
fn disabled_rule_sets_do_not_block() {
    let xss_only = common::load("waf", r#"{"rule_sets": ["xss"]}"#);
    assert_passes(
        &xss_only,
        common::get("/item?id=1%27%20OR%20%271%27%3D%271", &[]),
    );
    assert_passes(&xss_only, common::get("/../../etc/passwd", &[]));
    assert_passes(&xss_only, common::get("/", &[("user-agent", "sqlmap/1.7")]));
    assert_blocks(
        &xss_only,
        vec![(common::get("/search?q=<script>", &[]), "xss-script-tag")],
    );

    let scanner_only = common::load("waf", r#"{"rule_sets": ["scanner"]}"#);
    assert_passes(&scanner_only, common::get("/search?q=<script>", &[]));
    assert_blocks(
        &scanner_only,
        vec![(
            common::get("/", &[("user-agent", "sqlmap/1.7")]),
            "scanner-sqlmap",
        )],
    );

    let none = common::load("waf", r#"{"rule_sets": []}"#);
    assert_passes(
        &none,
        common::get(
            "/search?q=1+UNION+SELECT+1&x=<script>",
            &[("user-agent", "sqlmap/1.7")],
        ),
    );
}

#[test]
fn bodies_over_the_limit_are_not_seen_and_survive() {
    let load = |config: &str| {
        common::load_with(
            "waf",
            PluginOptions {
                config: config.into(),
                limits: PluginLimits {
                    max_body_bytes: 16,
                    ..common::relaxed_limits()
                },
                ..Default::default()
            },
        )
    };
    let big = post(
        "/comments",
        "application/json",
        r#"{"comment": "<script>alert(1)</script>"}"#,
    );
    // By default a body the WAF could not see is refused...
    match common::viewer_request(&load("{}"), big.clone()) {
        Flow::Respond(r) => {
            assert_eq!(r.status, 413);
            assert_eq!(
                common::header(&r.headers, "x-waf-rule"),
                Some("body-not-inspected")
            );
        }
        other => panic!("an uninspected body went through: {other:?}"),
    }
    // ...and with `allow` it goes on, untouched.
    let waf = load(r#"{"uninspected_bodies": "allow"}"#);
    match common::viewer_request(&waf, big.clone()) {
        Flow::Continue(after) => {
            assert_eq!(after.body, big.body, "the withheld body must be put back");
            assert_eq!(after, big);
        }
        Flow::Respond(r) => panic!("a body over the limit was inspected: {}", r.status),
    }
    // A body within the limit is inspected.
    let small = post("/comments", "text/plain", "<script>");
    assert_eq!(
        blocked_rule(common::viewer_request(&waf, small), "small body"),
        "xss-script-tag"
    );
}

#[test]
fn invalid_configurations_are_refused_precisely() {
    let cases = [
        (
            r#"{"mode": "paranoid"}"#,
            "unknown variant `paranoid`, expected `block` or `detect`",
        ),
        (
            r#"{"rule_sets": ["sqli", "csrf"]}"#,
            "unknown variant `csrf`, expected one of `sqli`, `xss`, `traversal`, `scanner`",
        ),
        (r#"{"modes": "block"}"#, "unknown field `modes`"),
        (
            r#"{"custom_rules": [{"id": "x", "pattern": "  "}]}"#,
            "custom rule \"x\": `pattern` must not be empty",
        ),
        (
            r#"{"custom_rules": [{"id": "x", "pattern": ""}]}"#,
            "custom rule \"x\": `pattern` must not be empty",
        ),
        (
            r#"{"custom_rules": [{"id": "x"}]}"#,
            "missing field `pattern`",
        ),
        (
            r#"{"custom_rules": [{"id": "x", "pattern": "a", "in": ["cookies"]}]}"#,
            "unknown variant `cookies`",
        ),
        (
            r#"{"custom_rules": [{"id": "x", "pattern": "a", "in": []}]}"#,
            "custom rule \"x\": `in` must name at least one",
        ),
        (
            r#"{"custom_rules": [{"id": "x", "pattern": "a", "where": ["path"]}]}"#,
            "unknown field `where`",
        ),
        (
            r#"{"custom_rules": [{"id": "bad id", "pattern": "a"}]}"#,
            "custom rule id \"bad id\" must be 1 to 64",
        ),
        (
            r#"{"custom_rules": [{"id": "", "pattern": "a"}]}"#,
            "custom rule id \"\" must be 1 to 64",
        ),
        (
            r#"{"custom_rules": [{"id": "x", "pattern": "a"}, {"id": "x", "pattern": "b"}]}"#,
            "custom rule id \"x\" is used more than once",
        ),
        (
            r#"{"allow_paths": ["healthz"]}"#,
            "allow_paths entry \"healthz\" must start with `/`",
        ),
        (
            r#"{"allow_paths": ["/a/*/b"]}"#,
            "allow_paths entry \"/a/*/b\" may contain `*` only at the end",
        ),
    ];
    for (config, expected) in cases {
        let message = common::refusal("waf", config);
        assert!(
            message.contains(expected),
            "{config}: message {message:?} lacks {expected:?}"
        );
    }
    // Every field is optional.
    common::load("waf", "{}");
}

/// The plugins' log lines: thread, level, message.
type Lines = Arc<Mutex<Vec<(std::thread::ThreadId, tracing::Level, String)>>>;

/// A tracing subscriber that keeps the plugins' log lines, with the thread
/// that wrote them. Installed as the global default (a thread-local one can
/// miss events when other test threads register the same callsites at the
/// same time).
struct LogCapture(Lines);

impl LogCapture {
    /// Installs the capture once per test binary; returns its lines.
    fn install() -> Lines {
        static LINES: std::sync::OnceLock<Lines> = std::sync::OnceLock::new();
        LINES
            .get_or_init(|| {
                let lines = Lines::default();
                tracing::subscriber::set_global_default(LogCapture(lines.clone()))
                    .expect("no other global subscriber in this test binary");
                lines
            })
            .clone()
    }
}

/// Pulls the `message` field out of an event.
struct MessageField(String);

impl tracing::field::Visit for MessageField {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl tracing::Subscriber for LogCapture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        if event.metadata().target() == "plugin" {
            let mut message = MessageField(String::new());
            event.record(&mut message);
            self.0.lock().expect("log capture").push((
                std::thread::current().id(),
                *event.metadata().level(),
                message.0,
            ));
        }
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}
