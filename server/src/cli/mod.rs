//! Argument definitions and dispatch for the `auralguard` binary.

mod bench;
mod crossval;
mod encoder;
mod eval;
mod import;
mod inspect;
pub mod malloc;
mod predict;
mod registry;
mod serve;
mod tracking;
mod train;

use std::path::PathBuf;
use std::process::ExitCode;

use auralguard::model::{DeviceSpec, LoadedModel, ModelPackage, ModelRegistry, ModelSource};
use clap::{Parser, Subcommand};

/// Detects AI-generated (deepfake) speech in audio files.
#[derive(Debug, Parser)]
#[command(name = "auralguard", version, about, long_about = None)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace). `RUST_LOG` overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Most glibc malloc arenas (0: glibc's default of 8 per core). Few arenas keep a busy
    /// server's resident memory flat; `MALLOC_ARENA_MAX`, if set, takes precedence.
    #[arg(long, env = "AURALGUARD_MALLOC_ARENAS", default_value_t = 2, global = true,
          value_parser = clap::value_parser!(u32).range(0..=1024))]
    pub malloc_arenas: u32,

    /// Most MiB of freed large blocks (128 KiB and up) kept for reuse instead of returned to the
    /// kernel (0 to 65536; 0: return each at once, at a cost in page faults). Reuse keeps the
    /// heap from fragmenting; what stays unused for a whole second goes back anyway.
    #[arg(long, env = "AURALGUARD_LARGE_BLOCK_CACHE_MIB", default_value_t = 128, global = true,
          value_parser = clap::value_parser!(u32).range(0..=65536))]
    pub large_block_cache_mib: u32,

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
    /// Train a model on a labelled CSV (optionally tracked in MLflow and registered).
    Train(train::TrainArgs),
    /// Score a model on a labelled CSV: accuracy, F1, ROC-AUC, EER, per-source breakdown.
    Eval(eval::EvalArgs),
    /// Leave-one-speaker/generator/family-out cross-validation: train once per held-out group
    /// and report how the recipe does on what it never saw (the numbers to choose a model by).
    Crossval(crossval::CrossvalArgs),
    /// List registered models and move their aliases in the MLflow Model Registry.
    Registry(registry::RegistryCommandArgs),
    /// Install and check the pretrained Whisper encoders of the `whisper` front-end.
    Encoder(encoder::EncoderArgs),
}

/// Options shared by every subcommand that loads a model.
#[derive(Debug, clap::Args)]
pub struct ModelArgs {
    /// Model: a package folder (auralguard.json + model.safetensors), `models:/NAME/VERSION` or
    /// `models:/NAME@ALIAS` (resolved through the MLflow Model Registry and cached locally).
    #[arg(short, long, env = "AURALGUARD_MODEL")]
    pub model: ModelSource,

    /// Compute device: cpu, cuda or cuda:N (CUDA needs a build with `--features cuda`).
    #[arg(long, env = "AURALGUARD_DEVICE", default_value = "cpu")]
    pub device: String,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Where the MLflow registry is and where its models are cached.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryArgs {
    /// MLflow tracking server, for `models:/` URIs (credentials: `MLFLOW_TRACKING_TOKEN` or
    /// `MLFLOW_TRACKING_USERNAME` + `MLFLOW_TRACKING_PASSWORD`).
    #[arg(long, env = "MLFLOW_TRACKING_URI")]
    pub mlflow_uri: Option<String>,

    /// Folder that `models:/` downloads are cached in, keyed by name and version
    /// (default: ~/.cache/auralguard/models).
    #[arg(long, env = "AURALGUARD_MODEL_CACHE")]
    pub model_cache: Option<PathBuf>,

    /// Most megabytes one registry download (a model version's whole artifact folder) may bring;
    /// a larger version is refused before it fills the cache volume.
    #[arg(long, env = "AURALGUARD_MAX_MODEL_MB", default_value_t = 2048,
          value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub max_model_mb: u64,
}

impl RegistryArgs {
    /// A client of the configured registry.
    pub fn connect(&self) -> anyhow::Result<ModelRegistry> {
        let cache = self
            .model_cache
            .clone()
            .unwrap_or_else(auralguard::model::registry::default_cache_dir);
        let max_bytes = self.max_model_mb.saturating_mul(1 << 20);
        ModelRegistry::connect(self.mlflow_uri.as_deref(), &cache, max_bytes).map_err(|e| {
            anyhow::anyhow!("{e} (models:/ URIs need --mlflow-uri or MLFLOW_TRACKING_URI)")
        })
    }
}

/// A small runtime for the synchronous subcommands' registry calls.
pub fn block_on<F: std::future::Future>(future: F) -> anyhow::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(runtime.block_on(future))
}

impl ModelArgs {
    /// Opens, validates and loads the model onto the requested device. A registry model is
    /// downloaded into the cache first and carries its registered name and version number
    /// ([`auralguard::model::FetchedModel::load`]).
    pub fn load(&self) -> anyhow::Result<LoadedModel> {
        let device = open_device(&self.device)?;
        match &self.model {
            ModelSource::Folder(dir) => Ok(ModelPackage::open(dir)?.load(&device)?),
            ModelSource::Registry(uri) => {
                let fetched = block_on(self.registry.connect()?.fetch(uri))??;
                Ok(fetched.load(&device)?)
            }
        }
    }
}

/// The device a `--device` value names (`cpu`, `cuda`, `cuda:N`), opened.
pub fn open_device(spec: &str) -> anyhow::Result<candle_core::Device> {
    Ok(spec.parse::<DeviceSpec>()?.open()?)
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
        Command::Train(a) => train::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Crossval(a) => crossval::run(a),
        Command::Registry(a) => registry::run(a),
        Command::Encoder(a) => encoder::run(a),
    }
}
