//! `parapet plugin serve`, run as a user would: a scaffolded plugin on a
//! local edge in front of a real origin (Python's `http.server`), requests
//! through it with the plugin's receipts printed, a source change rebuilt
//! and served without a restart, and a broken build that keeps the last
//! good one serving.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// A child process killed when the test ends, passed or not.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The lines `child` writes on stdout and stderr, as they come.
fn lines(child: &mut Child) -> Receiver<String> {
    let (send, receive) = mpsc::channel();
    let streams: [Box<dyn Read + Send>; 2] = [
        Box::new(child.stdout.take().unwrap()),
        Box::new(child.stderr.take().unwrap()),
    ];
    for stream in streams {
        let send = send.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    return;
                }
            }
        });
    }
    receive
}

/// Waits up to `within` for a line containing every one of `parts`;
/// returns it, and fails the test with every line seen otherwise.
fn wait_for(lines: &Receiver<String>, parts: &[&str], within: Duration) -> String {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) if parts.iter().all(|p| line.contains(p)) => return line,
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    panic!(
        "no line with {parts:?} within {within:?}; saw:\n{}",
        seen.join("\n")
    );
}

fn get(url: &str) -> reqwest::blocking::Response {
    reqwest::blocking::Client::new()
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// Edits `file`, replacing `from` (which must be there) with `to`.
fn edit(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains(from), "{from:?} not in {}", file.display());
    std::fs::write(file, text.replace(from, to)).unwrap();
}

#[test]
fn serve_runs_the_plugin_prints_receipts_and_rebuilds_on_change() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let new = Command::new(env!("CARGO_BIN_EXE_parapet"))
        .args(["plugin", "new", "hello-edge", "--dir"])
        .arg(dir.path())
        .env("PARAPET_DATA_DIR", &data)
        .output()
        .unwrap();
    assert!(
        new.status.success(),
        "{}",
        String::from_utf8_lossy(&new.stderr)
    );
    let crate_dir = dir.path().join("hello-edge");

    let site = dir.path().join("site");
    std::fs::create_dir(&site).unwrap();
    std::fs::write(site.join("index.html"), "<h1>from the origin</h1>").unwrap();
    let mut origin = Process(
        Command::new("python3")
            .args([
                "-u",
                "-m",
                "http.server",
                "0",
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(&site)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 (the test origin)"),
    );
    let origin_lines = lines(&mut origin.0);
    let serving = wait_for(&origin_lines, &["Serving HTTP on"], Duration::from_secs(20));
    let port = serving
        .split("port ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the origin's port");

    let mut serve = Process(
        Command::new(env!("CARGO_BIN_EXE_parapet"))
            .args(["plugin", "serve"])
            .arg(&crate_dir)
            .args(["--origin", &format!("http://127.0.0.1:{port}")])
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let output = lines(&mut serve.0);
    let ready = wait_for(&output, &["serving on http://"], Duration::from_secs(600));
    let edge = ready
        .split("serving on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the edge's address")
        .to_string();

    // The plugin answers /hello with the greeting of its fixtures' config.
    let hello = get(&format!("{edge}/hello"));
    assert_eq!(hello.status(), 200);
    assert_eq!(hello.text().unwrap(), "hi there");
    // Anything else goes to the origin and comes back marked.
    let page = get(&format!("{edge}/index.html"));
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["x-plugin"], "hello-edge");
    assert_eq!(page.text().unwrap(), "<h1>from the origin</h1>");
    let receipt = wait_for(
        &output,
        &[
            "plugin receipt",
            "hello-edge",
            "on-viewer-request",
            "on-viewer-response",
        ],
        Duration::from_secs(10),
    );
    assert!(receipt.contains("peak_memory_bytes="), "{receipt}");
    assert!(receipt.contains("host_calls="), "{receipt}");
    wait_for(
        &output,
        &["parapet::access", "/index.html", "200"],
        Duration::from_secs(10),
    );

    // A change to the source is rebuilt and served without a restart.
    let lib = crate_dir.join("src/lib.rs");
    edit(
        &lib,
        r#"set_header("x-plugin", "hello-edge")"#,
        r#"set_header("x-plugin", "rebuilt")"#,
    );
    wait_for(&output, &["reloaded hello-edge"], Duration::from_secs(600));
    let page = get(&format!("{edge}/index.html"));
    assert_eq!(page.headers()["x-plugin"], "rebuilt");

    // A change that does not build keeps the last good build serving.
    edit(
        &lib,
        "export_plugin!(MyPlugin);",
        "export_plugin!(MyPlugin) this is not Rust",
    );
    wait_for(
        &output,
        &["build failed, still serving"],
        Duration::from_secs(600),
    );
    let page = get(&format!("{edge}/index.html"));
    assert_eq!(page.headers()["x-plugin"], "rebuilt");
}

#[test]
fn serve_refuses_an_origin_that_is_not_a_url() {
    let out = Command::new(env!("CARGO_BIN_EXE_parapet"))
        .args(["plugin", "serve", ".", "--origin", "localhost:9000"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--origin must be an http:// or https:// URL, not `localhost:9000`"),
        "{stderr}"
    );
}
