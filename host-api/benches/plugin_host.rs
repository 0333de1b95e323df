//! Per-request cost of plugins: instantiate + hooks on real example
//! components. Build them first (`make plugins`); results in bench/README.md.
//! Each chain is driven with `block_on` on the bench thread.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use futures_executor::block_on;
use parapet_host::{
    Allocator, BodyAccess, Chains, EngineConfig, Flow, Plugin, PluginEngine, PluginOptions,
    Request, RequestContext, RequestSession, Response,
};

fn component(name: &str) -> Vec<u8> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../target/plugins/{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}; run `make plugins`", path.display()))
}

fn engine(allocator: Allocator) -> Arc<PluginEngine> {
    Arc::new(
        PluginEngine::new(EngineConfig {
            allocator,
            ..Default::default()
        })
        .expect("engine"),
    )
}

fn load(engine: &Arc<PluginEngine>, name: &str, config: &str) -> Arc<Plugin> {
    let options = PluginOptions {
        config: config.into(),
        ..Default::default()
    };
    Arc::new(Plugin::load(engine, name, &component(name), options).expect("load"))
}

fn context() -> RequestContext {
    RequestContext {
        request_id: "bench".into(),
        pop_id: "bench-pop".into(),
        client_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        geo: None,
        request_body: BodyAccess::Held,
    }
}

fn request(path: &str, body: Option<Vec<u8>>) -> Request {
    Request {
        method: if body.is_some() { "POST" } else { "GET" }.into(),
        scheme: "https".into(),
        authority: "www.example.com".into(),
        path: path.into(),
        query: Some("page=2&sort=price".into()),
        headers: vec![
            ("accept".into(), "text/html,application/xhtml+xml".into()),
            ("accept-encoding".into(), "gzip, br".into()),
            (
                "user-agent".into(),
                "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0".into(),
            ),
            ("cookie".into(), "session=abc123; theme=dark".into()),
        ],
        body,
    }
}

fn response() -> Response {
    Response {
        status: 200,
        headers: vec![
            ("content-type".into(), "text/html".into()),
            ("cache-control".into(), "max-age=60".into()),
            ("server".into(), "origin/1.0".into()),
        ],
        body: None,
    }
}

/// Runs all four hooks of `chains` for one request, as the edge does on a miss.
fn full_request(chains: &Chains, req: &Request) {
    block_on(async {
        let mut session = RequestSession::new(context());
        let Flow::Continue(req) = session
            .on_viewer_request(&chains.on_viewer_request, req.clone())
            .await
        else {
            panic!("answered")
        };
        let Flow::Continue(req) = session
            .on_origin_request(&chains.on_origin_request, req)
            .await
        else {
            panic!("answered")
        };
        let origin = session
            .on_origin_response(
                &chains.on_origin_response,
                &req,
                response(),
                BodyAccess::Held,
            )
            .await;
        let Flow::Continue(resp) = origin.flow else {
            panic!("answered")
        };
        black_box(
            session
                .on_viewer_response(&chains.on_viewer_response, &req, resp, BodyAccess::Held)
                .await,
        );
    })
}

fn noop(c: &mut Criterion) {
    let mut group = c.benchmark_group("noop instantiate + on-viewer-request");
    let req = request("/index.html", None);
    for (label, allocator) in [
        (
            "pooling",
            Allocator::Pooling {
                max_instances: 1000,
            },
        ),
        ("on-demand", Allocator::OnDemand),
    ] {
        let plugin = load(&engine(allocator), "noop", "{}");
        let chain = [plugin];
        group.bench_function(label, |b| {
            b.iter(|| {
                black_box(block_on(
                    RequestSession::new(context()).on_viewer_request(&chain, req.clone()),
                ))
            })
        });
    }
    group.finish();
}

/// The three bench plugins at the hooks they have, for `live` requests in
/// flight at once (as an edge holds them: 32 connections each with a
/// request): per request, the time to run `live` requests' viewer hooks
/// with all their instances alive, then drop them.
fn requests_in_flight(c: &mut Criterion) {
    let engine = engine(Allocator::Pooling {
        max_instances: 1000,
    });
    let chains = Chains {
        on_viewer_request: CHAIN[..2]
            .iter()
            .map(|(name, config)| load(&engine, name, config))
            .collect(),
        on_viewer_response: vec![load(&engine, CHAIN[2].0, CHAIN[2].1)],
        ..Chains::default()
    };
    let req = request("/products/shoes", None);
    let mut group = c.benchmark_group("edge chain per request, requests in flight");
    for live in [1usize, 32] {
        group.bench_function(live.to_string(), |b| {
            b.iter_custom(|iters| {
                let started = std::time::Instant::now();
                for _ in 0..iters {
                    let mut sessions: Vec<RequestSession> = Vec::with_capacity(live);
                    for _ in 0..live {
                        let mut session = RequestSession::new(context());
                        let Flow::Continue(req) = block_on(
                            session.on_viewer_request(&chains.on_viewer_request, req.clone()),
                        ) else {
                            panic!("answered")
                        };
                        black_box(block_on(session.on_viewer_response(
                            &chains.on_viewer_response,
                            &req,
                            response(),
                            BodyAccess::Held,
                        )));
                        sessions.push(session);
                    }
                    drop(sessions);
                }
                started.elapsed() / live as u32
            })
        });
    }
    group.finish();
}

/// The same plugins at every hook.
fn at_every_hook(plugins: Vec<Arc<Plugin>>) -> Chains {
    Chains {
        on_viewer_request: plugins.clone(),
        on_origin_request: plugins.clone(),
        on_origin_response: plugins.clone(),
        on_viewer_response: plugins,
    }
}

