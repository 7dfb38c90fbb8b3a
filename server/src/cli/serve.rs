//! `auralguard serve`: the HTTP detector the operator deploys.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use auralguard::api::listener::ConnectionLimits;
use auralguard::api::model_watch::WatchConfig;
use auralguard::api::upload_guard::UploadPolicy;
use auralguard::api::{serve, Limits, ServeConfig};
use auralguard::batcher::BatchingConfig;
use auralguard::model::ModelSource;
use auralguard::pipeline::{Detector, DetectorOptions};
use auralguard::store::durable::DurableLog;
use auralguard::store::mongo::MongoStore;
use auralguard::store::sqlite::SqliteStore;
use auralguard::store::PredictionStore;
use mlflow_client::ModelUri;

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

    /// Most windows per network call; concurrent requests' windows share calls up to this.
    /// Resident memory grows with it (each window's activations); on CPU past 8 it buys little
    /// speed, on a GPU raise it.
    #[arg(long, env = "AURALGUARD_MAX_BATCH_SIZE", default_value_t = auralguard::pipeline::DEFAULT_BATCH_SIZE)]
    pub batch_size: usize,

    /// Longest a request waits for others to fill its batch, in milliseconds, at most 60000
    /// (0: never wait; only what is already queued is batched).
    #[arg(long, env = "AURALGUARD_MAX_BATCH_DELAY_MS", default_value_t = 2.0)]
    pub max_batch_delay_ms: f64,

    /// Windows (15 s each) allowed to wait for the network; beyond it requests get 503 with
    /// Retry-After. Bounds the queue's memory at about 240 kB per window, and is also the most
    /// windows one OIP `log_mel` tensor may carry (more: 400).
    #[arg(long, env = "AURALGUARD_MAX_QUEUE_WINDOWS", default_value_t = 256)]
    pub max_queue_windows: usize,

    /// Largest accepted upload, in megabytes.
    #[arg(long, env = "AURALGUARD_MAX_UPLOAD_MB", default_value_t = 50)]
    pub max_upload_mb: usize,

    /// Longest accepted audio, in seconds.
    #[arg(long, env = "AURALGUARD_MAX_AUDIO_SECONDS", default_value_t = 600.0)]
    pub max_audio_seconds: f64,

    /// Requests decoded and featurised at once; further requests get 503 with Retry-After.
    #[arg(long, env = "AURALGUARD_MAX_CONCURRENT", default_value_t = 8)]
    pub max_concurrent: usize,

    /// Prediction log file (embedded SQLite; created if missing).
    #[arg(
        long,
        env = "AURALGUARD_STORE_PATH",
        default_value = "auralguard-predictions.db"
    )]
    pub store_path: std::path::PathBuf,

    /// Log predictions to MongoDB instead of the embedded file (`mongodb://…` or
    /// `mongodb+srv://…`; database from the URI, else `auralguard`; collection `predictions`).
    #[arg(long, env = "MONGODB_URI", hide_env_values = true)]
    pub mongodb_uri: Option<String>,

    /// Where predictions wait while MongoDB is unreachable (replayed in order when it returns,
    /// also after a restart). Default: `auralguard-spool` beside `--store-path`.
    #[arg(long, env = "AURALGUARD_SPOOL_DIR")]
    pub spool_dir: Option<std::path::PathBuf>,

    /// Largest on-disk spool, in megabytes; beyond it predictions get 503 `log_unavailable`
    /// (or, with `--serve-unlogged`, an answer whose record is not kept).
    #[arg(long, env = "AURALGUARD_SPOOL_MAX_MB", default_value_t = 256)]
    pub spool_max_mb: u64,

    /// Do not log predictions (`/statistics` and `/predictions` then answer 404).
    #[arg(long, env = "AURALGUARD_NO_STORE")]
    pub no_store: bool,

    /// When a prediction's record cannot be kept (disk full, spool full, database refusing),
    /// still answer it, with a `not_logged` warning and `auralguard_store_write_failures_total`
    /// counting it. Default: refuse with 503 `log_unavailable`, so that every answered
    /// prediction is in the log.
    #[arg(long, env = "AURALGUARD_SERVE_UNLOGGED")]
    pub serve_unlogged: bool,

    /// Require this key (header `Authorization: Bearer <key>` or `X-API-Key: <key>`) on every
    /// route except /health, /ready, /metrics, the OIP health routes and the web page.
    #[arg(long, env = "AURALGUARD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// With `--model models:/NAME@ALIAS`: seconds between checks of the alias (0.1 to 86400,
    /// or 0 to never check); the server switches to the version it points at without failing
    /// a request.
    #[arg(long, env = "AURALGUARD_MODEL_POLL_SECONDS", default_value_t = 30.0)]
    pub model_poll_seconds: f64,

    /// Per-request time budget, in seconds (at most 86400).
    #[arg(
        long,
        env = "AURALGUARD_REQUEST_TIMEOUT_SECONDS",
        default_value_t = 120.0
    )]
    pub request_timeout_seconds: f64,

    /// Open connections at once; a connection beyond it is answered 503 (Retry-After) and
    /// closed.
    #[arg(long, env = "AURALGUARD_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,

    /// Seconds a client has to send a request's headers (0.1 to 3600); also how long an idle
    /// keep-alive connection stays open.
    #[arg(
        long,
        env = "AURALGUARD_HEADER_TIMEOUT_SECONDS",
        default_value_t = 10.0
    )]
    pub header_timeout_seconds: f64,

    /// Slowest accepted upload, as an average in bytes per second from the start of the
    /// request once `--upload-grace-seconds` have passed; a slower one gets 408 `slow_upload`
    /// (0 turns the check off).
    #[arg(
        long,
        env = "AURALGUARD_MIN_UPLOAD_BYTES_PER_SECOND",
        default_value_t = 16_384
    )]
    pub min_upload_bytes_per_second: u64,

    /// Seconds an upload may take before `--min-upload-bytes-per-second` applies (0 to 3600).
    #[arg(long, env = "AURALGUARD_UPLOAD_GRACE_SECONDS", default_value_t = 10.0)]
    pub upload_grace_seconds: f64,

    /// Upload bytes all requests together may hold while they are read and judged, in
    /// megabytes; an upload that would go over gets 503 with Retry-After.
    #[arg(long, env = "AURALGUARD_MAX_BUFFERED_UPLOAD_MB", default_value_t = 512)]
    pub max_buffered_upload_mb: u64,

    /// Seconds in-flight requests get to finish after SIGTERM (0 to 3600) before their
    /// connections are closed; keep it below the pod's terminationGracePeriodSeconds.
    #[arg(long, env = "AURALGUARD_DRAIN_SECONDS", default_value_t = 20.0)]
    pub drain_seconds: f64,

    /// Seconds between returns of malloc's free pages to the kernel (0 to 3600; 0: never).
    /// Keeps resident memory from drifting up with heap fragmentation under steady load.
    #[arg(long, env = "AURALGUARD_MALLOC_TRIM_SECONDS", default_value_t = 5.0)]
    pub malloc_trim_seconds: f64,
}

