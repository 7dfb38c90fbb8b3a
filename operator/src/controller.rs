//! Wires reconcile into a kube-rs `Controller`.
//!
//! The controller watches AudioDetectors (in one namespace or all) and the Deployments,
//! Services, HPAs and PDBs the operator owns (only objects labelled
//! `app.kubernetes.io/managed-by=auralguard-operator`, so the watch caches stay small); a change
//! to any of them reconciles its owner. It stops, letting running reconciles finish, when the
//! given shutdown future completes.

use std::future::Future;
use std::sync::Arc;

use auralguard_crds::AudioDetector;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams};
use kube::runtime::{watcher, Controller};
use kube::Resource;
use serde::de::DeserializeOwned;
use tracing::{debug, warn};

use crate::builders::{LABEL_MANAGED_BY, MANAGED_BY};
use crate::context::Context;
use crate::reconcile::{error_policy, reconcile};
use crate::{Error, Result};

fn api<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Fails with a helpful message when the AudioDetector CRD is not installed (or not readable).
pub async fn check_crd(client: &kube::Client, namespace: Option<&str>) -> Result<()> {
    api::<AudioDetector>(client, namespace)
        .list(&ListParams::default().limit(1))
        .await
        .map(|_| ())
        .map_err(|e| match e {
            kube::Error::Api(s) if s.code == 404 => Error::Setup(
                "the AudioDetector CRD (audiodetectors.auralguard.io) is not installed; apply crds/audiodetector.yaml or install the Helm chart".into(),
            ),
            other => Error::Kube(other),
        })
}

/// Runs the controller until `shutdown` completes.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let ns = namespace.as_deref();
    let owned = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGED_BY}"));
    Controller::new(
        api::<AudioDetector>(&client, ns),
        watcher::Config::default(),
    )
    .owns(api::<Deployment>(&client, ns), owned.clone())
    .owns(api::<Service>(&client, ns), owned.clone())
    .owns(api::<HorizontalPodAutoscaler>(&client, ns), owned.clone())
    .owns(api::<PodDisruptionBudget>(&client, ns), owned)
    .graceful_shutdown_on(shutdown)
    .run(reconcile, error_policy, ctx)
    .for_each(|result| async move {
        match result {
            Ok((obj, _)) => debug!(detector = %obj.name, namespace = ?obj.namespace, "reconciled"),
            Err(e) => warn!(error = %e, "controller"),
        }
    })
    .await;
}
