"""The GitHub Actions workflow cannot run here: parse it and keep it in step with .ci/run."""

from __future__ import annotations

import re
from typing import Any

import yaml
from ecosystem_support import REPO

WORKFLOW = REPO / ".github" / "workflows" / "ci.yaml"
CI_RUN = REPO / ".ci" / "run"
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@(v\d+\.\d+\.\d+|[0-9a-f]{40})$")


def workflow() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    return data


def steps(job: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = workflow()["jobs"][job]["steps"]
    return found


def runs(job: str) -> str:
    return "\n".join(s.get("run", "") for s in steps(job))


def make_targets(text: str) -> set[str]:
    targets = set()
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        for m in re.finditer(r"\bmake\s+((?:[\w-]+\s*)+)", line):
            targets.update(t for t in m.group(1).split() if "=" not in t)
    return targets


def test_workflow_parses_and_has_the_jobs() -> None:
    data = workflow()
    # PyYAML reads the bare key `on` as True (YAML 1.1); GitHub reads it as "on".
    triggers = data.get("on", data.get(True))
    assert "pull_request" in triggers and "push" in triggers
    assert set(data["jobs"]) >= {"lint", "test", "e2e", "kind"}
    for name, job in data["jobs"].items():
        assert job.get("timeout-minutes"), f"{name} has no timeout"
        assert job["steps"], name


def test_every_action_is_pinned_to_a_full_version_or_commit() -> None:
    for name, job in workflow()["jobs"].items():
        for step in job["steps"]:
            if "uses" in step:
                assert PINNED.match(step["uses"]), f"{name}: {step['uses']} is not pinned"


def test_workflow_calls_the_make_targets_of_ci_run() -> None:
    every = make_targets("\n".join(runs(job) for job in workflow()["jobs"]))
    in_ci_run = make_targets(CI_RUN.read_text())
    assert in_ci_run, "no make target found in .ci/run"
    assert in_ci_run <= every, in_ci_run - every
    assert {"lint", "test", "e2e"} <= every
    assert "lint" in make_targets(runs("lint"))
    assert "test" in make_targets(runs("test"))
    assert "e2e" in make_targets(runs("e2e"))


def test_kind_job_installs_istio_and_kuberay_then_runs_ct_install() -> None:
    text = runs("kind")
    assert any("kind-action" in s.get("uses", "") for s in steps("kind"))
    istio = text.index("istio/istiod")
    kuberay = text.index("kuberay/kuberay-operator")
    ct = text.index("ct install --config ct.yaml")
    assert istio < ct and kuberay < ct
    assert "ENABLE_INIT_CONTAINER_INJECTION" in text
    assert "istio-injection=enabled" in text
    ct_config = yaml.safe_load((REPO / "ct.yaml").read_text())
    assert f"create namespace {ct_config['namespace']}" in text
