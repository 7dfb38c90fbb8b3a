//! Experiments and runs: what `auralguard train` records.
//!
//! A training session is: [`MlflowClient::get_or_create_experiment`], then
//! [`MlflowClient::create_run`], any number of [`MlflowClient::log_batch`] calls (split for
//! MLflow's limits automatically), artifact uploads (see `artifacts`), and finally
//! [`MlflowClient::end_run`] with `Finished` or `Failed`.

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::batch::{now_millis, Metric, Param, RunBatch, Tag};
use crate::client::MlflowClient;
use crate::error::{Error, Result};
use crate::http::Idempotency;

/// An MLflow experiment: a named group of runs with its own artifact root.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Experiment {
    /// Server-assigned id (a number, as text).
    pub experiment_id: String,
    /// Unique name.
    pub name: String,
    /// Where its runs' artifacts go, e.g. `mlflow-artifacts:/1`.
    pub artifact_location: String,
    /// `active` or `deleted`.
    pub lifecycle_stage: String,
    /// Experiment tags.
    pub tags: Vec<Tag>,
    /// Creation time, milliseconds since the epoch.
    #[serde(deserialize_with = "crate::wire::opt_i64_lenient")]
    pub creation_time: Option<i64>,
    /// Last update time, milliseconds since the epoch.
    #[serde(deserialize_with = "crate::wire::opt_i64_lenient")]
    pub last_update_time: Option<i64>,
}

impl Experiment {
    /// True when the experiment was deleted (it still holds its name until purged).
    pub fn is_deleted(&self) -> bool {
        self.lifecycle_stage == "deleted"
    }
}

/// A run's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    /// Still being logged to.
    Running,
    /// Created, not started.
    Scheduled,
    /// Ended successfully.
    Finished,
    /// Ended with an error.
    Failed,
    /// Stopped from outside.
    Killed,
    /// A status this client does not know (from a newer server); never sent.
    #[default]
    #[serde(other)]
    Unknown,
}

impl RunStatus {
    /// True for the statuses a run ends with.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Finished | RunStatus::Failed | RunStatus::Killed
        )
    }
}

/// A run's metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct RunInfo {
    /// Server-assigned id (32 hex digits).
    pub run_id: String,
    /// Human-readable name.
    pub run_name: String,
    /// The experiment it belongs to.
    pub experiment_id: String,
    /// Who created it, if the server knows.
    pub user_id: String,
    /// Current status.
    pub status: RunStatus,
    /// Start, milliseconds since the epoch.
    #[serde(deserialize_with = "crate::wire::opt_i64_lenient")]
    pub start_time: Option<i64>,
    /// End, milliseconds since the epoch, once ended.
    #[serde(deserialize_with = "crate::wire::opt_i64_lenient")]
    pub end_time: Option<i64>,
    /// Root of its artifacts, e.g. `mlflow-artifacts:/1/<run_id>/artifacts`.
    pub artifact_uri: String,
    /// `active` or `deleted`.
    pub lifecycle_stage: String,
}

/// What was logged to a run. `metrics` holds the latest point of each metric.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct RunData {
    /// Latest point of each metric.
    pub metrics: Vec<Metric>,
    /// Parameters.
    pub params: Vec<Param>,
    /// Tags (MLflow adds some of its own, such as `mlflow.runName`).
    pub tags: Vec<Tag>,
}

impl RunData {
    /// The value of parameter `key`, if logged.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|p| p.key == key)
            .map(|p| p.value.as_str())
    }

    /// The value of tag `key`, if set.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|t| t.key == key)
            .map(|t| t.value.as_str())
    }

    /// The latest point of metric `key`, if logged.
    pub fn metric(&self, key: &str) -> Option<&Metric> {
        self.metrics.iter().find(|m| m.key == key)
    }
}

/// A run: metadata and logged data.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Run {
    /// Metadata.
    pub info: RunInfo,
    /// Logged data.
    pub data: RunData,
}

/// What [`MlflowClient::create_run`] needs: the experiment, and optionally a name, tags and a
/// start time (now by default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateRun {
    /// The experiment to create the run in.
    pub experiment_id: String,
    /// Optional human-readable name (MLflow invents one otherwise).
    pub run_name: Option<String>,
    /// Tags set at creation.
    pub tags: Vec<Tag>,
    /// Start time in milliseconds since the epoch; now when `None`.
    pub start_time: Option<i64>,
}

