//! Soak test of `auralguard serve` with a MongoDB prediction log: good, bad and slow clients
//! against the release server for N minutes while the database is killed, restarted and frozen,
//! then an audit of what the database holds. `scripts/soak.sh [MINUTES]` builds and runs it (CI
//! runs 2 minutes; the README reports a 30-minute run).
//!
//! ```text
//! cargo run --release -p auralguard --example soak -- --minutes 2
//! ```
//!
//! What it does, all on 127.0.0.1 and bounded in time and count:
//!
//! 1. Starts SecantusDB (a MongoDB-wire server, `scripts/install-mongo-test-deps.sh`) on a free
//!    port with a fresh storage folder, and the release server with `--mongodb-uri` and a spool
//!    folder, both inside a temporary work folder (kept, with both logs, when the soak fails).
//! 2. For N minutes runs good clients (real audio to `/predict`, every acknowledged
//!    `request_id` recorded), a dashboard reader, bad clients (corrupt audio, wrong content
//!    types, lying lengths, oversized names, broken OIP tensors) and a few slow ones (trickled
//!    headers and uploads, a late reader). Meanwhile the database is, in a loop: left alone,
//!    frozen with SIGSTOP for ~8 s, left alone, killed with SIGKILL and restarted ~10 s later on
//!    the same data. The server's resident memory is sampled four times a second.
//! 3. Stops the load, brings the database back, waits (bounded) until `/health` says the spool
//!    is empty, and reads every request id from the database.
//!
//! It passes when: no acknowledged prediction is missing from the database, none is stored
//! twice (nor acknowledged twice), no answer was a 5xx other than 503/504, good clients never
//! lost a connection, the server stayed up and shut down cleanly on SIGTERM, and its RSS stayed
//! flat: the last minute's peak within 10 % of the second minute's (for runs under 3 minutes:
//! the second half's peak against the first half's after a warm-up quarter, as the second
//! minute would otherwise be half the run). It prints a Markdown summary for the README and
//! exits 1 on any failure (2 when the soak could not run at all).

// The crate root of an example resolves modules beside it, hence the explicit paths.
#[path = "soak/clients.rs"]
mod clients;
#[path = "soak/http.rs"]
mod http;
#[path = "soak/procs.rs"]
mod procs;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use clients::Shared;
use procs::{Mongo, Server};

/// Soak test: mixed clients against the release server while MongoDB is killed and frozen.
#[derive(Debug, Parser)]
struct Args {
    /// Minutes of load (at most a day).
    #[arg(long, default_value_t = 30.0)]
    minutes: f64,
    /// The `auralguard` binary under test; default: the release binary beside this example's
    /// folder (`target/release/auralguard`).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// The MongoDB-wire server; default: `AURALGUARD_SECANTUSD`, else `.venv/mongo/bin/secantusd-py`.
    #[arg(long)]
    secantusd: Option<PathBuf>,
    /// Model folder served.
    #[arg(long, default_value = "models/demo")]
    model: PathBuf,
    /// Clients posting real audio back to back.
    #[arg(long, default_value_t = 4)]
    good_clients: usize,
    /// Clients sending malformed and hostile requests.
    #[arg(long, default_value_t = 2)]
    bad_clients: usize,
    /// Clients trickling headers or uploads (each holds one connection at a time).
    #[arg(long, default_value_t = 2)]
    slow_clients: usize,
    /// Dashboard clients polling /health, /metrics, /statistics and /predictions.
    #[arg(long, default_value_t = 1)]
    readers: usize,
    /// Seconds the database is left alone between faults.
    #[arg(long, default_value_t = 20.0)]
    calm_seconds: f64,
    /// Seconds the database stays frozen (SIGSTOP) per freeze.
    #[arg(long, default_value_t = 8.0)]
    freeze_seconds: f64,
    /// Seconds the database stays dead after each SIGKILL before it is restarted.
    #[arg(long, default_value_t = 10.0)]
    down_seconds: f64,
    /// Longest wait after the load for the spool to drain into the database.
    #[arg(long, default_value_t = 300.0)]
    drain_timeout_seconds: f64,
    /// Allowed growth of the last minute's RSS peak over the second minute's, percent.
    #[arg(long, default_value_t = 10.0)]
    rss_tolerance_percent: f64,
    /// Keep the work folder (database files, spool, logs) even when the soak passes.
    #[arg(long)]
    keep_work_dir: bool,
    /// Also write the results as JSON here.
    #[arg(long)]
    report_json: Option<PathBuf>,
}

