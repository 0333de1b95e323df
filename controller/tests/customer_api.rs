//! The customer's REST routes over real HTTP: distributions and their
//! versions, plugins, KV, purges and prewarms as jobs, deployments.

mod common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributions_get_versions_and_diffs() {
    let controller = TestController::start().await;
    let acme = controller.customer("acme").await;

    let (status, body) = controller
        .call(
            "PUT",
            "/v1/distributions/shop",
            Some(&acme),
            Some(distribution("shop.example.com")),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["live_version"], 1);
    assert_eq!(body["customer"], "acme");

    let mut second = distribution("shop.example.com");
    second["behavior"] = json!([{"path": "*", "cache": {"default_ttl": 60}}]);
    let (status, body) = controller
        .call("PUT", "/v1/distributions/shop", Some(&acme), Some(second))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["live_version"], 2);

    let (_, versions) = controller
        .call("GET", "/v1/distributions/shop/versions", Some(&acme), None)
        .await;
    assert_eq!(versions.as_array().expect("list").len(), 2);
    assert_eq!(versions[1]["live"], true);
    let (status, diff) = controller
        .call(
            "GET",
            "/v1/distributions/shop/diff?from=1&to=2",
            Some(&acme),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let diff = diff["diff"].as_str().expect("text");
    assert!(
        diff.contains("--- shop@1") && diff.contains("+++ shop@2"),
        "{diff}"
    );
    assert!(diff.contains("+      \"cache\": {"), "{diff}");

    let (_, list) = controller
        .call("GET", "/v1/distributions", Some(&acme), None)
        .await;
    assert_eq!(list[0]["id"], "shop");
    let (status, one) = controller
        .call("GET", "/v1/distributions/shop", Some(&acme), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(one["config"]["behavior"][0]["cache"]["default_ttl"], 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configs_an_edge_would_refuse_are_refused_with_its_message() {
    let controller = TestController::start().await;
    let acme = controller.customer("acme").await;
    let globex = controller.customer("globex").await;
    let cases = [
        (
            json!({"domains": ["a.example.com"], "origin": [{"url": "http://o"}], "behavior": [{"path": "/x/*"}]}),
            "behavior: a default behavior (`path = \"*\"`) is needed",
        ),
        (
            json!({"domains": ["a.example.com"], "origin": [{"url": "http://o"}], "behavior": [{"path": "*", "cache": {"min_ttl": 60, "max_ttl": 10}}]}),
            "behavior[0].cache",
        ),
        (
            json!({"domains": ["a.example.com"], "origin": [{"url": "nope"}], "behavior": [{"path": "*"}]}),
            "origin[0].url: `nope` must be an http:// or https:// URL",
        ),
        (
            json!({"domains": ["a.example.com"], "origin": [{"url": "http://o", "timeout": 3}], "behavior": [{"path": "*"}]}),
            "origin[0].timeout: unknown field `timeout`",
        ),
        (
            json!({"domains": ["a.example.com"], "origin": [{"url": "http://o"}], "behavior": [{"path": "*"}], "id": "x"}),
            "id: comes from the URL",
        ),
        (
            json!({"domains": ["a.example.com"], "origin": [{"url": "http://o"}], "behavior": [{"path": "*"}],
                "plugin": [{"name": "waf", "wasm": "waf"}]}),
            "plugin[0].wasm: no plugin `waf` uploaded",
        ),
        (
            json!({"domains": ["a.example.com", "*"], "origin": [{"url": "http://o"}], "behavior": [{"path": "*"}]}),
            "domains[1]: `*` would take every other customer's unmatched traffic",
        ),
        (json!([1, 2]), "the distribution must be a JSON object"),
    ];
    for (spec, expected) in cases {
        let (status, body) = controller
            .call("PUT", "/v1/distributions/site", Some(&acme), Some(spec))
            .await;
        assert_eq!(status, 400, "{body}");
        let error = body["error"].as_str().expect("error");
        assert!(
            error.starts_with(expected),
            "{error:?} should start with {expected:?}"
        );
    }
    // Domains are unique across customers, and ids too.
    let (status, _) = controller
        .call(
            "PUT",
            "/v1/distributions/shop",
            Some(&acme),
            Some(distribution("shop.example.com")),
        )
        .await;
    assert_eq!(status, 201);
    let (status, body) = controller
        .call(
            "PUT",
            "/v1/distributions/other",
            Some(&globex),
            Some(distribution("SHOP.example.com")),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        body["error"],
        "`shop.example.com` is served by another distribution"
    );
    let (status, body) = controller
        .call(
            "PUT",
            "/v1/distributions/shop",
            Some(&globex),
            Some(distribution("globex.example.com")),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    // The operator acts for a customer it names.
    let (status, body) = controller
        .call(
            "PUT",
            "/v1/distributions/ops",
            Some(ADMIN),
            Some(distribution("ops.example.com")),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = controller
        .call(
            "PUT",
            "/v1/distributions/ops?customer=globex",
            Some(ADMIN),
            Some(distribution("ops.example.com")),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["customer"], "globex");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domains_stay_reserved_while_a_version_can_serve_them() {
    let controller = TestController::start().await;
    let acme = controller.customer("acme").await;
    let globex = controller.customer("globex").await;
    let put = |token: String, id: &'static str, domain: &'static str| {
        let controller = &controller;
        async move {
            let path = format!("/v1/distributions/{id}");
            let spec = distribution(domain);
            controller
                .call("PUT", &path, Some(&token), Some(spec))
                .await
        }
    };
    let deploy = |version: u64| {
        let (controller, acme) = (&controller, acme.clone());
        async move {
            let spec = json!({"distribution": "shop", "version": version, "group": "blue"});
            controller
                .call("POST", "/v1/deployments", Some(&acme), Some(spec))
                .await
        }
    };
    assert_eq!(put(acme.clone(), "shop", "old.example.com").await.0, 201);
    assert_eq!(put(acme.clone(), "shop", "new.example.com").await.0, 201);

    // Version 1 rolls out again to one group: its domain is reserved.
    let (status, deployment) = deploy(1).await;
    assert_eq!(status, 201, "{deployment}");
    let (status, body) = put(globex.clone(), "other", "old.example.com").await;
    assert_eq!(status, 409, "{body}");
    let id = deployment["id"].as_str().expect("id");
    let (status, body) = controller
        .call(
            "POST",
            &format!("/v1/deployments/{id}/rollback"),
            Some(&acme),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Rolled back, no version in service names it: another customer takes
    // it, and version 1 can no longer be rolled out.
    let (status, body) = put(globex.clone(), "other", "old.example.com").await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = deploy(1).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        body["error"],
        "`old.example.com` is served by another distribution"
    );
}

/// `component` with a custom section that pads it to about `size` bytes:
/// still a valid component, with a different hash.
fn padded(component: &[u8], size: usize) -> Vec<u8> {
    let name = b"padding";
    let payload = size.saturating_sub(component.len());
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.resize(section.len() + payload, 0xab);
    let mut out = component.to_vec();
    out.push(0); // custom section id
    let mut length = section.len();
    loop {
        let byte = (length & 0x7f) as u8;
        length >>= 7;
        if length == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(&section);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_are_validated_versioned_and_deleted_when_unused() {
    let controller = TestController::start().await;
    let acme = controller.customer("acme").await;
    let waf = plugin("waf");

    let (status, body) = controller.upload(&acme, "waf", waf.clone()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["version"], 1);
    assert_eq!(body["size"], waf.len());
    // The same bytes again: the same version.
    let (status, body) = controller.upload(&acme, "waf", waf.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"], 1);
    // A 10 MiB component is a new version.
    let big = padded(&waf, 10 << 20);
    let (status, body) = controller.upload(&acme, "waf", big.clone()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["version"], 2);
    assert_eq!(body["size"], big.len());

    // Not a component, not wasm, too large.
    let core_module = b"\0asm\x01\0\0\0".to_vec();
    let (status, body) = controller.upload(&acme, "bad", core_module).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .starts_with("not a valid plugin: "),
        "{body}"
    );
    let (status, body) = controller.upload(&acme, "bad", b"hello".to_vec()).await;
    assert_eq!(status, 400, "{body}");
    // A component of another world: refused with the export it lacks.
    let other_world = wat::parse_str(
        r#"(component
            (core module $m (func (export "greet")))
            (core instance $i (instantiate $m))
            (func (export "greet") (canon lift (core func $i "greet"))))"#,
    )
    .expect("WAT");
    let (status, body) = controller.upload(&acme, "bad", other_world).await;
    assert_eq!(status, 400, "{body}");
    let error = body["error"].as_str().expect("error");
    assert!(
        error.starts_with("not a valid plugin: not a parapet:plugin@0.1.1 plugin: ")
            && error.contains("on-launch"),
        "{body}"
    );
    // Too large (the limit is 12 MiB here): refused from the announced
    // length, before the body is read.
    let head = format!(
        "POST /v1/plugins/huge HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {acme}\r\ncontent-length: {}\r\n\r\n",
        13 << 20
    );
    let mut stream = tokio::net::TcpStream::connect(controller.running.rest)
        .await
        .expect("connect");
    tokio::io::AsyncWriteExt::write_all(&mut stream, head.as_bytes())
        .await
        .expect("write");
    let mut answer = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut answer)
        .await
        .expect("read");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    assert!(
        answer.contains("the upload is larger than this controller accepts (--max-plugin-mib)"),
        "{answer}"
    );

    // In use by a distribution: not deleted.
    let mut spec = distribution("shop.example.com");
    spec["plugin"] = json!([{"name": "waf", "wasm": "waf@1"}]);
    spec["behavior"] = json!([{"path": "*", "viewer_request": ["waf"]}]);
    let (status, body) = controller
        .call("PUT", "/v1/distributions/shop", Some(&acme), Some(spec))
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = controller
        .call("DELETE", "/v1/plugins/waf", Some(&acme), None)
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        body["error"],
        "plugin `waf` is used by distribution `shop` (version 1)"
    );
    // Unused again: deleted.
    controller
        .call(
            "PUT",
            "/v1/distributions/shop",
            Some(&acme),
            Some(distribution("shop.example.com")),
        )
        .await;
    let (status, body) = controller
        .call("DELETE", "/v1/plugins/waf", Some(&acme), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, list) = controller
        .call("GET", "/v1/plugins", Some(&acme), None)
        .await;
    assert_eq!(list, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_entries() {
    let controller = TestController::start().await;
    let acme = controller.customer("acme").await;
    controller
        .call(
            "PUT",
            "/v1/distributions/shop",
            Some(&acme),
            Some(distribution("shop.example.com")),
        )
        .await;
    let (status, body) = controller
        .call(
            "PUT",
            "/v1/distributions/shop/kv/apikey:demo",
            Some(&acme),
            Some(json!({"value": "ok"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, body) = controller
        .call(
            "GET",
            "/v1/distributions/shop/kv/apikey:demo",
            Some(&acme),
            None,
        )
        .await;
    assert_eq!(body["value"], "ok");
    let (_, list) = controller
        .call("GET", "/v1/distributions/shop/kv", Some(&acme), None)
        .await;
    assert_eq!(list.as_array().expect("list").len(), 1);
    let (status, _) = controller
        .call(
            "DELETE",
            "/v1/distributions/shop/kv/apikey:demo",
            Some(&acme),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = controller
        .call(
            "GET",
            "/v1/distributions/shop/kv/apikey:demo",
            Some(&acme),
            None,
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purges_need_exactly_one_selector() {
    let controller = TestController::start().await;
    let acme = controller.customer("acme").await;
    controller
        .call(
            "PUT",
            "/v1/distributions/shop",
            Some(&acme),
            Some(distribution("shop.example.com")),
        )
        .await;
    for body in [
        json!({"distribution": "shop"}),
        json!({"distribution": "shop", "url": "shop.example.com/a", "tag": "t"}),
    ] {
        let (status, answer) = controller
            .call("POST", "/v1/purges", Some(&acme), Some(body))
            .await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(
            answer["error"],
            "give exactly one of `url`, `prefix`, `tag` or `everything`"
        );
    }
    // No edges: the job is done at once.
    let (status, job) = controller
        .call(
            "POST",
            "/v1/purges",
            Some(&acme),
            Some(json!({"distribution": "shop", "prefix": "shop.example.com/img/"})),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().expect("id").to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (_, job) = controller
            .call("GET", &format!("/v1/jobs/{id}"), Some(&acme), None)
            .await;
        if job["status"] == "done" {
            assert_eq!(job["progress"], "0/0");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{job}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (status, body) = controller
        .call(
            "POST",
            "/v1/prewarms",
            Some(&acme),
            Some(json!({"distribution": "shop", "urls": ["ftp://x"]})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "urls[0]: `ftp://x` is not an http(s) URL");
}