impl CreateRun {
    /// A run in experiment `experiment_id`.
    pub fn new(experiment_id: impl Into<String>) -> Self {
        CreateRun {
            experiment_id: experiment_id.into(),
            ..CreateRun::default()
        }
    }

    /// Sets the run's name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.run_name = Some(name.into());
        self
    }

    /// Adds a tag.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.push(Tag::new(key, value));
        self
    }
}

#[derive(Deserialize)]
struct ExperimentResponse {
    experiment: Experiment,
}

#[derive(Deserialize)]
struct CreateExperimentResponse {
    experiment_id: String,
}

#[derive(Deserialize)]
struct RunResponse {
    run: Run,
}

#[derive(Deserialize)]
struct UpdateRunResponse {
    run_info: RunInfo,
}

#[derive(Deserialize)]
struct Empty {}

#[derive(Deserialize)]
struct MetricHistoryPage {
    #[serde(default)]
    metrics: Vec<Metric>,
    #[serde(default)]
    next_page_token: Option<String>,
}

impl MlflowClient {
    /// The experiment called `name` ([`Error::NotFound`] if there is none).
    pub async fn get_experiment_by_name(&self, name: &str) -> Result<Experiment> {
        let r: ExperimentResponse = self
            .transport
            .get("experiments/get-by-name", &[("experiment_name", name)])
            .await?;
        Ok(r.experiment)
    }

    /// The experiment with id `experiment_id`.
    pub async fn get_experiment(&self, experiment_id: &str) -> Result<Experiment> {
        let r: ExperimentResponse = self
            .transport
            .get("experiments/get", &[("experiment_id", experiment_id)])
            .await?;
        Ok(r.experiment)
    }

    /// Creates an experiment and returns its id ([`Error::AlreadyExists`] if the name is taken).
    /// `artifact_location` is best left `None`, so the server's proxied default is used.
    pub async fn create_experiment(
        &self,
        name: &str,
        artifact_location: Option<&str>,
        tags: &[Tag],
    ) -> Result<String> {
        let mut body = json!({ "name": name, "tags": tags });
        if let Some(location) = artifact_location {
            body["artifact_location"] = json!(location);
        }
        let r: CreateExperimentResponse = self
            .transport
            .post("experiments/create", &body, Idempotency::NotIdempotent)
            .await?;
        Ok(r.experiment_id)
    }

    /// The experiment called `name`, created if missing. Safe against a concurrent creator. A
    /// deleted experiment of that name is an error (MLflow keeps the name reserved).
    pub async fn get_or_create_experiment(&self, name: &str) -> Result<Experiment> {
        let experiment = match self.get_experiment_by_name(name).await {
            Ok(experiment) => experiment,
            Err(e) if e.is_not_found() => match self.create_experiment(name, None, &[]).await {
                Ok(id) => self.get_experiment(&id).await?,
                Err(e) if e.is_already_exists() => self.get_experiment_by_name(name).await?,
                Err(e) => return Err(e),
            },
            Err(e) => return Err(e),
        };
        if experiment.is_deleted() {
            return Err(Error::InvalidParameter {
                message: format!(
                    "experiment '{name}' (id {}) is deleted at {}; restore it (`mlflow experiments restore`) or use another name",
                    experiment.experiment_id,
                    self.tracking_uri()
                ),
            });
        }
        Ok(experiment)
    }

    /// Creates a run. Not retried once sent (a retry could create a second run).
    pub async fn create_run(&self, request: &CreateRun) -> Result<Run> {
        let mut body = json!({
            "experiment_id": request.experiment_id,
            "start_time": request.start_time.unwrap_or_else(now_millis),
            "tags": request.tags,
        });
        if let Some(name) = &request.run_name {
            body["run_name"] = json!(name);
        }
        let r: RunResponse = self
            .transport
            .post("runs/create", &body, Idempotency::NotIdempotent)
            .await?;
        Ok(r.run)
    }

    /// The run `run_id`, with its params, tags and the latest point of each metric.
    pub async fn get_run(&self, run_id: &str) -> Result<Run> {
        let r: RunResponse = self
            .transport
            .get("runs/get", &[("run_id", run_id)])
            .await?;
        Ok(r.run)
    }

