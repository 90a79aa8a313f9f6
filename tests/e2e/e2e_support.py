"""Paths, versions, prerequisite checks and deployments shared by the e2e tests (pytest side)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from chart_support import skip_unless_ci
from raynet.live import Deployment, LocalCluster

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CACHE = Path(os.environ.get("MESHRAY_E2E_CACHE", REPO / ".cache"))
# The chart's default Ray version and the oldest it claims to support (mk/e2e.mk builds one
# venv per version under .cache/ and passes this list).
RAY_VERSIONS = os.environ.get("MESHRAY_E2E_RAY_VERSIONS", "2.60.0 2.10.0").split()
REPORT = Path(os.environ.get("MESHRAY_E2E_REPORT", CACHE / "e2e" / "report.json"))
LOG_DIR = CACHE / "e2e" / "logs"
CAPTURE_DIR = CACHE / "e2e" / "capture"  # node-to-node pcaps (raynet/capture.py)


def unavailable(reason: str) -> None:
    """Outside CI a machine without root/tools/venvs skips; in CI that is a failure."""
    skip_unless_ci(f"e2e prerequisites missing: {reason} (run `make e2e`)")


def venv_for(version: str) -> Path:
    venv = CACHE / f"ray-{version}"
    if not (venv / "bin" / "ray").exists():
        unavailable(f"no Ray {version} venv at {venv} (`make e2e-venvs`)")
    return venv


# ---- what each test runs against (conftest installs these in the background, in test order) --
EXAMPLES_DIR = REPO / "values-examples"
# The seed guide's objects, as the project's own copy (the header says how they were taken).
GUIDE = REPO / "tests" / "fixtures" / "guide" / "kuberay-istio-guide.yaml"
DEFAULT = "default"


def _values_files() -> dict[str, dict[str, Any]]:
    """Values files directly in values-examples/ (gitops/ and manifests are not values)."""
    found = {}
    for path in sorted(EXAMPLES_DIR.glob("*.yaml")):
        try:
            doc = yaml.safe_load(path.read_text())
        except yaml.YAMLError:
            continue
        if isinstance(doc, dict) and not {"apiVersion", "kind"} <= doc.keys():
            found[path.stem] = doc
    return found


def _is_rayjob(doc: dict[str, Any]) -> bool:
    return bool((doc.get("workload") or {}).get("kind") == "RayJob")


def values_examples() -> list[str]:
    """The RayCluster values examples (test_example). RayJob examples run to completion in
    test_rayjob.py instead: their cluster exists only once the operator runs the job."""
    return [name for name, doc in _values_files().items() if not _is_rayjob(doc)]


def _ns(*parts: str) -> str:
    return re.sub(r"[^a-z0-9-]", "-", "-".join(("e2e", *parts)).lower())[:63].strip("-")


def example(name: str, version: str) -> Deployment:
    """`helm install` of the defaults or one values example, with ray.version set."""
    files = () if name == DEFAULT else (str(EXAMPLES_DIR / f"{name}.yaml"),)
    return Deployment(_ns(name, version), values=files, string_sets=(f"ray.version={version}",))


def metrics_env(version: str) -> Deployment:
    return Deployment(
        _ns("metrics-env", version),
        sets=("ports.autoscalerMetrics=44317", "ports.dashboardMetrics=44327"),
        string_sets=(f"ray.version={version}",),
    )


# Ray token auth (rayAuth.enabled) needs Ray 2.52 or later: the versions of RAY_VERSIONS that
# have it (the chart refuses the others).
TOKEN_AUTH_VERSIONS = [v for v in RAY_VERSIONS if tuple(map(int, v.split(".")[:2])) >= (2, 52)]


def ray_auth(version: str) -> Deployment:
    """The defaults with Ray token auth: the operator creates the token Secret and puts
    RAY_AUTH_MODE and RAY_AUTH_TOKEN into every Ray container."""
    return Deployment(
        _ns("ray-auth", version),
        sets=("rayAuth.enabled=true",),
        string_sets=(f"ray.version={version}",),
    )


def broken_fqdn(version: str) -> Deployment:
    """The chart's defaults with a typo in the node-ip-address snippet's variable
    (MESHRAY_POD_IPX): the chart refuses node-ip-address in values, so the rendered objects are
    created with the typo written into the RayCluster, and the operator builds the Pods."""
    ns = _ns("broken-fqdn", version)

    def manifests(cluster: LocalCluster) -> list[dict[str, Any]]:
        docs = cluster.helm_template(ns, [f"ray.version={version}"])
        rc = next(d for d in docs if d["kind"] == "RayCluster")
        groups = [rc["spec"]["headGroupSpec"], *rc["spec"]["workerGroupSpecs"]]
        for g in groups:
            raw = g["rayStartParams"]["node-ip-address"]
            assert "MESHRAY_POD_IP" in raw, raw
            g["rayStartParams"]["node-ip-address"] = raw.replace(
                "MESHRAY_POD_IP", "MESHRAY_POD_IPX"
            )
        return docs

    return Deployment(ns, manifests=manifests)


def guide() -> Deployment:
    """The seed guide's headless Service and (x86-64) RayCluster as published, created in the
    namespace its FQDNs name (default). One deployment serves both Ray versions: the image
    is not run, the venv is."""

    def manifests(_: LocalCluster) -> list[dict[str, Any]]:
        docs = []
        for doc in yaml.safe_load_all(GUIDE.read_text()):
            if not isinstance(doc, dict) or doc.get("kind") not in ("Service", "RayCluster"):
                continue
            if doc["kind"] == "RayCluster":
                image = doc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]
                if "aarch64" in image:
                    continue
            docs.append(doc)
        return docs

    return Deployment("default", manifests=manifests)


# ---- RayJob (test_rayjob.py) --------------------------------------------------------------
RAYJOB = "rayjob"  # values-examples/rayjob.yaml: its own cluster, the script from a ConfigMap
RAYJOB_SCRIPT = HERE / "workload" / "rayjob_job.py"


def rayjob_code(example: str = RAYJOB) -> list[dict[str, Any]]:
    """The ConfigMap the example tells the user to create first (`kubectl create configmap
    rayjob-code --from-file=job.py`), holding the suite's job script: its name and key are
    read from the example (the head volume mounted where the entrypoint's script lies)."""
    doc = yaml.safe_load((EXAMPLES_DIR / f"{example}.yaml").read_text())
    script = next(w for w in doc["rayJob"]["entrypoint"].split() if w.endswith(".py"))
    head = doc.get("head") or {}
    volumes = {v["name"]: v for v in head.get("volumes") or []}
    for m in head.get("volumeMounts") or []:
        mount = m["mountPath"].rstrip("/") + "/"
        vol = volumes.get(m["name"]) or {}
        if script.startswith(mount) and "configMap" in vol:
            return [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": vol["configMap"]["name"]},
                    "data": {script[len(mount) :]: RAYJOB_SCRIPT.read_text()},
                }
            ]
    raise ValueError(f"{example}: no ConfigMap volume on the head holds {script}")


