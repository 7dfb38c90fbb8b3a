"""Offline checks of everything AuralGuard ships for deployment (run by scripts/check-deploy.sh).

No cluster and no Docker engine exist on the machines this runs on, so each artefact is checked
with the real tool's own library where one can run here, and with explicit assertions where not:

* Helm chart (helm/auralguard): Helm v4's linter in strict mode and its renderer (helm-python-sdk),
  for several value sets; every rendered object is validated against the Kubernetes 1.32 OpenAPI
  schemas (kubernetes-validate, strict: unknown fields fail); then what matters is asserted:
  non-root, read-only root FS, probes, leader-election wiring, least-privilege RBAC and its
  ClusterRole/Role switch, versions tied to the Cargo workspace, the CRD copy in sync.
* CRD (crds/audiodetector.yaml): validated as a CustomResourceDefinition; every AudioDetector in
  examples/ is validated against its openAPIV3Schema (made strict like `kubectl apply`'s field
  validation; CEL rules are not evaluated here: the crds crate's tests do that).
* examples/: every Kubernetes object validated; the GPU example agrees with the eksctl cluster.
* Dockerfiles: hadolint, plus non-root runtime stages and the right entrypoints.
* docker-compose.yml: Compose's own loader (`docker-compose config`), plus the wiring.

Run: .venv/deploy/bin/python -m pytest scripts/deploy_checks.py
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml
from helm_python.chart import Chart, lint
from kubernetes_validate import utils as kv

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "auralguard"
CRD_GENERATED = ROOT / "crds" / "audiodetector.yaml"
CRD_CHART_COPY = CHART / "crds" / "audiodetector.yaml"
EXAMPLES = ROOT / "examples"
VENV_BIN = ROOT / ".venv" / "deploy" / "bin"

K8S_VERSION = "1.32.0"  # the oldest EKS version still in standard support that we target
RELEASE = "auralguard"
RELEASE_NS = "auralguard"
NONROOT_UID = 65532

# Value sets the chart must render, lint and validate with. Each one exercises a branch.
SCENARIOS: dict[str, dict] = {
    "defaults": {},
    # One namespace only (Role instead of ClusterRole), HA with leader election, ServiceMonitor on.
    "namespaced-ha-monitored": {
        "watchNamespace": "detectors",
        "replicaCount": 2,
        "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    },
    "no-leader-election": {"leaderElection": {"enabled": False}},
    "own-serviceaccount-and-rbac": {
        "serviceAccount": {"create": False, "name": "platform-operator"},
        "rbac": {"create": False},
    },
    "private-registry": {
        "image": {"repository": "mirror/auralguard-operator", "tag": "dev", "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "regcred"}],
        "detectorImage": {"repository": "mirror/auralguard", "tag": "dev"},
        "serviceAccount": {"create": True, "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/auralguard"}},
    },
}

# What the operator needs, per (apiGroup, resource), read from the RBAC table in operator/README.md
# (the contract the operator's code is written against). The chart must grant exactly this:
# nothing more ("least privilege"), nothing less.
def _readme_rules() -> dict[tuple[str, str], set[str]]:
    text = (ROOT / "operator" / "README.md").read_text()
    section = text.split("## RBAC", 1)[1].split("\n## ", 1)[0]
    rules: dict[tuple[str, str], set[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        group, resource = cells[0].strip("`").strip('"'), cells[1].strip("`")
        rules[(group, resource)] = {v.strip() for v in cells[2].split(",")}
    assert rules, "no RBAC table found in operator/README.md"
    return rules


MANAGED_RULES = _readme_rules()
LEASE_RULES = {("coordination.k8s.io", "leases"): {"get", "create", "update"}}

# Prometheus-operator's ServiceMonitor CRD is not installed here; this schema covers the fields we
# render (and rejects any other), which is what a typo would break.
_DURATION = {"type": "string", "pattern": r"^([0-9]+(ms|s|m|h))+$"}
SERVICE_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}},
                },
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchNames": {"type": "array", "items": {"type": "string"}}, "any": {"type": "boolean"}},
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["port"],
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "interval": _DURATION,
                            "scrapeTimeout": _DURATION,
                        },
                    },
                },
            },
        },
    },
}


# --------------------------------------------------------------------------------------------
# helpers


def load_yaml_docs(path: Path) -> list[dict]:
    with path.open() as f:
        return [d for d in yaml.safe_load_all(f) if d]


@functools.cache
def workspace_version() -> str:
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    return cargo["workspace"]["package"]["version"]


@functools.cache
def render(scenario: str) -> tuple[tuple[str, dict], ...]:
    """(template path, object) for every object the chart renders with a scenario's values."""
    with Chart.load(CHART) as chart:
        out = chart.render(values=copy.deepcopy(SCENARIOS[scenario]), name=RELEASE, namespace=RELEASE_NS)
    objs = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        objs.extend((path, d) for d in yaml.safe_load_all(text) if d)
    return tuple(objs)