    /// Logs `batch` to run `run_id`, in as many `log-batch` calls as MLflow's limits need
    /// (see [`RunBatch::split`]). Retried like an idempotent call: MLflow stores a metric point
    /// once per (key, step, timestamp, value), keeps an identical param, and overwrites tags.
    /// On error, the pieces before the failing one are logged.
    pub async fn log_batch(&self, run_id: &str, batch: &RunBatch) -> Result<()> {
        for piece in batch.split() {
            let body = json!({
                "run_id": run_id,
                "metrics": piece.metrics,
                "params": piece.params,
                "tags": piece.tags,
            });
            let _: Empty = self
                .transport
                .post("runs/log-batch", &body, Idempotency::Idempotent)
                .await?;
        }
        Ok(())
    }

    /// Sets (or overwrites) one tag on run `run_id`.
    pub async fn set_tag(&self, run_id: &str, key: &str, value: &str) -> Result<()> {
        let body = json!({ "run_id": run_id, "key": key, "value": value });
        let _: Empty = self
            .transport
            .post("runs/set-tag", &body, Idempotency::Idempotent)
            .await?;
        Ok(())
    }

    /// Sets run `run_id`'s status and, optionally, its end time (milliseconds since the epoch).
    pub async fn update_run(
        &self,
        run_id: &str,
        status: RunStatus,
        end_time: Option<i64>,
    ) -> Result<RunInfo> {
        if status == RunStatus::Unknown {
            return Err(Error::InvalidParameter {
                message: format!("cannot set run {run_id} to an unknown status"),
            });
        }
        let mut body = json!({ "run_id": run_id, "status": status });
        if let Some(end) = end_time {
            body["end_time"] = json!(end);
        }
        let r: UpdateRunResponse = self
            .transport
            .post("runs/update", &body, Idempotency::Idempotent)
            .await?;
        Ok(r.run_info)
    }

    /// Ends run `run_id` now with `status` (`Finished`, `Failed` or `Killed`).
    pub async fn end_run(&self, run_id: &str, status: RunStatus) -> Result<RunInfo> {
        if !status.is_terminal() {
            return Err(Error::InvalidParameter {
                message: format!(
                    "a run ends with FINISHED, FAILED or KILLED, not {status:?} (run {run_id})"
                ),
            });
        }
        self.update_run(run_id, status, Some(now_millis())).await
    }

    /// Every logged point of metric `key` in run `run_id`, following pagination.
    pub async fn get_metric_history(&self, run_id: &str, key: &str) -> Result<Vec<Metric>> {
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![
                ("run_id", run_id),
                ("metric_key", key),
                ("max_results", "25000"),
            ];
            if let Some(t) = token.as_deref() {
                query.push(("page_token", t));
            }
            let page: MetricHistoryPage = self.transport.get("metrics/get-history", &query).await?;
            all.extend(page.metrics);
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(next) => token = Some(next),
                None => return Ok(all),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_decodes_from_mlflow_json() {
        let json = r#"{"run": {"info": {"run_uuid": "abc", "experiment_id": "1", "run_name": "r1", "user_id": "",
            "status": "RUNNING", "start_time": 1700000000000, "artifact_uri": "mlflow-artifacts:/1/abc/artifacts",
            "lifecycle_stage": "active", "run_id": "abc"},
            "data": {"metrics": [{"key": "m", "value": "NaN", "timestamp": 1, "step": 0}],
                     "params": [{"key": "p", "value": "1"}], "tags": [{"key": "mlflow.runName", "value": "r1"}]},
            "inputs": {}, "outputs": {}}}"#;
        let r: RunResponse = serde_json::from_str(json).unwrap();
        assert_eq!(r.run.info.run_id, "abc");
        assert_eq!(r.run.info.status, RunStatus::Running);
        assert_eq!(r.run.info.end_time, None);
        assert!(r.run.data.metric("m").unwrap().value.is_nan());
        assert_eq!(r.run.data.param("p"), Some("1"));
        assert_eq!(r.run.data.tag("mlflow.runName"), Some("r1"));
    }

    #[test]
    fn unknown_statuses_do_not_break_decoding() {
        let info: RunInfo = serde_json::from_str(r#"{"run_id": "x", "status": "PAUSED"}"#).unwrap();
        assert_eq!(info.status, RunStatus::Unknown);
        assert_eq!(
            serde_json::to_value(RunStatus::Finished).unwrap(),
            json!("FINISHED")
        );
    }
}
