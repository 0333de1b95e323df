//! Tiers and peers: edges sending misses to a shield, and the edges of one
//! PoP sharing one cache by key ownership.

mod common;

use common::{config, edge, get, settle, Origin, Reply, TestEdge};
use parapet_e2e::tls::{PemFiles, TestCa};

fn with_pop(text: String, pop: &str) -> String {
    text.replace("id = \"test1\"", &format!("id = \"{pop}\""))
}

/// The tier's shared secret: edges send it to their shield, which then
/// keeps the cache-targeted fields for them.
fn in_tier(text: String) -> String {
    text.replace(
        "[server]\n",
        "[server]\ntier_secret = \"tier-secret-0123456789\"\n",
    )
}

/// A loopback port free right now, below Linux's ephemeral range (32768
/// and up): the edge binds it a moment later, and a port from that range
/// could meanwhile become the local end of another test's connection.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = std::process::id().wrapping_mul(7919);
    (0..1000)
        .map(|_| {
            20_000 + (seed.wrapping_add(NEXT.fetch_add(101, Ordering::Relaxed)) % 12_000) as u16
        })
        .find(|port| std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .expect("a free port between 20000 and 32000")
}

#[tokio::test]
async fn edges_share_a_shield_that_fetches_once_and_fall_back_to_the_origin_without_it() {
    let origin = Origin::start().await;
    origin.set(
        "/shared",
        Reply::ok(
            "shared",
            &[
                ("cache-control", "no-cache"),
                ("cdn-cache-control", "max-age=60"),
                ("surrogate-key", "t1"),
            ],
        ),
    );
    origin.set(
        "/later",
        Reply::ok("later", &[("cache-control", "max-age=60")]),
    );
    let shield = edge(&in_tier(with_pop(
        config(&origin.url(), "", "", ""),
        "shield",
    )))
    .await;
    let shield_url = format!("http://{}", shield.addr());
    let top = format!("shield = \"{shield_url}\"");
    let a = edge(&in_tier(with_pop(
        config(&origin.url(), &top, "", ""),
        "edge-a",
    )))
    .await;
    let b = edge(&in_tier(with_pop(
        config(&origin.url(), &top, "", ""),
        "edge-b",
    )))
    .await;
    assert_eq!(get(a.addr(), "/shared").await.cache(), "MISS");
    settle().await;
    let from_b = get(b.addr(), "/shared").await;
    assert_eq!((from_b.cache(), from_b.text().as_str()), ("MISS", "shared"));
    assert_eq!(
        origin.hits("/shared"),
        1,
        "the shield answered edge b from its cache"
    );
    let via = origin.last("/shared").headers["via"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(via, "1.1 parapet-edge-a, 1.1 parapet-shield");
    assert!(
        !origin
            .last("/shared")
            .headers
            .contains_key("x-parapet-tier"),
        "the tier secret never reaches the origin"
    );
    // A viewer claiming to be an edge (`Via: … parapet-…`) is still a
    // viewer: the shield strips the cache-targeted fields for it.
    let claimed = common::request(
        shield.addr(),
        "GET",
        "example.test",
        "/shared",
        &[("via", "1.1 parapet-edge-z")],
    )
    .await;
    assert_eq!(claimed.text(), "shared");
    assert_eq!(claimed.header("cdn-cache-control"), "");
    assert_eq!(claimed.header("surrogate-key"), "");
    // The shield passed the cache-targeted fields on to the edges (and
    // they kept them from viewers): the edge's copy is fresh for a minute
    // and can be purged by tag.
    assert_eq!(from_b.header("cdn-cache-control"), "");
    assert_eq!(from_b.header("surrogate-key"), "");
    settle().await;
    assert_eq!(get(b.addr(), "/shared").await.cache(), "HIT");
    let purged = common::admin_post(b.admin(), "/purge", "secret", r#"{"tag": "t1"}"#).await;
    assert_eq!(purged.text(), r#"{"purged":1,"soft":false}"#);
    shield.running.shutdown().await;
    let direct = get(a.addr(), "/later").await;
    assert_eq!(
        (direct.status, direct.text().as_str()),
        (200, "later"),
        "shield down: origin"
    );
    assert_eq!(origin.last("/later").headers["via"], "1.1 parapet-edge-a");
}

/// Every path through peer `a`, then through `b`: one origin fetch per
/// key for the two, some keys owned by each.
async fn one_fetch_per_key_in_the_pop(
    origin: &Origin,
    paths: &[String],
    a: &TestEdge,
    b: &TestEdge,
) {
    for path in paths {
        assert_eq!(get(a.addr(), path).await.text(), *path);
    }
    settle().await;
    for path in paths {
        assert_eq!(get(b.addr(), path).await.text(), *path);
        assert_eq!(origin.hits(path), 1, "{path}: one origin fetch for the PoP");
    }
    let forwarded = origin
        .seen()
        .iter()
        .filter(|s| s.headers["via"] == "1.1 parapet-test1, 1.1 parapet-test1")
        .count();
    assert!(
        forwarded > 0 && forwarded < paths.len(),
        "keys are split between the peers ({forwarded} owned by b)"
    );
}

async fn peer(origin: &Origin, me: u16, other: u16) -> TestEdge {
    let top = format!(
        "peers = [\"127.0.0.1:{me}\", \"127.0.0.1:{other}\"]\npeer_address = \"127.0.0.1:{me}\""
    );
    let text = config(&origin.url(), &top, "", "").replacen(
        "address = \"127.0.0.1:0\"",
        &format!("address = \"127.0.0.1:{me}\""),
        1,
    );
    edge(&text).await
}

#[tokio::test]
async fn peers_fetch_each_key_once_through_its_owner_and_skip_an_unreachable_owner() {
    let origin = Origin::start().await;
    let paths: Vec<String> = (0..12).map(|i| format!("/obj/{i}")).collect();
    for path in &paths {
        origin.set(
            path,
            Reply::ok(path.clone(), &[("cache-control", "max-age=60")]),
        );
    }
    let (port_a, port_b) = (free_port(), free_port());
    let a = peer(&origin, port_a, port_b).await;
    let b = peer(&origin, port_b, port_a).await;
    one_fetch_per_key_in_the_pop(&origin, &paths, &a, &b).await;
    assert!(
        origin
            .seen()
            .iter()
            .all(|s| !s.headers.contains_key("x-parapet-peer")),
        "the peer mark stays inside the PoP"
    );
    b.running.shutdown().await;
    for path in &paths {
        let answer = get(a.addr(), path).await;
        assert_eq!(
            (answer.status, answer.text()),
            (200, path.clone()),
            "owner down: a serves {path}"
        );
    }
}

/// `[tier_tls]` with `files` as this edge's certificate and `ca` as the
/// tier's authority (peers over https when `peers`).
fn tier_tls(files: Option<&PemFiles>, ca: &TestCa, peers: bool) -> String {
    let own = files.map_or(String::new(), |f| {
        format!(
            "cert = \"{}\"\nkey = \"{}\"\n",
            f.cert.display(),
            f.key.display()
        )
    });
    format!(
        "[tier_tls]\n{own}ca_file = \"{}\"\npeers = {peers}\n",
        ca.ca_file.display()
    )
}

/// Adds a TLS listener on `port` after the viewers' plain one.
fn with_tls_listener(text: String, port: u16) -> String {
    text.replacen(
        "[admin]\n",
        &format!("[[listener]]\naddress = \"127.0.0.1:{port}\"\ntls = true\n\n[admin]\n"),
        1,
    )
}

#[tokio::test]
async fn a_shield_over_tls_is_used_only_by_edges_trusting_its_authority() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new(dir.path(), "tier");
    let stranger = TestCa::new(dir.path(), "stranger");
    let origin = Origin::start().await;
    origin.set(
        "/page",
        Reply::ok("page", &[("cache-control", "max-age=60")]),
    );
    let shield_port = free_port();
    let shield_files = ca.issue(&["127.0.0.1"], "shield");
    let shield = edge(&with_tls_listener(
        in_tier(with_pop(
            config(
                &origin.url(),
                &tier_tls(Some(&shield_files), &ca, false),
                "",
                "",
            ),
            "shield",
        )),
        shield_port,
    ))
    .await;
    let top = |authority: &TestCa| {
        format!(
            "shield = \"https://127.0.0.1:{shield_port}\"\n{}",
            tier_tls(None, authority, false)
        )
    };
    let trusting = edge(&in_tier(with_pop(
        config(&origin.url(), &top(&ca), "", ""),
        "edge-a",
    )))
    .await;
    let misled = edge(&in_tier(with_pop(
        config(&origin.url(), &top(&stranger), "", ""),
        "edge-b",
    )))
    .await;

    assert_eq!(get(trusting.addr(), "/page").await.text(), "page");
    assert_eq!(
        origin.last("/page").headers["via"],
        "1.1 parapet-edge-a, 1.1 parapet-shield",
        "through the shield, over TLS"
    );
    // The other edge refuses the shield's certificate and goes to the
    // origin itself.
    assert_eq!(get(misled.addr(), "/page").await.text(), "page");
    assert_eq!(origin.last("/page").headers["via"], "1.1 parapet-edge-b");
    assert_eq!(origin.hits("/page"), 2);
    shield.running.shutdown().await;
}

#[tokio::test]
async fn peers_over_tls_fetch_each_key_once_through_its_owner() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new(dir.path(), "tier");
    let origin = Origin::start().await;
    let paths: Vec<String> = (0..8).map(|i| format!("/obj/{i}")).collect();
    for path in &paths {
        origin.set(
            path,
            Reply::ok(path.clone(), &[("cache-control", "max-age=60")]),
        );
    }
    let (port_a, port_b) = (free_port(), free_port());
    let tls_peer = |me: u16, other: u16| {
        let files = ca.issue(&["127.0.0.1"], &format!("peer-{me}"));
        let top = format!(
            "peers = [\"127.0.0.1:{me}\", \"127.0.0.1:{other}\"]\npeer_address = \"127.0.0.1:{me}\"\n{}",
            tier_tls(Some(&files), &ca, true)
        );
        with_tls_listener(config(&origin.url(), &top, "", ""), me)
    };
    let a = edge(&tls_peer(port_a, port_b)).await;
    let b = edge(&tls_peer(port_b, port_a)).await;
    one_fetch_per_key_in_the_pop(&origin, &paths, &a, &b).await;
}
