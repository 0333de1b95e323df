//! Customers' certificates over REST: each way an upload can be wrong gets
//! a 400 naming it; a good one is listed with its names and days left but
//! its key is never shown, and is sealed in either store; a new version
//! the certificate no longer covers is refused; another customer reaches
//! none of it; a controller without a secret key refuses uploads.

#[macro_use]
mod common;

use common::*;
use parapet_controller::store::{Collection, Store};
use parapet_controller::StoreLocation;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use serde_json::{json, Value};

/// A certificate authority and an intermediate under it.
struct Pki {
    root: CertifiedIssuer<'static, KeyPair>,
    intermediate: CertifiedIssuer<'static, KeyPair>,
}

fn authority(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    params
}

impl Pki {
    fn new() -> Pki {
        let root = CertifiedIssuer::self_signed(authority("root"), KeyPair::generate().unwrap())
            .expect("root");
        let intermediate = CertifiedIssuer::signed_by(
            authority("intermediate"),
            KeyPair::generate().unwrap(),
            &root,
        )
        .expect("intermediate");
        Pki { root, intermediate }
    }

    /// A leaf for `names` valid from `from` to `to` (years), signed by the
    /// intermediate: (chain PEM leaf first, key PEM, leaf PEM).
    fn leaf(&self, names: &[&str], from: i32, to: i32) -> (String, String, String) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        params.not_before = rcgen::date_time_ymd(from, 1, 1);
        params.not_after = rcgen::date_time_ymd(to, 1, 1);
        let key = KeyPair::generate().expect("key");
        let leaf = params.signed_by(&key, &self.intermediate).expect("leaf");
        (
            format!("{}{}", leaf.pem(), self.intermediate.pem()),
            key.serialize_pem(),
            leaf.pem(),
        )
    }
}

fn upload(chain: &str, key: &str) -> Option<Value> {
    Some(json!({"certificate": chain, "private_key": key}))
}

/// Asserts `answer` is `status` with an error containing `expected`.
fn refused(answer: (u16, Value), status: u16, expected: &str) {
    let (got, body) = answer;
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        got == status && error.contains(expected),
        "wanted {status} `{expected}`, got {got} {body}"
    );
}

const CERT: &str = "/v1/distributions/shop/certificate";

