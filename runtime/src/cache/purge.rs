//! What a purge selects: a URL, a URL prefix, a surrogate key or
//! everything, within one distribution (what customers purge through the
//! controller) or across the edge (the operator's admin API).

use super::object::PurgeMeta;

/// The objects a purge applies to, within its scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One URL as the cache keys it: host, path and the query the
    /// behavior's cache key keeps, e.g. `www.example.com/a.png?v=2`.
    Url(String),
    /// Every URL starting with this host and path prefix.
    Prefix(String),
    /// Objects tagged with this `Surrogate-Key`.
    Tag(String),
    /// Everything.
    Everything,
}

/// A purge: a target in one distribution, or in all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purge {
    /// The distribution whose objects it applies to; `None`: every
    /// distribution's (the operator's edge-wide purges).
    pub distribution: Option<String>,
    /// What it selects there.
    pub target: Target,
}

impl Purge {
    /// A purge of `target` in `distribution`.
    pub fn of(distribution: &str, target: Target) -> Self {
        Purge {
            distribution: Some(distribution.to_string()),
            target,
        }
    }

    /// Everything on the edge.
    pub fn everything() -> Self {
        Purge {
            distribution: None,
            target: Target::Everything,
        }
    }

    /// Whether an object described by `meta` is selected.
    pub fn matches(&self, meta: &PurgeMeta) -> bool {
        if self
            .distribution
            .as_ref()
            .is_some_and(|d| *d != meta.distribution)
        {
            return false;
        }
        match &self.target {
            Target::Url(url) => meta.url == *url,
            Target::Prefix(prefix) => meta.url.starts_with(prefix.as_str()),
            Target::Tag(tag) => meta.tags.iter().any(|t| t == tag),
            Target::Everything => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_purge_selects_only_its_distributions_objects() {
        let meta = PurgeMeta {
            distribution: "b".into(),
            url: "b.test/img/1.png".into(),
            tags: vec!["shared".into()],
        };
        for target in [
            Target::Url("b.test/img/1.png".into()),
            Target::Prefix("b.test/".into()),
            Target::Tag("shared".into()),
            Target::Everything,
        ] {
            assert!(!Purge::of("a", target.clone()).matches(&meta), "{target:?}");
            assert!(Purge::of("b", target.clone()).matches(&meta), "{target:?}");
            let edge_wide = Purge {
                distribution: None,
                target: target.clone(),
            };
            assert!(edge_wide.matches(&meta), "{target:?}");
        }
        assert!(!Purge::of("b", Target::Tag("other".into())).matches(&meta));
        assert!(!Purge::of("b", Target::Prefix("b.test/css/".into())).matches(&meta));
    }
}
