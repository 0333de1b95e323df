//! Tenancy: every route of the OpenAPI document, called with another
//! customer's token against the first customer's resources, is refused
//! (403 or 404) and changes nothing; without a token every route is 401.

mod common;

use common::*;
use serde_json::{json, Value};

/// A body that would be accepted for the route, so that a refusal can
/// only come from the tenancy check.
fn body_for(method: &str, path: &str) -> Option<Value> {
    match (method, path) {
        ("put", "/v1/distributions/{distribution}") => Some(distribution("intruder.example.com")),
        ("put", "/v1/distributions/{distribution}/kv/{key}") => Some(json!({"value": "stolen"})),
        ("post", "/v1/purges") => Some(json!({"distribution": "shop", "everything": true})),
        ("post", "/v1/prewarms") => {
            Some(json!({"distribution": "shop", "urls": ["https://shop.example.com/"]}))
        }
        ("post", "/v1/deployments") => {
            Some(json!({"distribution": "shop", "version": 2, "group": "blue"}))
        }
        ("post", "/v1/customers") => Some(json!({"id": "evil", "name": "evil"})),
        ("post", "/v1/tokens") => Some(json!({"customer": "acme", "name": "stolen"})),
        ("put", "/v1/distributions/{distribution}/certificate") => Some(certificate()),
        _ => None,
    }
}

/// A self-signed certificate upload for `shop.example.com`.
fn certificate() -> Value {
    let issued =
        rcgen::generate_simple_self_signed(vec!["shop.example.com".to_string()]).expect("cert");
    json!({"certificate": issued.cert.pem(), "private_key": issued.signing_key.serialize_pem()})
}

/// The route with acme's resources in place of its parameters.
fn concrete(path: &str, deployment: &str, job: &str, token: &str) -> String {
    path.replace("{distribution}", "shop")
        .replace("{customer}", "acme")
        .replace("{key}", "secret")
        .replace("{version}", "1")
        .replace("{plugin}", "waf")
        .replace("{deployment}", deployment)
        .replace("{job}", job)
        .replace("{token}", token)
        .replace("{edge}", "fra-1")
        + if path.ends_with("/diff") {
            "?from=1&to=2"
        } else {
            ""
        }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenant_reaches_nothing_on_any_route() {
    let controller = TestController::start().await;
    let acme = controller.customer("acme").await;
    let globex = controller.customer("globex").await;

    // acme's resources: a distribution with two versions, a plugin, a KV
    // entry, a certificate, a job, a deployment.
    let (status, _) = controller.upload(&acme, "waf", plugin("waf")).await;
    assert_eq!(status, 201);
    controller
        .call(
            "PUT",
            "/v1/distributions/shop",
            Some(&acme),
            Some(distribution("shop.example.com")),
        )
        .await;
    controller
        .call(
            "PUT",
            "/v1/distributions/shop?stage=true",
            Some(&acme),
            Some(distribution("shop.example.com")),
        )
        .await;
    controller
        .call(
            "PUT",
            "/v1/distributions/shop/kv/secret",
            Some(&acme),
            Some(json!({"value": "acme's"})),
        )
        .await;
    let (status, acme_certificate) = controller
        .call(
            "PUT",
            "/v1/distributions/shop/certificate",
            Some(&acme),
            Some(certificate()),
        )
        .await;
    assert_eq!(status, 200, "{acme_certificate}");
    let (_, job) = controller
        .call(
            "POST",
            "/v1/purges",
            Some(&acme),
            Some(json!({"distribution": "shop", "url": "shop.example.com/a"})),
        )
        .await;
    let job = job["id"].as_str().expect("job id").to_string();
    let (status, deployment) = controller
        .call(
            "POST",
            "/v1/deployments",
            Some(&acme),
            Some(json!({"distribution": "shop", "version": 2, "group": "blue"})),
        )
        .await;
    assert_eq!(status, 201, "{deployment}");
    let deployment = deployment["id"]
        .as_str()
        .expect("deployment id")
        .to_string();
    let (_, tokens) = controller
        .call("GET", "/v1/tokens", Some(ADMIN), None)
        .await;
    let token_id = tokens[0]["id"].as_str().expect("token id").to_string();

    let (_, openapi) = controller.call("GET", "/openapi.json", None, None).await;
    let paths = openapi["paths"].as_object().expect("paths");
    let mut walked = 0;
    for (path, item) in paths {
        for method in ["get", "put", "post", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            walked += 1;
            let url = concrete(path, &deployment, &job, &token_id);
            let body = body_for(method, path);
            let upper = method.to_uppercase();

            let (status, answer) = controller.call(&upper, &url, None, body.clone()).await;
            assert_eq!(status, 401, "{upper} {url} without a token: {answer}");

            let (status, answer) = if method == "post" && path == "/v1/plugins/{plugin}" {
                controller.upload(&globex, "waf", plugin("waf")).await
            } else {
                controller.call(&upper, &url, Some(&globex), body).await
            };
            // Listing routes answer 200 with globex's own (empty) data.
            let listing = method == "get"
                && matches!(
                    path.as_str(),
                    "/v1/distributions"
                        | "/v1/plugins"
                        | "/v1/jobs"
                        | "/v1/deployments"
                        | "/v1/certificates"
                );
            // Plugin names are per customer: uploading or deleting `waf`
            // acts on globex's own `waf`.
            let own_plugin = path == "/v1/plugins/{plugin}";
            if listing {
                assert_eq!(status, 200, "{upper} {url}: {answer}");
                assert_eq!(answer, json!([]), "{upper} {url} leaked acme's data");
            } else if own_plugin {
                assert!(status == 201 || status == 200, "{upper} {url}: {answer}");
                let items = answer
                    .as_array()
                    .cloned()
                    .unwrap_or_else(|| vec![answer.clone()]);
                assert!(
                    items.iter().all(|p| p["customer"] == "globex"),
                    "{upper} {url}: {answer}"
                );
            } else {
                assert!(
                    status == 403 || status == 404,
                    "{upper} {url} with globex's token: {status} {answer}"
                );
            }
        }
    }
    assert!(walked >= 25, "only {walked} routes walked");

    // Nothing of acme's changed.
    let (_, shop) = controller
        .call("GET", "/v1/distributions/shop", Some(&acme), None)
        .await;
    assert_eq!(shop["customer"], "acme");
    assert_eq!(shop["domains"], json!(["shop.example.com"]));
    let (_, entry) = controller
        .call("GET", "/v1/distributions/shop/kv/secret", Some(&acme), None)
        .await;
    assert_eq!(entry["value"], "acme's");
    let (_, certificate) = controller
        .call(
            "GET",
            "/v1/distributions/shop/certificate",
            Some(&acme),
            None,
        )
        .await;
    assert_eq!(certificate["sha256"], acme_certificate["sha256"]);
    let (_, plugins) = controller
        .call("GET", "/v1/plugins", Some(&acme), None)
        .await;
    assert_eq!(plugins.as_array().expect("list").len(), 1);
    let (_, state) = controller
        .call(
            "GET",
            &format!("/v1/deployments/{deployment}"),
            Some(&acme),
            None,
        )
        .await;
    assert_eq!(state["state"], "rolling");
}
