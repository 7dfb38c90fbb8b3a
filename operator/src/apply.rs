//! Writing owned objects only when they differ from what is there.
//!
//! Every owned object is written with server-side apply under one field manager
//! ([`FIELD_MANAGER`]) and `force`, so the operator owns exactly the fields it sets and nothing
//! else. Before applying, [`contains`] checks whether the observed object already holds every
//! field of the desired one with the same value (fields the API server or other controllers add
//! are ignored): if so, the apply would change nothing and is skipped. That is how a reconcile
//! with nothing to do makes zero writes, while a field someone edited by hand is still put back.

use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::builders::FIELD_MANAGER;
use crate::metrics::Metrics;
use crate::Result;

/// True when every field set in `desired` has the same value in `observed`. Lists must have the
/// same length and match element by element; `null` in `desired` means "not set" and always
/// matches. Numbers compare by value (`1` equals `1.0`).
pub fn contains(observed: &Value, desired: &Value) -> bool {
    match (observed, desired) {
        (_, Value::Null) => true,
        (Value::Object(o), Value::Object(d)) => d
            .iter()
            .all(|(k, dv)| dv.is_null() || o.get(k).is_some_and(|ov| contains(ov, dv))),
        (Value::Array(o), Value::Array(d)) => {
            o.len() == d.len() && o.iter().zip(d).all(|(ov, dv)| contains(ov, dv))
        }
        (Value::Number(o), Value::Number(d)) => o.as_f64() == d.as_f64(),
        (o, d) => o == d,
    }
}

/// Applies `desired` unless `observed` already contains it; returns whether it wrote. `kind`
/// labels the write in the operator's metrics.
pub async fn apply<K>(
    api: &Api<K>,
    kind: &str,
    name: &str,
    observed: Option<&K>,
    desired: &K,
    metrics: &Metrics,
) -> Result<bool>
where
    K: Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    if let Some(o) = observed {
        if contains(&serde_json::to_value(o)?, &serde_json::to_value(desired)?) {
            return Ok(false);
        }
    }
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(desired),
    )
    .await?;
    metrics.writes.with_label_values(&[kind, "apply"]).inc();
    Ok(true)
}

/// Deletes an object the operator no longer wants (a finished canary, a removed HPA).
pub async fn delete<K>(api: &Api<K>, kind: &str, name: &str, metrics: &Metrics) -> Result<()>
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => {}
        // Already gone: the goal is reached.
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    metrics.writes.with_label_values(&[kind, "delete"]).inc();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn contains_ignores_server_added_fields_but_not_changed_ones() {
        let desired =
            json!({"spec": {"replicas": 2, "ports": [{"name": "http", "port": 8080}], "x": null}});
        let observed = json!({
            "metadata": {"resourceVersion": "7"},
            "spec": {"replicas": 2, "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]},
            "status": {}
        });
        assert!(contains(&observed, &desired));
        let changed = json!({"spec": {"replicas": 3, "ports": [{"name": "http", "port": 8080}]}});
        assert!(!contains(&changed, &desired));
        let extra_port = json!({"spec": {"replicas": 2, "ports": [{"name": "http", "port": 8080}, {"port": 1}]}});
        assert!(!contains(&extra_port, &desired));
        assert!(!contains(&json!({"spec": {}}), &desired));
        assert!(contains(&json!({"a": 1.0}), &json!({"a": 1})));
        assert!(!contains(&json!({"a": "1"}), &json!({"a": 1})));
    }
}
