"""GitOps artefacts: the Argo CD health check for ray.io/RayCluster (run by gopher-lua, the Lua
that Argo CD embeds), and the Argo CD / Flux examples (schema-validated, and their values must
render this chart)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from ecosystem_support import (
    CHART,
    GITOPS,
    helm,
    helm_template,
    load_script,
    run,
    schemas_dir,
    tool,
)

# Needs the ecosystem tools `make lint-setup` installs; `make check` leaves it out.
pytestmark = pytest.mark.ecosystem

checks = load_script("check_renders")
HEALTH_LUA = GITOPS / "raycluster-health.lua"
HEALTH_KEY = "resource.customizations.health.ray.io_RayCluster"


def lua_literal(value: Any) -> str:
    """A Lua table constructor for a JSON-like value (what Argo CD hands the script as obj)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string literal is a valid Lua string literal here
    if isinstance(value, list):
        return "{" + ", ".join(lua_literal(v) for v in value) + "}"
    if isinstance(value, dict):
        return (
            "{" + ", ".join(f"[{json.dumps(k)}] = {lua_literal(v)}" for k, v in value.items()) + "}"
        )
    raise TypeError(type(value))


def run_health(obj: dict[str, Any], tmp_path: Path, script: Path = HEALTH_LUA) -> tuple[str, str]:
    glua = tool("glua")
    harness = tmp_path / "harness.lua"
    harness.write_text(
        f"obj = {lua_literal(obj)}\n"
        f"local hs = dofile({json.dumps(str(script))})\n"
        'assert(type(hs) == "table", "the script must return a table")\n'
        'print(hs.status .. "\\t" .. (hs.message or ""))\n'
    )
    proc = run([str(glua), str(harness)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    status, _, message = proc.stdout.strip().partition("\t")
    return status, message


def cond(ctype: str, status: str, reason: str = "", message: str = "") -> dict[str, str]:
    return {"type": ctype, "status": status, "reason": reason, "message": message}


def raycluster(status: dict[str, Any] | None, generation: int = 1) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": "ray", "namespace": "ray", "generation": generation},
        "spec": {"headGroupSpec": {}},
    }
    if status is not None:
        obj["status"] = status
    return obj


PROVISIONED = cond("RayClusterProvisioned", "True", "AllPodRunningAndReadyFirstTime")
HEAD_READY = cond("HeadPodReady", "True", "HeadPodRunningAndReady")

SAMPLES: dict[str, tuple[dict[str, Any], str, str]] = {
    # name: (object, expected status, expected message fragment)
    "ready (KubeRay >= 1.2 conditions)": (
        raycluster(
            {
                "state": "ready",
                "observedGeneration": 1,
                "readyWorkerReplicas": 2,
                "desiredWorkerReplicas": 2,
                "conditions": [PROVISIONED, HEAD_READY],
            }
        ),
        "Healthy",
        "2/2 workers ready",
    ),
    "ready (KubeRay 1.1 state only)": (
        raycluster({"state": "ready", "availableWorkerReplicas": 1, "desiredWorkerReplicas": 1}),
        "Healthy",
        "1/1 workers ready",
    ),
    "no status yet": (raycluster(None), "Progressing", "Waiting for KubeRay"),
    "provisioning": (
        raycluster(
            {
                "observedGeneration": 1,
                "conditions": [
                    cond(
                        "RayClusterProvisioned",
                        "False",
                        "RayClusterPodsProvisioning",
                        "RayCluster Pods are being provisioned for first time",
                    ),
                    cond("HeadPodReady", "False", "HeadPodNotFound"),
                ],
            }
        ),
        "Progressing",
        "being provisioned",
    ),
    "provisioning (KubeRay 1.1: no state yet)": (
        raycluster({"desiredWorkerReplicas": 1}),
        "Progressing",
        "Waiting for the RayCluster",
    ),
    "spec change not yet observed": (
        raycluster({"state": "ready", "observedGeneration": 1}, generation=2),
        "Progressing",
        "generation 2",
    ),
    "failed: pod creation rejected": (
        raycluster(
            {
                "state": "ready",
                "conditions": [
                    PROVISIONED,
                    HEAD_READY,
                    cond(
                        "ReplicaFailure",
                        "True",
                        "FailedCreateWorkerPod",
                        'pods "ray-worker-x" is forbidden: exceeded quota',
                    ),
                ],
            }
        ),
        "Degraded",
        "exceeded quota",
    ),
    "failed: head pod lost after provisioning": (
        raycluster(
            {
                "conditions": [
                    PROVISIONED,
                    cond("HeadPodReady", "False", "HeadPodNotReady", "ray-head is not ready"),
                ]
            }
        ),
        "Degraded",
        "Head Pod not ready: ray-head is not ready",
    ),
    "failed (KubeRay 1.1 state)": (
        raycluster({"state": "failed", "reason": "head pod spec is invalid"}),
        "Degraded",
        "head pod spec is invalid",
    ),
    "unhealthy (KubeRay 1.1 state, no reason)": (
        raycluster({"state": "unhealthy"}),
        "Degraded",
        "unhealthy",
    ),
    "suspended (conditions)": (
        raycluster(
            {
                "state": "suspended",
                "conditions": [PROVISIONED, cond("RayClusterSuspended", "True", "Suspended")],
            }
        ),
        "Suspended",
        "Suspended",
    ),
    "suspending (conditions)": (
        raycluster({"conditions": [PROVISIONED, cond("RayClusterSuspending", "True")]}),
        "Progressing",
        "suspending",
    ),
    "suspended (KubeRay 1.1 state)": (
        raycluster({"state": "suspended"}),
        "Suspended",
        "suspended",
    ),
}


@pytest.mark.parametrize("name", list(SAMPLES))
def test_raycluster_health_check(name: str, tmp_path: Path) -> None:
    obj, expected, fragment = SAMPLES[name]
    status, message = run_health(obj, tmp_path)
    assert status == expected, (status, message)
    assert fragment in message, message


def test_health_harness_fails_on_a_broken_script(tmp_path: Path) -> None:
    """The harness really runs the Lua: a script returning the wrong status is caught, and a
    script that errors fails the run."""
    wrong = tmp_path / "wrong.lua"
    wrong.write_text(HEALTH_LUA.read_text().replace('return "Degraded"', 'return "Healthy"'))
    obj, _, _ = SAMPLES["failed: pod creation rejected"]
    assert run_health(obj, tmp_path, wrong)[0] == "Healthy"  # the mutation is visible
    broken = tmp_path / "broken.lua"
    broken.write_text("return obj.status.nothing.here\n")
    with pytest.raises(AssertionError):
        run_health(raycluster({"state": "ready"}), tmp_path, broken)


def test_health_check_uses_only_what_argocd_provides() -> None:
    text = HEALTH_LUA.read_text()
    for forbidden in ("require", "os.", "io.", "loadstring", "dofile", "json"):
        assert forbidden not in text.replace("-- ", "--"), forbidden


def test_argocd_cm_snippet_embeds_the_same_script() -> None:
    docs = list(yaml.safe_load_all((GITOPS / "argocd-cm-raycluster-health.yaml").read_text()))
    cm = docs[0]
    assert (cm["kind"], cm["metadata"]["name"]) == ("ConfigMap", "argocd-cm")
    assert cm["data"][HEALTH_KEY] == HEALTH_LUA.read_text()


# ---- Argo CD / Flux examples -----------------------------------------------------------------


def load(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((GITOPS / name).read_text()) if d]


def by_kind(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def render_with_values(values: dict[str, Any], tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return [d for d in yaml.safe_load_all(helm_template(helm(), path)) if d]


def test_argocd_application_points_at_this_chart(tmp_path: Path) -> None:
    docs = load("argocd-application.yaml")
    app = by_kind(docs, "Application", "meshray")
    source = app["spec"]["source"]
    assert source["path"] == str(CHART.relative_to(CHART.parents[1]))
    rendered = render_with_values(source["helm"]["valuesObject"], tmp_path)
    assert {d["kind"] for d in rendered} >= {"Service", "PeerAuthentication", "RayCluster"}
    # The autoscaler owns worker replicas: ignored in the diff and in the applied patch.
    ignored = app["spec"]["ignoreDifferences"]
    assert {
        "group": "ray.io",
        "kind": "RayCluster",
        "jqPathExpressions": [".spec.workerGroupSpecs[].replicas"],
    } in ignored
    options = app["spec"]["syncPolicy"]["syncOptions"]
    assert "RespectIgnoreDifferences=true" in options
    assert "ServerSideApply=true" in options
    assert source["helm"]["valuesObject"]["ray"]["autoscaling"] is True


def test_argocd_kuberay_operator_app_has_crd_sync_options_and_mtls_prerequisite() -> None:
    op = by_kind(load("argocd-application.yaml"), "Application", "kuberay-operator")
    assert "ServerSideApply=true" in op["spec"]["syncPolicy"]["syncOptions"]
    env = op["spec"]["source"]["helm"]["valuesObject"]["env"]
    assert {"name": "ENABLE_INIT_CONTAINER_INJECTION", "value": "false"} in env
    meshray_wave = 0
    assert int(op["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]) < meshray_wave


def test_flux_helmrelease_points_at_this_chart(tmp_path: Path) -> None:
    docs = load("flux-helmrelease.yaml")
    release = by_kind(docs, "HelmRelease", "meshray")
    chart = release["spec"]["chart"]["spec"]
    source = chart["sourceRef"]
    repo = by_kind(docs, source["kind"], source["name"])
    assert chart["chart"].lstrip("./") == str(CHART.relative_to(CHART.parents[1]))
    assert repo["spec"]["ref"]["branch"] == "main"
    rendered = render_with_values(release["spec"]["values"], tmp_path)
    cluster = next(d for d in rendered if d["kind"] == "RayCluster")
    ignore = release["spec"]["driftDetection"]["ignore"]
    paths = [p for rule in ignore if rule["target"]["kind"] == "RayCluster" for p in rule["paths"]]
    groups = cluster["spec"]["workerGroupSpecs"]
    assert paths == [f"/spec/workerGroupSpecs/{i}/replicas" for i in range(len(groups))]
    assert release["spec"]["dependsOn"] == [
        {"name": "kuberay-operator", "namespace": "kuberay-system"}
    ]
    operator = by_kind(docs, "HelmRelease", "kuberay-operator")
    assert operator["spec"]["install"]["crds"] == "CreateReplace"
    assert operator["spec"]["upgrade"]["crds"] == "CreateReplace"
    assert {"name": "ENABLE_INIT_CONTAINER_INJECTION", "value": "false"} in operator["spec"][
        "values"
    ]["env"]


def test_gitops_examples_validate_against_argocd_and_flux_crds() -> None:
    root = schemas_dir()
    report = checks.Report()
    checks.check_gitops(tool("kubeconform").parent, root, report)
    assert report.findings == [], report.findings
    assert report.checks


def test_gitops_schema_check_catches_a_typo(tmp_path: Path) -> None:
    root = schemas_dir()
    docs = load("argocd-application.yaml") + load("flux-helmrelease.yaml")
    by_kind(docs, "Application", "meshray")["spec"]["ignoreDifference"] = []
    by_kind(docs, "HelmRelease", "meshray")["spec"]["driftDetection"]["mode"] = "on"
    (tmp_path / "broken.yaml").write_text("---\n".join(yaml.safe_dump(d) for d in docs))
    report = checks.Report()
    checks.check_gitops(tool("kubeconform").parent, root, report, gitops=tmp_path)
    messages = "\n".join(f.message for f in report.findings)
    assert "ignoreDifference" in messages, messages
    assert "HelmRelease meshray" in messages, messages
