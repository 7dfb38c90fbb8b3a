//! `auralguard serve`: the HTTP detector the operator deploys.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use auralguard::api::{serve, Limits, ServeConfig};
use auralguard::pipeline::{Detector, DetectorOptions};

use super::ModelArgs;

/// Arguments of `serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    /// Address to listen on.
    #[arg(long, env = "AURALGUARD_HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,

    /// Port to listen on (API, /health, /ready and /metrics share it).
    #[arg(long, env = "AURALGUARD_PORT", default_value_t = 8080)]
    pub port: u16,

    /// Windows per network call.
    #[arg(long, env = "AURALGUARD_MAX_BATCH_SIZE", default_value_t = auralguard::pipeline::DEFAULT_BATCH_SIZE)]
    pub batch_size: usize,

    /// Largest accepted upload, in megabytes.
    #[arg(long, env = "AURALGUARD_MAX_UPLOAD_MB", default_value_t = 50)]
    pub max_upload_mb: usize,

    /// Longest accepted audio, in seconds.
    #[arg(long, env = "AURALGUARD_MAX_AUDIO_SECONDS", default_value_t = 600.0)]
    pub max_audio_seconds: f64,

    /// Requests judged at once; further requests get 503 with Retry-After.
    #[arg(long, env = "AURALGUARD_MAX_CONCURRENT", default_value_t = 8)]
    pub max_concurrent: usize,

    /// Prediction log file (embedded SQLite; created if missing).
    #[arg(
        long,
        env = "AURALGUARD_STORE_PATH",
        default_value = "auralguard-predictions.db"
    )]
    pub store_path: std::path::PathBuf,

    /// Do not log predictions (`/statistics` and `/predictions` then answer 404).
    #[arg(long, env = "AURALGUARD_NO_STORE")]
    pub no_store: bool,

    /// Per-request time budget, in seconds.
    #[arg(
        long,
        env = "AURALGUARD_REQUEST_TIMEOUT_SECONDS",
        default_value_t = 120.0
    )]
    pub request_timeout_seconds: f64,
}

/// Runs `serve`.
pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.max_concurrent > 0,
        "--max-concurrent must be at least 1"
    );
    anyhow::ensure!(
        args.request_timeout_seconds > 0.0,
        "--request-timeout-seconds must be positive"
    );
    let model = args.model.load()?;
    let detector = Detector::new(
        model,
        &DetectorOptions {
            batch_size: Some(args.batch_size),
            max_duration_seconds: Some(args.max_audio_seconds),
            ..Default::default()
        },
    )?;
    let store: Option<std::sync::Arc<dyn auralguard::store::PredictionStore>> = if args.no_store {
        None
    } else {
        Some(std::sync::Arc::new(
            auralguard::store::sqlite::SqliteStore::open(&args.store_path)?,
        ))
    };
    let config = ServeConfig {
        addr: SocketAddr::new(args.host, args.port),
        limits: Limits {
            max_upload_bytes: args.max_upload_mb.saturating_mul(1024 * 1024),
            max_audio_seconds: args.max_audio_seconds,
            max_concurrent: args.max_concurrent,
            request_timeout: Duration::from_secs_f64(args.request_timeout_seconds),
        },
        device: args.model.device.clone(),
        store,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(detector, config, |addr| {
        // One machine-readable line on stdout so scripts and tests learn the port.
        println!("listening on http://{addr}");
    }))?;
    Ok(ExitCode::SUCCESS)
}
