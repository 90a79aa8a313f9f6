"""Istio's real sidecar injector on the Pods the real KubeRay operators create (issue 12 item 2).

For KubeRay v1.1.0 and v1.6.2, with the operator's init container injection at its default
(on: `wait-gcs-ready` in every worker Pod) and off (ENABLE_INIT_CONTAINER_INJECTION=false), the
chart is installed five ways (as shipped, which asks for a native sidecar through
`mesh.nativeSidecar`; without it; without it and with
`mesh.holdApplicationUntilProxyStarts=false`; the pod annotation
`sidecar.istio.io/nativeSidecar` "true" and "false"), and each Pod the operator made is handed
to `istioctl kube-inject` with the injector config the pinned Istio renders
(inject_support.py), istiod's ENABLE_NATIVE_SIDECARS at its default, true and false, with and
without istio-cni. The facts are read from the injected Pods' structure:

- without native sidecars, istio-proxy is a regular container, so KubeRay's `wait-gcs-ready`
  (an init container) runs before it, and before istio-init's iptables rules (or, with
  istio-cni, into rules already in place with no proxy yet): under STRICT the GCS refuses it.
  `holdApplicationUntilProxyStarts` moves istio-proxy first among the regular containers only.
- with native sidecars (istiod's ENABLE_NATIVE_SIDECARS=true, or the pod annotation, which wins
  both ways), istio-proxy is an init container with `restartPolicy: Always` and a startup probe,
  after istio-init and before `wait-gcs-ready`: the init container's traffic goes through it.

istiod's default ENABLE_NATIVE_SIDECARS=auto is decided by the webhook from the Nodes, which
kube-inject offline cannot see: istiod itself serves its injection webhook here (same injector
config) and gets the operator's Pods as AdmissionReviews while the one Node reports kubelet
versions below and above 1.33.

Negative controls: a Pod the injector skips has no proxy; moving `wait-gcs-ready` ahead of the
proxy or dropping the proxy's restartPolicy by hand makes the checks report it; a kubelet below
1.33 (or none reported) gets no native sidecar from auto.
"""

from __future__ import annotations

import copy
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cases import value_args
from controlplane import NODE_NAME, with_operator
from inject_support import (
    PROXY,
    Injector,
    containers,
    describe,
    hold,
    inject,
    injection_dir,
    injector,
    names,
    native,
    pod_manifest,
    proxy,
    runs_before_proxy,
    webhook_inject,
)
from kube import CHART, HELMS, Helm, ray_pods, wait_for
from kubernetes import client

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("MESHRAY_CLUSTER_CACHE") or REPO / ".cache" / "cluster")
OPERATORS = ("v1.1.0", "v1.6.2")
WAIT = "wait-gcs-ready"
NATIVE_ANNOTATION = "sidecar.istio.io/nativeSidecar"
# The operator's environment: init container injection at its default, and off.
INJECTION = {"on": {}, "off": {"ENABLE_INIT_CONTAINER_INJECTION": "false"}}


def _native_annotation(value: str) -> tuple[str, ...]:
    key = NATIVE_ANNOTATION.replace(".", "\\.")
    return tuple(
        a
        for role in ("head", "workerDefaults")
        for a in ("--set-string", f"{role}.annotations.{key}={value}")
    )


# Chart installs: the values a user would set.
# "plain" is the chart without its native-sidecar annotation (mesh.nativeSidecar=false), so
# Istio decides; "chart" is the chart as shipped (mesh.nativeSidecar=true).
PLAIN = ("--set", "mesh.nativeSidecar=false")
RELEASES: dict[str, tuple[str, ...]] = {
    "plain": PLAIN,
    "nohold": (*PLAIN, "--set", "mesh.holdApplicationUntilProxyStarts=false"),
    "native": _native_annotation("true"),
    "notnative": _native_annotation("false"),
    "chart": (),
}
# Istio installs: what `istioctl manifest generate --set ...` renders for the injector.
ISTIO: dict[str, tuple[str, ...]] = {
    "default": (),
    "native": ("values.pilot.env.ENABLE_NATIVE_SIDECARS=true",),
    "non-native": ("values.pilot.env.ENABLE_NATIVE_SIDECARS=false",),
    "cni": ("components.cni.enabled=true",),
    "cni-native": ("components.cni.enabled=true", "values.pilot.env.ENABLE_NATIVE_SIDECARS=true"),
    "hold-values": ("values.global.proxy.holdApplicationUntilProxyStarts=true",),
}


