//! `auralguard inspect`: what is in a model package, without running it.

use std::path::PathBuf;
use std::process::ExitCode;

use auralguard::model::{arch, ModelPackage};
use candle_core::Device;

/// Arguments of `inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// Model package folder.
    pub package: PathBuf,

    /// Print machine-readable JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `inspect` (loads the weights on the CPU to validate them and count parameters).
pub fn run(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let pkg = ModelPackage::open(&args.package)?;
    let loaded = pkg.load(&Device::Cpu)?;
    let m = pkg.manifest();
    let (n_mels, frames) = pkg.input_shape();
    let a = arch::lookup(&m.architecture.name)?;
    let params = loaded.classifier.parameter_count();
    if args.json {
        let v = serde_json::json!({
            "path": pkg.dir().display().to_string(),
            "manifest": m,
            "parameters": params,
            "input_shape": [n_mels, frames, 1],
            "architecture_description": a.description(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("package       {}", pkg.dir().display());
    println!("model         {} (version {})", m.name, m.version);
    println!(
        "architecture  {} r{}: {}",
        m.architecture.name,
        m.architecture.version,
        a.description()
    );
    println!("parameters    {params}");
    println!("input shape   {n_mels} × {frames} × 1 (mels × frames × channels)");
    let f = &m.features;
    println!(
        "features      log-mel @ {} Hz, n_fft {}, hop {}, {} mels {}–{} Hz, top_db {:?}",
        f.sample_rate, f.n_fft, f.hop_length, f.n_mels, f.fmin, f.fmax, f.top_db
    );
    println!(
        "windows       {} s every {} s (drop a final window under {} s)",
        m.window.seconds, m.window.hop_seconds, m.window.min_final_seconds
    );
    println!(
        "decision      P({}) ≥ {} → {}, else {}; windows combined by {:?}",
        m.labels[1], m.threshold, m.labels[1], m.labels[0], m.aggregation
    );
    if let Some(d) = &m.description {
        println!("description   {d}");
    }
    for (k, v) in &m.training {
        println!("training      {k} = {v}");
    }
    for (k, v) in &m.metrics {
        println!("metric        {k} = {v}");
    }
    Ok(ExitCode::SUCCESS)
}
