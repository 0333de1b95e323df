//! Host names as distributions claim them and as purges, prewarms and
//! requests name them: what a domain entry serves, and the host of a URL.

/// The host name of a `Host` value: lower-case, without port or final dot.
pub fn host_name(host: &str) -> String {
    let name = match host.strip_prefix('[') {
        // An IPv6 literal: `[::1]:8080`.
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _port)| name),
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether the domain entry `domain` (`www.example.com`, `*.example.com`
/// for one label in front of `example.com`, or `*`) serves `host` (a host
/// name as [`host_name`] gives it).
pub fn serves(domain: &str, host: &str) -> bool {
    let domain = domain.to_ascii_lowercase();
    if domain == "*" {
        return true;
    }
    match domain.strip_prefix("*.") {
        Some(parent) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
        None => domain == host,
    }
}

/// Host (as [`host_name`] gives it), path (`/` when empty) and query of
/// `http(s)://Host/path?query` or `Host/path?query`.
pub fn split_url(url: &str) -> (String, String, Option<String>) {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url);
    let (host, path_and_query) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let (path, query) = match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query.to_string())),
        None => (path_and_query, None),
    };
    let path = if path.is_empty() { "/" } else { path };
    (host_name(host), path.to_string(), query)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_lose_port_case_and_final_dot() {
        assert_eq!(host_name("WWW.Example.com:8080"), "www.example.com");
        assert_eq!(host_name("example.com."), "example.com");
        assert_eq!(host_name("[2001:db8::1]:443"), "2001:db8::1");
        assert_eq!(host_name("localhost"), "localhost");
    }

    #[test]
    fn wildcards_serve_one_label() {
        assert!(serves("*.example.com", "a.example.com"));
        assert!(!serves("*.example.com", "a.b.example.com"));
        assert!(!serves("*.example.com", "example.com"));
        assert!(serves("WWW.example.com", "www.example.com"));
        assert!(!serves("www.example.com", "example.com"));
        assert!(serves("*", "anything.test"));
    }

    #[test]
    fn urls_split_into_host_path_and_query() {
        assert_eq!(
            split_url("https://WWW.Example.com:8443/a/b?x=1&y"),
            (
                "www.example.com".into(),
                "/a/b".into(),
                Some("x=1&y".into())
            )
        );
        assert_eq!(
            split_url("a.test/img/"),
            ("a.test".into(), "/img/".into(), None)
        );
        assert_eq!(split_url("a.test"), ("a.test".into(), "/".into(), None));
        assert_eq!(
            split_url("a.test?q=1"),
            ("a.test".into(), "/".into(), Some("q=1".into()))
        );
    }
}
