//! What the controller admits of a customer: origins on public addresses
//! only, plugin limits within the operator's maxima, sizes within the
//! quotas, plugins that accept their configuration, and purges and
//! prewarms on the distribution's own domains. Each refusal names the
//! field; nothing refused reaches the store or another customer.

mod common;

use common::*;
use serde_json::{json, Value};

/// Applies `spec` as distribution `id`; returns status and answer.
async fn apply(controller: &TestController, token: &str, id: &str, spec: Value) -> (u16, Value) {
    controller
        .call(
            "PUT",
            &format!("/v1/distributions/{id}"),
            Some(token),
            Some(spec),
        )
        .await
}

fn error(body: &Value) -> String {
    body["error"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origins_on_internal_addresses_are_refused() {
    // Default settings: nothing but public addresses.
    let controller = TestController::start_with_settings(Default::default()).await;
    let acme = controller.customer("acme").await;
    for (origin, field) in [
        ("http://169.254.169.254/", "origin[0].url"),
        ("http://127.0.0.1:8080", "origin[0].url"),
        ("http://10.0.0.5", "origin[0].url"),
        ("http://[::1]:80", "origin[0].url"),
        ("http://[fd00::1]", "origin[0].url"),
    ] {
        let mut spec = distribution("shop.example.com");
        spec["origin"][0]["url"] = json!(origin);
        let (status, body) = apply(&controller, &acme, "shop", spec).await;
        assert_eq!(status, 400, "{origin}: {body}");
        let message = error(&body);
        assert!(message.starts_with(field), "{origin}: {message}");
        assert!(message.contains("may not use"), "{origin}: {message}");
    }
    let (status, _) = controller
        .call("GET", "/v1/distributions/shop", Some(&acme), None)
        .await;
    assert_eq!(status, 404, "nothing refused was stored");
    // A public address is fine.
    let mut spec = distribution("shop.example.com");
    spec["origin"][0]["url"] = json!("http://93.184.215.14");
    let (status, body) = apply(&controller, &acme, "shop", spec).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_limits_above_the_maxima_are_refused() {
    let controller = TestController::start().await;
    let acme = controller.customer("acme").await;
    let (status, _) = controller.upload(&acme, "noop", plugin("noop")).await;
    assert_eq!(status, 201);
    let mut spec = distribution("shop.example.com");
    spec["plugin"] =
        json!([{"name": "noop", "wasm": "noop", "limits": {"hook_deadline_ms": 600000}}]);
    let (status, body) = apply(&controller, &acme, "shop", spec).await;
    assert_eq!(status, 400, "{body}");
    let message = error(&body);
    assert!(
        message.contains("plugin[0].limits.hook_deadline_ms") && message.contains("50"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_refuses_its_configuration_is_refused_with_its_message() {
    let controller = TestController::start().await;
    let acme = controller.customer("acme").await;
    controller.upload(&acme, "testbed", plugin("testbed")).await;
    controller.upload(&acme, "rewrite", plugin("rewrite")).await;
    let mut spec = distribution("shop.example.com");
    spec["plugin"] = json!([{"name": "bad", "wasm": "testbed", "config": {"mode": "reject"}}]);
    let (status, body) = apply(&controller, &acme, "shop", spec).await;
    assert_eq!(status, 400, "{body}");
    let message = error(&body);
    assert!(message.starts_with("plugin[0]: plugin `bad`"), "{message}");
    // The rewrite plugin names the faulty rule of its configuration.
    let mut spec = distribution("shop.example.com");
    spec["plugin"] = json!([{"name": "rw", "wasm": "rewrite",
        "config": {"rules": [{"match": "regex", "from": "(", "to": "/"}]}}]);
    let (status, body) = apply(&controller, &acme, "shop", spec).await;
    assert_eq!(status, 400, "{body}");
    assert!(error(&body).contains("plugin `rw`"), "{body}");
    // A good configuration of the same plugin is taken.
    let mut spec = distribution("shop.example.com");
    spec["plugin"] = json!([{"name": "probe", "wasm": "testbed"}]);
    let (status, body) = apply(&controller, &acme, "shop", spec).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_bound_what_a_customer_holds() {
    let mut settings = loopback_origins();
    settings.quotas.distributions_per_customer = 2;
    settings.quotas.kv_bytes_per_distribution = 1000;
    settings.quotas.distribution_config_bytes = 2000;
    let controller = TestController::start_with_settings(settings).await;
    let acme = controller.customer("acme").await;
    let globex = controller.customer("globex").await;
    for id in ["one", "two"] {
        let (status, body) = apply(
            &controller,
            &acme,
            id,
            distribution(&format!("{id}.acme.test")),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = apply(&controller, &acme, "three", distribution("three.acme.test")).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        error(&body).contains("distributions_per_customer"),
        "{body}"
    );
    // Another customer's count is its own.
    let (status, body) = apply(&controller, &globex, "g", distribution("g.globex.test")).await;
    assert_eq!(status, 201, "{body}");
    // A new version of an existing distribution does not count again.
    let (status, body) = apply(&controller, &acme, "two", distribution("2.acme.test")).await;
    assert_eq!(status, 201, "{body}");

    let mut big = distribution("one.acme.test");
    big["behavior"] = json!((0..300)
        .map(|i| json!({"path": format!("/p{i}/*")}))
        .chain([json!({"path": "*"})])
        .collect::<Vec<_>>());
    let (status, body) = apply(&controller, &acme, "one", big).await;
    assert_eq!(status, 400, "{body}");
    assert!(error(&body).contains("distribution_config_bytes"), "{body}");

    let value = "v".repeat(600);
    let (status, body) = controller
        .call(
            "PUT",
            "/v1/distributions/one/kv/a",
            Some(&acme),
            Some(json!({"value": value})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = controller
        .call(
            "PUT",
            "/v1/distributions/one/kv/b",
            Some(&acme),
            Some(json!({"value": value})),
        )
        .await;
    assert_eq!(status, 413, "{body}");
    assert!(error(&body).contains("kv_bytes_per_distribution"), "{body}");
    // Replacing a key counts its new value only.
    let (status, body) = controller
        .call(
            "PUT",
            "/v1/distributions/one/kv/a",
            Some(&acme),
            Some(json!({"value": "x".repeat(900)})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purges_and_prewarms_stay_on_the_distributions_domains() {
    let controller = TestController::start().await;
    let acme = controller.customer("acme").await;
    let globex = controller.customer("globex").await;
    let mut spec = distribution("a.test");
    spec["domains"] = json!(["a.test", "*.cdn.a.test"]);
    apply(&controller, &acme, "a", spec).await;
    apply(&controller, &globex, "b", distribution("b.test")).await;

    let purge = |body: Value| {
        let controller = &controller;
        let acme = acme.clone();
        async move {
            controller
                .call("POST", "/v1/purges", Some(&acme), Some(body))
                .await
        }
    };
    for (body, field) in [
        (json!({"distribution": "a", "url": "b.test/page"}), "url"),
        (
            json!({"distribution": "a", "url": "https://b.test/page"}),
            "url",
        ),
        (json!({"distribution": "a", "prefix": "b.test/"}), "prefix"),
        (
            json!({"distribution": "a", "prefix": "cdn.a.test/"}),
            "prefix",
        ),
    ] {
        let (status, answer) = purge(body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        let message = error(&answer);
        assert!(
            message.starts_with(&format!("{field}: ")) && message.contains("not on a domain"),
            "{body}: {message}"
        );
    }
    for body in [
        json!({"distribution": "a", "url": "a.test/page?x=1"}),
        json!({"distribution": "a", "prefix": "img.cdn.a.test/"}),
        json!({"distribution": "a", "tag": "shared"}),
    ] {
        let (status, answer) = purge(body.clone()).await;
        assert_eq!(status, 202, "{body}: {answer}");
    }
    // Another customer's distribution is not found, whatever the target.
    let (status, _) = purge(json!({"distribution": "b", "tag": "shared"})).await;
    assert_eq!(status, 404);

    let prewarm = |urls: Vec<String>| {
        let controller = &controller;
        let acme = acme.clone();
        async move {
            controller
                .call(
                    "POST",
                    "/v1/prewarms",
                    Some(&acme),
                    Some(json!({"distribution": "a", "urls": urls})),
                )
                .await
        }
    };
    let (status, answer) = prewarm(vec!["http://a.test/1".into(), "http://b.test/2".into()]).await;
    assert_eq!(status, 400, "{answer}");
    assert!(error(&answer).starts_with("urls[1]: "), "{answer}");
    let many: Vec<String> = (0..1001).map(|i| format!("http://a.test/{i}")).collect();
    let (status, answer) = prewarm(many).await;
    assert_eq!(status, 400, "{answer}");
    assert!(error(&answer).contains("at most 1000 URLs"), "{answer}");
    let (status, answer) = prewarm(vec!["https://x.cdn.a.test/1".into()]).await;
    assert_eq!(status, 202, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customers_stream_of_changes_is_slowed_and_no_one_elses() {
    let mut settings = loopback_origins();
    settings.quotas.changes_per_minute_per_customer = std::num::NonZeroU32::new(5).unwrap();
    let controller = TestController::start_with_settings(settings).await;
    let acme = controller.customer("acme").await;
    let globex = controller.customer("globex").await;
    for version in 0..5 {
        let (status, body) = apply(
            &controller,
            &acme,
            "a",
            distribution(&format!("v{version}.acme.test")),
        )
        .await;
        assert_eq!(status, 201, "change {version}: {body}");
    }
    // The sixth change in the minute is refused, whatever it is.
    let response = reqwest::Client::new()
        .put(controller.url("/v1/distributions/a/kv/k"))
        .bearer_auth(&acme)
        .json(&json!({"value": "v"}))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("seconds");
    assert!((1..=12).contains(&retry_after), "{retry_after}");
    let body: Value = response.json().await.expect("json");
    assert_eq!(
        error(&body),
        format!("customer `acme` made more than 5 changes in a minute; retry in {retry_after} s")
    );
    // Nothing of it was kept.
    let (status, _) = controller
        .call("GET", "/v1/distributions/a/kv/k", Some(&acme), None)
        .await;
    assert_eq!(status, 404);
    // Reads go on; another customer's changes and the operator's too.
    let (status, body) = controller
        .call("GET", "/v1/distributions/a", Some(&acme), None)
        .await;
    assert_eq!(status, 200, "{body}");
    for version in 0..5 {
        let (status, body) = apply(
            &controller,
            &globex,
            "g",
            distribution(&format!("v{version}.globex.test")),
        )
        .await;
        assert_eq!(status, 201, "globex change {version}: {body}");
    }
    let initech = controller.customer("initech").await;
    assert!(!initech.is_empty());
}
