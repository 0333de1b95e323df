//! The `parapet-dns` binary as an operator runs it: `--help`, `--check`,
//! reloads on file changes and SIGHUP, the query log, SIGTERM; and `dig`
//! as a second, independent DNS client.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::rr::RecordType;

const BINARY: &str = env!("CARGO_BIN_EXE_parapet-dns");
const SHOP: &str = "shop.cdn.example.net.";

/// A running `parapet-dns` and the lines it has logged so far.
struct Process {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    address: SocketAddr,
}

impl Process {
    fn start(dir: &Path, extra: &[&str]) -> Process {
        let mut child = Command::new(BINARY)
            .args(["--listen", "127.0.0.1:0", "--zone", ZONE, "--workers", "1"])
            .arg("--pops")
            .arg(dir.join("pops.toml"))
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("parapet-dns starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("stdout");
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().expect("lines").push(line);
            }
        });
        let mut process = Process {
            child,
            lines,
            address: "127.0.0.1:0".parse().expect("address"),
        };
        let line = process.wait_for_line("parapet-dns answering");
        let value: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
        process.address = value["address"]
            .as_str()
            .expect("address field")
            .parse()
            .expect("address");
        process
    }

    /// Waits up to 10 s for a logged line containing `needle`.
    fn wait_for_line(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(line) = self
                .lines
                .lock()
                .expect("lines")
                .iter()
                .find(|l| l.contains(needle))
            {
                return line.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {needle:?}: {:?}",
                self.lines.lock().expect("lines")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asks until the answer's addresses are `expected` (reloads are
/// asynchronous), for up to 10 s.
async fn await_answer(address: SocketAddr, expected: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = ask(
            address,
            Transport::Udp,
            SHOP,
            RecordType::A,
            Some(TOKYO_SUBNET),
        )
        .await;
        if addresses(&answer) == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still {:?}, expected {expected:?}",
            addresses(&answer)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Points the symlink `link` at `target`, replacing it in one rename as
/// database updaters do.
fn swap_symlink(link: &Path, target: &Path) {
    let staging = link.with_extension("new");
    let _ = std::fs::remove_file(&staging);
    std::os::unix::fs::symlink(target, &staging).expect("symlink");
    std::fs::rename(&staging, link).expect("rename");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_reload_without_restart_and_bad_ones_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("pops.toml"), POPS).expect("pops");
    std::fs::write(dir.path().join("dns.toml"), "default_pops = [\"sfo\"]\n").expect("settings");
    let geoip = dir.path().join("geo.mmdb");
    swap_symlink(&geoip, &testdata("geo-test.mmdb"));
    let config = dir.path().join("dns.toml");
    let process = Process::start(
        dir.path(),
        &[
            "--config",
            config.to_str().expect("utf-8"),
            "--geoip",
            geoip.to_str().expect("utf-8"),
            "--query-log",
        ],
    );

    // The small database does not know Tokyo's subnet: the default PoP.
    await_answer(process.address, &["192.0.2.4"]).await;
    // A new database file is picked up.
    swap_symlink(&geoip, &dbip());
    await_answer(process.address, &["192.0.2.1"]).await;
    process.wait_for_line("\"what\":\"geoip\"");
    // Tokyo marked down in the PoPs file: the next nearest, San Francisco.
    let pops = POPS.replacen(
        "ipv6 = [\"2001:db8::1\"]",
        "ipv6 = [\"2001:db8::1\"]\nenabled = false",
        1,
    );
    std::fs::write(dir.path().join("pops.toml"), pops).expect("pops");
    await_answer(process.address, &["192.0.2.4"]).await;
    // A broken file is refused, with the reason, and the running data stays.
    std::fs::write(
        dir.path().join("pops.toml"),
        "[[pop]]\nid = \"tyo\"\nlat = 135.0\n",
    )
    .expect("pops");
    let refused = process.wait_for_line("reload refused");
    assert!(refused.contains("pop[0]"), "{refused}");
    await_answer(process.address, &["192.0.2.4"]).await;
    // Fixed, then reloaded by SIGHUP too.
    std::fs::write(dir.path().join("pops.toml"), POPS).expect("pops");
    await_answer(process.address, &["192.0.2.1"]).await;
    process.signal("HUP");
    process.wait_for_line("\"cause\":\"SIGHUP\"");

    // The query log: one JSON line per query.
    let logged = process.wait_for_line("\"pops\":\"tyo\"");
    let value: serde_json::Value = serde_json::from_str(&logged).expect("JSON");
    assert_eq!(value["name"], "shop.cdn.example.net.");
    assert_eq!(value["qtype"], "A");
    assert_eq!(value["rcode"], "NOERROR");
    assert_eq!(value["ecs"], "126.0.0.0/24");
    assert_eq!(value["scope"], 23);

    // SIGTERM: a clean exit.
    let mut process = process;
    process.signal("TERM");
    let status = process.child.wait().expect("exits");
    assert!(status.success(), "{status}");
}

#[test]
fn check_names_file_field_and_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pops = dir.path().join("pops.toml");
    std::fs::write(&pops, POPS).expect("pops");
    let run = |extra: &[&str]| {
        Command::new(BINARY)
            .args(["--check", "--zone", ZONE, "--pops"])
            .arg(&pops)
            .args(extra)
            .output()
            .expect("runs")
    };
    let ok = run(&["--geoip", dbip().to_str().expect("utf-8")]);
    assert!(ok.status.success(), "{ok:?}");
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout),
        "cdn.example.net.: ok (4 PoPs, GeoIP DBIP-City-Lite)\n"
    );

    let settings = dir.path().join("dns.toml");
    std::fs::write(&settings, "default_pops = [\"lhr\"]\n").expect("settings");
    let bad = run(&["--config", settings.to_str().expect("utf-8")]);
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("dns.toml: default_pops[0]: no PoP `lhr` in the PoPs file"),
        "{stderr}"
    );

    let not_a_database = dir.path().join("empty.mmdb");
    std::fs::write(&not_a_database, "").expect("file");
    let bad = run(&["--geoip", not_a_database.to_str().expect("utf-8")]);
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("GeoIP database") && stderr.contains("empty.mmdb"),
        "{stderr}"
    );
}

