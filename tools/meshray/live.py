"""Read a running cluster's objects for ``meshray audit --cluster``.

Through the official Kubernetes Python client (the ``meshray[cluster]`` extra), with the usual
kubeconfig resolution (``--kubeconfig``, ``$KUBECONFIG``, ``~/.kube/config``, in-cluster). It
reads what the audit judges, as plain objects (the same shape as manifests in files): the
namespace's Services, RayClusters, Pods (the Ray ones with their real container commands and
IPs), Ingresses, Istio Sidecars and policies, NetworkPolicies, Gateway API objects, plus the
PeerAuthentications of Istio's root namespace; and, for the ``identity`` family, what else runs
pods there: Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs, RayJobs and
RayServices. Kinds whose API the cluster does not serve (no Istio CRDs, no RayJob CRD, say) are
skipped; a list the cluster refuses (RBAC) stops the read with an error, since an audit that
silently missed a kind would report a clean namespace it never saw.

A workload that another one of the read controls (``ownerReferences`` with ``controller:
true``) is the same workload: a Deployment's ReplicaSets and their Pods, a CronJob's Jobs, a
Job's Pods. Only the controller is kept, so a finding names ``Deployment/app`` once, not also
its ReplicaSet and each Pod; a child that runs as a ServiceAccount its controller's pod specs
do not name (a mutating webhook) is kept. RayClusters and Ray Pods are always kept (the audit
judges them), and a RayService whose RayCluster was read gives way to it, so the identity
checks do not call a RayCluster's own RayService another workload running as its
ServiceAccount. RayJobs are always kept: the audit judges them (their submitter, the cluster
they run on) and audits the RayCluster a RayJob controls once, as the RayJob's; the
submitter Job a RayJob controls gives way to it like any controlled workload.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .audit import is_ray_pod, is_workload, pod_specs, service_account
from .errors import MeshrayError
from .manifests import Manifest
from .raymodel import is_raycluster


class ClusterReadError(MeshrayError):
    """The cluster could not be reached or read."""


@dataclass(frozen=True)
class Kind:
    api_version: str  # "v1" or "group/version"
    kind: str
    plural: str


KINDS = (
    Kind("v1", "Service", "services"),
    Kind("v1", "Pod", "pods"),  # all of them: Ray Pods for pod-*, the others for identity-*
    Kind("ray.io/v1", "RayCluster", "rayclusters"),
    Kind("networking.k8s.io/v1", "Ingress", "ingresses"),
    Kind("security.istio.io/v1", "PeerAuthentication", "peerauthentications"),
    Kind("networking.istio.io/v1", "Sidecar", "sidecars"),
    Kind("security.istio.io/v1", "AuthorizationPolicy", "authorizationpolicies"),
    Kind("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies"),
    Kind("gateway.networking.k8s.io/v1", "Gateway", "gateways"),
    Kind("gateway.networking.k8s.io/v1", "HTTPRoute", "httproutes"),
    Kind("gateway.networking.k8s.io/v1", "GRPCRoute", "grpcroutes"),
    Kind("gateway.networking.k8s.io/v1", "TLSRoute", "tlsroutes"),
    Kind("gateway.networking.k8s.io/v1", "ReferenceGrant", "referencegrants"),
    # what else runs pods, for the identity-* checks: the ServiceAccount each one runs as
    Kind("apps/v1", "Deployment", "deployments"),
    Kind("apps/v1", "StatefulSet", "statefulsets"),
    Kind("apps/v1", "DaemonSet", "daemonsets"),
    Kind("apps/v1", "ReplicaSet", "replicasets"),
    Kind("batch/v1", "Job", "jobs"),
    Kind("batch/v1", "CronJob", "cronjobs"),
    Kind("ray.io/v1", "RayJob", "rayjobs"),
    Kind("ray.io/v1", "RayService", "rayservices"),
)
# the KubeRay kinds that create RayClusters and stand aside for the ones read (a RayJob does
# not: the audit merges it with its RayCluster, audit/rayjob.py)
RAY_CREATORS = ("RayService",)
ROOT_KINDS = (Kind("security.istio.io/v1", "PeerAuthentication", "peerauthentications"),)


def _client(kubeconfig: str | None, context: str | None) -> tuple[Any, str]:
    try:
        from kubernetes import client, config
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ClusterReadError(
            "audit --cluster needs the Kubernetes client: pip install 'meshray[cluster]'") from e
    try:
        if kubeconfig is None and context is None:
            try:
                config.load_incluster_config()
                return client.ApiClient(), "default"
            except config.ConfigException:
                pass
        api = config.new_client_from_config(config_file=kubeconfig, context=context)
        _, active = config.list_kube_config_contexts(config_file=kubeconfig)
        if context:
            contexts, _ = config.list_kube_config_contexts(config_file=kubeconfig)
            active = next((c for c in contexts if c["name"] == context), active)
        ns = str((active or {}).get("context", {}).get("namespace") or "default")
        return api, ns
    except (config.ConfigException, OSError, TypeError) as e:
        raise ClusterReadError(f"cannot load kubeconfig: {e}") from e


def _list(dyn: Any, kind: Kind, namespace: str) -> list[dict[str, Any]]:
    from kubernetes.client.exceptions import ApiException
    from kubernetes.dynamic.exceptions import ResourceNotFoundError

    try:
        res = dyn.resources.get(api_version=kind.api_version, kind=kind.kind)
    except ResourceNotFoundError:
        return []  # the cluster does not serve this kind (e.g. no Istio CRDs)
    try:
        got = res.get(namespace=namespace, _request_timeout=30)
    except ApiException as e:
        raise ClusterReadError(
            f"listing {kind.plural} in {namespace}: {e.status} {e.reason}") from e
    items = got.to_dict().get("items") or []
    for item in items:  # list items carry no apiVersion/kind
        item["apiVersion"], item["kind"] = kind.api_version, kind.kind
    return list(items)


def read_cluster(namespace: str | None, kubeconfig: str | None = None,
                 context: str | None = None,
                 root_namespace: str = "istio-system") -> tuple[list[Manifest], str]:
    """The objects the audit reads, and the namespace they were read from."""
    api, default_ns = _client(kubeconfig, context)
    ns = namespace or default_ns
    from kubernetes.dynamic import DynamicClient

    try:
        dyn = DynamicClient(api)  # reads the server's API discovery
    except Exception as e:  # connection refused, TLS, auth: one clean line
        raise ClusterReadError(f"cannot reach the cluster: {e}") from e
    return read_objects(dyn, ns, root_namespace), ns


def read_objects(dyn: Any, namespace: str, root_namespace: str) -> list[Manifest]:
    """Every kind of ``KINDS`` in ``namespace`` through a dynamic client, the root
    namespace's ``ROOT_KINDS``, then each workload another one controls left out."""
    out: list[Manifest] = []
    for kind, where in [(k, namespace) for k in KINDS] + [
            (k, root_namespace) for k in ROOT_KINDS if root_namespace != namespace]:
        for obj in _list(dyn, kind, where):
            name = obj.get("metadata", {}).get("name", "?")
            out.append(Manifest(obj, f"cluster:{kind.kind}/{where}/{name}"))
    return controllers_only(out)


