//! Offline schema validation: every golden snapshot of the operator's objects and the CRD
//! validate against the Kubernetes 1.33 OpenAPI schemas with `kubernetes-validate --strict`
//! (installed into `.venv/deploy` by `scripts/install-deploy-test-deps.sh`, or named by
//! `AURALGUARD_KUBERNETES_VALIDATE`). Without it a test prints `SKIP` and passes, unless
//! `AURALGUARD_NO_SKIP=1`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn validator(test: &str) -> Option<PathBuf> {
    let path = std::env::var_os("AURALGUARD_KUBERNETES_VALIDATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/deploy/bin/kubernetes-validate"));
    if path.is_file() {
        return Some(path);
    }
    let why = format!(
        "{} not found; run `bash scripts/install-deploy-test-deps.sh` or set AURALGUARD_KUBERNETES_VALIDATE",
        path.display()
    );
    if std::env::var("AURALGUARD_NO_SKIP").is_ok_and(|v| v == "1") {
        panic!("{test}: kubernetes-validate is required (AURALGUARD_NO_SKIP=1): {why}");
    }
    println!("SKIP: {test}: {why}");
    None
}

fn validate(bin: &Path, files: &[PathBuf]) -> (bool, String) {
    let out = Command::new(bin)
        .args(["-k", "1.33.0", "--strict"])
        .args(files)
        .output()
        .expect("run kubernetes-validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn snapshots_and_the_crd_validate_against_kubernetes_schemas() {
    let Some(bin) = validator("snapshots_and_the_crd_validate") else {
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("operator/tests/snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    files.push(repo().join("crds/audiodetector.yaml"));
    let (ok, text) = validate(&bin, &files);
    assert!(ok, "{text}");
    // Every built-in kind was actually checked (ServiceMonitor has no bundled schema).
    for kind in [
        "deployment/",
        "service/",
        "poddisruptionbudget/",
        "horizontalpodautoscaler/",
        "customresourcedefinition/",
    ] {
        assert!(
            text.contains(&format!("passed for resource {kind}")),
            "{kind} not validated:\n{text}"
        );
    }
}

#[test]
fn the_validator_rejects_a_broken_object() {
    let Some(bin) = validator("the_validator_rejects_a_broken_object") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("auralguard-validate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicas: two}\n",
    )
    .unwrap();
    let (ok, text) = validate(&bin, &[bad]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!ok, "{text}");
    assert!(text.contains("spec.replicas"), "{text}");
}
