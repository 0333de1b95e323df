//! `parapet-edge --check-config`, run as an operator would.

use std::path::PathBuf;
use std::process::Command;

fn check_config(path: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_parapet-edge"))
        .arg("--check-config")
        .arg(path)
        .output()
        .expect("running parapet-edge");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

#[test]
fn the_example_config_checks_out_with_its_plugins_loaded() {
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/edge.toml");
    let (code, stdout, stderr) = check_config(&example);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("configuration ok (distributions: 1, plugins loaded: 4)"),
        "{stdout}"
    );
}

#[test]
fn a_bad_config_exits_1_naming_file_field_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.toml");
    std::fs::write(
        &path,
        "[pop]\nid = \"x\"\n[[listener]]\naddress = \"127.0.0.1:8080\"\ntls = \"yes\"\n",
    )
    .unwrap();
    let (code, _, stderr) = check_config(&path);
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with(&format!(
            "parapet-edge: {}: listener[0].tls: invalid type",
            path.display()
        )),
        "{stderr}"
    );

    // A plugin that cannot be read is a configuration error too.
    let example = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/edge.toml"),
    )
    .unwrap();
    std::fs::write(&path, example).unwrap();
    std::fs::copy(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/kv.json"),
        dir.path().join("kv.json"),
    )
    .unwrap();
    let (code, _, stderr) = check_config(&path);
    assert_eq!(
        code, 1,
        "relative plugin paths resolve against the config's directory"
    );
    assert!(
        stderr.contains("distribution[0].plugin[0].wasm: cannot read"),
        "{stderr}"
    );
}

#[test]
fn help_explains_the_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_parapet-edge"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--check-config <FILE>"));
}

/// An admin listener beyond loopback with the example's token, or with a
/// short one in its token file, is refused naming the file, field and
/// reason; the example itself (loopback) is fine (above).
#[test]
fn a_weak_admin_token_beyond_loopback_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.toml");
    let example = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/edge.toml"),
    )
    .unwrap();
    let open = example.replacen("127.0.0.1:9901", "0.0.0.0:9901", 1);
    assert_ne!(open, example);
    std::fs::write(&path, &open).unwrap();
    let (code, _, stderr) = check_config(&path);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "parapet-edge: {}: admin.token: is the example configuration's token `change-me`; \
             the admin listener on 0.0.0.0:9901 is reachable beyond loopback",
            path.display()
        )),
        "{stderr}"
    );

    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, "short-secret\n").unwrap();
    std::fs::write(
        &path,
        open.replacen("token = \"change-me\"", "token_file = \"admin-token\"", 1),
    )
    .unwrap();
    let (code, _, stderr) = check_config(&path);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "parapet-edge: {}: admin.token_file: the token in {} has 12 characters; \
             the admin listener on 0.0.0.0:9901 is reachable beyond loopback: its token needs at least 16",
            path.display(),
            token_file.display()
        )),
        "{stderr}"
    );
}