def rayjob_name(example: str = RAYJOB) -> str:
    """The RayJob's name: the example's clusterName (the chart names the RayJob after it)."""
    return str(yaml.safe_load((EXAMPLES_DIR / f"{example}.yaml").read_text())["clusterName"])


def rayjob(version: str, variant: str = "", sets: tuple[str, ...] = ()) -> Deployment:
    """`helm install` of the RayJob example with ray.version set, its ConfigMap created first;
    ``variant`` names a second namespace (each RayJob runs once), ``sets`` adds --set values."""
    return Deployment(
        _ns(RAYJOB + variant, version),
        values=(str(EXAMPLES_DIR / f"{RAYJOB}.yaml"),),
        sets=sets,
        string_sets=(f"ray.version={version}",),
        prepare=rayjob_code,
    )


def deployment_for(test: str, params: dict[str, Any]) -> Deployment | None:
    """The deployment a collected test (function name, parameters) will run against."""
    version = params.get("version")
    if version is None:
        return None
    if test == "test_example":
        return example(params["example"], version)
    if test in ("test_negative_object_manager_port", "test_negative_worker_port"):
        return example(DEFAULT, version)
    if test == "test_negative_broken_fqdn_snippet":
        return broken_fqdn(version)
    if test == "test_head_metrics_ports_follow_env":
        return metrics_env(version)
    if test == "test_ray_token_auth":
        return ray_auth(version)
    if test == "test_without_token_auth_the_same_requests_pass":
        return example(DEFAULT, version)
    if test == "test_guide_contract_leaves_ports_undeclared":
        return guide()
    # RayJob tests install their own deployment when they start (test_rayjob.py): a RayJob's
    # activeDeadlineSeconds counts from its install, and its wall time is measured from there.
    return None
