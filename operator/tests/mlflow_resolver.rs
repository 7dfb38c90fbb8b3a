//! The production alias resolver against a real `mlflow server`, started by the `mlflow-client`
//! crate's own test harness (one server per test binary; `SKIP` without MLflow installed unless
//! `AURALGUARD_NO_SKIP=1`). Credentials come from a Secret read through a scripted API server.

#[path = "../../mlflow/tests/common/mod.rs"]
mod mlflow_harness;
mod support;

use std::time::Duration;

use auralguard_operator::mlflow::{resolve, CachedResolver, MlflowResolver};
use auralguard_operator::model::ModelRef;
use http::Method;
use mlflow_client::{CreateModelVersion, CreateRun, MlflowClient, RunStatus};
use serde_json::json;
use support::{detector, mock_client};

/// Registers `versions` versions of a new model and returns its name.
async fn register(client: &MlflowClient, versions: u64) -> String {
    let experiment = client
        .get_or_create_experiment("auralguard-operator-tests")
        .await
        .unwrap();
    let run = client
        .create_run(&CreateRun::new(&experiment.experiment_id))
        .await
        .unwrap();
    let run_id = run.info.run_id.clone();
    let dir = std::env::temp_dir().join(mlflow_harness::unique("operator-model"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("auralguard.json"), "{}").unwrap();
    let uploaded = client.log_artifacts(&run_id, &dir, "model").await.unwrap();
    client.end_run(&run_id, RunStatus::Finished).await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let name = mlflow_harness::unique("operator-detector");
    client.get_or_create_registered_model(&name).await.unwrap();
    for _ in 0..versions {
        client
            .create_model_version(&CreateModelVersion::from_run(&name, &uploaded.uri, &run_id))
            .await
            .unwrap();
    }
    name
}

fn spec(uri: &str, model: &str, secret: bool) -> String {
    let creds = if secret {
        ", credentialsSecret: {name: mlflow-creds}"
    } else {
        ""
    };
    format!(
        r#"
apiVersion: auralguard.io/v1alpha1
kind: AudioDetector
metadata: {{name: demo, namespace: voice, uid: u1}}
spec:
  model: {{source: "models:/{model}@champion"}}
  mlflow: {{trackingUri: "{uri}"{creds}}}
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn resolves_aliases_as_they_move_with_and_without_credentials() {
    let Some(server) = mlflow_harness::server("resolves_aliases_as_they_move") else {
        return;
    };
    let mlflow = server.client();
    let name = register(&mlflow, 2).await;
    mlflow.set_alias(&name, "champion", 1).await.unwrap();

    // No credentials: no Kubernetes call at all.
    let (kube, mut api) = mock_client();
    let det = detector(&spec(&server.uri, &name, false));
    let resolver = MlflowResolver::new(kube.clone());
    assert_eq!(
        resolve(&resolver, &det).await.unwrap(),
        ModelRef::registry(&name, "1")
    );
    api.expect_silence().await;

    // The alias moves: the plain resolver follows at once, a cached one within its TTL.
    let cached = CachedResolver::new(MlflowResolver::new(kube.clone()), Duration::from_secs(3600));
    assert_eq!(resolve(&cached, &det).await.unwrap().version, "1");
    mlflow.set_alias(&name, "champion", 2).await.unwrap();
    assert_eq!(
        resolve(&resolver, &det).await.unwrap().uri,
        format!("models:/{name}/2")
    );
    assert_eq!(resolve(&cached, &det).await.unwrap().version, "1");
    let fresh = CachedResolver::new(MlflowResolver::new(kube.clone()), Duration::ZERO);
    assert_eq!(resolve(&fresh, &det).await.unwrap().version, "2");

    // With a credentials Secret, the operator reads it from the detector's namespace.
    let det = detector(&spec(&server.uri, &name, true));
    let task = tokio::spawn(async move { resolve(&resolver, &det).await });
    api.expect(Method::GET, "/api/v1/namespaces/voice/secrets/mlflow-creds")
        .await
        .ok(&json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "mlflow-creds", "namespace": "voice"},
            "data": {"token": "czNjcjN0"}
        }));
    assert_eq!(task.await.unwrap().unwrap().version, "2");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_alias_or_an_unusable_secret_is_a_resolution_error() {
    let Some(server) = mlflow_harness::server("a_missing_alias_is_a_resolution_error") else {
        return;
    };
    let name = register(&server.client(), 1).await;
    let (kube, mut api) = mock_client();
    let resolver = MlflowResolver::new(kube);

    let err = resolve(&resolver, &detector(&spec(&server.uri, &name, false)))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("cannot resolve model models:/{name}@champion")),
        "{text}"
    );
    assert!(text.contains("champion"), "{text}");

    let det = detector(&spec(&server.uri, &name, true));
    let task = tokio::spawn(async move { resolve(&resolver, &det).await });
    api.expect(Method::GET, "/api/v1/namespaces/voice/secrets/mlflow-creds")
        .await
        .ok(&json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "mlflow-creds"}, "data": {"other": "eA=="}}));
    let err = task.await.unwrap().unwrap_err().to_string();
    assert!(
        err.contains("Secret mlflow-creds has neither key \"token\""),
        "{err}"
    );
}
