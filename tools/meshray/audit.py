"""Audit any Kubernetes manifests for drift between RayClusters and the Istio objects around them.

Independent of the chart: it reads plain YAML objects (see ``manifests``) and models Ray and
KubeRay behaviour itself (see ``raymodel``), so it judges hand-written manifests, other charts
and this chart's renders alike. Every check has an id (``Finding.check``); ``CHECKS`` lists
them with their severity and what they catch.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .manifests import Manifest
from .raymodel import (
    DASHBOARD_GRPC_LAST_USED,
    FLAGS_REMOVED_IN_2_48,
    GRPC,
    HTTP,
    MUST_PIN,
    TLS,
    Cluster,
    Component,
    Group,
    as_int,
    cluster_from,
    compress,
)

ERROR = "error"
WARNING = "warning"
INFO = "info"
SEVERITIES = (ERROR, WARNING, INFO)
_RANK = {s: i for i, s in enumerate(SEVERITIES)}

LARGE_WORKER_RANGE = 1000  # ports; kuberay#1005: 10002-19999 OOM-killed every sidecar
RAY_2_48 = (2, 48, 0)

# check id -> (default severity, what it catches); the README's findings list comes from here
CHECKS: dict[str, tuple[str, str]] = {
    "no-headless-service": (ERROR, "no headless Service (clusterIP: None) selects the cluster"),
    "group-not-selected": (ERROR, "the headless Service's selector misses a group's pods"),
    "port-missing": (ERROR, "a pinned Ray port is not in the headless Service (metrics: warning)"),
    "worker-port-missing": (ERROR, "worker ports of the range are not declared in the Service"),
    "port-unused": (WARNING, "a Service port that no group of the cluster listens on"),
    "app-protocol-wrong": (ERROR, "appProtocol (or name prefix) differs from the port's protocol"),
    "app-protocol-missing": (ERROR, "a Ray port with neither appProtocol nor a protocol prefix"),
    "target-port-mismatch": (ERROR, "targetPort differs from port on the headless Service"),
    "port-conflict": (ERROR, "two listeners on one port, or one Service port with two protocols"),
    "port-not-pinned": (ERROR, "a per-node port left to Ray's random choice"),
    "worker-range-not-pinned": (ERROR, "worker range left at Ray's default 10002-19999"),
    "worker-range-large": (WARNING, "a worker range so large that sidecars may run out of memory"),
    "invalid-port": (ERROR, "a port flag or env value that is not a valid port"),
    "param-not-string": (ERROR, "a rayStartParams value that is not a string (CRD rejects it)"),
    "headless-label-missing": (WARNING,
                               "Service lacks ray.io/headless-worker-svc (error if multi-host)"),
    "publish-not-ready-missing": (ERROR, "Service lacks publishNotReadyAddresses: true"),
    "export-to-missing": (INFO, "Service lacks networking.istio.io/exportTo (mesh-wide config)"),
    "node-ip-missing": (ERROR, "node-ip-address not set: Ray registers the bare pod IP"),
    "node-ip-not-fqdn": (ERROR, "node-ip-address is not a Pod FQDN under the headless Service"),
    "node-ip-hostname-i": (ERROR, "node-ip-address built with `hostname -I`"),
    "node-ip-env-missing": (ERROR, "node-ip-address uses a variable not set from status.podIP"),
    "flag-removed": (ERROR, "a flag Ray >= 2.48 rejects (gcs-server-port, dashboard-grpc-port)"),
    "flag-unused": (WARNING, "a deprecated flag the cluster's Ray version ignores"),
    "ray-version-unknown": (INFO, "no spec.rayVersion: version-dependent checks skipped"),
    "peerauth-no-match": (ERROR, "a PeerAuthentication with ray.io/ selector that selects no pods"),
    "peerauth-port-unused": (ERROR, "portLevelMtls on a port the selected pods do not use"),
    "peerauth-port-no-selector": (ERROR, "portLevelMtls without a selector (Istio ignores it)"),
    "peerauth-root-selector": (WARNING, "selector policy in the root namespace (Istio ignores it)"),
    "peerauth-permissive": (WARNING, "PERMISSIVE or DISABLE mTLS applies to Ray pods"),
    "peerauth-none": (INFO, "no PeerAuthentication in the input applies to the cluster"),
    "ingress-service-missing": (ERROR, "an Ingress backend names a Service that does not exist"),
    "ingress-port-missing": (ERROR, "an Ingress backend port the Service does not have"),
    "ingress-protocol-mismatch": (ERROR, "backend-protocol annotation does not fit the port"),
    "ingress-exposes-ray": (WARNING, "Ray dashboard/Jobs API or client exposed without auth"),
    "duplicate-object": (INFO, "the same object twice in the input; the last one is audited"),
}

_ISTIO_PROTOCOLS = ("http2", "http", "https", "grpc-web", "grpc", "tcp", "tls", "mongo",
                    "mysql", "redis", "udp")
_AUTH_ANNOTATIONS = (
    "nginx.ingress.kubernetes.io/auth-url",
    "nginx.ingress.kubernetes.io/auth-type",
    "nginx.ingress.kubernetes.io/auth-signin",
    "alb.ingress.kubernetes.io/auth-type",
)
_NGINX_PROTOCOL = "nginx.ingress.kubernetes.io/backend-protocol"
_NGINX_PASSTHROUGH = "nginx.ingress.kubernetes.io/ssl-passthrough"
_ALB_PROTOCOL = "alb.ingress.kubernetes.io/backend-protocol-version"
_EXPORT_TO = "networking.istio.io/exportTo"
_WORKER = Component("worker-port", GRPC, None)
_HEADLESS_LABEL = "ray.io/headless-worker-svc"


@dataclass(frozen=True)
class Finding:
    severity: str
    check: str
    kind: str
    namespace: str
    name: str
    key: str
    value: Any
    message: str
    fix: str
    source: str = ""

    def line(self) -> str:
        got = "" if self.value is None else f" (got {_show(self.value)})"
        return (f"{self.severity}: {self.kind}/{self.name} [{self.namespace}] {self.key}: "
                f"{self.message}{got} [{self.check}] fix: {self.fix}")


def _show(value: Any, limit: int = 160) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class Service:
    manifest: Manifest
    namespace: str

    @property
    def obj(self) -> dict[str, Any]:
        return self.manifest.obj

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def spec(self) -> dict[str, Any]:
        spec = self.obj.get("spec")
        return spec if isinstance(spec, dict) else {}

    @property
    def headless(self) -> bool:
        return self.spec.get("clusterIP") == "None"

    @property
    def selector(self) -> dict[str, str]:
        sel = self.spec.get("selector")
        return {str(k): str(v) for k, v in sel.items()} if isinstance(sel, dict) else {}

    def meta(self, field_: str) -> dict[str, str]:
        meta = self.obj.get("metadata")
        val = meta.get(field_) if isinstance(meta, dict) else None
        return {str(k): str(v) for k, v in val.items()} if isinstance(val, dict) else {}

    def ports(self) -> list[tuple[int, dict[str, Any]]]:
        ports = self.spec.get("ports")
        if not isinstance(ports, list):
            return []
        return [(i, p) for i, p in enumerate(ports) if isinstance(p, dict)]

    def selects(self, labels: dict[str, str]) -> bool:
        sel = self.selector
        return bool(sel) and all(labels.get(k) == v for k, v in sel.items())


def declared_protocol(port: dict[str, Any]) -> str | None:
    """The protocol Istio uses for a Service port: appProtocol wins, else the name prefix."""
    app = port.get("appProtocol")
    if app:
        app = str(app).lower()
        return "http2" if app == "kubernetes.io/h2c" else app
    name = str(port.get("name") or "").lower()
    for proto in _ISTIO_PROTOCOLS:
        if name == proto or name.startswith(proto + "-"):
            return proto
    return None


@dataclass
class _Context:
    namespace: str
    root_namespace: str
    findings: list[Finding] = field(default_factory=list)
    clusters: list[tuple[Cluster, Manifest]] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)
    peerauths: list[Manifest] = field(default_factory=list)
    ingresses: list[Manifest] = field(default_factory=list)

    def add(self, check: str, m: Manifest, key: str, value: Any, message: str, fix: str,
            severity: str | None = None) -> None:
        self.findings.append(Finding(
            severity=severity or CHECKS[check][0], check=check, kind=m.kind,
            namespace=m.namespace(self.namespace), name=m.name, key=key, value=value,
            message=message, fix=fix, source=m.source))


def audit(manifests: Sequence[Manifest], namespace: str = "default",
          root_namespace: str = "istio-system") -> list[Finding]:
    """All findings for the objects, most severe first, then in input order."""
    ctx = _Context(namespace=namespace, root_namespace=root_namespace)
    for m in _dedupe(manifests, ctx):
        kind, group = m.kind, m.api_group
        ns = m.namespace(namespace)
        if kind == "RayCluster" and group == "ray.io":
            ctx.clusters.append((cluster_from(m.obj, ns), m))
        elif kind == "Service" and group == "":
            ctx.services.append(Service(m, ns))
        elif kind == "PeerAuthentication" and group == "security.istio.io":
            ctx.peerauths.append(m)
        elif kind == "Ingress" and group in {"networking.k8s.io", "extensions"}:
            ctx.ingresses.append(m)
    for cluster, m in ctx.clusters:
        _check_cluster(ctx, cluster, m)
    _check_peerauths(ctx)
    _check_ingresses(ctx)
    return sorted(_unique(ctx.findings), key=lambda f: _RANK[f.severity])


def _unique(findings: Iterable[Finding]) -> list[Finding]:
    seen: set[tuple[str, ...]] = set()
    out = []
    for f in findings:
        k = (f.check, f.kind, f.namespace, f.name, f.key, f.message)
        if k not in seen:
            seen.add(k)
            out.append(f)
    return out


def _dedupe(manifests: Sequence[Manifest], ctx: _Context) -> list[Manifest]:
    last: dict[tuple[str, str, str, str], Manifest] = {}
    for m in manifests:
        k = (m.api_group, m.kind, m.namespace(ctx.namespace), m.name)
        if k in last and m.name:
            ctx.add("duplicate-object", m, "metadata.name", m.name,
                    f"also defined at {last[k].source}; only the last definition is audited",
                    "keep one definition of each object")
        last[k] = m
    kept = set(map(id, last.values()))
    return [m for m in manifests if id(m) in kept]


# --------------------------------------------------------------------------- RayCluster


def _check_cluster(ctx: _Context, c: Cluster, m: Manifest) -> None:
    for g in c.groups:
        for key, problem, value in g.problems:
            ctx.add("invalid-port", m, key, value, f"{key.rsplit('.', 1)[-1]} {problem}",
                    "set a valid port number as a string")
        for k, v in g.params.items():
            if not isinstance(v, str):
                ctx.add("param-not-string", m, f"{g.path}.rayStartParams.{k}", v,
                        "rayStartParams values must be strings (map[string]string in the CRD)",
                        f"quote it: {k}: '{v}'")
    _check_versions(ctx, c, m)
    _check_pinning(ctx, c, m)
    _check_conflicts(ctx, c, m)
    svc = _headless_service(ctx, c, m)
    if svc is not None:
        _check_service(ctx, c, m, svc)
    _check_node_ip(ctx, c, m, svc)
    if not any(_pa_applies(ctx, pa, c) for pa in ctx.peerauths):
        ctx.add("peerauth-none", m, "metadata.name", None,
                "no PeerAuthentication in the input applies to this cluster; the namespace or "
                "mesh default decides its mTLS mode",
                "add a PeerAuthentication selecting ray.io/cluster with mtls.mode STRICT")


def _check_versions(ctx: _Context, c: Cluster, m: Manifest) -> None:
    v = c.version
    if v is None:
        ctx.add("ray-version-unknown", m, "spec.rayVersion", None,
                "Ray version unknown; removed-flag and dashboard-grpc-port checks skipped",
                "set spec.rayVersion")
        return
    shown = ".".join(map(str, v))
    for g in c.groups:
        for flag in FLAGS_REMOVED_IN_2_48:
            if flag not in g.params:
                continue
            key = f"{g.path}.rayStartParams.{flag}"
            if v >= RAY_2_48:
                ctx.add("flag-removed", m, key, g.params[flag],
                        f"Ray {shown} rejects --{flag} (removed in 2.48); ray start fails",
                        f"remove {flag}")
            elif flag == "gcs-server-port" or v[:2] > DASHBOARD_GRPC_LAST_USED:
                ctx.add("flag-unused", m, key, g.params[flag],
                        f"--{flag} is deprecated and unused in Ray {shown}; 2.48 removes it",
                        f"remove {flag}" + ("" if flag != "gcs-server-port" else " (use port)"))


def _check_pinning(ctx: _Context, c: Cluster, m: Manifest) -> None:
    for g in c.groups:
        pkey = f"{g.path}.rayStartParams"
        for flag in MUST_PIN:
            if flag not in g.params:
                ctx.add("port-not-pinned", m, f"{pkey}.{flag}", None,
                        f"{flag} is not set, so Ray picks a random port no Service declares",
                        f"pin it (e.g. {flag}: '<port>') and declare it in the headless Service")
        if (g.is_head and "dashboard-grpc-port" not in g.params and c.version is not None
                and c.version[:2] <= DASHBOARD_GRPC_LAST_USED):
            ctx.add("port-not-pinned", m, f"{pkey}.dashboard-grpc-port", None,
                    "Ray < 2.45 runs the dashboard gRPC server on a random head port",
                    "pin dashboard-grpc-port and declare it in the headless Service")
        if any(g.problems):
            continue
        if not g.worker_ports_pinned:
            ctx.add("worker-range-not-pinned", m, g.worker_ports_key,
                    f"{g.worker_ports[0]}-{g.worker_ports[-1]}" if g.worker_ports else None,
                    "worker port range not pinned: Ray's default 10002-19999 cannot be declared "
                    "in a Service",
                    "set max-worker-port (or worker-port-list) and declare every port")
        elif len(g.worker_ports) > LARGE_WORKER_RANGE:
            ctx.add("worker-range-large", m, g.worker_ports_key, len(g.worker_ports),
                    f"{len(g.worker_ports)} worker ports: every port is configured in every "
                    "selected sidecar (kuberay#1005 OOM)",
                    f"keep the range at or below {LARGE_WORKER_RANGE} ports")


def _check_conflicts(ctx: _Context, c: Cluster, m: Manifest) -> None:
    for g in c.groups:
        seen: dict[int, Component] = {}
        for use in g.ports:
            if use.component.optional:
                continue
            other = seen.get(use.port)
            if other is not None:
                ctx.add("port-conflict", m, use.key, use.port,
                        f"port {use.port} is used by both {other.name} and {use.name} "
                        f"in group {g.name}", "give each component its own port")
            seen[use.port] = use.component
            if g.worker_ports_pinned and use.port in g.worker_ports:
                ctx.add("port-conflict", m, use.key, use.port,
                        f"{use.name} {use.port} lies inside the worker port range of group "
                        f"{g.name}", "move the port or the worker range apart")


    protocols: dict[int, set[tuple[str, str, str]]] = {}
    for g in c.groups:
        for use in g.ports:
            if not use.component.optional:
                protocols.setdefault(use.port, set()).add(
                    (g.expected_protocol(use.component), use.name, g.name))
        if g.worker_ports_pinned:
            for port in g.worker_ports:
                protocols.setdefault(port, set()).add(
                    (g.expected_protocol(_WORKER), _WORKER.name, g.name))
    for port, users in sorted(protocols.items()):
        if len({u[0] for u in users}) > 1:
            detail = "; ".join(f"{n} in {gname} ({proto})" for proto, n, gname in sorted(users))
            ctx.add("port-conflict", m, "spec", port,
                    f"port {port} needs different protocols across groups: {detail}",
                    "use distinct port numbers per component across groups")


def _headless_service(ctx: _Context, c: Cluster, m: Manifest) -> Service | None:
    selecting = [s for s in ctx.services if s.namespace == c.namespace
                 and any(s.selects(g.pod_labels(c.name)) for g in c.groups)]
    headless = [s for s in selecting if s.headless]
    if not headless:
        others = ", ".join(f"Service/{s.name}" for s in selecting)
        extra = f"; {others} selects it but is not headless" if others else ""
        ctx.add("no-headless-service", m, "metadata.name", c.name,
                f"no headless Service in namespace {c.namespace} selects this cluster's pods"
                f"{extra}",
                f"add Service {c.name}-headless-svc with clusterIP: None and selector "
                f"ray.io/cluster: {c.name} declaring every Ray port")
        return None
    fqdn_svcs = {_fqdn_parts(str(g.params.get("node-ip-address", "")))[0] for g in c.groups}

    def rank(s: Service) -> tuple[int, int, int, str]:
        return (s.name not in fqdn_svcs, s.meta("labels").get(_HEADLESS_LABEL) != c.name,
                s.name != f"{c.name}-headless-svc", s.name)

    return sorted(headless, key=rank)[0]


def _check_service(ctx: _Context, c: Cluster, cm: Manifest, svc: Service) -> None:
    sm = svc.manifest
    for g in c.groups:
        if not svc.selects(g.pod_labels(c.name)):
            ctx.add("group-not-selected", sm, "spec.selector", svc.selector,
                    f"does not select the pods of group {g.name} of RayCluster/{c.name}",
                    f"select on ray.io/cluster: {c.name} only")
    if svc.spec.get("publishNotReadyAddresses") is not True:
        ctx.add("publish-not-ready-missing", sm, "spec.publishNotReadyAddresses",
                svc.spec.get("publishNotReadyAddresses"),
                "Pod FQDNs must resolve before the Ray pods are Ready (node-ip-address)",
                "set publishNotReadyAddresses: true")
    label = svc.meta("labels").get(_HEADLESS_LABEL)
    if label != c.name:
        multi = [g.name for g in c.groups if g.num_of_hosts > 1]
        ctx.add("headless-label-missing", sm, f"metadata.labels.{_HEADLESS_LABEL}", label,
                "without this label KubeRay creates its own worker headless Service for "
                "multi-host groups" + (f" (here: {', '.join(multi)})" if multi else ""),
                f"add label {_HEADLESS_LABEL}: {c.name}", severity=ERROR if multi else None)
    if _EXPORT_TO not in svc.meta("annotations"):
        ctx.add("export-to-missing", sm, f"metadata.annotations.{_EXPORT_TO}", None,
                "every sidecar in the mesh is programmed with these per-pod ports",
                f'annotate {_EXPORT_TO}: "." and add a Sidecar for the Ray pods')

    declared: dict[int, tuple[int, dict[str, Any]]] = {}
    for i, p in svc.ports():
        n = as_int(p.get("port"))
        if n is None:
            continue
        declared.setdefault(n, (i, p))
        target = p.get("targetPort")
        if target is not None and as_int(target) != n:
            ctx.add("target-port-mismatch", sm, f"spec.ports[{i}].targetPort", target,
                    f"port {n}: on a headless Service peers dial the pod on {n} directly, so "
                    "the listener and the declared port must be the same number",
                    f"set targetPort: {n} (or drop it)")

    _check_missing_ports(ctx, c, cm, svc, declared)
    _check_service_protocols(ctx, c, svc, declared)


def _check_missing_ports(ctx: _Context, c: Cluster, cm: Manifest, svc: Service,
                         declared: dict[int, tuple[int, dict[str, Any]]]) -> None:
    missing: dict[tuple[int, str], list[tuple[Group, str, bool]]] = {}
    for g in c.groups:
        for use in g.ports:
            comp = use.component
            if comp.head_service or comp.optional or use.port in declared:
                continue
            if comp.name == "dashboard-grpc-port" and (
                    c.version is not None and c.version[:2] > DASHBOARD_GRPC_LAST_USED):
                continue
            if comp.env is not None and not use.pinned:
                continue  # Ray's built-in metrics ports: only demanded when pinned on purpose
            missing.setdefault((use.port, comp.name), []).append(
                (g, use.key, comp.env is not None))
    for (port, name), users in missing.items():
        g, key, env_based = users[0]
        names = ", ".join(u[0].name for u in users)
        proto = g.expected_protocol(users[0][0].by_port()[port].component)
        ctx.add("port-missing", cm, key, port,
                f"{name} {port} (groups: {names}) is not declared in Service/{svc.name}",
                f"add {{name: {name}, port: {port}, appProtocol: {proto}}} to Service/{svc.name}",
                severity=WARNING if env_based else None)
    by_missing: dict[tuple[int, ...], list[Group]] = {}
    for g in c.groups:
        if g.worker_ports_pinned:
            gone = tuple(p for p in g.worker_ports if p not in declared)
            if gone:
                by_missing.setdefault(gone, []).append(g)
    for gone, groups in by_missing.items():
        g = groups[0]
        ctx.add("worker-port-missing", cm, g.worker_ports_key, compress(list(gone)),
                f"{len(gone)} worker port(s) of groups {', '.join(x.name for x in groups)} "
                f"not declared in Service/{svc.name}: an actor or driver drawing one is "
                "unreachable",
                f"declare every worker port (p<N>, appProtocol: {g.expected_protocol(_WORKER)})")


def _port_users(c: Cluster, port: int) -> list[tuple[Group, Component]]:
    users: list[tuple[Group, Component]] = []
    for g in c.groups:
        use = g.by_port().get(port)
        if use is not None:
            users.append((g, use.component))
        elif port in g.worker_ports and g.worker_ports_pinned:
            users.append((g, _WORKER))
    return users


def _check_service_protocols(ctx: _Context, c: Cluster, svc: Service,
                             declared: dict[int, tuple[int, dict[str, Any]]]) -> None:
    sm = svc.manifest
    container_ports = set().union(*(g.all_ports() for g in c.groups))
    for port, (i, p) in sorted(declared.items()):
        users = _port_users(c, port)
        if not users:
            if port not in container_ports:
                ctx.add("port-unused", sm, f"spec.ports[{i}]", port,
                        f"no group of RayCluster/{c.name} listens on {port}; it only costs "
                        "sidecar config", "remove the port, or pin the Ray flag it was meant for")
            continue
        expected = {(g.expected_protocol(comp), comp.name, g.name) for g, comp in users}
        protocols = {e[0] for e in expected}
        if len(protocols) > 1:
            continue  # reported on the RayCluster (port-conflict)
        want = protocols.pop()
        comp_name = next(iter(expected))[1]
        got = declared_protocol(p)
        key = f"spec.ports[{i}].appProtocol"
        if got is None:
            ctx.add("app-protocol-missing", sm, key, None,
                    f"port {port} ({comp_name}) is {want.upper()} but declares no protocol; "
                    "Istio falls back to sniffing and loses L7 routing", f"set appProtocol: {want}")
        elif got != want:
            ctx.add("app-protocol-wrong", sm, key, got,
                    f"port {port} ({comp_name}) is {want.upper()} but declared {got}",
                    f"set appProtocol: {want}")


# ------------------------------------------------------------------------ node-ip-address

_HOSTNAME_I = re.compile(r"hostname\s+(-[a-zA-Z]*I|--all-ip-addresses)")
_VAR = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")


def _fqdn_parts(value: str) -> tuple[str, str, str, str]:
    """(service, namespace, cluster domain, pod part) of ``<pod>.<svc>.<ns>.svc.<domain>``."""
    v = value.strip().rstrip(".")
    idx = v.rfind(".svc.")
    if idx < 0:
        return "", "", "", v
    domain = v[idx + 5:]
    head = v[:idx].rsplit(".", 2)
    if len(head) != 3:
        return "", "", domain, v[:idx]
    pod, svc, ns = head
    return svc, ns, domain, pod


def _check_node_ip(ctx: _Context, c: Cluster, m: Manifest, svc: Service | None) -> None:
    svc_name = svc.name if svc else f"{c.name}-headless-svc"
    for g in c.groups:
        key = f"{g.path}.rayStartParams.node-ip-address"
        raw = g.params.get("node-ip-address")
        want = f"${{POD_IP//[.:]/-}}.{svc_name}.{c.namespace}.svc.cluster.local"
        if raw is None:
            ctx.add("node-ip-missing", m, key, None,
                    f"group {g.name} registers its bare pod IP: Istio sees traffic to pod IPs "
                    "as passthrough, no L7 telemetry",
                    f"set node-ip-address: {want} with POD_IP from fieldRef status.podIP")
            continue
        value = str(raw)
        if _HOSTNAME_I.search(value):
            ctx.add("node-ip-hostname-i", m, key, value,
                    "`hostname -I` prints every address (breaks on dual-stack pods)",
                    "use an env var from the downward API (fieldRef status.podIP): " + want)
        s_name, ns, domain, pod = _fqdn_parts(value)
        if not s_name or not domain or s_name != svc_name or ns != c.namespace:
            where = f"{s_name}.{ns}" if s_name else "no <svc>.<ns>.svc.<domain> suffix"
            ctx.add("node-ip-not-fqdn", m, key, value,
                    f"not a Pod FQDN under {svc_name}.{c.namespace} (found: {where})",
                    f"set node-ip-address: {want}")
        elif "$" not in pod:
            ctx.add("node-ip-not-fqdn", m, key, value,
                    "the pod part is a constant: every pod would claim the same address",
                    f"derive it from the pod IP: {want}")
        elif re.fullmatch(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", pod):
            ctx.add("node-ip-not-fqdn", m, key, value,
                    "the pod IP is used with its dots, which adds DNS labels",
                    "replace the separators with dashes: ${VAR//[.:]/-}")
        if "$(" in pod and _HOSTNAME_I.search(pod):
            continue
        env = g.env()
        for var in _VAR.findall(pod):
            entry = env.get(var)
            ref = entry.get("valueFrom", {}).get("fieldRef", {}) if entry else {}
            path = ref.get("fieldPath") if isinstance(ref, dict) else None
            if path != "status.podIP":
                why = "is not in the Ray container's env" if entry is None else (
                    "does not come from fieldRef status.podIP")
                ctx.add("node-ip-env-missing", m, key, value,
                        f"${var} {why} in group {g.name}",
                        f"add env {{name: {var}, valueFrom: {{fieldRef: "
                        "{fieldPath: status.podIP}}}} to the first container")


# ---------------------------------------------------------------------- PeerAuthentication


def _pa_parts(pa: Manifest) -> tuple[dict[str, str], str, dict[str, Any]]:
    spec = pa.obj.get("spec") if isinstance(pa.obj.get("spec"), dict) else {}
    assert isinstance(spec, dict)
    sel = spec.get("selector")
    labels = sel.get("matchLabels") if isinstance(sel, dict) else None
    mtls = spec.get("mtls")
    mode = str(mtls.get("mode") or "UNSET").upper() if isinstance(mtls, dict) else "UNSET"
    plm = spec.get("portLevelMtls")
    return ({str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
            mode, plm if isinstance(plm, dict) else {})


def _pa_applies(ctx: _Context, pa: Manifest, c: Cluster) -> bool:
    labels, _, _ = _pa_parts(pa)
    ns = pa.namespace(ctx.namespace)
    if not labels:
        return ns in {c.namespace, ctx.root_namespace}
    return ns == c.namespace and any(
        all(g.pod_labels(c.name).get(k) == v for k, v in labels.items()) for g in c.groups)


def _check_peerauths(ctx: _Context) -> None:
    for pa in ctx.peerauths:
        labels, mode, plm = _pa_parts(pa)
        ns = pa.namespace(ctx.namespace)
        matched = [(c, g) for c, _ in ctx.clusters if c.namespace == ns for g in c.groups
                   if labels and all(g.pod_labels(c.name).get(k) == v for k, v in labels.items())]
        if labels and ns == ctx.root_namespace:
            ctx.add("peerauth-root-selector", pa, "spec.selector", labels,
                    f"Istio ignores workload selectors in the root namespace {ns}",
                    "move the policy to the Ray cluster's namespace")
        if labels and not matched and any(k.startswith("ray.io/") for k in labels):
            ctx.add("peerauth-no-match", pa, "spec.selector.matchLabels", labels,
                    f"selects no Ray pods of any RayCluster in namespace {ns}",
                    "match ray.io/cluster: <cluster name> of the RayCluster")
        if plm and not labels:
            ctx.add("peerauth-port-no-selector", pa, "spec.portLevelMtls", sorted(map(str, plm)),
                    "portLevelMtls only applies to policies with a workload selector",
                    "add spec.selector.matchLabels, or move the ports to a selector policy")
        if plm and matched:
            used = set().union(*(g.all_ports() for _, g in matched)) | {8000, 9000}
            for port_key in plm:
                n = as_int(port_key)
                if n is None or n not in used:
                    ctx.add("peerauth-port-unused", pa, f"spec.portLevelMtls.{port_key}",
                            port_key,
                            "no selected Ray container listens on this port (portLevelMtls keys "
                            "on the container port, not the Service port)",
                            "use the container port number the Ray flag pins")
        applies = bool(matched) or (not labels and any(
            c.namespace == ns or ns == ctx.root_namespace for c, _ in ctx.clusters))
        if applies and mode in {"PERMISSIVE", "DISABLE"}:
            ctx.add("peerauth-permissive", pa, "spec.mtls.mode", mode,
                    f"{mode} lets plaintext reach the Ray pods (Ray's dashboard and client run "
                    "code for anyone who reaches them)", "use mode STRICT")
        if applies:
            for port_key, setting in plm.items():
                pmode = str(setting.get("mode") if isinstance(setting, dict) else "").upper()
                if pmode in {"PERMISSIVE", "DISABLE"}:
                    ctx.add("peerauth-permissive", pa, f"spec.portLevelMtls.{port_key}.mode",
                            pmode, f"port {port_key} accepts plaintext",
                            "drop the port-level exception or make it STRICT")


# -------------------------------------------------------------------------------- Ingress


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


def _check_ingresses(ctx: _Context) -> None:
    for ing in ctx.ingresses:
        ns = ing.namespace(ctx.namespace)
        ann = _annotations(ing)
        for key, svc_name, number, pname in _backends(ing.obj):
            target = _resolve_backend(ctx, ns, svc_name, number, pname)
            port_text = str(number) if number is not None else f"name {pname}"
            if target is None:
                ctx.add("ingress-service-missing", ing, f"{key}.name", svc_name,
                        f"no Service {svc_name} in namespace {ns} (input Services and KubeRay's "
                        "<cluster>-head-svc)", "point the backend at an existing Service")
                continue
            ports, component, group = target
            if component is None and ports is not None:
                ctx.add("ingress-port-missing", ing, f"{key}.port", number or pname,
                        f"Service/{svc_name} has no port {port_text} (it has: {ports})",
                        "use one of the Service's ports")
                continue
            if component is None or group is None:
                continue
            want = group.expected_protocol(component)
            _check_ingress_protocol(ctx, ing, ann, key, svc_name, port_text, component, want)
            token_auth = any(c.token_auth for c, _ in ctx.clusters if group in c.groups)
            if component.name in {"dashboard-port", "ray-client-server-port"} and not token_auth \
                    and not any(a in ann for a in _AUTH_ANNOTATIONS):
                ctx.add("ingress-exposes-ray", ing, f"{key}.port", number or pname,
                        f"exposes Ray's {component.name} without authentication: anyone who "
                        "reaches it can run code (CVE-2023-48022)",
                        "put authentication in front (auth-url annotation or Ray token auth) "
                        "or use kubectl port-forward")


def _resolve_backend(ctx: _Context, ns: str, name: str, number: int | None, pname: str | None,
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


_NGINX_FAMILY = {"GRPC": GRPC, "GRPCS": TLS, "HTTP": HTTP, "HTTPS": "https", "AUTO_HTTP": HTTP}
_ALB_FAMILY = {"GRPC": GRPC, "HTTP1": HTTP, "HTTP2": "http2"}


def _check_ingress_protocol(ctx: _Context, ing: Manifest, ann: dict[str, str], key: str,
                            svc: str, port: str, comp: Component, want: str) -> None:
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
            ctx.add("ingress-protocol-mismatch", ing, f"metadata.annotations.{name}", ann[name],
                    f"backend Service/{svc} port {port} is {comp.name} ({want.upper()})",
                    f"set {name}: {expected if name == _NGINX_PROTOCOL else _alb(want)}")


def _alb(want: str) -> str:
    return "GRPC" if want in {GRPC, TLS} else "HTTP1"


def to_json(findings: Sequence[Finding]) -> str:
    counts = {s: sum(f.severity == s for f in findings) for s in SEVERITIES}
    return json.dumps({"findings": [asdict(f) for f in findings], "counts": counts},
                      indent=2, default=str)
