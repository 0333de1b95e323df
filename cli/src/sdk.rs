//! The plugin SDK this CLI was built with, carried in the binary and written
//! out for `parapet plugin new`, so that a scaffold builds wherever the
//! binary is installed, with the SDK version that matches it.

use std::path::PathBuf;

use anyhow::{Context, Result};

/// The SDK's files, relative to its root: `parapet-sdk`, its contract and
/// its attribute macro crate.
const FILES: [(&str, &str); 8] = [
    ("Cargo.toml", include_str!("../../guest-sdk/Cargo.toml")),
    ("src/lib.rs", include_str!("../../guest-sdk/src/lib.rs")),
    ("src/alloc.rs", include_str!("../../guest-sdk/src/alloc.rs")),
    ("src/http.rs", include_str!("../../guest-sdk/src/http.rs")),
    ("src/path.rs", include_str!("../../guest-sdk/src/path.rs")),
    ("wit/plugin.wit", include_str!("../../wit/plugin.wit")),
    (
        "macros/Cargo.toml",
        include_str!("../../guest-sdk/macros/Cargo.toml"),
    ),
    (
        "macros/src/lib.rs",
        include_str!("../../guest-sdk/macros/src/lib.rs"),
    ),
];

/// Where `parapet` keeps its data: `$PARAPET_DATA_DIR`, else
/// `$XDG_DATA_HOME/parapet`, else `~/.local/share/parapet`.
fn data_dir() -> Result<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("PARAPET_DATA_DIR") {
        return Ok(dir.into());
    }
    if let Some(dir) = var("XDG_DATA_HOME") {
        return Ok(PathBuf::from(dir).join("parapet"));
    }
    let home = var("HOME").context("neither PARAPET_DATA_DIR, XDG_DATA_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".local/share/parapet"))
}

/// Writes the SDK to `<data dir>/sdk/<version>` (files that differ from
/// what this binary carries are rewritten) and returns that directory.
pub fn install() -> Result<PathBuf> {
    let root = data_dir()?.join("sdk").join(env!("CARGO_PKG_VERSION"));
    for (path, contents) in FILES {
        let file = root.join(path);
        if std::fs::read_to_string(&file).is_ok_and(|c| c == contents) {
            continue;
        }
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&file, contents).with_context(|| format!("writing {}", file.display()))?;
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every source file of the SDK and its macro crate is carried.
    #[test]
    fn every_sdk_source_is_carried() {
        let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk");
        for dir in ["src", "macros/src"] {
            for entry in std::fs::read_dir(sdk.join(dir)).unwrap() {
                let name = entry.unwrap().file_name();
                let path = format!("{dir}/{}", name.to_string_lossy());
                assert!(
                    super::FILES.iter().any(|(p, _)| *p == path),
                    "{path} is not in sdk::FILES"
                );
            }
        }
    }
}
