//! The Model Registry: registered models, their numbered versions, and aliases.
//!
//! Training registers a version from the run's model folder
//! ([`MlflowClient::get_or_create_registered_model`], then [`MlflowClient::create_model_version`]
//! with the URI returned by [`MlflowClient::log_artifacts`]); a person or a pipeline points an
//! alias such as `champion` at the version to serve ([`MlflowClient::set_alias`]); the server and
//! the operator turn a [`ModelUri`] into a concrete version with [`MlflowClient::resolve`].

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use crate::batch::Tag;
use crate::client::MlflowClient;
use crate::error::{Error, Result};
use crate::http::Idempotency;
use crate::model_uri::ModelUri;

/// Page size used when following paginated searches.
const PAGE_SIZE: &str = "1000";

/// An alias and the version it points at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct RegisteredModelAlias {
    /// The alias, e.g. `champion`.
    pub alias: String,
    /// The version number, as text.
    pub version: String,
}

/// A registered model: a name that groups versions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct RegisteredModel {
    /// Unique name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Creation time, milliseconds since the epoch.
    #[serde(deserialize_with = "crate::wire::opt_i64_lenient")]
    pub creation_timestamp: Option<i64>,
    /// Last update, milliseconds since the epoch.
    #[serde(deserialize_with = "crate::wire::opt_i64_lenient")]
    pub last_updated_timestamp: Option<i64>,
    /// The latest version per stage (MLflow's legacy view; prefer aliases).
    pub latest_versions: Vec<ModelVersion>,
    /// Tags.
    pub tags: Vec<Tag>,
    /// Aliases and where they point.
    pub aliases: Vec<RegisteredModelAlias>,
}

impl RegisteredModel {
    /// The version number alias `alias` points at, if set.
    pub fn alias_version(&self, alias: &str) -> Option<u64> {
        self.aliases
            .iter()
            .find(|a| a.alias == alias)
            .and_then(|a| a.version.parse().ok())
    }
}

/// Whether a model version is usable yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ModelVersionStatus {
    /// Still being registered (copying artifacts, on some registries).
    PendingRegistration,
    /// Registration failed; see `status_message`.
    FailedRegistration,
    /// Usable.
    Ready,
    /// A status this client does not know.
    #[default]
    #[serde(other)]
    Unknown,
}

/// One numbered version of a registered model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ModelVersion {
    /// The registered model's name.
    pub name: String,
    /// The version number, as text (MLflow's encoding); see [`ModelVersion::number`].
    pub version: String,
    /// Creation time, milliseconds since the epoch.
    #[serde(deserialize_with = "crate::wire::opt_i64_lenient")]
    pub creation_timestamp: Option<i64>,
    /// Last update, milliseconds since the epoch.
    #[serde(deserialize_with = "crate::wire::opt_i64_lenient")]
    pub last_updated_timestamp: Option<i64>,
    /// Legacy stage (`None`, `Staging`, `Production`, `Archived`).
    pub current_stage: String,
    /// Free text.
    pub description: String,
    /// Where the model's files are, as given at registration (`mlflow-artifacts:/...`,
    /// `runs:/<run>/<path>`, or MLflow 3's `models:/m-<id>`).
    pub source: String,
    /// The run that produced it, if any.
    pub run_id: String,
    /// Registration status.
    pub status: ModelVersionStatus,
    /// Detail of the status (why registration failed).
    pub status_message: String,
    /// Tags.
    pub tags: Vec<Tag>,
    /// Link to the run, if given.
    pub run_link: String,
    /// Aliases pointing at this version.
    pub aliases: Vec<String>,
    /// MLflow 3 logged model id, when registered from one.
    pub model_id: String,
}

impl ModelVersion {
    /// The version number. MLflow always sends a positive integer; anything else is a decode error.
    pub fn number(&self) -> Result<u64> {
        self.version
            .parse()
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| Error::Decode {
                url: format!("models:/{}", self.name),
                message: format!("model version '{}' is not a positive integer", self.version),
            })
    }

    /// `models:/NAME/VERSION` for this version.
    pub fn uri(&self) -> Result<ModelUri> {
        Ok(ModelUri::version(self.name.clone(), self.number()?))
    }
}