/// The prediction log the flags ask for: none, MongoDB behind the on-disk spool, or SQLite.
fn open_store(args: &ServeArgs) -> anyhow::Result<Option<Arc<dyn PredictionStore>>> {
    if args.no_store {
        return Ok(None);
    }
    let Some(uri) = &args.mongodb_uri else {
        return Ok(Some(Arc::new(SqliteStore::open(&args.store_path)?)));
    };
    let spool_dir = args.spool_dir.clone().unwrap_or_else(|| {
        args.store_path
            .parent()
            .unwrap_or(std::path::Path::new(""))
            .join("auralguard-spool")
    });
    let mongo: Arc<dyn PredictionStore> = Arc::new(MongoStore::connect(uri)?);
    let log = DurableLog::open(mongo, &spool_dir, args.spool_max_mb.saturating_mul(1 << 20))?;
    Ok(Some(Arc::new(log)))
}

/// The longest time budget a flag accepts: a day.
const DAY_SECONDS: f64 = 86_400.0;

/// A flag given in seconds, as a [`Duration`]; a value outside `range` (or NaN, or infinite) is a
/// clear error at start-up, never a panic in `Duration::from_secs_f64` or a zero-length timer.
fn duration_flag(
    flag: &str,
    seconds: f64,
    range: std::ops::RangeInclusive<f64>,
) -> anyhow::Result<Duration> {
    anyhow::ensure!(
        seconds.is_finite() && range.contains(&seconds),
        "{flag} is out of range: give {} to {} seconds",
        range.start(),
        range.end()
    );
    Ok(Duration::from_secs_f64(seconds))
}

