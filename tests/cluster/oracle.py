"""The port oracle on a live cluster: the operator's Pods against the live Services.

For one RayCluster: every Ray Pod's `ray start` (expanded by bash with the Pod's own env, see
podcmd.py) must pin every port Ray would otherwise pick at random; every port the Pod will
listen on must be declared by a Service that selects the Pod; `node-ip-address` must be the
Pod's FQDN under a headless Service that selects every Ray Pod of the cluster; workers must
reach the GCS through a Service that declares it; and the ports the Pods use, all together,
must be exactly the ports those Services declare. Returns the problems as sentences.
"""

from __future__ import annotations

from typing import Any

from kube import LiveService, live_services, pod_fqdn, ray_pods, resolve_named_target
from kubernetes import client
from podcmd import HEAD_ONLY_FLAGS, PORT_FLAGS, RayStart, listening_ports, ray_start

# Flags every node must pin, and those only the head must (dashboard-grpc-port: Ray < 2.45 only).
NODE_FLAGS = tuple(f for f in PORT_FLAGS if f not in HEAD_ONLY_FLAGS)
HEAD_FLAGS = tuple(f for f in HEAD_ONLY_FLAGS if f != "dashboard-grpc-port")


def check_cluster(
    core: client.CoreV1Api, ns: str, cluster: str, domain: str = "cluster.local"
) -> tuple[list[str], dict[str, RayStart]]:
    problems: list[str] = []
    pods = ray_pods(core, ns, cluster)
    if not pods:
        return [f"no Ray pods for cluster {cluster}"], {}
    svcs = live_services(core, ns)
    starts: dict[str, RayStart] = {}
    used: set[int] = set()
    declared_all: set[int] = set()
    fqdn_services: set[str] = set()
    for pod in pods:
        name = pod.metadata.name
        try:
            rs = ray_start(core, pod)
        except ValueError as e:
            problems.append(str(e))
            continue
        starts[name] = rs
        required = NODE_FLAGS + (HEAD_FLAGS if rs.head else ())
        for flag in required:
            if flag not in rs.params:
                problems.append(f"{name}: --{flag} not set: Ray picks a random port")
        if "worker-port-list" not in rs.params and not (
            "min-worker-port" in rs.params and "max-worker-port" in rs.params
        ):
            problems.append(f"{name}: no worker port range: Ray uses 10002-19999")
        selecting = [s for s in svcs if s.selects(pod)]
        declared: dict[int, tuple[str, dict[str, Any]]] = {}
        for s in selecting:
            for port, info in resolve_named_target(pod, s).items():
                declared.setdefault(port, (s.name, info))
        declared_all |= set(declared)
        listen = listening_ports(rs)
        used |= set(listen)
        for port, why in sorted(listen.items()):
            if port not in declared:
                problems.append(
                    f"{name}: listens on {port} ({why}) but no Service selecting it "
                    f"declares that port"
                )
        problems += _check_node_ip(pod, rs, selecting, ns, domain, fqdn_services)
        if not rs.head:
            problems += _check_address(rs, svcs, ns, domain)
    if len(fqdn_services) > 1:
        problems.append(f"pods use FQDNs under different Services: {sorted(fqdn_services)}")
    for port in sorted(declared_all - used):
        problems.append(
            f"port {port} is declared by a Service selecting the Ray pods but no pod listens on it"
        )
    return problems, starts


def _check_node_ip(
    pod: Any, rs: RayStart, selecting: list[LiveService], ns: str, domain: str, seen: set[str]
) -> list[str]:
    value = rs.params.get("node-ip-address")
    name = pod.metadata.name
    if not value:
        return [
            f"{name}: no node-ip-address: Ray advertises the pod IP, which Istio routes "
            f"to plaintext passthrough"
        ]
    for s in selecting:
        if s.headless and value == pod_fqdn(pod, s, ns, domain):
            seen.add(s.name)
            return []
    return [
        f"{name}: node-ip-address {value!r} is not the pod's FQDN under a headless "
        f"Service selecting it (pod IP {pod.status.pod_ip}, headless Services "
        f"{[s.name for s in selecting if s.headless]})"
    ]


def _check_address(rs: RayStart, svcs: list[LiveService], ns: str, domain: str) -> list[str]:
    addr = rs.params.get("address", "")
    host, _, port = addr.rpartition(":")
    suffix = f".{ns}.svc.{domain}"
    svc_name = host[: -len(suffix)] if host.endswith(suffix) else host
    match = [s for s in svcs if s.name == svc_name]
    if not match or not port.isdigit():
        return [f"{rs.pod}: address {addr!r} is not <service>:<port> of a Service here"]
    if not any(info["port"] == int(port) for info in match[0].ports.values()):
        return [f"{rs.pod}: address {addr!r}: Service {svc_name} does not declare port {port}"]
    return []
