"""meshray/audit/restricted.py: Ray pods beyond Kubernetes' restricted Pod Security Standard.

The base is tests/fixtures/audit/hardened.yaml, the chart's default render shape written by
hand (restricted securityContexts on the pods and Ray containers). Each case writes one
setting the Pod Security Standards (kubernetes.io, "Pod Security Standards": baseline and
restricted) forbid, or uid 1337 (Istio's proxy, whose traffic istio-iptables returns
unproxied); the clean variants write what they allow, and clean.yaml (no securityContext at
all, as in KubeRay's samples) must stay clean: absent fields are not findings.
"""

from __future__ import annotations

from typing import Any

import pytest
from audit_support import ACK, Docs, Mutation, base, hardened, run
from audit_support import cluster as rc
from meshray.audit import Finding, registry
from meshray.audit import restricted as family

HEAD = "spec.headGroupSpec.template."
WORKER = "spec.workerGroupSpecs[0].template."


def spec(d: Docs, group: str = "head") -> dict[str, Any]:
    s = rc(d)["spec"]
    g = s["headGroupSpec"] if group == "head" else s["workerGroupSpecs"][0]
    out: dict[str, Any] = g["template"]["spec"]
    return out


def container(group: str = "head", **sc: Any) -> Mutation:
    """Merge ``sc`` into the group's Ray container securityContext."""
    return lambda d: spec(d, group)["containers"][0]["securityContext"].update(sc)


def pod_sc(group: str = "head", **sc: Any) -> Mutation:
    return lambda d: spec(d, group)["securityContext"].update(sc)


def pod_spec(group: str = "head", **fields: Any) -> Mutation:
    return lambda d: spec(d, group).update(fields)


def sidecar(**sc: Any) -> Mutation:
    """A user sidecar container in the worker group, with securityContext ``sc``."""
    return lambda d: spec(d, "worker")["containers"].append(
        {"name": "log-shipper", "image": "fluent/fluent-bit:3", "securityContext": sc})


def init(**sc: Any) -> Mutation:
    return lambda d: spec(d, "head").setdefault("initContainers", []).append(
        {"name": "setup", "image": "busybox:1", "securityContext": sc})


def acknowledge(ids: str) -> Mutation:
    return lambda d: rc(d)["metadata"].setdefault("annotations", {}).update({ACK: ids})


C0 = "spec.containers[0].securityContext"
# (check, the key the finding must name, mutation)
KEYED: list[tuple[str, str, Mutation]] = [
    ("pod-privileged", f"{HEAD}{C0}.privileged", container(privileged=True)),
    ("pod-privileged", f"{WORKER}spec.containers[1].securityContext.privileged",
     sidecar(privileged=True)),
    ("pod-capabilities", f"{HEAD}{C0}.capabilities.add",
     container(capabilities={"drop": ["ALL"], "add": ["NET_ADMIN"]})),
    ("pod-capabilities", f"{HEAD}spec.initContainers[0].securityContext.capabilities.add",
     init(capabilities={"add": ["NET_BIND_SERVICE", "CAP_NET_RAW"]})),
    ("pod-root", f"{HEAD}{C0}.runAsUser", container(runAsUser=0)),
    ("pod-root", f"{WORKER}spec.securityContext.runAsUser", pod_sc("worker", runAsUser=0)),
    ("pod-root", f"{HEAD}spec.securityContext.runAsNonRoot", pod_sc(runAsNonRoot=False)),
    ("pod-root", f"{HEAD}{C0}.runAsNonRoot", container(runAsNonRoot=False)),
    ("pod-proxy-uid", f"{HEAD}{C0}.runAsUser", container(runAsUser=1337)),
    ("pod-proxy-uid", f"{HEAD}spec.securityContext.runAsUser", pod_sc(runAsUser=1337)),
    ("pod-proxy-uid", f"{WORKER}spec.containers[1].securityContext.runAsGroup",
     sidecar(runAsGroup=1337)),
    ("pod-privilege-escalation", f"{HEAD}{C0}.allowPrivilegeEscalation",
     container(allowPrivilegeEscalation=True)),
    ("pod-host-namespace", f"{HEAD}spec.hostNetwork", pod_spec(hostNetwork=True)),
    ("pod-host-namespace", f"{WORKER}spec.hostPID", pod_spec("worker", hostPID=True)),
    ("pod-host-namespace", f"{HEAD}spec.hostIPC", pod_spec(hostIPC=True)),
    ("pod-host-path", f"{WORKER}spec.volumes[0].hostPath", pod_spec(
        "worker", volumes=[{"name": "docker", "hostPath": {"path": "/var/run/docker.sock"}}])),
    ("pod-unconfined", f"{HEAD}spec.securityContext.seccompProfile.type",
     pod_sc(seccompProfile={"type": "Unconfined"})),
    ("pod-unconfined", f"{HEAD}{C0}.seccompProfile.type",
     container(seccompProfile={"type": "Unconfined"})),
    ("pod-unconfined", f"{HEAD}{C0}.appArmorProfile.type",
     container(appArmorProfile={"type": "Unconfined"})),
    ("pod-unconfined", f"{HEAD}metadata.annotations."
     "container.apparmor.security.beta.kubernetes.io/ray-head",
     lambda d: rc(d)["spec"]["headGroupSpec"]["template"]["metadata"]["annotations"].update(
         {"container.apparmor.security.beta.kubernetes.io/ray-head": "unconfined"})),
    ("pod-unsafe-sysctl", f"{HEAD}spec.securityContext.sysctls[1]", pod_sc(sysctls=[
        {"name": "net.ipv4.tcp_syncookies", "value": "1"},
        {"name": "net.core.somaxconn", "value": "4096"}])),
    ("pod-proc-mount", f"{HEAD}{C0}.procMount", container(procMount="Unmasked")),
    ("pod-host-process", f"{HEAD}{C0}.windowsOptions.hostProcess",
     container(windowsOptions={"hostProcess": True})),
    ("pod-host-process", f"{HEAD}spec.securityContext.windowsOptions.hostProcess",
     pod_sc(windowsOptions={"hostProcess": True})),
    # KubeRay's autoscaler container on the head takes the RayCluster's securityContext
    ("pod-privileged", "spec.autoscalerOptions.securityContext.privileged",
     lambda d: rc(d)["spec"].update(enableInTreeAutoscaling=True,
                                    autoscalerOptions={"securityContext": {"privileged": True}})),
]
CASES = [(check, "error", mutate) for check, _, mutate in KEYED]
IDS = [f"{c}-{i}" for i, (c, _, _) in enumerate(KEYED)]


