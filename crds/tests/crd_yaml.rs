//! The checked-in `crds/audiodetector.yaml` must be exactly what the Rust types generate, so the
//! CRD that users (and the Helm chart) install never drifts from what the operator reads.

use std::path::Path;

use auralguard_crds::{crd_yaml, AudioDetector};
use kube::CustomResourceExt;

const REGENERATE: &str = "cargo run -p auralguard-crds --bin crdgen > crds/audiodetector.yaml";

fn checked_in() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("audiodetector.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{} is missing ({e}); create it with `{REGENERATE}`",
            path.display()
        )
    })
}

#[test]
fn checked_in_crd_is_current() {
    let generated = crd_yaml().unwrap();
    let on_disk = checked_in();
    if generated != on_disk {
        let first_diff = generated
            .lines()
            .zip(on_disk.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || "the files differ in length".to_string(),
                |i| format!("line {}", i + 1),
            );
        panic!(
            "crds/audiodetector.yaml is stale ({first_diff}); regenerate it with `{REGENERATE}` and commit the result"
        );
    }
}

#[test]
fn checked_in_yaml_parses_back_to_the_same_crd() {
    let parsed: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
        serde_saphyr::from_str(&checked_in()).unwrap();
    assert_eq!(parsed, AudioDetector::crd());
}

#[test]
fn names_subresources_and_columns() {
    let crd = AudioDetector::crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("audiodetectors.auralguard.io")
    );
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.short_names, Some(vec!["adet".to_string()]));
    let v = &crd.spec.versions[0];
    assert_eq!(v.name, "v1alpha1");
    let sub = v.subresources.as_ref().unwrap();
    assert!(sub.status.is_some());
    let scale = sub.scale.as_ref().unwrap();
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(scale.status_replicas_path, ".status.replicas");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.selector")
    );
    let columns: Vec<_> = v
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| c.name.to_uppercase())
        .collect();
    assert_eq!(
        columns,
        ["MODEL", "VERSION", "READY", "REPLICAS", "PHASE", "AGE"]
    );
}