def objects(scenario: str, kind: str) -> list[dict]:
    return [o for _, o in render(scenario) if o["kind"] == kind]


def the(scenario: str, kind: str) -> dict:
    found = objects(scenario, kind)
    assert len(found) == 1, f"{scenario}: expected one {kind}, got {len(found)}"
    return found[0]


@functools.cache
def crd() -> dict:
    if not CRD_GENERATED.exists():
        pytest.fail(f"{CRD_GENERATED.relative_to(ROOT)} does not exist yet: generate it with the crds crate's crdgen")
    (doc,) = load_yaml_docs(CRD_GENERATED)
    return doc


def _strict(schema):
    """A CRD schema as `kubectl apply` (server-side field validation: Strict) judges objects:
    unknown fields are errors unless the schema preserves them; `nullable` allows null."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: (_strict(v) if k not in ("enum", "default", "example") else v) for k, v in schema.items()}
    if (
        out.get("type") == "object"
        and "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if out.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


@functools.cache
def crd_validator(api_version: str) -> jsonschema.Draft4Validator:
    group, version = api_version.split("/")
    spec = crd()["spec"]
    assert spec["group"] == group, f"CRD group is {spec['group']}, object says {group}"
    for v in spec["versions"]:
        if v["name"] == version:
            root = _strict(v["schema"]["openAPIV3Schema"])
            # The API server adds these three to every custom resource's schema itself.
            root["properties"] |= {
                "apiVersion": {"enum": [api_version]},  # Draft 4 has no const
                "kind": {"enum": [spec["names"]["kind"]]},
                "metadata": {"type": "object", "required": ["name"]},
            }
            root["required"] = sorted(set(root.get("required", [])) | {"apiVersion", "kind", "metadata"})
            return jsonschema.Draft4Validator(root)
    pytest.fail(f"the CRD has no version {version}")


def validate_object(obj: dict, where: str) -> None:
    """Validate one manifest: built-in kinds against Kubernetes' OpenAPI schemas (the same call as
    `kubernetes-validate -k 1.32.0 --strict`), our CRD's kind against the CRD, ServiceMonitor
    against SERVICE_MONITOR_SCHEMA."""
    kind = obj.get("kind")
    name = f"{where}: {kind}/{obj.get('metadata', {}).get('name')}"
    if kind == "AudioDetector":
        errors = sorted(crd_validator(obj["apiVersion"]).iter_errors(obj), key=lambda e: list(e.path))
        assert not errors, f"{name}: " + "; ".join(f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors)
        return
    if kind == "ServiceMonitor":
        jsonschema.validate(obj, SERVICE_MONITOR_SCHEMA)
        return
    try:
        kv.validate(obj, K8S_VERSION, strict=True)
    except kv.ValidationError as e:
        pytest.fail(f"{name}: {'.'.join(map(str, e.path))}: {e.message}")
    except kv.SchemaNotFoundError as e:
        pytest.fail(f"{name}: {e.message}")


def rules_of(role: dict) -> dict[tuple[str, str], set[str]]:
    """A Role's rules as {(apiGroup, resource): verbs}, refusing wildcards and odd shapes."""
    out: dict[tuple[str, str], set[str]] = {}
    for rule in role.get("rules", []):
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, f"{role['metadata']['name']}: unexpected rule keys {set(rule)}"
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], f"{role['metadata']['name']}: wildcard in {field}: {rule}"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