def assert_triggers(check: str, key: str, severity: str, mutate: Mutation) -> Finding:
    """The base has no finding; after the edit exactly one, of ``check`` at ``key``."""
    docs = hardened()
    assert not run(docs)
    mutate(docs)
    found = run(docs)
    assert [(f.check, f.key, f.severity) for f in found] == [(check, key, severity)], [
        f.line() for f in found]
    assert found[0].kind == "RayCluster" and found[0].fix
    return found[0]


def test_cases_cover_the_family() -> None:
    assert {c for c, _, _ in KEYED} == {c.id for c in family.CHECKS}


@pytest.mark.parametrize(("check", "key", "mutate"), KEYED, ids=IDS)
def test_check_triggers(check: str, key: str, mutate: Mutation) -> None:
    assert_triggers(check, key, "error", mutate)


@pytest.mark.parametrize(("check", "key", "mutate"), KEYED, ids=IDS)
def test_acknowledged_is_a_warning(check: str, key: str, mutate: Mutation) -> None:
    f = assert_triggers(check, key, "warning",
                        lambda d: (mutate(d), acknowledge("unrestricted-pods")(d)))
    assert "acknowledged" in f.message and "unrestricted-pods" in f.message


def test_another_acknowledgement_does_not_count() -> None:
    assert_triggers("pod-privileged", f"{HEAD}{C0}.privileged", "error", lambda d: (
        container(privileged=True)(d), acknowledge("mesh-capture,shared-identity")(d)))


def test_message_names_group_container_and_setting() -> None:
    f = assert_triggers("pod-proxy-uid", f"{WORKER}spec.containers[1].securityContext.runAsUser",
                        "error", sidecar(runAsUser=1337))
    assert f.message.startswith("worker group cpu, container log-shipper: runAsUser: 1337 ")
    assert "around the sidecar" in f.message and f.value == 1337
    g = assert_triggers("pod-capabilities", f"{HEAD}{C0}.capabilities.add", "error",
                        container(capabilities={"add": ["NET_BIND_SERVICE", "SYS_ADMIN"]}))
    assert g.value == ["SYS_ADMIN"] and g.message.startswith("head group, container ray-head: ")


def test_one_finding_per_setting() -> None:
    docs = hardened()
    container(privileged=True, runAsUser=0, allowPrivilegeEscalation=True)(docs)
    pod_spec("worker", hostNetwork=True, hostPID=True)(docs)
    assert sorted(f.check for f in run(docs)) == [
        "pod-host-namespace", "pod-host-namespace", "pod-privilege-escalation",
        "pod-privileged", "pod-root"]


