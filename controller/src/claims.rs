//! Domain claims: which distribution serves each domain entry, kept so that
//! no customer takes a name another customer serves. An entry is one
//! distribution's only; a wildcard `*.example.com` of one customer and a
//! name `shop.example.com` of another exclude each other (the name falls
//! under the wildcard) unless the operator overrides.
//!
//! The claims of every entry under one parent name (`example.com` for
//! `*.example.com` and `shop.example.com`) live in one document, changed
//! by compare-and-set on its generation, so two claims that exclude each
//! other can never both succeed, in either store.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::model::Distribution;
use crate::store::{Collection, Store, StoreError};

/// The claims under one parent name.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Zone {
    /// Domain entry (`shop.example.com`, `*.example.com`) → its claim.
    names: BTreeMap<String, Claim>,
    /// Grows with every change (the compare-and-set condition).
    generation: u64,
}

/// Who holds a domain entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Claim {
    distribution: String,
    customer: String,
}

/// Why a claim was refused.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// Another distribution holds it, or it overlaps another customer's.
    #[error("{0}")]
    Taken(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The parent name whose document holds `entry`'s claim.
fn parent(entry: &str) -> &str {
    entry.split_once('.').map_or("", |(_, parent)| parent)
}

/// Why `distribution` of `customer` may not claim `entry` in `zone`, if it
/// may not. `overriding` lets wildcards and names of different customers
/// overlap (never one entry for two distributions).
fn refusal(zone: &Zone, entry: &str, claim: &Claim, overriding: bool) -> Option<String> {
    if let Some(holder) = zone.names.get(entry) {
        if holder.distribution != claim.distribution {
            return Some(format!("`{entry}` is served by another distribution"));
        }
        return None;
    }
    if overriding {
        return None;
    }
    let other_customer = |(name, holder): &(&String, &Claim)| {
        holder.customer != claim.customer && name.as_str() != entry
    };
    if entry.starts_with("*.") {
        if let Some((name, _)) = zone
            .names
            .iter()
            .find(|pair| !pair.0.starts_with("*.") && other_customer(pair))
        {
            return Some(format!(
                "`{entry}` would cover `{name}`, which another customer serves"
            ));
        }
    } else {
        let wildcard = format!("*.{}", parent(entry));
        if zone
            .names
            .get(&wildcard)
            .is_some_and(|holder| holder.customer != claim.customer)
        {
            return Some(format!(
                "`{entry}` falls under `{wildcard}`, which another customer serves"
            ));
        }
    }
    None
}

/// Claims `entries` (lower-case domain entries) for `distribution` of
/// `customer`: all of them, or none (a refusal undoes the claims this call
/// made). Returns the entries newly claimed.
pub async fn claim(
    store: &Store,
    distribution: &str,
    customer: &str,
    entries: &[String],
    overriding: bool,
) -> Result<Vec<String>, ClaimError> {
    let holder = Claim {
        distribution: distribution.to_string(),
        customer: customer.to_string(),
    };
    let mut by_parent: BTreeMap<&str, Vec<&String>> = BTreeMap::new();
    for entry in entries {
        by_parent.entry(parent(entry)).or_default().push(entry);
    }
    let mut claimed = Vec::new();
    for (parent, entries) in by_parent {
        let outcome = change_zone(store, parent, |zone| {
            let mut added = Vec::new();
            for entry in &entries {
                if let Some(why) = refusal(zone, entry, &holder, overriding) {
                    return Err(why);
                }
                if !zone.names.contains_key(entry.as_str()) {
                    zone.names.insert(entry.to_string(), holder.clone());
                    added.push(entry.to_string());
                }
            }
            Ok(added)
        })
        .await;
        match outcome {
            Ok(added) => claimed.extend(added),
            Err(e) => {
                if let Err(undo) = release(store, distribution, &claimed).await {
                    tracing::error!(distribution, error = %undo, "cannot undo domain claims; they stay until its next apply");
                }
                return Err(e);
            }
        }
    }
    Ok(claimed)
}

/// Releases `distribution`'s claims on `entries` (others' are untouched).
pub async fn release(
    store: &Store,
    distribution: &str,
    entries: &[String],
) -> Result<(), StoreError> {
    let mut by_parent: BTreeMap<&str, Vec<&String>> = BTreeMap::new();
    for entry in entries {
        by_parent.entry(parent(entry)).or_default().push(entry);
    }
    for (parent, entries) in by_parent {
        let released = change_zone(store, parent, |zone| {
            for entry in &entries {
                if zone
                    .names
                    .get(entry.as_str())
                    .is_some_and(|c| c.distribution == distribution)
                {
                    zone.names.remove(entry.as_str());
                }
            }
            Ok(())
        })
        .await;
        match released {
            Ok(()) => {}
            Err(ClaimError::Store(e)) => return Err(e),
            Err(ClaimError::Taken(_)) => {}
        }
    }
    Ok(())
}

/// Keeps `distribution`'s claims to `kept`: the entries of `before` not
/// in `kept` are released.
pub async fn keep_only(
    store: &Store,
    distribution: &str,
    before: &[String],
    kept: &[String],
) -> Result<(), StoreError> {
    let gone: Vec<String> = before
        .iter()
        .filter(|entry| !kept.contains(entry))
        .cloned()
        .collect();
    release(store, distribution, &gone).await
}

/// Claims the domains of distributions stored before claims existed (a
/// store written by an earlier controller), so they keep their names.
pub async fn adopt_existing(store: &Store) -> Result<(), StoreError> {
    let distributions: Vec<Distribution> = store.find(Collection::Distributions, &[]).await?;
    for distribution in distributions {
        match claim(
            store,
            &distribution.id,
            &distribution.customer,
            &distribution.domains,
            true,
        )
        .await
        {
            Ok(_) => {}
            Err(ClaimError::Store(e)) => return Err(e),
            Err(ClaimError::Taken(why)) => {
                tracing::warn!(distribution = %distribution.id, %why, "a stored distribution's domain is claimed by another");
            }
        }
    }
    Ok(())
}

/// Applies `change` to the zone of `parent` by compare-and-set, again
/// from a fresh read when another change won the race.
async fn change_zone<T>(
    store: &Store,
    parent: &str,
    mut change: impl FnMut(&mut Zone) -> Result<T, String>,
) -> Result<T, ClaimError> {
    let key = if parent.is_empty() { "." } else { parent };
    loop {
        let stored: Option<Zone> = store.get(Collection::Claims, key).await?;
        let existed = stored.is_some();
        let mut zone = stored.unwrap_or_default();
        let generation = zone.generation;
        let before = zone.names.clone();
        let outcome = change(&mut zone).map_err(ClaimError::Taken)?;
        if zone.names == before {
            return Ok(outcome);
        }
        zone.generation = generation + 1;
        let written = if existed {
            store
                .update(
                    Collection::Claims,
                    key,
                    &[("generation", json!(generation))],
                    &zone,
                )
                .await?
        } else {
            match store.insert(Collection::Claims, key, &zone).await {
                Ok(()) => true,
                Err(StoreError::Conflict(_)) => false,
                Err(e) => return Err(e.into()),
            }
        };
        if written {
            return Ok(outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(entries: &[(&str, &str, &str)]) -> Zone {
        Zone {
            names: entries
                .iter()
                .map(|(name, distribution, customer)| {
                    (
                        name.to_string(),
                        Claim {
                            distribution: distribution.to_string(),
                            customer: customer.to_string(),
                        },
                    )
                })
                .collect(),
            generation: 0,
        }
    }

    fn by(distribution: &str, customer: &str) -> Claim {
        Claim {
            distribution: distribution.into(),
            customer: customer.into(),
        }
    }

    #[test]
    fn wildcards_and_names_of_different_customers_exclude_each_other() {
        let names = zone(&[("shop.example.com", "b", "globex")]);
        let why = refusal(&names, "*.example.com", &by("a", "acme"), false);
        assert_eq!(
            why.as_deref(),
            Some("`*.example.com` would cover `shop.example.com`, which another customer serves")
        );
        assert_eq!(
            refusal(&names, "*.example.com", &by("a", "acme"), true),
            None
        );
        assert_eq!(
            refusal(&names, "*.example.com", &by("c", "globex"), false),
            None
        );

        let wildcard = zone(&[("*.example.com", "b", "globex")]);
        let why = refusal(&wildcard, "shop.example.com", &by("a", "acme"), false);
        assert!(why.is_some_and(|w| w.contains("falls under `*.example.com`")));
        assert_eq!(
            refusal(&wildcard, "shop.example.com", &by("c", "globex"), false),
            None
        );
    }

    #[test]
    fn an_entry_is_one_distributions_even_with_an_override() {
        let names = zone(&[("shop.example.com", "b", "globex")]);
        for overriding in [false, true] {
            assert!(refusal(&names, "shop.example.com", &by("a", "acme"), overriding).is_some());
            assert!(refusal(&names, "shop.example.com", &by("c", "globex"), overriding).is_some());
        }
        assert_eq!(
            refusal(&names, "shop.example.com", &by("b", "globex"), false),
            None
        );
    }

    #[test]
    fn parents_group_names_with_their_wildcard() {
        assert_eq!(parent("*.example.com"), "example.com");
        assert_eq!(parent("shop.example.com"), "example.com");
        assert_eq!(parent("localhost"), "");
    }
}
