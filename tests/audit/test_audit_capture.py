"""meshray/audit/capture.py: Istio labels and annotations that switch the mesh off around Ray.

The base is tests/fixtures/audit/hardened.yaml, the chart's default render shape written by
hand: its pods carry the sidecar label, the native sidecar annotation and a proxy config that
only holds the application until the proxy starts. Each case adds one Istio key that Istio's
own documentation (annotation and label reference, istio.io) says changes what the proxy
captures or whether there is one; the clean variants add the keys that only tune the proxy.
The oracle is the edit and Istio's documented meaning of the key, not the audit's tables.
"""

from __future__ import annotations

from typing import Any

import pytest
from audit_support import ACK, Case, Docs, Mutation, case_ids, hardened, run
from audit_support import cluster as rc
from meshray.audit import Finding, registry
from meshray.audit import capture as family

CHECK = "mesh-capture-override"


def meta(d: Docs, part: str, group: str = "head") -> dict[str, str]:
    """The head's (or the first worker group's) pod template labels or annotations."""
    spec = rc(d)["spec"]
    g = spec["headGroupSpec"] if group == "head" else spec["workerGroupSpecs"][0]
    out: dict[str, str] = g["template"]["metadata"].setdefault(part, {})
    return out


def label(key: str, value: str, group: str = "head") -> Mutation:
    return lambda d: meta(d, "labels", group).update({key: value})


def annotate(key: str, value: str, group: str = "head") -> Mutation:
    return lambda d: meta(d, "annotations", group).update({key: value})


def acknowledge(ids: str) -> Mutation:
    return lambda d: rc(d)["metadata"].setdefault("annotations", {}).update({ACK: ids})


CASES: list[Case] = [
    # the documented ways to take Ray's ports out of the sidecar's hands
    (CHECK, "error", annotate("traffic.sidecar.istio.io/excludeInboundPorts", "6379,8265")),
    (CHECK, "error", annotate("traffic.sidecar.istio.io/includeInboundPorts", "8080")),
    (CHECK, "error", annotate("traffic.sidecar.istio.io/excludeOutboundPorts", "6379")),
    (CHECK, "error", annotate("traffic.sidecar.istio.io/excludeOutboundIPRanges", "10.0.0.0/8")),
    (CHECK, "error", annotate("sidecar.istio.io/interceptionMode", "NONE")),
    # no sidecar at all: the label the chart sets, flipped (and in the worker group)
    (CHECK, "error", label("sidecar.istio.io/inject", "false", group="worker")),
    # the deprecated annotation form of the same switch
    (CHECK, "error", annotate("sidecar.istio.io/inject", "false")),
    # ambient: out of the mesh, or ztunnel told to leave inbound traffic alone
    (CHECK, "error", label("istio.io/dataplane-mode", "none")),
    (CHECK, "error", annotate("ambient.istio.io/bypass-inbound-capture", "true")),
    (CHECK, "error", annotate("ambient.istio.io/redirection", "disabled")),
    # proxy config beyond holding the application: interception moved in the mesh config
    (CHECK, "error", annotate("proxy.istio.io/config",
                              '{"holdApplicationUntilProxyStarts": true, '
                              '"interceptionMode": "NONE"}')),
    (CHECK, "error", annotate("proxy.istio.io/config", "not: [a mapping")),
    # another control plane, another bootstrap, a privileged core-dump init container
    (CHECK, "error", label("istio.io/rev", "canary")),
    (CHECK, "error", annotate("sidecar.istio.io/bootstrapOverride", "my-bootstrap")),
    (CHECK, "error", annotate("sidecar.istio.io/enableCoreDump", "true")),
    # any other key of an istio.io domain is denied by default
    (CHECK, "error", label("topology.istio.io/network", "other-net")),
]


def hits(docs: Docs) -> list[Finding]:
    return [f for f in run(docs) if f.check == CHECK]


def assert_triggers(severity: str, mutate: Mutation) -> list[Finding]:
    docs = hardened()
    assert not hits(docs)  # the chart's shape is clean
    mutate(docs)
    found = hits(docs)
    assert len(found) == 1, [f.line() for f in found]  # one finding per offending key
    assert found[0].severity == severity and found[0].kind == "RayCluster"
    assert found[0].line().startswith(f"{severity}: RayCluster/demo [ray] ")
    return found


def test_hardened_base_is_clean() -> None:
    assert [f.line() for f in run(hardened())] == []


