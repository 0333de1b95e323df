//! Components built against an earlier release of the 0.1 contract load and
//! run unchanged: `tests/data/header-filter-0.1.0.wasm` is the
//! `header-filter` example as built against `parapet:plugin@0.1.0` (commit
//! bcdd880), before 0.1.1 added `context.body-withheld`.

mod common;

use std::sync::Arc;

use common::Blocking;
use parapet_host::{BodyAccess, Flow, Plugin, PluginOptions, WIT_PACKAGE};

const OLD_COMPONENT: &[u8] = include_bytes!("data/header-filter-0.1.0.wasm");

/// The interface names a component imports, as written in its bytes.
fn imported_versions(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut names: Vec<String> = text
        .match_indices("parapet:plugin/")
        .filter_map(|(at, _)| {
            let rest = &text[at..];
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || ":/@.".contains(c)))?;
            Some(rest[..end].to_string())
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn a_component_built_against_0_1_0_loads_and_runs() {
    assert_eq!(WIT_PACKAGE, "parapet:plugin@0.1.1");
    let names = imported_versions(OLD_COMPONENT);
    assert!(
        !names.is_empty() && names.iter().all(|n| n.ends_with("@0.1.0")),
        "the test component must import the 0.1.0 contract only: {names:?}"
    );
    let engine = common::engine();
    let options = PluginOptions {
        config: r#"{"response": {"strip": ["server"], "security_headers": true}}"#.into(),
        limits: common::relaxed_limits(),
        ..Default::default()
    };
    let plugin = Arc::new(
        Plugin::load(&engine, "header-filter-0.1.0", OLD_COMPONENT, options)
            .expect("a 0.1.0 component loads on a 0.1.1 host"),
    );
    engine
        .validate(OLD_COMPONENT)
        .expect("and passes upload validation");
    let request = common::get("/", &[]);
    let response = common::response(
        200,
        &[("server", "origin/1"), ("content-type", "text/html")],
    );
    let Flow::Continue(out) = common::session()
        .on_viewer_response(
            std::slice::from_ref(&plugin),
            &request,
            response,
            BodyAccess::Streamed,
        )
        .block()
    else {
        panic!("the response was replaced");
    };
    assert_eq!(common::header(&out.headers, "server"), None);
    assert_eq!(
        common::header(&out.headers, "x-content-type-options"),
        Some("nosniff")
    );
}
