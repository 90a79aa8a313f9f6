"""Every audit check can fail: each has a manifest that triggers it and one that does not.

The base is tests/fixtures/audit/clean.yaml, written by hand from REFERENCE.md; each case
applies one small edit that breaks exactly the rule the check guards (the oracle is the edit,
not the audit code), and states the severity the rule deserves.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from meshray import audit as audit_mod
from meshray.audit import CHECKS, audit
from meshray.manifests import Manifest, parse_stream

FIXTURES = Path(__file__).parent / "fixtures" / "audit"
BASE: list[dict[str, Any]] = [
    d for d in yaml.safe_load_all((FIXTURES / "clean.yaml").read_text()) if d
]

Docs = list[dict[str, Any]]


def run(docs: Docs) -> list[audit_mod.Finding]:
    return audit([Manifest(d, f"test#{i}") for i, d in enumerate(docs)])


def of(docs: Docs, kind: str, name: str | None = None) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and (name is None
                                                           or d["metadata"]["name"] == name))


def cluster(d: Docs) -> dict[str, Any]:
    return of(d, "RayCluster")


def head(d: Docs) -> dict[str, Any]:
    return cluster(d)["spec"]["headGroupSpec"]


def worker(d: Docs) -> dict[str, Any]:
    return cluster(d)["spec"]["workerGroupSpecs"][0]


def svc(d: Docs) -> dict[str, Any]:
    return of(d, "Service")


def svc_port(d: Docs, port: int) -> dict[str, Any]:
    return next(p for p in svc(d)["spec"]["ports"] if p["port"] == port)


def drop_port(d: Docs, port: int) -> None:
    svc(d)["spec"]["ports"] = [p for p in svc(d)["spec"]["ports"] if p["port"] != port]


def pa(d: Docs) -> dict[str, Any]:
    return of(d, "PeerAuthentication")


def ingress(d: Docs) -> dict[str, Any]:
    return of(d, "Ingress")


def backend(d: Docs) -> dict[str, Any]:
    b: dict[str, Any] = ingress(d)["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    return b


def both(fn: Callable[[dict[str, Any]], None]) -> Callable[[Docs], None]:
    return lambda d: (fn(head(d)), fn(worker(d)))  # type: ignore[func-returns-value]


def set_env(group: dict[str, Any], name: str, value: str) -> None:
    group["template"]["spec"]["containers"][0]["env"].append({"name": name, "value": value})


# (check, severity, mutation that must trigger it)
Mutation = Callable[[Docs], Any]
CASES: list[tuple[str, str, Mutation]] = [
    ("no-headless-service", "error", lambda d: d.remove(svc(d))),
    ("no-headless-service", "error", lambda d: svc(d)["spec"].pop("clusterIP")),
    ("group-not-selected", "error",
     lambda d: svc(d)["spec"]["selector"].update({"ray.io/node-type": "worker"})),
    ("port-missing", "error", lambda d: drop_port(d, 6380)),
    ("port-missing", "error", lambda d: drop_port(d, 52365)),  # KubeRay's default, still needed
    ("worker-port-missing", "error", lambda d: drop_port(d, 10004)),
    ("port-unused", "warning", lambda d: svc(d)["spec"]["ports"].append(
        {"name": "extra", "port": 7777, "appProtocol": "tcp"})),
    ("app-protocol-wrong", "error", lambda d: svc_port(d, 6382).update(appProtocol="grpc")),
    ("app-protocol-wrong", "error", lambda d: svc_port(d, 10003).update(appProtocol="http")),
    ("app-protocol-wrong", "error", lambda d: svc_port(d, 6381).update(
        {"name": "http-object-manager"}) or svc_port(d, 6381).pop("appProtocol")),
    ("app-protocol-wrong", "error",  # Ray-native TLS: gRPC ports must be declared tls
     lambda d: (set_env(head(d), "RAY_USE_TLS", "1"), set_env(worker(d), "RAY_USE_TLS", "1"))),
    ("app-protocol-missing", "error", lambda d: svc_port(d, 6381).pop("appProtocol")),
    ("target-port-mismatch", "error", lambda d: svc_port(d, 6380).update(targetPort=16380)),
    ("port-conflict", "error",
     lambda d: worker(d)["rayStartParams"].update({"metrics-export-port": "6380"})),
    ("port-conflict", "error",  # one Service port, HTTP on the head and gRPC on the workers
     lambda d: (head(d)["rayStartParams"].update({"metrics-export-port": "9999"}),
                worker(d)["rayStartParams"].update({"object-manager-port": "9999"}))),
    ("port-conflict", "error",
     lambda d: head(d)["rayStartParams"].update({"metrics-export-port": "10003"})),
    ("port-not-pinned", "error", lambda d: worker(d)["rayStartParams"].pop("node-manager-port")),
    ("port-not-pinned", "error",
     lambda d: head(d)["rayStartParams"].pop("dashboard-agent-grpc-port")),
    ("port-not-pinned", "error",  # Ray < 2.45 serves dashboard gRPC on a random head port
     lambda d: cluster(d)["spec"].update(rayVersion="2.10.0")),
    ("worker-range-not-pinned", "error",
     lambda d: worker(d)["rayStartParams"].pop("max-worker-port")),
    ("worker-range-large", "warning",
     both(lambda g: g["rayStartParams"].update({"max-worker-port": "19999"}))),
    ("invalid-port", "error",
     lambda d: worker(d)["rayStartParams"].update({"object-manager-port": "abc"})),
    ("invalid-port", "error",
     both(lambda g: g["rayStartParams"].update({"max-worker-port": "10002"}))),
    ("invalid-port", "error",
     lambda d: worker(d)["rayStartParams"].update({"worker-port-list": "10002,x"})),
    ("param-not-string", "error", lambda d: worker(d)["rayStartParams"].update({"num-cpus": 1})),
    ("headless-label-missing", "warning", lambda d: svc(d)["metadata"].pop("labels")),
    ("headless-label-missing", "error",  # multi-host groups: KubeRay makes a rival Service
     lambda d: (svc(d)["metadata"].pop("labels"), worker(d).update(numOfHosts=2))),
    ("publish-not-ready-missing", "error",
     lambda d: svc(d)["spec"].pop("publishNotReadyAddresses")),
    ("export-to-missing", "info", lambda d: svc(d)["metadata"].pop("annotations")),
    ("node-ip-missing", "error", lambda d: worker(d)["rayStartParams"].pop("node-ip-address")),
    ("node-ip-not-fqdn", "error", lambda d: worker(d)["rayStartParams"].update(
        {"node-ip-address": "${POD_IP//[.:]/-}.demo-headless-svc.default.svc.cluster.local"})),
    ("node-ip-not-fqdn", "error", lambda d: worker(d)["rayStartParams"].update(
        {"node-ip-address": "${POD_IP//[.:]/-}.other-svc.ray.svc.cluster.local"})),
    ("node-ip-not-fqdn", "error",
     lambda d: worker(d)["rayStartParams"].update({"node-ip-address": "$POD_IP"})),
    ("node-ip-not-fqdn", "error", lambda d: worker(d)["rayStartParams"].update(
        {"node-ip-address": "10-0-0-1.demo-headless-svc.ray.svc.cluster.local"})),
    ("node-ip-not-fqdn", "error", lambda d: worker(d)["rayStartParams"].update(
        {"node-ip-address": "${POD_IP}.demo-headless-svc.ray.svc.cluster.local"})),
    ("node-ip-hostname-i", "error", lambda d: worker(d)["rayStartParams"].update(
        {"node-ip-address": "$(hostname -I | tr -d ' ' | sed 's/\\./-/g')"
                            ".demo-headless-svc.ray.svc.cluster.local"})),
    ("node-ip-env-missing", "error",
     lambda d: worker(d)["template"]["spec"]["containers"][0].pop("env")),
    ("node-ip-env-missing", "error",  # a literal value is not the pod's IP
     lambda d: worker(d)["template"]["spec"]["containers"][0].update(
         env=[{"name": "POD_IP", "value": "10.0.0.1"}])),
    ("flag-removed", "error", lambda d: (
        cluster(d)["spec"].update(rayVersion="2.48.0"),
        head(d)["rayStartParams"].update({"dashboard-grpc-port": "6384"}))),
    ("flag-removed", "error", lambda d: (
        cluster(d)["spec"].update(rayVersion="2.60.0"),
        worker(d)["rayStartParams"].update({"gcs-server-port": "6390"}))),
    ("flag-unused", "warning",
     lambda d: head(d)["rayStartParams"].update({"dashboard-grpc-port": "6384"})),
    ("ray-version-unknown", "info", lambda d: (
        cluster(d)["spec"].pop("rayVersion"),
        head(d)["template"]["spec"]["containers"][0].update(image="my/ray:latest"))),
    ("peerauth-no-match", "error",
     lambda d: pa(d)["spec"]["selector"]["matchLabels"].update({"ray.io/cluster": "dmeo"})),
    ("peerauth-port-unused", "error",
     lambda d: pa(d)["spec"]["portLevelMtls"].update({"7777": {"mode": "STRICT"}})),
    ("peerauth-port-no-selector", "error", lambda d: pa(d)["spec"].pop("selector")),
    ("peerauth-root-selector", "warning",
     lambda d: pa(d)["metadata"].update(namespace="istio-system")),
    ("peerauth-permissive", "warning", lambda d: pa(d)["spec"]["mtls"].update(mode="PERMISSIVE")),
    ("peerauth-permissive", "warning",
     lambda d: pa(d)["spec"]["portLevelMtls"].update({"8080": {"mode": "DISABLE"}})),
    ("peerauth-none", "info", lambda d: d.remove(pa(d))),
    ("ingress-service-missing", "error", lambda d: backend(d).update(name="demo-svc")),
    ("ingress-port-missing", "error", lambda d: backend(d).update(port={"number": 9999})),
    ("ingress-port-missing", "error", lambda d: backend(d).update(port={"name": "dash"})),
    ("ingress-protocol-mismatch", "error", lambda d: ingress(d)["metadata"]["annotations"].update(
        {"nginx.ingress.kubernetes.io/backend-protocol": "GRPC"})),
    ("ingress-protocol-mismatch", "error", lambda d: (
        backend(d).update(port={"number": 10001}),
        ingress(d)["metadata"]["annotations"].update(
            {"nginx.ingress.kubernetes.io/backend-protocol": "HTTPS"}))),
    ("ingress-exposes-ray", "warning", lambda d: ingress(d)["metadata"]["annotations"].pop(
        "nginx.ingress.kubernetes.io/auth-url")),
    ("duplicate-object", "info", lambda d: d.append(copy.deepcopy(svc(d)))),
]


def test_base_is_clean() -> None:
    assert run(copy.deepcopy(BASE)) == []


def test_every_check_has_a_triggering_case() -> None:
    assert {c for c, _, _ in CASES} == set(CHECKS)


@pytest.mark.parametrize(("check", "severity", "mutate"), CASES,
                         ids=[f"{c}-{i}" for i, (c, _, _) in enumerate(CASES)])
def test_check_triggers(check: str, severity: str, mutate: Mutation) -> None:
    docs = copy.deepcopy(BASE)
    assert not [f for f in run(docs) if f.check == check]  # clean before
    mutate(docs)
    hits = [f for f in run(docs) if f.check == check]
    assert hits, f"{check} not reported"
    assert {f.severity for f in hits} == {severity}
    for f in hits:
        assert f.kind and f.name and f.key and f.message and f.fix
        assert f.line().startswith(f"{severity}: {f.kind}/{f.name} ")


# ---------------------------------------------------------------- cases that must stay clean

CLEAN_VARIANTS: list[tuple[str, Mutation]] = [
    # a protocol prefix in the port name is as good as appProtocol for Istio
    ("name prefix instead of appProtocol",
     lambda d: (svc_port(d, 6381).pop("appProtocol"),
                svc_port(d, 6381).update(name="grpc-object-manager"))),
    # Ray-native TLS with every gRPC port declared tls
    ("ray tls declared tls", lambda d: (
        set_env(head(d), "RAY_USE_TLS", "1"), set_env(worker(d), "RAY_USE_TLS", "1"),
        [p.update(appProtocol="tls") for p in svc(d)["spec"]["ports"]
         if p["appProtocol"] == "grpc"])),
    # Ray < 2.45 with the dashboard gRPC port pinned and declared
    ("old ray, dashboard grpc pinned", lambda d: (
        cluster(d)["spec"].update(rayVersion="2.10.0"),
        head(d)["rayStartParams"].update({"dashboard-grpc-port": "6384"}),
        svc(d)["spec"]["ports"].append(
            {"name": "dashboard-grpc-port", "port": 6384, "appProtocol": "grpc"}))),
    # an explicit worker port list instead of a range
    ("worker port list", both(lambda g: (
        g["rayStartParams"].pop("min-worker-port"), g["rayStartParams"].pop("max-worker-port"),
        g["rayStartParams"].update({"worker-port-list": "10002,10003,10004,10005"})))),
    # the version can come from the image tag
    ("version from image", lambda d: cluster(d)["spec"].pop("rayVersion")),
    # a namespace-wide STRICT policy also covers the cluster
    ("namespace-wide policy", lambda d: (pa(d)["spec"].pop("selector"),
                                         pa(d)["spec"].pop("portLevelMtls"))),
    # the ingress may name the head Service's port by name
    ("ingress by port name", lambda d: backend(d).update(port={"name": "dashboard"})),
    # an ingress to a Service in the input
    ("ingress to input service", lambda d: backend(d).update(
        name="demo-headless-svc", port={"number": 8080})),
    # the Pod FQDN may end with a dot and use a custom cluster domain
    ("fqdn variants", both(lambda g: g["rayStartParams"].update(
        {"node-ip-address": "${POD_IP//[.:]/-}.demo-headless-svc.ray.svc.corp.example."}))),
    # Ray token auth (KubeRay authOptions) guards the dashboard behind an unauthenticated Ingress
    ("ray token auth", lambda d: (
        ingress(d)["metadata"]["annotations"].pop("nginx.ingress.kubernetes.io/auth-url"),
        cluster(d)["spec"].update(authOptions={"mode": "token"}))),
    # Serve proxies on ports pinned through Serve's env vars, declared in the Service
    ("serve on custom ports", lambda d: (
        [set_env(g, "RAY_SERVE_DEFAULT_HTTP_PORT", "8100") for g in (head(d), worker(d))],
        [set_env(g, "RAY_SERVE_DEFAULT_GRPC_PORT", "9100") for g in (head(d), worker(d))],
        svc(d)["spec"]["ports"].extend([
            {"name": "serve-http", "port": 8100, "targetPort": 8100, "appProtocol": "http"},
            {"name": "serve-grpc", "port": 9100, "targetPort": 9100, "appProtocol": "grpc"}]))),
    # a PeerAuthentication for another workload is none of our business
    ("unrelated policy", lambda d: d.append({
        "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
        "metadata": {"name": "spark", "namespace": "ray"},
        "spec": {"selector": {"matchLabels": {"spark-role": "driver"}},
                 "mtls": {"mode": "PERMISSIVE"}}})),
]


@pytest.mark.parametrize(("name", "mutate"), CLEAN_VARIANTS, ids=[n for n, _ in CLEAN_VARIANTS])
def test_clean_variants(name: str, mutate: Mutation) -> None:
    docs = copy.deepcopy(BASE)
    mutate(docs)
    assert [f.line() for f in run(docs)] == []


# ---------------------------------------------------------------------- specific contents


def test_missing_worker_ports_are_listed_compactly() -> None:
    docs = copy.deepcopy(BASE)
    drop_port(docs, 10003)
    drop_port(docs, 10004)
    [f] = [f for f in run(docs) if f.check == "worker-port-missing"]
    assert f.value == "10003-10004"
    assert f.key.endswith("max-worker-port")


def test_wrong_protocol_names_port_component_and_both_protocols() -> None:
    docs = copy.deepcopy(BASE)
    svc_port(docs, 6382)["appProtocol"] = "grpc"
    [f] = [f for f in run(docs) if f.check == "app-protocol-wrong"]
    assert (f.kind, f.name, f.key, f.value) == ("Service", "demo-headless-svc",
                                                "spec.ports[2].appProtocol", "grpc")
    assert "6382" in f.message and "runtime-env-agent-port" in f.message
    assert "HTTP" in f.message and "http" in f.fix


def test_list_kinds_and_unknown_docs() -> None:
    text = yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": copy.deepcopy(BASE)})
    text += "---\n# empty\n---\n- just a list\n---\nplain string\n"
    objs = parse_stream(text, "list.yaml")
    assert [o.kind for o in objs] == [d["kind"] for d in BASE]
    assert audit(objs) == []


def test_namespace_default_applies_to_objects_without_one() -> None:
    docs = copy.deepcopy(BASE)
    for d in docs:
        d["metadata"].pop("namespace")
    for g in (head(docs), worker(docs)):
        g["rayStartParams"]["node-ip-address"] = (
            "${POD_IP//[.:]/-}.demo-headless-svc.team-a.svc.cluster.local")
    objs = [Manifest(d, "x") for d in docs]
    assert audit(objs, namespace="team-a") == []
    assert {f.check for f in audit(objs, namespace="default")} == {"node-ip-not-fqdn"}


def test_json_output_round_trips() -> None:
    import json

    docs = copy.deepcopy(BASE)
    drop_port(docs, 6380)
    data = json.loads(audit_mod.to_json(run(docs)))
    assert data["counts"]["error"] == 1
    [f] = data["findings"]
    assert f["check"] == "port-missing" and f["value"] == 6380 and f["severity"] == "error"
