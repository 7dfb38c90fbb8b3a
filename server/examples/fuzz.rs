//! A mutation fuzzer for the server's hostile-input parsers, on the stable toolchain.
//!
//! ```text
//! cargo run --release -p auralguard --example fuzz -- [--target decode|oip|multipart|manifest]...
//!     [--seconds N] [--seed N] [--budget-mb N] [--timeout-s N]
//! cargo run --release -p auralguard --example fuzz -- --replay testdata/fuzz
//! ```
//! (`scripts/fuzz.sh [SECONDS_PER_TARGET]` builds it and runs every target.)
//!
//! Why our own loop: cargo-fuzz needs nightly and AFL an install, while the properties we want
//! to prove for the hardening work are coarse ones any loop can check, as long as the
//! mutations know the formats' soft spots (see [`mutate`]). The targets are in
//! `fuzz/targets.rs`, shared with `tests/fuzz_regressions.rs`.
//!
//! # How a run works
//!
//! The process is split in two, so that every way an input can fail is observed rather than
//! suffered:
//!
//! * the **supervisor** (this process) owns the PRNG, the corpus and the findings. It spawns a
//!   **worker** (this same binary with `--worker TARGET`) and sends it one input at a time over
//!   a pipe;
//! * the worker runs the input under `catch_unwind` with the counting allocator of
//!   `fuzz/alloc.rs` installed, and answers with the outcome and the input's peak of live
//!   bytes.
//!
//! The supervisor is the watchdog: no answer within `--timeout-s` (5 s) is a **hang**, and the
//! worker is killed and respawned. A worker that dies — an abort, a stack overflow, the
//! allocator refusing an allocation bomb, the kernel's OOM killer — is a **crash**, reported
//! with its exit status and the tail of its stderr. A **panic** (caught by `catch_unwind`, or
//! one the server's own code caught, seen by the panic hook), a peak above `--budget-mb`
//! (512 MiB) and a target-level bug (the server answering 500) are reported by the worker.
//!
//! # Oracles, corpus, reproducibility
//!
//! Each finding is written to `target/fuzz-findings/<target>/<hash>.<ext>` (the input) and
//! `<hash>.txt` (what happened), printed, and makes the run exit 1. The corpus starts from the
//! seeds of [`targets::seeds`] and keeps every mutant whose outcome (normalised error kind and
//! message, or a bucketed success description) has not been seen: a cheap stand-in for
//! coverage that still steers towards new parser states. The PRNG is seeded from `--seed`
//! (printed; default: the clock), so a run with the same seed and binary makes the same inputs.

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

// The example's root is `examples/fuzz.rs`, so its modules are named by path (the test
// includes the same files the same way).
#[path = "fuzz/alloc.rs"]
mod alloc;
#[path = "fuzz/mutate.rs"]
mod mutate;
#[path = "fuzz/targets.rs"]
mod targets;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mutate::{fnv1a, Env, Rng};
use targets::{Ctx, Seed, Target};

/// Command-line options (see the module docs).
#[derive(Debug, Clone)]
struct Args {
    targets: Vec<Target>,
    seconds: f64,
    seed: u64,
    replay: Option<PathBuf>,
    findings: PathBuf,
    work: PathBuf,
    fixtures: PathBuf,
    extra_seeds: PathBuf,
    model: PathBuf,
    repo: PathBuf,
    budget: usize,
    timeout: Duration,
    max_findings: usize,
    corpus_cap: usize,
    verbose: bool,
    worker: Option<Target>,
}

const USAGE: &str = "usage: fuzz [--target NAME]... [--seconds N] [--seed N] [--replay PATH]
            [--findings DIR] [--work DIR] [--fixtures DIR] [--seeds DIR] [--model DIR]
            [--budget-mb N] [--timeout-s N] [--max-findings N] [--corpus-cap N] [--verbose]
targets: decode, oip, multipart, manifest (default: all)";

