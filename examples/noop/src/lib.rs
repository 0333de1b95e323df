//! The smallest plugin: every hook keeps its default and passes the message on.

use parapet_sdk::{export_plugin, Plugin};

struct Noop;

impl Plugin for Noop {
    fn new(_config: &str) -> Result<Self, String> {
        Ok(Noop)
    }
}

export_plugin!(Noop);
