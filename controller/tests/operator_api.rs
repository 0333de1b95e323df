//! The operator's REST routes over real HTTP: customers, tokens, edges,
//! authentication errors and body validation.

mod common;

use common::*;
use parapet_proto::edge::edge_control_client::EdgeControlClient;
use parapet_proto::edge::{HeartbeatRequest, RegisterRequest};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_and_tokens() {
    let controller = TestController::start().await;
    let token = controller.customer("acme").await;
    assert!(token.starts_with("ppc_"), "{token}");

    let (status, list) = controller
        .call("GET", "/v1/customers", Some(ADMIN), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(list[0]["id"], "acme");
    assert_eq!(list[0]["suspended"], false);

    let (status, body) = controller
        .call(
            "POST",
            "/v1/customers",
            Some(ADMIN),
            Some(json!({"id": "acme", "name": "again"})),
        )
        .await;
    assert_eq!(status, 409, "{body}");

    // Tokens are listed without their secret.
    let (status, tokens) = controller
        .call("GET", "/v1/tokens", Some(ADMIN), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(tokens.as_array().expect("list").len(), 1);
    assert!(tokens[0].get("token").is_none(), "{tokens}");
    let id = tokens[0]["id"].as_str().expect("id").to_string();

    // A customer token may not use operator routes.
    let (status, body) = controller
        .call("GET", "/v1/customers", Some(&token), None)
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "this needs an operator token");

    // Suspension refuses the customer's tokens; resuming restores them.
    let (status, _) = controller
        .call("POST", "/v1/customers/acme/suspend", Some(ADMIN), None)
        .await;
    assert_eq!(status, 200);
    let (status, body) = controller
        .call("GET", "/v1/customers", Some(&token), None)
        .await;
    assert_eq!(status, 403);
    assert_eq!(body["error"], "customer acme is suspended");
    controller
        .call("POST", "/v1/customers/acme/resume", Some(ADMIN), None)
        .await;
    let (status, _) = controller
        .call("GET", "/v1/customers", Some(&token), None)
        .await;
    assert_eq!(status, 403, "back to an ordinary customer refusal");

    // Revoked tokens get 401.
    let (status, body) = controller
        .call("DELETE", &format!("/v1/tokens/{id}"), Some(ADMIN), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["revoked"], true);
    let (status, body) = controller
        .call("GET", "/v1/customers", Some(&token), None)
        .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], format!("token {id} was revoked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_credentials_get_401() {
    let controller = TestController::start().await;
    let (status, body) = controller.call("GET", "/v1/customers", None, None).await;
    assert_eq!(status, 401);
    assert_eq!(
        body["error"],
        "missing bearer token: send `Authorization: Bearer <token>`"
    );
    let (status, body) = controller
        .call("GET", "/v1/customers", Some("ppc_nope"), None)
        .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_get_400_with_the_path() {
    let controller = TestController::start().await;
    let cases = [
        (
            json!({"id": "acme", "name": "A", "colour": "red"}),
            "invalid body at `colour`: unknown field `colour`, expected `id` or `name`",
        ),
        (
            json!({"id": 7, "name": "A"}),
            "invalid body at `id`: invalid type: integer `7`, expected a string",
        ),
        (
            json!({"id": "Not Valid", "name": "A"}),
            "customer `Not Valid` is not a valid id",
        ),
    ];
    for (body, expected) in cases {
        let (status, answer) = controller
            .call("POST", "/v1/customers", Some(ADMIN), Some(body))
            .await;
        assert_eq!(status, 400, "{answer}");
        let error = answer["error"].as_str().expect("error");
        assert!(
            error.starts_with(expected),
            "{error:?} should start with {expected:?}"
        );
    }
    let response = controller
        .http
        .post(controller.url("/v1/customers"))
        .bearer_auth(ADMIN)
        .body("{\"id\": ")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 400);
    let text = response.text().await.expect("text");
    assert!(text.contains("invalid JSON: EOF while parsing"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edges_register_over_grpc_and_appear_with_their_health() {
    let controller = TestController::start().await;
    let mut client = EdgeControlClient::connect(format!("http://{}", controller.grpc()))
        .await
        .expect("gRPC connects");
    let refused = register_fra(&mut client, "wrong")
        .await
        .expect_err("a wrong bootstrap token");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    // The operator's token is not the bootstrap token.
    let refused = register_fra(&mut client, ADMIN)
        .await
        .expect_err("the operator's token");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);

    let registered = client
        .register(RegisterRequest {
            bootstrap_token: BOOTSTRAP.into(),
            name: "fra-1".into(),
            pop: "fra".into(),
            role: "edge".into(),
            group: "blue".into(),
            version: "0.1.0".into(),
            ..Default::default()
        })
        .await
        .expect("registers")
        .into_inner();
    assert!(registered.credential.starts_with("ppe_"));

    // Registered, no heartbeat yet: listed, not healthy.
    let (status, edges) = controller.call("GET", "/v1/edges", Some(ADMIN), None).await;
    assert_eq!(status, 200);
    assert_eq!(edges[0]["name"], "fra-1");
    assert_eq!(edges[0]["healthy"], false);

    let mut request = tonic::Request::new(HeartbeatRequest {
        config_revision: 3,
        version: "0.1.0".into(),
        requests_per_second: 12.5,
        cache_bytes: 4096,
        cache_objects: 2,
        serving: true,
        ..Default::default()
    });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", registered.credential)
            .parse()
            .expect("header"),
    );
    let answer = client
        .heartbeat(request)
        .await
        .expect("heartbeat")
        .into_inner();
    assert_eq!(answer.interval_ms, 1_000);
    let (_, edges) = controller.call("GET", "/v1/edges", Some(ADMIN), None).await;
    assert_eq!(edges[0]["healthy"], true, "{edges}");
    assert_eq!(edges[0]["cache_bytes"], 4096);
    assert_eq!(edges[0]["group"], "blue");
    assert_eq!(edges[0]["config_revision"], 3);
    let (status, groups) = controller
        .call("GET", "/v1/groups", Some(ADMIN), None)
        .await;
    assert_eq!(status, 200, "{groups}");
    assert_eq!(
        groups,
        json!([{"name": "blue", "edges": 1, "healthy": 1, "pops": ["fra"],
                "config_revisions": [3], "deployments": []}])
    );

    // The operator's metrics: edges by health, REST requests by route.
    let metrics_url = format!(
        "http://{}/metrics",
        controller.running.metrics.expect("metrics served")
    );
    let scraped = controller
        .http
        .get(&metrics_url)
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
    for line in [
        "parapet_controller_edges{health=\"healthy\"} 1",
        "parapet_controller_http_requests_total{method=\"GET\",route=\"/v1/groups\",status=\"200\"}",
    ] {
        assert!(scraped.contains(line), "{line} missing from\n{scraped}");
    }

    // An edge credential does not open the REST API, and a heartbeat
    // without one is refused.
    let (status, body) = controller
        .call("GET", "/v1/edges", Some(&registered.credential), None)
        .await;
    assert_eq!(status, 403, "{body}");
    let anonymous = client
        .heartbeat(HeartbeatRequest::default())
        .await
        .expect_err("no credential");
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);

    // Silent for three intervals (3 s here): unhealthy.
    tokio::time::sleep(std::time::Duration::from_millis(3_300)).await;
    let (_, edges) = controller.call("GET", "/v1/edges", Some(ADMIN), None).await;
    assert_eq!(edges[0]["healthy"], false, "{edges}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_lists_the_routes() {
    let controller = TestController::start().await;
    let (status, openapi) = controller.call("GET", "/openapi.json", None, None).await;
    assert_eq!(status, 200);
    let paths = openapi["paths"].as_object().expect("paths");
    for path in [
        "/v1/customers",
        "/v1/tokens",
        "/v1/tokens/{token}",
        "/v1/edges",
        "/v1/groups",
    ] {
        assert!(paths.contains_key(path), "{path} missing");
    }
    assert_eq!(
        openapi["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

/// Options of a controller with the embedded store in `dir` and edge
/// bootstrap token `bootstrap`.
fn options(dir: &std::path::Path, bootstrap: Option<&str>) -> parapet_controller::LaunchOptions {
    parapet_controller::LaunchOptions {
        edge_bootstrap_token: bootstrap.map(String::from),
        ..launch_options(
            parapet_controller::StoreLocation::Embedded(dir.join("data")),
            Default::default(),
        )
    }
}

/// Registers edge `fra-1` of PoP `fra` with `token`.
async fn register_fra(
    client: &mut EdgeControlClient<tonic::transport::Channel>,
    token: &str,
) -> Result<tonic::Response<parapet_proto::edge::RegisterResponse>, tonic::Status> {
    client
        .register(RegisterRequest {
            bootstrap_token: token.into(),
            name: "fra-1".into(),
            pop: "fra".into(),
            ..Default::default()
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_bootstrap_token_no_edge_registers_and_it_is_never_the_operators() {
    let dir = tempfile::tempdir().expect("temp dir");
    let same = parapet_controller::launch(options(dir.path(), Some(ADMIN))).await;
    let refused = same.err().expect("refused").to_string();
    assert!(
        refused.contains("the edge bootstrap token must differ from the admin token"),
        "{refused}"
    );

    let running = parapet_controller::launch(options(dir.path(), None))
        .await
        .expect("starts");
    let mut client = EdgeControlClient::connect(format!("http://{}", running.grpc))
        .await
        .expect("gRPC connects");
    let refused = register_fra(&mut client, ADMIN)
        .await
        .expect_err("no edge registers");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused
            .message()
            .contains("started without an edge bootstrap token"),
        "{}",
        refused.message()
    );
}