#[test]
fn help_documents_the_command_line() {
    let output = Command::new(BINARY).arg("--help").output().expect("runs");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for option in [
        "--listen",
        "--zone",
        "--pops",
        "--geoip",
        "--config",
        "--metrics",
        "--query-log",
        "examples/pops.toml",
    ] {
        assert!(
            help.contains(option),
            "{option} missing from --help:\n{help}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_sees_the_geo_answer_and_the_ecs_scope() {
    if Command::new("dig").arg("-v").output().is_err() {
        eprintln!("SKIPPED: dig is not installed (apt-get install dnsutils); .ci/run installs it");
        return;
    }
    let dns = TestDns::start(POPS, None, Some(dbip())).await;
    let dig = |args: Vec<String>| {
        let output = Command::new("dig").args(args).output().expect("dig runs");
        String::from_utf8_lossy(&output.stdout).to_string()
    };
    let server = format!("@{}", dns.address.ip());
    let port = dns.address.port().to_string();
    let base = |extra: &[&str]| {
        let mut args = vec![
            server.clone(),
            "-p".into(),
            port.clone(),
            "+norecurse".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let text = tokio::task::spawn_blocking({
        let args = base(&["shop.cdn.example.net", "A", "+subnet=212.227.0.0/24"]);
        move || dig(args)
    })
    .await
    .expect("dig");
    assert!(text.contains("status: NOERROR"), "{text}");
    assert!(text.contains("flags: qr aa"), "{text}");
    assert!(text.contains("CLIENT-SUBNET: 212.227.0.0/24/21"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("shop.cdn.example.net.") && l.ends_with("192.0.2.2")),
        "{text}"
    );

    let text = tokio::task::spawn_blocking({
        let args = base(&["+tcp", "nothing.here.cdn.example.net", "A"]);
        move || dig(args)
    })
    .await
    .expect("dig");
    assert!(text.contains("status: NXDOMAIN"), "{text}");
    assert!(text.contains("SOA"), "{text}");
}

#[test]
fn the_documented_examples_are_valid() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let output = Command::new(BINARY)
        .args(["--check", "--zone", ZONE])
        .arg("--pops")
        .arg(examples.join("pops.toml"))
        .arg("--config")
        .arg(examples.join("dns.toml"))
        .output()
        .expect("runs");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "cdn.example.net.: ok (4 PoPs, no GeoIP database)\n"
    );
}
