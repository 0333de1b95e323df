//! `parapet plugin new|build|check`, run as a user would: the real binary,
//! a real compiler, the host's own component check.

use std::path::Path;
use std::process::{Command, Output};

fn parapet(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_parapet"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("running parapet")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Scaffolds a plugin in a temp dir, builds it with `toolchain`, checks it.
fn scaffold_build_check(toolchain: &str) {
    let dir = tempfile::tempdir().unwrap();
    let parent = dir.path().to_str().unwrap();
    // The SDK comes from the binary, written under the data directory, not
    // from the source checkout.
    let data = dir.path().join("data");
    let data_env = [("PARAPET_DATA_DIR", data.to_str().unwrap())];
    let new = parapet(&["plugin", "new", "hello-edge", "--dir", parent], &data_env);
    assert!(new.status.success(), "{}", text(&new.stderr));

    let crate_dir = dir.path().join("hello-edge");
    let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
    let sdk = data.join("sdk").join(env!("CARGO_PKG_VERSION"));
    assert!(
        manifest.contains(&format!(
            "parapet-sdk = {{ path = {:?} }}",
            sdk.to_str().unwrap()
        )),
        "{manifest}"
    );
    assert!(sdk.join("wit/plugin.wit").exists() && sdk.join("macros/src/lib.rs").exists());
    let out = dir.path().join("out");
    let build = parapet(
        &[
            "plugin",
            "build",
            crate_dir.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &[("PARAPET_WASM_TOOLCHAIN", toolchain)],
    );
    let stderr = text(&build.stderr);
    assert!(build.status.success(), "build failed:\n{stderr}");
    let expected = if toolchain == "debian" {
        "with Debian rustc-web"
    } else {
        "with rustup's standard"
    };
    assert!(
        stderr.contains(expected),
        "the build must say which toolchain it used:\n{stderr}"
    );

    let component = out.join("hello-edge.wasm");
    let bytes = std::fs::read(&component).unwrap();
    assert_eq!(
        &bytes[..8],
        b"\0asm\x0d\0\x01\0",
        "a component, not a core module"
    );
    let check = parapet(&["plugin", "check", component.to_str().unwrap()], &[]);
    assert!(check.status.success(), "{}", text(&check.stderr));
    assert!(text(&check.stdout).contains("a valid parapet:plugin@0.1.1 component"));

    // The scaffold's own fixtures pass; a wrong expectation fails, named.
    let env = [("PARAPET_WASM_TOOLCHAIN", toolchain)];
    let test = parapet(&["plugin", "test", crate_dir.to_str().unwrap()], &env);
    let stdout = text(&test.stdout);
    assert!(test.status.success(), "{stdout}{}", text(&test.stderr));
    assert!(
        stdout.contains("3 passed, 0 failed, in 1 plugins"),
        "{stdout}"
    );
    let fixtures = crate_dir.join("fixtures.toml");
    let edited = std::fs::read_to_string(&fixtures)
        .unwrap()
        .replace(r#"body = "hi there""#, r#"body = "bye""#);
    std::fs::write(&fixtures, edited).unwrap();
    let test = parapet(&["plugin", "test", crate_dir.to_str().unwrap()], &env);
    let stdout = text(&test.stdout);
    assert!(!test.status.success(), "{stdout}");
    assert!(
        stdout
            .contains(r#"FAIL  answers /hello itself: expected body "bye", got Some("hi there")"#),
        "{stdout}"
    );
    assert!(stdout.contains("2 passed, 1 failed"), "{stdout}");
}

/// The example plugins' fixtures pass (`parapet plugin test examples`).
#[test]
fn example_fixtures_pass() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let test = parapet(&["plugin", "test", examples.to_str().unwrap()], &[]);
    let stdout = text(&test.stdout);
    assert!(test.status.success(), "{stdout}{}", text(&test.stderr));
    for plugin in [
        "waf: 5 cases",
        "header-filter: 4 cases",
        "rewrite: 4 cases",
        "html-inject: 6 cases",
    ] {
        assert!(stdout.contains(plugin), "{stdout}");
    }
    assert!(!stdout.contains("FAIL"), "{stdout}");
}

#[test]
fn scaffolded_plugin_builds_with_the_standard_target() {
    scaffold_build_check("standard");
}

#[test]
fn scaffolded_plugin_builds_with_the_debian_fallback() {
    assert!(
        Path::new("/usr/lib/rustlib/src/rust").exists(),
        "the Debian fallback toolchain is not installed: run `make toolchain-fallback`"
    );
    scaffold_build_check("debian");
}

#[test]
fn help_describes_the_commands() {
    let help = parapet(&["--help"], &[]);
    assert!(help.status.success());
    assert!(text(&help.stdout).contains("plugin"));
    let build = parapet(&["plugin", "build", "--help"], &[]);
    assert!(text(&build.stdout).contains("PARAPET_WASM_TOOLCHAIN"));
}

#[test]
fn bad_input_gets_clear_errors_and_exit_code_1() {
    let dir = tempfile::tempdir().unwrap();
    let parent = dir.path().to_str().unwrap();

    let bad_name = parapet(&["plugin", "new", "Bad Name", "--dir", parent], &[]);
    assert_eq!(bad_name.status.code(), Some(1));
    assert!(
        text(&bad_name.stderr).contains("must start with a lower-case letter"),
        "{}",
        text(&bad_name.stderr)
    );

    let no_crate = parapet(&["plugin", "build", parent], &[]);
    assert_eq!(no_crate.status.code(), Some(1));
    assert!(
        text(&no_crate.stderr).contains("has no Cargo.toml"),
        "{}",
        text(&no_crate.stderr)
    );

    let bad_toolchain = dir.path().join("x");
    std::fs::create_dir(&bad_toolchain).unwrap();
    std::fs::write(bad_toolchain.join("Cargo.toml"), "[package]\nname='x'\n").unwrap();
    let forced = parapet(
        &["plugin", "build", bad_toolchain.to_str().unwrap()],
        &[("PARAPET_WASM_TOOLCHAIN", "gcc")],
    );
    assert!(text(&forced.stderr).contains("PARAPET_WASM_TOOLCHAIN must be `standard` or `debian`"));

    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let check = parapet(&["plugin", "check", core.to_str().unwrap()], &[]);
    assert_eq!(check.status.code(), Some(1));
    assert!(
        text(&check.stderr).contains("core WebAssembly module, not a component"),
        "{}",
        text(&check.stderr)
    );
}
