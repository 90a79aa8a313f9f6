"""Read a running cluster's objects for ``meshray audit --cluster``.

Through the official Kubernetes Python client (the ``meshray[cluster]`` extra), with the usual
kubeconfig resolution (``--kubeconfig``, ``$KUBECONFIG``, ``~/.kube/config``, in-cluster). It
reads what the audit judges, as plain objects (the same shape as manifests in files): the
namespace's Services, RayClusters, Ray Pods (with their real container commands and IPs),
Ingresses, Istio Sidecars and policies, NetworkPolicies, plus the PeerAuthentications of
Istio's root namespace. Kinds whose API the cluster does not serve (no Istio CRDs, say) are
skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import MeshrayError
from .manifests import Manifest


class ClusterReadError(MeshrayError):
    """The cluster could not be reached or read."""


@dataclass(frozen=True)
class Kind:
    api_version: str  # "v1" or "group/version"
    kind: str
    plural: str
    label_selector: str = ""


KINDS = (
    Kind("v1", "Service", "services"),
    Kind("v1", "Pod", "pods", "ray.io/cluster"),
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
)
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
        got = res.get(namespace=namespace, label_selector=kind.label_selector or None,
                      _request_timeout=30)
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
    out: list[Manifest] = []
    for kind, where in [(k, ns) for k in KINDS] + [
            (k, root_namespace) for k in ROOT_KINDS if root_namespace != ns]:
        for obj in _list(dyn, kind, where):
            name = obj.get("metadata", {}).get("name", "?")
            out.append(Manifest(obj, f"cluster:{kind.kind}/{where}/{name}"))
    return out, ns


def objects_summary(objs: Sequence[Manifest]) -> str:
    counts: dict[str, int] = {}
    for m in objs:
        counts[m.kind] = counts.get(m.kind, 0) + 1
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