def _uid(m: Manifest) -> str:
    return str((m.obj.get("metadata") or {}).get("uid") or "")


def _controller(m: Manifest) -> str:
    """The uid of the object's controller (the ownerReference with controller: true), or ""."""
    refs = (m.obj.get("metadata") or {}).get("ownerReferences") or []
    return next((str(r.get("uid") or "") for r in refs
                 if isinstance(r, dict) and r.get("controller") is True), "")


def _is_ray_creator(m: Manifest | None) -> bool:
    return m is not None and m.kind in RAY_CREATORS and m.api_group == "ray.io"


def _accounts(m: Manifest) -> set[str]:
    return {service_account(s) for s in pod_specs(m)}


def controllers_only(objs: Sequence[Manifest]) -> list[Manifest]:
    """The objects without the workloads a read controller stands for (module docstring)."""
    by_uid = {u: m for m in objs if (u := _uid(m))}
    # a RayService with a RayCluster of its own in the read: that cluster stands for the spec
    # it embeds
    aside = {u for m in objs if is_raycluster(m) and (u := _controller(m))
             and _is_ray_creator(by_uid.get(u))}
    out: list[Manifest] = []
    for m in objs:
        if _uid(m) in aside:
            continue
        owner = by_uid.get(_controller(m))
        if (owner is not None and _uid(owner) not in aside and is_workload(m)
                and not is_ray_pod(m) and _accounts(m) <= _accounts(owner)):
            continue  # its controller runs the same pods, as the same ServiceAccounts
        out.append(m)
    return out


def objects_summary(objs: Sequence[Manifest]) -> str:
    counts: dict[str, int] = {}
    for m in objs:
        counts[m.kind] = counts.get(m.kind, 0) + 1
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
