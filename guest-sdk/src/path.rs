//! Path patterns for plugin settings such as allow or bypass lists: an exact
//! path, or a prefix written with a trailing `*`.

/// A path pattern: `/healthz` matches exactly that path, `/static/*` every
/// path starting with `/static/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPattern {
    /// The path must be exactly this.
    Exact(String),
    /// The path must start with this (the pattern ended with `*`).
    Prefix(String),
}

/// Why a path pattern was refused; plugins word the message for their own
/// setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathPatternError {
    /// It does not start with `/`.
    NotAbsolute,
    /// It has a `*` somewhere other than at its end.
    StarNotAtEnd,
}

impl PathPattern {
    /// Parses `/exact` or `/prefix*`.
    pub fn parse(pattern: &str) -> Result<Self, PathPatternError> {
        if !pattern.starts_with('/') {
            return Err(PathPatternError::NotAbsolute);
        }
        match pattern.find('*') {
            None => Ok(PathPattern::Exact(pattern.to_string())),
            Some(i) if i == pattern.len() - 1 => Ok(PathPattern::Prefix(pattern[..i].to_string())),
            Some(_) => Err(PathPatternError::StarNotAtEnd),
        }
    }

    /// Whether `path` matches.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathPattern::Exact(p) => path == p,
            PathPattern::Prefix(p) => path.starts_with(p.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_prefix_patterns() {
        let exact = PathPattern::parse("/healthz").unwrap();
        assert!(exact.matches("/healthz"));
        assert!(!exact.matches("/healthz/x"));
        let prefix = PathPattern::parse("/static/*").unwrap();
        assert!(prefix.matches("/static/a.css"));
        assert!(!prefix.matches("/static"));
        assert_eq!(
            PathPattern::parse("static/*"),
            Err(PathPatternError::NotAbsolute)
        );
        assert_eq!(
            PathPattern::parse("/a/*/b"),
            Err(PathPatternError::StarNotAtEnd)
        );
    }
}