/// Repository root: clips, model and the venv are found relative to it.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("server/ has a parent")
        .to_path_buf()
}

/// Audio the good clients upload: several containers, rates and lengths, all real speech.
const CLIPS: &[&str] = &[
    "examples/audio/speech.wav",
    "testdata/parity/speech_16k.flac",
    "testdata/parity/speech_44k1.mp3",
    "testdata/parity/speech_8k.wav",
    "testdata/parity/speech_48k_stereo.flac",
    "testdata/parity/long_16k_pcm16.wav",
];

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = procs::install_signal_handler() {
        eprintln!("soak: {e:#}");
        return ExitCode::from(2);
    }
    let result = run(&args);
    // Belt and braces: the guards have killed the children by now, even after an error.
    procs::kill_all();
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("soak: could not run: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// A timestamped line on stderr (progress; the summary goes to stdout).
fn note(t0: Instant, what: impl std::fmt::Display) {
    eprintln!("[{:7.1}s] {what}", t0.elapsed().as_secs_f64());
}

fn check_args(a: &Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.minutes.is_finite() && a.minutes > 0.0 && a.minutes <= 1440.0,
        "--minutes must be in (0, 1440]"
    );
    anyhow::ensure!(
        (1..=64).contains(&a.good_clients),
        "--good-clients must be 1 to 64"
    );
    anyhow::ensure!(a.bad_clients <= 16, "--bad-clients must be at most 16");
    anyhow::ensure!(a.slow_clients <= 16, "--slow-clients must be at most 16");
    anyhow::ensure!(a.readers <= 8, "--readers must be at most 8");
    for (name, v) in [
        ("--calm-seconds", a.calm_seconds),
        ("--freeze-seconds", a.freeze_seconds),
        ("--down-seconds", a.down_seconds),
        ("--drain-timeout-seconds", a.drain_timeout_seconds),
    ] {
        anyhow::ensure!(
            v.is_finite() && (0.0..=3600.0).contains(&v),
            "{name} must be 0 to 3600"
        );
    }
    Ok(())
}

/// What the fault schedule did.
#[derive(Default)]
struct Faults {
    freezes: u32,
    kills: u32,
    /// Seconds each restart took until the database listened again.
    restart_seconds: Vec<f64>,
    /// `(seconds into the load, event)`.
    events: Vec<(f64, String)>,
    /// The database could not be restarted, or died on its own.
    trouble: Option<String>,
}

/// The fault loop: calm, freeze, calm, kill, down, restart; until the load stops. The database
/// is left running and thawed only by the caller's [`Mongo::heal`] afterwards.
fn fault_schedule(args: &Args, shared: &Shared, db: &Mutex<Mongo>) -> Faults {
    let mut f = Faults::default();
    let at = |s: &Shared| s.started.elapsed().as_secs_f64();
    let secs = Duration::from_secs_f64;
    loop {
        if !shared.pause(secs(args.calm_seconds)) {
            break;
        }
        let mut g = db.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(status) = g.died() {
            f.trouble = Some(format!("the database died on its own ({status})"));
            break;
        }
        g.freeze();
        drop(g);
        f.freezes += 1;
        f.events.push((at(shared), "SIGSTOP".into()));
        let went_on = shared.pause(secs(args.freeze_seconds));
        db.lock().unwrap_or_else(|p| p.into_inner()).thaw();
        f.events.push((at(shared), "SIGCONT".into()));
        if !went_on || !shared.pause(secs(args.calm_seconds)) {
            break;
        }
        db.lock().unwrap_or_else(|p| p.into_inner()).kill();
        f.kills += 1;
        f.events.push((at(shared), "SIGKILL".into()));
        let went_on = shared.pause(secs(args.down_seconds));
        let t = Instant::now();
        if let Err(e) = db.lock().unwrap_or_else(|p| p.into_inner()).restart() {
            f.trouble = Some(format!("restart failed: {e:#}"));
            break;
        }
        f.restart_seconds.push(t.elapsed().as_secs_f64());
        f.events.push((at(shared), "restarted".into()));
        if !went_on {
            break;
        }
    }
    f
}

