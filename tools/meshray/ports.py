"""The port table of rendered manifests: port, name, protocol, groups using it, Service."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .manifests import Manifest
from .protocol import declared_protocol
from .raymodel import (
    WORKER,
    Cluster,
    Group,
    as_int,
    cluster_from,
    compress,
    is_raycluster,
    is_rayjob,
    rayjob_cluster_from,
)
from .services import selecting, services_in


@dataclass(frozen=True)
class Row:
    cluster: str
    port: str
    name: str
    protocol: str
    groups: str
    service: str


def table(objs: Sequence[Manifest], namespace: str = "default") -> list[Row]:
    services = services_in(objs, namespace)
    rows: list[Row] = []
    for m in objs:
        c: Cluster | None = None
        if is_raycluster(m):
            c = cluster_from(m.obj, m.namespace(namespace))
        elif is_rayjob(m):  # the cluster the operator makes of its rayClusterSpec
            c = rayjob_cluster_from(m.obj, m.namespace(namespace))
        if c is None:
            continue
        label = f"RayJob/{c.job}" if c.job else c.name
        headless = [s for s in selecting(services, c) if s.headless]
        declared: dict[int, str] = {}
        for s in headless:
            for _, p in s.ports():
                n = as_int(p.get("port"))
                if n is not None:
                    declared.setdefault(n, f"{s.name} ({declared_protocol(p) or '?'})")
        head_svc = {port for _, port in c.head_service_ports()}
        users: dict[tuple[int, str, str], list[Group]] = {}
        for g in c.groups:
            for use in g.ports:
                if use.component.optional and use.port not in declared:
                    continue  # Serve proxies: listed only when the Service declares them
                proto = g.expected_protocol(use.component)
                users.setdefault((use.port, use.name, proto), []).append(g)
        for (port, name, proto), groups in sorted(users.items()):
            where = declared.get(port) or (c.head_service_name if port in head_svc else "-")
            rows.append(Row(label, str(port), name, proto, ", ".join(g.name for g in groups),
                            where))
        by_range: dict[tuple[int, ...], list[Group]] = {}
        for g in c.groups:
            by_range.setdefault(tuple(g.worker_ports), []).append(g)
        for ports, groups in by_range.items():
            if not ports:
                continue
            n_declared = sum(p in declared for p in ports)
            proto = groups[0].expected_protocol(WORKER)
            rows.append(Row(label, compress(list(ports)), f"worker ports ({len(ports)})", proto,
                            ", ".join(g.name for g in groups),
                            f"{n_declared}/{len(ports)} declared"))
    return rows


def format_table(rows: Sequence[Row]) -> str:
    header = Row("CLUSTER", "PORT", "NAME", "PROTOCOL", "GROUPS", "SERVICE")
    cells = [header, *rows]
    widths = [max(len(getattr(r, f)) for r in cells) for f in Row.__dataclass_fields__]
    lines = []
    for r in cells:
        vals = [getattr(r, f) for f in Row.__dataclass_fields__]
        lines.append("  ".join(v.ljust(w) for v, w in zip(vals, widths, strict=True)).rstrip())
    return "\n".join(lines) + "\n"
