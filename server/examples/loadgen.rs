//! Closed-loop load generator for `auralguard serve`; the README's load-test numbers come from
//! it (through `scripts/load-test.sh`, which also runs the no-batching baseline).
//!
//! ```text
//! cargo run --release -p auralguard --example loadgen -- \
//!     --url http://127.0.0.1:8080 --clients 8 --seconds 30 --file examples/audio/speech.wav --pid PID
//! ```
//!
//! Each client posts the file, waits for the answer, and posts again until the time is up.
//! Prints one JSON object: requests by status, throughput, latency percentiles, the server's mean
//! batch fill (from its `/metrics`) and, with `--pid`, the server's peak resident memory. Targets
//! only loopback addresses: anything else is refused.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use reqwest::blocking::{multipart, Client};

/// Closed-loop load against a local detector.
#[derive(Debug, Parser)]
struct Args {
    /// Server base URL (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// How long to run, seconds.
    #[arg(long, default_value_t = 30.0)]
    seconds: f64,
    /// Audio file each request uploads.
    #[arg(long, default_value = "examples/audio/speech.wav")]
    file: PathBuf,
    /// Server process id, to report its resident memory.
    #[arg(long)]
    pid: Option<u32>,
}

/// `VmRSS` or `VmHWM` of a process, MiB.
fn memory_mib(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Sum and count of a histogram in a Prometheus scrape.
fn histogram(scrape: &str, name: &str) -> (f64, f64) {
    let value = |suffix: &str| {
        scrape
            .lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .strip_prefix(suffix)?
                    .strip_prefix(' ')?
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0)
    };
    (value("_sum"), value("_count"))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let host = reqwest::Url::parse(&args.url)?
        .host_str()
        .unwrap_or_default()
        .to_string();
    anyhow::ensure!(
        matches!(host.as_str(), "127.0.0.1" | "localhost" | "[::1]" | "::1"),
        "loadgen only targets loopback addresses, not {host}"
    );
    anyhow::ensure!(args.clients > 0 && args.seconds > 0.0, "nothing to do");
    let body = std::fs::read(&args.file)?;
    let name = args
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "clip.wav".into());
    let metrics_url = format!("{}/metrics", args.url);
    let scrape = |c: &Client| -> anyhow::Result<String> { Ok(c.get(&metrics_url).send()?.text()?) };
    let admin = Client::new();
    let before = scrape(&admin)?;

    let stop = Arc::new(AtomicBool::new(false));
    let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));
    let statuses = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
    let audio_seconds = Arc::new(Mutex::new(0.0f64));
    let peak_rss = Arc::new(Mutex::new(0.0f64));
    let started = Instant::now();
    std::thread::scope(|s| {
        if let Some(pid) = args.pid {
            let (stop, peak_rss) = (Arc::clone(&stop), Arc::clone(&peak_rss));
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let (Some(now), Ok(mut peak)) = (memory_mib(pid, "VmRSS:"), peak_rss.lock())
                    {
                        *peak = peak.max(now);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
        }
        for _ in 0..args.clients {
            let (body, name, url) = (body.clone(), name.clone(), format!("{}/predict", args.url));
            let (stop, latencies, statuses, audio) = (
                Arc::clone(&stop),
                Arc::clone(&latencies),
                Arc::clone(&statuses),
                Arc::clone(&audio_seconds),
            );
            s.spawn(move || {
                let client = Client::builder()
                    .timeout(Duration::from_secs(300))
                    .build()
                    .expect("HTTP client");
                while !stop.load(Ordering::Relaxed) {
                    let form = multipart::Form::new().part(
                        "audio",
                        multipart::Part::bytes(body.clone()).file_name(name.clone()),
                    );
                    let t0 = Instant::now();
                    let outcome = client.post(&url).multipart(form).send();
                    let elapsed = t0.elapsed().as_secs_f64();
                    let key = match outcome {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            if status == 200 {
                                if let Ok(v) = r.json::<serde_json::Value>() {
                                    let d = v["duration_seconds"].as_f64().unwrap_or(0.0);
                                    if let Ok(mut a) = audio.lock() {
                                        *a += d;
                                    }
                                }
                                if let Ok(mut l) = latencies.lock() {
                                    l.push(elapsed);
                                }
                            }
                            status.to_string()
                        }
                        Err(e) => format!("error: {e}"),
                    };
                    if let Ok(mut m) = statuses.lock() {
                        *m.entry(key).or_default() += 1;
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_secs_f64(args.seconds));
        stop.store(true, Ordering::Relaxed);
    });
    let wall = started.elapsed().as_secs_f64();
    let after = scrape(&admin)?;
    let (w0, n0) = histogram(&before, "auralguard_batch_windows");
    let (w1, n1) = histogram(&after, "auralguard_batch_windows");
    let (r0, _) = histogram(&before, "auralguard_batch_requests");
    let (r1, _) = histogram(&after, "auralguard_batch_requests");
    let batches = n1 - n0;

    let mut lat = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    lat.sort_by(f64::total_cmp);
    let ok = lat.len() as f64;
    let statuses = statuses.lock().map(|m| m.clone()).unwrap_or_default();
    let audio = audio_seconds.lock().map(|a| *a).unwrap_or(0.0);
    let report = serde_json::json!({
        "clients": args.clients,
        "seconds": wall,
        "file": args.file.display().to_string(),
        "responses": statuses,
        "ok_per_second": ok / wall,
        "audio_seconds_per_second": audio / wall,
        "latency_seconds": {
            "p50": percentile(&lat, 0.50),
            "p90": percentile(&lat, 0.90),
            "p99": percentile(&lat, 0.99),
            "max": lat.last().copied().unwrap_or(f64::NAN),
        },
        "network_calls": batches,
        "mean_windows_per_call": if batches > 0.0 { (w1 - w0) / batches } else { 0.0 },
        "mean_requests_per_call": if batches > 0.0 { (r1 - r0) / batches } else { 0.0 },
        "server_peak_rss_mib": args.pid.map(|_| peak_rss.lock().map(|p| *p).unwrap_or(0.0)),
        "server_vm_hwm_mib": args.pid.and_then(|pid| memory_mib(pid, "VmHWM:")),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
