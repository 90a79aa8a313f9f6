"""Istio labels and annotations on Ray pods that switch the mesh off, or route traffic around it.

The chart's STRICT PeerAuthentication and AuthorizationPolicy hold only for traffic the proxy
(the sidecar, or ztunnel in ambient mode) sees. A pod template's Istio keys can exclude ports
from capture (``traffic.sidecar.istio.io/excludeInboundPorts``), skip injection, change the
interception mode, the proxy's config or its control plane revision, or bypass ztunnel, and
Ray's ports then take plaintext from anyone who reaches the pod. So every label and
annotation whose key's prefix is ``istio.io`` or ends in ``.istio.io`` is a finding, except:

- tuning that leaves capture alone: the proxy's resources, log levels and stats
  (``sidecar.istio.io/proxyCPU``..., ``prometheus.istio.io/merge-metrics``), the native
  sidecar switch, the canonical service labels, ``istio.io/use-waypoint`` (the ``ambient``
  family checks it);
- what the chart sets itself: ``sidecar.istio.io/inject: "true"``, ``proxy.istio.io/config``
  holding only ``holdApplicationUntilProxyStarts: true``, ``istio.io/dataplane-mode:
  ambient`` (and on such ambient pods ``sidecar.istio.io/inject: "false"``, a no-op there);
- on a running Pod, what Istio's injector and istio-cni write with their default values
  (the injection record, the revision, ``security.istio.io/tlsMode: istio``, interception
  REDIRECT of every port but the proxy's own, ``ambient.istio.io/redirection: enabled``).

On an ambient pod the ``ambient`` family already reports the sidecar keys
(``ambient-with-sidecar``): they are not reported twice. A sidecar pod template that
``sidecar.istio.io/inject`` keeps out of the mesh gets one finding, on that key, saying so;
its other Istio keys tune a sidecar it will not have and are not reported, and the families
that judge what a sidecar enforces (``protocols``, ``peerauth``, ``authz``, ``identity``,
``pod-proxy-uid``) skip its group: with mesh capture off the protection is switched off, and
that one finding says it.
"""

from __future__ import annotations

from typing import Any

import yaml

from ..manifests import LOADER
from . import acknowledge
from .context import Context
from .findings import ERROR, Check, quoted, yaml_text
from .kinds import CLUSTERS, RAY_POD
from .raypods import DATAPLANE, INJECTION_STATUS, USE_WAYPOINT, RayPod, ray_pods, sidecar_asks

MESH_CAPTURE_OVERRIDE = Check(
    "mesh-capture-override", ERROR,
    "a Ray pod's Istio label or annotation switches the mesh off or routes traffic around it")

CHECKS = (MESH_CAPTURE_OVERRIDE,)
# every Ray pod template and running Ray Pod
READS = (*CLUSTERS, RAY_POD)

# annotations that tune the proxy without changing what it captures
TUNING = frozenset({
    "sidecar.istio.io/nativeSidecar", "sidecar.istio.io/proxyCPU",
    "sidecar.istio.io/proxyCPULimit", "sidecar.istio.io/proxyMemory",
    "sidecar.istio.io/proxyMemoryLimit", "sidecar.istio.io/logLevel",
    "sidecar.istio.io/componentLogLevel", "sidecar.istio.io/agentLogLevel",
    "sidecar.istio.io/statsInclusionPrefixes", "sidecar.istio.io/statsInclusionSuffixes",
    "sidecar.istio.io/statsInclusionRegexps", "sidecar.istio.io/statsHistogramBuckets",
    "prometheus.istio.io/merge-metrics",
})
# labels that name the workload or its waypoint (checked by the ambient family)
NAMING = frozenset({"service.istio.io/canonical-name", "service.istio.io/canonical-revision",
                    USE_WAYPOINT})
INJECT = "sidecar.istio.io/inject"
PROXY_CONFIG = "proxy.istio.io/config"
HOLD = "holdApplicationUntilProxyStarts"
# what the injector and istio-cni write on a running Pod, with their default values
# (Istio's injection template; istio-cni's ambient enrolment, tests/mesh/test_ambient.py)
ISTIO_PORTS = frozenset({"15020", "15021", "15090"})  # the proxy's own status/stats ports
WRITTEN_BY_ISTIO: dict[str, frozenset[str] | None] = {
    INJECTION_STATUS: None,  # any value
    "istio.io/rev": None,
    "security.istio.io/tlsMode": frozenset({"istio"}),
    "sidecar.istio.io/interceptionMode": frozenset({"REDIRECT"}),
    "traffic.sidecar.istio.io/includeInboundPorts": frozenset({"*"}),
    "traffic.sidecar.istio.io/includeOutboundIPRanges": frozenset({"*"}),
    "ambient.istio.io/redirection": frozenset({"enabled"}),
}
EXCLUDE_INBOUND = "traffic.sidecar.istio.io/excludeInboundPorts"

