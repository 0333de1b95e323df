//! Routing built from the example configuration, with its real plugins.

use std::path::PathBuf;
use std::sync::Arc;

use parapet_config::EdgeConfig;
use parapet_edge::routing::Routes;
use parapet_host::{
    BodyAccess, EngineConfig, Flow, PluginEngine, Request, RequestContext, RequestSession,
};

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn engine() -> Arc<PluginEngine> {
    Arc::new(PluginEngine::new(EngineConfig::default()).expect("engine"))
}

fn build(text: &str) -> Result<Routes, parapet_config::ConfigError> {
    let config = EdgeConfig::parse(text)?;
    Routes::build(&config, &examples(), &engine())
}

fn example_text() -> String {
    std::fs::read_to_string(examples().join("edge.toml")).unwrap()
}

fn get(host: &str, path_and_query: &str) -> Request {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (path_and_query.to_string(), None),
    };
    Request {
        method: "GET".into(),
        scheme: "http".into(),
        authority: host.into(),
        path,
        query,
        headers: vec![("host".into(), host.into())],
        body: None,
    }
}

#[test]
fn hosts_and_paths_pick_distribution_and_behavior() {
    let routes =
        build(&example_text()).unwrap_or_else(|e| panic!("{e} (run `make plugins` first)"));
    let dist = routes
        .distribution("WWW.example.com:8080")
        .expect("exact domain");
    assert_eq!(dist.config.id, "example");
    assert!(
        routes.distribution("img.cdn.example.com").is_some(),
        "one label under the wildcard"
    );
    assert!(
        routes.distribution("a.b.cdn.example.com").is_none(),
        "a wildcard covers one label"
    );
    assert!(routes.distribution("cdn.example.com").is_none());
    assert!(routes.distribution("example.org").is_none());

    let statics = dist.behavior("/static/app.js").unwrap();
    assert_eq!(statics.pattern.as_str(), "/static/*");
    assert!(statics.chains.on_viewer_request.is_empty());
    let default = dist.behavior("/account").unwrap();
    assert_eq!(default.pattern.as_str(), "*");
    let names: Vec<&str> = default
        .chains
        .on_viewer_request
        .iter()
        .map(|p| p.name())
        .collect();
    assert_eq!(names, ["example/waf", "example/rewrite", "example/auth"]);
    // One loaded plugin serves every behavior and hook that names it.
    assert!(Arc::ptr_eq(
        &statics.chains.on_viewer_response[0],
        &default.chains.on_viewer_response[0]
    ));
}

#[tokio::test]
async fn the_default_behavior_runs_the_example_chain() {
    let routes = build(&example_text()).unwrap();
    let default = routes
        .distribution("www.example.com")
        .unwrap()
        .behavior("/x")
        .unwrap();
    let context = RequestContext {
        request_id: "r1".into(),
        pop_id: "demo1".into(),
        client_ip: "198.51.100.7".parse().unwrap(),
        geo: None,
        request_body: BodyAccess::Held,
    };
    let mut session = RequestSession::new(context.clone());
    match session
        .on_viewer_request(
            &default.chains.on_viewer_request,
            get("www.example.com", "/x?id=1' OR '1'='1"),
        )
        .await
    {
        Flow::Respond(r) => assert_eq!(r.status, 403, "the WAF blocks first"),
        other => panic!("{other:?}"),
    }
    let mut session = RequestSession::new(context);
    match session
        .on_viewer_request(
            &default.chains.on_viewer_request,
            get("www.example.com", "/old/page"),
        )
        .await
    {
        Flow::Respond(r) => assert_eq!(r.status, 301, "then the rewrite plugin redirects"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn plugin_problems_are_configuration_errors_naming_the_plugin() {
    let missing = example_text().replace("../target/plugins/waf.wasm", "nowhere/waf.wasm");
    let err = build(&missing).err().expect("refused");
    assert_eq!(err.field, "distribution[0].plugin[0].wasm");
    assert!(err.reason.starts_with("cannot read"), "{err}");

    let rejected = example_text().replace("mode = \"block\"", "mode = \"paranoid\"");
    let err = build(&rejected).err().expect("refused");
    assert_eq!(err.field, "distribution[0].plugin[0]");
    assert!(
        err.reason
            .starts_with("plugin `waf`: the plugin refused its configuration"),
        "{err}"
    );

    let invalid = example_text().replace("path = \"*\"", "path = \"/*\"");
    let err = build(&invalid).err().expect("refused");
    assert_eq!(
        err.field, "distribution[0].behavior",
        "build validates first"
    );
}
