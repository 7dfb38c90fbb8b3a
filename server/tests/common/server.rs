//! The real `auralguard serve` binary on a free loopback port, for the HTTP-level tests.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;

/// A running `auralguard serve` child process; killed on drop.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts the server on the bundled model with a throwaway SQLite log, plus `extra` flags.
    pub fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dir.path().join("predictions.db");
        let mut args = vec!["--store-path", store.to_str().expect("utf-8 temp path")];
        args.extend_from_slice(extra);
        let mut server = Self::start_with(&args);
        server._dir = Some(dir);
        server
    }

    /// Starts the server on the bundled model with a throwaway SQLite log, configured through
    /// environment variables only: a build that predates a setting ignores the variable where it
    /// would refuse an unknown flag, so the same test can run against an older binary
    /// (`AURALGUARD_TEST_BINARY`) and fail for the right reason.
    pub fn start_env(env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dir.path().join("predictions.db");
        let model = super::repo_root().join("models/seed-random");
        let env: Vec<(&str, &std::ffi::OsStr)> = env
            .iter()
            .map(|(k, v)| (*k, std::ffi::OsStr::new(v)))
            .chain([("AURALGUARD_STORE_PATH", store.as_os_str())])
            .collect();
        let mut server = Self::start_model_env(model.to_str().expect("utf-8 repo path"), &[], &env);
        server._dir = Some(dir);
        server
    }

    /// Starts the server on the bundled model with exactly these extra flags, waits until ready.
    pub fn start_with(extra: &[&str]) -> Self {
        let model = super::repo_root().join("models/seed-random");
        Self::start_model(model.to_str().expect("utf-8 repo path"), extra)
    }

    /// Starts the server on `model` (a folder or a `models:/` URI) with exactly these extra
    /// flags, waits until ready.
    pub fn start_model(model: &str, extra: &[&str]) -> Self {
        Self::start_model_env(model, extra, &[])
    }

    /// [`Server::start_model`] with extra environment variables (e.g. the encoder store of a
    /// Whisper package).
    pub fn start_model_env(model: &str, extra: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Self {
        let mut child = Command::new(super::auralguard_binary())
            .current_dir(super::repo_root())
            .args([
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--model",
                model,
            ])
            .args(extra)
            .env_remove("AURALGUARD_MODEL")
            .env_remove("MONGODB_URI")
            .env_remove("MLFLOW_TRACKING_URI")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start auralguard serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read");
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_string();
        let server = Self {
            child,
            base,
            _dir: None,
        };
        server.wait_ready();
        server
    }

    /// Limits the size of any file the server writes from now on (`RLIMIT_FSIZE`), in bytes:
    /// a write past it fails part-way with EFBIG, as one on a full disk fails with ENOSPC.
    /// Start the server after [`ignore_file_size_signal`], or the first such write kills it.
    pub fn limit_file_size(&self, bytes: u64) {
        let lim = libc::rlimit {
            rlim_cur: bytes,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: prlimit reads `lim` and writes nothing back (null old-limit pointer).
        let rc = unsafe {
            libc::prlimit(
                self.pid() as libc::pid_t,
                libc::RLIMIT_FSIZE,
                &lim,
                std::ptr::null_mut(),
            )
        };
        assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    }

    /// The server's process id (for `/proc` measurements).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Resets the kernel's peak-RSS mark (`VmHWM`) so [`Server::peak_rss_mb`] measures from now.
    pub fn reset_peak_rss(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5").expect("clear_refs");
    }

    /// Peak resident memory since the last reset, in MB.
    pub fn peak_rss_mb(&self) -> f64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM");
        kb / 1024.0
    }

    /// Absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let c = Client::new();
        while Instant::now() < deadline {
            if let Ok(r) = c.get(self.url("/ready")).send() {
                if r.status() == 200 {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server never became ready");
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: the process gets no chance to flush anything.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Ignores SIGXFSZ in this test process, and so in the servers it starts from now on (an
/// ignored signal stays ignored across exec): a write past [`Server::limit_file_size`] then
/// fails with EFBIG instead of killing the server.
pub fn ignore_file_size_signal() {
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler code.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}