AROUND = ("so STRICT mTLS and the AuthorizationPolicy no longer apply to them: anyone who "
          "reaches the pod reaches them in plaintext")
OUTBOUND = ("in plaintext and without the pods' mesh identity (Ray's peers under STRICT "
            "refuse them, other services see no mTLS)")
EFFECTS = {
    EXCLUDE_INBOUND: f"excludes those inbound ports from the sidecar, {AROUND}",
    "traffic.sidecar.istio.io/includeInboundPorts":
        f"captures only those inbound ports: every other port skips the sidecar, {AROUND}",
    "traffic.sidecar.istio.io/excludeOutboundPorts":
        f"sends the pods' connections to those ports around the sidecar, {OUTBOUND}",
    "traffic.sidecar.istio.io/excludeOutboundIPRanges":
        f"sends the pods' connections to those addresses around the sidecar, {OUTBOUND}",
    "traffic.sidecar.istio.io/includeOutboundIPRanges":
        f"captures only connections to those addresses: the others leave {OUTBOUND}",
    "traffic.sidecar.istio.io/excludeInterfaces":
        f"lets traffic on those interfaces skip the sidecar, {AROUND}",
    "traffic.sidecar.istio.io/kubevirtInterfaces":
        "redirects traffic of those interfaces differently from the pod's own",
    "sidecar.istio.io/interceptionMode":
        "changes how iptables hands the pods' traffic to the sidecar (NONE: not at all), so "
        "STRICT mTLS and the AuthorizationPolicy may no longer apply to it",
    INJECT: "keeps Istio from injecting the sidecar: the pods run outside the mesh, without "
            "mTLS or the AuthorizationPolicy",
    DATAPLANE: "takes the pods out of ambient mode: ztunnel no longer gives them mTLS "
               "or enforces the AuthorizationPolicy",
    "ambient.istio.io/bypass-inbound-capture":
        "makes ztunnel leave the pods' inbound traffic alone: it reaches Ray in plaintext, "
        "past mTLS and the AuthorizationPolicy",
    "ambient.istio.io/redirection":
        "is istio-cni's own record of redirecting the pods to ztunnel: set by hand it turns "
        "the redirection off or hides that it is missing",
    "istio.io/rev": "picks another Istio control plane to inject and configure the pods, "
                    "with its own defaults (a revision that is not installed: no sidecar)",
    "sidecar.istio.io/bootstrapOverride": "replaces the sidecar's Envoy bootstrap "
                                          "configuration",
    "sidecar.istio.io/enableCoreDump": "adds a privileged init container that changes the "
                                       "node's core dump settings",
    "sidecar.istio.io/userVolume": "mounts volumes into the sidecar, next to its certificates",
    "sidecar.istio.io/userVolumeMount": "mounts volumes into the sidecar, next to its "
                                        "certificates",
    "sidecar.istio.io/proxyImage": "runs another proxy image than the control plane's",
    "status.sidecar.istio.io/port": "moves the proxy's status port, which skips capture",
}
GENERIC = ("changes how Istio captures or proxies the pods' traffic, where the mesh's STRICT "
           "mTLS and AuthorizationPolicy assume Istio's defaults")


def is_istio_key(key: str) -> bool:
    """The key's prefix (before ``/``) is ``istio.io`` or a subdomain of it."""
    prefix, slash, _ = key.partition("/")
    return bool(slash) and (prefix == "istio.io" or prefix.endswith(".istio.io"))


def proxy_config_extra(value: str) -> list[str] | None:
    """The ProxyConfig fields an annotation value sets beyond ``holdApplicationUntilProxyStarts:
    true`` (None when it is not a YAML/JSON mapping)."""
    try:
        parsed: Any = yaml.load(value, Loader=LOADER)
    except yaml.YAMLError:
        return None
    if parsed is None:
        return []
    if not isinstance(parsed, dict):
        return None
    return [f"{yaml_text(k)}: {yaml_text(v)}" for k, v in parsed.items()
            if not (k == HOLD and v is True)]


