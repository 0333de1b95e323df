//! `parapet-edge` as a process: the disk tier across a `kill -9`, reloads by
//! SIGHUP and by file change, graceful SIGTERM, and `--help`.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{get, Origin, Reply};

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A running `parapet-edge`, killed when dropped.
struct Edge {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary and waits for its "serving" log line, which comes
/// once reloads and signals are handled (the port alone opens earlier).
async fn spawn(args: &[&str], addr: SocketAddr) -> Edge {
    let mut child = Command::new(env!("CARGO_BIN_EXE_parapet-edge"))
        .args(args)
        .env("PARAPET_ACCESS_LOG", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (ready, serving) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        // Reads to the end, so the child never blocks on a full pipe.
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("parapet-edge serving") {
                let _ = ready.send(());
            }
        }
    });
    let started =
        tokio::task::spawn_blocking(move || serving.recv_timeout(Duration::from_secs(20)))
            .await
            .unwrap();
    assert!(
        started.is_ok(),
        "parapet-edge did not log that it serves on {addr}"
    );
    Edge { child, addr }
}

fn signal(edge: &Edge, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &edge.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn the_disk_tier_serves_hits_after_kill_9() {
    let origin = Origin::start().await;
    origin.set(
        "/kept",
        Reply::ok(vec![b'k'; 300 << 10], &[("cache-control", "max-age=600")]),
    );
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let cache_dir = dir.path().join("cache");
    let args = [
        "--listen",
        &addr.to_string(),
        "--origin",
        &origin.url(),
        "--cache-dir",
        cache_dir.to_str().unwrap(),
    ]
    .map(str::to_string);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut edge = spawn(&args, addr).await;
    assert_eq!(get(edge.addr, "/kept").await.cache(), "MISS");
    tokio::time::sleep(Duration::from_millis(500)).await; // the disk write lands
    edge.child.kill().unwrap(); // SIGKILL
    edge.child.wait().unwrap();
    let edge = spawn(&args, addr).await;
    let after = get(edge.addr, "/kept").await;
    assert_eq!((after.cache(), after.body.len()), ("HIT", 300 << 10));
    assert_eq!(origin.hits("/kept"), 1);
}

fn write_config(path: &Path, addr: SocketAddr, origin: &str) {
    let text = common::config(origin, "", "", "")
        .replacen(
            "address = \"127.0.0.1:0\"",
            &format!("address = \"{addr}\""),
            1,
        )
        .replace(
            "[admin]\naddress = \"127.0.0.1:0\"\ntoken = \"secret\"\n",
            "",
        );
    std::fs::write(path, text).unwrap();
}

async fn wait_for_text(addr: SocketAddr, path: &str, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if get(addr, path).await.text() == expected {
            return;
        }
        assert!(Instant::now() < deadline, "never served `{expected}`");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn sighup_and_file_changes_reload_and_a_bad_file_keeps_the_running_config() {
    let first = Origin::start().await;
    let second = Origin::start().await;
    let third = Origin::start().await;
    first.set("/who", Reply::ok("first", &[]));
    second.set("/who", Reply::ok("second", &[]));
    third.set("/who", Reply::ok("third", &[]));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.toml");
    let addr = free_addr();
    write_config(&path, addr, &first.url());
    let edge = spawn(&["--config", path.to_str().unwrap()], addr).await;
    assert_eq!(get(addr, "/who").await.text(), "first");
    // A changed file is picked up by the watcher.
    write_config(&path, addr, &second.url());
    wait_for_text(addr, "/who", "second").await;
    // A broken file is refused; the running configuration stays.
    std::fs::write(&path, "[pop]\nid = 7\n").unwrap();
    signal(&edge, "HUP");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(get(addr, "/who").await.text(), "second");
    // SIGHUP after a fix.
    write_config(&path, addr, &third.url());
    signal(&edge, "HUP");
    wait_for_text(addr, "/who", "third").await;
}

#[tokio::test]
async fn sigterm_finishes_requests_in_flight_then_exits() {
    let origin = Origin::start().await;
    origin.set(
        "/slow",
        Reply::ok("finished", &[]).delayed(Duration::from_millis(800)),
    );
    let addr = free_addr();
    let url = origin.url();
    let mut edge = spawn(&["--listen", &addr.to_string(), "--origin", &url], addr).await;
    let in_flight = tokio::spawn(get(addr, "/slow"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    signal(&edge, "TERM");
    let answer = in_flight.await.unwrap();
    assert_eq!((answer.status, answer.text().as_str()), (200, "finished"));
    let status = tokio::task::spawn_blocking(move || {
        let status = edge.child.wait().unwrap();
        (status, edge)
    })
    .await
    .unwrap()
    .0;
    assert!(status.success(), "exit status {status}");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer listening"
    );
}

/// A weak admin token on an address beyond loopback stops the launch,
/// before anything listens; on loopback the same token serves.
#[tokio::test]
async fn a_weak_admin_token_beyond_loopback_is_refused_at_launch() {
    let origin = Origin::start().await;
    let refused = Command::new(env!("CARGO_BIN_EXE_parapet-edge"))
        .args(["--listen", "127.0.0.1:0", "--origin", &origin.url()])
        .args(["--admin", "0.0.0.0:0", "--admin-token", "change-me"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(
            "--admin-token (or $PARAPET_ADMIN_TOKEN) is the example configuration's token \
             `change-me`; the admin listener on 0.0.0.0:0 is reachable beyond loopback"
        ),
        "{stderr}"
    );
    let short = Command::new(env!("CARGO_BIN_EXE_parapet-edge"))
        .args(["--listen", "127.0.0.1:0", "--origin", &origin.url()])
        .args(["--admin", "[::]:0"])
        .env("PARAPET_ADMIN_TOKEN", "0123456789")
        .output()
        .unwrap();
    assert_eq!(short.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&short.stderr).contains("has 10 characters"),
        "{}",
        String::from_utf8_lossy(&short.stderr)
    );

    let addr = free_addr();
    let admin = free_addr();
    let _edge = spawn(
        &[
            "--listen",
            &addr.to_string(),
            "--origin",
            &origin.url(),
            "--admin",
            &admin.to_string(),
            "--admin-token",
            "change-me",
        ],
        addr,
    )
    .await;
}

#[test]
fn help_explains_both_ways_to_run() {
    let output = Command::new(env!("CARGO_BIN_EXE_parapet-edge"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in [
        "--config",
        "--listen",
        "--origin",
        "--admin",
        "--cache-dir",
        "--check-config",
        "--controller",
        "--state-dir",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    let refused = Command::new(env!("CARGO_BIN_EXE_parapet-edge"))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr)
        .contains("--listen ADDR with --origin URL or --controller URL"));
}