fn parse_args() -> Result<Args, String> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("no repository root")?
        .to_path_buf();
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target"));
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let mut a = Args {
        targets: Vec::new(),
        seconds: 600.0,
        seed: clock ^ u64::from(std::process::id()),
        replay: None,
        findings: target_dir.join("fuzz-findings"),
        work: target_dir.join("fuzz-work"),
        fixtures: repo.join("testdata/fuzz"),
        extra_seeds: target_dir.join("fuzz-seeds"),
        model: repo.join("models/seed-random"),
        repo,
        budget: alloc::DEFAULT_BUDGET,
        timeout: Duration::from_secs(5),
        max_findings: 20,
        corpus_cap: 4096,
        verbose: false,
        worker: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value\n{USAGE}"));
        let number = |v: String| {
            v.parse::<f64>()
                .map_err(|_| format!("{flag}: not a number: {v}"))
        };
        let target =
            |v: String| Target::from_name(&v).ok_or(format!("unknown target '{v}'\n{USAGE}"));
        match flag.as_str() {
            "--target" => {
                let v = value()?;
                if v == "all" {
                    a.targets.extend(Target::ALL);
                } else {
                    a.targets.push(target(v)?);
                }
            }
            "--seconds" => a.seconds = number(value()?)?,
            "--seed" => {
                let v = value()?;
                a.seed = v.parse().map_err(|_| format!("--seed: not a u64: {v}"))?;
            }
            "--replay" => a.replay = Some(PathBuf::from(value()?)),
            "--findings" => a.findings = PathBuf::from(value()?),
            "--work" => a.work = PathBuf::from(value()?),
            "--fixtures" => a.fixtures = PathBuf::from(value()?),
            "--seeds" => a.extra_seeds = PathBuf::from(value()?),
            "--model" => a.model = PathBuf::from(value()?),
            "--budget-mb" => a.budget = (number(value()?)? * 1_048_576.0) as usize,
            "--timeout-s" => a.timeout = Duration::from_secs_f64(number(value()?)?),
            "--max-findings" => a.max_findings = number(value()?)? as usize,
            "--corpus-cap" => a.corpus_cap = number(value()?)? as usize,
            "--verbose" | "-v" => a.verbose = true,
            "--worker" => a.worker = Some(target(value()?)?),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown option '{other}'\n{USAGE}")),
        }
    }
    if a.targets.is_empty() {
        a.targets.extend(Target::ALL);
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Some(target) = args.worker {
        return worker_main(target, &args);
    }
    let result = match &args.replay {
        Some(path) => replay(&args, path),
        None => fuzz_all(&args),
    };
    match result {
        Ok(0) => ExitCode::SUCCESS,
        Ok(n) => {
            eprintln!("fuzz: {n} finding(s); see {}", args.findings.display());
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("fuzz: harness error: {e}");
            ExitCode::from(2)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Worker
// ---------------------------------------------------------------------------------------------

/// The last panic message seen by the hook, with its location.
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

fn read_frame(r: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let mut buf = vec![0u8; u32::from_le_bytes(len) as usize];
    r.read_exact(&mut buf)?;
    Ok(buf)
}

fn write_frame(w: &mut impl Write, data: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(data.len()).map_err(std::io::Error::other)?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(data)?;
    w.flush()
}

/// The worker: builds the target once, then answers `peak\nkind\ntext` for each input.
fn worker_main(target: Target, args: &Args) -> ExitCode {
    alloc::set_hard_limit(args.budget);
    std::panic::set_hook(Box::new(|info| {
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = Some(info.to_string());
        }
    }));
    let ctx = match Ctx::open(target, &args.model, &args.work) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fuzz worker: cannot prepare {}: {e:#}", target.name());
            return ExitCode::from(2);
        }
    };
    let mut stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    if write_frame(&mut stdout, b"ready").is_err() {
        return ExitCode::from(2);
    }
    loop {
        let (Ok(ext), Ok(input)) = (read_frame(&mut stdin), read_frame(&mut stdin)) else {
            return ExitCode::SUCCESS; // the supervisor closed the pipe
        };
        let ext = String::from_utf8_lossy(&ext).into_owned();
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = None;
        }
        let baseline = alloc::reset_peak();
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ctx.run(&input, &ext)));
        let peak = alloc::peak_since_reset(baseline);
        let panic = LAST_PANIC.lock().ok().and_then(|mut p| p.take());
        let (kind, text) = match (result, panic) {
            (Err(_), p) => (
                "panic",
                p.unwrap_or_else(|| "a panic without a message".into()),
            ),
            // Caught by the server's own code (a panicked blocking task becomes a 500), but a
            // panic on hostile input is a bug all the same.
            (Ok(_), Some(p)) => ("panic", p),
            (Ok(Err(finding)), None) => ("finding", finding),
            (Ok(Ok(outcome)), None) => ("ok", outcome),
        };
        let reply = format!("{peak}\n{kind}\n{text}");
        if write_frame(&mut stdout, reply.as_bytes()).is_err() {
            return ExitCode::SUCCESS;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Supervisor side of a worker
// ---------------------------------------------------------------------------------------------

/// What one input did.
enum Exec {
    /// The worker answered: the input's peak live bytes, `ok`/`panic`/`finding`, and text.
    Answered {
        peak: usize,
        kind: String,
        text: String,
    },
    /// No answer within the timeout.
    Hang,
    /// The worker died; what its exit status and stderr say.
    Died(String),
}

/// A running worker process and the thread reading its answers.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    answers: Receiver<Option<Vec<u8>>>,
    log: PathBuf,
    /// The worker's own folder for files its target writes; removed once the worker is gone.
    scratch: PathBuf,
}

