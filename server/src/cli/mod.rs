//! Argument definitions and dispatch for the `auralguard` binary.

mod bench;
mod import;
mod inspect;
mod predict;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use auralguard::model::{DeviceSpec, LoadedModel, ModelPackage};
use clap::{Parser, Subcommand};

/// Detects AI-generated (deepfake) speech in audio files.
#[derive(Debug, Parser)]
#[command(name = "auralguard", version, about, long_about = None)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace). `RUST_LOG` overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Judge audio files or folders offline and print verdicts (JSON or CSV).
    Predict(predict::PredictArgs),
    /// Serve the HTTP API (POST /predict, /health, /ready, /metrics) on one port.
    Serve(serve::ServeArgs),
    /// Convert the original service's Keras model (.h5 or .keras) into a model package.
    #[command(name = "import-keras")]
    ImportKeras(import::ImportArgs),
    /// Show a model package's manifest, parameter count and input shape.
    Inspect(inspect::InspectArgs),
    /// Measure decode, feature and network speed and peak memory on this machine.
    Bench(bench::BenchArgs),
}

/// Options shared by every subcommand that loads a model.
#[derive(Debug, clap::Args)]
pub struct ModelArgs {
    /// Model package folder (auralguard.json + model.safetensors).
    #[arg(short, long, env = "AURALGUARD_MODEL")]
    pub model: PathBuf,

    /// Compute device: cpu, cuda or cuda:N (CUDA needs a build with `--features cuda`).
    #[arg(long, env = "AURALGUARD_DEVICE", default_value = "cpu")]
    pub device: String,
}

impl ModelArgs {
    /// Opens, validates and loads the model onto the requested device.
    pub fn load(&self) -> anyhow::Result<LoadedModel> {
        let device: DeviceSpec = self.device.parse()?;
        let package = ModelPackage::open(&self.model)?;
        Ok(package.load(&device.open()?)?)
    }
}

/// Installs the tracing subscriber: human-readable on a terminal, JSON otherwise. A server logs
/// at info by default (one line per request); the offline commands only warn, so their stdout and
/// stderr stay readable.
pub fn init_logging(verbose: u8, command: &Command) {
    use std::io::IsTerminal;
    let default = match (verbose, command) {
        (0, Command::Serve(_)) => "info",
        (0, _) => "warn",
        (1, _) => "debug",
        _ => "trace",
    };
    // symphonia logs every failed format probe at ERROR; our typed errors already say it better.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{default},symphonia=off")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::io::stderr().is_terminal() {
        builder.init();
    } else {
        builder.json().init();
    }
}

/// Runs the chosen subcommand.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Predict(a) => predict::run(a),
        Command::Serve(a) => serve::run(a),
        Command::ImportKeras(a) => import::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Bench(a) => bench::run(a),
    }
}
