//! The web console in headless Chromium (WebDriver), against a real
//! controller over TLS, two real edges in two edge groups and an origin: a
//! customer signs in, creates and edits a distribution (an invalid version
//! shown at its line), diffs versions, watches a purge reach both edges,
//! rolls a deployment back, reads the logs and sees the traffic and its
//! plugin's cost charted; the operator manages customers, tokens and edges,
//! and sees the PoPs on a map. Customer B's console never shows or
//! changes anything of customer A's, and a form without its CSRF token is
//! refused.
//!
//! `PARAPET_CONSOLE_SCREENSHOTS=docs/console` saves the main pages there
//! (the README's pictures).

use std::net::SocketAddr;
use std::path::PathBuf;

use parapet_e2e::browser::Browser;
use parapet_e2e::*;
use serde_json::{json, Value};

fn screenshots() -> Option<PathBuf> {
    std::env::var_os("PARAPET_CONSOLE_SCREENSHOTS").map(|dir| {
        let dir = PathBuf::from(dir);
        if dir.is_absolute() {
            dir
        } else {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(dir)
        }
    })
}

/// `x-cache` of `path` on `host` through `edge`.
async fn cache_of(http: &reqwest::Client, edge: SocketAddr, host: &str, path: &str) -> String {
    let response = http
        .get(format!("http://{edge}{path}"))
        .header("host", host)
        .send()
        .await
        .expect("edge answers");
    let cache = response
        .headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let _ = response.bytes().await;
    cache
}

/// Signs `browser` in at `rest` with `token`.
async fn sign_in(browser: &Browser, rest: &str, token: &str) {
    browser
        .client
        .goto(&format!("{rest}/console/signin"))
        .await
        .expect("sign-in page");
    browser.fill("#token", token).await;
    browser.click("form[action='/console/signin'] button").await;
    browser.element("#who").await;
}

/// Sets the configuration editor to `format` and `text`.
async fn edit(browser: &Browser, format: &str, text: &str) {
    browser
        .toggle(&format!("input[name=format][value={format}]"))
        .await;
    // The textarea takes the text as typed, so no auto-indent mangles it.
    browser.fill("#config", text).await;
}

