//! Behavior path patterns, as CloudFront has them: `*` matches any run of
//! characters (`/` included), `?` exactly one, everything else itself; the
//! pattern matches the whole path, case-sensitively.

use wildmatch::WildMatch;

/// Longest pattern accepted.
const MAX_PATTERN_LEN: usize = 255;

/// A compiled path pattern.
#[derive(Debug, Clone)]
pub struct PathPattern {
    source: String,
    matcher: WildMatch,
}

impl PathPattern {
    /// Compiles `pattern`: `*` alone (the default behavior) or a pattern
    /// starting with `/` (a leading `*` is also accepted, e.g. `*.jpg`).
    pub fn new(pattern: &str) -> Result<Self, String> {
        if pattern.is_empty() || pattern.len() > MAX_PATTERN_LEN {
            return Err(format!(
                "a path pattern has 1 to {MAX_PATTERN_LEN} characters"
            ));
        }
        if !pattern.starts_with(['/', '*']) {
            return Err(format!("`{pattern}` must start with `/` or `*`"));
        }
        if pattern.chars().any(char::is_control) {
            return Err("a path pattern must not contain control characters".into());
        }
        Ok(PathPattern {
            source: pattern.to_string(),
            matcher: WildMatch::new(pattern),
        })
    }

    /// Whether `path` (without the query) matches.
    pub fn matches(&self, path: &str) -> bool {
        self.matcher.matches(path)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

#[cfg(test)]
mod tests {
    use super::PathPattern;

    fn matches(pattern: &str, path: &str) -> bool {
        PathPattern::new(pattern).unwrap().matches(path)
    }

    #[test]
    fn star_and_question_mark_have_cloudfront_semantics() {
        assert!(matches("*", "/anything/at/all"));
        assert!(matches("/static/*", "/static/css/site.css"));
        assert!(!matches("/static/*", "/static"));
        assert!(matches("/images/*.jpg", "/images/a/b.jpg"));
        assert!(!matches("/images/*.jpg", "/images/a/b.jpeg"));
        assert!(matches("/v?/api", "/v1/api"));
        assert!(!matches("/v?/api", "/v10/api"));
        assert!(matches("*.gif", "/x/y.gif"));
        assert!(!matches("/API/*", "/api/x"), "case-sensitive");
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert_eq!(
            PathPattern::new("static/*").unwrap_err(),
            "`static/*` must start with `/` or `*`"
        );
        assert!(PathPattern::new("").is_err());
        assert!(PathPattern::new(&format!("/{}", "a".repeat(300))).is_err());
        assert!(PathPattern::new("/a\nb").is_err());
    }
}
