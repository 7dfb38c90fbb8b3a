//! The CRD's validation rules, exercised the way the API server applies them: schema defaults
//! first, then every `x-kubernetes-validations` CEL rule, evaluated by kube's CEL engine against
//! the schema in the checked-in `crds/audiodetector.yaml`. The `pattern` of `spec.model.source` is
//! checked against the model-source parser so the two never disagree.

use std::path::Path;

use auralguard_crds::{ModelSource, DURATION_PATTERN, MODEL_SOURCE_PATTERN};
use kube::core::cel::{compile_schema, Validator};
use serde_json::{json, Value};

fn schema() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("audiodetector.yaml");
    let crd: Value = serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn detector(spec: Value) -> Value {
    json!({
        "apiVersion": "auralguard.io/v1alpha1",
        "kind": "AudioDetector",
        "metadata": {"name": "d", "namespace": "ns"},
        "spec": spec,
    })
}

/// The messages of the rules the object breaks (empty when it is valid).
fn violations(spec: Value) -> Vec<String> {
    match Validator::new().validate(&schema(), &detector(spec), None) {
        Ok(()) => vec![],
        Err(errors) => errors.iter().map(|e| e.message.clone()).collect(),
    }
}

fn registry_spec() -> Value {
    json!({
        "model": {"source": "models:/deepfake@champion"},
        "mlflow": {"trackingUri": "http://mlflow:5000"},
    })
}

#[test]
fn every_rule_compiles() {
    let compiled = compile_schema(&schema());
    let errors: Vec<String> = compiled
        .compilation_errors()
        .iter()
        .map(|e| format!("{e:?}"))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn minimal_and_full_detectors_are_valid() {
    assert_eq!(
        violations(json!({"model": {"source": "/models/demo"}})),
        Vec::<String>::new()
    );
    let full = json!({
        "model": {"source": "models:/deepfake@champion"},
        "mlflow": {"trackingUri": "http://mlflow:5000", "credentialsSecret": {"name": "mlflow"}},
        "autoscaling": {"minReplicas": 2, "maxReplicas": 6, "targetCpuUtilization": 70},
        "resources": {"limits": {"nvidia.com/gpu": "1"}},
        "rollout": {
            "steps": [{"weight": 10, "pause": "5m"}, {"weight": 50, "pause": "10m"}, {"weight": 100}],
            "analysis": {
                "maxErrorRate": 0.02, "maxP99Latency": "750ms", "minRequests": 100,
                "fakeShare": {"maxDifference": 0.1, "minVerdicts": 200, "confidence": 0.999},
                "failureLimit": 5, "inconclusiveLimit": 2
            },
            "progressDeadline": "15m",
            "maxSurge": 0
        },
        "serviceMonitor": {"labels": {"release": "prometheus"}}
    });
    assert_eq!(violations(full), Vec::<String>::new());
}

#[test]
fn replicas_and_autoscaling_are_exclusive() {
    let mut spec = registry_spec();
    spec["replicas"] = json!(3);
    spec["autoscaling"] = json!({"minReplicas": 1, "maxReplicas": 3, "targetConcurrency": 4});
    assert_eq!(
        violations(spec),
        ["set either replicas or autoscaling, not both"]
    );
}

#[test]
fn autoscaling_min_must_not_exceed_max_and_needs_a_target() {
    let mut spec = registry_spec();
    spec["autoscaling"] = json!({"minReplicas": 5, "maxReplicas": 2, "targetConcurrency": 4});
    assert_eq!(
        violations(spec.clone()),
        ["minReplicas must not exceed maxReplicas"]
    );
    // The defaulted minReplicas (1) counts too.
    spec["autoscaling"] = json!({"maxReplicas": 2, "targetConcurrency": 4});
    assert_eq!(violations(spec.clone()), Vec::<String>::new());
    spec["autoscaling"] = json!({"minReplicas": 1, "maxReplicas": 2});
    assert_eq!(
        violations(spec),
        ["set targetConcurrency, targetCpuUtilization or both"]
    );
}

#[test]
fn registry_sources_need_mlflow() {
    assert_eq!(
        violations(json!({"model": {"source": "models:/deepfake/3"}})),
        ["an MLflow model source (models:/...) needs spec.mlflow.trackingUri"]
    );
}

#[test]
fn canary_weights_must_increase() {
    let with_steps = |steps: Value| {
        let mut spec = registry_spec();
        spec["rollout"] = json!({"steps": steps});
        violations(spec)
    };
    assert!(with_steps(json!([{"weight": 10}, {"weight": 50}, {"weight": 100}])).is_empty());
    assert!(with_steps(json!([{"weight": 100}])).is_empty());
    assert_eq!(
        with_steps(json!([{"weight": 10}, {"weight": 50}, {"weight": 50}])),
        ["canary step weights must increase from one step to the next"]
    );
    assert_eq!(
        with_steps(json!([{"weight": 60}, {"weight": 20}])),
        ["canary step weights must increase from one step to the next"]
    );
    // Ten steps (the schema's maxItems): the rule reaches the last pair.
    let ten: Vec<Value> = (1..=10).map(|i| json!({"weight": i * 10})).collect();
    assert!(with_steps(json!(ten)).is_empty());
    let mut ten_bad = ten;
    ten_bad[9] = json!({"weight": 90});
    assert_eq!(with_steps(json!(ten_bad)).len(), 1);
}

#[test]
fn durations_must_parse_and_be_positive() {
    let mut spec = registry_spec();
    // An unparsable duration fails the rule's evaluation, which rejects the object (the schema's
    // pattern, checked below, rejects it as well).
    spec["rollout"] = json!({"steps": [{"weight": 10, "pause": "five minutes"}]});
    let errors = violations(spec.clone());
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("duration"), "{errors:?}");
    spec["rollout"] = json!({"steps": [{"weight": 10}], "progressDeadline": "0s"});
    assert_eq!(
        violations(spec.clone()),
        ["progressDeadline must be a positive duration such as 10m"]
    );
    spec["rollout"] = json!({"steps": [{"weight": 10}], "analysis": {"maxP99Latency": "-1s"}});
    assert_eq!(
        violations(spec.clone()),
        ["maxP99Latency must be a positive duration such as 2s"]
    );
    spec["rollout"] = json!({"steps": [{"weight": 10}], "analysis": {"trafficDeadline": "0s"}});
    assert_eq!(
        violations(spec),
        ["trafficDeadline must be a positive duration such as 30m"]
    );
}

