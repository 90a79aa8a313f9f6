"""The RayJob e2e's admission model, without root or a cluster (runs in the fast suite).

test_rayjob.py admits the submitter and the operator to the head on the ports the live
AuthorizationPolicies grant their identities (raynet/rayjob.py: granted_ports). Checked here
against the chart's own render of values-examples/rayjob.yaml, and with policies that grant
less, so the model can say "nothing" when the chart would admit nothing.
"""

from __future__ import annotations

import copy
import os
import subprocess
from typing import Any

import pytest
import yaml
from chart_support import CHART, EXAMPLES_DIR, REPO, skip_unless_ci
from raynet.rayjob import granted_ports, principal_matches

NS = "e2e-rayjob"
HEAD_LABELS = {"meshray.io/cluster": "rayjob-sample", "ray.io/node-type": "head"}
DECLARED = {6379, 6380, 6381, 8080, 8265, 10001, 10002}
SUBMITTER = f"cluster.local/ns/{NS}/sa/rayjob-sample-submitter"
OPERATOR = "cluster.local/ns/kuberay-system/sa/kuberay-operator"
RAY = f"cluster.local/ns/{NS}/sa/rayjob-sample-ray"


@pytest.fixture(scope="module")
def policies() -> list[dict[str, Any]]:
    helm = os.environ.get("MESHRAY_HELM") or str(REPO / "bin" / "helm")
    if not os.path.exists(helm):
        skip_unless_ci(f"no helm at {helm} (`make setup`)")
    out = subprocess.run(
        [
            helm,
            "template",
            "meshray",
            str(CHART),
            "-n",
            NS,
            "-f",
            str(EXAMPLES_DIR / "rayjob.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    docs = [d for d in yaml.safe_load_all(out) if d and d.get("kind") == "AuthorizationPolicy"]
    assert docs, "the RayJob example renders no AuthorizationPolicy"
    return docs


def test_chart_grants_submitter_and_operator_the_dashboard_only(
    policies: list[dict[str, Any]],
) -> None:
    assert granted_ports(policies, HEAD_LABELS, SUBMITTER, DECLARED) == {8265}
    assert granted_ports(policies, HEAD_LABELS, OPERATOR, DECLARED) == {8265}
    # The cluster's own identity: every declared port but the dashboard and the client port.
    assert granted_ports(policies, HEAD_LABELS, RAY, DECLARED) == DECLARED - {8265, 10001}


def test_nothing_granted_when_the_policy_does_not_name_the_identity(
    policies: list[dict[str, Any]],
) -> None:
    stranger = f"cluster.local/ns/{NS}/sa/default"
    assert granted_ports(policies, HEAD_LABELS, stranger, DECLARED) == set()
    # The same policies without the submitter's rule: the submitter is admitted nowhere.
    trimmed = copy.deepcopy(policies)
    for ap in trimmed:
        ap["spec"]["rules"] = [
            r
            for r in ap["spec"].get("rules", [])
            if SUBMITTER not in str((r.get("from") or [{}])[0].get("source", {}))
        ]
    assert granted_ports(trimmed, HEAD_LABELS, SUBMITTER, DECLARED) == set()
    # A policy selecting other Pods grants nothing on the head.
    assert granted_ports(policies, {"meshray.io/cluster": "other"}, SUBMITTER, DECLARED) == set()


def test_rules_the_model_does_not_evaluate_grant_nothing() -> None:
    rule: dict[str, Any] = {
        "from": [{"source": {"principals": [SUBMITTER]}}],
        "to": [{"operation": {"ports": ["8265"]}}],
    }
    ap: dict[str, Any] = {"spec": {"action": "ALLOW", "rules": [rule]}}
    assert granted_ports([ap], HEAD_LABELS, SUBMITTER, DECLARED) == {8265}
    with_when = copy.deepcopy(ap)
    with_when["spec"]["rules"][0]["when"] = [{"key": "request.headers[x]", "values": ["y"]}]
    assert granted_ports([with_when], HEAD_LABELS, SUBMITTER, DECLARED) == set()
    with_ns = copy.deepcopy(ap)
    with_ns["spec"]["rules"][0]["from"][0]["source"]["namespaces"] = [NS]
    assert granted_ports([with_ns], HEAD_LABELS, SUBMITTER, DECLARED) == set()
    deny = copy.deepcopy(ap)
    deny["spec"]["action"] = "DENY"
    assert granted_ports([deny], HEAD_LABELS, SUBMITTER, DECLARED) == set()


def test_principal_patterns() -> None:
    assert principal_matches("*", SUBMITTER)
    assert principal_matches(f"cluster.local/ns/{NS}/*", SUBMITTER)
    assert principal_matches("*/sa/rayjob-sample-submitter", SUBMITTER)
    assert not principal_matches(f"cluster.local/ns/{NS}/sa/rayjob-sample-ray", SUBMITTER)
    assert not principal_matches("cluster.local/ns/other/*", SUBMITTER)
