//! Checks on what plugins return, so that a plugin cannot send the edge an
//! invalid or smuggling request line, inject headers, or hand the host more
//! data than it accepts. A message that fails a check fails the plugin.

use std::str::FromStr;

use crate::bindings::{Request, Response};

/// Most headers a plugin may return in one message.
const MAX_HEADERS: usize = 256;
/// Most bytes of header names and values a plugin may return in one message.
const MAX_HEADER_BYTES: usize = 64 << 10;
/// A returned body may be this large even when the plugin's input limit is
/// smaller (error pages, redirects with text).
const MIN_BODY_ALLOWANCE: usize = 1 << 20;
/// How much of a plugin-chosen name goes into an error message.
const MAX_SHOWN: usize = 64;

/// A plugin returned a message the edge will not use.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InvalidOutput {
    #[error("the plugin returned an invalid method {0:?}")]
    Method(String),
    #[error("the plugin returned scheme {0:?}; only http and https are allowed")]
    Scheme(String),
    #[error("the plugin returned an invalid authority {0:?}")]
    Authority(String),
    #[error("the plugin returned an invalid path or query {0:?}")]
    PathAndQuery(String),
    #[error("the plugin returned status {0}; a response needs 200 to 599")]
    Status(u16),
    #[error("the plugin returned an invalid header name {0:?}")]
    HeaderName(String),
    #[error("the plugin returned an invalid value for header {0:?}")]
    HeaderValue(String),
    #[error("the plugin returned {0} headers; at most {MAX_HEADERS} are allowed")]
    TooManyHeaders(usize),
    #[error("the plugin returned {0} bytes of headers; at most {MAX_HEADER_BYTES} are allowed")]
    HeadersTooLarge(usize),
    #[error("the plugin returned a body of {0} bytes; at most {1} are allowed")]
    BodyTooLarge(usize, usize),
}

/// Cuts a plugin-chosen string for display in errors and logs.
fn shown(s: &str) -> String {
    s.chars().take(MAX_SHOWN).collect()
}

/// Checks a request a plugin continued with, lower-casing header names.
/// Request-line fields the plugin returned unchanged from `input` (which the
/// host built) are not parsed again.
pub(crate) fn check_request(
    request: &mut Request,
    input: &Request,
    body_limit: usize,
) -> Result<(), InvalidOutput> {
    if request.method != input.method
        && http::Method::from_bytes(request.method.as_bytes()).is_err()
    {
        return Err(InvalidOutput::Method(shown(&request.method)));
    }
    if request.scheme != input.scheme && !matches!(request.scheme.as_str(), "http" | "https") {
        return Err(InvalidOutput::Scheme(shown(&request.scheme)));
    }
    let authority = &request.authority;
    if *authority != input.authority
        && (authority.contains('@') || http::uri::Authority::from_str(authority).is_err())
    {
        return Err(InvalidOutput::Authority(shown(authority)));
    }
    // What a request line may carry (as hyper accepts from viewers): no
    // control bytes, spaces or DEL, which would end or split the line, no
    // fragment, and no `?` inside the path.
    let clean = |s: &str, extra: u8| {
        s.bytes()
            .all(|b| b > b' ' && b != 0x7f && b != b'#' && b != extra)
    };
    let query = request.query.as_deref().unwrap_or_default();
    if !request.path.starts_with('/') || !clean(&request.path, b'?') || !clean(query, b'#') {
        let path_and_query = match &request.query {
            Some(query) => format!("{}?{query}", request.path),
            None => request.path.clone(),
        };
        return Err(InvalidOutput::PathAndQuery(shown(&path_and_query)));
    }
    check_headers(&mut request.headers)?;
    check_body(request.body.as_deref(), body_limit)
}

/// Checks a response a plugin returned, lower-casing header names.
pub(crate) fn check_response(
    response: &mut Response,
    body_limit: usize,
) -> Result<(), InvalidOutput> {
    if !(200..=599).contains(&response.status) {
        return Err(InvalidOutput::Status(response.status));
    }
    check_headers(&mut response.headers)?;
    check_body(response.body.as_deref(), body_limit)
}

fn check_headers(headers: &mut [(String, String)]) -> Result<(), InvalidOutput> {
    if headers.len() > MAX_HEADERS {
        return Err(InvalidOutput::TooManyHeaders(headers.len()));
    }
    let bytes: usize = headers.iter().map(|(n, v)| n.len() + v.len()).sum();
    if bytes > MAX_HEADER_BYTES {
        return Err(InvalidOutput::HeadersTooLarge(bytes));
    }
    for (name, value) in headers {
        if name.is_empty() || !name.bytes().all(is_name_byte) {
            return Err(InvalidOutput::HeaderName(shown(name)));
        }
        if !value.bytes().all(is_value_byte) {
            return Err(InvalidOutput::HeaderValue(shown(name)));
        }
        name.make_ascii_lowercase();
    }
    Ok(())
}

