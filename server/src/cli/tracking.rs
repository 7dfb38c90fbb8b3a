//! Recording a training run in MLflow: the run, its params and per-epoch metrics, the model
//! package (as an MLflow model with an `auralguard` flavor) and plots as artifacts, and
//! optionally a new registered model version.
//!
//! The trainer is synchronous; each call here blocks on a small runtime of its own. A run is
//! created before the first epoch, so it is visible (RUNNING) while training goes on, and it
//! always ends: FINISHED after the upload, FAILED when training fails.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use auralguard::model::{Manifest, ModelRegistry};
use auralguard::train::trainer::EpochRecord;
use mlflow_client::{CreateModelVersion, CreateRun, MlflowClient, RunBatch, RunStatus};

/// MLflow options of `train`.
#[derive(Debug, Clone, clap::Args)]
pub struct TrackingArgs {
    /// MLflow tracking server: record the run (params, per-epoch metrics, model and plots).
    /// Without it nothing is recorded.
    #[arg(long, env = "MLFLOW_TRACKING_URI")]
    pub mlflow_uri: Option<String>,

    /// MLflow experiment (created when missing).
    #[arg(long, default_value = "auralguard")]
    pub experiment: String,

    /// Run name (default: MLflow's generated one).
    #[arg(long)]
    pub run_name: Option<String>,

    /// Register the trained model as a new version of this registered model (needs MLflow).
    #[arg(long, value_name = "NAME")]
    pub register: Option<String>,
}

/// An MLflow run being recorded.
pub struct RunTracker {
    runtime: tokio::runtime::Runtime,
    client: MlflowClient,
    run_id: String,
    ended: bool,
}