CLEAN_VARIANTS: list[tuple[str, Mutation]] = [
    ("NET_BIND_SERVICE only", container(capabilities={"drop": ["ALL"],
                                                      "add": ["NET_BIND_SERVICE"]})),
    ("CAP_ prefix", container(capabilities={"add": ["cap_net_bind_service"]})),
    ("explicitly safe values", container(privileged=False, allowPrivilegeEscalation=False,
                                         procMount="Default", runAsUser=1001,
                                         seccompProfile={"type": "Localhost",
                                                         "localhostProfile": "ray.json"},
                                         appArmorProfile={"type": "RuntimeDefault"},
                                         windowsOptions={"hostProcess": False})),
    ("safe sysctls", pod_sc(sysctls=[{"name": "net.ipv4.ip_local_port_range",
                                      "value": "20000 30000"},
                                     {"name": "net.ipv4.tcp_keepalive_time", "value": "60"}])),
    ("host namespaces false", pod_spec(hostNetwork=False, hostPID=False, hostIPC=False)),
    ("other volumes", pod_spec(volumes=[{"name": "tmp", "emptyDir": {}},
                                        {"name": "cfg", "configMap": {"name": "x"}}])),
    ("no securityContext at all", lambda d: (
        spec(d).pop("securityContext"), spec(d)["containers"][0].pop("securityContext"))),
]


@pytest.mark.parametrize(("name", "mutate"), CLEAN_VARIANTS, ids=[n for n, _ in CLEAN_VARIANTS])
def test_clean_variants(name: str, mutate: Mutation) -> None:
    docs = hardened()
    mutate(docs)
    assert [f.line() for f in run(docs)] == []


def test_samples_without_security_context_are_clean() -> None:
    assert [f.line() for f in run(base())] == []


# --- running Pods (audit --cluster) ----------------------------------------------------------

def injected_pod(status: bool = True) -> dict[str, Any]:
    """A running worker Pod as Istio's injector leaves it (without istio-cni): istio-init runs
    as root with NET_ADMIN and NET_RAW, istio-proxy as 1337 (injection template)."""
    annotations = {"sidecar.istio.io/status":
                   '{"initContainers":["istio-init"],"containers":["istio-proxy"]}'}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "demo-cpu-worker-abc", "namespace": "ray",
                         "labels": {"ray.io/cluster": "demo", "ray.io/node-type": "worker",
                                    "ray.io/group": "cpu"},
                         "annotations": annotations if status else {}},
            "spec": {"serviceAccountName": "demo-ray",
                     "initContainers": [{"name": "istio-init", "securityContext": {
                         "runAsUser": 0, "runAsNonRoot": False, "privileged": False,
                         "capabilities": {"add": ["NET_ADMIN", "NET_RAW"],
                                          "drop": ["ALL"]}}}],
                     "containers": [
                         {"name": "ray-worker", "image": "rayproject/ray:2.46.0",
                          "command": ["/bin/bash", "-c", "--"],
                          "args": ["ray start --address=demo-head-svc:6379 --block"],
                          "securityContext": {"runAsUser": 1000}},
                         {"name": "istio-proxy", "securityContext": {
                             "runAsUser": 1337, "runAsGroup": 1337, "runAsNonRoot": True}}]}}


def pod_findings(docs: Docs) -> list[Finding]:
    return [f for f in run(docs) if f.kind == "Pod" and f.check in {c.id for c in family.CHECKS}]


def test_live_pod_istio_containers_are_not_findings() -> None:
    docs = hardened()
    docs.append(injected_pod())
    assert pod_findings(docs) == []
    # negative control: the same containers without the injector's record are the user's
    docs = hardened()
    docs.append(injected_pod(status=False))
    assert sorted((f.check, f.key) for f in pod_findings(docs)) == [
        ("pod-capabilities", "spec.initContainers[0].securityContext.capabilities.add"),
        ("pod-proxy-uid", "spec.containers[1].securityContext.runAsGroup"),
        ("pod-proxy-uid", "spec.containers[1].securityContext.runAsUser"),
        ("pod-root", "spec.initContainers[0].securityContext.runAsNonRoot"),
        ("pod-root", "spec.initContainers[0].securityContext.runAsUser")]


def test_live_pod_follows_its_raycluster_acknowledgement() -> None:
    docs = hardened()
    pod = injected_pod()
    pod["spec"]["containers"][0]["securityContext"]["privileged"] = True
    docs.append(pod)
    [f] = pod_findings(docs)
    assert (f.check, f.severity, f.key) == ("pod-privileged", "error",
                                            "spec.containers[0].securityContext.privileged")
    assert f.message.startswith("Pod demo-cpu-worker-abc (worker of RayCluster demo), "
                                "container ray-worker: ")
    acknowledge("unrestricted-pods")(docs)
    assert [(f.check, f.severity) for f in pod_findings(docs)] == [("pod-privileged", "warning")]


def test_negative_control_without_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the family taken out of the run, the triggering cases fail: they test it."""
    monkeypatch.setattr(registry, "ACROSS_INPUT",
                        tuple(c for c in registry.ACROSS_INPUT if c is not family.check))
    for check, key, mutate in KEYED:
        with pytest.raises(AssertionError):
            assert_triggers(check, key, "error", mutate)
