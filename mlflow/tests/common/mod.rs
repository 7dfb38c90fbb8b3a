//! Test harness: one real `mlflow server` per test binary, on 127.0.0.1 and a free port.
//!
//! The server is found through `AURALGUARD_MLFLOW_BIN` or `<repo>/.venv/mlflow/bin/mlflow`
//! (installed by `scripts/install-mlflow-test-deps.sh`). Without it a test prints `SKIP: ...` and
//! returns, unless `AURALGUARD_NO_SKIP=1`, when it panics (CI must not pass without the service).
//!
//! MLflow 3 starts worker processes of its own, so the server is started by a small shell
//! watchdog that leads a new process group: the watchdog starts `mlflow server`, then polls the
//! test process; when the test binary exits (statics are never dropped, so no destructor can be
//! relied on) the watchdog terminates the whole group, waits 3 s, removes the server's scratch
//! folder and kills whatever is left, itself included.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mlflow_client::{ClientConfig, MlflowClient, RetryPolicy};

/// How long the server may take to answer `/health` (it imports a lot of Python on 2 cores).
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// A running MLflow server.
pub struct MlflowServer {
    /// `http://127.0.0.1:<port>`.
    pub uri: String,
    /// Holds the SQLite database, the artifact store and the server log.
    pub dir: PathBuf,
    watchdog: Child,
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        kill_group(self.watchdog.id());
        let _ = self.watchdog.wait();
    }
}

impl MlflowServer {
    /// A client of this server with short time-outs and quick retries.
    pub fn client(&self) -> MlflowClient {
        let config = ClientConfig::new(&self.uri)
            .unwrap()
            .with_timeout(Duration::from_secs(60))
            .with_connect_timeout(Duration::from_secs(5))
            .with_retry(RetryPolicy {
                max_retries: 2,
                initial_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(1),
            });
        MlflowClient::new(config).unwrap()
    }

    /// The last lines of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.dir.join("server.log"))
    }
}

/// The shared server of this test binary, started on first use; `None` (after printing `SKIP`)
/// when MLflow is not installed and skipping is allowed.
pub fn server(test: &str) -> Option<&'static MlflowServer> {
    static SERVER: OnceLock<Result<MlflowServer, String>> = OnceLock::new();
    match SERVER.get_or_init(start) {
        Ok(server) => Some(server),
        Err(why) => {
            let no_skip = std::env::var("AURALGUARD_NO_SKIP").is_ok_and(|v| v == "1");
            if no_skip {
                panic!("{test}: MLflow is required (AURALGUARD_NO_SKIP=1): {why}");
            }
            println!("SKIP: {test}: {why}");
            None
        }
    }
}

/// The repository root (this crate's parent folder).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn mlflow_binary() -> Result<PathBuf, String> {
    let install = "run `bash scripts/install-mlflow-test-deps.sh` from the repository root, or set AURALGUARD_MLFLOW_BIN";
    if let Ok(bin) = std::env::var("AURALGUARD_MLFLOW_BIN") {
        let bin = PathBuf::from(bin);
        return if bin.is_file() {
            Ok(bin)
        } else {
            Err(format!(
                "AURALGUARD_MLFLOW_BIN={} does not exist; {install}",
                bin.display()
            ))
        };
    }
    let bin = repo_root().join(".venv/mlflow/bin/mlflow");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "MLflow is not installed ({} is missing); {install}",
            bin.display()
        ))
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start() -> Result<MlflowServer, String> {
    let bin = mlflow_binary()?;
    let dir = std::env::temp_dir().join(format!(
        "mlflow-client-test-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(dir.join("artifacts"))
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let port = free_port();
    let log = std::fs::File::create(dir.join("server.log")).map_err(|e| e.to_string())?;
    let log_err = log.try_clone().map_err(|e| e.to_string())?;

    // $1 = pid to watch, $2 = scratch folder to remove at the end, then the server command. The
    // TERM trap is set after the server starts, so the server does not inherit an ignored TERM.
    let script = r#"
watched=$1; scratch=$2; shift 2
"$@" &
server=$!
trap '' TERM
while kill -0 "$watched" 2>/dev/null && kill -0 "$server" 2>/dev/null; do sleep 0.5; done
kill -TERM -$$ 2>/dev/null
sleep 3
rm -rf "$scratch"
kill -KILL -$$ 2>/dev/null
"#;
    let watchdog = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("mlflow-watchdog")
        .arg(std::process::id().to_string())
        .arg(&dir)
        .arg(&bin)
        .args([
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--workers",
            "1",
        ])
        .arg("--backend-store-uri")
        .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
        .arg("--artifacts-destination")
        .arg(dir.join("artifacts"))
        // Background job runners are not needed by these tests and cost CPU on small machines.
        .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
        .env_remove("MLFLOW_TRACKING_URI")
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;

    let mut server = MlflowServer {
        uri: format!("http://127.0.0.1:{port}"),
        dir,
        watchdog,
    };
    let started = Instant::now();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    loop {
        if health_ok(addr) {
            eprintln!(
                "mlflow server up at {} after {:.1?}",
                server.uri,
                started.elapsed()
            );
            return Ok(server);
        }
        if let Ok(Some(status)) = server.watchdog.try_wait() {
            return Err(format!(
                "mlflow server exited ({status}) before answering /health:\n{}",
                server.log_tail()
            ));
        }
        if started.elapsed() > START_TIMEOUT {
            let tail = server.log_tail();
            drop(server);
            return Err(format!(
                "mlflow server did not answer /health within {START_TIMEOUT:?}:\n{tail}"
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `GET /health` answered `OK` (plain std networking: tests call this inside a tokio runtime).
fn health_ok(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    (response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200"))
        && response.trim_end().ends_with("OK")
}

fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", "--", &format!("-{pgid}")])
        .status();
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A name unique within this test binary run, for experiments and models.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}
