"""meshray/audit/portmap.py: a RayCluster's ports against its headless Service."""

from __future__ import annotations

import pytest
from audit_support import (
    Case,
    Mutation,
    base,
    both,
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
    ("port-not-pinned", "error",  # 2.44 is the last release that does (docs/ports.md)
     lambda d: cluster(d)["spec"].update(rayVersion="2.44.0")),
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
    # the CRD's map[string]string written as a list of "--flag=value" strings
    ("params-not-mapping", "error", lambda d: worker(d).update(rayStartParams=[
        f"{k}={v}" for k, v in worker(d)["rayStartParams"].items()])),
    ("params-not-mapping", "error", lambda d: head(d).update(rayStartParams="port=6379")),
    ("headless-label-missing", "warning", lambda d: svc(d)["metadata"].pop("labels")),
    ("headless-label-missing", "error",  # multi-host groups: KubeRay makes a rival Service
     lambda d: (svc(d)["metadata"].pop("labels"), worker(d).update(numOfHosts=2))),
    ("publish-not-ready-missing", "error",
     lambda d: svc(d)["spec"].pop("publishNotReadyAddresses")),
    ("export-to-missing", "info", lambda d: svc(d)["metadata"].pop("annotations")),
]


CLEAN_VARIANTS: list[tuple[str, Mutation]] = [
    # from Ray 2.45 the dashboard gRPC port is gone: nothing to pin (the boundary above)
    ("ray 2.45 without dashboard grpc",
     lambda d: cluster(d)["spec"].update(rayVersion="2.45.0")),
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


def test_params_not_a_mapping_names_the_field_and_the_group() -> None:
    """rayStartParams written as a list: one finding naming the group and the field, and none
    of the port-not-pinned findings the empty reading would otherwise give for it."""
    docs = base()
    worker(docs)["rayStartParams"] = ["node-manager-port=6380", "object-manager-port=6381"]
    got = run(docs)
    [f] = [f for f in got if f.check == "params-not-mapping"]
    assert f.key == "spec.workerGroupSpecs[0].rayStartParams"
    assert f.value == ["node-manager-port=6380", "object-manager-port=6381"]
    assert "worker group cpu" in f.message and "rayStartParams" in f.message
    assert "list" in f.message and "map[string]string" in f.message
    assert not [g for g in got if g.check in {"port-not-pinned", "node-ip-missing"}
                and g.key.startswith("spec.workerGroupSpecs[0].")]
    # the line shows the value as YAML, not as a Python list
    assert "(got [node-manager-port=6380, object-manager-port=6381])" in f.line()


@pytest.mark.parametrize(("value", "spelled"), [
    (True, 'dashboard-host: "true"'), (False, 'dashboard-host: "false"'),
    (8265, 'dashboard-host: "8265"'), (None, 'dashboard-host: "null"'),
    (0.5, 'dashboard-host: "0.5"')])
def test_param_not_string_hint_is_yaml(value: object, spelled: str) -> None:
    """The hint to quote a value spells it as YAML and Kubernetes do ("true"), never as
    Python's repr ('True')."""
    docs = base()
    head(docs)["rayStartParams"]["dashboard-host"] = value
    [f] = [f for f in run(docs) if f.check == "param-not-string"]
    assert f.fix == f"quote it: {spelled}"
    assert "'" not in f.fix and "True" not in f.fix and "None" not in f.fix


def test_a_service_without_selector_selects_no_pod() -> None:
    """A Service without a selector (its Endpoints are managed by hand) selects no Pod: its
    ports and protocols are nobody's business here, and it is no headless Service of the
    cluster. A rule that took an empty selector for "every Pod" would report both below."""
    docs = base()
    svc(docs)["metadata"]["name"] = "zz-demo-headless-svc"  # sorted after the stray one
    docs.append({"apiVersion": "v1", "kind": "Service",
                 "metadata": {"name": "demo-headless-svc", "namespace": "ray"},
                 "spec": {"clusterIP": "None", "ports": [
                     {"name": "odd", "port": 6380, "appProtocol": "http"}]}})
    for g in (head(docs), worker(docs)):
        g["rayStartParams"]["node-ip-address"] = g["rayStartParams"]["node-ip-address"].replace(
            "demo-headless-svc", "zz-demo-headless-svc")
    assert [f.line() for f in run(docs)] == []
    # control: the same Service with a selector is another headless Service of the cluster
    docs[-1]["spec"]["selector"] = {"ray.io/cluster": "demo"}
    assert {f.check for f in run(docs)} >= {"service-protocol-conflict"}