/// The shop distribution, its answers' headers filtered by the customer's
/// `headers` plugin.
fn spec(origin: &str, ttl: u64) -> String {
    serde_json::to_string_pretty(&json!({
        "domains": ["shop.console.test"],
        "origin": [{"url": origin}],
        "plugin": [{"name": "headers", "wasm": "headers", "config": {"response": {"security_headers": true}}}],
        "behavior": [{"path": "*", "cache": {"default_ttl": ttl}, "viewer_response": ["headers"]}],
    }))
    .expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_and_the_operator_work_from_the_console() {
    // The edges register in fra; nyc is placed but has none.
    let cluster = Cluster::start_with_settings(None, 300, |_| {
        "[pops.fra]\nname = \"Frankfurt\"\nlat = 50.11\nlon = 8.68\n\
         [pops.nyc]\nlat = 40.71\nlon = -74.01\n"
            .to_string()
    });
    let shots = screenshots();
    let (blue_port, green_port) = (free_port(), free_port());
    let _blue = cluster.start_edge("blue-1", "blue", blue_port);
    let _green = cluster.start_edge("green-1", "green", green_port);
    let blue: SocketAddr = ([127, 0, 0, 1], blue_port).into();
    let green: SocketAddr = ([127, 0, 0, 1], green_port).into();
    wait_for_port(blue, 15);
    wait_for_port(green, 15);
    let acme = cluster.customer("acme").await;
    let http = reqwest::Client::new();
    let browser = Browser::start(cluster.log_dir(), 1280, 900).await;
    let rest = cluster.rest.clone();

    // Pages need a session.
    browser
        .client
        .goto(&format!("{rest}/console/distributions"))
        .await
        .expect("page");
    assert!(
        browser.url().await.ends_with("/console/signin"),
        "{}",
        browser.url().await
    );
    browser.fill("#token", "not-a-token").await;
    browser.click("form[action='/console/signin'] button").await;
    assert!(
        browser.text("#error").await.contains("token"),
        "a wrong token is told"
    );
    browser.screenshot(shots.as_ref(), "signin", "#error").await;

    sign_in(&browser, &rest, &acme).await;
    assert_eq!(browser.text("#who").await, "acme");
    // The token never reaches the browser's storage: the cookie is an id.
    let cookie = browser
        .client
        .get_named_cookie("parapet_session")
        .await
        .expect("session cookie");
    assert_ne!(cookie.value(), acme);
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.secure(), Some(true), "served over TLS");
    let storage: Value = browser
        .client
        .execute(
            "return [JSON.stringify(localStorage), JSON.stringify(sessionStorage), document.cookie]",
            vec![],
        )
        .await
        .expect("storage");
    assert!(!storage.to_string().contains(&acme), "{storage}");
    assert_eq!(storage[2], "", "scripts see no cookie");

    // A plugin uploaded with the validator's verdict: a core module is
    // refused, the component accepted.
    browser.click("a[href='/console/plugins']").await;
    let not_a_component = cluster.log_dir().join("core.wasm");
    std::fs::write(&not_a_component, b"\0asm\x01\0\0\0").expect("core module");
    browser.fill("#plugin-name", "headers").await;
    browser.choose_file("#plugin-file", &not_a_component).await;
    browser
        .click("form[action='/console/plugins'] button")
        .await;
    let verdict = browser.text("#verdict").await;
    assert!(
        verdict.starts_with("Refused:") && verdict.contains("core"),
        "{verdict}"
    );
    browser.fill("#plugin-name", "headers").await;
    browser
        .choose_file("#plugin-file", &plugin_component("header-filter"))
        .await;
    browser
        .click("form[action='/console/plugins'] button")
        .await;
    let verdict = browser.text("#verdict").await;
    assert!(verdict.starts_with("Accepted: headers v1"), "{verdict}");

    // A new distribution, then an invalid version in TOML shown at its line.
    browser.click("a[href='/console/distributions']").await;
    browser.fill("#id", "shop").await;
    edit(&browser, "json", &spec(&cluster.origin, 300)).await;
    browser.click("#create-form button[type=submit]").await;
    assert_eq!(browser.text("#live-version").await, "v1");
    let toml = format!(
        "domains = [\"shop.console.test\"]\n\n[[origin]]\nurl = \"{}\"\n\n[[behavior]]\npath = 7\n",
        cluster.origin
    );
    edit(&browser, "toml", &toml).await;
    browser.click("#apply-form button[type=submit]").await;
    let problem = browser.text("#problem").await;
    assert!(problem.contains("behavior[0].path"), "{problem}");
    assert!(problem.starts_with("Line 7:"), "{problem}");
    assert!(browser.text("#problem-line").await.contains("path = 7"));
    browser
        .screenshot(shots.as_ref(), "validation", "#problem")
        .await;
    assert_eq!(browser.text("#live-version").await, "v1", "nothing applied");

    // A second version, its diff, and both edges serving it.
    edit(&browser, "json", &spec(&cluster.origin, 600)).await;
    browser.click("#apply-form button[type=submit]").await;
    assert_eq!(browser.text("#live-version").await, "v2");
    browser.fill("#from", "1").await;
    browser.fill("#to", "2").await;
    browser.click("#diff-form button").await;
    let diff = browser.text("#diff").await;
    assert!(
        diff.contains("-") && diff.contains("300") && diff.contains("600"),
        "{diff}"
    );
    // Side by side: the old value on the left of its row, the new on the right.
    assert!(
        browser.text("#diff td.removed").await.contains("300")
            && browser.text("#diff td.added").await.contains("600"),
        "{diff}"
    );
    browser.screenshot(shots.as_ref(), "diff", "#diff").await;
    eventually(15, "both edges to serve v2", || {
        let browser = &browser;
        let rest = &rest;
        async move {
            browser
                .client
                .goto(&format!("{rest}/console/distributions/shop"))
                .await
                .ok()?;
            let table = browser.text("#edge-versions").await;
            (table.matches("v2").count() == 2).then_some(())
        }
    })
    .await;
    browser
        .screenshot(shots.as_ref(), "distribution", "#edge-versions")
        .await;

    // Viewers fill both caches; a purge from the console reaches both edges.
    for edge in [blue, green] {
        assert_eq!(
            cache_of(&http, edge, "shop.console.test", "/page.html").await,
            "MISS"
        );
        assert_eq!(
            cache_of(&http, edge, "shop.console.test", "/page.html").await,
            "HIT"
        );
    }
    browser.click("a[href='/console/purge']").await;
    browser
        .fill("#purge-value", "shop.console.test/page.html")
        .await;
    browser.click("form[action='/console/purge'] button").await;
    // The progress part updates in place (htmx) until every edge acked.
    eventually(15, "the purge to reach both edges", || {
        let browser = &browser;
        async move { (browser.text("#job-progress").await == "2/2").then_some(()) }
    })
    .await;
    assert_eq!(browser.text("#job-status").await, "done");
    let edges = browser.text("#job-edges").await;
    assert!(
        edges.contains("blue-1") && edges.contains("green-1"),
        "{edges}"
    );
    browser
        .screenshot(shots.as_ref(), "purge", "#job-edges")
        .await;
    for edge in [blue, green] {
        assert_eq!(
            cache_of(&http, edge, "shop.console.test", "/page.html").await,
            "MISS"
        );
    }

    // Blue/green: v3 staged, rolled out to blue, rolled back.
    browser
        .client
        .goto(&format!("{rest}/console/distributions/shop"))
        .await
        .expect("page");
    edit(&browser, "json", &spec(&cluster.origin, 900)).await;
    browser.toggle("input[name=stage]").await;
    browser.click("#apply-form button[type=submit]").await;
    assert_eq!(
        browser.text("#live-version").await,
        "v2",
        "staged, not live"
    );
    browser.fill("#deploy-version", "3").await;
    browser.fill("#deploy-group", "blue").await;
    browser
        .click("form[action='/console/deployments'] button")
        .await;
    assert_eq!(browser.text("#deployments .state").await, "rolling");
    browser.click("form[action$='/rollback'] button").await;
    assert_eq!(browser.text("#deployments .state").await, "rolled_back");
    assert_eq!(browser.text("#live-version").await, "v2");

    // The logs the edges shipped, filtered.
    let lines = eventually(15, "the edges' log lines", || {
        let browser = &browser;
        let rest = &rest;
        async move {
            let url =
                format!("{rest}/console/logs?distribution=shop&status=2xx&prefix=/page&cache=HIT");
            browser.client.goto(&url).await.ok()?;
            let table = browser.text("#log-lines").await;
            (table.matches("HIT").count() >= 2).then_some(table)
        }
    })
    .await;
    assert!(!lines.contains("MISS"), "{lines}");

    // Traffic over time from the same lines: totals and drawn charts.
    eventually(15, "the traffic of the six requests", || {
        let browser = &browser;
        let rest = &rest;
        async move {
            browser
                .client
                .goto(&format!("{rest}/console/distributions/shop"))
                .await
                .ok()?;
            let requests: u64 = browser.text("#traffic-total-requests").await.parse().ok()?;
            (requests == 6).then_some(())
        }
    })
    .await;
    let totals = browser.text("#traffic-totals").await;
    // Two hits in six: MISS, HIT on each edge, then a MISS on each after
    // the purge.
    assert!(totals.contains("33.3 %"), "{totals}");
    browser.element("#traffic-requests canvas").await;
    browser.element("#traffic-statuses canvas").await;
    browser
        .screenshot(shots.as_ref(), "traffic", "#traffic-requests")
        .await;

    // What the plugin cost on those requests, as the edges measured it.
    browser.click("a[href='/console/plugins']").await;
    assert!(
        browser.text("table").await.contains("shop"),
        "the plugin is used by shop"
    );
    browser
        .click("a[href='/console/plugins/headers/cost']")
        .await;
    eventually(15, "the cost of the six requests", || {
        let browser = &browser;
        let rest = &rest;
        async move {
            browser
                .client
                .goto(&format!("{rest}/console/plugins/headers/cost"))
                .await
                .ok()?;
            let requests: u64 = browser.text("#cost-total-requests").await.parse().ok()?;
            (requests == 6).then_some(())
        }
    })
    .await;
    let totals = browser.text("#cost-totals").await;
    let cells: Vec<f64> = totals
        .split_whitespace()
        .filter_map(|cell| cell.parse().ok())
        .collect();
    // Requests, mean instantiation and hook time, peak memory, failures.
    assert_eq!(cells.len(), 5, "{totals}");
    assert!(
        cells[1] > 0.0 && cells[2] > 0.0 && cells[3] > 0.0,
        "{totals}"
    );
    assert_eq!(cells[4], 0.0, "{totals}");
    browser.element("#cost-time canvas").await;
    browser.element("#cost-memory canvas").await;
    browser
        .screenshot(shots.as_ref(), "plugin-cost", "#cost-time")
        .await;

    // The operator: a customer, a token, the edges.
    browser.click(".signout button").await;
    sign_in(&browser, &rest, ADMIN).await;
    browser.click("a[href='/console/customers']").await;
    browser.fill("#customer-id", "globex").await;
    browser.fill("#customer-name", "Globex").await;
    browser
        .click("form[action='/console/customers'] button")
        .await;
    assert!(browser.text("#customers").await.contains("Globex"));
    browser.click("a[href='/console/tokens']").await;
    browser.fill("#token-name", "globex-console").await;
    browser.select("#token-customer", "globex").await;
    browser.click("form[action='/console/tokens'] button").await;
    let issued = browser.text("#issued-token").await;
    browser.click("a[href='/console/edges']").await;
    let edges = browser.text("#edges").await;
    assert!(
        edges.contains("blue-1") && edges.contains("green-1"),
        "{edges}"
    );
    assert!(browser.text("#pops").await.contains("2/2 healthy"));
    // The map places each PoP where the settings put it, with its health.
    let fra = browser
        .element("#pop-map g.pop.healthy[data-pop='fra'] circle")
        .await;
    assert_eq!(fra.attr("cx").await.expect("cx").as_deref(), Some("8.68"));
    assert_eq!(fra.attr("cy").await.expect("cy").as_deref(), Some("-50.11"));
    browser.element("#pop-map g.pop.down[data-pop='nyc']").await;
    assert!(browser.text("#pops").await.contains("nyc 0/0 healthy"));
    browser
        .screenshot(shots.as_ref(), "edges", "#pop-map")
        .await;

    // On a phone-sized screen the pages fit its width: wide tables scroll
    // in their own box, the map scales down.
    browser
        .client
        .set_window_size(390, 844)
        .await
        .expect("phone-sized window");
    for page in [
        "/console/edges",
        "/console/distributions/shop",
        "/console/plugins",
    ] {
        browser
            .client
            .goto(&format!("{rest}{page}"))
            .await
            .expect("page");
        let overflow: Value = browser
            .client
            .execute(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
                vec![],
            )
            .await
            .expect("widths");
        assert_eq!(overflow, json!(0), "{page} is wider than the phone");
    }
    browser.screenshot(shots.as_ref(), "phone", "#main").await;
    browser
        .client
        .set_window_size(1280, 900)
        .await
        .expect("window");

    // The token issued in the console signs globex in.
    browser.click(".signout button").await;
    sign_in(&browser, &rest, &issued).await;
    assert_eq!(browser.text("#who").await, "globex");
    // Suspending a customer ends its console session.
    let (status, _) = cluster
        .call("POST", "/v1/customers/globex/suspend", Some(ADMIN), None)
        .await;
    assert_eq!(status, 200);
    browser
        .client
        .goto(&format!("{rest}/console/distributions"))
        .await
        .expect("page");
    assert!(browser.url().await.ends_with("/console/signin"));
    browser.client.close().await.expect("closing the browser");
}

