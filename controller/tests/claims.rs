//! Domain claims and edge names: a customer cannot take a name under
//! another customer's wildcard, nor a wildcard over another customer's
//! names, unless the operator overrides; racing claims never both win, in
//! either store. An edge name cannot be taken over without its credential.

#[macro_use]
mod common;

use common::*;
use parapet_controller::claims::{self, ClaimError};
use parapet_controller::store::Store;
use parapet_proto::edge::RegisterRequest;
use serde_json::json;

both_backends!(
    "claims";
    racing_wildcards_and_names_never_both_win,
    a_refused_claim_takes_nothing
);

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Twenty rounds of a wildcard by one customer against eight names under
/// it by another, all at once: either the wildcard holds and no name, or
/// names hold and the wildcard was refused.
async fn racing_wildcards_and_names_never_both_win(store: &Store) {
    for round in 0..20 {
        let parent = format!("r{round}.example.com");
        let wildcard = format!("*.{parent}");
        let mut tasks = Vec::new();
        {
            let (store, wildcard) = (store.clone(), wildcard.clone());
            tasks.push(tokio::spawn(async move {
                claims::claim(&store, "wild", "acme", &[wildcard], false)
                    .await
                    .map(|_| "wild".to_string())
            }));
        }
        for i in 0..8 {
            let (store, name) = (store.clone(), format!("n{i}.{parent}"));
            tasks.push(tokio::spawn(async move {
                claims::claim(&store, &format!("name{i}"), "globex", &[name], false)
                    .await
                    .map(|_| format!("name{i}"))
            }));
        }
        let mut won = Vec::new();
        for task in tasks {
            match task.await.expect("joins") {
                Ok(who) => won.push(who),
                Err(ClaimError::Taken(_)) => {}
                Err(ClaimError::Store(e)) => panic!("store: {e}"),
            }
        }
        let wildcard_won = won.iter().any(|w| w == "wild");
        if wildcard_won {
            assert_eq!(won, ["wild"], "round {round}: both won");
        } else {
            assert_eq!(won.len(), 8, "round {round}: {won:?}");
        }
    }
}

async fn a_refused_claim_takes_nothing(store: &Store) {
    claims::claim(store, "b", "globex", &names(&["shop.b.test"]), false)
        .await
        .expect("free");
    // `a.test` is free, `shop.b.test` is not: neither is taken.
    let refused = claims::claim(
        store,
        "a",
        "acme",
        &names(&["a.test", "shop.b.test"]),
        false,
    )
    .await
    .expect_err("taken");
    assert!(
        refused
            .to_string()
            .contains("`shop.b.test` is served by another distribution"),
        "{refused}"
    );
    claims::claim(store, "c", "initech", &names(&["a.test"]), false)
        .await
        .expect("a.test was not kept by the refused claim");
    // Released, a name is free for anyone.
    claims::release(store, "b", &names(&["shop.b.test"]))
        .await
        .expect("release");
    claims::claim(store, "a", "acme", &names(&["shop.b.test"]), false)
        .await
        .expect("free again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcards_of_one_customer_exclude_names_of_another_unless_the_operator_overrides() {
    let controller = TestController::start().await;
    let acme = controller.customer("acme").await;
    let globex = controller.customer("globex").await;
    let put = |token: String, id: &str, domain: &str, query: &str| {
        let controller = &controller;
        let path = format!("/v1/distributions/{id}{query}");
        let spec = distribution(domain);
        async move {
            controller
                .call("PUT", &path, Some(&token), Some(spec))
                .await
        }
    };
    let (status, body) = put(globex.clone(), "victim", "*.shop.test", "").await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = put(acme.clone(), "attacker", "pay.shop.test", "").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        body["error"],
        "`pay.shop.test` falls under `*.shop.test`, which another customer serves"
    );
    // Its own names under its own wildcard are fine.
    let (status, body) = put(globex.clone(), "victim-pay", "pay.shop.test", "").await;
    assert_eq!(status, 201, "{body}");
    // The other way round: a wildcard over another customer's name.
    let (status, body) = put(acme.clone(), "attacker", "*.pay.shop.test", "").await;
    assert_eq!(status, 201, "nothing of another customer under it: {body}");
    let (status, body) = put(globex.clone(), "victim2", "www.pay.shop.test", "").await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = put(globex.clone(), "victim3", "img.b.test", "").await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = put(acme.clone(), "attacker2", "*.b.test", "").await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("would cover `img.b.test`")),
        "{body}"
    );
    // Only the operator overrides.
    let (status, body) = put(
        acme.clone(),
        "attacker2",
        "*.b.test",
        "?claim_override=true",
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = put(
        ADMIN.into(),
        "attacker2",
        "*.b.test",
        "?customer=acme&claim_override=true",
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // Never one name for two distributions, override or not.
    let (status, body) = put(
        ADMIN.into(),
        "attacker3",
        "img.b.test",
        "?customer=acme&claim_override=true",
    )
    .await;
    assert_eq!(status, 409, "{body}");

    // The victim's distributions are unchanged.
    let (_, victim) = controller
        .call("GET", "/v1/distributions/victim", Some(&globex), None)
        .await;
    assert_eq!(victim["domains"], json!(["*.shop.test"]));
    assert_eq!(victim["live_version"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_name_is_not_taken_over_without_its_credential() {
    let controller = TestController::start().await;
    let original = TestEdge::register(&controller, "fra-1", "fra", "default").await;
    let mut client = EdgeClient::connect(format!("http://{}", controller.grpc()))
        .await
        .expect("connects");
    let register = |credential: &str| RegisterRequest {
        bootstrap_token: BOOTSTRAP.into(),
        name: "fra-1".into(),
        pop: "fra".into(),
        credential: credential.into(),
        ..Default::default()
    };
    for credential in ["", "ppe_guessed"] {
        let refused = client
            .register(register(credential))
            .await
            .expect_err("the name is taken");
        assert_eq!(refused.code(), tonic::Code::AlreadyExists);
        assert!(
            refused
                .message()
                .contains(&format!("registered as edge `{}`", original.id)),
            "{refused}"
        );
    }
    // The original still works.
    let mut original_client = original.client.clone();
    original_client
        .heartbeat(original.request(parapet_proto::edge::HeartbeatRequest::default()))
        .await
        .expect("its credential still works");
    // Another edge's credential is not this one's.
    let other = TestEdge::register(&controller, "fra-2", "fra", "default").await;
    let refused = client
        .register(register(&other.credential))
        .await
        .expect_err("not its credential");
    assert_eq!(refused.code(), tonic::Code::AlreadyExists);

    // With its own credential: the same id, a new credential, the old one
    // revoked.
    let renewed = client
        .register(register(&original.credential))
        .await
        .expect("its own credential")
        .into_inner();
    assert_eq!(renewed.edge_id, original.id);
    assert_ne!(renewed.credential, original.credential);
    let refused = original_client
        .heartbeat(original.request(parapet_proto::edge::HeartbeatRequest::default()))
        .await
        .expect_err("revoked");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);

    // Removed by the operator, the name is free.
    let (status, _) = controller
        .call("DELETE", "/v1/edges/fra-1", Some(ADMIN), None)
        .await;
    assert_eq!(status, 200);
    let fresh = client
        .register(register(""))
        .await
        .expect("free after removal")
        .into_inner();
    assert_ne!(fresh.edge_id, original.id);
}
