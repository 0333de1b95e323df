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
    /// `:memory:`, or a directory that survives restarts.
    storage: String,
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

    /// Starts the server again on the same port and storage.
    pub fn restart(&mut self) {
        self.kill();
        *self = spawn_on(self.port, &self.storage).expect("SecantusDB restarts");
    }
}

impl Drop for MongoServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/venv-test/bin/secantusd-py")
}

fn spawn_on(port: u16, storage: &str) -> Result<MongoServer, String> {
    let mut command = Command::new(binary());
    command.args([
        "--host",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--storage-path",
        storage,
    ]);
    if storage != ":memory:" {
        // Acknowledged writes survive a kill, as MongoDB's journal makes them.
        command.arg("--sync-on-commit");
    }
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", binary().display()))?;
    let server = MongoServer {
        child,
        port,
        storage: storage.to_string(),
    };
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

/// Starts an in-memory server, or says loudly why none can run here and
/// returns `None` (the caller skips its MongoDB half).
pub fn start() -> Option<MongoServer> {
    start_with(":memory:")
}

/// Starts a server keeping its data in `storage` (a directory, so that it
/// survives [`MongoServer::restart`]), or `None` as [`start`] does.
pub fn start_with(storage: &str) -> Option<MongoServer> {
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
    match spawn_on(port, storage) {
        Ok(server) => Some(server),
        Err(e) => {
            eprintln!("SKIPPED (MongoDB half): {e}");
            None
        }
    }
}