impl Worker {
    fn spawn(target: Target, args: &Args) -> Result<Self, String> {
        std::fs::create_dir_all(&args.work).map_err(|e| format!("{}: {e}", args.work.display()))?;
        let log = args.work.join(format!("{}.worker.log", target.name()));
        let stderr = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let exe = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
        // One folder per worker: a respawned worker starts before the one it replaces is
        // dropped, so they must not share one.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let scratch = args.work.join(format!(
            "{}.scratch-{}-{n}",
            target.name(),
            std::process::id()
        ));
        let mut child = Command::new(exe)
            .arg("--worker")
            .arg(target.name())
            .arg("--work")
            .arg(&scratch)
            .arg("--model")
            .arg(&args.model)
            .arg("--budget-mb")
            .arg((args.budget as f64 / 1_048_576.0).to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .map_err(|e| format!("spawning the worker: {e}"))?;
        let stdin = child.stdin.take().ok_or("worker stdin")?;
        let mut stdout = child.stdout.take().ok_or("worker stdout")?;
        let (tx, answers) = mpsc::channel();
        std::thread::spawn(move || loop {
            match read_frame(&mut stdout) {
                Ok(frame) => {
                    if tx.send(Some(frame)).is_err() {
                        return;
                    }
                }
                Err(_) => {
                    let _ = tx.send(None);
                    return;
                }
            }
        });
        let mut w = Self {
            child,
            stdin,
            answers,
            log,
            scratch,
        };
        // Loading the model takes a moment; a worker that cannot start is a harness error.
        match w.answers.recv_timeout(Duration::from_secs(120)) {
            Ok(Some(frame)) if frame == b"ready" => Ok(w),
            _ => {
                let why = w.death_note();
                Err(format!("the {} worker did not start: {why}", target.name()))
            }
        }
    }

    /// Exit status and the end of stderr of a worker that is gone (or is killed now).
    fn death_note(&mut self) -> String {
        let _ = self.child.kill();
        let status = self
            .child
            .wait()
            .map(|s| s.to_string())
            .unwrap_or_else(|e| format!("unknown status ({e})"));
        let log = std::fs::read(&self.log).unwrap_or_default();
        let tail = String::from_utf8_lossy(&log[log.len().saturating_sub(1500)..])
            .trim()
            .replace('\n', " | ");
        format!("{status}; stderr: {tail}")
    }

    fn exec(&mut self, input: &[u8], ext: &str, timeout: Duration) -> Exec {
        let sent = write_frame(&mut self.stdin, ext.as_bytes())
            .and_then(|()| write_frame(&mut self.stdin, input));
        if sent.is_err() {
            return Exec::Died(self.death_note());
        }
        match self.answers.recv_timeout(timeout) {
            Ok(Some(frame)) => {
                let text = String::from_utf8_lossy(&frame);
                let mut parts = text.splitn(3, '\n');
                let peak = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
                let kind = parts.next().unwrap_or("").to_string();
                let text = parts.next().unwrap_or("").to_string();
                Exec::Answered { peak, kind, text }
            }
            Ok(None) | Err(RecvTimeoutError::Disconnected) => Exec::Died(self.death_note()),
            Err(RecvTimeoutError::Timeout) => Exec::Hang,
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

// ---------------------------------------------------------------------------------------------
// Findings
// ---------------------------------------------------------------------------------------------

/// Findings of one target: what was saved, so one bug is written once however often it is hit.
struct Findings {
    dir: PathBuf,
    signatures: HashSet<u64>,
    total: usize,
}

impl Findings {
    fn new(root: &Path, target: Target) -> Self {
        Self {
            dir: root.join(target.name()),
            signatures: HashSet::new(),
            total: 0,
        }
    }

    /// Records a finding; returns whether it was a new kind (written to disk).
    fn record(&mut self, what: &str, input: &[u8], ext: &str, note: &str) -> bool {
        self.total += 1;
        let first_line = what.lines().next().unwrap_or("");
        let signature = fnv1a(targets::normalize(first_line, 160).as_bytes());
        if !self.signatures.insert(signature) {
            return false;
        }
        let hash = format!("{:016x}", fnv1a(input));
        let ext = if ext.is_empty() { "bin" } else { ext };
        let path = self.dir.join(format!("{hash}.{ext}"));
        let written = std::fs::create_dir_all(&self.dir)
            .and_then(|()| std::fs::write(&path, input))
            .and_then(|()| {
                std::fs::write(
                    self.dir.join(format!("{hash}.txt")),
                    format!(
                        "{what}\ninput: {} bytes, hint .{ext}\n{note}\n",
                        input.len()
                    ),
                )
            });
        match written {
            Ok(()) => eprintln!("FINDING {what}\n  -> {}", path.display()),
            Err(e) => eprintln!(
                "FINDING {what}\n  (could not write {}: {e})",
                path.display()
            ),
        }
        true
    }
}

/// Turns what a worker said into a finding description, or the outcome when all is well.
fn judge(exec: &Exec, target: Target, args: &Args) -> Result<String, String> {
    let t = target.name();
    match exec {
        Exec::Answered { peak, kind, text } => match kind.as_str() {
            "ok" if *peak > args.budget => Err(format!(
                "[{t}] allocation: the input's peak of live bytes was {peak} (budget {}); \
                 outcome: {text}",
                args.budget
            )),
            "ok" => Ok(text.clone()),
            "panic" => Err(format!("[{t}] panic: {text}")),
            _ => Err(format!("[{t}] {text}")),
        },
        Exec::Hang => Err(format!(
            "[{t}] hang: no answer within {:.1} s",
            args.timeout.as_secs_f64()
        )),
        Exec::Died(note) => Err(format!("[{t}] crash: the worker died: {note}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Fuzzing
// ---------------------------------------------------------------------------------------------

/// Figures of one target's run.
struct Summary {
    target: Target,
    seconds: f64,
    execs: u64,
    corpus: usize,
    outcomes: usize,
    findings: usize,
    unique_findings: usize,
}

fn fuzz_all(args: &Args) -> Result<usize, String> {
    eprintln!(
        "fuzz: seed {} ({} s per target, budget {} MiB, timeout {:.1} s); rerun with --seed {}",
        args.seed,
        args.seconds,
        args.budget >> 20,
        args.timeout.as_secs_f64(),
        args.seed
    );
    let mut summaries = Vec::new();
    for &target in &args.targets {
        summaries.push(fuzz_target(target, args)?);
    }
    eprintln!("\nfuzz: summary (seed {})", args.seed);
    let mut findings = 0;
    for s in &summaries {
        findings += s.findings;
        let line = format!(
            "  {:<9} {:>6.0} s  {:>9} execs  {:>8.1} execs/s  corpus {:>5}  outcomes {:>5}  \
             findings {} ({} distinct)",
            s.target.name(),
            s.seconds,
            s.execs,
            s.execs as f64 / s.seconds.max(1e-9),
            s.corpus,
            s.outcomes,
            s.findings,
            s.unique_findings
        );
        eprintln!("{line}");
    }
    Ok(findings)
}

fn fuzz_target(target: Target, args: &Args) -> Result<Summary, String> {
    let t = target.name();
    let seeds: Vec<Seed> = targets::seeds(target, &args.repo, &args.fixtures, &args.extra_seeds);
    if seeds.is_empty() {
        return Err(format!("no seeds for {t}"));
    }
    eprintln!("[{t}] {} seeds; starting the worker", seeds.len());
    let mut worker = Worker::spawn(target, args)?;
    let mut rng = Rng::new(args.seed ^ fnv1a(t.as_bytes()));
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    let mut exts: Vec<String> = Vec::new();
    let mut outcomes: HashSet<u64> = HashSet::new();
    let mut findings = Findings::new(&args.findings, target);
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.seconds);
    let mut last_report = started;
    let mut execs = 0u64;
    let dictionary = target.dictionary();
    let mut seed_queue = seeds.into_iter();

    while Instant::now() < deadline && findings.signatures.len() < args.max_findings {
        // Every seed runs once as is, then the mutants.
        let (input, ext, note) = match seed_queue.next() {
            Some(s) => {
                let note = format!("seed: {}", s.origin);
                (s.data, s.ext, note)
            }
            None => {
                let parent = rng.below(corpus.len());
                let env = Env {
                    corpus: &corpus,
                    dictionary: &dictionary,
                    text: target.is_text(),
                    max_len: target.max_len(),
                };
                let data = mutate::mutate(&corpus[parent], &mut rng, &env);
                let note = format!("mutant of corpus entry {parent}; run seed {}", args.seed);
                (data, exts[parent].clone(), note)
            }
        };
        let exec = worker.exec(&input, &ext, args.timeout);
        execs += 1;
        let is_seed = note.starts_with("seed:");
        match judge(&exec, target, args) {
            Ok(outcome) => {
                let new = outcomes.insert(fnv1a(outcome.as_bytes()));
                if args.verbose && (is_seed || new) {
                    let what = if is_seed {
                        note.as_str()
                    } else {
                        "new outcome"
                    };
                    eprintln!("[{t}] {what}: {outcome}");
                }
                if is_seed || (new && corpus.len() < args.corpus_cap) {
                    corpus.push(input);
                    exts.push(ext);
                }
            }
            Err(what) => {
                findings.record(&what, &input, &ext, &note);
                if is_seed {
                    corpus.push(input);
                    exts.push(ext);
                }
                // A fresh worker after any finding: a panic may have left the target's state
                // (a runtime, a lock) half-changed, and a hung or dead one must be replaced.
                worker = Worker::spawn(target, args)?;
            }
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "[{t}] {secs:>5.0} s  execs {execs}  {:.1}/s  corpus {}  outcomes {}  findings {}",
                execs as f64 / secs,
                corpus.len(),
                outcomes.len(),
                findings.total
            );
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "[{t}] done: {execs} execs in {seconds:.0} s ({:.1}/s), corpus {}, outcomes {}, findings {}",
        execs as f64 / seconds.max(1e-9),
        corpus.len(),
        outcomes.len(),
        findings.total
    );
    Ok(Summary {
        target,
        seconds,
        execs,
        corpus: corpus.len(),
        outcomes: outcomes.len(),
        findings: findings.total,
        unique_findings: findings.signatures.len(),
    })
}

// ---------------------------------------------------------------------------------------------
// Replay
// ---------------------------------------------------------------------------------------------

/// Runs every regression input once through its target with the same oracles. `path` is a
/// folder of per-target folders (`testdata/fuzz`), one target's folder, or one file (its
/// folder's name, or the single `--target`, says which target).
fn replay(args: &Args, path: &Path) -> Result<usize, String> {
    let folder_target = |p: &Path| {
        p.file_name()
            .and_then(|n| n.to_str())
            .and_then(Target::from_name)
    };
    let mut jobs: Vec<(Target, Vec<PathBuf>)> = Vec::new();
    if path.is_file() {
        let target = match (
            args.targets.as_slice(),
            path.parent().and_then(folder_target),
        ) {
            ([one], _) => *one,
            (_, Some(t)) => t,
            _ => return Err(format!("{}: say which --target it is for", path.display())),
        };
        jobs.push((target, vec![path.to_path_buf()]));
    } else if let Some(t) = folder_target(path) {
        jobs.push((t, targets::inputs_in(path)));
    } else if path.is_dir() {
        for &t in &args.targets {
            jobs.push((t, targets::inputs_in(&path.join(t.name()))));
        }
    } else {
        return Err(format!("{}: no such file or folder", path.display()));
    }
    let mut total = 0;
    for (target, files) in jobs {
        if files.is_empty() {
            continue;
        }
        let mut worker = Worker::spawn(target, args)?;
        let mut findings = Findings::new(&args.findings, target);
        for file in files {
            let input = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let ext = targets::ext_of(&file);
            let exec = worker.exec(&input, &ext, args.timeout);
            match judge(&exec, target, args) {
                Ok(outcome) => eprintln!("replay {}: {outcome}", file.display()),
                Err(what) => {
                    eprintln!("replay {}: FAILED", file.display());
                    findings.record(
                        &what,
                        &input,
                        &ext,
                        &format!("replay of {}", file.display()),
                    );
                    worker = Worker::spawn(target, args)?;
                }
            }
        }
        total += findings.total;
    }
    Ok(total)
}