@pytest.mark.parametrize(("check", "severity", "mutate"), CASES, ids=case_ids(CASES))
def test_check_triggers(check: str, severity: str, mutate: Mutation) -> None:
    assert_triggers(severity, mutate)


@pytest.mark.parametrize(("check", "severity", "mutate"), CASES, ids=case_ids(CASES))
def test_acknowledged_is_a_warning(check: str, severity: str, mutate: Mutation) -> None:
    [f] = assert_triggers("warning", lambda d: (
        mutate(d), acknowledge("unrestricted-pods, mesh-capture")(d)))
    assert "acknowledged" in f.message and "mesh-capture" in f.message


def test_another_acknowledgement_does_not_count() -> None:
    assert_triggers("error", lambda d: (
        annotate("traffic.sidecar.istio.io/excludeInboundPorts", "6379")(d),
        acknowledge("shared-identity,unrestricted-pods")(d)))


def test_message_names_group_key_value_and_effect() -> None:
    [f] = assert_triggers("error", annotate(
        "traffic.sidecar.istio.io/excludeInboundPorts", "6380", group="worker"))
    assert f.key == ("spec.workerGroupSpecs[0].template.metadata.annotations."
                     "traffic.sidecar.istio.io/excludeInboundPorts")
    assert f.value == "6380"
    assert f.message.startswith("worker group cpu: annotation "
                                'traffic.sidecar.istio.io/excludeInboundPorts: "6380" ')
    assert "STRICT mTLS and the AuthorizationPolicy no longer apply" in f.message
    [g] = assert_triggers("error", annotate("proxy.istio.io/config",
                                            "holdApplicationUntilProxyStarts: true\n"
                                            "proxyMetadata: {ISTIO_META_DNS_CAPTURE: 'false'}"))
    assert g.message.startswith("head group: annotation proxy.istio.io/config: ")
    assert "proxyMetadata" in g.message


CLEAN_VARIANTS: list[tuple[str, Mutation]] = [
    ("proxy tuning", lambda d: meta(d, "annotations").update({
        k: "1" for k in ("sidecar.istio.io/proxyCPU", "sidecar.istio.io/proxyCPULimit",
                         "sidecar.istio.io/proxyMemory", "sidecar.istio.io/proxyMemoryLimit",
                         "sidecar.istio.io/logLevel", "sidecar.istio.io/componentLogLevel",
                         "sidecar.istio.io/agentLogLevel",
                         "sidecar.istio.io/statsInclusionPrefixes",
                         "sidecar.istio.io/statsInclusionSuffixes",
                         "sidecar.istio.io/statsInclusionRegexps",
                         "sidecar.istio.io/statsHistogramBuckets",
                         "prometheus.istio.io/merge-metrics")})),
    ("native sidecar off", annotate("sidecar.istio.io/nativeSidecar", "false")),
    ("canonical service labels", lambda d: meta(d, "labels").update({
        "service.istio.io/canonical-name": "ray", "service.istio.io/canonical-revision": "v1"})),
    ("hold in YAML", annotate("proxy.istio.io/config", "holdApplicationUntilProxyStarts: true")),
    ("no proxy config", lambda d: meta(d, "annotations").pop("proxy.istio.io/config")),
    ("not Istio's domain", lambda d: (
        annotate("example.com/istio.io", "x")(d), label("notistio.io/x", "y")(d),
        label("istio-injection", "disabled")(d))),
]


@pytest.mark.parametrize(("name", "mutate"), CLEAN_VARIANTS, ids=[n for n, _ in CLEAN_VARIANTS])
def test_clean_variants(name: str, mutate: Mutation) -> None:
    docs = hardened()
    mutate(docs)
    assert [f.line() for f in run(docs)] == []


def ambient(d: Docs) -> None:
    """The chart's ambient shape: no sidecar keys, the dataplane label on every group."""
    for group in ("head", "worker"):
        meta(d, "annotations", group).clear()
        labels = meta(d, "labels", group)
        labels.clear()
        labels["istio.io/dataplane-mode"] = "ambient"


def test_ambient_pods() -> None:
    docs = hardened()
    ambient(docs)
    label("sidecar.istio.io/inject", "false")(docs)  # no sidecar wanted: a no-op on ambient
    assert [f.line() for f in run(docs)] == []
    label("istio.io/use-waypoint", "ray-waypoint")(docs)  # the ambient family's business
    assert not hits(docs)
    annotate("ambient.istio.io/bypass-inbound-capture", "true")(docs)
    assert [f.key for f in hits(docs)] == [
        "spec.headGroupSpec.template.metadata.annotations.ambient.istio.io/bypass-inbound-capture"]