def operator_container(scenario: str) -> dict:
    (container,) = the(scenario, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def image_host(ref: str) -> str | None:
    """The registry host of an image reference, as Docker parses it (None for Docker Hub)."""
    first, sep, _ = ref.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return None


# --------------------------------------------------------------------------------------------
# chart metadata, versions, CRD copy


def test_chart_version_and_app_version_are_the_workspace_version():
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    want = workspace_version()
    assert meta["version"] == want, f"Chart.yaml version {meta['version']} != Cargo workspace version {want}"
    assert str(meta["appVersion"]) == want, f"Chart.yaml appVersion {meta['appVersion']} != Cargo workspace version {want}"


def test_chart_crd_is_a_copy_of_the_generated_crd():
    crd()  # fails with a clear message when it was never generated
    assert CRD_CHART_COPY.exists(), f"{CRD_CHART_COPY.relative_to(ROOT)} is missing: cp crds/audiodetector.yaml {CRD_CHART_COPY.relative_to(ROOT)}"
    assert CRD_CHART_COPY.read_bytes() == CRD_GENERATED.read_bytes(), (
        f"{CRD_CHART_COPY.relative_to(ROOT)} differs from crds/audiodetector.yaml: "
        f"cp crds/audiodetector.yaml {CRD_CHART_COPY.relative_to(ROOT)}"
    )


def test_crd_validates_as_a_customresourcedefinition():
    doc = crd()
    validate_object(doc, "crds/audiodetector.yaml")
    spec = doc["spec"]
    assert (spec["group"], spec["names"]["kind"], spec["scope"]) == ("auralguard.io", "AudioDetector", "Namespaced")
    assert "adet" in spec["names"].get("shortNames", [])
    served = [v for v in spec["versions"] if v["served"]]
    assert any(v["name"] == "v1alpha1" and v["storage"] for v in served)
    for v in served:
        assert "status" in v.get("subresources", {}), f"{v['name']}: no status subresource"
        assert "scale" in v.get("subresources", {}), f"{v['name']}: no scale subresource"


# --------------------------------------------------------------------------------------------
# chart: lint, render, validate


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_chart_lints_strictly(scenario):
    report = lint(CHART, values=copy.deepcopy(SCENARIOS[scenario]), strict=True, namespace=RELEASE_NS, kube_version="v" + K8S_VERSION)
    problems = [m for m in report["messages"] if m["severity"] >= 2] + [{"error": e} for e in report["errors"]]
    assert not problems, f"helm lint --strict ({scenario}): {problems}"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rendered_objects_validate_against_kubernetes_schemas(scenario):
    objs = render(scenario)
    assert objs, "the chart rendered nothing"
    for path, obj in objs:
        validate_object(obj, f"{scenario} {path}")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_everything_is_labelled_and_namespaced(scenario):
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding"}
    for path, obj in render(scenario):
        meta = obj["metadata"]
        assert meta["labels"]["app.kubernetes.io/instance"] == RELEASE, f"{path}: missing instance label"
        assert meta["labels"]["app.kubernetes.io/version"] == workspace_version()
        if obj["kind"] in cluster_scoped:
            assert "namespace" not in meta, f"{path}: a cluster-scoped {obj['kind']} has a namespace"
        else:
            assert meta.get("namespace"), f"{path}: {obj['kind']} without a namespace"


def test_values_schema_rejects_bad_values():
    bad = [
        {"unknownKey": 1},  # typo at the top level
        {"image": {"repository": "x", "pullPolicy": "Sometimes"}},  # enum
        {"logFormat": "xml"},
        {"replicaCount": "2"},  # type
        {"replicaCount": 0},
        {"watchNamespace": "Not_A_Namespace"},
        {"mlflowPollInterval": "sixty"},
        {"serviceMonitor": {"enabled": True, "intervall": "30s"}},  # nested typo
        {"resources": {"limits": {"cpu": "lots"}}},
    ]
    with Chart.load(CHART) as chart:
        chart.validate_schema(chart.merge_values({}))  # the defaults themselves are valid
        for values in bad:
            with pytest.raises(Exception):
                chart.validate_schema(chart.merge_values(values))
                pytest.fail(f"values.schema.json accepted {values}")


def test_several_replicas_need_leader_election():
    with Chart.load(CHART) as chart, pytest.raises(Exception, match="leaderElection"):
        chart.render(values={"replicaCount": 2, "leaderElection": {"enabled": False}}, name=RELEASE, namespace=RELEASE_NS)


# --------------------------------------------------------------------------------------------
# chart: the operator Deployment


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_operator_runs_non_root_with_a_read_only_root_filesystem(scenario):
    pod = the(scenario, "Deployment")["spec"]["template"]["spec"]
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] == NONROOT_UID
    assert psc["seccompProfile"]["type"] == "RuntimeDefault"
    for c in pod["containers"]:
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True, f"{c['name']}: root filesystem is writable"
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert c["resources"]["requests"] and c["resources"]["limits"], f"{c['name']}: no resources"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_operator_probes_and_ports(scenario):
    c = operator_container(scenario)
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    (port,) = c["ports"]
    assert port["name"] == c["livenessProbe"]["httpGet"]["port"] == c["readinessProbe"]["httpGet"]["port"]
    assert f"--http-addr=0.0.0.0:{port['containerPort']}" in c["args"]
    svc = the(scenario, "Service")
    assert svc["spec"]["ports"][0]["targetPort"] == port["name"]
    assert svc["spec"]["selector"] == the(scenario, "Deployment")["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_operator_args_follow_the_values(scenario):
    values = SCENARIOS[scenario]
    c = operator_container(scenario)
    args, version = c["args"], workspace_version()
    leader = values.get("leaderElection", {}).get("enabled", True)
    assert f"--leader-election={str(leader).lower()}" in args
    ns = values.get("watchNamespace")
    assert (f"--namespace={ns}" in args) if ns else not any(a.startswith("--namespace") for a in args)
    detector = values.get("detectorImage", {})
    want_image = f"{detector.get('repository', 'auralguard/auralguard')}:{detector.get('tag') or version}"
    assert f"--default-image={want_image}" in args
    op = values.get("image", {})
    assert c["image"] == f"{op.get('repository', 'auralguard/auralguard-operator')}:{op.get('tag') or version}"
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    replicas = the(scenario, "Deployment")["spec"]["replicas"]
    assert replicas == values.get("replicaCount", 1)


def test_servicemonitor_only_when_enabled():
    assert not objects("defaults", "ServiceMonitor")
    sm = the("namespaced-ha-monitored", "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["endpoints"][0]["port"] == operator_container("defaults")["ports"][0]["name"]
    svc_labels = the("namespaced-ha-monitored", "Service")["metadata"]["labels"]
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc_labels.items(), "the ServiceMonitor does not select the Service"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_notes_tell_what_to_do_next(scenario):
    with Chart.load(CHART) as chart:
        out = chart.render(values=copy.deepcopy(SCENARIOS[scenario]), name=RELEASE, namespace=RELEASE_NS)
    (notes,) = [text for path, text in out.items() if path.endswith("NOTES.txt")]
    for step in ("kubectl apply -f examples/", "kubectl get audiodetectors", "curl -F audio=@", "/predict"):
        assert step in notes, f"NOTES.txt lacks {step!r}"
    assert f"deployment/{the(scenario, 'Deployment')['metadata']['name']}" in notes


def test_default_images_have_no_registry_host():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for key in ("image", "detectorImage"):
        assert image_host(values[key]["repository"]) is None, f"values.{key}.repository names a registry host"


# --------------------------------------------------------------------------------------------
# chart: RBAC


def _bound(scenario: str, role_kind: str, binding_kind: str) -> list[tuple[dict, dict]]:
    """(role, its binding) pairs, checking each binding points at the operator's ServiceAccount."""
    sa = the(scenario, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
    roles = {r["metadata"]["name"]: r for r in objects(scenario, role_kind)}
    pairs = []
    for b in objects(scenario, binding_kind):
        assert b["roleRef"]["kind"] == role_kind and b["roleRef"]["name"] in roles, f"{b['metadata']['name']}: dangling roleRef"
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": RELEASE_NS}]
        role = roles.pop(b["roleRef"]["name"])
        if role_kind == "Role":
            assert role["metadata"]["namespace"] == b["metadata"]["namespace"]
        pairs.append((role, b))
    assert not roles, f"{role_kind}s without a binding: {list(roles)}"
    return pairs


def _merged(pairs) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for role, _ in pairs:
        for key, verbs in rules_of(role).items():
            out.setdefault(key, set()).update(verbs)
    return out


def test_rbac_all_namespaces_uses_a_clusterrole():
    cluster = _bound("defaults", "ClusterRole", "ClusterRoleBinding")
    assert _merged(cluster) == MANAGED_RULES
    roles = _bound("defaults", "Role", "RoleBinding")
    assert [r["metadata"]["namespace"] for r, _ in roles] == [RELEASE_NS]
    assert _merged(roles) == LEASE_RULES


def test_rbac_single_namespace_uses_a_role_there():
    scenario = "namespaced-ha-monitored"
    cluster = _bound(scenario, "ClusterRole", "ClusterRoleBinding")
    # Nothing cluster-wide: discovery (is the ServiceMonitor CRD there?) needs no RBAC rule.
    assert cluster == []
    roles = {r["metadata"]["namespace"]: rules_of(r) for r, _ in _bound(scenario, "Role", "RoleBinding")}
    watched = SCENARIOS[scenario]["watchNamespace"]
    assert roles[watched] == MANAGED_RULES
    assert roles[RELEASE_NS] == LEASE_RULES


def test_rbac_without_leader_election_has_no_lease_access():
    assert _merged(_bound("no-leader-election", "Role", "RoleBinding")) == {}


def test_rbac_and_serviceaccount_can_be_brought_along():
    scenario = "own-serviceaccount-and-rbac"
    for kind in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"):
        assert not objects(scenario, kind), f"{kind} rendered although disabled"
    assert the(scenario, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "platform-operator"


# --------------------------------------------------------------------------------------------
# examples


def example_files() -> list[Path]:
    """Every manifest under examples/ (examples/audio holds sound, not manifests)."""
    return sorted(p for p in EXAMPLES.rglob("*.y*ml") if "audio" not in p.relative_to(EXAMPLES).parts)


def example_objects(name: str) -> list[dict]:
    return load_yaml_docs(EXAMPLES / name)


def audio_detector(name: str) -> dict:
    (adet,) = [o for o in example_objects(name) if o["kind"] == "AudioDetector"]
    return adet


REQUIRED_EXAMPLES = [
    "detector-cpu.yaml",
    "detector-gpu-eks.yaml",
    "detector-mlflow-canary.yaml",
    "mongodb-secret.yaml",
    "eks/cluster.yaml",
    "README.md",
]


@pytest.mark.parametrize("name", REQUIRED_EXAMPLES)
def test_example_exists(name):
    assert (EXAMPLES / name).is_file(), f"examples/{name} is missing"


@pytest.mark.parametrize("path", example_files(), ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_example_validates(path):
    docs = load_yaml_docs(path)
    assert docs, f"{path} is empty"
    for obj in docs:
        if obj.get("apiVersion") == "eksctl.io/v1alpha5":
            continue  # eksctl's config, not a Kubernetes object: see test_eks_cluster_matches_gpu_example
        validate_object(obj, str(path.relative_to(ROOT)))
        if obj["kind"] == "AudioDetector":
            image = obj["spec"].get("image")
            assert image is None or image_host(image) is None


@pytest.mark.parametrize(
    "path, value",
    [
        (["spec", "replica"], 2),  # typo of replicas
        (["spec", "service", "type"], "Internal"),  # not an enum value
        (["spec", "resources", "limit"], {"cpu": "1"}),  # typo inside a built-in type
        (["spec", "rollout", "steps"], [{"weight": 150}]),  # out of range
        (["spec", "model", "source"], "s3://bucket/model"),  # not an accepted source
        (["kind"], "AudioDetectors"),
    ],
)
def test_the_validators_reject_broken_objects(path, value):
    """The checks above are only worth something if they fail on mistakes."""
    obj = copy.deepcopy(audio_detector("detector-cpu.yaml"))
    target = obj
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value
    assert list(crd_validator(obj["apiVersion"]).iter_errors(obj)), f"the CRD schema accepted {path} = {value!r}"


def test_kubernetes_validation_is_strict():
    deployment = copy.deepcopy(the("defaults", "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFS"] = True
    with pytest.raises(kv.ValidationError):
        kv.validate(deployment, K8S_VERSION, strict=True)


def test_gpu_example_requests_a_gpu_on_the_eks_gpu_node_group():
    spec = audio_detector("detector-gpu-eks.yaml")["spec"]
    assert str(spec["resources"]["limits"]["nvidia.com/gpu"]) == "1"
    assert spec["nodeSelector"], "the GPU example must pin the GPU node group"
    assert any(t.get("key") == "nvidia.com/gpu" and t.get("effect") == "NoSchedule" for t in spec.get("tolerations", []))


def test_eks_cluster_matches_gpu_example():
    (cluster,) = example_objects("eks/cluster.yaml")
    assert (cluster["apiVersion"], cluster["kind"]) == ("eksctl.io/v1alpha5", "ClusterConfig")
    groups = cluster.get("managedNodeGroups", []) + cluster.get("nodeGroups", [])
    gpu_spec = audio_detector("detector-gpu-eks.yaml")["spec"]
    # The detector's nodeSelector must match a GPU node group's labels, and that group's taint must
    # be tolerated: otherwise the pod stays Pending on a real cluster.
    matching = [g for g in groups if gpu_spec["nodeSelector"].items() <= ({"eks.amazonaws.com/nodegroup": g["name"]} | g.get("labels", {})).items()]
    assert matching, f"no node group in examples/eks/cluster.yaml matches nodeSelector {gpu_spec['nodeSelector']}"
    for g in matching:
        assert re.match(r"^(g4dn|g5|g6|g6e|p3|p4d|p5)\.", g["instanceType"]), f"{g['name']}: {g['instanceType']} is not a GPU instance"
        for taint in g.get("taints", []):
            assert any(t.get("key") == taint["key"] and t.get("effect") == taint["effect"] for t in gpu_spec.get("tolerations", [])), (
                f"the GPU example does not tolerate node group {g['name']}'s taint {taint}"
            )


def test_canary_example_follows_an_mlflow_alias_in_three_steps():
    spec = audio_detector("detector-mlflow-canary.yaml")["spec"]
    assert spec["model"]["source"] == "models:/deepfake-detector@champion"
    assert spec["mlflow"]["trackingUri"].startswith("http")
    assert [s["weight"] for s in spec["rollout"]["steps"]] == [10, 50, 100]
    assert all("pause" in s for s in spec["rollout"]["steps"])
    analysis = spec["rollout"]["analysis"]
    assert {"maxErrorRate", "maxP99Latency", "minRequests"} <= set(analysis)


def test_mongodb_example_wires_the_secret_into_a_detector():
    docs = example_objects("mongodb-secret.yaml")
    secrets = {o["metadata"]["name"]: o for o in docs if o["kind"] == "Secret"}
    (adet,) = [o for o in docs if o["kind"] == "AudioDetector"]
    ref = adet["spec"]["mongodb"]["uriSecret"]
    assert ref["name"] in secrets, f"the detector points at Secret {ref['name']}, which the file does not define"
    secret = secrets[ref["name"]]
    assert ref["key"] in secret.get("stringData", {}) | secret.get("data", {})
    assert secret["metadata"].get("namespace", "default") == adet["metadata"].get("namespace", "default")


# --------------------------------------------------------------------------------------------
# Dockerfiles


DOCKERFILES = ["Dockerfile", "Dockerfile.cuda", "operator.Dockerfile", "deploy/mlflow/Dockerfile"]


def final_stage(path: Path) -> list[str]:
    """The instructions of a Dockerfile's last stage, continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    lines = [l.strip() for l in text.splitlines() if l.strip() and not l.lstrip().startswith("#")]
    last_from = max(i for i, l in enumerate(lines) if l.upper().startswith("FROM "))
    return lines[last_from:]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_passes_hadolint(name):
    run = subprocess.run([VENV_BIN / "hadolint", "--no-color", ROOT / name], capture_output=True, text=True)
    assert run.returncode == 0, f"hadolint {name}:\n{run.stdout}{run.stderr}"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_runtime_stage_is_non_root_and_registry_free(name):
    path = ROOT / name
    users = [l.split()[1] for l in final_stage(path) if l.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] == str(NONROOT_UID), f"{name}: the runtime stage must end as USER {NONROOT_UID}"
    for line in path.read_text().splitlines():
        if line.upper().startswith("FROM "):
            image = line.split()[1]
            assert image_host(image) is None, f"{name}: {image} names a registry host"


@pytest.mark.parametrize(
    "name, binary, build_flags",
    [
        ("Dockerfile", "auralguard", "-p auralguard"),
        ("Dockerfile.cuda", "auralguard", "-p auralguard --features cuda"),
        ("operator.Dockerfile", "auralguard-operator", "-p auralguard-operator"),
    ],
)
def test_dockerfile_builds_and_runs_the_right_binary(name, binary, build_flags):
    text = (ROOT / name).read_text()
    assert f"cargo build --release --locked {build_flags}" in text
    stage = final_stage(ROOT / name)
    assert f'ENTRYPOINT ["{binary}"]' in stage
    if binary == "auralguard":
        assert 'CMD ["serve"]' in stage
        assert any("COPY models/demo /models/demo" in l for l in stage)
    if name == "Dockerfile.cuda":
        assert "ARG CUDA_COMPUTE_CAP" in text and "AURALGUARD_DEVICE=cuda" in text


def test_dockerignore_keeps_the_context_small():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {"target", ".git", ".venv", "testdata"} <= ignored


# --------------------------------------------------------------------------------------------
# docker-compose.yml


@functools.cache
def compose_model() -> dict:
    """docker-compose.yml as Compose itself loads it (schema-checked, defaults and interpolation
    applied); fails with Compose's message on an invalid file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AURALGUARD_", "COMPOSE_"))}
    run = subprocess.run(
        [VENV_BIN / "docker-compose", "--project-directory", ROOT, "-f", ROOT / "docker-compose.yml", "config", "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert run.returncode == 0, f"docker-compose config rejected docker-compose.yml:\n{run.stderr}"
    return json.loads(run.stdout)


def test_compose_has_the_four_services_with_healthchecks():
    services = compose_model()["services"]
    assert set(services) == {"detector", "mongo", "mlflow", "prometheus"}
    for name, svc in services.items():
        assert svc.get("healthcheck", {}).get("test"), f"{name}: no healthcheck"
        for port in svc.get("ports", []):
            assert port.get("host_ip") == "127.0.0.1", f"{name}: port {port['published']} is published beyond localhost"
        assert image_host(svc["image"]) is None, f"{name}: {svc['image']} names a registry host"


def test_compose_detector_is_wired_to_mongo_and_mlflow():
    svc = compose_model()["services"]["detector"]
    env = svc["environment"]
    assert env["MONGODB_URI"].startswith("mongodb://mongo:27017/")
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert env["AURALGUARD_MODEL"] == "/models/demo"
    assert svc["build"]["dockerfile"] == "Dockerfile"
    assert svc["image"] == f"auralguard/auralguard:{workspace_version()}"
    assert {d: c["condition"] for d, c in svc["depends_on"].items()} == {"mongo": "service_healthy", "mlflow": "service_healthy"}
    assert any(p["target"] == 8080 for p in svc["ports"])
    assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"]
    # Read-only container: the store (and the MongoDB spool beside it) and the model cache must be volumes.
    mounted = {v["target"] for v in svc["volumes"]}
    for path in (str(Path(env["AURALGUARD_STORE_PATH"]).parent), env["AURALGUARD_MODEL_CACHE"]):
        assert path in mounted, f"the read-only detector writes to {path}, which is not a volume"


def test_compose_mlflow_serves_artifacts_from_sqlite_and_accepts_its_service_name():
    svc = compose_model()["services"]["mlflow"]
    cmd = " ".join(svc["command"])
    assert "--backend-store-uri=sqlite:///" in cmd and "--artifacts-destination=" in cmd and "--serve-artifacts" in cmd
    allowed = re.search(r"--allowed-hosts=(\S+)", cmd).group(1).split(",")
    assert "mlflow:*" in allowed, "MLflow 3 would reject the detector's Host header mlflow:5000"
    pinned = (ROOT / "scripts" / "install-mlflow-test-deps.sh").read_text()
    version = re.search(r'MLFLOW_VERSION="([^"]+)"', pinned).group(1)
    assert f"ARG MLFLOW_VERSION={version}" in (ROOT / "deploy/mlflow/Dockerfile").read_text(), "compose's MLflow differs from the tested one"


def test_compose_prometheus_scrapes_the_detector():
    svc = compose_model()["services"]["prometheus"]
    (mount,) = [v for v in svc["volumes"] if v["target"] == "/etc/prometheus/prometheus.yml"]
    config = yaml.safe_load(Path(mount["source"]).read_text())
    targets = [t for job in config["scrape_configs"] for sc in job.get("static_configs", []) for t in sc["targets"]]
    assert "detector:8080" in targets
    # promtool (Debian package `prometheus`, which scripts/test.sh installs) checks it like Prometheus.
    if shutil.which("promtool") is None:
        if os.environ.get("AURALGUARD_NO_SKIP") == "1":
            pytest.fail("promtool is not installed (apt-get install prometheus)")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    run = subprocess.run(["promtool", "check", "config", mount["source"]], capture_output=True, text=True)
    assert run.returncode == 0, f"promtool check config:\n{run.stdout}{run.stderr}"
