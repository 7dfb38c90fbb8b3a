//! A small, typed, async client of the MLflow 2.x/3.x REST API, shared by the AuralGuard detector
//! (load `models:/...`), its trainer (record runs, register versions) and the Kubernetes operator
//! (resolve aliases, pre-fetch models).
//!
//! # How the pieces meet
//!
//! Everything goes through one [`MlflowClient`], built from a [`ClientConfig`] (explicitly, or
//! from the same `MLFLOW_TRACKING_*` variables MLflow's Python client reads). The client is a
//! cheap-to-clone handle over one HTTP transport (`http`), which adds credentials and time-outs,
//! retries what is safe to retry, and turns MLflow's JSON errors into one [`Error`] enum. The
//! calls are grouped by topic, each module adding methods to the client:
//!
//! | module | job |
//! |---|---|
//! | `tracking` | experiments, runs, status, metric history |
//! | `batch` | [`RunBatch`] and its splitting into MLflow-sized `log-batch` calls |
//! | `artifact_location` | [`ArtifactLocation`]: artifact URIs as paths behind the proxy |
//! | `artifacts` | upload / list / download through the tracking server's artifact proxy |
//! | `registry` | registered models, versions, aliases, [`MlflowClient::resolve`] |
//! | `logged_models` | MLflow 3 logged models (`models:/m-<id>`) |
//! | `model_uri` | [`ModelUri`]: `models:/NAME/VERSION` and `models:/NAME@ALIAS` |
//! | `cache` | [`ModelCache`]: local model folders, filled atomically under a lock |
//! | `fetch` | [`MlflowClient::download_model`]: resolve + locate + download into the cache |
//!
//! # Training: record a run and register the model
//!
//! ```no_run
//! # async fn train(model_dir: &std::path::Path) -> mlflow_client::Result<()> {
//! use mlflow_client::{CreateModelVersion, CreateRun, MlflowClient, RunBatch, RunStatus};
//!
//! let client = MlflowClient::from_env()?;
//! let experiment = client.get_or_create_experiment("auralguard").await?;
//! let run = client.create_run(&CreateRun::new(&experiment.experiment_id).name("cnn-e20")).await?;
//! let run_id = &run.info.run_id;
//! client.log_batch(run_id, &RunBatch::new().param("epochs", 20).metric("val_loss", 0.12, 20)).await?;
//! let uploaded = client.log_artifacts(run_id, model_dir, "model").await?;
//! client.end_run(run_id, RunStatus::Finished).await?;
//!
//! client.get_or_create_registered_model("detector").await?;
//! let version = client
//!     .create_model_version(&CreateModelVersion::from_run("detector", &uploaded.uri, run_id))
//!     .await?;
//! client.set_alias("detector", "champion", version.number()?).await?;
//! # Ok(()) }
//! ```
//!
//! # Serving: load what an alias points at
//!
//! ```no_run
//! # async fn serve() -> mlflow_client::Result<()> {
//! use mlflow_client::{MlflowClient, ModelCache, ModelUri};
//!
//! let client = MlflowClient::from_env()?;
//! let cache = ModelCache::new("/var/cache/auralguard/models");
//! let uri: ModelUri = "models:/detector@champion".parse()?;
//! match client.download_model(&uri, &cache).await {
//!     Ok(model) => println!("serving {} from {}", model.uri(), model.dir.display()),
//!     // MLflow is down: keep serving the model already loaded and try again later.
//!     Err(e) if e.is_transient() => eprintln!("{e}"),
//!     Err(e) => return Err(e),
//! }
//! # Ok(()) }
//! ```
//!
//! Only plain `http://` tracking URIs work by default; `https://` needs the `rustls` feature.

#![warn(missing_docs)]

mod artifact_location;
mod artifacts;
mod batch;
mod cache;
mod client;
mod config;
mod error;
mod fetch;
mod http;
mod logged_models;
mod model_uri;
mod registry;
mod tracking;
mod wire;

pub use artifact_location::ArtifactLocation;
pub use artifacts::{FileInfo, Transferred};
pub use batch::{
    now_millis, Metric, Param, RunBatch, Tag, MAX_ENTRIES_PER_BATCH, MAX_METRICS_PER_BATCH,
    MAX_PARAMS_PER_BATCH, MAX_TAGS_PER_BATCH,
};
pub use cache::{CachedModel, ModelCache, MANIFEST_FILE, WEIGHTS_FILE};
pub use client::MlflowClient;
pub use config::{
    Auth, ClientConfig, RetryPolicy, DEFAULT_MAX_DOWNLOAD_BYTES, ENV_MAX_RETRIES, ENV_PASSWORD,
    ENV_TIMEOUT, ENV_TOKEN, ENV_TRACKING_URI, ENV_USERNAME,
};
pub use error::{decode_error_response, Error, Result};
pub use logged_models::{LoggedModel, LoggedModelInfo};
pub use model_uri::ModelUri;
pub use registry::{
    CreateModelVersion, ModelVersion, ModelVersionStatus, RegisteredModel, RegisteredModelAlias,
};
pub use tracking::{CreateRun, Experiment, Run, RunData, RunInfo, RunStatus};
