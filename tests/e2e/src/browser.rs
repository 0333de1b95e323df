//! Headless Chromium driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`, through fantoccini), for the console's tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};

use crate::{free_port, wait_for_port, Process};

/// A browser session and the chromedriver behind it.
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    _driver: Process,
}

impl Browser {
    /// Starts chromedriver (its log in `log_dir`) and a headless Chromium
    /// with a phone-or-laptop window of `width` × `height` that accepts the
    /// test authority's certificates.
    pub async fn start(log_dir: &Path, width: u32, height: u32) -> Browser {
        let port = free_port();
        let driver = Process::start(
            "chromedriver",
            Path::new("chromedriver"),
            &[format!("--port={port}")],
            &[],
            log_dir,
        );
        wait_for_port(([127, 0, 0, 1], port).into(), 10);
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("acceptInsecureCerts".into(), true.into());
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu",
                         "--disable-background-networking", "--disable-dev-shm-usage",
                         format!("--window-size={width},{height}")],
            }),
        );
        // chromedriver speaks plain HTTP on loopback.
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| panic!("starting Chromium through chromedriver: {e}"));
        Browser {
            client,
            _driver: driver,
        }
    }

    /// The text of the first element matching CSS `selector`, waiting up
    /// to 10 s for it (and finding it again when the page swapped it, as
    /// htmx does, in between).
    pub async fn text(&self, selector: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match self.element(selector).await.text().await {
                Ok(text) => return text,
                Err(e) if std::time::Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("{selector}: {e}"),
            }
        }
    }

    /// The first element matching CSS `selector`, waiting up to 10 s.
    pub async fn element(&self, selector: &str) -> fantoccini::elements::Element {
        match self
            .client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(selector))
            .await
        {
            Ok(element) => element,
            Err(e) => panic!(
                "no `{selector}` on {}: {e}\n{}",
                self.url().await,
                self.source().await
            ),
        }
    }

    /// Types `text` into the field matching `selector`, replacing what
    /// it held.
    pub async fn fill(&self, selector: &str, text: &str) {
        let field = self.element(selector).await;
        field.clear().await.expect("clearing a field");
        field.send_keys(text).await.expect("typing");
    }

    /// Chooses the file at `path` in the file input matching `selector`.
    pub async fn choose_file(&self, selector: &str, path: &Path) {
        // ChromeDriver takes only canonical paths.
        let path = path
            .canonicalize()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        self.element(selector)
            .await
            .send_keys(&path.display().to_string())
            .await
            .unwrap_or_else(|e| panic!("{selector}: cannot choose {}: {e}", path.display()));
    }

    /// Clicks the element matching `selector` and waits for the page it
    /// leads to (up to 10 s).
    pub async fn click(&self, selector: &str) {
        let page = self
            .client
            .find(Locator::Css("html"))
            .await
            .expect("a page");
        self.element(selector).await.click().await.expect("click");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        // The old page's root goes stale once the new page is there.
        while page.tag_name().await.is_ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "clicking `{selector}` led nowhere"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Chooses the option of value `value` in the `<select>` matching
    /// `selector`.
    pub async fn select(&self, selector: &str, value: &str) {
        self.element(selector)
            .await
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("{selector}: no option {value}: {e}"));
    }

    /// Clicks the element matching `selector`, staying on the page.
    pub async fn toggle(&self, selector: &str) {
        self.element(selector).await.click().await.expect("click");
    }

    /// The page's URL.
    pub async fn url(&self) -> String {
        self.client
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default()
    }

    /// The page's HTML.
    pub async fn source(&self) -> String {
        self.client.source().await.expect("page source")
    }

    /// Saves a PNG of the window, scrolled to `selector`, as
    /// `<dir>/<name>.png` when `dir` is given.
    pub async fn screenshot(&self, dir: Option<&PathBuf>, name: &str, selector: &str) {
        if let Some(dir) = dir {
            let element = self.element(selector).await;
            self.client
                .execute(
                    "arguments[0].scrollIntoView({block: 'center'})",
                    vec![serde_json::to_value(&element).expect("element")],
                )
                .await
                .expect("scrolling");
            let png = self.client.screenshot().await.expect("screenshot");
            std::fs::create_dir_all(dir).expect("screenshot directory");
            std::fs::write(dir.join(format!("{name}.png")), png).expect("screenshot");
        }
    }
}