impl RunTracker {
    /// Creates the experiment (if needed) and the run; `None` when no tracking server is set.
    pub fn start(args: &TrackingArgs, model_name: &str) -> anyhow::Result<Option<Self>> {
        let Some(uri) = args.mlflow_uri.as_deref() else {
            anyhow::ensure!(
                args.register.is_none(),
                "--register needs an MLflow server (--mlflow-uri or MLFLOW_TRACKING_URI)"
            );
            return Ok(None);
        };
        let registry = ModelRegistry::connect(
            Some(uri),
            Path::new("."),
            mlflow_client::DEFAULT_MAX_DOWNLOAD_BYTES,
        )?;
        let client = registry.client().clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let run_id = runtime.block_on(async {
            let exp = client.get_or_create_experiment(&args.experiment).await?;
            let mut req = CreateRun::new(&exp.experiment_id)
                .tag("auralguard.model_name", model_name)
                .tag("mlflow.source.name", "auralguard train")
                .tag("mlflow.source.type", "LOCAL");
            if let Some(n) = &args.run_name {
                req = req.name(n);
            }
            if let Some(commit) = super::train::git_commit() {
                req = req.tag("mlflow.source.git.commit", commit);
            }
            let run = client.create_run(&req).await?;
            Ok::<_, mlflow_client::Error>(run.info.run_id)
        })?;
        eprintln!(
            "MLflow run {run_id} in experiment '{}' at {uri}",
            args.experiment
        );
        Ok(Some(Self {
            runtime,
            client,
            run_id,
            ended: false,
        }))
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    fn log(&self, batch: RunBatch) -> anyhow::Result<()> {
        self.runtime
            .block_on(self.client.log_batch(&self.run_id, &batch))
            .context("logging to MLflow")
    }

    /// Logs the run's parameters.
    pub fn log_params(&self, params: &[(String, String)]) -> anyhow::Result<()> {
        let batch = params
            .iter()
            .fold(RunBatch::new(), |b, (k, v)| b.param(k, v));
        self.log(batch)
    }

    /// Sets tags on the run.
    pub fn set_tags(&self, tags: &[(&str, &str)]) -> anyhow::Result<()> {
        let batch = tags.iter().fold(RunBatch::new(), |b, (k, v)| b.tag(*k, *v));
        self.log(batch)
    }

    /// One epoch's metrics, at step = epoch (one log-batch call).
    pub fn log_epoch(&self, r: &EpochRecord) -> anyhow::Result<()> {
        let step = r.epoch as i64;
        self.log(
            RunBatch::new()
                .metric("train_loss", r.train_loss, step)
                .metric("train_accuracy", r.train_accuracy, step)
                .metric("val_loss", r.val_loss, step)
                .metric("val_accuracy", r.val_accuracy, step)
                .metric("epoch_seconds", r.seconds, step),
        )
    }

    /// The kept model's final metrics.
    pub fn log_final(&self, metrics: &BTreeMap<String, f64>) -> anyhow::Result<()> {
        let batch = metrics
            .iter()
            .filter(|(_, v)| v.is_finite())
            .fold(RunBatch::new(), |b, (k, v)| {
                b.metric(format!("best_{k}"), *v, 0)
            });
        self.log(batch)
    }

    /// Uploads the package folder as the run's `model` artifact, ends the run FINISHED and,
    /// with `register`, creates a new version of that registered model from it.
    ///
    /// The run is FAILED only when the upload fails (the run then has no model). A registration
    /// that fails afterwards leaves the run FINISHED, since its model is there to register by
    /// hand, and the error says it was the registration.
    pub fn finish(&mut self, package: &Path, register: Option<&str>) -> anyhow::Result<()> {
        let (client, run_id) = (&self.client, self.run_id.clone());
        let uploaded = self.runtime.block_on(async {
            let uploaded = client.log_artifacts(&run_id, package, "model").await?;
            client.end_run(&run_id, RunStatus::Finished).await?;
            Ok::<_, mlflow_client::Error>(uploaded)
        });
        self.ended = true;
        let uploaded = match uploaded {
            Ok(u) => u,
            Err(e) => {
                let _ = self
                    .runtime
                    .block_on(self.client.end_run(&self.run_id, RunStatus::Failed));
                return Err(e).context("uploading the model to MLflow");
            }
        };
        eprintln!(
            "logged {} files ({} bytes) to {}",
            uploaded.files, uploaded.bytes, uploaded.uri
        );
        let Some(name) = register else {
            return Ok(());
        };
        let number = self
            .runtime
            .block_on(async {
                client.get_or_create_registered_model(name).await?;
                let version = client
                    .create_model_version(&CreateModelVersion::from_run(
                        name,
                        &uploaded.uri,
                        &run_id,
                    ))
                    .await?;
                let number = version.number()?;
                client
                    .wait_model_version_ready(name, number, std::time::Duration::from_secs(120))
                    .await?;
                Ok::<_, mlflow_client::Error>(number)
            })
            .with_context(|| {
                format!(
                    "registering run {run_id}'s model as '{name}' (the run is FINISHED and its \
                     model is at {}; register it by hand or train again)",
                    uploaded.uri
                )
            })?;
        eprintln!("registered models:/{name}/{number}");
        // One machine-readable line on stdout for scripts.
        println!("models:/{name}/{number}");
        Ok(())
    }

    /// Ends the run as FAILED (training did not complete).
    pub fn fail(&mut self) {
        if !self.ended {
            self.ended = true;
            let _ = self
                .runtime
                .block_on(self.client.end_run(&self.run_id, RunStatus::Failed));
        }
    }
}

impl Drop for RunTracker {
    fn drop(&mut self) {
        // An early return (an error after the run started) must not leave it RUNNING forever.
        self.fail();
    }
}

/// Writes the `MLmodel` file that makes a package folder a browsable MLflow model with an
/// `auralguard` flavor (YAML; MLflow reads the flavor's keys as opaque).
pub fn write_mlmodel(dir: &Path, manifest: &Manifest, run_id: Option<&str>) -> anyhow::Result<()> {
    let created = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S%.6f");
    let mut text = String::new();
    text.push_str("artifact_path: model\n");
    text.push_str("flavors:\n  auralguard:\n");
    text.push_str(&format!(
        "    architecture: {}\n    architecture_version: {}\n",
        manifest.architecture.name, manifest.architecture.version
    ));
    text.push_str("    manifest: auralguard.json\n    weights: model.safetensors\n");
    text.push_str(&format!(
        "    auralguard_version: {}\n",
        env!("CARGO_PKG_VERSION")
    ));
    text.push_str(&format!("model_uuid: {}\n", uuid::Uuid::new_v4().simple()));
    if let Some(id) = run_id {
        text.push_str(&format!("run_id: {id}\n"));
    }
    text.push_str(&format!("utc_time_created: '{created}'\n"));
    let path = dir.join("MLmodel");
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}