/// `/health` as JSON.
fn health(server: &Server) -> Option<serde_json::Value> {
    let a = http::get(server.addr, "/health", Duration::from_secs(10));
    (a.status == Some(200)).then(|| a.json()).flatten()
}

/// The RSS comparison: `(description, reference peak, final peak)` in MiB over the samples
/// `(seconds, MiB)` of a run of `total` seconds.
fn rss_windows(samples: &[(f64, f64)], total: f64) -> (String, f64, f64) {
    let peak = |from: f64, to: f64| {
        samples
            .iter()
            .filter(|(t, _)| *t >= from && *t < to)
            .map(|(_, m)| *m)
            .fold(f64::NAN, f64::max)
    };
    if total >= 180.0 {
        (
            "last minute's peak vs the second minute's".into(),
            peak(60.0, 120.0),
            peak(total - 60.0, f64::INFINITY),
        )
    } else {
        // Equal windows: the peak of more samples is larger by itself, so a shorter reference
        // window would make growth out of nothing.
        let (q, m) = (total / 4.0, total * 5.0 / 8.0);
        (
            format!(
                "run under 3 min: peak of {m:.0} s..end vs peak of {q:.0}..{m:.0} s (first quarter is warm-up)"
            ),
            peak(q, m),
            peak(m, f64::INFINITY),
        )
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Value of an unlabelled metric in a Prometheus scrape.
fn metric(scrape: &str, name: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Runs the soak; whether it passed.
fn run(args: &Args) -> anyhow::Result<bool> {
    check_args(args)?;
    let t0 = Instant::now();
    let root = repo_root();
    let binary = match &args.binary {
        Some(b) => b.clone(),
        None => std::env::current_exe()?
            .parent()
            .and_then(Path::parent)
            .context("this example's folder")?
            .join("auralguard"),
    };
    anyhow::ensure!(
        binary.is_file(),
        "no server binary at {} (cargo build --release -p auralguard)",
        binary.display()
    );
    let secantusd = args
        .secantusd
        .clone()
        .or_else(|| std::env::var_os("AURALGUARD_SECANTUSD").map(PathBuf::from))
        .unwrap_or_else(|| root.join(".venv/mongo/bin/secantusd-py"));
    anyhow::ensure!(
        secantusd.is_file(),
        "no MongoDB-wire server at {} (run scripts/install-mongo-test-deps.sh)",
        secantusd.display()
    );
    let model = if args.model.is_absolute() {
        args.model.clone()
    } else {
        root.join(&args.model)
    };
    let clips = clients::clips(&root, CLIPS);
    anyhow::ensure!(
        clips.iter().any(|c| c.name == "speech.wav"),
        "examples/audio/speech.wav is missing"
    );
    let wav = clips[0].bytes.clone();

    // Kept from the start, so an error that ends the soak early still leaves the logs; removed
    // only after a pass.
    let work: PathBuf = tempfile::Builder::new()
        .prefix("auralguard-soak-")
        .tempdir()?
        .keep();
    note(t0, format!("work folder {}", work.display()));
    let db_log = work.join("secantusd.log");
    let server_log = work.join("server.log");
    let db = Mongo::start(&secantusd, &work.join("db"), &db_log)?;
    let uri = db.uri("soak");
    note(t0, format!("database on {uri}"));
    let server_args: Vec<String> = vec![
        "--model".into(),
        model.display().to_string(),
        "--mongodb-uri".into(),
        uri.clone(),
        "--spool-dir".into(),
        work.join("spool").display().to_string(),
        "--store-path".into(),
        work.join("unused.db").display().to_string(),
    ];
    let mut server = Server::start(&binary, &server_args, &server_log)?;
    let pid = server.pid();
    note(t0, format!("server {} (pid {pid}) ready", server.base));
    let h = health(&server).context("/health")?;
    let model_name = h["model"]["name"]
        .as_str()
        .unwrap_or("auralguard")
        .to_string();
    let cases = clients::bad_cases(&wav, &model_name);

    // --- the load ---------------------------------------------------------------------------
    let load = Duration::from_secs_f64(args.minutes * 60.0);
    let shared = Shared::new(server.addr);
    let db = Mutex::new(db);
    let rss: Mutex<Vec<(f64, f64)>> = Mutex::default();
    let mut server_died = None;
    note(
        t0,
        format!(
            "load for {:.1} min: {} good, {} reader, {} bad, {} slow clients; {} clips; {} bad cases",
            args.minutes,
            args.good_clients,
            args.readers,
            args.bad_clients,
            args.slow_clients,
            clips.len(),
            cases.len()
        ),
    );
    let faults = std::thread::scope(|s| {
        for i in 0..args.good_clients {
            let (shared, clips) = (&shared, &clips);
            s.spawn(move || clients::good(shared, clips, i));
        }
        for _ in 0..args.readers {
            s.spawn(|| clients::reader(&shared));
        }
        for i in 0..args.bad_clients {
            let (shared, cases) = (&shared, &cases);
            s.spawn(move || clients::bad(shared, cases, i * cases.len() / args.bad_clients.max(1)));
        }
        for i in 0..args.slow_clients {
            let (shared, wav) = (&shared, &wav);
            s.spawn(move || clients::slow(shared, wav, i));
        }
        s.spawn(|| {
            // Four samples a second: a minute's peak is a maximum of samples, and with few of
            // them it swings with which spikes a sample happened to catch.
            while shared.pause(Duration::from_millis(250)) {
                if let Some(m) = procs::rss_mib(pid) {
                    rss.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((shared.started.elapsed().as_secs_f64(), m));
                }
            }
        });
        let faults = s.spawn(|| fault_schedule(args, &shared, &db));
        // The main thread keeps time, watches the server and reports progress once a minute.
        let end = shared.started + load;
        let mut next_report = shared.started + Duration::from_secs(60);
        while Instant::now() < end {
            std::thread::sleep(Duration::from_millis(250));
            if let Some(status) = server.exited() {
                server_died = Some(status.to_string());
                note(t0, format!("the server died: {status}; stopping the load"));
                break;
            }
            if Instant::now() >= next_report {
                next_report += Duration::from_secs(60);
                let acked = shared.acked.lock().map(|a| a.len()).unwrap_or(0);
                let rss_now = procs::rss_mib(pid).unwrap_or(f64::NAN);
                note(
                    t0,
                    format!("{acked} predictions acknowledged, server RSS {rss_now:.1} MiB"),
                );
            }
        }
        shared.stop.store(true, Ordering::SeqCst);
        note(t0, "load stopped; waiting for the clients' last requests");
        faults.join().unwrap_or_default()
    });
    let load_seconds = shared
        .started
        .elapsed()
        .as_secs_f64()
        .min(load.as_secs_f64());
    note(
        t0,
        format!(
            "clients done; faults: {} freezes, {} kills",
            faults.freezes, faults.kills
        ),
    );

    // --- recovery and audit -----------------------------------------------------------------
    let mut db = db.into_inner().unwrap_or_else(|p| p.into_inner());
    db.heal()?;
    let drain_started = Instant::now();
    let drain_limit = Duration::from_secs_f64(args.drain_timeout_seconds);
    let mut last_health = serde_json::Value::Null;
    let mut drained = false;
    while server_died.is_none() && drain_started.elapsed() < drain_limit {
        if let Some(h) = health(&server) {
            let done = h["store"]["state"] == "ok" && h["store"]["spooled"] == 0;
            last_health = h;
            if done {
                drained = true;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let drain_seconds = drain_started.elapsed().as_secs_f64();
    note(
        t0,
        format!("spool drained: {drained} after {drain_seconds:.1} s"),
    );
    let scrape =
        String::from_utf8_lossy(&http::get(server.addr, "/metrics", Duration::from_secs(10)).body)
            .into_owned();
    let write_failures = metric(&scrape, "auralguard_store_write_failures_total");

    let stored = stored_ids(&uri).context("reading the request ids back from the database")?;
    note(t0, format!("{} records in the database", stored.len()));
    if server_died.is_none() {
        if let Some(status) = server.exited() {
            server_died = Some(status.to_string());
        }
    }
    let shutdown = if server_died.is_none() {
        server.terminate(Duration::from_secs(30))
    } else {
        None
    };
    drop(db);

    // --- verdicts ---------------------------------------------------------------------------
    let acked = shared.acked.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut acked_count: HashMap<&str, u32> = HashMap::new();
    for id in &acked {
        *acked_count.entry(id).or_default() += 1;
    }
    let acked_twice = acked_count.values().filter(|&&n| n > 1).count();
    let mut stored_count: HashMap<&str, u32> = HashMap::new();
    for id in &stored {
        *stored_count.entry(id).or_default() += 1;
    }
    let duplicates: usize = stored_count.values().map(|&n| n as usize - 1).sum();
    let missing: Vec<&str> = acked_count
        .keys()
        .filter(|id| !stored_count.contains_key(*id))
        .copied()
        .collect();
    let acked_set: HashSet<&str> = acked_count.keys().copied().collect();
    let unacked_stored = stored_count
        .keys()
        .filter(|id| !acked_set.contains(*id))
        .count();

    let tally = shared.tally.into_inner().unwrap_or_else(|p| p.into_inner());
    let is_bad_5xx = |o: &str| {
        o.parse::<u16>()
            .is_ok_and(|s| s >= 500 && s != 503 && s != 504)
    };
    let bad_5xx: Vec<String> = tally
        .iter()
        .filter(|((_, o), _)| is_bad_5xx(o))
        .map(|((w, o), n)| format!("{w} {o} ×{n}"))
        .collect();
    let good_errors: Vec<String> = tally
        .iter()
        .filter(|((w, o), _)| w == "good" && o.starts_with("error"))
        .map(|((_, o), n)| format!("{o} ×{n}"))
        .collect();
    let anomalies = shared
        .anomalies
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    let samples = shared
        .samples
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());

    let rss = rss.into_inner().unwrap_or_else(|p| p.into_inner());
    let (rss_how, rss_ref, rss_last) = rss_windows(&rss, load_seconds);
    let rss_growth = (rss_last / rss_ref - 1.0) * 100.0;
    let rss_ok = rss_growth.is_finite() && rss_growth <= args.rss_tolerance_percent;
    let mut lat = shared
        .latencies
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    lat.sort_by(f64::total_cmp);
    let good_ok = lat.len();
    let per_minute = shared
        .acked_per_minute
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    let shutdown_ok = shutdown.is_some_and(|s| s.success());

    let checks: Vec<(&str, String, bool)> = vec![
        (
            "acknowledged predictions missing from the database",
            missing.len().to_string(),
            missing.is_empty(),
        ),
        (
            "records stored twice / ids acknowledged twice",
            format!("{duplicates} / {acked_twice}"),
            duplicates == 0 && acked_twice == 0,
        ),
        (
            "5xx answers other than 503/504",
            bad_5xx.len().to_string(),
            bad_5xx.is_empty(),
        ),
        (
            "server RSS growth",
            format!("{rss_ref:.1} → {rss_last:.1} MiB ({rss_growth:+.1} %)"),
            rss_ok,
        ),
        (
            "spool drained after the load",
            format!("{drained} in {drain_seconds:.1} s"),
            drained,
        ),
        (
            "good clients' connection errors",
            good_errors.len().to_string(),
            good_errors.is_empty(),
        ),
        (
            "client-side anomalies",
            anomalies.len().to_string(),
            anomalies.is_empty(),
        ),
        (
            "server alive to the end, exit 0 on SIGTERM",
            match (&server_died, &shutdown) {
                (Some(d), _) => format!("died: {d}"),
                (None, Some(s)) => s.to_string(),
                (None, None) => "did not exit within 30 s".into(),
            },
            server_died.is_none() && shutdown_ok,
        ),
        (
            "database faults as scheduled",
            faults.trouble.clone().unwrap_or_else(|| "yes".into()),
            faults.trouble.is_none()
                && (faults.freezes + faults.kills > 0 || load_seconds < args.calm_seconds),
        ),
    ];
    let passed = checks.iter().all(|(_, _, ok)| *ok);

    // --- report -----------------------------------------------------------------------------
    let mut by_kind: BTreeMap<(String, String), u64> = BTreeMap::new();
    for ((who, outcome), n) in &tally {
        let kind = who.split(':').next().unwrap_or(who).to_string();
        *by_kind.entry((kind, outcome.clone())).or_default() += n;
    }
    let mut out = String::new();
    let w = &mut out;
    use std::fmt::Write as _;
    let _ = writeln!(
        w,
        "\n## Soak: {:.1} minutes, {}\n",
        load_seconds / 60.0,
        if passed { "PASSED" } else { "FAILED" }
    );
    let _ = writeln!(w, "| | |\n|---|---|");
    let _ = writeln!(
        w,
        "| clients | {} good, {} reader, {} bad ({} cases), {} slow |",
        args.good_clients,
        args.readers,
        args.bad_clients,
        cases.len(),
        args.slow_clients
    );
    let _ = writeln!(
        w,
        "| database faults | {} × SIGSTOP for {:.0} s, {} × SIGKILL + restart after {:.0} s (restart took {:.1} s on average) |",
        faults.freezes,
        args.freeze_seconds,
        faults.kills,
        args.down_seconds,
        faults.restart_seconds.iter().sum::<f64>() / faults.restart_seconds.len().max(1) as f64
    );
    let _ = writeln!(
        w,
        "| good predictions acknowledged | {good_ok} ({:.1}/s; per minute: {}) |",
        good_ok as f64 / load_seconds,
        per_minute
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        w,
        "| good latency p50 / p99 / max | {:.3} / {:.3} / {:.3} s |",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN)
    );
    let _ = writeln!(
        w,
        "| acknowledged in all (incl. bad/slow clients' 200s) | {} |",
        acked.len()
    );
    let _ = writeln!(
        w,
        "| records in the database | {} ({} not acknowledged: clients gone before the answer) |",
        stored.len(),
        unacked_stored
    );
    let _ = writeln!(
        w,
        "| spool seen by /health | up to {} records; {} of {} polls degraded |",
        shared.max_spooled.load(Ordering::Relaxed),
        shared.degraded_seen.load(Ordering::Relaxed),
        tally
            .iter()
            .filter(|((w, _), _)| w == "reader:/health")
            .map(|(_, n)| n)
            .sum::<u64>()
    );
    let _ = writeln!(
        w,
        "| store write failures (metric) / set aside | {} / {} |",
        write_failures.map_or("?".into(), |v| v.to_string()),
        last_health["store"]["set_aside"]
    );
    let _ = writeln!(w, "| RSS comparison | {rss_how} |");
    let mut rss_minutes: Vec<f64> = Vec::new();
    for &(t, m) in &rss {
        let minute = (t / 60.0) as usize;
        if rss_minutes.len() <= minute {
            rss_minutes.resize(minute + 1, f64::NAN);
        }
        rss_minutes[minute] = rss_minutes[minute].max(m);
    }
    let _ = writeln!(
        w,
        "| RSS min over the run; peak per minute | {:.1}; {} MiB |",
        rss.iter().map(|r| r.1).fold(f64::NAN, f64::min),
        rss_minutes
            .iter()
            .map(|m| format!("{m:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(w, "\n| check | value | |\n|---|---|---|");
    for (name, value, ok) in &checks {
        let _ = writeln!(
            w,
            "| {name} | {value} | {} |",
            if *ok { "pass" } else { "**FAIL**" }
        );
    }
    let _ = writeln!(w, "\n| client | answers |\n|---|---|");
    let mut kinds: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for ((kind, outcome), n) in &by_kind {
        kinds
            .entry(kind)
            .or_default()
            .push(format!("{outcome}: {n}"));
    }
    for (kind, outcomes) in &kinds {
        let _ = writeln!(w, "| {kind} | {} |", outcomes.join(", "));
    }
    print!("{out}");
    // Per-case detail and diagnostics go to stderr: useful in a log, too long for the README.
    let mut detail: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for ((who, outcome), n) in &tally {
        detail
            .entry(who)
            .or_default()
            .push(format!("{outcome}: {n}"));
    }
    eprintln!("\nanswers per case:");
    for (who, outcomes) in &detail {
        eprintln!("  {who:28} {}", outcomes.join(", "));
    }
    eprintln!("fault events (s into the load):");
    for (t, e) in &faults.events {
        eprintln!("  {t:7.1} {e}");
    }
    for ((who, outcome), body) in &samples {
        eprintln!("first {outcome} for {who}: {body}");
    }
    for a in &anomalies {
        eprintln!("anomaly: {a}");
    }
    for id in missing.iter().take(20) {
        eprintln!("missing from the database: {id}");
    }
    if let Some(path) = &args.report_json {
        let json = serde_json::json!({
            "passed": passed,
            "minutes": load_seconds / 60.0,
            "good_acknowledged": good_ok,
            "good_per_second": good_ok as f64 / load_seconds,
            "acknowledged": acked.len(),
            "stored": stored.len(),
            "missing": missing.len(),
            "duplicates": duplicates,
            "acknowledged_twice": acked_twice,
            "bad_5xx": bad_5xx,
            "rss_mib": { "reference_peak": rss_ref, "final_peak": rss_last, "growth_percent": rss_growth, "how": rss_how },
            "drain_seconds": drain_seconds,
            "faults": { "freezes": faults.freezes, "kills": faults.kills, "restart_seconds": faults.restart_seconds },
            "answers": tally.iter().map(|((w, o), n)| serde_json::json!([w, o, n])).collect::<Vec<_>>(),
            "checks": checks.iter().map(|(n, v, ok)| serde_json::json!({"check": n, "value": v, "ok": ok})).collect::<Vec<_>>(),
        });
        std::fs::write(path, serde_json::to_string_pretty(&json)?)?;
    }
    if passed && !args.keep_work_dir {
        let _ = std::fs::remove_dir_all(&work);
        note(t0, "soak passed");
    } else {
        note(
            t0,
            format!(
                "soak {}; work folder kept: {} (server.log, secantusd.log, spool/, db/)",
                if passed { "passed" } else { "FAILED" },
                work.display()
            ),
        );
    }
    Ok(passed)
}

/// Every `_id` (request id) in the soak database's `predictions`, duplicates included.
fn stored_ids(uri: &str) -> anyhow::Result<Vec<String>> {
    use mongodb::bson::{doc, Document};
    let client = mongodb::sync::Client::with_uri_str(uri)?;
    let coll = client
        .database("soak")
        .collection::<Document>("predictions");
    let mut ids = Vec::new();
    for d in coll.find(doc! {}).projection(doc! { "_id": 1 }).run()? {
        let d = d?;
        ids.push(match d.get("_id") {
            Some(mongodb::bson::Bson::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        });
    }
    // The cursor and a count must agree, or the listing itself is not to be trusted.
    let counted = coll.count_documents(doc! {}).run()?;
    anyhow::ensure!(
        counted as usize == ids.len(),
        "the database counts {counted} records but listed {}",
        ids.len()
    );
    Ok(ids)
}
