"""Ingress routes to Ray: the backend exists, has the port, speaks its protocol, needs auth.

Backends resolve to Services in the input or to KubeRay's ``<cluster>-head-svc`` (built by
the operator from the head container's ports, so never in the input): ``backends``.

What counts as authentication in front of the dashboard (Jobs API) or the Ray Client:
an NGINX or ALB authentication annotation (auth-url, auth-type, auth-signin), a client
certificate NGINX requires (auth-tls-secret, unless auth-tls-verify-client is off or
optional), Ray token authentication on the cluster (KubeRay ``authOptions.mode: token``),
and, for Ray's gRPC ports, Ray-native TLS with a CA (``RAY_USE_TLS`` and
``RAY_TLS_CA_CERT`` in the Ray container): Ray's gRPC servers then require a client
certificate signed by that CA (ray/_private/tls_utils.py: ``require_client_auth=ca_cert is
not None``), from whoever opens the TLS session. With ssl-passthrough that is the user; when
NGINX opens it (backend-protocol GRPCS/HTTPS) it is NGINX, which has a certificate to show
only with proxy-ssl-secret, and then shows it for every user: no authentication. The chart's
Ray Client Ingress is the passthrough shape (ingress.client needs rayTls.enabled).
"""

from __future__ import annotations

from typing import Any

from ..manifests import Manifest
from ..raymodel import GRPC, HTTP, TLS, Component, Group, as_int
from .backends import ray_requires_client_cert, resolve_backend
from .context import Context
from .findings import ERROR, WARNING, Check
from .kinds import CLUSTERS, INGRESS, SERVICE

INGRESS_SERVICE_MISSING = Check(
    "ingress-service-missing", ERROR, "an Ingress backend names a Service that does not exist")
INGRESS_PORT_MISSING = Check(
    "ingress-port-missing", ERROR, "an Ingress backend port the Service does not have")
INGRESS_PROTOCOL_MISMATCH = Check(
    "ingress-protocol-mismatch", ERROR, "backend-protocol annotation does not fit the port")
INGRESS_EXPOSES_RAY = Check(
    "ingress-exposes-ray", WARNING, "Ray dashboard/Jobs API or client exposed without auth")

CHECKS = (INGRESS_SERVICE_MISSING, INGRESS_PORT_MISSING, INGRESS_PROTOCOL_MISMATCH,
          INGRESS_EXPOSES_RAY)
# Ingresses, and the Services and Ray clusters their backends resolve to
READS = (INGRESS, *CLUSTERS, SERVICE)

_AUTH_ANNOTATIONS = (
    "nginx.ingress.kubernetes.io/auth-url",
    "nginx.ingress.kubernetes.io/auth-type",
    "nginx.ingress.kubernetes.io/auth-signin",
    "alb.ingress.kubernetes.io/auth-type",
)
_NGINX_CLIENT_CERT = "nginx.ingress.kubernetes.io/auth-tls-secret"
_NGINX_VERIFY_CLIENT = "nginx.ingress.kubernetes.io/auth-tls-verify-client"
_NGINX_PROXY_CERT = "nginx.ingress.kubernetes.io/proxy-ssl-secret"
_NGINX_PROTOCOL = "nginx.ingress.kubernetes.io/backend-protocol"
_NGINX_PASSTHROUGH = "nginx.ingress.kubernetes.io/ssl-passthrough"
_ALB_PROTOCOL = "alb.ingress.kubernetes.io/backend-protocol-version"
_NGINX_FAMILY = {"GRPC": GRPC, "GRPCS": TLS, "HTTP": HTTP, "HTTPS": "https", "AUTO_HTTP": HTTP}
_ALB_FAMILY = {"GRPC": GRPC, "HTTP1": HTTP, "HTTP2": "http2"}


def _backends(ing: dict[str, Any]) -> list[tuple[str, str, int | None, str | None]]:
    """(key, service, port number, port name) of every service backend of an Ingress."""
    spec = ing.get("spec") if isinstance(ing.get("spec"), dict) else {}
    assert isinstance(spec, dict)
    out: list[tuple[str, str, int | None, str | None]] = []

    def add(key: str, backend: Any) -> None:
        if not isinstance(backend, dict):
            return
        svc = backend.get("service")
        if isinstance(svc, dict):  # networking.k8s.io/v1
            port = svc.get("port") if isinstance(svc.get("port"), dict) else {}
            assert isinstance(port, dict)
            number = as_int(port.get("number"))
            pname = port.get("name")
            out.append((f"{key}.service", str(svc.get("name") or ""), number,
                        str(pname) if pname is not None else None))
        elif "serviceName" in backend:  # extensions/v1beta1
            sp = backend.get("servicePort")
            number = as_int(sp)
            out.append((key, str(backend["serviceName"]), number,
                        None if number is not None else str(sp)))

    for k in ("defaultBackend", "backend"):
        add(f"spec.{k}", spec.get(k))
    rules = spec.get("rules")
    for r, rule in enumerate(rules if isinstance(rules, list) else []):
        http = rule.get("http") if isinstance(rule, dict) else None
        paths = http.get("paths") if isinstance(http, dict) else None
        for p, path in enumerate(paths if isinstance(paths, list) else []):
            if isinstance(path, dict):
                add(f"spec.rules[{r}].http.paths[{p}].backend", path.get("backend"))
    return out


