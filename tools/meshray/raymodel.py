"""What a RayCluster's pods listen on, modelled from Ray and KubeRay semantics (REFERENCE §1-2).

Pure data extraction from a parsed RayCluster object: no chart knowledge. Used by ``audit``
(which must judge manifests from any source), by ``render --ports`` and by ``validate``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .protocol import declared_protocol

if TYPE_CHECKING:
    from .manifests import Manifest

GRPC = "grpc"
HTTP = "http"
TLS = "tls"

DEFAULT_MIN_WORKER_PORT = 10002
DEFAULT_MAX_WORKER_PORT = 19999
HEAD_GROUP = "headgroup"  # the ray.io/group label KubeRay puts on head pods


@dataclass(frozen=True)
class Component:
    """A listening socket of a Ray node."""

    name: str  # the rayStartParams flag, or a descriptive name for env/implicit ports
    protocol: str  # GRPC or HTTP (GRPC becomes TLS when Ray-native TLS is on)
    default: int | None  # None: Ray picks a random port unless pinned
    head_only: bool = False
    # reached through KubeRay's <cluster>-head-svc, so the headless Service need not list it
    head_service: bool = False
    env: str | None = None  # pinned through this container env var instead of a flag
    # not every node listens on it (Serve proxies exist only where replicas run)
    optional: bool = False


COMPONENTS: tuple[Component, ...] = (
    Component("port", GRPC, 6379, head_only=True, head_service=True),
    Component("dashboard-port", HTTP, 8265, head_only=True, head_service=True),
    Component("ray-client-server-port", GRPC, 10001, head_only=True, head_service=True),
    Component("node-manager-port", GRPC, None),
    Component("object-manager-port", GRPC, None),
    Component("runtime-env-agent-port", HTTP, None),
    Component("dashboard-agent-grpc-port", GRPC, None),
    Component("dashboard-agent-listen-port", HTTP, 52365),  # KubeRay fills 52365
    Component("metrics-export-port", HTTP, 8080),  # KubeRay fills 8080
    Component("dashboard-grpc-port", GRPC, None, head_only=True),  # Ray < 2.45 only
    Component("autoscaler-metrics", HTTP, 44217, head_only=True, env="AUTOSCALER_METRIC_PORT"),
    Component("dashboard-metrics", HTTP, 44227, head_only=True, env="DASHBOARD_METRIC_PORT"),
    # Serve reads its proxy ports from these env vars (serve/_private/constants.py)
    Component("serve-http", HTTP, 8000, optional=True, env="RAY_SERVE_DEFAULT_HTTP_PORT"),
    Component("serve-grpc", GRPC, 9000, optional=True, env="RAY_SERVE_DEFAULT_GRPC_PORT"),
)
BY_NAME = {c.name: c for c in COMPONENTS}
# every port of the worker range (one Service port each, gRPC like any Ray worker)
WORKER = Component("worker-port", GRPC, None)
# per-node ports other nodes reach: random unless pinned, and Istio must know them
MUST_PIN = ("node-manager-port", "object-manager-port", "runtime-env-agent-port",
            "dashboard-agent-grpc-port")
WORKER_PORT_FLAGS = ("min-worker-port", "max-worker-port", "worker-port-list")
DASHBOARD_GRPC_LAST_USED = (2, 44)  # 2.45-2.47: "no longer used"
FLAGS_REMOVED_IN_2_48 = ("gcs-server-port", "dashboard-grpc-port")

# KubeRay's head Service ports when the head container declares none (name -> port)
KUBERAY_HEAD_SVC_DEFAULTS = {"client": 10001, "gcs-server": 6379, "dashboard": 8265,
                             "metrics": 8080, "serve": 8000}


def parse_version(text: Any) -> tuple[int, int, int] | None:
    """``'2.10.0'`` -> (2, 10, 0); None when it is not a recognisable Ray version."""
    m = re.match(r"^\s*v?(\d+)\.(\d+)(?:\.(\d+))?", str(text or ""))
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def image_version(image: Any) -> tuple[int, int, int] | None:
    """The Ray version in an image tag such as ``rayproject/ray:2.10.0-aarch64``."""
    tag = str(image or "").rsplit("/", 1)[-1]
    return parse_version(tag.split(":", 1)[1]) if ":" in tag else None


def as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def truthy_env(value: Any) -> bool:
    return str(value).strip().lower() in {"1", "true", "yes"}


@dataclass
class PortUse:
    """One port number a group's pods listen on."""

    port: int
    component: Component
    pinned: bool  # set explicitly (flag or env) rather than a default
    key: str  # where it is set, for messages

    @property
    def name(self) -> str:
        return self.component.name