/// The session cookie and CSRF token of a console session signed in with
/// `token` (over plain HTTP requests, as a script would).
async fn session(cluster: &Cluster, http: &reqwest::Client, token: &str) -> (String, String) {
    let page = http
        .get(format!("{}/console/signin", cluster.rest))
        .send()
        .await
        .expect("sign-in page");
    let signin_cookie = set_cookie(&page, "parapet_signin");
    let csrf = hidden_csrf(&page.text().await.expect("page"));
    let signed = http
        .post(format!("{}/console/signin", cluster.rest))
        .header("cookie", format!("parapet_signin={signin_cookie}"))
        .form(&[("token", token), ("csrf", &csrf)])
        .send()
        .await
        .expect("sign in");
    assert_eq!(signed.status(), 303);
    let session = set_cookie(&signed, "parapet_session");
    let page = get(cluster, http, &session, "/console/purge").await.1;
    (session, hidden_csrf(&page))
}

fn set_cookie(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("no {name} cookie"))
        .to_string()
}

fn hidden_csrf(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    html[at..].split('"').next().expect("value").to_string()
}

async fn get(
    cluster: &Cluster,
    http: &reqwest::Client,
    session: &str,
    path: &str,
) -> (u16, String) {
    let response = http
        .get(format!("{}{path}", cluster.rest))
        .header("cookie", format!("parapet_session={session}"))
        .send()
        .await
        .expect("console page");
    (
        response.status().as_u16(),
        response.text().await.expect("page"),
    )
}

