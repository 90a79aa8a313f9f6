"""A RayCluster's ports and the headless Service that must declare every one of them.

Ray opens per-node ports that peers dial pod to pod; inside a mesh each must be pinned in
``rayStartParams`` (or env), declared in a headless Service selecting the pods, with the
protocol Istio should use. These checks compare the two sides.
"""

from __future__ import annotations

from typing import Any

from ..manifests import Manifest
from ..protocol import declared_protocol
from ..raymodel import (
    DASHBOARD_GRPC_LAST_USED,
    MUST_PIN,
    WORKER,
    Cluster,
    Component,
    Group,
    as_int,
    compress,
)
from ..services import HEADLESS_LABEL, Service, headless_service, selecting
from .context import Context
from .findings import ERROR, INFO, WARNING, Check, quoted
from .kinds import CLUSTERS, SERVICE

NO_HEADLESS_SERVICE = Check(
    "no-headless-service", ERROR, "no headless Service (clusterIP: None) selects the cluster")
GROUP_NOT_SELECTED = Check(
    "group-not-selected", ERROR, "the headless Service's selector misses a group's pods")
PORT_MISSING = Check(
    "port-missing", ERROR, "a pinned Ray port is not in the headless Service (metrics: warning)")
WORKER_PORT_MISSING = Check(
    "worker-port-missing", ERROR, "worker ports of the range are not declared in the Service")
PORT_UNUSED = Check(
    "port-unused", WARNING, "a Service port that no group of the cluster listens on")
APP_PROTOCOL_WRONG = Check(
    "app-protocol-wrong", ERROR, "appProtocol (or name prefix) differs from the port's protocol")
APP_PROTOCOL_MISSING = Check(
    "app-protocol-missing", ERROR, "a Ray port with neither appProtocol nor a protocol prefix")
TARGET_PORT_MISMATCH = Check(
    "target-port-mismatch", ERROR, "targetPort differs from port on the headless Service")
PORT_CONFLICT = Check(
    "port-conflict", ERROR, "two listeners on one port, or one Service port with two protocols")
PORT_NOT_PINNED = Check(
    "port-not-pinned", ERROR, "a per-node port left to Ray's random choice")
WORKER_RANGE_NOT_PINNED = Check(
    "worker-range-not-pinned", ERROR, "worker range left at Ray's default 10002-19999")
WORKER_RANGE_LARGE = Check(
    "worker-range-large", WARNING, "a worker range so large that sidecars may run out of memory")
INVALID_PORT = Check(
    "invalid-port", ERROR, "a port flag or env value that is not a valid port")
PARAM_NOT_STRING = Check(
    "param-not-string", ERROR, "a rayStartParams value that is not a string (CRD rejects it)")
PARAMS_NOT_MAPPING = Check(
    "params-not-mapping", ERROR,
    "rayStartParams that is not a mapping of flag to value (CRD rejects it; read as empty)")
HEADLESS_LABEL_MISSING = Check(
    "headless-label-missing", WARNING,
    "Service lacks ray.io/headless-worker-svc (error if multi-host)")
PUBLISH_NOT_READY_MISSING = Check(
    "publish-not-ready-missing", ERROR, "Service lacks publishNotReadyAddresses: true")
EXPORT_TO_MISSING = Check(
    "export-to-missing", INFO, "Service lacks networking.istio.io/exportTo (mesh-wide config)")

CHECKS = (NO_HEADLESS_SERVICE, GROUP_NOT_SELECTED, PORT_MISSING, WORKER_PORT_MISSING,
          PORT_UNUSED, APP_PROTOCOL_WRONG, APP_PROTOCOL_MISSING, TARGET_PORT_MISMATCH,
          PORT_CONFLICT, PORT_NOT_PINNED, WORKER_RANGE_NOT_PINNED, WORKER_RANGE_LARGE,
          INVALID_PORT, PARAM_NOT_STRING, PARAMS_NOT_MAPPING, HEADLESS_LABEL_MISSING,
          PUBLISH_NOT_READY_MISSING, EXPORT_TO_MISSING)
# each Ray cluster and the Services that select its pods
READS = (*CLUSTERS, SERVICE)

LARGE_WORKER_RANGE = 1000  # ports; kuberay#1005: 10002-19999 OOM-killed every sidecar
_EXPORT_TO = "networking.istio.io/exportTo"


# ------------------------------------------------------------------------ rayStartParams