@dataclass
class OperatorPods:
    version: str
    # (operator init container injection, chart release, ray.io/node-type) -> Pod manifest
    pods: dict[tuple[str, str, str], dict[str, Any]]
    # the control plane's API client, alive for the module (Pod Security admission below)
    api: Any = None

    def pod(self, injection: str, release: str, role: str = "worker") -> dict[str, Any]:
        return copy.deepcopy(self.pods[(injection, release, role)])


def _two_pods(core: client.CoreV1Api, ns: str) -> Callable[[], list[Any] | None]:
    def head_and_worker() -> list[Any] | None:
        pods = ray_pods(core, ns)
        return pods if len(pods) == 2 else None

    return head_and_worker


@pytest.fixture(scope="module", params=OPERATORS)
def operator_pods(request: pytest.FixtureRequest) -> Iterator[OperatorPods]:
    """The Pods the real operator makes from each release, with its init container injection
    on and off. No kubelet: the Pods are read as the operator created them, as the injection
    webhook would be handed them."""
    version = str(request.param)
    cp = with_operator(CACHE / f"inject-{os.getpid()}-{version}", version)
    cp.operator_env = dict(INJECTION["on"])
    cp.start()
    try:
        api = cp.api_client()
        core = client.CoreV1Api(api)
        helm = Helm(HELMS["helm4"], cp.kubeconfig)
        pods: dict[tuple[str, str, str], dict[str, Any]] = {}
        for injection, env in INJECTION.items():
            if env != cp.operator_env:
                cp.restart_operator(dict(env))
            for release, args in RELEASES.items():
                ns = f"inj-{injection}-{release}"
                helm.run(
                    "install",
                    "m",
                    str(CHART),
                    "-n",
                    ns,
                    "--create-namespace",
                    *value_args("defaults", version),
                    *args,
                )
                live = wait_for(f"head and worker Pods in {ns}", _two_pods(core, ns), timeout=60)
                for p in live:
                    role = p.metadata.labels["ray.io/node-type"]
                    pods[(injection, release, role)] = pod_manifest(api, p)
        yield OperatorPods(version, pods, api)
    finally:
        cp.stop()


@pytest.fixture(scope="module")
def istio(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Injector]:
    d = tmp_path_factory.mktemp("injector")
    return {name: injector(d, *sets) for name, sets in ISTIO.items()}


def test_the_operator_adds_wait_gcs_ready_to_workers_only_by_default(
    operator_pods: OperatorPods,
) -> None:
    for release in RELEASES:
        assert WAIT in names(operator_pods.pod("on", release), "initContainers")
        assert WAIT not in names(operator_pods.pod("on", release, "head"), "initContainers")
        for role in ("head", "worker"):
            assert names(operator_pods.pod("off", release, role), "initContainers") == []


@pytest.mark.parametrize("mesh", ["default", "non-native", "cni", "hold-values"])
def test_without_native_sidecars_wait_gcs_ready_runs_before_the_proxy(
    operator_pods: OperatorPods, istio: dict[str, Injector], mesh: str
) -> None:
    for release in ("plain", "nohold"):
        pod = inject(istio[mesh], operator_pods.pod("on", release))
        found = proxy(pod)
        assert found is not None and found[0] == "containers", describe(pod)
        assert "restartPolicy" not in found[2]
        assert not native(pod)
        assert runs_before_proxy(pod, WAIT), describe(pod)
        inits = names(pod, "initContainers")
        if mesh.startswith("cni"):
            # istio-cni has set up the redirection before any init container: wait-gcs-ready
            # is redirected to a proxy that has not started.
            assert inits.index("istio-validation") < inits.index(WAIT), describe(pod)
        else:
            # istio-init runs last, so wait-gcs-ready leaves the pod in plaintext.
            assert inits.index(WAIT) < inits.index("istio-init"), describe(pod)