/// The three plugins of the chain benchmark, with their configs.
const CHAIN: [(&str, &str); 3] = [
    ("waf", "{}"),
    (
        "rewrite",
        r#"{"rules":[{"match":"prefix","from":"/old/","to":"/new/"}]}"#,
    ),
    (
        "header-filter",
        r#"{"response":{"strip":["server"],"security_headers":true}}"#,
    ),
];

fn chain_of_three(c: &mut Criterion) {
    let engine = engine(Allocator::Pooling {
        max_instances: 1000,
    });
    let req = request("/products/shoes", None);
    let mut group = c.benchmark_group("one plugin x 4 hooks");
    for (name, config) in CHAIN {
        let chains = at_every_hook(vec![load(&engine, name, config)]);
        group.bench_function(name, |b| b.iter(|| full_request(&chains, &req)));
    }
    group.finish();

    let chains = at_every_hook(
        CHAIN
            .iter()
            .map(|(name, config)| load(&engine, name, config))
            .collect(),
    );
    c.bench_function(
        "3-plugin chain x 4 hooks (waf, rewrite, header-filter)",
        |b| b.iter(|| full_request(&chains, &req)),
    );
}

fn waf_2k(c: &mut Criterion) {
    let engine = engine(Allocator::Pooling {
        max_instances: 1000,
    });
    let chain = [load(&engine, "waf", "{}")];
    // Request line, headers and a JSON body: 2 KiB in all.
    let mut req = request("/api/reviews", None);
    let head =
        req.method.len() + req.path.len() + req.query.as_ref().map_or(0, |q| q.len() + 1) + 11;
    let head = head
        + req
            .headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum::<usize>();
    let json = br#"{"name":"Jane Doe","comment":"Great product, would buy again. "}"#;
    req.body = Some(json.iter().copied().cycle().take(2048 - head).collect());
    c.bench_function("waf on a 2 KiB request", |b| {
        b.iter(|| {
            let flow =
                block_on(RequestSession::new(context()).on_viewer_request(&chain, req.clone()));
            assert!(matches!(flow, Flow::Continue(_)), "benign request blocked");
        })
    });
}

/// A configuration with real work at launch: eight regex rules, none of
/// which matches the request, so every rule is tried.
fn rewrite_regex_rules(c: &mut Criterion) {
    let engine = engine(Allocator::Pooling {
        max_instances: 1000,
    });
    let rules: Vec<String> = (0..8)
        .map(|i| {
            format!(r#"{{"match":"regex","from":"^/section{i}/(\\d+)/([a-z-]+)\\.html$","to":"/s{i}/$2?id=$1"}}"#)
        })
        .collect();
    let config = format!(r#"{{"rules":[{}]}}"#, rules.join(","));
    let chain = [load(&engine, "rewrite", &config)];
    let req = request("/products/shoes", None);
    c.bench_function(
        "rewrite, 8 regex rules, instantiate + on-viewer-request",
        |b| {
            b.iter(|| {
                black_box(block_on(
                    RequestSession::new(context()).on_viewer_request(&chain, req.clone()),
                ))
            })
        },
    );
}

/// The body-aware `html-inject` example on a fill: `on-origin-response`
/// with a 16 KiB page, rewritten with `lol_html` (once per fill; hits serve
/// the stored rewrite), against the same page passed on by a no-op.
fn html_inject(c: &mut Criterion) {
    let engine = engine(Allocator::Pooling {
        max_instances: 1000,
    });
    let inject = [load(
        &engine,
        "html-inject",
        r#"{"snippet":"<script src=\"/rum.js\" defer></script>"}"#,
    )];
    let noop = [load(&engine, "noop", "{}")];
    let paragraph = "<p>Parapet serves this page from the edge, rewritten once per fill.</p>\n";
    let page = format!(
        "<!doctype html><html><head><title>Shop</title><link rel=\"stylesheet\" href=\"/s.css\"></head><body>{}</body></html>",
        paragraph.repeat(16 * 1024 / paragraph.len())
    );
    let req = request("/shop", None);
    let mut resp = response();
    resp.body = Some(page.into_bytes());
    let mut group = c.benchmark_group("on-origin-response, 16 KiB page");
    for (name, chain) in [("html-inject", &inject), ("noop", &noop)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let outcome = block_on(RequestSession::new(context()).on_origin_response(
                    chain,
                    &req,
                    resp.clone(),
                    BodyAccess::Held,
                ));
                assert!(matches!(outcome.flow, Flow::Continue(_)), "answered");
                black_box(outcome)
            })
        });
    }
    group.finish();
}

/// What loading costs: checks, compilation and `on-launch` (no artifact
/// cache), for the rewrite plugin with two regex rules.
fn load_time(c: &mut Criterion) {
    let engine = engine(Allocator::Pooling {
        max_instances: 1000,
    });
    let bytes = component("rewrite");
    let config = r#"{"rules":[{"match":"regex","from":"^/blog/(\\d+)/(.*)$","to":"/posts/$2?id=$1"},{"match":"regex","from":"^/(a|b|c)+/x$","to":"/y"}]}"#;
    let mut group = c.benchmark_group("load");
    group.sample_size(10);
    group.bench_function("rewrite with 2 regex rules", |b| {
        b.iter(|| {
            let options = PluginOptions {
                config: config.into(),
                ..Default::default()
            };
            black_box(Plugin::load(&engine, "rewrite", &bytes, options).expect("load"))
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    noop,
    chain_of_three,
    waf_2k,
    rewrite_regex_rules,
    requests_in_flight,
    html_inject,
    load_time
);
criterion_main!(benches);
