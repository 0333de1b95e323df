//! Finding a compiler that can build `wasm32-unknown-unknown` plugins: the
//! standard rustup target first, then Debian's `rustc-web` with the standard
//! library built from source.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Result};

/// The target plugins compile to.
pub const TARGET: &str = "wasm32-unknown-unknown";

const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const DEBIAN_RUST_SRC: &str = "/usr/lib/rustlib/src/rust";
const DEBIAN_LLVM_BIN: &str = "/usr/lib/llvm-19/bin";

/// A way to compile plugins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Toolchain {
    /// The rustup toolchain with the `wasm32-unknown-unknown` target.
    Standard,
    /// Debian's `rustc-web` + `rust-web-src` + `lld-19`, with `-Zbuild-std`.
    DebianBuildStd,
}

impl Toolchain {
    /// Picks a toolchain: the standard target when installed or installable
    /// with `rustup target add`, else the Debian fallback. Set
    /// `PARAPET_WASM_TOOLCHAIN=standard|debian` to force one.
    pub fn detect() -> Result<Self> {
        match std::env::var("PARAPET_WASM_TOOLCHAIN").as_deref() {
            Ok("standard") => return Ok(Toolchain::Standard),
            Ok("debian") => return debian_ready().map(|()| Toolchain::DebianBuildStd),
            Ok(other) if !other.is_empty() => {
                bail!("PARAPET_WASM_TOOLCHAIN must be `standard` or `debian`, not `{other}`")
            }
            _ => {}
        }
        if standard_installed() || rustup_add_target() {
            return Ok(Toolchain::Standard);
        }
        match debian_ready() {
            Ok(()) => Ok(Toolchain::DebianBuildStd),
            Err(why) => bail!(
                "no compiler for {TARGET} plugins.\n  \
                 Standard: `rustup target add {TARGET}` failed or rustup is missing.\n  \
                 Fallback: {why}; install it with `apt-get install rustc-web cargo-web rust-web-src lld-19`."
            ),
        }
    }

    /// What to tell the user about this toolchain.
    pub fn describe(&self) -> &'static str {
        match self {
            Toolchain::Standard => "rustup's standard wasm32-unknown-unknown target",
            Toolchain::DebianBuildStd => "Debian rustc-web with -Zbuild-std (fallback)",
        }
    }

    /// A `cargo build` for the plugin crate or workspace in `dir`, its
    /// artifacts under `target_dir`.
    pub fn cargo_build(&self, dir: &Path, target_dir: &Path) -> Command {
        let mut cmd = match self {
            Toolchain::Standard => Command::new("cargo"),
            Toolchain::DebianBuildStd => Command::new(DEBIAN_CARGO),
        };
        cmd.current_dir(dir)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET")
            .env("CARGO_TARGET_DIR", target_dir)
            .args([
                "build",
                "--release",
                "--target",
                TARGET,
                "--message-format=json-render-diagnostics",
            ]);
        if *self == Toolchain::DebianBuildStd {
            let path = std::env::var("PATH").unwrap_or_default();
            cmd.env("PATH", format!("{DEBIAN_LLVM_BIN}:{path}"))
                .env("RUSTC", DEBIAN_RUSTC)
                .env_remove("RUSTUP_TOOLCHAIN")
                .env("RUSTC_BOOTSTRAP", "1")
                .env("RUSTFLAGS", "-C linker=wasm-ld")
                .arg("-Zbuild-std=std,panic_abort");
        }
        cmd
    }

    /// The sub-directory of a plugin's `target/` this toolchain builds in
    /// (the two compilers must not share one).
    pub fn target_subdir(&self) -> &'static str {
        match self {
            Toolchain::Standard => "parapet-standard",
            Toolchain::DebianBuildStd => "parapet-debian",
        }
    }
}

fn standard_installed() -> bool {
    Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .is_ok_and(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l.trim() == TARGET)
        })
}

fn rustup_add_target() -> bool {
    eprintln!("parapet: installing the {TARGET} target with rustup...");
    Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .is_ok_and(|s| s.success())
}

fn debian_ready() -> Result<()> {
    let needed = [
        (PathBuf::from(DEBIAN_RUSTC), "rustc-web"),
        (PathBuf::from(DEBIAN_CARGO), "cargo-web"),
        (PathBuf::from(DEBIAN_RUST_SRC), "rust-web-src"),
        (Path::new(DEBIAN_LLVM_BIN).join("wasm-ld"), "lld-19"),
    ];
    let missing: Vec<String> = needed
        .iter()
        .filter(|(p, _)| !p.exists())
        .map(|(p, pkg)| format!("{} (package {pkg})", p.display()))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        bail!("missing {}", missing.join(", "))
    }
}
