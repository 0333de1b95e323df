//! Placeholder: being written.

use parapet_sdk::{export_plugin, Plugin};

struct Stub;

impl Plugin for Stub {
    fn new(_config: &str) -> Result<Self, String> {
        Ok(Stub)
    }
}

export_plugin!(Stub);
