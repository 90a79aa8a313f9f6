"""Kubernetes Gateway API routes to Ray: the backend exists, has the port, fits the route kind,
is reachable across namespaces, needs auth.

HTTPRoute, GRPCRoute and TLSRoute (``gateway.networking.k8s.io``) name their backends in
``spec.rules[].backendRefs[]``. Backends resolve as an Ingress's do (``backends``): to
Services in the input or KubeRay's ``<cluster>-head-svc``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..manifests import Manifest
from ..raymodel import GRPC, HTTP, TLS, Component, Group, as_int
from .backends import ray_requires_client_cert, resolve_backend
from .context import Context
from .findings import ERROR, WARNING, Check
from .kinds import (
    AUTHORIZATION_POLICY,
    CLUSTERS,
    GATEWAY_API_ROUTE,
    GATEWAY_GROUP,
    ROUTE_KINDS,
    SERVICE,
)
from .raypods import as_list

ROUTE_SERVICE_MISSING = Check(
    "route-service-missing", ERROR, "a Gateway API route's backend Service does not exist")
ROUTE_PORT_MISSING = Check(
    "route-port-missing", ERROR, "a Gateway API route's backend port the Service does not have")
ROUTE_PROTOCOL_MISMATCH = Check(
    "route-protocol-mismatch", ERROR, "the route kind does not fit what Ray speaks on the port")
ROUTE_REFERENCE_NOT_GRANTED = Check(
    "route-reference-not-granted", WARNING,
    "a route's backend in another namespace without a ReferenceGrant in the input")
ROUTE_EXPOSES_RAY = Check(
    "route-exposes-ray", WARNING, "Ray dashboard/Jobs API or client routed without auth")

CHECKS = (ROUTE_SERVICE_MISSING, ROUTE_PORT_MISSING, ROUTE_PROTOCOL_MISMATCH,
          ROUTE_REFERENCE_NOT_GRANTED, ROUTE_EXPOSES_RAY)
# routes and ReferenceGrants, what their backends resolve to, and the head's DENY policies
READS = (GATEWAY_API_ROUTE, *CLUSTERS, SERVICE, AUTHORIZATION_POLICY)

# What Ray must speak on the backend port for each route kind: an HTTPRoute sends HTTP, a
# GRPCRoute gRPC (HTTP/2), a TLSRoute passes TLS through (Ray-native TLS).
SPEAKS = {"HTTPRoute": HTTP, "GRPCRoute": GRPC, "TLSRoute": TLS}
RUNS_CODE = {"dashboard-port", "ray-client-server-port"}


@dataclass(frozen=True)
class BackendRef:
    key: str  # spec.rules[i].backendRefs[j]
    name: str
    namespace: str
    port: int | None


def backend_refs(route: Manifest, ns: str) -> list[BackendRef]:
    """The core-Service backends of a route (other kinds are not Ray's to judge)."""
    spec = route.obj.get("spec")
    rules = spec.get("rules") if isinstance(spec, dict) else None
    out: list[BackendRef] = []
    for r, rule in enumerate(rules if isinstance(rules, list) else []):
        refs = rule.get("backendRefs") if isinstance(rule, dict) else None
        for b, ref in enumerate(refs if isinstance(refs, list) else []):
            if not isinstance(ref, dict):
                continue
            if str(ref.get("group") or "") != "" or str(ref.get("kind") or "Service") != "Service":
                continue
            out.append(BackendRef(f"spec.rules[{r}].backendRefs[{b}]", str(ref.get("name") or ""),
                                  str(ref.get("namespace") or ns), as_int(ref.get("port"))))
    return out


def _granted(grants: list[Manifest], default_ns: str, kind: str, route_ns: str,
             ref: BackendRef) -> bool:
    """A ReferenceGrant in the backend's namespace lets `kind` routes of route_ns reach it."""
    for g in grants:
        if g.kind != "ReferenceGrant" or g.namespace(default_ns) != ref.namespace:
            continue
        spec = g.obj.get("spec") if isinstance(g.obj.get("spec"), dict) else {}
        assert isinstance(spec, dict)
        froms = spec.get("from") if isinstance(spec.get("from"), list) else []
        tos = spec.get("to") if isinstance(spec.get("to"), list) else []
        assert isinstance(froms, list) and isinstance(tos, list)
        from_ok = any(isinstance(f, dict) and f.get("group") == GATEWAY_GROUP
                      and f.get("kind") == kind and f.get("namespace") == route_ns
                      for f in froms)
        to_ok = any(isinstance(t, dict) and str(t.get("group") or "") == ""
                    and t.get("kind") == "Service" and t.get("name") in (None, "", ref.name)
                    for t in tos)
        if from_ok and to_ok:
            return True
    return False


def _jwt_guarded(ctx: Context, ns: str, head_labels: dict[str, str], port: int) -> bool:
    """A DENY AuthorizationPolicy on the head denies requests without a request principal
    (a validated JWT, Istio RequestAuthentication) on that port."""
    for p in ctx.authz:
        if p.kind != "AuthorizationPolicy" or p.namespace(ctx.namespace) != ns:
            continue
        spec = p.obj.get("spec") if isinstance(p.obj.get("spec"), dict) else {}
        assert isinstance(spec, dict)
        if str(spec.get("action") or "ALLOW") != "DENY":
            continue
        sel = spec.get("selector")
        labels = sel.get("matchLabels") if isinstance(sel, dict) else None
        if isinstance(labels, dict) and any(head_labels.get(str(k)) != str(v)
                                            for k, v in labels.items()):
            continue
        for rule in as_list(spec.get("rules")):
            if isinstance(rule, dict) and _denies_anonymous(rule, port):
                return True
    return False


def _denies_anonymous(rule: dict[str, Any], port: int) -> bool:
    sources = [f.get("source") for f in as_list(rule.get("from")) if isinstance(f, dict)]
    anonymous = any(isinstance(s, dict) and "*" in as_list(s.get("notRequestPrincipals"))
                    for s in sources)
    ops = [t.get("operation") for t in as_list(rule.get("to")) if isinstance(t, dict)]
    ports = {as_int(x) for o in ops if isinstance(o, dict) for x in as_list(o.get("ports"))}
    return anonymous and (not ops or port in ports)


def check(ctx: Context) -> None:
    grants = [m for m in ctx.gateway_api if m.kind == "ReferenceGrant"]
    for route in ctx.gateway_api:
        if route.kind not in ROUTE_KINDS:
            continue
        ns = route.namespace(ctx.namespace)
        for ref in backend_refs(route, ns):
            if ref.namespace != ns and not _granted(grants, ctx.namespace, route.kind, ns, ref):
                ctx.add(ROUTE_REFERENCE_NOT_GRANTED, route, f"{ref.key}.namespace", ref.namespace,
                        f"{route.kind} in {ns} names Service {ref.name} in {ref.namespace}, and no "
                        f"ReferenceGrant in {ref.namespace} in the input allows it: the gateway "
                        "refuses the reference (ResolvedRefs: RefNotPermitted)",
                        f"add a ReferenceGrant in {ref.namespace} from {route.kind} in {ns} to "
                        f"Service {ref.name}")
            target = resolve_backend(ctx, ref.namespace, ref.name, ref.port, None)
            if target is None:
                ctx.add(ROUTE_SERVICE_MISSING, route, f"{ref.key}.name", ref.name,
                        f"no Service {ref.name} in namespace {ref.namespace} (input Services and "
                        "KubeRay's <cluster>-head-svc)", "point the backendRef at an existing "
                        "Service")
                continue
            ports, component, group = target
            if component is None and ports is not None:
                ctx.add(ROUTE_PORT_MISSING, route, f"{ref.key}.port", ref.port,
                        f"Service/{ref.name} has no port {ref.port} (it has: {ports})",
                        "use one of the Service's ports")
                continue
            if component is None or group is None:
                continue
            _check_kind(ctx, route, ref, component, group)
            if component.name not in RUNS_CODE or (route.kind == "TLSRoute" and (
                    ray_requires_client_cert(group, group.expected_protocol(component)))):
                continue  # a TLSRoute to Ray-native TLS with a CA: Ray asks for client certs
            clusters = [c for c, _ in ctx.clusters if group in c.groups]
            token = any(c.token_auth for c in clusters)
            head = [group.pod_labels(c.name) for c in clusters]
            port = next((u.port for u in group.ports if u.component is component), None)
            if token or (port is not None and any(_jwt_guarded(ctx, ref.namespace, labels, port)
                                                  for labels in head)):
                continue
            ctx.add(ROUTE_EXPOSES_RAY, route, f"{ref.key}.port", ref.port,
                    f"routes to Ray's {component.name} without authentication: anyone who "
                    "reaches the gateway can run code (CVE-2023-48022)",
                    "require a JWT at the head (RequestAuthentication + a DENY policy for "
                    "requests without a principal), or Ray token auth")


def _check_kind(ctx: Context, route: Manifest, ref: BackendRef, component: Component,
                group: Group) -> None:
    want = group.expected_protocol(component)
    got = SPEAKS[route.kind]
    if want == got:
        return
    fit = {HTTP: "HTTPRoute", GRPC: "GRPCRoute", TLS: "TLSRoute"}.get(want, "another route kind")
    ctx.add(ROUTE_PROTOCOL_MISMATCH, route, "kind", route.kind,
            f"backend Service/{ref.name} port {ref.port} is Ray's {component.name}, which speaks "
            f"{want.upper()}, but a {route.kind} sends {got.upper()}",
            f"use a {fit}")
