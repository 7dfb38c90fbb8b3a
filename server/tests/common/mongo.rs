//! A real MongoDB-wire server for the tests: SecantusDB (PyPI `secantusdb`, WiredTiger storage),
//! installed into `.venv/mongo` by `scripts/install-mongo-test-deps.sh`.
//!
//! It persists to a folder, so a test can kill it (SIGKILL, no clean shutdown) and start it again
//! on the same data to play a database outage.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The server binary: `AURALGUARD_SECANTUSD` or the project venv's; `None` (after reporting the
/// skip) when neither exists.
pub fn binary() -> Option<PathBuf> {
    let path = std::env::var_os("AURALGUARD_SECANTUSD")
        .map(PathBuf::from)
        .unwrap_or_else(|| super::repo_root().join(".venv/mongo/bin/secantusd-py"));
    if path.exists() {
        return Some(path);
    }
    super::skip(&format!(
        "no MongoDB-wire server at {} (run scripts/install-mongo-test-deps.sh, or set \
         AURALGUARD_SECANTUSD)",
        path.display()
    ));
    None
}

/// A running database on 127.0.0.1; killed on drop.
pub struct MongoServer {
    child: Child,
    binary: PathBuf,
    /// Its port.
    pub port: u16,
    data: PathBuf,
    flags: Vec<String>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn spawn(binary: &Path, port: u16, data: &Path, flags: &[String]) -> Child {
    let child = Command::new(binary)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .arg("--storage-path")
        .arg(data)
        .args(flags)
        .args(["--log-level", "WARNING"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start secantusd-py");
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "MongoDB-wire server did not listen on {port} within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

impl MongoServer {
    /// Starts a server storing its data in `data` that syncs every commit to disk, whatever
    /// the client's write concern.
    pub fn start(binary: &Path, data: &Path) -> Self {
        Self::start_flags(binary, data, &["--sync-on-commit"])
    }

    /// Starts a server with these extra flags (none: like mongod's defaults, a commit reaches
    /// the disk only when the client's write concern asks for the journal, `j: true`).
    pub fn start_flags(binary: &Path, data: &Path, flags: &[&str]) -> Self {
        let port = free_port();
        let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        Self {
            child: spawn(binary, port, data, &flags),
            binary: binary.to_path_buf(),
            port,
            data: data.to_path_buf(),
            flags,
        }
    }

    /// `mongodb://127.0.0.1:PORT/DB`.
    pub fn uri(&self, db: &str) -> String {
        format!("mongodb://127.0.0.1:{}/{db}", self.port)
    }

    /// SIGKILL (the server is one process): an outage, not a shutdown.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGSTOP: the process stays up and its connections open, but nothing answers — a frozen
    /// VM, a stop-the-world pause, a full disk the server waits on.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`MongoServer::freeze`].
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {sig} failed");
    }

    /// Starts it again on the same port and data, with the same flags.
    pub fn restart(&mut self) {
        self.child = spawn(&self.binary, self.port, &self.data, &self.flags);
    }

    /// Starts it again on the same port and data with other flags (e.g. `--auth` once users
    /// exist).
    pub fn restart_with(&mut self, flags: &[&str]) {
        self.kill();
        self.flags = flags.iter().map(|f| f.to_string()).collect();
        self.restart();
    }
}

impl Drop for MongoServer {
    fn drop(&mut self) {
        self.kill();
    }
}
