//! Injects an HTML snippet (an analytics tag, a banner, a `<meta>`) at the
//! end of the `<head>` of HTML pages, the way Cloudflare's `HTMLRewriter`
//! does, with the same parser (`lol_html`).
//!
//! # Configuration
//!
//! ```json
//! { "snippet": "<script src=\"/rum.js\" defer></script>" }
//! ```
//!
//! `snippet` is required and inserted as HTML, unchanged, just before
//! `</head>`; a page without a `<head>` element is left as it is.
//!
//! The rewrite runs in `on-origin-response`, so the page is rewritten once
//! per cache fill and the cache stores (and every hit serves) the rewritten
//! page. To get pages it can read, the plugin asks the origin for them
//! uncompressed (`on-origin-request` removes `accept-encoding`); a response
//! that is compressed anyway, not `text/html`, or larger than the plugin's
//! body limit (the edge then streams it past the plugin, and
//! `context::body_withheld` says so) goes on untouched and is counted in the
//! `html_inject_skipped` metric. A rewritten page's strong `ETag` becomes
//! weak, since its bytes are no longer the origin's.

use lol_html::html_content::ContentType;
use lol_html::{element, HtmlRewriter, Settings};
use parapet_sdk::{
    context, export_plugin, hooks, log, metrics, CacheOverride, Plugin, Request, RequestAction,
    Response, ResponseAction,
};
use serde::Deserialize;

/// The plugin's configuration, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    snippet: String,
}

/// Injects `snippet` into HTML pages.
struct HtmlInject {
    snippet: String,
}

#[hooks]
impl Plugin for HtmlInject {
    fn new(config: &str) -> Result<Self, String> {
        let config: Config =
            serde_json::from_str(config).map_err(|e| format!("invalid configuration: {e}"))?;
        if config.snippet.trim().is_empty() {
            return Err("`snippet` is empty: nothing to inject".into());
        }
        Ok(HtmlInject {
            snippet: config.snippet,
        })
    }

    fn on_origin_request(&mut self, mut request: Request) -> RequestAction {
        request.remove_header("accept-encoding");
        RequestAction::Continue(request)
    }

    fn on_origin_response(
        &mut self,
        _request: &Request,
        mut response: Response,
        _cache: &mut CacheOverride,
    ) -> ResponseAction {
        if !is_html(&response) {
            return ResponseAction::Continue(response);
        }
        let Some(page) = response.body.as_deref().filter(|_| is_identity(&response)) else {
            let why = if context::body_withheld() {
                "larger than the body limit"
            } else if response.body.is_none() {
                "without a body"
            } else {
                "compressed"
            };
            log::debug(&format!("page left as it is: {why}"));
            metrics::counter_add("html_inject_skipped", 1);
            return ResponseAction::Continue(response);
        };
        match inject(page, &self.snippet) {
            Ok(rewritten) => {
                if let Some(strong) = response
                    .header("etag")
                    .filter(|tag| !tag.starts_with("W/"))
                    .map(|tag| format!("W/{tag}"))
                {
                    response.set_header("etag", &strong);
                }
                response.body = Some(rewritten);
            }
            Err(message) => {
                log::warn(&format!("page left as it is: {message}"));
                metrics::counter_add("html_inject_skipped", 1);
            }
        }
        ResponseAction::Continue(response)
    }
}

/// Whether the response is an HTML page.
fn is_html(response: &Response) -> bool {
    response.header("content-type").is_some_and(|value| {
        let essence = value.split(';').next().unwrap_or_default().trim();
        essence.eq_ignore_ascii_case("text/html")
    })
}

/// Whether the body is not content-encoded.
fn is_identity(response: &Response) -> bool {
    response
        .header("content-encoding")
        .is_none_or(|coding| coding.trim().eq_ignore_ascii_case("identity"))
}

/// `page` with `snippet` appended to its `<head>` element.
fn inject(page: &[u8], snippet: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(page.len() + snippet.len());
    let settings = Settings::new().append_element_content_handler(element!("head", |head| {
        head.append(snippet, ContentType::Html);
        Ok(())
    }));
    let mut rewriter = HtmlRewriter::new(settings, |chunk: &[u8]| out.extend_from_slice(chunk));
    rewriter
        .write(page)
        .and_then(|()| rewriter.end())
        .map_err(|e| format!("cannot rewrite the page: {e}"))?;
    Ok(out)
}

export_plugin!(HtmlInject);