/// A byte of a header name (an RFC 9110 token), as the `http` crate accepts
/// them; checked here because building an `http::HeaderName` allocates, on
/// every header of every hook call. A test compares the two byte by byte.
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A byte of a header value as the `http` crate accepts them: visible
/// characters, space, tab and obs-text; no other control bytes.
fn is_value_byte(b: u8) -> bool {
    (b >= b' ' && b != 0x7f) || b == b'\t'
}

fn check_body(body: Option<&[u8]>, body_limit: usize) -> Result<(), InvalidOutput> {
    let allowed = body_limit.max(MIN_BODY_ALLOWANCE);
    match body {
        Some(body) if body.len() > allowed => Err(InvalidOutput::BodyTooLarge(body.len(), allowed)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, authority: &str, path: &str, query: Option<&str>) -> Request {
        Request {
            method: method.into(),
            scheme: "https".into(),
            authority: authority.into(),
            path: path.into(),
            query: query.map(Into::into),
            headers: vec![("X-Up".into(), "1".into())],
            body: None,
        }
    }

    /// Checks `r` as a plugin's output for a GET of `/` on example.com.
    fn check(r: Request) -> Result<Request, String> {
        let input = request("GET", "example.com", "/", None);
        let mut r = r;
        check_request(&mut r, &input, 0)
            .map(|()| r)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn request_lines_cannot_be_smuggled() {
        let ok = check(request(
            "GET",
            "example.com:8443",
            "/a/b",
            Some("x=1&y=%20"),
        ))
        .unwrap();
        assert_eq!(ok.headers[0].0, "x-up", "header names come back lower-case");
        for bad in [
            request("GE T", "example.com", "/", None),
            request("GET", "evil.com@example.com", "/", None),
            request("GET", "example.com\r\nx: y", "/", None),
            request("GET", "example.com", "/a HTTP/1.1\r\nHost: x", None),
            request("GET", "example.com", "relative", None),
            request("GET", "example.com", "/a?b", None),
            request("GET", "example.com", "/a", Some("x#frag")),
        ] {
            assert!(check(bad.clone()).is_err(), "accepted {bad:?}");
        }
        let mut ftp = request("GET", "example.com", "/", None);
        ftp.scheme = "ftp".into();
        assert_eq!(
            check(ftp).unwrap_err(),
            "the plugin returned scheme \"ftp\"; only http and https are allowed"
        );
    }

    #[test]
    fn header_bytes_are_judged_as_the_http_crate_does() {
        for b in 0..=255u8 {
            let name = [b'x', b];
            assert_eq!(
                is_name_byte(b),
                http::HeaderName::from_bytes(&name).is_ok(),
                "name byte {b:#x}"
            );
            assert_eq!(
                is_value_byte(b),
                http::HeaderValue::from_bytes(&[b'v', b]).is_ok(),
                "value byte {b:#x}"
            );
        }
    }

    #[test]
    fn responses_need_a_final_status_and_bounded_headers_and_body() {
        let mut r = Response {
            status: 101,
            headers: vec![],
            body: None,
        };
        assert!(check_response(&mut r, 0).is_err());
        let mut r = Response {
            status: 200,
            headers: vec![("a".into(), "b".into()); 300],
            body: None,
        };
        assert!(matches!(
            check_response(&mut r, 0),
            Err(InvalidOutput::TooManyHeaders(300))
        ));
        let mut r = Response {
            status: 200,
            headers: vec![("a".into(), "b".repeat(70_000))],
            body: None,
        };
        assert!(matches!(
            check_response(&mut r, 0),
            Err(InvalidOutput::HeadersTooLarge(_))
        ));
        let mut r = Response {
            status: 200,
            headers: vec![],
            body: Some(vec![0; (1 << 20) + 1]),
        };
        assert!(matches!(
            check_response(&mut r, 0),
            Err(InvalidOutput::BodyTooLarge(..))
        ));
        let mut long = Response {
            status: 200,
            headers: vec![("x".repeat(1000) + " ", "v".into())],
            body: None,
        };
        let message = check_response(&mut long, 0).unwrap_err().to_string();
        assert!(
            message.len() < 150,
            "plugin-chosen names are cut: {message}"
        );
    }
}