def check_params(ctx: Context, c: Cluster, m: Manifest) -> None:
    """invalid-port, param-not-string, params-not-mapping: values the model could not read
    as ports or strings."""
    for g in c.groups:
        if g.params_not_mapping is not None:
            what = type(g.params_not_mapping).__name__
            ctx.add(PARAMS_NOT_MAPPING, m, f"{g.path}.rayStartParams", g.params_not_mapping,
                    f"{_group_name(g)}'s rayStartParams is a {_yaml_type(what)}, not a mapping "
                    "of flag to string value (map[string]string in the CRD): the API server "
                    "refuses the RayCluster, and the audit read no flag of this group",
                    "write it as a mapping of flag to quoted value, e.g. rayStartParams: "
                    '{node-manager-port: "6380"}')
        for key, problem, value in g.problems:
            ctx.add(INVALID_PORT, m, key, value, f"{key.rsplit('.', 1)[-1]} {problem}",
                    "set a valid port number as a string")
        for k, v in g.params.items():
            if not isinstance(v, str):
                ctx.add(PARAM_NOT_STRING, m, f"{g.path}.rayStartParams.{k}", v,
                        "rayStartParams values must be strings (map[string]string in the CRD)",
                        f"quote it: {k}: {quoted(v)}")


def _group_name(g: Group) -> str:
    return "the head group" if g.is_head else f"worker group {g.name or '(no groupName)'}"


def _yaml_type(python_type: str) -> str:
    """A YAML node's kind, named as YAML does (a Python list is a YAML sequence)."""
    return {"list": "list", "str": "string", "int": "number", "float": "number",
            "bool": "boolean"}.get(python_type, python_type)


def check_pinning(ctx: Context, c: Cluster, m: Manifest) -> None:
    """port-not-pinned, worker-range-not-pinned, worker-range-large."""
    for g in c.groups:
        if g.params_not_mapping is not None:
            continue  # params-not-mapping said it: every flag of the group is unread
        pkey = f"{g.path}.rayStartParams"
        for flag in MUST_PIN:
            if flag not in g.params:
                ctx.add(PORT_NOT_PINNED, m, f"{pkey}.{flag}", None,
                        f"{flag} is not set, so Ray picks a random port no Service declares",
                        f"pin it (e.g. {flag}: '<port>') and declare it in the headless Service")
        if (g.is_head and "dashboard-grpc-port" not in g.params and c.version is not None
                and c.version[:2] <= DASHBOARD_GRPC_LAST_USED):
            ctx.add(PORT_NOT_PINNED, m, f"{pkey}.dashboard-grpc-port", None,
                    "Ray < 2.45 runs the dashboard gRPC server on a random head port",
                    "pin dashboard-grpc-port and declare it in the headless Service")
        if any(g.problems):
            continue
        if not g.worker_ports_pinned:
            ctx.add(WORKER_RANGE_NOT_PINNED, m, g.worker_ports_key,
                    f"{g.worker_ports[0]}-{g.worker_ports[-1]}" if g.worker_ports else None,
                    "worker port range not pinned: Ray's default 10002-19999 cannot be declared "
                    "in a Service",
                    "set max-worker-port (or worker-port-list) and declare every port")
        elif len(g.worker_ports) > LARGE_WORKER_RANGE:
            ctx.add(WORKER_RANGE_LARGE, m, g.worker_ports_key, len(g.worker_ports),
                    f"{len(g.worker_ports)} worker ports: every port is configured in every "
                    "selected sidecar (kuberay#1005 OOM)",
                    f"keep the range at or below {LARGE_WORKER_RANGE} ports")


def check_conflicts(ctx: Context, c: Cluster, m: Manifest) -> None:
    """port-conflict: two listeners on one port, or one port number with two protocols."""
    for g in c.groups:
        seen: dict[int, Component] = {}
        for use in g.ports:
            if use.component.optional:
                continue
            other = seen.get(use.port)
            if other is not None:
                ctx.add(PORT_CONFLICT, m, use.key, use.port,
                        f"port {use.port} is used by both {other.name} and {use.name} "
                        f"in group {g.name}", "give each component its own port")
            seen[use.port] = use.component
            if g.worker_ports_pinned and use.port in g.worker_ports:
                ctx.add(PORT_CONFLICT, m, use.key, use.port,
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
                    (g.expected_protocol(WORKER), WORKER.name, g.name))
    for port, users in sorted(protocols.items()):
        if len({u[0] for u in users}) > 1:
            detail = "; ".join(f"{n} in {gname} ({proto})" for proto, n, gname in sorted(users))
            ctx.add(PORT_CONFLICT, m, "spec", port,
                    f"port {port} needs different protocols across groups: {detail}",
                    "use distinct port numbers per component across groups")


# ---------------------------------------------------------------------- headless Service


