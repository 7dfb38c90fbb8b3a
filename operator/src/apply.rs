//! Writing owned objects only when they differ from what is there.
//!
//! Every owned object is written with server-side apply under one field manager
//! ([`FIELD_MANAGER`]) and `force`, so the operator owns exactly the fields it sets and nothing
//! else. Before applying, [`up_to_date`] decides whether the apply would change anything:
//!
//! * every field of the desired object must already hold the same value ([`contains`]; fields
//!   the API server or other controllers add are ignored, and resource quantities compare by
//!   value, so `1000m` equals `1`); and
//! * every field this field manager owns on the live object (its `managedFields` entry) must
//!   still be in the desired object ([`owned_but_unwanted`]). A field the operator stopped
//!   setting (a `nodeSelector` dropped from the spec, an annotation, `serviceAccountName`) is
//!   only removed by an apply that leaves it out, so its presence forces one.
//!
//! That is how a reconcile with nothing to do makes zero writes, while a field someone edited by
//! hand is put back and a field nobody wants any more is taken away.

use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::builders::FIELD_MANAGER;
use crate::metrics::Metrics;
use crate::Result;

/// True when every field set in `desired` has the same value in `observed`. Lists must have the
/// same length and match element by element; `null` in `desired` means "not set" and always
/// matches. Numbers compare by value (`1` equals `1.0`), and so do the quantities under
/// `limits` and `requests` (`1000m` equals `1`, `1Gi` equals `1073741824`).
pub fn contains(observed: &Value, desired: &Value) -> bool {
    contains_under(observed, desired, "")
}

/// `key` is the name `desired` has in its parent object ("" at the top and in lists).
fn contains_under(observed: &Value, desired: &Value, key: &str) -> bool {
    match (observed, desired) {
        (_, Value::Null) => true,
        (Value::Object(o), Value::Object(d)) => {
            let quantities = matches!(key, "limits" | "requests");
            d.iter().all(|(k, dv)| {
                dv.is_null() || o.get(k).is_some_and(|ov| match (ov, dv) {
                    (Value::String(a), Value::String(b)) if quantities => {
                        a == b || matches!((quantity(a), quantity(b)), (Some(x), Some(y)) if x == y)
                    }
                    _ => contains_under(ov, dv, k),
                })
            })
        }
        (Value::Array(o), Value::Array(d)) => {
            o.len() == d.len() && o.iter().zip(d).all(|(ov, dv)| contains_under(ov, dv, ""))
        }
        (Value::Number(o), Value::Number(d)) => o.as_f64() == d.as_f64(),
        (o, d) => o == d,
    }
}

/// A Kubernetes resource quantity's value in milli-units (`"1.5Gi"`, `"250m"`, `"2"`, `"1e3"`),
/// exact for every quantity a manifest can reasonably hold; `None` when `s` is not one.
pub fn quantity(s: &str) -> Option<i128> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    // (multiplier, divisor) applied to milli-units.
    let (mul, div): (i128, i128) = match suffix {
        "" => (1_000, 1),
        "n" => (1, 1_000_000),
        "u" => (1, 1_000),
        "m" => (1, 1),
        "k" => (1_000_000, 1),
        "M" => (1_000_000_000, 1),
        "G" => (1_000_000_000_000, 1),
        "T" => (1_000_000_000_000_000, 1),
        "P" => (1_000_000_000_000_000_000, 1),
        "E" => (1_000_000_000_000_000_000_000, 1),
        "Ki" => (1_000 << 10, 1),
        "Mi" => (1_000 << 20, 1),
        "Gi" => (1_000 << 30, 1),
        "Ti" => (1_000 << 40, 1),
        "Pi" => (1_000 << 50, 1),
        "Ei" => (1_000 << 60, 1),
        e if e.starts_with(['e', 'E']) => {
            let exp: i32 = e[1..].parse().ok()?;
            if !(-9..=18).contains(&exp) {
                return None;
            }
            return scaled(number, 1_000, 1).map(|v| {
                if exp >= 0 {
                    v * 10i128.pow(exp as u32)
                } else {
                    v / 10i128.pow((-exp) as u32)
                }
            });
        }
        _ => return None,
    };
    scaled(number, mul, div)
}

/// `number` (decimal, optionally signed) × `mul` / `div`, exactly, in integers.
fn scaled(number: &str, mul: i128, div: i128) -> Option<i128> {
    let (negative, digits) = match number.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, number.strip_prefix('+').unwrap_or(number)),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && frac.is_empty()
        || !whole
            .bytes()
            .chain(frac.bytes())
            .all(|b| b.is_ascii_digit())
        || whole.len() + frac.len() > 24
    {
        return None;
    }
    let scale = 10i128.checked_pow(frac.len() as u32)?;
    let mantissa: i128 = format!("{whole}{frac}").parse().ok()?;
    let v = mantissa.checked_mul(mul)? / scale / div;
    Some(if negative { -v } else { v })
}

/// True when this operator's field manager owns, on `observed`, a field that `desired` no
/// longer sets. Reads the `metadata.managedFields` entry of [`FIELD_MANAGER`]'s applies
/// (`fieldsV1`: `f:` fields, `k:` list items by key, `v:` set values, `i:` list indexes).
pub fn owned_but_unwanted(observed: &Value, desired: &Value) -> bool {
    let Some(entries) = observed
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return false;
    };
    entries
        .iter()
        .filter(|e| {
            e.get("manager").and_then(Value::as_str) == Some(FIELD_MANAGER)
                && e.get("operation").and_then(Value::as_str) == Some("Apply")
        })
        .filter_map(|e| e.get("fieldsV1"))
        .any(|owned| missing(owned, desired))
}