async fn post(
    cluster: &Cluster,
    http: &reqwest::Client,
    session: &str,
    path: &str,
    form: &[(&str, &str)],
) -> (u16, String) {
    let response = http
        .post(format!("{}{path}", cluster.rest))
        .header("cookie", format!("parapet_session={session}"))
        .form(form)
        .send()
        .await
        .expect("console form");
    (
        response.status().as_u16(),
        response.text().await.expect("page"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_customers_console_never_reaches_another_and_forms_need_their_csrf_token() {
    let cluster = Cluster::start(None, 300);
    let edge_port = free_port();
    let _edge = cluster.start_edge("edge-1", "blue", edge_port);
    let edge: SocketAddr = ([127, 0, 0, 1], edge_port).into();
    let acme = cluster.customer("acme").await;
    let globex = cluster.customer("globex").await;
    let spec = |domain: &str| {
        json!({"domains": [domain], "origin": [{"url": cluster.origin}],
               "behavior": [{"path": "*", "cache": {"default_ttl": 300}}]})
    };
    let (status, _) = cluster
        .call(
            "PUT",
            "/v1/distributions/acme-shop",
            Some(&acme),
            Some(spec("shop.acme.test")),
        )
        .await;
    assert_eq!(status, 201);
    let wasm = std::fs::read(cluster::plugin_component("noop")).expect("noop plugin");
    let uploaded = cluster
        .http
        .post(format!("{}/v1/plugins/acme-secret", cluster.rest))
        .bearer_auth(&acme)
        .body(wasm)
        .send()
        .await
        .expect("upload");
    assert_eq!(uploaded.status(), 201);
    let ca = std::fs::read(&cluster.ca.ca_file).expect("test authority");
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("authority"))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let http = &http;
    wait_for_port(edge, 15);
    eventually(15, "acme's distribution on the edge", || async move {
        (cache_of(http, edge, "shop.acme.test", "/page.html").await == "MISS").then_some(())
    })
    .await;
    assert_eq!(
        cache_of(http, edge, "shop.acme.test", "/page.html").await,
        "HIT"
    );

    let (acme_session, acme_csrf) = session(&cluster, http, &acme).await;
    let (status, _) = post(
        &cluster,
        http,
        &acme_session,
        "/console/purge",
        &[
            ("csrf", &acme_csrf),
            ("distribution", "acme-shop"),
            ("kind", "tag"),
            ("value", "nothing"),
        ],
    )
    .await;
    assert_eq!(status, 303, "acme's own purge goes through");

    let (session, csrf) = session(&cluster, http, &globex).await;
    // What globex's console shows: none of acme's.
    for path in [
        "/console/distributions",
        "/console/purge",
        "/console/jobs",
        "/console/plugins",
        "/console/logs",
    ] {
        let (status, page) = get(&cluster, http, &session, path).await;
        assert_eq!(status, 200, "{path}");
        for secret in ["acme-shop", "shop.acme.test", "acme-secret"] {
            assert!(!page.contains(secret), "{path} shows {secret}");
        }
    }
    for path in [
        "/console/distributions/acme-shop",
        "/console/distributions/acme-shop?from=1&to=1",
        "/console/plugins/acme-secret/cost",
    ] {
        let (status, page) = get(&cluster, http, &session, path).await;
        assert_eq!(status, 404, "{path}: {page}");
        assert!(!page.contains("shop.acme.test"), "{path}");
        assert!(!page.contains("requests"), "{path}");
    }
    let (status, page) = get(
        &cluster,
        http,
        &session,
        "/console/logs?distribution=acme-shop",
    )
    .await;
    assert!(
        status == 200 && page.contains("distribution `acme-shop` not found"),
        "{page}"
    );
    let (status, traffic) = cluster
        .call(
            "GET",
            "/v1/distributions/acme-shop/traffic",
            Some(&globex),
            None,
        )
        .await;
    assert_eq!(status, 404, "{traffic}");
    let (status, _) = get(&cluster, http, &session, "/console/customers").await;
    assert_eq!(status, 403, "the operator's pages are the operator's");
    let acme_jobs = cluster.call("GET", "/v1/jobs", Some(&acme), None).await.1;
    let acme_job = acme_jobs[0]["id"]
        .as_str()
        .expect("acme's purge")
        .to_string();
    let (status, _) = get(
        &cluster,
        http,
        &session,
        &format!("/console/jobs/{acme_job}"),
    )
    .await;
    assert_eq!(status, 404);

    // What globex's console changes: none of acme's.
    let config = spec("shop.acme.test").to_string();
    let attempts: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "/console/distributions/acme-shop",
            vec![("csrf", &csrf), ("format", "json"), ("config", &config)],
        ),
        (
            "/console/distributions",
            vec![
                ("csrf", &csrf),
                ("id", "acme-shop"),
                ("format", "json"),
                ("config", &config),
            ],
        ),
        (
            "/console/purge",
            vec![
                ("csrf", &csrf),
                ("distribution", "acme-shop"),
                ("kind", "everything"),
            ],
        ),
        (
            "/console/prewarm",
            vec![
                ("csrf", &csrf),
                ("distribution", "acme-shop"),
                ("urls", "http://shop.acme.test/page.html"),
            ],
        ),
        (
            "/console/deployments",
            vec![
                ("csrf", &csrf),
                ("distribution", "acme-shop"),
                ("version", "1"),
                ("group", "blue"),
            ],
        ),
        ("/console/customers/acme/suspend", vec![("csrf", &csrf)]),
    ];
    for (path, form) in &attempts {
        let (status, page) = post(&cluster, http, &session, path, form).await;
        assert!((400..500).contains(&status), "{path}: {status} {page}");
    }
    // A form without its CSRF token, or with another session's, is refused
    // before it reaches the API.
    for forged in ["", acme_csrf.as_str()] {
        let (status, page) = post(
            &cluster,
            http,
            &session,
            "/console/purge",
            &[
                ("csrf", forged),
                ("distribution", "globex-none"),
                ("kind", "everything"),
            ],
        )
        .await;
        assert_eq!(status, 403, "{page}");
        assert!(page.contains("CSRF token is missing or wrong"), "{page}");
    }
    let (status, _) = post(
        &cluster,
        http,
        &acme_session,
        "/console/purge",
        &[("distribution", "acme-shop"), ("kind", "everything")],
    )
    .await;
    assert_eq!(status, 403, "acme's own form without its token");

    // Acme's object, configuration and jobs are as they were.
    assert_eq!(
        cache_of(http, edge, "shop.acme.test", "/page.html").await,
        "HIT"
    );
    let view = cluster
        .call("GET", "/v1/distributions/acme-shop", Some(&acme), None)
        .await
        .1;
    assert_eq!(view["live_version"], 1);
    let jobs = cluster.call("GET", "/v1/jobs", Some(&acme), None).await.1;
    assert_eq!(jobs.as_array().map(Vec::len), Some(1), "{jobs}");
    let customers = cluster
        .call("GET", "/v1/customers", Some(ADMIN), None)
        .await
        .1;
    assert!(customers
        .as_array()
        .expect("list")
        .iter()
        .all(|c| c["suspended"] == false));
}
