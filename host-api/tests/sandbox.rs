//! The sandbox: misbehaving plugins are stopped, refused or contained, and
//! the next request works. Runs the real `testbed` component.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{get, header, load, load_with, response, session, Blocking};
use metrics_util::debugging::DebugValue;
use parapet_host::{
    Allocator, BodyAccess, EngineConfig, FailurePolicy, Flow, GeoDb, Hook, KvStore, LoadError,
    Plugin, PluginEngine, PluginLimits, PluginOptions, RequestSession,
};

/// The testbed in `mode`. Only `loop` keeps the default 50 ms hook
/// deadline (it is what stops it); the other modes get the relaxed one, so
/// that on a loaded machine what stops them is their own misbehaviour.
fn testbed(mode: &str, policy: FailurePolicy) -> Arc<Plugin> {
    let limits = if mode == "loop" {
        PluginLimits::default()
    } else {
        common::relaxed_limits()
    };
    load_with(
        "testbed",
        PluginOptions {
            config: format!(r#"{{"mode":"{mode}"}}"#),
            policy,
            limits,
            ..Default::default()
        },
    )
}

/// An engine whose pool has two instance slots.
fn two_slot_engine() -> Arc<PluginEngine> {
    Arc::new(
        PluginEngine::new(EngineConfig {
            allocator: Allocator::Pooling { max_instances: 2 },
            ..Default::default()
        })
        .unwrap(),
    )
}

/// A probe request through a fresh session must still work.
fn assert_next_request_works() {
    let probe = load("testbed", "{}");
    let mut s = session();
    match s.on_viewer_request(&[probe], get("/after", &[])).block() {
        Flow::Continue(req) => assert_eq!(header(&req.headers, "x-probe-calls"), Some("1")),
        Flow::Respond(r) => panic!("probe answered {}", r.status),
    }
}

/// Runs `mode` fail-open and fail-closed; returns the fail-open trap reason.
fn misbehave(mode: &str) -> String {
    let open = testbed(mode, FailurePolicy::FailOpen);
    let request = get("/x?y=1", &[("accept", "*/*")]);
    let run_open = || {
        let mut s = session();
        assert_eq!(
            s.on_viewer_request(std::slice::from_ref(&open), request.clone())
                .block(),
            Flow::Continue(request.clone()),
            "a failed fail-open plugin leaves the request as it was"
        );
        s.receipts()[0].trap.clone().expect("a trap reason")
    };
    let reason = run_open();
    // The same plugin, on a fresh instance from the same pre-instance (and
    // maybe the same pool slot), fails the same way: nothing carried over.
    assert_eq!(run_open(), reason);

    let closed = testbed(mode, FailurePolicy::FailClosed);
    let mut s = session();
    match s.on_viewer_request(&[closed], request).block() {
        Flow::Respond(r) => {
            assert_eq!(r.status, 503);
            assert_eq!(header(&r.headers, "x-request-id"), Some("req-test-1"));
            let body = String::from_utf8(r.body.unwrap()).unwrap();
            assert!(body.contains("req-test-1"), "{body}");
        }
        other => panic!("fail-closed plugin let the request through: {other:?}"),
    }
    assert_next_request_works();
    reason
}

#[test]
fn infinite_loop_is_stopped_at_its_deadline() {
    let limits = PluginLimits {
        hook_deadline: Duration::from_millis(50),
        ..Default::default()
    };
    let plugin = load_with(
        "testbed",
        PluginOptions {
            config: r#"{"mode":"loop"}"#.into(),
            limits,
            ..Default::default()
        },
    );
    let started = Instant::now();
    let flow = session()
        .on_viewer_request(&[plugin], get("/", &[]))
        .block();
    let elapsed = started.elapsed();
    assert!(
        matches!(flow, Flow::Respond(ref r) if r.status == 503),
        "fail-closed by default"
    );
    assert!(
        elapsed >= Duration::from_millis(50),
        "stopped early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(50 + 450),
        "overran its deadline: {elapsed:?}"
    );

    let reason = misbehave("loop");
    assert!(reason.starts_with("deadline exceeded"), "{reason}");
}

#[test]
fn memory_bomb_traps_at_the_cap() {
    let reason = misbehave("memory-bomb");
    assert!(reason.starts_with("memory limit exceeded"), "{reason}");
    assert!(
        reason.contains(&format!(
            "the limit is {}",
            PluginLimits::default().memory_bytes
        )),
        "{reason}"
    );
}

#[test]
fn deep_recursion_traps() {
    assert_eq!(
        misbehave("recursion"),
        "stack overflow (too deep recursion)"
    );
}

#[test]
fn guest_panic_traps() {
    assert_eq!(
        misbehave("panic"),
        "the plugin aborted (a panic or `unreachable`)"
    );
}

#[test]
fn header_injection_from_a_plugin_is_a_failure() {
    assert_eq!(
        misbehave("bad-header"),
        "the plugin returned an invalid value for header \"x-bad\""
    );
}

#[test]
fn request_line_smuggling_from_a_plugin_is_a_failure() {
    let reason = misbehave("bad-path");
    assert!(
        reason.starts_with("the plugin returned an invalid path or query"),
        "{reason}"
    );
}

#[test]
fn cache_overrides_apply_only_from_valid_responses() {
    let request = get("/", &[]);
    let cache = load("testbed", r#"{"mode":"cache"}"#);
    let probe = load("testbed", "{}");
    let out = session()
        .on_origin_response(
            &[cache, probe],
            &request,
            response(200, &[]),
            BodyAccess::Held,
        )
        .block();
    assert_eq!(
        out.cache.ttl_seconds,
        Some(123),
        "set by the first plugin, kept by the second"
    );
    assert_eq!(out.cache.cacheable, None);

    let bad = testbed("bad-header", FailurePolicy::FailOpen);
    let out = session()
        .on_origin_response(
            &[bad],
            &request,
            response(200, &[("etag", "\"1\"")]),
            BodyAccess::Held,
        )
        .block();
    assert_eq!(
        out.cache.ttl_seconds, None,
        "a rejected response changes no caching"
    );
    assert_eq!(
        out.flow,
        Flow::Continue(response(200, &[("etag", "\"1\"")]))
    );
}

#[test]
fn an_exhausted_instance_pool_fails_closed_even_for_fail_open_plugins() {
    let engine = two_slot_engine();
    let bytes = common::component("testbed");
    let open = || {
        let options = PluginOptions {
            policy: FailurePolicy::FailOpen,
            limits: common::relaxed_limits(),
            ..Default::default()
        };
        Arc::new(Plugin::load(&engine, "t", &bytes, options).unwrap())
    };
    let chain = [open(), open(), open()];
    let mut s = session();
    match s.on_viewer_request(&chain, get("/", &[])).block() {
        Flow::Respond(r) => assert_eq!(r.status, 503),
        other => panic!("a plugin was skipped for lack of capacity: {other:?}"),
    }
    let trap = s.receipts()[2].trap.clone().unwrap();
    assert!(trap.starts_with("cannot instantiate"), "{trap}");
    drop(s);
    // Capacity comes back when requests end.
    let mut s = session();
    assert!(matches!(
        s.on_viewer_request(&chain[..2], get("/", &[])).block(),
        Flow::Continue(_)
    ));
}

#[test]
fn limits_the_engine_cannot_honour_are_refused() {
    let too_big = PluginOptions {
        limits: PluginLimits {
            memory_bytes: 1 << 30,
            ..Default::default()
        },
        ..Default::default()
    };
    let err =
        Plugin::load(&common::engine(), "t", &common::component("noop"), too_big).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "invalid limits: memory_bytes {} is above the engine's maximum of {}",
            1 << 30,
            64 << 20
        )
    );
    let zero = PluginOptions {
        limits: PluginLimits {
            hook_deadline: Duration::ZERO,
            ..Default::default()
        },
        ..Default::default()
    };
    let err = Plugin::load(&common::engine(), "t", &common::component("noop"), zero).unwrap_err();
    assert!(matches!(err, LoadError::Limits(_)), "{err}");
}