async fn shop(controller: &TestController) -> String {
    let token = controller.customer("acme").await;
    let mut spec = distribution("shop.example");
    spec["domains"] = json!(["shop.example", "*.img.example"]);
    let (status, body) = controller
        .call("PUT", "/v1/distributions/shop", Some(&token), Some(spec))
        .await;
    assert_eq!(status, 201, "{body}");
    token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_wrong_upload_is_refused_with_what_is_wrong() {
    let controller = TestController::start().await;
    let token = shop(&controller).await;
    let pki = Pki::new();
    let (good_chain, good_key, leaf) = pki.leaf(&["shop.example", "*.img.example"], 2025, 2030);
    let (_, other_key, _) = pki.leaf(&["shop.example", "*.img.example"], 2025, 2030);
    let (narrow_chain, narrow_key, _) = pki.leaf(&["shop.example", "a.img.example"], 2025, 2030);
    let (old_chain, old_key, _) = pki.leaf(&["shop.example", "*.img.example"], 2019, 2020);
    let (future_chain, future_key, _) = pki.leaf(&["shop.example", "*.img.example"], 2090, 2091);
    let reversed = format!("{}{leaf}", pki.intermediate.pem());
    // Sizes every edge would have to hold for this one customer.
    let long_chain = format!("{good_chain}{}", pki.intermediate.pem().repeat(10));
    let padded_chain = format!("{good_chain}{}", " ".repeat(64 * 1024));
    let padded_key = format!("{good_key}{}", " ".repeat(16 * 1024));
    let unrelated = format!("{leaf}{}", pki.root.pem());
    for (chain, key, expected) in [
        (
            "not a certificate",
            good_key.as_str(),
            "certificate: no `-----BEGIN CERTIFICATE-----` block",
        ),
        (
            good_chain.as_str(),
            "garbage",
            "private_key: no `-----BEGIN ... PRIVATE KEY-----` block",
        ),
        (
            good_chain.as_str(),
            other_key.as_str(),
            "private_key: does not match the certificate's public key",
        ),
        (
            narrow_chain.as_str(),
            narrow_key.as_str(),
            "does not cover the distribution's domain `*.img.example`",
        ),
        (
            old_chain.as_str(),
            old_key.as_str(),
            "certificate: expired on Jan  1 00:00:00 2020",
        ),
        (
            future_chain.as_str(),
            future_key.as_str(),
            "certificate: not valid before Jan  1 00:00:00 2090",
        ),
        (
            reversed.as_str(),
            good_key.as_str(),
            "block 2 did not issue block 1",
        ),
        (
            unrelated.as_str(),
            good_key.as_str(),
            "block 2 did not issue block 1",
        ),
        (
            long_chain.as_str(),
            good_key.as_str(),
            "certificate: 12 blocks, more than the 10 a chain may have",
        ),
        (
            padded_chain.as_str(),
            good_key.as_str(),
            "bytes, more than the 65536 a chain may have",
        ),
        (
            good_chain.as_str(),
            padded_key.as_str(),
            "bytes, more than the 16384 a key may have",
        ),
    ] {
        let (status, body) = controller
            .call("PUT", CERT, Some(&token), upload(chain, key))
            .await;
        refused((status, body), 400, expected);
    }
    let (status, body) = controller.call("GET", CERT, Some(&token), None).await;
    assert_eq!(status, 404, "nothing was stored: {body}");

    let (status, body) = controller
        .call("PUT", CERT, Some(&token), upload(&good_chain, &good_key))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["names"], json!(["shop.example", "*.img.example"]));
    assert_eq!(body["source"], "uploaded");
    assert!(body["days_left"].as_i64().unwrap() > 0, "{body}");
    let shown = body.to_string();
    assert!(!shown.contains("PRIVATE KEY"), "the key came back: {shown}");
    let not_after = body["not_after_ms"].as_i64().unwrap() / 1000;
    let metrics = reqwest::get(format!(
        "http://{}/metrics",
        controller.running.metrics.expect("metrics")
    ))
    .await
    .expect("scrape")
    .text()
    .await
    .expect("text");
    let expiry = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(r#"parapet_certificate_expiry_timestamp_seconds{distribution="shop"} "#)
        })
        .unwrap_or_else(|| panic!("no expiry metric:\n{metrics}"));
    assert_eq!(expiry.parse::<f64>().unwrap() as i64, not_after);

    // A new version with a domain the certificate does not cover.
    let mut wider = distribution("shop.example");
    wider["domains"] = json!(["shop.example", "new.example"]);
    let (status, body) = controller
        .call("PUT", "/v1/distributions/shop", Some(&token), Some(wider))
        .await;
    refused(
        (status, body),
        400,
        "certificate does not cover `new.example`",
    );
    // Under the certificate's wildcard: fine.
    let mut narrower = distribution("shop.example");
    narrower["domains"] = json!(["shop.example", "b.img.example"]);
    let (status, body) = controller
        .call(
            "PUT",
            "/v1/distributions/shop",
            Some(&token),
            Some(narrower),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_customer_reaches_none_of_it() {
    let controller = TestController::start().await;
    let token = shop(&controller).await;
    let intruder = controller.customer("globex").await;
    let pki = Pki::new();
    let (chain, key, _) = pki.leaf(&["shop.example", "*.img.example"], 2025, 2030);
    let (status, body) = controller
        .call("PUT", CERT, Some(&token), upload(&chain, &key))
        .await;
    assert_eq!(status, 200, "{body}");
    for (method, path, body) in [
        ("GET", CERT, None),
        ("PUT", CERT, upload(&chain, &key)),
        ("DELETE", CERT, None),
        ("POST", "/v1/distributions/shop/certificate/acme", None),
    ] {
        let (status, answer) = controller.call(method, path, Some(&intruder), body).await;
        assert_eq!(status, 404, "{method} {path}: {answer}");
    }
    let (status, listed) = controller
        .call("GET", "/v1/certificates", Some(&intruder), None)
        .await;
    assert_eq!((status, listed), (200, json!([])));
    let (_, listed) = controller
        .call("GET", "/v1/certificates", Some(&token), None)
        .await;
    assert_eq!(listed[0]["distribution"], "shop", "{listed}");
    let (_, listed) = controller
        .call("GET", "/v1/certificates", Some(ADMIN), None)
        .await;
    assert_eq!(listed[0]["customer"], "acme", "{listed}");

    // ACME is the operator's to offer, and cannot prove wildcards.
    let (status, body) = controller
        .call(
            "POST",
            "/v1/distributions/shop/certificate/acme",
            Some(&token),
            None,
        )
        .await;
    refused((status, body), 400, "no ACME directory");

    let (status, _) = controller.call("DELETE", CERT, Some(&token), None).await;
    assert_eq!(status, 200);
    let (status, _) = controller.call("GET", CERT, Some(&token), None).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_secret_key_uploads_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut options = launch_options(
        StoreLocation::Embedded(dir.path().join("data")),
        loopback_origins(),
    );
    options.secret_key = None;
    let controller = TestController {
        running: parapet_controller::launch(options).await.expect("starts"),
        dir,
        http: reqwest::Client::new(),
    };
    let token = shop(&controller).await;
    let (chain, key, _) = Pki::new().leaf(&["shop.example", "*.img.example"], 2025, 2030);
    let (status, body) = controller
        .call("PUT", CERT, Some(&token), upload(&chain, &key))
        .await;
    refused((status, body), 503, "--secret-key-file");
}

/// The key's PEM body, as it would appear in a store that kept it plain.
fn key_body(key_pem: &str) -> String {
    key_pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect()
}

/// Uploads a certificate for `shop`; returns its key's PEM body.
async fn upload_a_key(controller: &TestController) -> String {
    let token = shop(controller).await;
    let (chain, key, _) = Pki::new().leaf(&["shop.example", "*.img.example"], 2025, 2030);
    let (status, body) = controller
        .call("PUT", CERT, Some(&token), upload(&chain, &key))
        .await;
    assert_eq!(status, 200, "{body}");
    key_body(&key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_sealed_in_the_embedded_store() {
    let controller = TestController::start().await;
    let data = controller.dir.path().join("data");
    // The embedded store is one process's: its file is read once the
    // controller stopped.
    let body = upload_a_key(&controller).await;
    let TestController { running, .. } = controller;
    running.shutdown().await;
    let mut raw = Vec::new();
    for entry in std::fs::read_dir(&data).expect("the store's directory") {
        raw.extend(std::fs::read(entry.expect("entry").path()).unwrap_or_default());
    }
    let raw = String::from_utf8_lossy(&raw);
    assert!(raw.contains("key_sealed"), "the document is in the file");
    assert!(
        !raw.contains(&body[..40]),
        "the key is in the store's file in the clear"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_sealed_in_mongodb() {
    let Some(server) = parapet_e2e::mongo::start() else {
        return;
    };
    let uri = server.uri("certificates");
    let controller = TestController::start_with(
        StoreLocation::Mongo(uri.clone()),
        tempfile::tempdir().expect("temp dir"),
    )
    .await;
    let store = Store::mongo(&uri).await.expect("connects");
    let body = upload_a_key(&controller).await;
    let stored: Value = store
        .get(Collection::Certificates, "shop")
        .await
        .expect("reads")
        .expect("stored");
    let text = stored.to_string();
    assert!(
        !text.contains("PRIVATE KEY") && !text.contains(&body[..40]),
        "{text}"
    );
    assert!(stored["issued"]["key_sealed"]
        .as_str()
        .is_some_and(|s| s.len() > 100));
}
