"""meshray/audit/ambient.py: ambient enrolment and waypoints around the Ray pods."""

from __future__ import annotations

from typing import Any

from audit_support import (
    Case,
    Docs,
    Mutation,
    both,
    cluster,
    head,
    svc,
)

WP = "ray-waypoint"


def labels(group: dict[str, Any]) -> dict[str, str]:
    meta = group["template"].setdefault("metadata", {})
    out: dict[str, str] = meta.setdefault("labels", {})
    return out


def annotations(group: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = group["template"].setdefault("metadata", {}).setdefault(
        "annotations", {})
    return out


def ambient(d: Docs, waypoint: bool = False) -> None:
    """Both groups enrolled in ambient mode (and sent through the waypoint WP)."""
    both(lambda g: labels(g).update({"istio.io/dataplane-mode": "ambient"}))(d)
    if waypoint:
        both(lambda g: labels(g).update({"istio.io/use-waypoint": WP}))(d)


def gateway(d: Docs, cls: str = "istio-waypoint", mode: str | None = "all") -> None:
    """A Gateway named WP in the cluster's namespace."""
    meta: dict[str, Any] = {"name": WP, "namespace": cluster(d)["metadata"]["namespace"]}
    if mode:
        meta["labels"] = {"istio.io/waypoint-for": mode}
    d.append({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": meta,
              "spec": {"gatewayClassName": cls,
                       "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]}})


def head_service_waypoint(d: Docs) -> None:
    head(d).setdefault("headService", {}).setdefault("metadata", {})["labels"] = {
        "istio.io/use-waypoint": WP}


CASES: list[Case] = [
    # the chart's old sidecar label left on ambient pods: istio-cni skips injected pods
    ("ambient-with-sidecar", "error", lambda d: (
        ambient(d), labels(head(d)).update({"sidecar.istio.io/inject": "true"}))),
    ("ambient-with-sidecar", "error", lambda d: (
        ambient(d), annotations(head(d)).update({"sidecar.istio.io/nativeSidecar": "true"}))),
    ("waypoint-missing", "warning", lambda d: ambient(d, waypoint=True)),
    ("waypoint-wrong-class", "error", lambda d: (ambient(d, waypoint=True),
                                                 gateway(d, cls="istio"))),
    # no waypoint-for label: istiod's default is `service`, so pod-addressed Ray traffic
    # bypasses the waypoint (measured: tests/mesh/test_ambient.py, mode service)
    ("waypoint-for-mismatch", "error", lambda d: (ambient(d, waypoint=True),
                                                  gateway(d, mode=None))),
    ("waypoint-for-mismatch", "error", lambda d: (ambient(d), gateway(d, mode="workload"),
                                                  head_service_waypoint(d))),
    ("waypoint-for-mismatch", "error", lambda d: (
        ambient(d), gateway(d, mode="workload"),
        svc(d)["metadata"].setdefault("labels", {}).update({"istio.io/use-waypoint": WP}))),
]


CLEAN_VARIANTS: list[tuple[str, Mutation]] = [
    ("ambient, no waypoint", ambient),
    ("ambient, waypoint for all, pods and head Service", lambda d: (
        ambient(d, waypoint=True), gateway(d), head_service_waypoint(d))),
    ("waypoint for workload, pods only", lambda d: (ambient(d, waypoint=True),
                                                    gateway(d, mode="workload"))),
    ("waypoint for service, head Service only", lambda d: (ambient(d), gateway(d, mode="service"),
                                                           head_service_waypoint(d))),
    # a sidecar pod may keep its sidecar annotations
    ("sidecar pods", lambda d: annotations(head(d)).update(
        {"sidecar.istio.io/nativeSidecar": "true"})),
]
