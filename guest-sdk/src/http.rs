//! Header and construction helpers on the WIT request and response records.

use crate::{Request, Response};

/// Header helpers shared by requests and responses. Header names are matched
/// case-insensitively and stored lower-case.
macro_rules! header_methods {
    ($ty:ty) => {
        impl $ty {
            /// The first value of header `name`.
            pub fn header(&self, name: &str) -> Option<&str> {
                self.headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.as_str())
            }

            /// Every value of header `name`, in order.
            pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
                self.headers
                    .iter()
                    .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.as_str())
            }

            /// Replaces every value of header `name` with `value`.
            pub fn set_header(&mut self, name: &str, value: &str) {
                self.remove_header(name);
                self.append_header(name, value);
            }

            /// Adds a value for header `name`, keeping existing ones.
            pub fn append_header(&mut self, name: &str, value: &str) {
                self.headers
                    .push((name.to_ascii_lowercase(), value.to_string()));
            }

            /// Removes header `name`; returns whether it was present.
            pub fn remove_header(&mut self, name: &str) -> bool {
                let before = self.headers.len();
                self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
                self.headers.len() != before
            }

            /// The body as text, if it is present and valid UTF-8.
            pub fn body_text(&self) -> Option<&str> {
                self.body
                    .as_deref()
                    .and_then(|b| std::str::from_utf8(b).ok())
            }
        }
    };
}

header_methods!(Request);
header_methods!(Response);

impl Request {
    /// The value of cookie `name` from the `cookie` headers.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.header_all("cookie")
            .flat_map(|h| h.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }

    /// Path and query as they appear in a request line: `/a/b?x=1`.
    pub fn path_and_query(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{}", self.path, q),
            None => self.path.clone(),
        }
    }
}

impl Response {
    /// A response with `status`, no headers and no body.
    pub fn new(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: None,
        }
    }

    /// Adds a header (builder style).
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.append_header(name, value);
        self
    }

    /// Sets the body (builder style).
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// A redirect to `location` with `status` (use 301, 302, 307 or 308).
    pub fn redirect(status: u16, location: &str) -> Self {
        Response::new(status).with_header("location", location)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request {
        Request {
            method: "GET".into(),
            scheme: "https".into(),
            authority: "example.com".into(),
            path: "/a".into(),
            query: Some("x=1".into()),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: None,
        }
    }

    #[test]
    fn headers_match_case_insensitively_and_keep_order() {
        let mut r = request(&[("accept", "a"), ("x-y", "1"), ("x-y", "2")]);
        assert_eq!(r.header("X-Y"), Some("1"));
        assert_eq!(r.header_all("x-y").collect::<Vec<_>>(), ["1", "2"]);
        r.set_header("X-Y", "3");
        assert_eq!(r.header_all("x-y").collect::<Vec<_>>(), ["3"]);
        assert!(r.remove_header("ACCEPT"));
        assert!(!r.remove_header("accept"));
        assert_eq!(r.headers, [("x-y".to_string(), "3".to_string())]);
    }

    #[test]
    fn cookies_are_found_across_headers() {
        let r = request(&[("cookie", "a=1; b=2"), ("cookie", "c=3")]);
        assert_eq!(r.cookie("b"), Some("2"));
        assert_eq!(r.cookie("c"), Some("3"));
        assert_eq!(r.cookie("d"), None);
        assert_eq!(r.path_and_query(), "/a?x=1");
    }

    #[test]
    fn response_builders() {
        let r = Response::redirect(308, "/new").with_body("moved");
        assert_eq!(r.status, 308);
        assert_eq!(r.header("location"), Some("/new"));
        assert_eq!(r.body_text(), Some("moved"));
    }
}
