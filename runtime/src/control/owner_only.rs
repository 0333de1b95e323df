//! The state directory holds the edge's credential and its customers'
//! configurations, KV data and plugins: it is for the edge's user only.
//! Directories are made 0700 and files written 0600; at start, looser
//! modes found there (an older edge, a copy, an operator's umask) are
//! tightened, with a warning naming each path.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Mode of the state directory and those in it.
const DIR_MODE: u32 = 0o700;
/// Mode of the files in it.
const FILE_MODE: u32 = 0o600;

/// Makes `dir` (and missing parents) readable by the owner only; an
/// existing one is left as it is (see [`tighten`]).
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// Writes `bytes` to `path` whole or not at all: into `path` with the
/// extension `tmp`, readable by the owner only, then renamed over `path`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let staging = path.with_extension("tmp");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(&staging)?;
    // A staging file a crash left behind keeps the mode it had.
    file.set_permissions(Permissions::from_mode(FILE_MODE))?;
    file.write_all(bytes)?;
    drop(file);
    std::fs::rename(&staging, path)
}

/// Tightens `root` and everything under it: a directory any group or
/// other permission bit is set on becomes 0700, a file with more than
/// owner read and write 0600. Symbolic links are neither followed nor
/// changed. Returns the paths changed, each logged as a warning.
pub fn tighten(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut changed = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        let metadata = std::fs::symlink_metadata(&path)
            .with_context(|| format!("reading the mode of {}", path.display()))?;
        let kind = metadata.file_type();
        let mode = metadata.permissions().mode() & 0o7777;
        let wanted = if kind.is_dir() {
            for entry in
                std::fs::read_dir(&path).with_context(|| format!("listing {}", path.display()))?
            {
                let entry = entry.with_context(|| format!("listing {}", path.display()))?;
                pending.push(entry.path());
            }
            (mode & 0o077 != 0).then_some(DIR_MODE)
        } else if kind.is_file() {
            (mode & !FILE_MODE != 0).then_some(FILE_MODE)
        } else {
            None
        };
        let Some(wanted) = wanted else {
            continue;
        };
        std::fs::set_permissions(&path, Permissions::from_mode(wanted)).with_context(|| {
            format!(
                "cannot make {} owner-only (it is {mode:04o})",
                path.display()
            )
        })?;
        tracing::warn!(
            path = %path.display(),
            was = format!("{mode:04o}"),
            now = format!("{wanted:04o}"),
            "the state directory is for the edge's user only: mode tightened"
        );
        changed.push(path);
    }
    Ok(changed)
}

/// A file's permission bits, not following a link (for tests).
#[cfg(test)]
pub(super) fn permission_bits(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o7777
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_mode(path: &Path, mode: u32) {
        std::fs::set_permissions(path, Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn files_are_written_0600_in_0700_directories() {
        let root = tempfile::tempdir().expect("temp dir");
        let dir = root.path().join("state/distributions");
        create_dir(&dir).expect("create");
        assert_eq!(permission_bits(&dir), 0o700);
        assert_eq!(permission_bits(&root.path().join("state")), 0o700);

        let file = dir.join("shop.json");
        write_atomically(&file, b"{}").expect("write");
        assert_eq!(permission_bits(&file), 0o600);
        assert_eq!(std::fs::read(&file).expect("read"), b"{}");
        // A staging file left by a crash, readable by all, and the file
        // it replaces, too.
        std::fs::write(dir.join("shop.tmp"), b"old").expect("write");
        set_mode(&dir.join("shop.tmp"), 0o644);
        set_mode(&file, 0o644);
        write_atomically(&file, b"{\"v\":2}").expect("write again");
        assert_eq!(permission_bits(&file), 0o600);
        assert_eq!(std::fs::read(&file).expect("read"), b"{\"v\":2}");
        assert!(!dir.join("shop.tmp").exists());
    }

    #[test]
    fn looser_modes_are_tightened_and_links_left_alone() {
        let root = tempfile::tempdir().expect("temp dir");
        let state = root.path().join("state");
        let plugins = state.join("plugins");
        std::fs::create_dir_all(&plugins).expect("mkdir");
        let credential = state.join("credential");
        let plugin = plugins.join("abc.wasm");
        let kept = state.join("edge-id");
        std::fs::write(&credential, b"secret").expect("write");
        std::fs::write(&plugin, b"wasm").expect("write");
        std::fs::write(&kept, b"id").expect("write");
        let outside = root.path().join("outside");
        std::fs::write(&outside, b"not ours").expect("write");
        std::os::unix::fs::symlink(&outside, state.join("link")).expect("symlink");
        set_mode(&state, 0o755);
        set_mode(&plugins, 0o770);
        set_mode(&credential, 0o644);
        set_mode(&plugin, 0o664);
        set_mode(&kept, 0o400);
        set_mode(&outside, 0o644);

        let mut changed = tighten(&state).expect("tighten");
        changed.sort();
        assert_eq!(
            changed,
            [
                state.clone(),
                credential.clone(),
                plugins.clone(),
                plugin.clone()
            ]
        );
        assert_eq!(permission_bits(&state), 0o700);
        assert_eq!(permission_bits(&plugins), 0o700);
        assert_eq!(permission_bits(&credential), 0o600);
        assert_eq!(permission_bits(&plugin), 0o600);
        assert_eq!(permission_bits(&kept), 0o400, "stricter modes stay");
        assert_eq!(permission_bits(&outside), 0o644, "links are not followed");
        assert!(tighten(&state).expect("again").is_empty());
    }
}
