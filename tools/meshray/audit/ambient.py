"""Istio ambient mode around Ray pods: enrolment and waypoints.

What these checks rely on was measured with the real istiod and istio-cni's own enrolment
rule (tests/mesh/test_ambient.py, docs/ambient.md):
- istio-cni does not enrol a pod that also gets a sidecar (it opts injected pods out), so a Ray
  pod template asking for both ends up with the sidecar, not ambient;
- `istio.io/use-waypoint: NAME` resolves to the Gateway NAME of class istio-waypoint in the
  object's namespace; the Gateway's `istio.io/waypoint-for` (default `service`) decides which
  traffic it takes: a pod's label counts only for `workload` or `all` (Ray reaches its peers by
  Pod IP), a Service's only for `service` or `all`.
"""

from __future__ import annotations

from typing import Any

from ..manifests import Manifest
from ..raymodel import Cluster
from .context import Context
from .findings import ERROR, WARNING, Check, quoted
from .kinds import CLUSTERS, GATEWAY, SERVICE
from .raypods import DATAPLANE, USE_WAYPOINT, sidecar_asks

AMBIENT_WITH_SIDECAR = Check(
    "ambient-with-sidecar", ERROR,
    "Ray pods labelled for ambient mode that also ask for an istio-proxy sidecar")
WAYPOINT_MISSING = Check(
    "waypoint-missing", WARNING, "istio.io/use-waypoint names a Gateway not in the input")
WAYPOINT_NOT_WAYPOINT = Check(
    "waypoint-wrong-class", ERROR,
    "istio.io/use-waypoint names a Gateway whose class is not istio-waypoint")
WAYPOINT_FOR_MISMATCH = Check(
    "waypoint-for-mismatch", ERROR,
    "istio.io/use-waypoint on pods (or a Service) whose waypoint does not take that traffic")

CHECKS = (AMBIENT_WITH_SIDECAR, WAYPOINT_MISSING, WAYPOINT_NOT_WAYPOINT, WAYPOINT_FOR_MISMATCH)
# Ray clusters and Services that name a waypoint, and the Gateways that may be it
READS = (*CLUSTERS, SERVICE, GATEWAY)

WAYPOINT_FOR = "istio.io/waypoint-for"
# which waypoint-for values take traffic addressed to a pod, and to a Service VIP
TAKES = {"workload": {"workload", "all"}, "service": {"service", "all"}}


def _meta(obj: Any, part: str) -> dict[str, str]:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    got = meta.get(part) if isinstance(meta, dict) else None
    return {str(k): str(v) for k, v in got.items()} if isinstance(got, dict) else {}


def _use_waypoint(ctx: Context, m: Manifest, ns: str, key: str, name: str, traffic: str) -> None:
    gw = next((g for g in ctx.gateways
               if g.name == name and g.namespace(ctx.namespace) == ns), None)
    if gw is None:
        ctx.add(WAYPOINT_MISSING, m, key, name,
                f"{USE_WAYPOINT} names Gateway {ns}/{name}, which is not in the input; without "
                "it istiod sends this traffic straight to the pods (no L7)",
                f"add a Gateway {name} of class istio-waypoint in {ns}, or audit it together")
        return
    spec = gw.obj.get("spec") if isinstance(gw.obj.get("spec"), dict) else {}
    cls = str((spec or {}).get("gatewayClassName") or "")
    if cls != "istio-waypoint":
        ctx.add(WAYPOINT_NOT_WAYPOINT, m, key, name,
                f"{USE_WAYPOINT} names Gateway {ns}/{name} of class {quoted(cls)}; istiod only "
                "makes a waypoint of class istio-waypoint",
                f"point {USE_WAYPOINT} at a Gateway of class istio-waypoint")
        return
    mode = _meta(gw.obj, "labels").get(WAYPOINT_FOR, "service")
    if mode not in TAKES[traffic]:
        what = ("traffic addressed to the pods (how Ray reaches its peers, by Pod FQDN)"
                if traffic == "workload" else "traffic addressed to the Service's VIP")
        ctx.add(WAYPOINT_FOR_MISMATCH, m, key, name,
                f"Gateway {ns}/{name} has {WAYPOINT_FOR}: {mode}, so istiod sends it no "
                f"{what}: this label does nothing",
                f"set {WAYPOINT_FOR}: all (or {traffic}) on Gateway {name}")


def check_cluster(ctx: Context, c: Cluster, m: Manifest) -> None:
    """Per group: ambient plus sidecar; the waypoint its pods and head Service name."""
    for g in c.groups:
        labels = _meta(g.template, "labels")
        annotations = _meta(g.template, "annotations")
        if labels.get(DATAPLANE) == "ambient":
            for ask in sidecar_asks(labels, annotations):
                ctx.add(AMBIENT_WITH_SIDECAR, m, f"{g.path}.template.metadata.{ask}",
                        labels.get(ask.split(".", 1)[1]) or annotations.get(ask.split(".", 1)[1]),
                        f"{g.name}'s pods are labelled {DATAPLANE}: ambient and also ask for "
                        "an istio-proxy sidecar; istio-cni does not enrol a pod that has one, "
                        "so they run with the sidecar, not in ambient mode",
                        "drop the sidecar label and annotations, or the ambient label")
        if USE_WAYPOINT in labels:
            _use_waypoint(ctx, m, c.namespace, f"{g.path}.template.metadata.labels."
                          f"{USE_WAYPOINT}", labels[USE_WAYPOINT], "workload")
    head_group = c.spec.get("headGroupSpec")
    head_svc = head_group.get("headService") if isinstance(head_group, dict) else None
    svc_labels = _meta(head_svc, "labels")
    if USE_WAYPOINT in svc_labels:
        _use_waypoint(ctx, m, c.namespace,
                      f"{c.spec_key}.headGroupSpec.headService.metadata.labels.{USE_WAYPOINT}",
                      svc_labels[USE_WAYPOINT], "service")


def check(ctx: Context) -> None:
    """Services in the input that name a waypoint."""
    for s in ctx.services:
        labels = _meta(s.manifest.obj, "labels")
        if USE_WAYPOINT in labels:
            _use_waypoint(ctx, s.manifest, s.manifest.namespace(ctx.namespace),
                          f"metadata.labels.{USE_WAYPOINT}", labels[USE_WAYPOINT], "service")