def _allowed(kind: str, key: str, value: str, pod: RayPod, ambient_pod: bool) -> bool:
    """Keys the chart sets, tuning, and what Istio itself writes on running Pods."""
    if (kind == "annotations" and key in TUNING) or (kind == "labels" and key in NAMING):
        return True
    if key == INJECT and (value.lower() == "true" or (ambient_pod and value.lower() == "false")):
        return True
    if kind == "labels" and key == DATAPLANE and value == "ambient":
        return True
    if kind == "annotations" and key == PROXY_CONFIG and proxy_config_extra(value) == []:
        return True
    if pod.live:
        return _written_by_istio(key, value)
    return False


def _written_by_istio(key: str, value: str) -> bool:
    if key == EXCLUDE_INBOUND:
        return {p.strip() for p in value.split(",") if p.strip()} <= ISTIO_PORTS
    if key not in WRITTEN_BY_ISTIO:
        return False
    values = WRITTEN_BY_ISTIO[key]
    return values is None or value in values


def _effect(key: str, value: str) -> str:
    if key == PROXY_CONFIG:
        extra = proxy_config_extra(value)
        sets = f"sets {', '.join(extra)}" if extra else "is not a YAML mapping"
        return (f"overrides the proxy's config for these pods beyond {HOLD}: it {sets} (the "
                "proxy config can change interception, the ports the proxy skips and its "
                "identity)")
    return EFFECTS.get(key, GENERIC)


def check(ctx: Context) -> None:
    """Every Istio label and annotation of every Ray pod template and running Ray Pod."""
    for pod in ray_pods(ctx):
        labels, annotations = pod.labels, pod.annotations
        off = pod.out_of_mesh
        if off is not None:
            kind, key = off.split(".", 1)
            _report_out_of_mesh(ctx, pod, kind, key, (labels if kind == "labels"
                                                      else annotations)[key])
            continue
        ambient_pod = labels.get(DATAPLANE) == "ambient"
        # the ambient family reports the sidecar keys of ambient templates
        reported = set(sidecar_asks(labels, annotations)) if (
            ambient_pod and not pod.live) else set()
        for kind, meta in (("labels", labels), ("annotations", annotations)):
            for key, value in meta.items():
                if (not is_istio_key(key) or f"{kind}.{key}" in reported
                        or _allowed(kind, key, value, pod, ambient_pod)):
                    continue
                _report(ctx, pod, kind, key, value)


def _report_out_of_mesh(ctx: Context, pod: RayPod, kind: str, key: str, value: str) -> None:
    """The one finding of a Ray pod template (or Pod) that keeps the sidecar out."""
    severity, note = acknowledge.severity(ctx, pod.manifest, acknowledge.MESH_CAPTURE)
    where = ("the RayCluster's pod template, then recreate the Pods" if pod.live
             else "the pod template")
    ctx.add(MESH_CAPTURE_OVERRIDE, pod.manifest, f"{pod.path}metadata.{kind}.{key}", value,
            f"{pod.who} is out of the mesh: {kind[:-1]} {key}: {quoted(value)} keeps Istio "
            "from injecting the sidecar, so STRICT mTLS, the AuthorizationPolicy and the "
            "Sidecar do not apply to its pods: anyone who reaches them reaches Ray in "
            "plaintext (mesh capture off is a protection switched off; the audit skips the "
            f"sidecar checks that cannot apply to them){note}",
            f'set {key}: "true" in {where} (or drop it where the namespace injects); if '
            f"running outside the mesh is intended, acknowledge it with "
            f"{acknowledge.ANNOTATION}: {acknowledge.MESH_CAPTURE} on the RayCluster",
            severity=severity)


def _report(ctx: Context, pod: RayPod, kind: str, key: str, value: str) -> None:
    severity, note = acknowledge.severity(ctx, pod.manifest, acknowledge.MESH_CAPTURE)
    where = ("the RayCluster's pod template, then recreate the Pods" if pod.live
             else "the pod template")
    ctx.add(MESH_CAPTURE_OVERRIDE, pod.manifest, f"{pod.path}metadata.{kind}.{key}", value,
            f"{pod.who}: {kind[:-1]} {key}: {quoted(value)} {_effect(key, value)}{note}",
            f"remove {key} from {where}; if it is intended, acknowledge it with "
            f"{acknowledge.ANNOTATION}: {acknowledge.MESH_CAPTURE} on the RayCluster (the "
            "chart writes it when the values acknowledge the risk)", severity=severity)