@dataclass
class Group:
    """The head group or one worker group of a RayCluster."""

    name: str  # "headgroup" for the head, else groupName
    path: str  # e.g. spec.workerGroupSpecs[0]
    is_head: bool
    params: dict[str, Any]
    template: dict[str, Any]
    num_of_hosts: int = 1
    ports: list[PortUse] = field(default_factory=list)
    worker_ports: list[int] = field(default_factory=list)
    worker_ports_pinned: bool = False
    worker_ports_key: str = ""
    problems: list[tuple[str, str, Any]] = field(default_factory=list)  # (key, problem, value)
    # rayStartParams as written when it is not a mapping (the CRD's map[string]string): the
    # model then reads it as empty; None when it is a mapping or absent
    params_not_mapping: Any = None

    @property
    def containers(self) -> list[dict[str, Any]]:
        spec = self.template.get("spec") if isinstance(self.template, dict) else None
        cs = spec.get("containers") if isinstance(spec, dict) else None
        return [c for c in cs if isinstance(c, dict)] if isinstance(cs, list) else []

    @property
    def ray_container(self) -> dict[str, Any]:
        """KubeRay treats the first container as the Ray container."""
        cs = self.containers
        return cs[0] if cs else {}

    def env(self) -> dict[str, dict[str, Any]]:
        """The Ray container's env entries by name."""
        env = self.ray_container.get("env")
        if not isinstance(env, list):
            return {}
        return {str(e["name"]): e for e in env if isinstance(e, dict) and "name" in e}

    def env_value(self, name: str) -> Any:
        entry = self.env().get(name)
        return entry.get("value") if entry else None

    @property
    def uses_tls(self) -> bool:
        return truthy_env(self.env_value("RAY_USE_TLS"))

    def expected_protocol(self, component: Component) -> str:
        if component.protocol == GRPC and self.uses_tls:
            return TLS
        return component.protocol

    def pod_labels(self, cluster: str) -> dict[str, str]:
        """Labels of this group's pods, including the ones KubeRay sets (REFERENCE §2)."""
        meta = self.template.get("metadata") if isinstance(self.template, dict) else None
        labels = meta.get("labels") if isinstance(meta, dict) else None
        out = {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}
        out.update({
            "ray.io/cluster": cluster,
            "ray.io/node-type": "head" if self.is_head else "worker",
            "ray.io/group": self.name,
            "ray.io/is-ray-node": "yes",
            "ray.io/identifier": f"{cluster}-{'head' if self.is_head else 'worker'}",
        })
        return out

    def container_ports(self) -> list[dict[str, Any]]:
        ports = self.ray_container.get("ports")
        return [p for p in ports if isinstance(p, dict)] if isinstance(ports, list) else []

    def all_ports(self) -> set[int]:
        """Every port number the group's Ray container may listen on."""
        out = {u.port for u in self.ports} | set(self.worker_ports)
        out |= {n for p in self.container_ports() if (n := as_int(p.get("containerPort")))}
        return out

    def by_port(self) -> dict[int, PortUse]:
        out: dict[int, PortUse] = {}
        for use in self.ports:
            out.setdefault(use.port, use)
        return out


