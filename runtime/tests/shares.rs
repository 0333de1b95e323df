//! Each distribution's share of the edge: a distribution whose origin is
//! slow uses up its own share of upstream fetches and plugin instances and
//! gets 503 for its own requests; another distribution on the same edge is
//! served as before.

mod common;

use std::time::Duration;

use common::{config, edge, plugins_dir, request, Origin, Reply};

/// A `[[distribution.plugin]]` table: `name` from `<wasm>.wasm`, with
/// `settings` lines (config, limits).
fn plugin(name: &str, wasm: &str, settings: &str) -> String {
    let wasm = plugins_dir().join(format!("{wasm}.wasm"));
    format!(
        "\n[[distribution.plugin]]\nname = \"{name}\"\nwasm = \"{}\"\n{settings}\n",
        wasm.display()
    )
}

/// `html-inject` taking bodies up to 64 KiB, as plugin `inject`.
fn inject_plugin() -> String {
    plugin(
        "inject",
        "html-inject",
        "config = { snippet = \"<!--edge-->\" }\nlimits = { max_body_bytes = 65536 }",
    )
}

/// Distribution `victim` of customer globex for `victim.test` on `origin`,
/// with `plugin` and the one behavior `hook`.
fn victim_with(origin: &str, plugin: &str, hook: &str) -> String {
    format!(
        r#"
[[distribution]]
id = "victim"
customer = "globex"
domains = ["victim.test"]

[[distribution.origin]]
url = "{origin}"
{plugin}
[[distribution.behavior]]
path = "*"
{hook}
"#
    )
}

/// `victim` on `origin`, with the noop plugin.
fn victim(origin: &str) -> String {
    victim_with(
        origin,
        &plugin("noop", "noop", ""),
        "viewer_request = [\"noop\"]",
    )
}

