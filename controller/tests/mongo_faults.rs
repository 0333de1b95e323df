//! MongoDB going away and coming back: requests meanwhile fail loudly
//! (503, "try again"), none is lost silently, and the controller reconnects
//! by itself.

mod common;

use std::time::{Duration, Instant};

use common::*;
use parapet_controller::StoreLocation;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mongodb_restart_is_survived() {
    let data = tempfile::tempdir().expect("temp dir");
    let Some(mut mongo) = parapet_e2e::mongo::start_with(&data.path().to_string_lossy()) else {
        return;
    };
    // Fail fast while the server is down (the driver's default is 30 s).
    let uri = format!("{}&serverSelectionTimeoutMS=1500", mongo.uri("faults"));
    let controller = TestController::start_with(
        StoreLocation::Mongo(uri),
        tempfile::tempdir().expect("temp dir"),
    )
    .await;
    controller.customer("acme").await;

    mongo.kill();
    let (status, body) = controller
        .call(
            "POST",
            "/v1/customers",
            Some(ADMIN),
            Some(json!({"id": "globex", "name": "Globex"})),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .starts_with("storage unavailable, try again"),
        "{body}"
    );

    mongo.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, list) = controller
            .call("GET", "/v1/customers", Some(ADMIN), None)
            .await;
        if status == 200 {
            let ids: Vec<&str> = list
                .as_array()
                .expect("list")
                .iter()
                .filter_map(|c| c["id"].as_str())
                .collect();
            // acme was stored before the restart; globex was refused, not half-written.
            assert_eq!(ids, ["acme"]);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the controller did not reconnect: {status} {list}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, body) = controller
        .call(
            "POST",
            "/v1/customers",
            Some(ADMIN),
            Some(json!({"id": "globex", "name": "Globex"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}