#[test]
fn fake_share_guard_is_bounded_and_defaulted_by_the_schema() {
    let analysis =
        &schema()["properties"]["spec"]["properties"]["rollout"]["properties"]["analysis"];
    let fake_share = &analysis["properties"]["fakeShare"];
    assert_eq!(
        fake_share["default"],
        json!({"maxDifference": 0.2, "minVerdicts": 50, "confidence": 0.99})
    );
    assert_eq!(analysis["default"]["fakeShare"], fake_share["default"]);
    let field = |name: &str| &fake_share["properties"][name];
    let bounds = |name: &str| {
        (
            field(name)["minimum"].clone(),
            field(name)["maximum"].clone(),
        )
    };
    assert_eq!(bounds("maxDifference"), (json!(0.0), json!(1.0)));
    assert_eq!(bounds("minVerdicts"), (json!(0.0), Value::Null));
    assert_eq!(bounds("confidence"), (json!(0.5), json!(0.9999)));
    for name in ["maxDifference", "minVerdicts", "confidence"] {
        assert!(
            field(name)["description"]
                .as_str()
                .is_some_and(|d| d.len() > 40),
            "{name} needs a description"
        );
    }
    // Verdict counters in the stored baseline are optional, so older status objects stay valid.
    let pod = &schema()["properties"]["status"]["properties"]["rollout"]["properties"]["baseline"]
        ["properties"]["stable"]["items"];
    assert_eq!(pod["required"], json!(["errors", "pod", "requests"]));
    assert_eq!(pod["properties"]["fake"]["default"], json!(0));
}

#[test]
fn scrape_failure_and_inconclusive_limits_are_bounded_and_defaulted_by_the_schema() {
    let analysis =
        &schema()["properties"]["spec"]["properties"]["rollout"]["properties"]["analysis"];
    for name in ["failureLimit", "inconclusiveLimit"] {
        let field = &analysis["properties"][name];
        assert_eq!(field["default"], json!(3), "{name}");
        assert_eq!(analysis["default"][name], json!(3), "{name}");
        assert_eq!(field["minimum"], json!(1.0), "{name}");
        assert_eq!(field["maximum"], Value::Null, "{name}");
        assert_eq!(field["type"], "integer", "{name}");
        assert!(
            field["description"].as_str().is_some_and(|d| d.len() > 40),
            "{name} needs a description"
        );
    }
    // What status records of them is optional, so older status objects stay valid.
    let rollout = &schema()["properties"]["status"]["properties"]["rollout"];
    let required = rollout["required"].as_array().unwrap();
    for name in ["failedScrapes", "lastScrapeError", "inconclusiveWindows"] {
        assert!(rollout["properties"][name].is_object(), "{name}");
        assert!(!required.contains(&json!(name)), "{name}");
    }
    let baseline = &rollout["properties"]["baseline"];
    assert_eq!(baseline["properties"]["unreadyPods"]["type"], "integer");
    assert!(baseline["required"].is_null());
    let pod = &baseline["properties"]["pods"]["items"];
    assert_eq!(pod["properties"]["restarts"]["nullable"], json!(true));
    assert_eq!(pod["required"], json!(["errors", "pod", "requests"]));
}

#[test]
fn duration_pattern_accepts_what_kubernetes_durations_parse() {
    let re = regex::Regex::new(DURATION_PATTERN).unwrap();
    for good in ["0s", "90s", "5m", "1h30m", "500ms", "1.5s", "10us"] {
        assert!(re.is_match(good), "{good}");
        assert!(good.parse::<kube::core::Duration>().is_ok(), "{good}");
    }
    for bad in ["five minutes", "5", "-1s", "1d", "", "5 m"] {
        assert!(!re.is_match(bad), "{bad}");
    }
    // The schema carries it on every duration field.
    let schema = schema().to_string();
    assert_eq!(
        schema
            .matches(&DURATION_PATTERN.replace('\\', "\\\\"))
            .count(),
        5,
        "{schema}"
    );
}

#[test]
fn source_pattern_agrees_with_the_parser() {
    // The pattern is RE2 on the API server; these strings need nothing beyond what both share.
    let re = regex::Regex::new(MODEL_SOURCE_PATTERN).unwrap();
    for s in [
        "models:/deepfake@champion",
        "models:/deepfake/12",
        "models:/a/b/3",
        "models:/a/latest",
        "models:/@prod",
        "models:/a@",
        "pvc://models/demo/v1",
        "pvc://models",
        "pvc://",
        "/opt/models/demo",
        "https://example.org/m.tar.gz",
        "relative/path",
        "s3://bucket/model",
    ] {
        assert_eq!(
            re.is_match(s),
            s.parse::<ModelSource>().is_ok(),
            "pattern and parser disagree on {s:?}"
        );
    }
}