#[test]
fn every_request_gets_a_fresh_instance_shared_by_its_hooks() {
    let probe = load("testbed", "{}");
    let chain = [probe];
    for round in 0..3 {
        let mut s = session();
        let path = format!("/round/{round}");
        let Flow::Continue(req) = s.on_viewer_request(&chain, get(&path, &[])).block() else {
            panic!("answered")
        };
        // A global counter in the guest starts from zero on every request.
        assert_eq!(header(&req.headers, "x-probe-calls"), Some("1"));
        let Flow::Continue(resp) = s
            .on_viewer_response(&chain, &req, response(200, &[]), BodyAccess::Held)
            .block()
        else {
            panic!("answered")
        };
        // The response hook ran on the same instance: it saw this request's path.
        assert_eq!(
            header(&resp.headers, "x-probe-seen-path"),
            Some(path.as_str())
        );
        assert_eq!(header(&resp.headers, "x-probe-calls"), Some("1"));
        assert_eq!(s.receipts().len(), 1, "one instance per plugin per request");
    }
}

/// Over 10 000 requests on the same two pool slots, each request leaves a
/// marker in a global, in the plugin value and on the heap; none is ever
/// seen by a later request: every instance starts from the launch image.
#[test]
fn nothing_a_request_leaves_reaches_a_later_one() {
    let engine = two_slot_engine();
    let marker = Arc::new(
        Plugin::load(
            &engine,
            "marker",
            &common::component("testbed"),
            PluginOptions {
                config: r#"{"mode":"marker"}"#.into(),
                ..Default::default()
            },
        )
        .unwrap(),
    );
    for n in 0..10_000 {
        let mut s = session();
        let path = format!("/request/{n}");
        let Flow::Continue(req) = s
            .on_viewer_request(std::slice::from_ref(&marker), get(&path, &[]))
            .block()
        else {
            panic!("request {n} was answered")
        };
        assert_eq!(
            header(&req.headers, "x-marker-seen"),
            Some("||"),
            "request {n} saw an earlier request's marker"
        );
        // Within one request the marker is kept: the plugin really left it.
        let Flow::Continue(again) = s
            .on_viewer_request(std::slice::from_ref(&marker), get("/again", &[]))
            .block()
        else {
            panic!("request {n} was answered")
        };
        assert_eq!(
            header(&again.headers, "x-marker-seen"),
            Some(format!("{path}|{path}|{path}").as_str())
        );
    }
}

