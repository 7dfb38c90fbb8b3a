//! The soak's child processes: the MongoDB-wire server (SecantusDB) it kills, freezes and
//! restarts, and the release `auralguard serve` under test.
//!
//! Every child's pid sits in a process-wide registry until it is reaped, so that all of them can
//! be killed however the driver ends: a [`Guard`]'s `Drop` on a normal return or a panic
//! (unwinding), and [`install_signal_handler`] on Ctrl-C, SIGTERM or SIGHUP. Children also stay
//! in the driver's process group, so a terminal's Ctrl-C reaches them directly as well.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Pids of the children still running (registered at spawn, removed once reaped).
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn registry() -> std::sync::MutexGuard<'static, Vec<u32>> {
    CHILDREN.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sends `signal` (a name `kill` knows: STOP, CONT, KILL, TERM) to `pid`; whether it was
/// delivered. `kill(1)` rather than libc: the server crate has no libc dependency, and the
/// harness in `server/tests/common` does the same.
pub fn signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Kills every registered child (a frozen one too: SIGKILL ends a stopped process).
pub fn kill_all() {
    for pid in registry().drain(..) {
        signal(pid, "KILL");
    }
}

/// Kills all children and exits on Ctrl-C, SIGTERM or SIGHUP, so an interrupted soak leaves no
/// database or server running (the work folder is kept for inspection).
pub fn install_signal_handler() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("soak-signals".into())
        .spawn(move || {
            use tokio::signal::unix::{signal, SignalKind};
            let name = runtime.block_on(async {
                let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
                let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => "SIGINT",
                    _ = term.recv() => "SIGTERM",
                    _ = hup.recv() => "SIGHUP",
                }
            });
            eprintln!("soak: {name}: killing the database and the server, exiting");
            kill_all();
            std::process::exit(130);
        })?;
    Ok(())
}

/// A child that is killed (and reaped) when dropped.
pub struct Guard {
    child: Child,
    /// Reaped already: its pid may belong to someone else now, so it is never signalled again.
    reaped: bool,
}

impl Guard {
    fn spawn(cmd: &mut Command) -> std::io::Result<Self> {
        let child = cmd.spawn()?;
        registry().push(child.id());
        Ok(Self {
            child,
            reaped: false,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if it has exited (it is then reaped and unregistered).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.reaped {
            return None;
        }
        let status = self.child.try_wait().ok().flatten()?;
        self.reaped = true;
        self.forget();
        Some(status)
    }

    fn forget(&self) {
        let pid = self.child.id();
        registry().retain(|&p| p != pid);
    }

    /// SIGTERM and up to `within` for it to exit (then SIGKILL); its exit status.
    pub fn terminate(mut self, within: Duration) -> Option<ExitStatus> {
        signal(self.pid(), "TERM");
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None // dropped: killed
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        let _ = self.child.kill(); // SIGKILL ends a frozen (SIGSTOPped) process too
        let _ = self.child.wait();
        self.forget();
    }
}

/// A port free on 127.0.0.1 right now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn append_log(path: &Path) -> anyhow::Result<File> {
    File::options()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("open {}", path.display()))
}

/// The database: SecantusDB on a fixed 127.0.0.1 port and storage folder, so a restart comes
/// back on the same data at the same address the server's driver keeps dialling.
pub struct Mongo {
    binary: PathBuf,
    data: PathBuf,
    log: PathBuf,
    /// Its port.
    pub port: u16,
    child: Option<Guard>,
    frozen: bool,
}

impl Mongo {
    /// Starts it with its data in `data`, its output appended to `log`.
    pub fn start(binary: &Path, data: &Path, log: &Path) -> anyhow::Result<Self> {
        let mut db = Self {
            binary: binary.to_path_buf(),
            data: data.to_path_buf(),
            log: log.to_path_buf(),
            port: free_port()?,
            child: None,
            frozen: false,
        };
        db.spawn()?;
        Ok(db)
    }

    /// `mongodb://127.0.0.1:PORT/DB`.
    pub fn uri(&self, db: &str) -> String {
        format!("mongodb://127.0.0.1:{}/{db}", self.port)
    }

