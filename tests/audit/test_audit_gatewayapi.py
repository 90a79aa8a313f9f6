"""meshray/audit/gatewayapi.py: Gateway API routes (HTTPRoute, GRPCRoute, TLSRoute) to Ray's
Services. Each case adds one route to the clean base (tests/fixtures/audit/clean.yaml), which
has none: the base's RayCluster `demo` in `ray`, reached through KubeRay's `demo-head-svc`."""

from __future__ import annotations

from typing import Any

import pytest
from audit_support import (
    Case,
    Docs,
    Mutation,
    assert_clean,
    base,
    cluster,
    run,
)

GROUP = "gateway.networking.k8s.io"


def route(kind: str = "HTTPRoute", service: str = "demo-head-svc", port: int = 8265,
          ns: str = "ray", backend_ns: str | None = None) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": service, "port": port}
    if backend_ns:
        ref["namespace"] = backend_ns
    return {"apiVersion": f"{GROUP}/v1", "kind": kind,
            "metadata": {"name": f"r-{kind.lower()}-{port}", "namespace": ns},
            "spec": {"parentRefs": [{"name": "gw", "namespace": "edge"}],
                     "hostnames": ["ray.example.com"], "rules": [{"backendRefs": [ref]}]}}


def require_jwt(ports: list[int]) -> dict[str, Any]:
    """The DENY policy that, with a RequestAuthentication, refuses requests without a JWT."""
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "demo-require-jwt", "namespace": "ray"},
            "spec": {"selector": {"matchLabels": {"ray.io/cluster": "demo",
                                                  "ray.io/node-type": "head"}},
                     "action": "DENY",
                     "rules": [{"from": [{"source": {"notRequestPrincipals": ["*"]}}],
                                "to": [{"operation": {"ports": [str(p) for p in ports]}}]}]}}


def grant(kind: str, from_ns: str, service: str = "demo-head-svc") -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/v1", "kind": "ReferenceGrant",
            "metadata": {"name": "g", "namespace": "ray"},
            "spec": {"from": [{"group": GROUP, "kind": kind, "namespace": from_ns}],
                     "to": [{"group": "", "kind": "Service", "name": service}]}}


def add(*objs: dict[str, Any]) -> Mutation:
    def mutate(d: Docs) -> None:
        d.extend(objs)
    return mutate


CASES: list[Case] = [
    ("route-service-missing", "error", add(route(service="demo-svc"), require_jwt([8265]))),
    ("route-port-missing", "error", add(route(port=9999))),
    ("route-protocol-mismatch", "error", add(route("GRPCRoute", port=8265), require_jwt([8265]))),
    ("route-protocol-mismatch", "error", add(route("TLSRoute", port=10001))),  # no Ray TLS
    ("route-reference-not-granted", "warning", add(
        route(ns="edge", backend_ns="ray"), require_jwt([8265]))),
    ("route-exposes-ray", "warning", add(route())),
    ("route-exposes-ray", "warning", add(route("GRPCRoute", port=10001), require_jwt([8265]))),
]


CLEAN_VARIANTS: list[tuple[str, Mutation]] = [
    ("HTTPRoute behind a JWT", add(route(), require_jwt([8265, 10001]))),
    ("GRPCRoute behind a JWT", add(route("GRPCRoute", port=10001), require_jwt([8265, 10001]))),
    ("Ray token auth", lambda d: (add(route())(d),
                                  cluster(d)["spec"].update(authOptions={"mode": "token"}))),
    ("route in the Gateway's namespace with a ReferenceGrant", add(
        route(ns="edge", backend_ns="ray"), grant("HTTPRoute", "edge"), require_jwt([8265]))),
    ("route to an input Service", add(route(service="demo-headless-svc", port=8080))),
]


@pytest.mark.parametrize(("name", "mutate"), CLEAN_VARIANTS, ids=[n for n, _ in CLEAN_VARIANTS])
def test_clean_variants(name: str, mutate: Mutation) -> None:
    """No route finding. (Other families may speak: the base's head Service is KubeRay's, all
    `tcp`, so authz-http-on-tcp warns about a JWT policy on it; the chart's renders, with their
    Sidecars, audit clean: tests/render/test_render_gatewayapi.py.)"""
    docs = base()
    mutate(docs)
    assert [f.line() for f in run(docs) if f.check.startswith("route-")] == []


def test_a_route_to_token_auth_cluster_is_fully_clean() -> None:
    assert_clean(CLEAN_VARIANTS[2][1])
