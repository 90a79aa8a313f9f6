"""What an Ingress's or a Gateway API route's backend reaches: a Service of the input or
KubeRay's ``<cluster>-head-svc`` (built by the operator from the head container's ports, so
never in the input), and the Ray port and group behind it.

Ground of the audit: the ``ingress`` and ``gatewayapi`` families resolve backends alike.
"""

from __future__ import annotations

from ..raymodel import TLS, Component, Group, as_int
from .context import Context


def resolve_backend(ctx: Context, ns: str, name: str, number: int | None, pname: str | None,
                    ) -> tuple[str | None, Component | None, Group | None] | None:
    """None: no such Service. Else (its ports when the port is missing, component, group)."""
    for svc in ctx.services:
        if svc.namespace != ns or svc.name != name:
            continue
        target: int | None = None
        for _, p in svc.ports():
            if (number is not None and as_int(p.get("port")) == number) or (
                    pname is not None and str(p.get("name")) == pname):
                tp = p.get("targetPort")
                target = as_int(tp) if tp is not None else as_int(p.get("port"))
                break
        else:
            listed = ", ".join(f"{p.get('name')}:{p.get('port')}" for _, p in svc.ports())
            return listed or "none", None, None
        for c, _ in ctx.clusters:
            for g in c.groups:
                if c.namespace == ns and svc.selects(g.pod_labels(c.name)) and target:
                    use = g.by_port().get(target)
                    if use is not None:
                        return None, use.component, g
        return None, None, None
    for c, _ in ctx.clusters:
        if c.namespace != ns or c.head_service_name != name or c.head is None:
            continue
        head = c.head
        for port_name, port in c.head_service_ports():
            if port == number or (pname is not None and port_name == pname):
                use = head.by_port().get(port)
                return None, use.component if use else None, head
        listed = ", ".join(f"{n}:{p}" for n, p in c.head_service_ports())
        return listed, None, None
    return None


def ray_requires_client_cert(group: Group, want: str) -> bool:
    """Ray-native TLS with a CA on a gRPC port (``want`` is TLS): Ray's gRPC server requires a
    client certificate signed by that CA (ray/_private/tls_utils.py: ``require_client_auth=
    ca_cert is not None``), from whoever opens the TLS session."""
    return want == TLS and bool(group.env_value("RAY_TLS_CA_CERT"))