def test_no_duplicate_of_ambient_with_sidecar() -> None:
    docs = hardened()
    ambient(docs)
    annotate("sidecar.istio.io/interceptionMode", "NONE")(docs)
    checks = [f.check for f in run(docs)]
    assert checks == ["ambient-with-sidecar"]
    # negative control: the same key on a sidecar pod is this family's finding
    docs = hardened()
    annotate("sidecar.istio.io/interceptionMode", "NONE")(docs)
    assert [f.check for f in run(docs)] == [CHECK]


# --- running Pods (audit --cluster) ----------------------------------------------------------

# what Istio's injector writes on a Pod with istio-cni (injection template, default values)
INJECTED = {
    "sidecar.istio.io/status": '{"initContainers":["istio-validation","istio-proxy"],'
                               '"containers":[],"volumes":["istio-envoy"]}',
    "istio.io/rev": "default",
    "sidecar.istio.io/interceptionMode": "REDIRECT",
    "traffic.sidecar.istio.io/includeInboundPorts": "*",
    "traffic.sidecar.istio.io/includeOutboundIPRanges": "*",
    "traffic.sidecar.istio.io/excludeInboundPorts": "15020",
    "sidecar.istio.io/nativeSidecar": "true",
    "proxy.istio.io/config": '{"holdApplicationUntilProxyStarts": true}',
}


def live_pod(annotations: dict[str, str], labels: dict[str, str] | None = None
             ) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "demo-cpu-worker-abc", "namespace": "ray",
                         "labels": {"ray.io/cluster": "demo", "ray.io/node-type": "worker",
                                    "ray.io/group": "cpu", "sidecar.istio.io/inject": "true",
                                    "security.istio.io/tlsMode": "istio",
                                    "service.istio.io/canonical-name": "demo",
                                    **(labels or {})},
                         "annotations": annotations},
            "spec": {"serviceAccountName": "demo-ray", "containers": [{
                "name": "ray-worker", "image": "rayproject/ray:2.46.0",
                "command": ["/bin/bash", "-c", "--"],
                "args": ["ray start --address=demo-head-svc.ray.svc.cluster.local:6379 "
                         "--node-manager-port=6380 --object-manager-port=6381 "
                         "--runtime-env-agent-port=6382 --dashboard-agent-grpc-port=6383 "
                         "--dashboard-agent-listen-port=52365 --metrics-export-port=8080 "
                         "--min-worker-port=10002 --max-worker-port=10005 --block"]}]}}


def live_hits(pod: dict[str, Any], *mutations: Mutation) -> list[Finding]:
    docs = hardened()
    docs.append(pod)
    for m in mutations:
        m(docs)
    return [f for f in hits(docs) if f.kind == "Pod"]


def test_live_pod_as_injected_is_clean() -> None:
    assert live_hits(live_pod(dict(INJECTED))) == []
    assert live_hits(live_pod({"ambient.istio.io/redirection": "enabled"},
                              {"istio.io/dataplane-mode": "ambient"})) == []


def test_live_pod_with_an_exclusion() -> None:
    # the injector merges the template's exclusion with its own status port
    pod = live_pod({**INJECTED, "traffic.sidecar.istio.io/excludeInboundPorts": "6379,15020"})
    [f] = live_hits(pod)
    assert f.severity == "error" and f.name == "demo-cpu-worker-abc"
    assert f.key == "metadata.annotations.traffic.sidecar.istio.io/excludeInboundPorts"
    assert f.message.startswith("Pod demo-cpu-worker-abc (worker of RayCluster demo): ")
    [w] = live_hits(pod, acknowledge("mesh-capture"))  # its RayCluster acknowledges it
    assert w.severity == "warning" and "acknowledged" in w.message


def test_injector_values_count_only_on_running_pods() -> None:
    # on a template the same keys are what a user wrote, and denied (the chart refuses them)
    docs = hardened()
    meta(docs, "annotations").update({"traffic.sidecar.istio.io/includeInboundPorts": "*"})
    assert [(f.key, f.value) for f in hits(docs)] == [
        ("spec.headGroupSpec.template.metadata.annotations."
         "traffic.sidecar.istio.io/includeInboundPorts", "*")]