/// Runs `serve`.
pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.max_concurrent > 0,
        "--max-concurrent must be at least 1"
    );
    anyhow::ensure!(
        args.max_batch_delay_ms.is_finite() && (0.0..=60_000.0).contains(&args.max_batch_delay_ms),
        "--max-batch-delay-ms is out of range: give 0 to 60000 milliseconds"
    );
    let max_batch_delay = Duration::from_secs_f64(args.max_batch_delay_ms / 1000.0);
    anyhow::ensure!(
        args.api_key.as_ref().is_none_or(|k| !k.trim().is_empty()),
        "--api-key must not be empty (leave it unset for an open API)"
    );
    anyhow::ensure!(
        args.max_queue_windows > 0,
        "--max-queue-windows must be at least 1"
    );
    let request_timeout = duration_flag(
        "--request-timeout-seconds",
        args.request_timeout_seconds,
        0.001..=DAY_SECONDS,
    )?;
    let header_read_timeout = duration_flag(
        "--header-timeout-seconds",
        args.header_timeout_seconds,
        0.1..=3600.0,
    )?;
    let upload_grace = duration_flag(
        "--upload-grace-seconds",
        args.upload_grace_seconds,
        0.0..=3600.0,
    )?;
    let drain_timeout = duration_flag("--drain-seconds", args.drain_seconds, 0.0..=3600.0)?;
    // 0 turns the trimmer off; anything else at least 10 ms.
    let malloc_trim = (args.malloc_trim_seconds != 0.0)
        .then(|| {
            duration_flag(
                "--malloc-trim-seconds",
                args.malloc_trim_seconds,
                0.01..=3600.0,
            )
        })
        .transpose()?;
    anyhow::ensure!(
        args.max_connections > 0,
        "--max-connections must be at least 1"
    );
    anyhow::ensure!(
        args.max_buffered_upload_mb >= args.max_upload_mb as u64,
        "--max-buffered-upload-mb ({}) must be at least --max-upload-mb ({}), or no upload of \
         the largest accepted size could ever be read",
        args.max_buffered_upload_mb,
        args.max_upload_mb
    );
    // 0 turns polling off; anything else at least 100 ms (a tighter loop only loads MLflow).
    let model_poll = if args.model_poll_seconds == 0.0 {
        None
    } else {
        Some(duration_flag(
            "--model-poll-seconds",
            args.model_poll_seconds,
            0.1..=DAY_SECONDS,
        )?)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let options = DetectorOptions {
        batch_size: Some(args.batch_size),
        max_duration_seconds: Some(args.max_audio_seconds),
        ..Default::default()
    };
    let batching = BatchingConfig {
        max_delay: max_batch_delay,
        max_queued_windows: args.max_queue_windows,
    };
    let (detector, registry_model, watch) = match &args.model.model {
        ModelSource::Folder(_) => (Detector::new(args.model.load()?, &options)?, None, None),
        ModelSource::Registry(uri) => {
            let registry = args.model.registry.connect()?;
            let fetched = runtime.block_on(registry.fetch(uri))?;
            let model = fetched.load(&super::open_device(&args.model.device)?)?;
            tracing::info!(uri = %uri, serving = %fetched.uri, "loaded model from the registry");
            let watch = match (uri, model_poll) {
                (ModelUri::Alias { .. }, Some(interval)) => Some(WatchConfig {
                    uri: uri.clone(),
                    registry,
                    interval,
                    device: model.device.clone(),
                    options: options.clone(),
                    batching,
                }),
                _ => None,
            };
            (
                Detector::new(model, &options)?,
                Some((uri.clone(), fetched.version)),
                watch,
            )
        }
    };
    let store = open_store(&args)?;
    let config = ServeConfig {
        addr: SocketAddr::new(args.host, args.port),
        limits: Limits {
            max_upload_bytes: args.max_upload_mb.saturating_mul(1024 * 1024),
            max_audio_seconds: args.max_audio_seconds,
            max_concurrent: args.max_concurrent,
            request_timeout,
            max_tensor_windows: args.max_queue_windows,
        },
        device: args.model.device.clone(),
        store,
        batching,
        api_key: args.api_key.clone(),
        registry_model,
        watch,
        connections: ConnectionLimits {
            max_connections: args.max_connections,
            header_read_timeout,
            drain_timeout,
        },
        uploads: UploadPolicy {
            min_bytes_per_second: args.min_upload_bytes_per_second,
            grace: upload_grace,
            max_buffered_bytes: args.max_buffered_upload_mb.saturating_mul(1 << 20),
        },
        serve_unlogged: args.serve_unlogged,
    };
    if let Some(every) = malloc_trim {
        if super::malloc::start_trimmer(every) {
            tracing::info!(
                every_seconds = every.as_secs_f64(),
                "returning free malloc pages periodically"
            );
        }
    }
    runtime.block_on(serve(detector, config, |addr| {
        // One machine-readable line on stdout so scripts and tests learn the port.
        println!("listening on http://{addr}");
    }))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_flags_refuse_what_would_panic_or_spin() {
        let day = 0.001..=DAY_SECONDS;
        assert_eq!(
            duration_flag("--x", 2.5, day.clone()).unwrap(),
            Duration::from_millis(2500)
        );
        for bad in [f64::NAN, f64::INFINITY, -1.0, 0.0, 1e-10, 1e20] {
            let e = duration_flag("--x", bad, day.clone()).unwrap_err();
            assert!(e.to_string().contains("--x is out of range"), "{bad}: {e}");
        }
    }
}