    /// Starts the process and waits (60 s at most) until it accepts connections. A start that
    /// dies at once (the port still held by the killed one's sockets, say) is retried twice.
    fn spawn(&mut self) -> anyhow::Result<()> {
        let mut last = String::new();
        for _ in 0..3 {
            let log = append_log(&self.log)?;
            let mut child = Guard::spawn(
                Command::new(&self.binary)
                    .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
                    .arg("--storage-path")
                    .arg(&self.data)
                    // An acknowledged write must survive SIGKILL, or "missing" would measure
                    // the database, not the server.
                    .arg("--sync-on-commit")
                    .args(["--log-level", "WARNING"])
                    // No ./secantusd.toml auto-discovery from wherever the soak was started.
                    .current_dir(self.data.parent().unwrap_or(&self.data))
                    .stdin(Stdio::null())
                    .stdout(log.try_clone()?)
                    .stderr(log),
            )
            .with_context(|| format!("start {}", self.binary.display()))?;
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    self.child = Some(child);
                    self.frozen = false;
                    return Ok(());
                }
                if let Some(status) = child.exited() {
                    last = format!("exited with {status} (see {})", self.log.display());
                    std::thread::sleep(Duration::from_secs(1));
                    break;
                }
                if Instant::now() > deadline {
                    bail!("the database did not listen on {} within 60 s", self.port);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        bail!("the database would not start: {last}")
    }

    /// SIGSTOP: the process stays, its sockets stay open, nothing answers (a hung primary).
    pub fn freeze(&mut self) {
        if let Some(c) = &self.child {
            self.frozen = signal(c.pid(), "STOP");
        }
    }

    /// SIGCONT after [`Mongo::freeze`].
    pub fn thaw(&mut self) {
        if let Some(c) = &self.child {
            signal(c.pid(), "CONT");
        }
        self.frozen = false;
    }

    /// SIGKILL: a crash, no clean shutdown.
    pub fn kill(&mut self) {
        self.child = None; // Guard::drop sends SIGKILL and reaps
        self.frozen = false;
    }

    /// Starts it again on the same port and data.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn()
    }

    /// Running and not frozen, whatever the schedule left it as; restarted if it died.
    pub fn heal(&mut self) -> anyhow::Result<()> {
        if self.frozen {
            self.thaw();
        }
        let dead = match &mut self.child {
            None => true,
            Some(c) => c.exited().is_some(),
        };
        if dead {
            self.spawn()?;
        }
        Ok(())
    }

    /// Whether the process died on its own (not by the schedule).
    pub fn died(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(Guard::exited)
    }
}

/// The release `auralguard serve` under test on a free 127.0.0.1 port.
pub struct Server {
    child: Guard,
    /// Where it listens.
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Server {
    /// Starts `binary serve` with `args` (after `--host 127.0.0.1 --port 0`), its output in
    /// `log`, and waits (120 s at most) until `/ready` says the model is warm.
    pub fn start(binary: &Path, args: &[String], log: &Path) -> anyhow::Result<Self> {
        let mut cmd = Command::new(binary);
        cmd.args(["serve", "--host", "127.0.0.1", "--port", "0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(append_log(log)?);
        // Only the flags given here configure it: no stray deployment settings from the shell.
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if k.starts_with("AURALGUARD_") || k == "MONGODB_URI" || k == "MLFLOW_TRACKING_URI" {
                cmd.env_remove(&key);
            }
        }
        let mut child =
            Guard::spawn(&mut cmd).with_context(|| format!("start {}", binary.display()))?;
        let stdout = child.child.stdout.take().context("server stdout")?;
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .with_context(|| {
                format!(
                    "server did not start (first line {line:?}; see {})",
                    log.display()
                )
            })?
            .to_string();
        // The rest of stdout goes to the log, so the pipe never fills up and blocks the server.
        let mut out = append_log(log)?;
        std::thread::spawn(move || std::io::copy(&mut reader, &mut out));
        let addr: SocketAddr = base
            .strip_prefix("http://")
            .unwrap_or(&base)
            .parse()
            .with_context(|| format!("listen address {base}"))?;
        anyhow::ensure!(
            addr.ip().is_loopback(),
            "server listens on {addr}, not loopback"
        );
        let server = Self { child, addr, base };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if super::http::get(addr, "/ready", Duration::from_secs(5)).status == Some(200) {
                return Ok(server);
            }
            if Instant::now() > deadline {
                bail!("server never became ready (see {})", log.display());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// The exit status if the server has died.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.exited()
    }

    /// SIGTERM and its exit status within `within` (None: it had to be killed).
    pub fn terminate(self, within: Duration) -> Option<ExitStatus> {
        self.child.terminate(within)
    }
}

/// Resident memory of `pid` (`VmRSS`), MiB.
pub fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}
