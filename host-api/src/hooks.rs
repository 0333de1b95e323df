//! Which hooks a plugin implements, as its SDK recorded them in the
//! `parapet:hooks` custom section: one byte, one bit per hook. A component
//! without the section is called at every hook its behavior lists.

use crate::bindings::Hook;
use crate::load::LoadError;

/// The custom section's name.
const SECTION: &str = "parapet:hooks";

/// The hooks of a request, in bit order.
const BITS: [Hook; 4] = [
    Hook::OnViewerRequest,
    Hook::OnOriginRequest,
    Hook::OnOriginResponse,
    Hook::OnViewerResponse,
];

/// A set of request hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HookSet(u8);

impl HookSet {
    /// Whether `hook` is in the set (`on-launch` always is).
    pub(crate) fn contains(self, hook: Hook) -> bool {
        match BITS.iter().position(|h| *h == hook) {
            Some(bit) => self.0 & (1 << bit) != 0,
            None => true,
        }
    }

    /// The hooks a component implements: from its `parapet:hooks` section
    /// (in any of its core modules), or all of them when it has none.
    pub(crate) fn of(component: &[u8]) -> Result<HookSet, LoadError> {
        let mut found: Option<u8> = None;
        for payload in wasmparser::Parser::new(0).parse_all(component) {
            let payload = payload.map_err(|e| LoadError::Invalid(e.to_string()))?;
            let wasmparser::Payload::CustomSection(section) = payload else {
                continue;
            };
            if section.name() != SECTION {
                continue;
            }
            match section.data() {
                [bits] if *bits < 1 << BITS.len() => *found.get_or_insert(0) |= bits,
                other => {
                    return Err(LoadError::Invalid(format!(
                        "the {SECTION} section must be one byte below {}, got {other:?}",
                        1 << BITS.len()
                    )))
                }
            }
        }
        Ok(HookSet(found.unwrap_or((1 << BITS.len()) - 1)))
    }
}
