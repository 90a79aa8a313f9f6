"""Read the port contract from rendered manifests (or from the seed guide's YAML).

Everything the harness starts or admits comes from here: the head's and one worker group's
``rayStartParams``, the headless Service's ports, the head container's ports (which KubeRay
copies into its own ``<cluster>-head-svc``) and the containers' plain environment.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

# Ports KubeRay's head Service declares when the head container lists none
# (client, gcs-server, dashboard, metrics, serve).
KUBERAY_DEFAULT_HEAD_PORTS: dict[int, str] = {
    10001: "client",
    6379: "gcs-server",
    8265: "dashboard",
    8080: "metrics",
    8000: "serve",
}
KUBERAY_DEFAULT_METRICS_PORT = 8080
KUBERAY_DEFAULT_AGENT_LISTEN_PORT = 52365
RAY_DEFAULT_GCS_PORT = 6379
RAY_DEFAULT_DASHBOARD_PORT = 8265


class ContractError(Exception):
    """The manifests do not contain what the harness needs."""


@dataclass(frozen=True)
class InitContainer:
    name: str
    argv: tuple[str, ...]
    env: dict[str, str]
    pod_ip_env: tuple[str, ...]


@dataclass(frozen=True)
class NodeSpec:
    role: str  # "head" | "worker"
    group: str
    container: str
    start_params: dict[str, str]
    env: dict[str, str]  # plain `value:` entries
    pod_ip_env: tuple[str, ...]  # env names filled from fieldRef status.podIP
    unsupported_env: tuple[str, ...]  # other valueFrom entries (not reproducible here)
    container_ports: dict[int, str]
    cpu: str | None = None
    memory: str | None = None
    init_containers: tuple[InitContainer, ...] = ()
    # Volume mount paths of the Ray and init containers -> volume kind ("emptyDir", "secret").
    mounts: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ClusterContract:
    source: str
    cluster_name: str
    namespace: str
    ray_version: str
    headless_service: str
    headless_ports: dict[int, str]  # port -> "name/appProtocol"
    head: NodeSpec
    worker: NodeSpec
    cluster_domain: str = "cluster.local"
    notes: tuple[str, ...] = field(default_factory=tuple)

    # -- derived -----------------------------------------------------------------------------
    @property
    def head_service(self) -> str:
        return f"{self.cluster_name}-head-svc"

    @property
    def head_service_fqdn(self) -> str:
        return f"{self.head_service}.{self.namespace}.svc.{self.cluster_domain}"

    def head_service_ports(self) -> dict[int, str]:
        """Ports of KubeRay's `<cluster>-head-svc`: the head container's ports, else defaults."""
        ports = dict(self.head.container_ports) or dict(KUBERAY_DEFAULT_HEAD_PORTS)
        # KubeRay always adds the metrics port to the head Service.
        ports.setdefault(
            int(self.head.start_params.get("metrics-export-port", KUBERAY_DEFAULT_METRICS_PORT)),
            "metrics",
        )
        return ports

    def pod_fqdn(self, ip: str) -> str:
        dashed = re.sub(r"[.:]", "-", ip)
        return f"{dashed}.{self.headless_service}.{self.namespace}.svc.{self.cluster_domain}"

    def allowed_ports(self, role: str) -> dict[int, str]:
        """Ports of every Service that selects a node of this role (what its peer may reach)."""
        allowed = {p: f"headless:{n}" for p, n in self.headless_ports.items()}
        if role == "head":
            for p, n in self.head_service_ports().items():
                allowed.setdefault(p, f"head-svc:{n}")
        return allowed

    def worker_ports(self) -> list[int]:
        """The worker ports the rendered params give Ray (same for every node here)."""
        return worker_ports_of(self.worker.start_params)

    def gcs_port(self) -> int:
        return int(self.head.start_params.get("port", RAY_DEFAULT_GCS_PORT))

    def dashboard_port(self) -> int:
        return int(self.head.start_params.get("dashboard-port", RAY_DEFAULT_DASHBOARD_PORT))

    def with_params(self, role: str, **changes: str | None) -> ClusterContract:
        """A copy whose `role` node has start params changed (None removes a key)."""
        node = self.head if role == "head" else self.worker
        params = dict(node.start_params)
        for key, value in changes.items():
            key = key.replace("_", "-")
            if value is None:
                params.pop(key, None)
            else:
                params[key] = value
        new_node = replace(node, start_params=params)
        return replace(self, head=new_node) if role == "head" else replace(self, worker=new_node)


def worker_ports_of(params: dict[str, str]) -> list[int]:
    if params.get("worker-port-list"):
        return [int(p) for p in params["worker-port-list"].split(",") if p.strip()]
    lo = int(params.get("min-worker-port", 10002))
    hi = int(params.get("max-worker-port", 19999))
    return list(range(lo, hi + 1))


def _cpu_count(quantity: Any) -> str | None:
    """Kubernetes CPU quantity -> integer string the way KubeRay passes `--num-cpus`."""
    if quantity is None:
        return None
    text = str(quantity)
    value = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    return str(math.ceil(value))


_MEM_SUFFIX = {
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
    "K": 1000,
    "k": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
}


def _memory_bytes(quantity: Any) -> str | None:
    if quantity is None:
        return None
    text = str(quantity)
    for suffix, mult in sorted(_MEM_SUFFIX.items(), key=lambda kv: -len(kv[0])):
        if text.endswith(suffix):
            return str(int(float(text[: -len(suffix)]) * mult))
    return str(int(float(text)))


def _env(container: dict[str, Any]) -> tuple[dict[str, str], list[str], list[str]]:
    env: dict[str, str] = {}
    pod_ip: list[str] = []
    unsupported: list[str] = []
    for item in container.get("env") or []:
        name = item["name"]
        if "value" in item:
            env[name] = str(item["value"])
        elif item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "status.podIP":
            pod_ip.append(name)
        else:
            unsupported.append(name)
    return env, pod_ip, unsupported


def _node_spec(role: str, group: str, group_spec: dict[str, Any], container_name: str) -> NodeSpec:
    params = {str(k): str(v) for k, v in (group_spec.get("rayStartParams") or {}).items()}
    containers = group_spec.get("template", {}).get("spec", {}).get("containers", [])
    if not containers:
        raise ContractError(f"{role} group {group!r} has no containers")
    container = next((c for c in containers if c.get("name") == container_name), containers[0])
    env, pod_ip, unsupported = _env(container)
    pod = group_spec.get("template", {}).get("spec", {})
    inits = []
    for ic in pod.get("initContainers") or []:
        ic_env, ic_ip, _ = _env(ic)
        argv = tuple(str(a) for a in (ic.get("command") or []) + (ic.get("args") or []))
        inits.append(InitContainer(str(ic.get("name")), argv, ic_env, tuple(ic_ip)))
    kinds = {
        v["name"]: next((k for k in ("emptyDir", "secret", "configMap") if k in v), "other")
        for v in pod.get("volumes") or []
    }
    mounts = {
        str(m["mountPath"]): kinds.get(m["name"], "other")
        for c in [container, *(pod.get("initContainers") or [])]
        for m in c.get("volumeMounts") or []
    }
    ports = {int(p["containerPort"]): str(p.get("name", "")) for p in container.get("ports") or []}
    resources = container.get("resources") or {}
    limits = resources.get("limits") or {}
    requests = resources.get("requests") or {}
    return NodeSpec(
        role=role,
        group=group,
        container=str(container.get("name", "")),
        start_params=params,
        env=env,
        pod_ip_env=tuple(pod_ip),
        unsupported_env=tuple(unsupported),
        container_ports=ports,
        cpu=_cpu_count(limits.get("cpu", requests.get("cpu"))),
        memory=_memory_bytes(limits.get("memory", requests.get("memory"))),
        init_containers=tuple(inits),
        mounts=mounts,
    )


def _domain_from(node_ip_param: str, default: str) -> str:
    m = re.search(r"\.svc\.([A-Za-z0-9.-]+?)\.?$", node_ip_param)
    return m.group(1) if m else default


def from_manifests(
    docs: list[dict[str, Any]],
    source: str,
    namespace: str = "default",
    worker_group: str | None = None,
) -> ClusterContract:
    clusters = [d for d in docs if d.get("kind") == "RayCluster"]
    if len(clusters) != 1:
        raise ContractError(f"{source}: expected one RayCluster, found {len(clusters)}")
    rc = clusters[0]
    name = rc["metadata"]["name"]
    ns = rc["metadata"].get("namespace") or namespace
    services = [
        d
        for d in docs
        if d.get("kind") == "Service"
        and (d.get("metadata", {}).get("labels") or {}).get("ray.io/headless-worker-svc") == name
    ]
    if len(services) != 1:
        raise ContractError(
            f"{source}: expected one headless Service for {name}, found {len(services)}"
        )
    svc = services[0]
    headless_ports: dict[int, str] = {}
    for p in svc["spec"].get("ports") or []:
        target = p.get("targetPort", p["port"])
        if str(target) != str(p["port"]):
            raise ContractError(f"{source}: Service port {p['port']} has targetPort {target}")
        headless_ports[int(p["port"])] = f"{p.get('name', '')}/{p.get('appProtocol', '')}"
    spec = rc["spec"]
    head = _node_spec("head", "head", spec["headGroupSpec"], "ray-head")
    groups = spec.get("workerGroupSpecs") or []
    if not groups:
        raise ContractError(f"{source}: RayCluster has no worker group")
    group = next((g for g in groups if g.get("groupName") == worker_group), groups[0])
    worker = _node_spec("worker", str(group.get("groupName")), group, "ray-worker")
    domain = _domain_from(head.start_params.get("node-ip-address", ""), "cluster.local")
    return ClusterContract(
        source=source,
        cluster_name=name,
        namespace=ns,
        ray_version=str(spec.get("rayVersion", "")),
        headless_service=svc["metadata"]["name"],
        headless_ports=headless_ports,
        head=head,
        worker=worker,
        cluster_domain=domain,
    )


def _heredocs(markdown: str) -> list[str]:
    """Bodies of `<<EOF ... EOF` heredocs in the guide, dedented, with `\\$` unescaped."""
    bodies = []
    for m in re.finditer(r"<<EOF\n(.*?)\n\s*EOF", markdown, re.DOTALL):
        lines = m.group(1).split("\n")
        indent = min(len(ln) - len(ln.lstrip()) for ln in lines if ln.strip())
        bodies.append("\n".join(ln[indent:] for ln in lines).replace("\\$", "$"))
    return bodies


def from_guide(path: Path) -> ClusterContract:
    """The seed guide's Service and (x86-64) RayCluster, as KubeRay would receive them."""
    docs: list[dict[str, Any]] = []
    for body in _heredocs(path.read_text()):
        doc = yaml.safe_load(body)
        if not isinstance(doc, dict) or doc.get("kind") not in ("Service", "RayCluster"):
            continue
        if doc["kind"] == "RayCluster":
            image = doc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]
            if "aarch64" in image:
                continue
        docs.append(doc)
    return from_manifests(docs, source=f"guide:{path.name}")