@pytest.mark.parametrize(
    ("mesh", "release"),
    [
        ("native", "plain"),  # istiod's ENABLE_NATIVE_SIDECARS=true
        ("default", "native"),  # the pod annotation, istiod at its default
        ("non-native", "native"),  # the annotation wins over ENABLE_NATIVE_SIDECARS=false
        ("cni-native", "plain"),
        ("native", "nohold"),
    ],
)
def test_native_sidecars_start_the_proxy_before_wait_gcs_ready(
    operator_pods: OperatorPods, istio: dict[str, Injector], mesh: str, release: str
) -> None:
    for injection in INJECTION:
        pod = inject(istio[mesh], operator_pods.pod(injection, release))
        assert native(pod), describe(pod)
        assert PROXY not in names(pod, "containers")
        inits = names(pod, "initContainers")
        found = proxy(pod)
        assert found is not None and found[2].get("startupProbe"), describe(pod)
        first = "istio-validation" if mesh.startswith("cni") else "istio-init"
        assert inits.index(first) < inits.index(PROXY), describe(pod)
        if injection == "on":
            assert inits.index(PROXY) < inits.index(WAIT), describe(pod)
            assert not runs_before_proxy(pod, WAIT)
        else:
            assert WAIT not in inits
        assert not hold(pod)  # no postStart hold: the kubelet waits for the startup probe


def test_the_annotation_false_keeps_the_proxy_a_regular_container(
    operator_pods: OperatorPods, istio: dict[str, Injector]
) -> None:
    pod = inject(istio["native"], operator_pods.pod("on", "notnative"))
    assert not native(pod), describe(pod)
    assert runs_before_proxy(pod, WAIT)


def test_hold_application_orders_the_regular_containers_only(
    operator_pods: OperatorPods, istio: dict[str, Injector]
) -> None:
    """The chart's default `proxy.istio.io/config` hold annotation (or Istio's values) puts
    istio-proxy first among the regular containers with a postStart wait; init containers,
    wait-gcs-ready included, still run before it."""
    for role in ("head", "worker"):
        held = inject(istio["default"], operator_pods.pod("on", "plain", role))
        assert hold(held), describe(held)
        assert names(held, "containers")[0] == PROXY
        unheld = inject(istio["default"], operator_pods.pod("on", "nohold", role))
        assert not hold(unheld), describe(unheld)
        assert names(unheld, "containers")[-1] == PROXY
        assert hold(inject(istio["hold-values"], operator_pods.pod("on", "nohold", role)))
    held = inject(istio["default"], operator_pods.pod("on", "plain"))
    assert runs_before_proxy(held, WAIT)


def test_with_the_operator_injection_off_only_istio_init_runs_before_the_proxy(
    operator_pods: OperatorPods, istio: dict[str, Injector]
) -> None:
    for release in RELEASES:
        for role in ("head", "worker"):
            pod = inject(istio["default"], operator_pods.pod("off", release, role))
            assert [n for n in names(pod, "initContainers") if n != PROXY] == ["istio-init"]


def test_negative_controls(operator_pods: OperatorPods, istio: dict[str, Injector]) -> None:
    # The injector skips a Pod labelled sidecar.istio.io/inject=false: no proxy at all.
    skipped = operator_pods.pod("on", "native")
    skipped["metadata"]["labels"]["sidecar.istio.io/inject"] = "false"
    out = inject(istio["native"], skipped)
    assert proxy(out) is None and not native(out)
    assert runs_before_proxy(out, WAIT)
    # wait-gcs-ready moved ahead of the native proxy by hand is seen running before it.
    pod = inject(istio["native"], operator_pods.pod("on", "plain"))
    moved = copy.deepcopy(pod)
    inits = containers(moved, "initContainers")
    moved["spec"]["initContainers"] = [c for c in inits if c["name"] == WAIT] + [
        c for c in inits if c["name"] != WAIT
    ]
    assert native(moved) and runs_before_proxy(moved, WAIT)
    # Without restartPolicy: Always the proxy is an ordinary init container, not a sidecar.
    plain = copy.deepcopy(pod)
    found = proxy(plain)
    assert found is not None
    found[2].pop("restartPolicy")
    assert not native(plain)


def test_what_the_injector_adds_to_the_pod_metadata(
    operator_pods: OperatorPods, istio: dict[str, Injector]
) -> None:
    """The labels istiod reads to send mTLS to a peer (security.istio.io/tlsMode) come from the
    injector: the operator's Pod lacks them."""
    for role in ("head", "worker"):
        before = operator_pods.pod("off", "plain", role)
        after = inject(istio["default"], before)
        labels = before["metadata"].get("labels") or {}
        added = {k: v for k, v in after["metadata"]["labels"].items() if k not in labels}
        assert added.get("security.istio.io/tlsMode") == "istio"
        assert {"service.istio.io/canonical-name", "service.istio.io/canonical-revision"} <= set(
            added
        )
        assert "sidecar.istio.io/status" in after["metadata"]["annotations"]