/// A plugin built with `#[hooks]` is neither called nor instantiated for a
/// hook it does not define; one without the attribute is called at every
/// hook.
#[test]
fn hooks_a_plugin_does_not_define_are_not_called() {
    let filter = load("header-filter", r#"{"response":{"strip":["server"]}}"#);
    assert!(filter.implements(Hook::OnViewerResponse));
    assert!(!filter.implements(Hook::OnOriginRequest));
    let noop = load("noop", "{}");
    assert!(noop.implements(Hook::OnOriginRequest));

    let mut s = session();
    let request = get("/x", &[]);
    let flow = s
        .on_origin_request(std::slice::from_ref(&filter), request.clone())
        .block();
    assert_eq!(flow, Flow::Continue(request.clone()));
    assert!(s.receipts().is_empty(), "no instance was made");

    let flow = s
        .on_origin_request(&[filter.clone(), noop], request.clone())
        .block();
    assert_eq!(flow, Flow::Continue(request.clone()));
    let receipts = s.receipts();
    assert_eq!(receipts.len(), 1, "only noop ran: {receipts:?}");
    assert_eq!(receipts[0].plugin.as_ref(), "noop");

    // The hook it defines runs as before.
    let Flow::Continue(resp) = s
        .on_viewer_response(
            std::slice::from_ref(&filter),
            &request,
            response(200, &[("server", "origin")]),
            BodyAccess::Held,
        )
        .block()
    else {
        panic!("answered")
    };
    assert_eq!(header(&resp.headers, "server"), None);
}

#[test]
fn host_interfaces_answer_what_the_edge_knows() {
    let plugin = load_with(
        "testbed",
        PluginOptions {
            kv: Arc::new(KvStore::from_entries([("greeting", "hi")])),
            ..Default::default()
        },
    );
    let mut s = session();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let Flow::Continue(req) = s.on_viewer_request(&[plugin], get("/", &[])).block() else {
        panic!("answered")
    };
    let h = |n| {
        header(&req.headers, n)
            .unwrap_or_else(|| panic!("no {n}"))
            .to_string()
    };
    assert_eq!(h("x-probe-request-id"), "req-test-1");
    assert_eq!(h("x-probe-pop"), "test-pop");
    assert_eq!(h("x-probe-hook"), "Hook::OnViewerRequest");
    assert_eq!(h("x-probe-ip"), "192.0.2.10");
    assert_eq!(h("x-probe-country"), "-", "no GeoIP database configured");
    assert_eq!(h("x-probe-kv"), "hi");
    assert_eq!(h("x-probe-random-len"), "16");
    let now: u128 = h("x-probe-now").parse().unwrap();
    assert!(
        now >= before && now < before + 60_000,
        "clock {now} vs {before}"
    );

    let receipt = &s.receipts()[0];
    assert_eq!(receipt.hooks.len(), 1);
    assert_eq!(receipt.hooks[0].0, Hook::OnViewerRequest);
    // log, metric, location, 4 context, ip, kv, random, clock (`new` and its
    // config read ran at launch, not in this request).
    assert_eq!(receipt.host_calls, 11, "{receipt:?}");
    assert!(receipt.peak_memory_bytes > 0, "{receipt:?}");
    assert!(receipt.trap.is_none());
}

#[test]
fn client_location_comes_from_the_geoip_database() {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/testdata/geo-test.mmdb");
    let db = Arc::new(GeoDb::open(&path).unwrap_or_else(|e| panic!("{e}: run `make testdata`")));
    let probe = load("testbed", "{}");
    let located = |ip: &str| {
        let mut context = common::context_for(ip);
        context.geo = Some(db.clone());
        let Flow::Continue(req) = RequestSession::new(context)
            .on_viewer_request(std::slice::from_ref(&probe), get("/", &[]))
            .block()
        else {
            panic!("answered")
        };
        (
            header(&req.headers, "x-probe-country").unwrap().to_string(),
            header(&req.headers, "x-probe-city").unwrap().to_string(),
        )
    };
    assert_eq!(located("203.0.113.7"), ("JP".into(), "Tokyo".into()));
    assert_eq!(located("198.51.100.1"), ("DE".into(), "Frankfurt".into()));
    assert_eq!(located("2001:db8:1::5"), ("US".into(), "-".into()));
    assert_eq!(located("192.0.2.1"), ("-".into(), "-".into()));

    let bad = GeoDb::open(std::path::Path::new("/nonexistent.mmdb"))
        .unwrap_err()
        .to_string();
    assert!(
        bad.starts_with("opening GeoIP database /nonexistent.mmdb"),
        "{bad}"
    );
}

/// The testbed probe with a body limit of `bytes`.
fn testbed_taking_bodies_up_to(bytes: usize) -> Arc<Plugin> {
    load_with(
        "testbed",
        PluginOptions {
            limits: PluginLimits {
                max_body_bytes: bytes,
                ..Default::default()
            },
            ..Default::default()
        },
    )
}

#[test]
fn bodies_over_the_limit_are_withheld_and_kept() {
    let plugin = testbed_taking_bodies_up_to(8);
    let mut request = get("/", &[]);
    request.body = Some(b"small".to_vec());
    let Flow::Continue(out) = session()
        .on_viewer_request(std::slice::from_ref(&plugin), request)
        .block()
    else {
        panic!()
    };
    assert_eq!(header(&out.headers, "x-probe-body-len"), Some("5"));
    assert_eq!(header(&out.headers, "x-probe-body-withheld"), Some("false"));
    assert_eq!(out.body.as_deref(), Some(&b"small"[..]));

    let mut request = get("/", &[]);
    request.body = Some(vec![7; 1000]);
    let Flow::Continue(out) = session().on_viewer_request(&[plugin], request).block() else {
        panic!()
    };
    assert_eq!(header(&out.headers, "x-probe-body-len"), Some("none"));
    assert_eq!(
        header(&out.headers, "x-probe-body-withheld"),
        Some("true"),
        "the plugin is told the body was withheld"
    );
    assert_eq!(
        out.body,
        Some(vec![7; 1000]),
        "the withheld body reaches the origin"
    );
}

#[test]
fn response_hooks_get_the_body_or_are_told_it_was_withheld() {
    let plugin = testbed_taking_bodies_up_to(8);
    let chain = std::slice::from_ref(&plugin);
    let request = get("/", &[]);
    // (body given, how the edge holds it) -> what the hooks report
    let cases: [(Option<&[u8]>, BodyAccess, &str); 4] = [
        (Some(b"small"), BodyAccess::Held, "5"),
        (Some(&[7; 1000]), BodyAccess::Held, "withheld"),
        (None, BodyAccess::Streamed, "withheld"),
        (None, BodyAccess::Held, "none"),
    ];
    for (body, access, seen) in cases {
        let mut given = response(200, &[]);
        given.body = body.map(<[u8]>::to_vec);
        let mut s = session();
        let origin = s
            .on_origin_response(chain, &request, given.clone(), access)
            .block();
        let Flow::Continue(stored) = origin.flow else {
            panic!("answered")
        };
        assert_eq!(
            header(&stored.headers, "x-probe-origin-body"),
            Some(seen),
            "on-origin-response, {body:?} {access:?}"
        );
        assert_eq!(
            stored.body, given.body,
            "a body the plugin did not touch is kept"
        );
        let Flow::Continue(out) = s.on_viewer_response(chain, &request, given, access).block()
        else {
            panic!("answered")
        };
        assert_eq!(
            header(&out.headers, "x-probe-viewer-body"),
            Some(seen),
            "on-viewer-response, {body:?} {access:?}"
        );
    }
}

#[test]
fn a_short_circuit_answer_ends_the_chain() {
    let first = load("testbed", "{}");
    let second = load("testbed", r#"{"mode":"panic"}"#);
    let mut s = session();
    match s
        .on_viewer_request(&[first, second], get("/answer", &[]))
        .block()
    {
        Flow::Respond(r) => assert_eq!(
            (r.status, r.body.as_deref()),
            (418, Some(&b"short-circuit"[..]))
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.receipts().len(), 1, "the second plugin never ran");
}

#[test]
fn a_failed_fail_open_plugin_is_skipped_for_the_rest_of_the_request() {
    let bomb = testbed("panic", FailurePolicy::FailOpen);
    let probe = load("testbed", "{}");
    let chain = [bomb, probe];
    let mut s = session();
    let Flow::Continue(req) = s.on_viewer_request(&chain, get("/", &[])).block() else {
        panic!()
    };
    assert_eq!(
        header(&req.headers, "x-probe-calls"),
        Some("1"),
        "later plugins still ran"
    );
    let Flow::Continue(_) = s
        .on_viewer_response(&chain, &req, response(200, &[]), BodyAccess::Held)
        .block()
    else {
        panic!()
    };
    let receipts = s.receipts();
    assert_eq!(
        receipts[0].hooks.len(),
        1,
        "the failed instance was not called again: {receipts:?}"
    );
    assert_eq!(receipts[1].hooks.len(), 2);
}

#[test]
fn other_requests_keep_working_while_a_plugin_spins() {
    let spinner = load_with(
        "testbed",
        PluginOptions {
            config: r#"{"mode":"loop"}"#.into(),
            limits: PluginLimits {
                hook_deadline: Duration::from_millis(300),
                ..Default::default()
            },
            ..Default::default()
        },
    );
    let probe = load("testbed", "{}");
    let ready = Arc::new(std::sync::Barrier::new(2));
    let spinning = {
        let ready = ready.clone();
        std::thread::spawn(move || {
            ready.wait();
            session()
                .on_viewer_request(&[spinner], get("/", &[]))
                .block()
        })
    };
    ready.wait();
    // Give the spinner time to enter its hook; it spins for 300 ms.
    std::thread::sleep(Duration::from_millis(30));
    let started = Instant::now();
    for _ in 0..20 {
        let Flow::Continue(req) = session()
            .on_viewer_request(std::slice::from_ref(&probe), get("/", &[]))
            .block()
        else {
            panic!()
        };
        assert_eq!(header(&req.headers, "x-probe-calls"), Some("1"));
    }
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "normal requests were held up: {:?}",
        started.elapsed()
    );
    assert!(
        !spinning.is_finished(),
        "the spinner was still running meanwhile"
    );
    match spinning.join().unwrap() {
        Flow::Respond(r) => assert_eq!(r.status, 503, "fail-closed by default"),
        other => panic!("{other:?}"),
    }
}

/// A spinning testbed with a `deadline_ms` hook deadline, fail-closed.
fn spinner(deadline_ms: u64) -> Arc<Plugin> {
    load_with(
        "testbed",
        PluginOptions {
            config: r#"{"mode":"loop"}"#.into(),
            limits: PluginLimits {
                hook_deadline: Duration::from_millis(deadline_ms),
                ..Default::default()
            },
            ..Default::default()
        },
    )
}

/// A single-threaded tokio runtime, like each of the edge's workers.
fn worker() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

#[test]
fn a_spinning_hook_yields_its_thread_to_other_requests() {
    let spinner = spinner(300);
    let probe = load("testbed", "{}");
    worker().block_on(async {
        let spinning =
            tokio::spawn(
                async move { session().on_viewer_request(&[spinner], get("/", &[])).await },
            );
        // Let the spinner enter its hook.
        tokio::task::yield_now().await;
        let started = Instant::now();
        for _ in 0..20 {
            let flow = session()
                .on_viewer_request(std::slice::from_ref(&probe), get("/", &[]))
                .await;
            let Flow::Continue(req) = flow else { panic!() };
            assert_eq!(header(&req.headers, "x-probe-calls"), Some("1"));
            // A new request arrives after the spinner had the thread again.
            tokio::task::yield_now().await;
        }
        assert!(
            started.elapsed() < Duration::from_millis(150),
            "requests on the spinner's thread were held up: {:?}",
            started.elapsed()
        );
        assert!(!spinning.is_finished(), "the spinner is still running");
        match spinning.await.unwrap() {
            Flow::Respond(r) => assert_eq!(r.status, 503, "fail-closed by default"),
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn a_deadline_counts_the_time_a_hook_ran_not_the_time_it_waited() {
    // Two hooks of 100 ms each, sharing one thread: each gets about half
    // of it, so each runs its 100 ms in about 200 ms.
    let spinner = spinner(100);
    let started = Instant::now();
    let receipts = worker().block_on(async {
        let runs: Vec<_> = (0..2)
            .map(|_| {
                let spinner = spinner.clone();
                tokio::spawn(async move {
                    let mut s = session();
                    let flow = s.on_viewer_request(&[spinner], get("/", &[])).await;
                    assert!(matches!(flow, Flow::Respond(ref r) if r.status == 503));
                    s.receipts()
                })
            })
            .collect();
        let mut receipts = Vec::new();
        for run in runs {
            receipts.extend(run.await.unwrap());
        }
        receipts
    });
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(190),
        "the hooks were stopped by wall-clock time: {elapsed:?}"
    );
    for receipt in receipts {
        let reason = receipt.trap.as_deref().expect("a deadline trap");
        assert!(reason.starts_with("deadline exceeded"), "{reason}");
        let took = receipt.hook_time();
        assert!(took >= Duration::from_millis(150), "{took:?}");
    }
}

fn load_bytes(bytes: &[u8]) -> LoadError {
    Plugin::load(&common::engine(), "bad", bytes, PluginOptions::default()).unwrap_err()
}

#[test]
fn non_plugins_are_refused_with_precise_messages() {
    assert_eq!(load_bytes(b"\x7fELF random bytes"), LoadError::NotWasm);
    assert_eq!(
        load_bytes(&wat::parse_str("(module)").unwrap()),
        LoadError::CoreModule
    );

    let wasi =
        wat::parse_str(r#"(component (import "wasi:filesystem/types@0.2.0" (instance)))"#).unwrap();
    let err = load_bytes(&wasi);
    assert_eq!(
        err,
        LoadError::ForbiddenImport("wasi:filesystem/types@0.2.0".into())
    );
    assert!(
        err.to_string()
            .contains("imports `wasi:filesystem/types@0.2.0`, which plugins may not use"),
        "{err}"
    );

    let other_world = wat::parse_str(
        r#"(component
            (core module $m (func (export "greet")))
            (core instance $i (instantiate $m))
            (func (export "greet") (canon lift (core func $i "greet"))))"#,
    )
    .unwrap();
    match load_bytes(&other_world) {
        LoadError::WrongWorld(why) => assert!(why.contains("on-launch"), "{why}"),
        other => panic!("{other:?}"),
    }

    let mut truncated = common::component("noop");
    truncated.truncate(truncated.len() / 2);
    assert!(matches!(load_bytes(&truncated), LoadError::Invalid(_)));

    // A `parapet:hooks` section that is not one byte of hook bits.
    let mut bad_hooks = common::component("noop");
    let name = b"parapet:hooks";
    let payload = [&[name.len() as u8][..], name, &[0xff]].concat();
    bad_hooks.extend([0, payload.len() as u8]);
    bad_hooks.extend(payload);
    assert_eq!(
        load_bytes(&bad_hooks),
        LoadError::Invalid("the parapet:hooks section must be one byte below 16, got [255]".into())
    );
    assert_next_request_works();
}

#[test]
fn configurations_are_checked_at_launch() {
    let engine = common::engine();
    let bytes = common::component("testbed");
    let reject = PluginOptions {
        config: r#"{"mode":"reject"}"#.into(),
        ..Default::default()
    };
    assert_eq!(
        Plugin::load(&engine, "t", &bytes, reject).unwrap_err(),
        LoadError::Rejected("mode `reject` refuses every configuration".into())
    );
    let not_json = PluginOptions {
        config: "{mode".into(),
        ..Default::default()
    };
    assert!(matches!(
        Plugin::load(&engine, "t", &bytes, not_json).unwrap_err(),
        LoadError::ConfigNotJson(_)
    ));
    assert_next_request_works();
}

#[test]
fn compiled_plugins_are_cached_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let engine = |cache: bool| {
        let cache_dir = cache.then(|| dir.path().to_path_buf());
        Arc::new(
            PluginEngine::new(EngineConfig {
                cache_dir,
                allocator: Allocator::OnDemand,
                ..Default::default()
            })
            .unwrap(),
        )
    };
    let bytes = common::component("testbed");
    let first = Plugin::load(&engine(true), "t", &bytes, PluginOptions::default()).unwrap();
    assert!(!first.loaded_from_cache());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    // A new engine, as after a restart, finds the artifact.
    let second =
        Arc::new(Plugin::load(&engine(true), "t", &bytes, PluginOptions::default()).unwrap());
    assert!(second.loaded_from_cache());
    assert_eq!(second.digest(), first.digest());
    let Flow::Continue(req) = session()
        .on_viewer_request(&[second], get("/", &[]))
        .block()
    else {
        panic!()
    };
    assert_eq!(header(&req.headers, "x-probe-calls"), Some("1"));

    // A damaged artifact is recompiled, not trusted.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        std::fs::write(entry.unwrap().path(), b"garbage").unwrap();
    }
    assert!(
        !Plugin::load(&engine(true), "t", &bytes, PluginOptions::default())
            .unwrap()
            .loaded_from_cache()
    );
}

/// A cached launch image is reused only by the distribution, KV contents
/// and configuration that made it: another customer's load of the same
/// component and configuration launches its own, and never sees what the
/// first one's `on-launch` read.
#[test]
fn launch_images_are_not_shared_across_distributions_or_kv() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(
        PluginEngine::new(EngineConfig {
            cache_dir: Some(dir.path().to_path_buf()),
            allocator: Allocator::OnDemand,
            ..Default::default()
        })
        .unwrap(),
    );
    let bytes = common::component("testbed");
    let launched = |distribution: &str, greeting: &str| {
        let options = PluginOptions {
            distribution: distribution.into(),
            kv: Arc::new(KvStore::from_entries([("greeting", greeting)])),
            ..Default::default()
        };
        // Named as the edge names plugins: distribution/plugin.
        let name = format!("{distribution}/t");
        let plugin = Arc::new(Plugin::load(&engine, &name, &bytes, options).unwrap());
        let Flow::Continue(req) = session()
            .on_viewer_request(std::slice::from_ref(&plugin), get("/", &[]))
            .block()
        else {
            panic!("answered")
        };
        let seen = header(&req.headers, "x-probe-launch-kv").map(str::to_string);
        (seen, plugin.loaded_from_cache())
    };
    assert_eq!(
        launched("a", "secret-of-a"),
        (Some("secret-of-a".into()), false)
    );
    assert_eq!(launched("b", "hello-b"), (Some("hello-b".into()), false));
    // The same distribution, KV and configuration again: the cached image.
    assert_eq!(
        launched("a", "secret-of-a"),
        (Some("secret-of-a".into()), true)
    );
    assert_eq!(launched("a", "rotated"), (Some("rotated".into()), false));
    // The rotated image replaced a's old one: one image per plugin on disk,
    // however often a customer changes its KV or configuration.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    assert!(!launched("a", "secret-of-a").1, "replaced, launched anew");
}

#[test]
fn receipts_become_metrics() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let panicky = testbed("panic", FailurePolicy::FailOpen);
        let probe = load("testbed", "{}");
        let mut s = session();
        let _ = s
            .on_viewer_request(&[panicky, probe], get("/", &[]))
            .block();
        drop(s);
    });
    let snapshot = snapshotter.snapshot().into_vec();
    // The sum over matching series (two plugins here share the name).
    let counter = |name: &str, labels: &[(&str, &str)]| -> u64 {
        snapshot
            .iter()
            .filter_map(|(key, _, _, value)| {
                let key = key.key();
                let labelled = labels
                    .iter()
                    .all(|(k, v)| key.labels().any(|l| l.key() == *k && l.value() == *v));
                match value {
                    DebugValue::Counter(n) if key.name() == name && labelled => Some(*n),
                    _ => None,
                }
            })
            .sum()
    };
    assert_eq!(
        counter(
            "parapet_plugin_traps_total",
            &[("plugin", "testbed"), ("hook", "on-viewer-request")]
        ),
        1,
        "the panic is counted once, under its hook and reason"
    );
    assert_eq!(
        counter("parapet_plugin_counter_total", &[("name", "probes")]),
        1,
        "the probe's own counter"
    );
    let host_calls = counter("parapet_plugin_host_calls_total", &[]);
    assert!(host_calls >= 10, "{host_calls}");
    for expected in [
        "parapet_plugin_instantiate_seconds",
        "parapet_plugin_hook_seconds",
        "parapet_plugin_peak_memory_bytes",
    ] {
        assert!(
            snapshot
                .iter()
                .any(|(key, ..)| key.key().name() == expected),
            "{expected} missing"
        );
    }
}