/// Whether some field in the `fieldsV1` tree `owned` is absent from `desired`.
fn missing(owned: &Value, desired: &Value) -> bool {
    let Value::Object(fields) = owned else {
        return false;
    };
    fields.iter().any(|(key, below)| {
        if let Some(name) = key.strip_prefix("f:") {
            match desired.get(name) {
                None | Some(Value::Null) => true,
                Some(d) => missing(below, d),
            }
        } else if let Some(item_key) = key.strip_prefix("k:") {
            let Ok(item_key) = serde_json::from_str::<Value>(item_key) else {
                return false;
            };
            match desired
                .as_array()
                .and_then(|items| items.iter().find(|i| contains(i, &item_key)))
            {
                None => true,
                Some(d) => missing(below, d),
            }
        } else if let Some(value) = key.strip_prefix("v:") {
            serde_json::from_str::<Value>(value).is_ok_and(|v| {
                !desired
                    .as_array()
                    .is_some_and(|items| items.iter().any(|i| contains(i, &v)))
            })
        } else if let Some(index) = key.strip_prefix("i:") {
            match index.parse::<usize>().ok().and_then(|i| desired.get(i)) {
                None => true,
                Some(d) => missing(below, d),
            }
        } else {
            // "." (the item itself) and anything newer than this reader: nothing to check.
            false
        }
    })
}

/// True when applying `desired` over `observed` would change nothing this operator manages.
pub fn up_to_date(observed: &Value, desired: &Value) -> bool {
    contains(observed, desired) && !owned_but_unwanted(observed, desired)
}

/// Applies `desired` unless `observed` is [`up_to_date`] with it; returns whether it wrote. `kind`
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
        if up_to_date(&serde_json::to_value(o)?, &serde_json::to_value(desired)?) {
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

    #[test]
    fn quantities_compare_by_value_where_they_are_quantities() {
        for (a, b) in [
            ("1", "1000m"),
            ("1Gi", "1073741824"),
            ("0.5", "500m"),
            ("1.5Gi", "1536Mi"),
            ("1e3", "1k"),
            ("2", "2.0"),
        ] {
            assert_eq!(quantity(a), quantity(b), "{a} vs {b}");
            let want = json!({"resources": {"limits": {"x": a}}});
            assert!(contains(&json!({"resources": {"limits": {"x": b}}}), &want));
        }
        assert_ne!(quantity("1"), quantity("1001m"));
        for bad in ["", "x", "1Q", "1..2", "--1", "1e99"] {
            assert_eq!(quantity(bad), None, "{bad}");
        }
        // Elsewhere a string is a string.
        assert!(!contains(&json!({"env": "1000m"}), &json!({"env": "1"})));
    }

    /// A live Deployment as the API server returns it after the operator applied a pod spec
    /// with a node selector, a service account and an annotation.
    fn applied_with_extras() -> Value {
        json!({
            "metadata": {
                "annotations": {"team": "audio", "deployment.kubernetes.io/revision": "3"},
                "managedFields": [
                    {"manager": "kube-controller-manager", "operation": "Update",
                     "fieldsV1": {"f:metadata": {"f:annotations": {"f:deployment.kubernetes.io/revision": {}}}}},
                    {"manager": FIELD_MANAGER, "operation": "Apply",
                     "fieldsV1": {
                        "f:metadata": {"f:annotations": {"f:team": {}}},
                        "f:spec": {"f:template": {"f:spec": {
                            "f:nodeSelector": {"f:gpu": {}},
                            "f:serviceAccountName": {},
                            "f:containers": {"k:{\"name\":\"detector\"}": {
                                ".": {}, "f:name": {},
                                "f:env": {"k:{\"name\":\"A\"}": {".": {}, "f:name": {}, "f:value": {}}},
                                "f:args": {}
                            }}
                        }}}
                     }}
                ]
            },
            "spec": {"template": {"spec": {
                "nodeSelector": {"gpu": "true"},
                "serviceAccountName": "detector",
                "containers": [{"name": "detector", "args": ["serve"],
                                "env": [{"name": "A", "value": "1"}]}]
            }}}
        })
    }

    #[test]
    fn a_field_the_operator_stopped_setting_forces_an_apply() {
        let live = applied_with_extras();
        let same = json!({
            "metadata": {"annotations": {"team": "audio"}},
            "spec": {"template": {"spec": {
                "nodeSelector": {"gpu": "true"},
                "serviceAccountName": "detector",
                "containers": [{"name": "detector", "args": ["serve"],
                                "env": [{"name": "A", "value": "1"}]}]
            }}}
        });
        // The revision annotation belongs to another manager: its absence changes nothing.
        assert!(up_to_date(&live, &same), "nothing changed: no write");
        // Each removal is a subset of the live object (2c3c99f skipped the apply) but must
        // reach the cluster.
        for gone in [
            "/spec/template/spec/nodeSelector",
            "/spec/template/spec/serviceAccountName",
            "/metadata/annotations",
            "/spec/template/spec/containers/0/env",
        ] {
            let mut desired = same.clone();
            let (parent, key) = gone.rsplit_once('/').unwrap();
            desired
                .pointer_mut(parent)
                .and_then(Value::as_object_mut)
                .unwrap()
                .remove(key);
            assert!(contains(&live, &desired), "{gone}: still a subset");
            assert!(
                !up_to_date(&live, &desired),
                "dropping {gone} must be applied"
            );
        }
    }
}