def _report(rows: list[str], name: str, title: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A measured table: written under .cache/cluster (docs/mesh-e2e.md quotes it) and printed."""
    table = "\n".join(rows) + "\n"
    out = CACHE / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table)
    with capsys.disabled():
        print(f"\n{title}:\n{table}")


def test_container_order_table(
    operator_pods: OperatorPods, istio: dict[str, Injector], capsys: pytest.CaptureFixture[str]
) -> None:
    """The measured table of docs/mesh-e2e.md, written under .cache/cluster (and printed)."""
    rows = [
        "| operator init injection | chart release | istio | worker pod after injection |",
        "|---|---|---|---|",
    ]
    for injection in INJECTION:
        for release in RELEASES:
            for mesh in ("default", "native", "cni"):
                pod = inject(istio[mesh], operator_pods.pod(injection, release))
                rows.append(f"| {injection} | {release} | {mesh} | {describe(pod)} |")
    _report(rows, f"injection-{operator_pods.version}.md", f"KubeRay {operator_pods.version}",
            capsys)
    assert len(rows) == 2 + len(INJECTION) * len(RELEASES) * 3


@pytest.fixture(scope="module")
def webhook(istio: dict[str, Injector], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """istiod itself serving its injection webhook (the same injector config), against a
    control plane whose one Node reports the kubelet version a test sets."""
    cp = with_operator(CACHE / f"webhook-{os.getpid()}", None)
    cp.start()
    try:
        cp.start_istiod(injection=injection_dir(istio["default"], tmp_path_factory.mktemp("wh")))
        yield cp
    finally:
        cp.stop()


@pytest.mark.parametrize(
    ("kubelet", "release", "expect_native"),
    [
        ("", "plain", False),  # no version: auto cannot tell, so not native
        ("v1.32.9", "plain", False),
        ("v1.33.0", "plain", True),
        ("v1.34.4", "plain", True),
        ("v1.34.4", "notnative", False),  # the annotation wins over auto
        ("v1.32.9", "native", True),
    ],
)
def test_istiod_auto_decides_native_sidecars_from_the_nodes_kubelet(
    operator_pods: OperatorPods, webhook: Any, kubelet: str, release: str, expect_native: bool
) -> None:
    """istiod's default ENABLE_NATIVE_SIDECARS=auto, which kube-inject cannot show offline:
    the webhook makes istio-proxy native when every Node's kubelet is 1.33 or later."""
    core = client.CoreV1Api(webhook.api_client())
    core.patch_node_status(NODE_NAME, {"status": {"nodeInfo": {"kubeletVersion": kubelet}}})
    # istiod reads Nodes from its informer: ask until the answer matches or 15 s have passed.
    deadline = time.monotonic() + 15
    while True:
        pod = webhook_inject(
            webhook.istiod_https, webhook.certs / "ca.crt", operator_pods.pod("on", release)
        )
        if native(pod) == expect_native or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert native(pod) == expect_native, describe(pod)
    assert runs_before_proxy(pod, WAIT) != expect_native, describe(pod)


def test_the_chart_as_shipped_gets_a_native_proxy_before_wait_gcs_ready(
    operator_pods: OperatorPods, istio: dict[str, Injector]
) -> None:
    """mesh.nativeSidecar (default true) annotates every Ray pod, and the annotation wins over
    every istiod setting: istio-proxy starts before KubeRay's wait-gcs-ready, so STRICT works
    with the operator at its defaults. Control: the same chart with the knob off does not."""
    for setting in ISTIO:
        for role in ("head", "worker"):
            pod = inject(istio[setting], operator_pods.pod("on", "chart", role))
            assert native(pod), (setting, role, describe(pod))
        worker = inject(istio[setting], operator_pods.pod("on", "chart"))
        assert not runs_before_proxy(worker, WAIT), (setting, describe(worker))
    plain = inject(istio["default"], operator_pods.pod("on", "plain"))
    assert not native(plain) and runs_before_proxy(plain, WAIT)


# ---- Pod Security admission of the injected Pods ----------------------------------------------
# The levels of the Pod Security Standards a namespace can enforce, strictest last.
LEVELS = ("baseline", "restricted")
# What the API server's PodSecurity admission did with the Pods, measured (the table test below
# writes every cell): the operator's Pods as the chart makes them pass "restricted" with or
# without the operator's wait-gcs-ready; Istio's default injection adds istio-init (NET_ADMIN,
# NET_RAW, uid 0), which even "baseline" refuses; with istio-cni the init container is
# istio-validation (uid 1337, every capability dropped) and "restricted" admits the Pod.
ADMITTED: dict[str, dict[str, bool]] = {
    "none": {"baseline": True, "restricted": True},
    "default": {"baseline": False, "restricted": False},
    "native": {"baseline": False, "restricted": False},
    "cni": {"baseline": True, "restricted": True},
    "cni-native": {"baseline": True, "restricted": True},
}


def _admission_namespaces(op: OperatorPods) -> None:
    """psa-<level> namespaces enforcing each level, holding the ServiceAccounts the Pods name."""
    core = client.CoreV1Api(op.api)
    accounts = {str(p["spec"].get("serviceAccountName") or "default") for p in op.pods.values()}
    for level in LEVELS:
        ns = f"psa-{level}"
        try:
            core.read_namespace(ns)
            continue
        except client.ApiException:
            pass
        labels = {f"pod-security.kubernetes.io/{k}": v for k, v in
                  (("enforce", level), ("enforce-version", "latest"))}
        core.create_namespace({"metadata": {"name": ns, "labels": labels}})
        for sa in accounts - {"default"}:
            core.create_namespaced_service_account(ns, {"metadata": {"name": sa}})


def admission(op: OperatorPods, pod: dict[str, Any], level: str) -> str | None:
    """None when a namespace enforcing `level` admits `pod` (a server-side dry run: admission
    runs, nothing is stored), else the API server's reason."""
    _admission_namespaces(op)
    body = copy.deepcopy(pod)
    meta = body["metadata"]
    body["metadata"] = {"name": "psa-probe", "labels": meta.get("labels") or {},
                        "annotations": meta.get("annotations") or {}}
    body["spec"].pop("nodeName", None)
    try:
        client.CoreV1Api(op.api).create_namespaced_pod(f"psa-{level}", body, dry_run="All")
    except client.ApiException as e:
        assert e.status == 403, e.body
        return str(json.loads(e.body)["message"])
    return None


def _injected(op: OperatorPods, istio: dict[str, Injector], mesh: str, injection: str,
              role: str) -> dict[str, Any]:
    pod = op.pod(injection, "chart", role)
    return pod if mesh == "none" else inject(istio[mesh], pod)


def test_pod_security_admission_table(
    operator_pods: OperatorPods, istio: dict[str, Injector], capsys: pytest.CaptureFixture[str]
) -> None:
    """Which Pod Security level admits the chart's Pods (as shipped) before and after Istio's
    injection, per injector and operator init container injection: the real API server's
    PodSecurity admission decides. The table goes to docs/mesh-e2e.md (written under
    .cache/cluster and printed); every cell must be ADMITTED's."""
    rows = ["| istio injection | operator init injection | pod | " + " | ".join(LEVELS) + " |",
            "|---|---|---|" + "---|" * len(LEVELS)]
    wrong = []
    for mesh, expected in ADMITTED.items():
        for injection in INJECTION:
            for role in ("head", "worker"):
                pod = _injected(operator_pods, istio, mesh, injection, role)
                cells = []
                for level in LEVELS:
                    refused = admission(operator_pods, pod, level)
                    reason = ""
                    if refused:
                        m = re.search(r'violates PodSecurity "[a-z]+:latest": (.*)$', refused)
                        reason = m.group(1) if m else refused[:200]
                    cells.append("admitted" if refused is None else f"refused: {reason}")
                    if (refused is None) != expected[level]:
                        wrong.append(f"{mesh}/{injection}/{role} at {level}: {cells[-1]}")
                rows.append(f"| {mesh} | {injection} | {role} | " + " | ".join(cells) + " |")
    _report(rows, f"pod-security-{operator_pods.version}.md",
            f"KubeRay {operator_pods.version}, Pod Security admission", capsys)
    assert not wrong, "\n".join(wrong)


def test_pod_security_admission_can_refuse(operator_pods: OperatorPods) -> None:
    """Negative control: the operator's head Pod with one container made privileged is refused
    by "baseline" and "restricted" (the admission above reads the Pods, not only the labels)."""
    pod = operator_pods.pod("off", "chart", "head")
    pod["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    for level in LEVELS:
        refused = admission(operator_pods, pod, level)
        assert refused is not None and "privileged" in refused, (level, refused)
