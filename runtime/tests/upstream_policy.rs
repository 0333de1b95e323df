//! The upstream address policy: origins, shields and peers on addresses
//! that are not public (cloud metadata, the operator's networks, loopback)
//! or on the edge's own listeners are refused when the configuration loads
//! and again when a connection is made.

mod common;

use common::{admin_post, config, edge, get, Origin};
use parapet_config::EdgeConfig;

/// `config` without the tests' `[upstream]` allowance of loopback.
fn without_allowance(text: &str) -> String {
    text.replace("[upstream]\nallow_networks = [\"127.0.0.0/8\"]\n", "")
}

fn refusal(text: &str) -> String {
    let config = EdgeConfig::parse(text).expect("parses");
    config.validate().expect_err("refused").to_string()
}

#[test]
fn origins_on_metadata_private_and_loopback_addresses_are_refused_by_name() {
    let metadata = refusal(&config(
        "http://169.254.169.254/latest/meta-data/",
        "",
        "",
        "",
    ));
    assert!(
        metadata.starts_with("distribution[0].origin[0].url: `http://169.254.169.254/latest/meta-data/`: 169.254.169.254 is a link-local address"),
        "{metadata}"
    );
    for (origin, kind) in [
        ("http://10.0.0.5:8080", "private"),
        ("http://[fd12::1]", "unique local"),
        ("http://localhost:8081", "loopback"),
        ("http://127.0.0.1:8081", "loopback"),
    ] {
        let why = refusal(&without_allowance(&config(origin, "", "", "")));
        assert!(why.contains(kind), "{origin}: {why}");
    }
    let shield = refusal(&config(
        "http://origin.example.com",
        "shield = \"http://192.168.1.10:8080\"",
        "",
        "",
    ));
    assert!(shield.starts_with("shield: "), "{shield}");
    // A public origin, and loopback where the operator allows it.
    let fine = EdgeConfig::parse(&config("https://origin.example.com", "", "", "")).unwrap();
    assert_eq!(fine.validate(), Ok(()));
    let allowed = EdgeConfig::parse(&config("http://127.0.0.1:8081", "", "", "")).unwrap();
    assert_eq!(allowed.validate(), Ok(()));
}

#[test]
fn an_origin_on_the_edges_own_listener_is_refused() {
    let text = config("http://127.0.0.1:9901", "", "", "").replace(
        "[admin]\naddress = \"127.0.0.1:0\"",
        "[admin]\naddress = \"127.0.0.1:9901\"",
    );
    let why = refusal(&text);
    assert!(
        why.contains("127.0.0.1:9901 is one of this edge's own listeners"),
        "{why}"
    );
}

/// Listeners bound on port 0 are known only once bound: an origin pointing
/// at the admin port passes the load check and is refused at connect
/// time, with 502, and nothing reaches the admin API.
#[tokio::test]
async fn a_connection_to_the_edges_own_admin_port_is_refused_at_connect_time() {
    let origin = Origin::start().await;
    let edge = edge(&config(&origin.url(), "", "", "")).await;
    let admin = edge.admin();
    let reaching_admin = config(&format!("http://{admin}"), "", "", "");
    std::fs::write(&edge.config_path, reaching_admin).unwrap();
    let reloaded = admin_post(admin, "/reload", "secret", "").await;
    assert_eq!(reloaded.status, 200, "{}", reloaded.text());
    let answer = get(edge.addr(), "/metrics").await;
    assert_eq!(answer.status, 502, "{}", answer.text());
    assert!(
        answer
            .text()
            .contains("the origin's address is not allowed"),
        "{}",
        answer.text()
    );
    assert!(!answer.text().contains("parapet_"), "no admin metrics leak");
}
