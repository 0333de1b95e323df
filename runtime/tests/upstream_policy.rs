//! The upstream address policy: origins, shields and peers on addresses
//! that are not public (cloud metadata, the operator's networks, loopback)
//! or on the edge's own listeners are refused when the configuration loads
//! and again when a connection is made.

mod common;

use common::{admin_post, config, edge, get, Origin, Reply, TestEdge};
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
    let answer = refused_after_reload(&edge, reaching_admin, "/metrics").await;
    assert!(!answer.contains("parapet_"), "no admin metrics leak");
}

/// Reloads `edge` with `text` and asks for `path`: the origin's address is
/// refused at connect time (502). Returns the answer's body.
async fn refused_after_reload(edge: &TestEdge, text: String, path: &str) -> String {
    std::fs::write(&edge.config_path, text).unwrap();
    let reloaded = admin_post(edge.admin(), "/reload", "secret", "").await;
    assert_eq!(reloaded.status, 200, "{}", reloaded.text());
    let answer = get(edge.addr(), path).await;
    assert_eq!(answer.status, 502, "{}", answer.text());
    let body = answer.text();
    assert!(
        body.contains("the origin's address is not allowed"),
        "{body}"
    );
    body
}

/// A customer that names the edge's own viewer listener as its origin and
/// another customer's domain as its `host_header` does not reach that
/// customer through the edge: the connection is refused before anything
/// is sent, and the other customer's origin sees nothing.
#[tokio::test]
async fn a_host_header_does_not_lead_through_the_edge_to_another_customer() {
    let victim = Origin::start().await;
    victim.set("/", Reply::ok("victim's page", &[]));
    let victim_distribution = format!(
        "[[distribution]]\nid = \"victim\"\ncustomer = \"other\"\ndomains = [\"victim.test\"]\n\
         [[distribution.origin]]\nurl = \"{}\"\n[[distribution.behavior]]\npath = \"*\"\n",
        victim.url()
    );
    let edge = edge(&config(&victim.url(), &victim_distribution, "", "")).await;
    let through_the_edge = config(
        &format!("http://{}", edge.addr()),
        &victim_distribution,
        "",
        "",
    )
    .replace(
        "read_timeout_ms = 1000\n",
        "read_timeout_ms = 1000\nhost_header = \"victim.test\"\n",
    );
    refused_after_reload(&edge, through_the_edge, "/").await;
    assert_eq!(victim.hits("/"), 0);
    let direct = common::request(edge.addr(), "GET", "victim.test", "/", &[]).await;
    assert_eq!(direct.text(), "victim's page");
}
