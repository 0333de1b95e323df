//! The engine's epoch ticker runs only while plugin code may run: an idle
//! engine (or an edge without plugins) is not woken every millisecond, and
//! a spinning hook is still stopped at its deadline. Its own test binary, so
//! that no other test's plugin calls keep the ticker going.

mod common;

use std::time::{Duration, Instant};

use common::{get, load_with, session, Blocking};
use parapet_host::{Flow, PluginLimits, PluginOptions};

/// Longer than the ticker keeps ticking after the last call (50 ticks of
/// 1 ms).
const LINGER: Duration = Duration::from_millis(100);

/// How often the `parapet-epoch` thread has been switched in and out.
fn ticker_switches() -> u64 {
    let tasks = std::fs::read_dir("/proc/self/task").expect("/proc/self/task");
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != "parapet-epoch" {
            continue;
        }
        let status = std::fs::read_to_string(task.path().join("status")).unwrap();
        return status
            .lines()
            .filter(|l| {
                l.starts_with("voluntary_ctxt_switches")
                    || l.starts_with("nonvoluntary_ctxt_switches")
            })
            .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
            .sum();
    }
    panic!("no parapet-epoch thread in this process");
}

#[test]
fn the_ticker_sleeps_while_no_plugin_runs_and_ticks_while_one_does() {
    let spinner = load_with(
        "testbed",
        PluginOptions {
            config: r#"{"mode":"loop"}"#.into(),
            limits: PluginLimits {
                hook_deadline: Duration::from_millis(50),
                ..Default::default()
            },
            ..Default::default()
        },
    );
    // Loading launched the plugin: let the ticker's linger after it pass.
    std::thread::sleep(LINGER);
    let idle_from = ticker_switches();
    std::thread::sleep(Duration::from_millis(300));
    let idle = ticker_switches() - idle_from;
    assert!(
        idle <= 5,
        "the ticker woke {idle} times in 300 ms with no plugin running (1 ms ticks: ~300)"
    );

    let busy_from = ticker_switches();
    let started = Instant::now();
    let flow = session()
        .on_viewer_request(&[spinner], get("/", &[]))
        .block();
    let elapsed = started.elapsed();
    let busy = ticker_switches() - busy_from;
    assert!(
        matches!(flow, Flow::Respond(ref r) if r.status == 503),
        "the spinning hook failed closed"
    );
    assert!(
        elapsed >= Duration::from_millis(50) && elapsed < Duration::from_millis(500),
        "stopped at its deadline: {elapsed:?}"
    );
    assert!(
        busy >= 20,
        "the ticker ticked while the hook ran: {busy} switches in {elapsed:?}"
    );

    std::thread::sleep(LINGER);
    let after_from = ticker_switches();
    std::thread::sleep(Duration::from_millis(300));
    let after = ticker_switches() - after_from;
    assert!(
        after <= 5,
        "the ticker went back to sleep: {after} switches in 300 ms"
    );
}
