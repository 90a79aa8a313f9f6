"""The Ray pods the pod-level families judge: each RayCluster group's pod template, and each
running Ray Pod (``audit --cluster``), as one shape with where to report and what to call it.

A running Pod also holds what admission added after the template: Istio's injector records
the containers it injected in the annotation ``sidecar.istio.io/status`` (istio-proxy, and
istio-init or istio-validation, run as uid 1337 or root by design), so the families judge
only the containers the Pod's owner wrote.

Ground of the audit: it also holds the Istio keys on pods that several families read (sidecar
injection, ambient enrolment, waypoints) and what in a pod asks for a sidecar.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..manifests import Manifest
from .context import Context

INJECTION_STATUS = "sidecar.istio.io/status"  # the injector's record on an injected Pod
INJECT = "sidecar.istio.io/inject"  # the pod's own say on sidecar injection
DATAPLANE = "istio.io/dataplane-mode"  # ambient enrolment (istio-cni, ztunnel)
USE_WAYPOINT = "istio.io/use-waypoint"  # the waypoint (a Gateway's name) the traffic takes
# the values of INJECT Istio's injector reads as "inject" (anything else but "": do not)
INJECT_YES = frozenset({"y", "yes", "true", "on"})


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def str_list(value: Any) -> list[str]:
    """A list's items as text; anything but a list is empty."""
    return [str(v) for v in as_list(value)]


def strings(value: Any) -> dict[str, str]:
    """A labels or annotations mapping, keys and values as strings."""
    return {str(k): "" if v is None else str(v) for k, v in as_dict(value).items()}


@dataclass
class RayPod:
    manifest: Manifest  # what findings are reported on: the RayCluster, or the Pod
    who: str  # "head group", "worker group cpu", "Pod demo-head-x (head of RayCluster demo)"
    path: str  # key prefix of the pod template in ``manifest``: "spec.headGroupSpec.template."
    template: dict[str, Any]  # {metadata, spec}
    live: bool  # a running Pod, not a template
    # containers KubeRay adds from elsewhere in the RayCluster: (name, key, securityContext)
    extra_containers: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    @property
    def labels(self) -> dict[str, str]:
        return strings(as_dict(self.template.get("metadata")).get("labels"))

    @property
    def annotations(self) -> dict[str, str]:
        return strings(as_dict(self.template.get("metadata")).get("annotations"))

    @property
    def spec(self) -> dict[str, Any]:
        return as_dict(self.template.get("spec"))

    @property
    def out_of_mesh(self) -> str | None:
        """The key that keeps the sidecar out of these pods (:func:`injection_off`)."""
        return injection_off(self.template)

    def injected(self) -> set[str]:
        """Names of the containers Istio's injector added to a running Pod."""
        if not self.live:
            return set()
        try:
            status = json.loads(self.annotations.get(INJECTION_STATUS, "") or "{}")
        except ValueError:
            return set()
        status = as_dict(status)
        return {str(n) for part in ("containers", "initContainers")
                for n in as_list(status.get(part))}


def injection_off(template: Any) -> str | None:
    """``labels.sidecar.istio.io/inject`` or ``annotations.sidecar.istio.io/inject`` when it
    keeps Istio's injector from giving a sidecar pod template one, else None.

    The injector reads the label, else the (deprecated) annotation; "y", "yes", "true" and
    "on" (any case) inject, an empty value leaves it to the namespace, anything else does
    not inject (Istio's inject.go). Ambient pods (``istio.io/dataplane-mode: ambient``) want
    no sidecar: on them the key is no exit from the mesh."""
    meta = as_dict(as_dict(template).get("metadata"))
    labels, annotations = strings(meta.get("labels")), strings(meta.get("annotations"))
    if labels.get(DATAPLANE) == "ambient":
        return None
    part, value = (("labels", labels[INJECT]) if INJECT in labels
                   else ("annotations", annotations.get(INJECT, "")))
    if value.strip() and value.strip().lower() not in INJECT_YES:
        return f"{part}.{INJECT}"
    return None


def sidecar_asks(labels: dict[str, str], annotations: dict[str, str]) -> list[str]:
    """What in a pod's labels and annotations asks for an istio-proxy sidecar, as
    ``labels.<key>`` / ``annotations.<key>``."""
    asks = [f"labels.{k}" for k, v in labels.items() if k == INJECT and v.lower() == "true"]
    asks += [f"annotations.{k}" for k in annotations
             if k.startswith(("sidecar.istio.io/", "proxy.istio.io/"))]
    return asks


def ray_pods(ctx: Context) -> Iterator[RayPod]:
    """Every group template of every RayCluster, then every running Ray Pod."""
    for c, m in ctx.clusters:
        for g in c.groups:
            who = "head group" if g.is_head else f"worker group {g.name}"
            pod = RayPod(m, who, f"{g.path}.template.", g.template, live=False)
            autoscaler = c.spec.get("autoscalerOptions")
            security = as_dict(as_dict(autoscaler).get("securityContext"))
            if g.is_head and security:
                # KubeRay's autoscaler container on the head takes this securityContext
                pod.extra_containers.append(
                    ("autoscaler", f"{c.spec_key}.autoscalerOptions.securityContext", security))
            yield pod
    for p in ctx.pods:
        labels = strings(as_dict(p.obj.get("metadata")).get("labels"))
        role = labels.get("ray.io/node-type") or "node"
        name = labels.get("ray.io/cluster", "")
        # a RayJob's live RayCluster: name the RayJob
        job = next((c.job for c, _ in ctx.clusters if c.job and c.name_known and c.name == name
                    and c.namespace == p.namespace(ctx.namespace)), "")
        owner = f"RayJob/{job} (RayCluster {name})" if job else f"RayCluster {name}"
        who = f"Pod {p.name} ({role} of {owner})"
        yield RayPod(p, who, "", p.obj, live=True)