@dataclass
class Cluster:
    name: str
    namespace: str
    version: tuple[int, int, int] | None
    version_key: str
    groups: list[Group]
    # KubeRay's spec.authOptions.mode: token (Ray >= 2.52): the dashboard and Jobs API need it
    token_auth: bool = False
    # spec.headGroupSpec.headService.spec.ports: KubeRay's head Service template
    head_service_template: list[dict[str, Any]] = field(default_factory=list)
    # the RayJob that declares the cluster (its spec.rayClusterSpec), "" for a RayCluster
    job: str = ""
    # False when KubeRay generates the name (a RayJob's <rayjob>-<5 random>): ``name`` is
    # then a placeholder no label selector can match, never shown
    name_known: bool = True
    # where the RayCluster spec sits in the object findings are reported on
    spec_key: str = "spec"
    # the RayCluster spec itself (the RayCluster's spec, or the RayJob's rayClusterSpec)
    spec: dict[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        """How findings name the cluster: ``RayCluster/<name>``, or ``RayJob/<name>`` for a
        RayJob's cluster (with the RayCluster's name when a live one is known)."""
        if not self.job:
            return f"RayCluster/{self.name}"
        return f"RayJob/{self.job}" + (f" (RayCluster {self.name})" if self.name_known else "")

    @property
    def base_name(self) -> str:
        """The name the objects around the cluster are conventionally named after: the
        RayJob's for a RayJob's cluster (its RayCluster's name is generated)."""
        return self.job or self.name

    def template_labels(self) -> dict[str, str]:
        """The labels every group's pod template sets (what selects all of a RayJob's pods,
        whose ray.io/cluster value KubeRay generates)."""
        common: dict[str, str] | None = None
        for g in self.groups:
            meta = g.template.get("metadata") if isinstance(g.template, dict) else None
            raw = meta.get("labels") if isinstance(meta, dict) else None
            labels = {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
            common = labels if common is None else {
                k: v for k, v in common.items() if labels.get(k) == v}
        return common or {}

    def selector_hint(self) -> str:
        """The label selector to suggest for the cluster's pods, as ``key: value``."""
        if self.name_known and not self.job:
            return f"ray.io/cluster: {self.name}"
        labels = {k: v for k, v in self.template_labels().items()
                  if "istio.io" not in k.split("/", 1)[0]}
        if "meshray.io/cluster" in labels:
            return f"meshray.io/cluster: {labels['meshray.io/cluster']}"
        if labels:
            k, v = sorted(labels.items())[0]
            return f"{k}: {v} (a label every pod template sets)"
        return (f"a label set on every pod template of RayJob/{self.job} (such as "
                f"meshray.io/cluster: {self.job})")

    @property
    def head(self) -> Group | None:
        return next((g for g in self.groups if g.is_head), None)

    def head_service_ports(self) -> list[tuple[str, int]]:
        """(name, port) of the ``<cluster>-head-svc`` KubeRay creates: the ports of the
        RayCluster's ``headGroupSpec.headService`` template, then the head container's (or
        KubeRay's defaults when it has none), then ``metrics`` 8080 unless one is named so
        (ray-operator common/service.go, v1.1.0 and v1.6.2 alike)."""
        return [(n, p) for n, p, _ in self.head_service()]

    def head_service_protocols(self) -> dict[int, str]:
        """Port -> the protocol Istio reads from KubeRay's head Service: the template's
        appProtocol (else its name prefix, else tcp); every port KubeRay appends is
        ``appProtocol: tcp`` (kuberay#1946)."""
        out: dict[int, str] = {}
        for _, n, proto in self.head_service():
            out.setdefault(n, proto)
        return out

    def head_service(self) -> list[tuple[str, int, str]]:
        ports: list[tuple[str, int, str]] = []
        for p in self.head_service_template:
            n = as_int(p.get("port"))
            if n is not None:
                ports.append((str(p.get("name") or ""), n, declared_protocol(p) or "tcp"))
        return ports + [(name, n, "tcp") for name, n in self._appended_head_ports()]

    def _appended_head_ports(self) -> list[tuple[str, int]]:
        head = self.head
        ports: list[tuple[str, int]] = []
        if head is not None:
            for p in head.container_ports():
                n = as_int(p.get("containerPort"))
                if n is not None:
                    ports.append((str(p.get("name") or ""), n))
        if not ports:
            return list(KUBERAY_HEAD_SVC_DEFAULTS.items())
        if all(n != 8080 for _, n in ports) and all(name != "metrics" for name, _ in ports):
            ports.append(("metrics", 8080))
        return ports

    @property
    def head_service_name(self) -> str:
        """KubeRay's head Service: ``<cluster>-head-svc``; for a RayJob's cluster of unknown
        name, the copy KubeRay >= 1.5 makes of it as ``<rayjob>-head-svc``."""
        return f"{self.name}-head-svc" if self.name_known else f"{self.job}-head-svc"


def _params(spec: Any) -> dict[str, Any]:
    params = spec.get("rayStartParams") if isinstance(spec, dict) else None
    return dict(params) if isinstance(params, dict) else {}


def _group(spec: dict[str, Any], path: str, is_head: bool, version: tuple[int, int, int] | None,
           ) -> Group:
    template = spec.get("template") if isinstance(spec.get("template"), dict) else {}
    name = HEAD_GROUP if is_head else str(spec.get("groupName") or "")
    group = Group(name=name, path=path, is_head=is_head, params=_params(spec),
                  template=template or {},
                  num_of_hosts=as_int(spec.get("numOfHosts")) or 1)
    raw = spec.get("rayStartParams")
    if raw is not None and not isinstance(raw, dict):
        group.params_not_mapping = raw
    _fill_ports(group, version)
    return group


def _fill_ports(group: Group, version: tuple[int, int, int] | None) -> None:
    params = group.params
    pkey = f"{group.path}.rayStartParams"
    for comp in COMPONENTS:
        if comp.head_only and not group.is_head:
            continue
        if (comp.name == "dashboard-grpc-port" and comp.name not in params
                and version is not None and version[:2] > DASHBOARD_GRPC_LAST_USED):
            continue  # no such listener from Ray 2.45 on
        if comp.env is not None:
            raw: Any = group.env_value(comp.env)
            key = f"{group.path}.template.spec.containers[0].env.{comp.env}"
        else:
            raw = params.get(comp.name)
            key = f"{pkey}.{comp.name}"
        if raw is None:
            if comp.default is not None:
                group.ports.append(PortUse(comp.default, comp, False, key))
            continue
        n = as_int(raw)
        if n is None or not 0 < n < 65536:
            group.problems.append((key, "is not a port number", raw))
            continue
        group.ports.append(PortUse(n, comp, True, key))
    _fill_worker_ports(group)


def _fill_worker_ports(group: Group) -> None:
    params = group.params
    pkey = f"{group.path}.rayStartParams"
    if "worker-port-list" in params:
        group.worker_ports_key = f"{pkey}.worker-port-list"
        raw = str(params["worker-port-list"])
        ports = [as_int(p) for p in raw.split(",")]
        if not raw.strip() or any(p is None or not 1024 <= p <= 65535 for p in ports):
            group.problems.append((group.worker_ports_key,
                                   "must be a comma-separated list of ports in 1024-65535", raw))
            return
        group.worker_ports = sorted({p for p in ports if p is not None})
        group.worker_ports_pinned = True
        return
    lo_raw = params.get("min-worker-port")
    hi_raw = params.get("max-worker-port")
    lo = as_int(lo_raw) if lo_raw is not None else DEFAULT_MIN_WORKER_PORT
    hi = as_int(hi_raw) if hi_raw is not None else DEFAULT_MAX_WORKER_PORT
    group.worker_ports_key = f"{pkey}.max-worker-port"
    for given, val, flag in ((lo_raw, lo, "min-worker-port"), (hi_raw, hi, "max-worker-port")):
        if val is None or not 1024 <= val <= 65535:
            group.problems.append((f"{pkey}.{flag}", "must be a port in 1024-65535", given))
            return
    assert lo is not None and hi is not None
    if hi <= lo:
        group.problems.append((group.worker_ports_key,
                               f"must be greater than min-worker-port ({lo})", hi_raw))
        return
    group.worker_ports = list(range(lo, hi + 1))
    group.worker_ports_pinned = hi_raw is not None


def is_raycluster(m: Manifest) -> bool:
    return m.kind == "RayCluster" and m.api_group == "ray.io"


def cluster_from(obj: dict[str, Any], namespace: str, spec_key: str = "spec") -> Cluster:
    """The port model of one RayCluster object (keys of findings start at ``spec_key``)."""
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    assert isinstance(meta, dict) and isinstance(spec, dict)
    return _cluster(spec, str(meta.get("name") or ""), namespace, spec_key)


def is_rayjob(m: Manifest) -> bool:
    return m.kind == "RayJob" and m.api_group == "ray.io"


RAYJOB_SPEC_KEY = "spec.rayClusterSpec"


def rayjob_cluster_from(job: dict[str, Any], namespace: str,
                        live_cluster: dict[str, Any] | None = None) -> Cluster | None:
    """The port model of the RayCluster a RayJob runs on when it declares one
    (``spec.rayClusterSpec``), None for a RayJob on an existing cluster (clusterSelector).

    KubeRay names that cluster ``<rayjob>-<5 random>`` (``<rayjob>-raycluster-<5 random>``
    before v1.4), so its Pods' ``ray.io/cluster`` value is unknown: the model gets a
    placeholder no selector can match. ``live_cluster``, the RayCluster object the operator
    created (read from a running cluster), gives the real name and the spec it runs."""
    meta = job.get("metadata") if isinstance(job.get("metadata"), dict) else {}
    spec = job.get("spec") if isinstance(job.get("spec"), dict) else {}
    assert isinstance(meta, dict) and isinstance(spec, dict)
    name = str(meta.get("name") or "")
    if live_cluster is not None:
        c = cluster_from(live_cluster, namespace, RAYJOB_SPEC_KEY)
        c.job = name
        return c
    embedded = spec.get("rayClusterSpec")
    if not isinstance(embedded, dict):
        return None
    # "<" is not allowed in label values: no selector in any manifest can equal this
    c = _cluster(embedded, f"<{name}-generated>", namespace, RAYJOB_SPEC_KEY)
    c.job, c.name_known = name, False
    return c


def _cluster(spec: dict[str, Any], name: str, namespace: str, spec_key: str) -> Cluster:
    version = parse_version(spec.get("rayVersion"))
    version_key = f"{spec_key}.rayVersion"
    head_spec = spec.get("headGroupSpec") if isinstance(spec.get("headGroupSpec"), dict) else {}
    assert isinstance(head_spec, dict)
    head_path = f"{spec_key}.headGroupSpec"
    if version is None:
        probe = _group(head_spec, head_path, True, None)
        version = image_version(probe.ray_container.get("image"))
        version_key = f"{head_path}.template.spec.containers[0].image"
    groups = [_group(head_spec, head_path, True, version)]
    workers = spec.get("workerGroupSpecs")
    if isinstance(workers, list):
        for i, w in enumerate(workers):
            if isinstance(w, dict):
                groups.append(_group(w, f"{spec_key}.workerGroupSpecs[{i}]", False, version))
    auth = spec.get("authOptions")
    token_auth = isinstance(auth, dict) and str(auth.get("mode", "")).lower() == "token"
    head_svc = head_spec.get("headService")
    svc_spec = head_svc.get("spec") if isinstance(head_svc, dict) else None
    tmpl = svc_spec.get("ports") if isinstance(svc_spec, dict) else None
    tmpl_ports = [p for p in tmpl if isinstance(p, dict)] if isinstance(tmpl, list) else []
    return Cluster(name=name, namespace=namespace, version=version,
                   version_key=version_key if version else "", groups=groups,
                   token_auth=token_auth, head_service_template=tmpl_ports,
                   spec_key=spec_key, spec=spec)


def compress(ports: list[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``'1-3, 7'``."""
    out: list[str] = []
    for lo, hi in _runs(sorted(set(ports))):
        out.append(str(lo) if lo == hi else f"{lo}-{hi}")
    return ", ".join(out)


def _runs(ports: list[int]) -> Iterator[tuple[int, int]]:
    if not ports:
        return
    lo = prev = ports[0]
    for p in ports[1:]:
        if p != prev + 1:
            yield lo, prev
            lo = p
        prev = p
    yield lo, prev
