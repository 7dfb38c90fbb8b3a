//! MLflow 3 logged models: a model's own artifact folder, apart from the run that made it.
//!
//! MLflow 3 clients log a model as `models:/m-<id>` (stored under
//! `mlflow-artifacts:/<experiment>/models/m-<id>/artifacts`) and register versions with that URI
//! as their `source`. This client resolves such sources when downloading, and can create them
//! itself so that a model logged from Rust shows up in the MLflow 3 UI like one logged from Python:
//! [`MlflowClient::create_logged_model`], upload the folder to [`LoggedModelInfo::artifact_uri`],
//! [`MlflowClient::finalize_logged_model`], then register a version from `models:/m-<id>`.

use serde::Deserialize;
use serde_json::json;

use crate::batch::Tag;
use crate::client::MlflowClient;
use crate::error::{Error, Result};
use crate::http::Idempotency;

/// A logged model's metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct LoggedModelInfo {
    /// `m-` followed by 32 hex digits.
    pub model_id: String,
    /// The experiment it belongs to.
    pub experiment_id: String,
    /// Its name within the run (e.g. `model`).
    pub name: String,
    /// Where its files are, e.g. `mlflow-artifacts:/1/models/m-.../artifacts`.
    pub artifact_uri: String,
    /// `LOGGED_MODEL_PENDING`, `LOGGED_MODEL_READY` or `LOGGED_MODEL_UPLOAD_FAILED`.
    pub status: String,
    /// The run that produced it, if any.
    pub source_run_id: String,
    /// Tags.
    pub tags: Vec<Tag>,
}

impl LoggedModelInfo {
    /// The URI to register a model version from: `models:/m-<id>`.
    pub fn model_uri(&self) -> String {
        format!("models:/{}", self.model_id)
    }
}

/// A logged model, as the server returns it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct LoggedModel {
    /// Its metadata.
    pub info: LoggedModelInfo,
}

#[derive(Deserialize)]
struct LoggedModelResponse {
    model: LoggedModel,
}

impl MlflowClient {
    /// Creates a logged model (status pending) in `experiment_id`, optionally tied to the run
    /// that produced it. Not retried once sent.
    pub async fn create_logged_model(
        &self,
        experiment_id: &str,
        name: &str,
        source_run_id: Option<&str>,
    ) -> Result<LoggedModel> {
        let mut body = json!({ "experiment_id": experiment_id, "name": name });
        if let Some(run_id) = source_run_id {
            body["source_run_id"] = json!(run_id);
        }
        let r: LoggedModelResponse = self
            .transport
            .post("logged-models", &body, Idempotency::NotIdempotent)
            .await?;
        Ok(r.model)
    }

    /// The logged model `model_id` (`m-...`).
    pub async fn get_logged_model(&self, model_id: &str) -> Result<LoggedModel> {
        check_model_id(model_id)?;
        let r: LoggedModelResponse = self
            .transport
            .get(&format!("logged-models/{model_id}"), &[])
            .await?;
        Ok(r.model)
    }

    /// Marks logged model `model_id` ready (its files are uploaded), or failed with `ready = false`.
    pub async fn finalize_logged_model(&self, model_id: &str, ready: bool) -> Result<LoggedModel> {
        let status = if ready {
            "LOGGED_MODEL_READY"
        } else {
            "LOGGED_MODEL_UPLOAD_FAILED"
        };
        check_model_id(model_id)?;
        let body = json!({ "model_id": model_id, "status": status });
        let r: LoggedModelResponse = self
            .transport
            .patch(&format!("logged-models/{model_id}"), &body)
            .await?;
        Ok(r.model)
    }
}

/// Logged-model ids go into URL paths: allow only what MLflow generates (`m-` + hex, or other
/// alphanumerics and `-`/`_`).
fn check_model_id(model_id: &str) -> Result<()> {
    let ok = model_id.starts_with("m-")
        && model_id.len() > 2
        && model_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidParameter {
            message: format!("'{model_id}' is not a logged model id (expected m-<hex>)"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids_are_checked_before_going_into_a_path() {
        assert!(check_model_id("m-4a1accb5074747968ac2ae572fff8c02").is_ok());
        for bad in ["", "m-", "x-1", "m-1/../../runs", "m-a b"] {
            assert!(check_model_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn logged_model_decodes() {
        let json = r#"{"model": {"info": {"model_id": "m-1", "experiment_id": "1", "name": "model",
            "creation_timestamp_ms": 1, "artifact_uri": "mlflow-artifacts:/1/models/m-1/artifacts",
            "status": "LOGGED_MODEL_PENDING", "model_type": "", "source_run_id": "abc"}, "data": {}}}"#;
        let r: LoggedModelResponse = serde_json::from_str(json).unwrap();
        assert_eq!(
            r.model.info.artifact_uri,
            "mlflow-artifacts:/1/models/m-1/artifacts"
        );
        assert_eq!(r.model.info.model_uri(), "models:/m-1");
    }
}
