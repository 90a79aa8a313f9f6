"""The kinds of object the audit reads: how each is recognised and the ``Context`` list it
is sorted into, and what several families know about the objects that run pods.

Ground of the audit, like ``context``, ``findings`` and ``raypods``: every family imports
what it shares with another from a ground module, never from that family. Each family says
which of these kinds it reads (its ``READS``, next to its ``CHECKS``); the registry collects
them and the engine sorts the input by them. No object is of two kinds, so the order of
``ALL`` decides nothing; it is the order the engine tries them in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any

from ..manifests import Manifest
from ..raymodel import is_raycluster, is_rayjob
from ..services import is_service
from .context import Context
from .raypods import as_dict, as_list, strings

GATEWAY_GROUP = "gateway.networking.k8s.io"  # the Gateway API's group
ROUTE_KINDS = ("HTTPRoute", "GRPCRoute", "TLSRoute")  # the routes that can reach Ray

DEFAULT_SERVICE_ACCOUNT = "default"  # what a pod spec that names none runs as
# kind -> (API group, paths from the object to each pod spec it runs)
WORKLOADS: dict[str, tuple[str, tuple[tuple[str, ...], ...]]] = {
    "Pod": ("", ((),)),
    "Deployment": ("apps", (("template",),)),
    "StatefulSet": ("apps", (("template",),)),
    "DaemonSet": ("apps", (("template",),)),
    "ReplicaSet": ("apps", (("template",),)),
    "Job": ("batch", (("template",),)),
    "CronJob": ("batch", (("jobTemplate", "spec", "template"),)),
    "RayJob": ("ray.io", ()),  # its submitter: pod_specs
    "RayService": ("ray.io", ()),
}
# where a RayJob and a RayService hold the RayCluster spec they create
EMBEDDED_CLUSTER = {"RayJob": "rayClusterSpec", "RayService": "rayClusterConfig"}


def is_namespace(m: Manifest) -> bool:
    return m.kind == "Namespace" and m.api_group == ""


def is_peer_authentication(m: Manifest) -> bool:
    return m.kind == "PeerAuthentication" and m.api_group == "security.istio.io"


def is_ingress(m: Manifest) -> bool:
    return m.kind == "Ingress" and m.api_group in {"networking.k8s.io", "extensions"}


def is_gateway_api(m: Manifest) -> bool:
    """Routes and ReferenceGrants of the Gateway API."""
    return m.api_group == GATEWAY_GROUP and m.kind in (*ROUTE_KINDS, "ReferenceGrant")


def is_gateway(m: Manifest) -> bool:
    """A Gateway API Gateway (a waypoint, when its class is istio-waypoint)."""
    return m.api_group == GATEWAY_GROUP and m.kind == "Gateway"


def is_ray_pod(m: Manifest) -> bool:
    """A running Pod of a RayCluster (``audit --cluster``): it carries ``ray.io/cluster``."""
    labels = strings(as_dict(m.obj.get("metadata")).get("labels"))
    return m.kind == "Pod" and m.api_group == "" and "ray.io/cluster" in labels


def is_workload(m: Manifest) -> bool:
    """An object that runs pods, other than a RayCluster (Pods, Deployments, Jobs, RayJobs,
    RayServices...); the audit sorts Ray Pods and RayJobs as kinds of their own."""
    known = WORKLOADS.get(m.kind)
    return known is not None and m.api_group == known[0]


def is_sidecar(m: Manifest) -> bool:
    return m.kind == "Sidecar" and m.api_group == "networking.istio.io"


def is_authz(m: Manifest) -> bool:
    return m.kind == "AuthorizationPolicy" and m.api_group == "security.istio.io"


def is_netpol(m: Manifest) -> bool:
    return m.kind == "NetworkPolicy" and m.api_group == "networking.k8s.io"


def _other_workload(m: Manifest) -> bool:
    # RayJobs and Ray Pods are workloads too, sorted as kinds of their own
    return is_workload(m) and not is_rayjob(m) and not is_ray_pod(m)


@dataclass(frozen=True)
class Kind:
    """One kind of object the audit reads."""

    bucket: str  # the ``Context`` list its objects go into
    test: Callable[[Manifest], bool]  # whether an object is of this kind


RAYCLUSTER = Kind("clusters", is_raycluster)
RAYJOB = Kind("rayjobs", is_rayjob)
SERVICE = Kind("services", is_service)
NAMESPACE = Kind("namespaces", is_namespace)
PEER_AUTHENTICATION = Kind("peerauths", is_peer_authentication)
INGRESS = Kind("ingresses", is_ingress)
GATEWAY_API_ROUTE = Kind("gateway_api", is_gateway_api)  # routes and ReferenceGrants
GATEWAY = Kind("gateways", is_gateway)
RAY_POD = Kind("pods", is_ray_pod)
WORKLOAD = Kind("workloads", _other_workload)
SIDECAR = Kind("sidecars", is_sidecar)
AUTHORIZATION_POLICY = Kind("authz", is_authz)
NETWORK_POLICY = Kind("netpols", is_netpol)
ALL = (RAYCLUSTER, RAYJOB, SERVICE, NAMESPACE, PEER_AUTHENTICATION, INGRESS, GATEWAY_API_ROUTE,
       GATEWAY, RAY_POD, WORKLOAD, SIDECAR, AUTHORIZATION_POLICY, NETWORK_POLICY)
assert {k.bucket for k in ALL} <= {f.name for f in fields(Context)}, "a kind without a list"
# what declares a Ray cluster: a RayCluster, or a RayJob's rayClusterSpec (audited like one)
CLUSTERS = (RAYCLUSTER, RAYJOB)


def service_account(pod_spec: Any) -> str:
    """The ServiceAccount a pod spec runs as (``serviceAccount`` is the deprecated alias)."""
    spec = as_dict(pod_spec)
    return str(spec.get("serviceAccountName") or spec.get("serviceAccount")
               or DEFAULT_SERVICE_ACCOUNT)


def _cluster_specs(spec: dict[str, Any]) -> Iterator[Any]:
    """The pod specs of a RayCluster spec: the head's, then each worker group's."""
    yield as_dict(as_dict(spec.get("headGroupSpec")).get("template")).get("spec")
    for w in as_list(spec.get("workerGroupSpecs")):
        yield as_dict(as_dict(w).get("template")).get("spec")


def pod_specs(m: Manifest) -> Iterator[Any]:
    """Every pod spec an object runs."""
    spec = as_dict(m.obj.get("spec"))
    if m.kind == "RayCluster":
        yield from _cluster_specs(spec)
        return
    if m.kind == "Pod":
        yield spec
        return
    for path in WORKLOADS.get(m.kind, ("", ()))[1]:
        node: Any = spec
        for step in path:
            node = as_dict(node).get(step)
        yield as_dict(node).get("spec")
    if m.kind == "RayJob" and str(spec.get("submissionMode") or "K8sJobMode") == "K8sJobMode":
        # KubeRay's submitter Job: its template, else one that names no ServiceAccount
        # (common/job.go GetSubmitterTemplate, v1.7.0)
        yield as_dict(spec.get("submitterPodTemplate")).get("spec")
    embedded = spec.get(EMBEDDED_CLUSTER.get(m.kind, ""))
    if isinstance(embedded, dict):
        yield from _cluster_specs(embedded)
