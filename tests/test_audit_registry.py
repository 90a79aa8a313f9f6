"""meshray/audit/registry.py: every check is declared once, tested, and listed in a fixed order.

The order and severities below are the published contract (`meshray audit --list-checks`,
the checks table in docs/cli.md): written out here, not read from the code.
"""

from __future__ import annotations

import ast
from pathlib import Path

import meshray
from meshray.audit import CHECKS, registry
from test_audit_ambient import CASES as AMBIENT
from test_audit_authz import CASES as AUTHZ
from test_audit_capture import CASES as CAPTURE
from test_audit_cluster import CASES as CLUSTER
from test_audit_gatewayapi import CASES as GATEWAYAPI
from test_audit_identity import CASES as IDENTITY
from test_audit_ingress import CASES as INGRESS
from test_audit_inputs import CASES as INPUTS
from test_audit_netpolicy import CASES as NETPOLICY
from test_audit_nodeip import CASES as NODEIP
from test_audit_peerauth import CASES as PEERAUTH
from test_audit_pods import CASES as PODS
from test_audit_protocols import CASES as PROTOCOLS
from test_audit_rayjob import CASES as RAYJOB
from test_audit_restricted import CASES as RESTRICTED
from test_audit_support import base, run
from test_audit_versions import CASES as VERSIONS

PUBLISHED = [
    ("no-headless-service", "error"), ("group-not-selected", "error"),
    ("port-missing", "error"), ("worker-port-missing", "error"), ("port-unused", "warning"),
    ("app-protocol-wrong", "error"), ("app-protocol-missing", "error"),
    ("target-port-mismatch", "error"), ("port-conflict", "error"),
    ("port-not-pinned", "error"), ("worker-range-not-pinned", "error"),
    ("worker-range-large", "warning"), ("invalid-port", "error"),
    ("param-not-string", "error"), ("params-not-mapping", "error"),
    ("headless-label-missing", "warning"),
    ("publish-not-ready-missing", "error"), ("export-to-missing", "info"),
    ("service-protocol-conflict", "error"),
    ("node-ip-missing", "error"), ("node-ip-not-fqdn", "error"),
    ("node-ip-hostname-i", "error"), ("node-ip-env-missing", "error"),
    ("flag-removed", "error"), ("flag-unused", "warning"), ("ray-version-unknown", "info"),
    ("peerauth-no-match", "error"), ("peerauth-port-unused", "error"),
    ("peerauth-port-no-selector", "error"), ("peerauth-root-selector", "warning"),
    ("peerauth-permissive", "warning"), ("peerauth-none", "info"),
    ("authz-port-denied", "error"), ("authz-any-source", "warning"),
    ("authz-dashboard-open", "error"), ("authz-http-on-tcp", "error"),
    ("netpol-port-blocked", "error"), ("kuberay-netpol-blocks-istiod", "error"),
    ("identity-default-service-account", "error"), ("identity-shared-service-account", "error"),
    ("ingress-service-missing", "error"), ("ingress-port-missing", "error"),
    ("ingress-protocol-mismatch", "error"), ("ingress-exposes-ray", "warning"),
    ("route-service-missing", "error"), ("route-port-missing", "error"),
    ("route-protocol-mismatch", "error"), ("route-reference-not-granted", "warning"),
    ("route-exposes-ray", "warning"),
    ("ambient-with-sidecar", "error"), ("waypoint-missing", "warning"),
    ("waypoint-wrong-class", "error"), ("waypoint-for-mismatch", "error"),
    ("mesh-capture-override", "error"),
    ("pod-port-undeclared", "error"), ("pod-stale-flags", "error"), ("pod-node-ip", "error"),
    ("pod-command-unreadable", "error"),
    ("pod-privileged", "error"), ("pod-capabilities", "error"), ("pod-root", "error"),
    ("pod-proxy-uid", "error"), ("pod-privilege-escalation", "error"),
    ("pod-host-namespace", "error"), ("pod-host-path", "error"), ("pod-unconfined", "error"),
    ("pod-unsafe-sysctl", "error"), ("pod-proc-mount", "error"), ("pod-host-process", "error"),
    ("rayjob-selects-job-name", "error"), ("rayjob-no-cluster", "error"),
    ("rayjob-cluster-not-found", "warning"), ("rayjob-dashboard-port-missing", "error"),
    ("rayjob-submitter-template-missing", "error"),
    ("rayjob-submitter-default-service-account", "warning"),
    ("rayjob-submitter-ray-identity", "error"), ("rayjob-submitter-restart-policy", "error"),
    ("rayjob-submitter-native-sidecar", "error"), ("rayjob-submitter-denied", "error"),
    ("rayjob-submitter-beyond-dashboard", "error"),
    ("duplicate-object", "info"), ("object-unnamed", "error"),
]


def test_published_order_and_severities() -> None:
    assert [(check, sev) for check, (sev, _) in CHECKS.items()] == PUBLISHED


def test_every_check_catches_something_and_is_declared_once() -> None:
    ids = [c.id for c in registry.ALL]
    assert [i for i in ids if ids.count(i) > 1] == []  # no id declared twice
    assert ids == list(CHECKS)  # every declared check is in the table, in its order
    assert all(catches and "\n" not in catches for _, catches in CHECKS.values())


def test_base_is_clean() -> None:
    assert run(base()) == []


def test_every_check_has_a_triggering_case() -> None:
    cases = (CLUSTER + PROTOCOLS + NODEIP + VERSIONS + PEERAUTH + AUTHZ + NETPOLICY + IDENTITY
             + INGRESS + GATEWAYAPI + AMBIENT + CAPTURE + PODS + RESTRICTED + INPUTS)
    assert {c for c, _, _ in cases} | {c for c, _ in RAYJOB} == set(CHECKS)


def imports(path: Path) -> set[str]:
    """Absolute names of the meshray modules a source file imports (relative ones resolved)."""
    package = ["meshray", *path.parent.relative_to(PACKAGE).parts]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("meshray")}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            if not module.startswith("meshray"):
                continue
            out.add(module)
            out |= {f"{module}.{a.name}" for a in node.names}  # `from . import audit`
    return out


PACKAGE = Path(meshray.__file__).parent
MODEL = {"raymodel", "services", "manifests", "render", "ports", "paths", "errors", "schema",
         "valuesfile"}


def test_layering_is_one_way() -> None:
    """The model, render and ports never import the audit; nothing outside meshray/audit/
    imports the audit's modules, only the package's public names."""
    for path in PACKAGE.glob("*.py"):
        names = imports(path)
        audit_names = {n for n in names if n == "meshray.audit" or n.startswith("meshray.audit.")}
        if path.stem in MODEL:
            assert not audit_names, (path.name, audit_names)
        modules = {p.stem for p in (PACKAGE / "audit").glob("*.py")}
        internals = {n for n in audit_names if n.count(".") >= 2 and n.split(".")[2] in modules}
        assert not internals, (path.name, internals)
