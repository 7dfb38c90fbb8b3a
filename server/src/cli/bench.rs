//! `auralguard bench`: prints per-stage timings with same-run baselines and peak memory.

use std::path::PathBuf;
use std::process::ExitCode;

use auralguard::bench::{run as run_bench, BenchOptions};

/// Arguments of `bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Model package to benchmark.
    #[arg(short, long, env = "AURALGUARD_MODEL")]
    pub model: PathBuf,

    /// Windows (of the model's length) of synthetic audio per measurement.
    #[arg(long, default_value_t = 64)]
    pub windows: usize,

    /// Windows per network call in the batched measurements.
    #[arg(long, default_value_t = auralguard::pipeline::DEFAULT_BATCH_SIZE)]
    pub batch_size: usize,

    /// Windows pushed through the slow candle-conv2d baseline.
    #[arg(long, default_value_t = 4)]
    pub baseline_windows: usize,

    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `bench`.
pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.windows > 0, "--windows must be at least 1");
    let scratch = std::env::temp_dir().join(format!("auralguard-bench-{}", std::process::id()));
    let report = run_bench(
        &BenchOptions {
            model_dir: args.model,
            windows: args.windows,
            batch_size: args.batch_size,
            baseline_windows: args.baseline_windows,
            scratch_dir: scratch.clone(),
        },
        |stage| eprintln!("… {stage}"),
    );
    let _ = std::fs::remove_dir_all(&scratch);
    let report = report?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let p = &report.peaks;
    println!(
        "auralguard bench — {} threads, batch {}, {} s windows",
        report.threads, report.batch_size, report.window_seconds
    );
    println!(
        "machine ceilings (measured now): {:.1} GFLOP/s one thread, {:.1} on {} threads ({}), \
         copy {:.1} GB/s",
        p.gflops_one_thread, p.gflops_all_threads, p.threads, p.simd, p.copy_gb_per_s
    );
    println!(
        "{:<34} {:>10} {:>10} {:>7}  {:<28} achieved (of ceiling)",
        "stage", "ms/window", "baseline", "ratio", "baseline"
    );
    for t in &report.timings {
        let (base, ratio) = match (t.baseline_ms_per_window, t.speedup()) {
            (Some(b), Some(r)) => (format!("{b:.3}"), format!("{r:.2}×")),
            _ => (String::new(), String::new()),
        };
        let achieved = t
            .achieved
            .as_ref()
            .map(|a| {
                format!(
                    "{:.2} {} ({:.0} % of {:.1})",
                    a.rate,
                    a.unit,
                    100.0 * a.of_ceiling(),
                    a.ceiling
                )
            })
            .unwrap_or_default();
        println!(
            "{:<34} {:>10.3} {:>10} {:>7}  {:<28} {}",
            t.name,
            t.ms_per_window,
            base,
            ratio,
            t.baseline.as_deref().unwrap_or(""),
            achieved
        );
    }
    println!(
        "end to end (decode → verdict)       {:.1} windows/s over {} windows",
        report.end_to_end_windows_per_second, report.windows
    );
    if let Some(rss) = report.peak_rss_mib {
        println!("peak RSS                            {rss:.0} MiB");
    }
    Ok(ExitCode::SUCCESS)
}