def check_service(ctx: Context, c: Cluster, cm: Manifest) -> None:
    """no-headless-service, then every check of the headless Service against the cluster."""
    svc = headless_service(ctx.services, c)
    if svc is None:
        others = ", ".join(f"Service/{s.name}" for s in selecting(ctx.services, c))
        extra = f"; {others} selects it but is not headless" if others else ""
        if c.job:
            # a Service selecting the RayJob's name: the rayjob family reports it on the Service
            by_name = ", ".join(f"Service/{s.name}" for s in ctx.services
                                if s.namespace == c.namespace
                                and s.selector.get("ray.io/cluster") == c.job)
            extra += (f"; {by_name} selects ray.io/cluster: {c.job}, which KubeRay's "
                      "generated cluster name never equals") if by_name else ""
        ctx.add(NO_HEADLESS_SERVICE, cm, "metadata.name", c.base_name,
                f"no headless Service in namespace {c.namespace} selects {c.ref}'s pods"
                f"{extra}",
                f"add Service {c.base_name}-headless-svc with clusterIP: None and selector "
                f"{c.selector_hint()} declaring every Ray port")
        return
    sm = svc.manifest
    for g in c.groups:
        if not svc.selects(g.pod_labels(c.name)):
            ctx.add(GROUP_NOT_SELECTED, sm, "spec.selector", svc.selector,
                    f"does not select the pods of group {g.name} of {c.ref}",
                    f"select on {c.selector_hint()} only")
    if svc.spec.get("publishNotReadyAddresses") is not True:
        ctx.add(PUBLISH_NOT_READY_MISSING, sm, "spec.publishNotReadyAddresses",
                svc.spec.get("publishNotReadyAddresses"),
                "Pod FQDNs must resolve before the Ray pods are Ready (node-ip-address)",
                "set publishNotReadyAddresses: true")
    label = svc.meta("labels").get(HEADLESS_LABEL)
    multi = [g.name for g in c.groups if g.num_of_hosts > 1]
    if c.job:
        # KubeRay compares the label with the cluster's name, which it generates for a RayJob:
        # no label can name it, which matters only for multi-host groups
        if multi:
            ctx.add(HEADLESS_LABEL_MISSING, sm, f"metadata.labels.{HEADLESS_LABEL}", label,
                    f"{c.ref}'s cluster name is generated, so no {HEADLESS_LABEL} label can "
                    "name it: KubeRay creates its own worker headless Service for the "
                    f"multi-host groups ({', '.join(multi)})",
                    "run multi-host groups as a RayCluster (clusterSelector), whose name is "
                    "known", severity=ERROR)
    elif label != c.name:
        ctx.add(HEADLESS_LABEL_MISSING, sm, f"metadata.labels.{HEADLESS_LABEL}", label,
                "without this label KubeRay creates its own worker headless Service for "
                "multi-host groups" + (f" (here: {', '.join(multi)})" if multi else ""),
                f"add label {HEADLESS_LABEL}: {c.name}", severity=ERROR if multi else None)
    if _EXPORT_TO not in svc.meta("annotations"):
        ctx.add(EXPORT_TO_MISSING, sm, f"metadata.annotations.{_EXPORT_TO}", None,
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
            ctx.add(TARGET_PORT_MISMATCH, sm, f"spec.ports[{i}].targetPort", target,
                    f"port {n}: on a headless Service peers dial the pod on {n} directly, so "
                    "the listener and the declared port must be the same number",
                    f"set targetPort: {n} (or drop it)")

    _check_missing_ports(ctx, c, cm, svc, declared)
    _check_service_protocols(ctx, c, svc, declared)


def _check_missing_ports(ctx: Context, c: Cluster, cm: Manifest, svc: Service,
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
        ctx.add(PORT_MISSING, cm, key, port,
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
        ctx.add(WORKER_PORT_MISSING, cm, g.worker_ports_key, compress(list(gone)),
                f"{len(gone)} worker port(s) of groups {', '.join(x.name for x in groups)} "
                f"not declared in Service/{svc.name}: an actor or driver drawing one is "
                "unreachable",
                f"declare every worker port (p<N>, appProtocol: {g.expected_protocol(WORKER)})")


def _port_users(c: Cluster, port: int) -> list[tuple[Group, Component]]:
    users: list[tuple[Group, Component]] = []
    for g in c.groups:
        use = g.by_port().get(port)
        if use is not None:
            users.append((g, use.component))
        elif port in g.worker_ports and g.worker_ports_pinned:
            users.append((g, WORKER))
    return users


def _check_service_protocols(ctx: Context, c: Cluster, svc: Service,
                             declared: dict[int, tuple[int, dict[str, Any]]]) -> None:
    sm = svc.manifest
    container_ports = set().union(*(g.all_ports() for g in c.groups))
    for port, (i, p) in sorted(declared.items()):
        users = _port_users(c, port)
        if not users:
            if port not in container_ports:
                ctx.add(PORT_UNUSED, sm, f"spec.ports[{i}]", port,
                        f"no group of {c.ref} listens on {port}; it only costs "
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
            ctx.add(APP_PROTOCOL_MISSING, sm, key, None,
                    f"port {port} ({comp_name}) is {want.upper()} but declares no protocol; "
                    "Istio falls back to sniffing and loses L7 routing", f"set appProtocol: {want}")
        elif got != want:
            ctx.add(APP_PROTOCOL_WRONG, sm, key, got,
                    f"port {port} ({comp_name}) is {want.upper()} but declared {got}",
                    f"set appProtocol: {want}")