/// What [`MlflowClient::create_model_version`] needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateModelVersion {
    /// The registered model (must exist).
    pub name: String,
    /// The model folder's URI: usually the `mlflow-artifacts:/` URI returned by
    /// [`MlflowClient::log_artifacts`], or `runs:/<run>/<path>`, or `models:/m-<id>`.
    pub source: String,
    /// The run that produced it (MLflow checks that `source` lies inside that run's artifacts).
    pub run_id: Option<String>,
    /// MLflow 3 logged model id, when `source` is `models:/m-<id>`.
    pub model_id: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Tags set at creation.
    pub tags: Vec<Tag>,
}

impl CreateModelVersion {
    /// A version of `name` from `source`, produced by run `run_id`.
    pub fn from_run(
        name: impl Into<String>,
        source: impl Into<String>,
        run_id: impl Into<String>,
    ) -> Self {
        CreateModelVersion {
            name: name.into(),
            source: source.into(),
            run_id: Some(run_id.into()),
            ..CreateModelVersion::default()
        }
    }
}

#[derive(Deserialize)]
struct RegisteredModelResponse {
    registered_model: RegisteredModel,
}

#[derive(Deserialize)]
struct ModelVersionResponse {
    model_version: ModelVersion,
}

#[derive(Deserialize)]
struct ModelVersionsResponse {
    #[serde(default)]
    model_versions: Vec<ModelVersion>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct RegisteredModelsResponse {
    #[serde(default)]
    registered_models: Vec<RegisteredModel>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct DownloadUriResponse {
    #[serde(default)]
    artifact_uri: String,
}

#[derive(Deserialize)]
struct Empty {}

impl MlflowClient {
    /// Creates registered model `name` ([`Error::AlreadyExists`] if taken). Not retried once sent.
    pub async fn create_registered_model(
        &self,
        name: &str,
        description: Option<&str>,
        tags: &[Tag],
    ) -> Result<RegisteredModel> {
        let mut body = json!({ "name": name, "tags": tags });
        if let Some(d) = description {
            body["description"] = json!(d);
        }
        let r: RegisteredModelResponse = self
            .transport
            .post(
                "registered-models/create",
                &body,
                Idempotency::NotIdempotent,
            )
            .await?;
        Ok(r.registered_model)
    }

    /// Registered model `name`, with its aliases.
    pub async fn get_registered_model(&self, name: &str) -> Result<RegisteredModel> {
        let r: RegisteredModelResponse = self
            .transport
            .get("registered-models/get", &[("name", name)])
            .await?;
        Ok(r.registered_model)
    }

    /// Registered model `name`, created if missing. Safe against a concurrent creator.
    pub async fn get_or_create_registered_model(&self, name: &str) -> Result<RegisteredModel> {
        match self.get_registered_model(name).await {
            Err(e) if e.is_not_found() => match self.create_registered_model(name, None, &[]).await
            {
                Err(e) if e.is_already_exists() => self.get_registered_model(name).await,
                other => other,
            },
            other => other,
        }
    }

    /// Every registered model matching `filter` (MLflow search syntax, e.g. `name LIKE 'det%'`;
    /// empty for all), following pagination.
    pub async fn search_registered_models(&self, filter: &str) -> Result<Vec<RegisteredModel>> {
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("max_results", PAGE_SIZE)];
            if !filter.is_empty() {
                query.push(("filter", filter));
            }
            if let Some(t) = token.as_deref() {
                query.push(("page_token", t));
            }
            let page: RegisteredModelsResponse = self
                .transport
                .get("registered-models/search", &query)
                .await?;
            all.extend(page.registered_models);
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(next) => token = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// Every registered model.
    pub async fn list_registered_models(&self) -> Result<Vec<RegisteredModel>> {
        self.search_registered_models("").await
    }

    /// Registers a new version. Not retried once sent (a retry could register two versions).
    pub async fn create_model_version(&self, request: &CreateModelVersion) -> Result<ModelVersion> {
        let mut body =
            json!({ "name": request.name, "source": request.source, "tags": request.tags });
        if let Some(run_id) = &request.run_id {
            body["run_id"] = json!(run_id);
        }
        if let Some(model_id) = &request.model_id {
            body["model_id"] = json!(model_id);
        }
        if let Some(d) = &request.description {
            body["description"] = json!(d);
        }
        let r: ModelVersionResponse = self
            .transport
            .post("model-versions/create", &body, Idempotency::NotIdempotent)
            .await?;
        Ok(r.model_version)
    }

    /// Version `version` of registered model `name`.
    pub async fn get_model_version(&self, name: &str, version: u64) -> Result<ModelVersion> {
        let version = version.to_string();
        let r: ModelVersionResponse = self
            .transport
            .get(
                "model-versions/get",
                &[("name", name), ("version", &version)],
            )
            .await?;
        Ok(r.model_version)
    }

    /// Polls version `version` of `name` until it is `READY` (most registries are at once),
    /// failing on `FAILED_REGISTRATION` or after `timeout`.
    pub async fn wait_model_version_ready(
        &self,
        name: &str,
        version: u64,
        timeout: Duration,
    ) -> Result<ModelVersion> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mv = self.get_model_version(name, version).await?;
            match mv.status {
                ModelVersionStatus::Ready => return Ok(mv),
                ModelVersionStatus::FailedRegistration => {
                    return Err(Error::InvalidModel {
                        model: format!("models:/{name}/{version}"),
                        reason: format!("registration failed: {}", mv.status_message),
                    })
                }
                _ if tokio::time::Instant::now() >= deadline => {
                    return Err(Error::InvalidModel {
                        model: format!("models:/{name}/{version}"),
                        reason: format!(
                            "still {:?} after {timeout:?}; check the registry server's logs",
                            mv.status
                        ),
                    })
                }
                _ => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }

    /// Every model version matching `filter` (MLflow search syntax, e.g. `name='detector'`),
    /// following pagination.
    pub async fn search_model_versions(&self, filter: &str) -> Result<Vec<ModelVersion>> {
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("max_results", PAGE_SIZE)];
            if !filter.is_empty() {
                query.push(("filter", filter));
            }
            if let Some(t) = token.as_deref() {
                query.push(("page_token", t));
            }
            let page: ModelVersionsResponse =
                self.transport.get("model-versions/search", &query).await?;
            all.extend(page.model_versions);
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(next) => token = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// Every version of registered model `name`, newest first.
    pub async fn list_model_versions(&self, name: &str) -> Result<Vec<ModelVersion>> {
        let mut versions = self.search_model_versions(&name_filter(name)?).await?;
        versions.sort_by_key(|v| std::cmp::Reverse(v.version.parse::<u64>().unwrap_or(0)));
        Ok(versions)
    }

    /// The latest version of `name` in each of `stages` (all stages when empty). MLflow has
    /// deprecated stages in favour of aliases but still serves this call (checked on 3.17).
    pub async fn get_latest_versions(
        &self,
        name: &str,
        stages: &[&str],
    ) -> Result<Vec<ModelVersion>> {
        let body = json!({ "name": name, "stages": stages });
        let r: ModelVersionsResponse = self
            .transport
            .post(
                "registered-models/get-latest-versions",
                &body,
                Idempotency::Idempotent,
            )
            .await?;
        Ok(r.model_versions)
    }

    /// Points alias `alias` of `name` at `version` (moving it if it pointed elsewhere).
    pub async fn set_alias(&self, name: &str, alias: &str, version: u64) -> Result<()> {
        let body = json!({ "name": name, "alias": alias, "version": version.to_string() });
        let _: Empty = self
            .transport
            .post("registered-models/alias", &body, Idempotency::Idempotent)
            .await?;
        Ok(())
    }

    /// Removes alias `alias` of `name` (no error if it was not set).
    pub async fn delete_alias(&self, name: &str, alias: &str) -> Result<()> {
        let _: Empty = self
            .transport
            .delete(
                "registered-models/alias",
                &[("name", name), ("alias", alias)],
            )
            .await?;
        Ok(())
    }

    /// The version alias `alias` of `name` points at. [`Error::NotFound`] when the model or the
    /// alias does not exist (MLflow reports a missing alias as an invalid parameter; this call
    /// turns that into `NotFound`, which is what it means).
    pub async fn get_model_version_by_alias(
        &self,
        name: &str,
        alias: &str,
    ) -> Result<ModelVersion> {
        let result: Result<ModelVersionResponse> = self
            .transport
            .get(
                "registered-models/alias",
                &[("name", name), ("alias", alias)],
            )
            .await;
        match result {
            Ok(r) => Ok(r.model_version),
            Err(Error::InvalidParameter { message })
                if message.to_ascii_lowercase().contains("not found") =>
            {
                Err(Error::NotFound {
                    what: format!("alias '{alias}' of registered model '{name}' ({message})"),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Where version `version` of `name` can be downloaded from, as the registry says. For a
    /// version registered from `models:/m-<id>` this is the logged model's folder; for other
    /// sources it is the source itself (a `runs:/` source stays `runs:/`).
    pub async fn get_model_version_download_uri(&self, name: &str, version: u64) -> Result<String> {
        let version = version.to_string();
        let r: DownloadUriResponse = self
            .transport
            .get(
                "model-versions/get-download-uri",
                &[("name", name), ("version", &version)],
            )
            .await?;
        Ok(r.artifact_uri)
    }

    /// The concrete version `uri` names now: the version itself, or the one its alias points at.
    /// Errors name the URI.
    pub async fn resolve(&self, uri: &ModelUri) -> Result<ModelVersion> {
        let result = match uri {
            ModelUri::Version { name, version } => self.get_model_version(name, *version).await,
            ModelUri::Alias { name, alias } => self.get_model_version_by_alias(name, alias).await,
        };
        result.map_err(|e| match e {
            Error::NotFound { what } => Error::NotFound {
                what: format!("{uri}: {what}"),
            },
            other => other,
        })
    }
}

/// `name='...'` for MLflow's search syntax, quoting with whichever quote the name lacks.
fn name_filter(name: &str) -> Result<String> {
    if !name.contains('\'') {
        Ok(format!("name='{name}'"))
    } else if !name.contains('"') {
        Ok(format!("name=\"{name}\""))
    } else {
        Err(Error::InvalidParameter {
            message: format!("model name {name:?} holds both quote characters; MLflow's search syntax cannot express it"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_version_decodes_and_numbers() {
        let json = r#"{"model_version": {"name": "det", "version": "2", "creation_timestamp": 1795611549455,
            "current_stage": "None", "description": "", "source": "runs:/abc/model", "run_id": "abc",
            "status": "READY", "run_link": "", "aliases": ["champion"]}}"#;
        let r: ModelVersionResponse = serde_json::from_str(json).unwrap();
        let mv = r.model_version;
        assert_eq!(mv.number().unwrap(), 2);
        assert_eq!(mv.status, ModelVersionStatus::Ready);
        assert_eq!(mv.aliases, ["champion"]);
        assert_eq!(mv.uri().unwrap().to_string(), "models:/det/2");
        let odd = ModelVersion {
            version: "x".into(),
            ..mv
        };
        assert!(odd.number().is_err());
    }

    #[test]
    fn registered_model_alias_lookup() {
        let json = r#"{"registered_model": {"name": "det", "aliases": [{"alias": "champion", "version": "1"}]}}"#;
        let r: RegisteredModelResponse = serde_json::from_str(json).unwrap();
        assert_eq!(r.registered_model.alias_version("champion"), Some(1));
        assert_eq!(r.registered_model.alias_version("canary"), None);
    }

    #[test]
    fn name_filters_quote_safely() {
        assert_eq!(name_filter("det").unwrap(), "name='det'");
        assert_eq!(name_filter("it's").unwrap(), "name=\"it's\"");
        assert!(name_filter("a'b\"c").is_err());
    }
}