def _annotations(m: Manifest) -> dict[str, str]:
    meta = m.obj.get("metadata")
    ann = meta.get("annotations") if isinstance(meta, dict) else None
    return {str(k): str(v) for k, v in ann.items()} if isinstance(ann, dict) else {}


def check(ctx: Context) -> None:
    for ing in ctx.ingresses:
        ns = ing.namespace(ctx.namespace)
        ann = _annotations(ing)
        for key, svc_name, number, pname in _backends(ing.obj):
            target = resolve_backend(ctx, ns, svc_name, number, pname)
            port_text = str(number) if number is not None else f"name {pname}"
            if target is None:
                ctx.add(INGRESS_SERVICE_MISSING, ing, f"{key}.name", svc_name,
                        f"no Service {svc_name} in namespace {ns} (input Services and KubeRay's "
                        "<cluster>-head-svc)", "point the backend at an existing Service")
                continue
            ports, component, group = target
            if component is None and ports is not None:
                ctx.add(INGRESS_PORT_MISSING, ing, f"{key}.port", number or pname,
                        f"Service/{svc_name} has no port {port_text} (it has: {ports})",
                        "use one of the Service's ports")
                continue
            if component is None or group is None:
                continue
            want = group.expected_protocol(component)
            _check_protocol(ctx, ing, ann, svc_name, port_text, component, want)
            token_auth = any(c.token_auth for c, _ in ctx.clusters if group in c.groups)
            if component.name in {"dashboard-port", "ray-client-server-port"} and not token_auth \
                    and not _authenticated(ann, group, want):
                ctx.add(INGRESS_EXPOSES_RAY, ing, f"{key}.port", number or pname,
                        f"exposes Ray's {component.name} without authentication: anyone who "
                        "reaches it can run code (CVE-2023-48022)",
                        "put authentication in front (auth-url annotation, a client "
                        "certificate: auth-tls-secret, or Ray token auth; for the Ray Client "
                        "Ray-native TLS with RAY_TLS_CA_CERT through ssl-passthrough) or use "
                        "kubectl port-forward")


def _authenticated(ann: dict[str, str], group: Group, want: str) -> bool:
    """Someone must prove who they are before the backend port answers (module docstring)."""
    if any(a in ann for a in _AUTH_ANNOTATIONS):
        return True
    verify = ann.get(_NGINX_VERIFY_CLIENT, "on").strip().lower()
    if ann.get(_NGINX_CLIENT_CERT) and verify not in {"off", "optional", "optional_no_ca"}:
        return True
    passthrough = ann.get(_NGINX_PASSTHROUGH, "").strip().lower() == "true"
    return ray_requires_client_cert(group, want) and (
        passthrough or _NGINX_PROXY_CERT not in ann)


def _check_protocol(ctx: Context, ing: Manifest, ann: dict[str, str], svc: str, port: str,
                    comp: Component, want: str) -> None:
    checks: list[tuple[str, str | None, set[str]]] = []
    passthrough = ann.get(_NGINX_PASSTHROUGH, "").lower() == "true"
    if _NGINX_PROTOCOL in ann and not passthrough:
        got = _NGINX_FAMILY.get(ann[_NGINX_PROTOCOL].upper())
        ok = {GRPC: {GRPC}, TLS: {TLS}, HTTP: {HTTP}}.get(want, {want})
        checks.append((_NGINX_PROTOCOL, got, ok))
    if _ALB_PROTOCOL in ann:
        got = _ALB_FAMILY.get(ann[_ALB_PROTOCOL].upper())
        ok = {GRPC: {GRPC}, TLS: {GRPC}, HTTP: {HTTP}}.get(want, {want})
        checks.append((_ALB_PROTOCOL, got, ok))
    for name, got, ok in checks:
        if got is None or got not in ok:
            expected = {GRPC: "GRPC", TLS: "GRPCS", HTTP: "HTTP"}.get(want, want)
            ctx.add(INGRESS_PROTOCOL_MISMATCH, ing, f"metadata.annotations.{name}", ann[name],
                    f"backend Service/{svc} port {port} is {comp.name} ({want.upper()})",
                    f"set {name}: {expected if name == _NGINX_PROTOCOL else _alb(want)}")


def _alb(want: str) -> str:
    return "GRPC" if want in {GRPC, TLS} else "HTTP1"
