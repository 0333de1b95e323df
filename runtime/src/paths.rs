//! The normalised form of a request path, which behaviors, guards and
//! plugins match against, so that `/%61dmin/x`, `//admin/x`, `/./admin/x`
//! and `/x/../admin/x` all meet an `/admin/*` rule.

use std::borrow::Cow;

use fluent_uri::Uri;

/// `path` with repeated slashes merged, then normalised as RFC 3986 6.2.2
/// says (fluent-uri): percent-encoded unreserved characters decoded, the
/// other percent-encodings upper-cased, dot segments removed (also ones
/// spelled `%2e`). A path that is already normal is borrowed.
pub fn normalize(path: &str) -> Cow<'_, str> {
    if is_plain(path) {
        return Cow::Borrowed(path);
    }
    let mut merged = String::with_capacity(path.len());
    let mut previous_slash = false;
    for c in path.chars() {
        if !(c == '/' && previous_slash) {
            merged.push(c);
        }
        previous_slash = c == '/';
    }
    // As an absolute URI's path: dot segments are removed only there.
    match Uri::parse(format!("http://h{merged}")) {
        Ok(uri) => Cow::Owned(uri.normalize().path().as_str().to_string()),
        // hyper admits only valid request targets; keep what came if not.
        Err(_) => Cow::Owned(merged),
    }
}

/// Whether `path` needs no normalising: no `%`, no `//`, no `.` segment.
fn is_plain(path: &str) -> bool {
    let mut segments = path.split('/').enumerate().peekable();
    while let Some((i, segment)) = segments.next() {
        let last = segments.peek().is_none();
        let repeated_slash = segment.is_empty() && i > 0 && !last;
        if repeated_slash || segment == "." || segment == ".." || segment.contains('%') {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::normalize;

    #[test]
    fn spellings_of_one_path_meet() {
        for path in [
            "/admin/x",
            "/%61dmin/x",
            "/%61%64min/x",
            "//admin/x",
            "/./admin/x",
            "/x/../admin/x",
            "/x/%2e%2E/admin/x",
            "/admin//x",
            "/../admin/x",
        ] {
            assert_eq!(normalize(path), "/admin/x", "{path}");
        }
    }

    #[test]
    fn reserved_encodings_stay_encoded() {
        assert_eq!(normalize("/a%2fb"), "/a%2Fb");
        assert_eq!(normalize("/a%20b/./c"), "/a%20b/c");
        assert_eq!(normalize("/plain/path"), "/plain/path");
        assert_eq!(normalize("/"), "/");
    }

    #[test]
    fn plain_paths_are_not_copied() {
        for path in ["/", "/a/b", "/a/b/", "/a.b/..c/.d", "*"] {
            assert!(matches!(normalize(path), Cow::Borrowed(_)), "{path}");
        }
        for path in ["//", "/a//b", "/a/./b", "/a/..", "/%41"] {
            assert!(matches!(normalize(path), Cow::Owned(_)), "{path}");
        }
    }
}