def test_negative_control_without_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the family taken out of the run, the triggering cases fail: they test it."""
    monkeypatch.setattr(registry, "ACROSS_INPUT",
                        tuple(c for c in registry.ACROSS_INPUT if c is not family.check))
    for _, severity, mutate in CASES:
        with pytest.raises(AssertionError):
            assert_triggers(severity, mutate)


# --- a group kept out of the mesh (sidecar.istio.io/inject: "false") -------------------------


def sidecar_problems(group: str) -> Mutation:
    """What only a sidecar would act on, for one group: an excluded inbound port, a Service
    declaring a port with a second protocol (the inbound listener's protocol), an ALLOW rule
    forgetting a port the group needs (authz), and uid 1337 (the proxy's own)."""
    def mutate(d: Docs) -> None:
        annotate("traffic.sidecar.istio.io/excludeInboundPorts", "6380", group=group)(d)
        spec = rc(d)["spec"]
        g = spec["headGroupSpec"] if group == "head" else spec["workerGroupSpecs"][0]
        g["template"]["spec"]["securityContext"]["runAsUser"] = 1337
        d.append({"apiVersion": "v1", "kind": "Service",
                  "metadata": {"name": "demo-extra", "namespace": "ray"},
                  "spec": {"selector": {"ray.io/cluster": "demo"},
                           "ports": [{"name": "x", "port": 6381, "appProtocol": "http"}]}})
        policy = next(x for x in d if x["kind"] == "AuthorizationPolicy")
        policy["spec"]["rules"][0]["to"][0]["operation"]["notPorts"].append("6383")
    return mutate


def test_out_of_mesh_group_is_one_clear_finding() -> None:
    """A worker group labelled sidecar.istio.io/inject: "false" gets one finding saying it
    is out of the mesh, and none of the findings that need a sidecar; the head, still in the
    mesh, keeps its own."""
    docs = hardened()
    sidecar_problems("worker")(docs)
    sidecar_problems("head")(docs)
    label("sidecar.istio.io/inject", "false", group="worker")(docs)
    got = run(docs)
    worker_findings = [f for f in got if "workerGroupSpecs[0]" in f.key
                       or "group cpu" in f.message]
    [f] = worker_findings
    assert f.check == CHECK and f.severity == "error"
    assert f.key == "spec.workerGroupSpecs[0].template.metadata.labels.sidecar.istio.io/inject"
    assert f.message.startswith('worker group cpu is out of the mesh: label '
                                'sidecar.istio.io/inject: "false" ')
    assert 'sidecar.istio.io/inject: "true"' in f.fix
    # the head still gets what its sidecar acts on (negative control of the skipping)
    head_checks = {g.check for g in got if g not in worker_findings}
    assert {CHECK, "pod-proxy-uid", "service-protocol-conflict",
            "authz-port-denied"} <= head_checks


def test_out_of_mesh_by_annotation_and_label_precedence() -> None:
    """Istio's injector reads the label, else the annotation: the annotation alone takes the
    group out; under a label "true" it is a stray key (reported as such)."""
    docs = hardened()
    meta(docs, "labels", "worker").pop("sidecar.istio.io/inject")
    annotate("sidecar.istio.io/inject", "false", group="worker")(docs)
    annotate("traffic.sidecar.istio.io/excludeInboundPorts", "6380", group="worker")(docs)
    [f] = hits(docs)
    assert f.key.endswith("annotations.sidecar.istio.io/inject")
    assert "is out of the mesh" in f.message
    label("sidecar.istio.io/inject", "true", group="worker")(docs)
    prefix = "spec.workerGroupSpecs[0].template.metadata.annotations."
    assert sorted(f.key for f in hits(docs)) == [
        prefix + "sidecar.istio.io/inject", prefix + "traffic.sidecar.istio.io/excludeInboundPorts"]
    assert not any("out of the mesh" in f.message for f in hits(docs))


def test_all_groups_out_of_mesh_drop_the_mtls_findings() -> None:
    """No sidecar anywhere: a PERMISSIVE policy and the lack of one say nothing about these
    pods (each group's out-of-mesh finding does)."""
    docs = hardened()
    for group in ("head", "worker"):
        label("sidecar.istio.io/inject", "false", group=group)(docs)
    next(x for x in docs if x["kind"] == "PeerAuthentication")["spec"]["mtls"]["mode"] = (
        "PERMISSIVE")
    assert sorted((f.check, f.key.split(".")[1]) for f in run(docs)) == [
        (CHECK, "headGroupSpec"), (CHECK, "workerGroupSpecs[0]")]
    docs = [x for x in docs if x["kind"] != "PeerAuthentication"]
    assert {f.check for f in run(docs)} == {CHECK}
