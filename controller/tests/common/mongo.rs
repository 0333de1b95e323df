//! A real MongoDB-wire server for tests: SecantusDB (`secantusd-py`, from
//! the `make testdata` venv), started on a free loopback port, in memory,
//! and stopped when dropped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server.
pub struct MongoServer {
    child: Child,
    pub port: u16,
}

impl MongoServer {
    /// The connection string for database `db`.
    pub fn uri(&self, db: &str) -> String {
        format!(
            "mongodb://127.0.0.1:{}/{db}?directConnection=true",
            self.port
        )
    }

    /// Stops the server (as a crash would: no clean shutdown).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a fresh server on the same port.
    pub fn restart(&mut self) {
        self.kill();
        *self = spawn_on(self.port).expect("SecantusDB restarts");
    }
}

impl Drop for MongoServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/venv-test/bin/secantusd-py")
}

fn spawn_on(port: u16) -> Result<MongoServer, String> {
    let child = Command::new(binary())
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--storage-path",
            ":memory:",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", binary().display()))?;
    let server = MongoServer { child, port };
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(format!(
                "SecantusDB did not listen on port {port} within 15 s"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(server)
}

/// Starts a server, or says loudly why none can run here and returns
/// `None` (the caller skips its MongoDB half).
pub fn start() -> Option<MongoServer> {
    if !binary().exists() {
        eprintln!(
            "SKIPPED (MongoDB half): {} is missing; run `make testdata`",
            binary().display()
        );
        return None;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    match spawn_on(port) {
        Ok(server) => Some(server),
        Err(e) => {
            eprintln!("SKIPPED (MongoDB half): {e}");
            None
        }
    }
}