/// Sends `count` requests at once to distinct paths of `host`; returns the
/// statuses and bodies.
async fn at_once(
    addr: std::net::SocketAddr,
    host: &'static str,
    count: usize,
) -> Vec<(u16, String)> {
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            tokio::spawn(async move {
                let got = request(addr, "GET", host, &format!("/slow/{i}"), &[]).await;
                (got.status, got.text())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

/// Requests `victim.test/page` `count` times; each is answered 200 with a
/// page `expected` accepts, in under 500 ms.
async fn victim_served_at_once(
    addr: std::net::SocketAddr,
    count: usize,
    expected: impl Fn(&str) -> bool,
) {
    for _ in 0..count {
        let started = std::time::Instant::now();
        let got = request(addr, "GET", "victim.test", "/page", &[]).await;
        assert_eq!(got.status, 200, "{}", got.text());
        assert!(expected(&got.text()), "{}", got.text());
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
    }
}

/// The attacker's origin, answering `/slow/0..count` after 1.5 s, and the
/// victim's, answering `/page` at once.
async fn slow_and_fast_origins(count: usize) -> (Origin, Origin) {
    let slow = Origin::start().await;
    let fast = Origin::start().await;
    for i in 0..count {
        slow.set(
            &format!("/slow/{i}"),
            Reply::ok("late", &[("cache-control", "max-age=60")])
                .delayed(Duration::from_millis(1500)),
        );
    }
    fast.set(
        "/page",
        Reply::ok("victim page", &[("cache-control", "no-store")]),
    );
    (slow, fast)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_origin_uses_up_its_own_share_of_fetches_only() {
    let (slow, fast) = slow_and_fast_origins(10).await;
    let top = format!("[shares]\norigin_fetches = 4\n{}", victim(&fast.url()));
    let text = config(&slow.url(), &top, "", "")
        .replace("read_timeout_ms = 1000", "read_timeout_ms = 5000");
    let edge = edge(&text).await;
    let addr = edge.addr();

    let attack = tokio::spawn(at_once(addr, "example.test", 10));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Meanwhile the victim's misses go to its origin at once.
    victim_served_at_once(addr, 20, |page| page == "victim page").await;
    let answers = attack.await.unwrap();
    let served = answers.iter().filter(|(s, _)| *s == 200).count();
    let refused: Vec<&String> = answers
        .iter()
        .filter(|(s, _)| *s == 503)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(served, 4, "{answers:?}");
    assert_eq!(refused.len(), 6, "{answers:?}");
    assert!(
        refused[0].contains("distribution `site` is using all of its share of upstream fetches in flight on this edge (4)"),
        "{}",
        refused[0]
    );
    assert_eq!(
        slow.seen().len(),
        4,
        "the refused requests never reached the origin"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_waiting_on_a_slow_origin_hold_their_own_share_of_plugin_instances() {
    let (slow, fast) = slow_and_fast_origins(6).await;
    let attacker_plugin = plugin("noop", "noop", "");
    let top = format!("[shares]\nplugin_instances = 2\n{}", victim(&fast.url()));
    let text = config(
        &slow.url(),
        &top,
        "viewer_request = [\"noop\"]",
        &attacker_plugin,
    )
    .replace("read_timeout_ms = 1000", "read_timeout_ms = 5000");
    let edge = edge(&text).await;
    let addr = edge.addr();

    let attack = tokio::spawn(at_once(addr, "example.test", 6));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The victim's plugin requests have instances of their own share.
    for _ in 0..10 {
        let got = request(addr, "GET", "victim.test", "/page", &[]).await;
        assert_eq!(got.status, 200, "{}", got.text());
    }
    let answers = attack.await.unwrap();
    let refused: Vec<&String> = answers
        .iter()
        .filter(|(s, _)| *s == 503)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(
        answers.iter().filter(|(s, _)| *s == 200).count(),
        2,
        "{answers:?}"
    );
    assert_eq!(refused.len(), 4, "{answers:?}");
    assert!(
        refused[0].contains(
            "distribution `site` is using all of its share of plugin instances on this edge (2)"
        ),
        "{}",
        refused[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_held_for_plugins_use_their_own_distributions_share_of_memory_only() {
    const PAGE: &str = "<html><head><title>t</title></head><body>page</body></html>";
    let slow = Origin::start().await;
    let fast = Origin::start().await;
    let html = |page: &str| {
        Reply::ok(
            page.to_string(),
            &[
                ("content-type", "text/html"),
                ("cache-control", "max-age=60"),
            ],
        )
    };
    // The attacker's pages arrive in two chunks 1.5 s apart, so each miss
    // holds a body (of unknown length: the plugin's 64 KiB is reserved).
    for i in 0..7 {
        let page = html(PAGE).trickled(Duration::from_millis(1500));
        slow.set(&format!("/slow/{i}"), page);
    }
    fast.set(
        "/page",
        Reply::ok(
            PAGE,
            &[("content-type", "text/html"), ("cache-control", "no-store")],
        ),
    );
    let top = format!(
        "[shares]\nplugin_body_bytes = 200000\n{}",
        victim_with(
            &fast.url(),
            &inject_plugin(),
            "origin_response = [\"inject\"]"
        )
    );
    let text = config(
        &slow.url(),
        &top,
        "origin_response = [\"inject\"]",
        &inject_plugin(),
    )
    .replace("read_timeout_ms = 1000", "read_timeout_ms = 5000");
    let edge = edge(&text).await;
    let addr = edge.addr();

    let attack = tokio::spawn(at_once(addr, "example.test", 6));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The victim's plugin gets its pages, from its own share, at once.
    victim_served_at_once(addr, 10, |page| page.contains("<!--edge--></head>")).await;
    let answers = attack.await.unwrap();
    let refused: Vec<&String> = answers
        .iter()
        .filter(|(s, _)| *s == 503)
        .map(|(_, b)| b)
        .collect();
    let served: Vec<&String> = answers
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, b)| b)
        .collect();
    // 3 x 64 KiB fit in 200 000 bytes, a fourth does not.
    assert_eq!((served.len(), refused.len()), (3, 3), "{answers:?}");
    assert!(
        served.iter().all(|b| b.contains("<!--edge-->")),
        "{served:?}"
    );
    assert!(
        refused[0].contains(
            "distribution `site` is using all of its share of body bytes held for plugins on this edge (200000)"
        ),
        "{}",
        refused[0]
    );
    // Once those bodies are stored, the share is back.
    let got = request(addr, "GET", "example.test", "/slow/6", &[]).await;
    assert_eq!(got.status, 200, "{}", got.text());
}
