"""meshray/audit/cluster.py: a RayCluster's ports against its headless Service."""

from __future__ import annotations

import pytest
from meshray.audit import cluster as family
from test_audit_support import (
    Case,
    Mutation,
    assert_clean,
    assert_triggers,
    base,
    both,
    case_ids,
    cluster,
    drop_port,
    head,
    run,
    set_env,
    svc,
    svc_port,
    worker,
)

CASES: list[Case] = [
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
]


def test_cases_cover_the_family() -> None:
    assert {c for c, _, _ in CASES} == {c.id for c in family.CHECKS}


@pytest.mark.parametrize(("check", "severity", "mutate"), CASES, ids=case_ids(CASES))
def test_check_triggers(check: str, severity: str, mutate: Mutation) -> None:
    assert_triggers(check, severity, mutate)


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
    # an explicit worker port list instead of a range
    ("worker port list", both(lambda g: (
        g["rayStartParams"].pop("min-worker-port"), g["rayStartParams"].pop("max-worker-port"),
        g["rayStartParams"].update({"worker-port-list": "10002,10003,10004,10005"})))),
    # Serve proxies on ports pinned through Serve's env vars, declared in the Service
    ("serve on custom ports", lambda d: (
        [set_env(g, "RAY_SERVE_DEFAULT_HTTP_PORT", "8100") for g in (head(d), worker(d))],
        [set_env(g, "RAY_SERVE_DEFAULT_GRPC_PORT", "9100") for g in (head(d), worker(d))],
        svc(d)["spec"]["ports"].extend([
            {"name": "serve-http", "port": 8100, "targetPort": 8100, "appProtocol": "http"},
            {"name": "serve-grpc", "port": 9100, "targetPort": 9100, "appProtocol": "grpc"}]))),
]


@pytest.mark.parametrize(("name", "mutate"), CLEAN_VARIANTS, ids=[n for n, _ in CLEAN_VARIANTS])
def test_clean_variants(name: str, mutate: Mutation) -> None:
    assert_clean(mutate)


def test_missing_worker_ports_are_listed_compactly() -> None:
    docs = base()
    drop_port(docs, 10003)
    drop_port(docs, 10004)
    [f] = [f for f in run(docs) if f.check == "worker-port-missing"]
    assert f.value == "10003-10004"
    assert f.key.endswith("max-worker-port")


def test_wrong_protocol_names_port_component_and_both_protocols() -> None:
    docs = base()
    svc_port(docs, 6382)["appProtocol"] = "grpc"
    [f] = [f for f in run(docs) if f.check == "app-protocol-wrong"]
    assert (f.kind, f.name, f.key, f.value) == ("Service", "demo-headless-svc",
                                                "spec.ports[2].appProtocol", "grpc")
    assert "6382" in f.message and "runtime-env-agent-port" in f.message
    assert "HTTP" in f.message and "http" in f.fix
