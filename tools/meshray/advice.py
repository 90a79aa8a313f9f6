"""What ``meshray validate`` says beyond the schema and the chart's own checks: what the
values need from the cluster (notes), legal but risky choices (warnings, blamed on the values
key that makes them), and the audit's errors and warnings on the render."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from . import audit as audit_mod
from . import manifests, meshcost
from .problems import ERROR, WARNING, Problem
from .raymodel import Cluster, cluster_from, rayjob_cluster_from
from .schema import MISSING

IO_WORKERS = 4  # Ray keeps up to 4 spill/restore I/O workers per node, each holding a port
# Live actors per pod the worker-port warning plans for when nothing else is known; a pod
# needs num-cpus + live actors worker ports (docs/e2e.md#worker-port-sizing).
PLANNED_ACTORS = 8
# Warn above this many worker ports (sidecar config grows per port, meshcost.py), and with
# rayTls above this many listeners: half the default rayTls.maxListeners, where the chart refuses.
WARN_WORKER_PORTS = 100
WARN_TLS_LISTENERS = 1000


NATIVE_SIDECAR = "sidecar.istio.io/nativeSidecar"


def native_sidecar_workers(objs: Sequence[manifests.Manifest]) -> bool:
    """Every worker pod template of the render asks Istio for a native istio-proxy sidecar:
    Istio's injector then starts it before KubeRay's wait-gcs-ready init container, which the
    operator adds to worker pods only (tests/mesh/test_injection.py)."""
    templates = [
        ((g.get("template") or {}).get("metadata") or {}).get("annotations") or {}
        for _, spec in _cluster_specs(objs)
        for g in spec.get("workerGroupSpecs") or []
    ]
    return bool(templates) and all(str(a.get(NATIVE_SIDECAR)).lower() == "true"
                                   for a in templates)


def prerequisites(values: Mapping[str, Any],
                  objs: Sequence[manifests.Manifest] = ()) -> list[str]:
    """What the values need from the cluster, measured with the real KubeRay operators
    (tests/cluster) and Istio's real injector (tests/mesh/test_injection.py): STRICT mTLS and
    the operator's init container, unless every worker gets a native sidecar; istio-cni for a
    namespace that enforces Pod Security (tests/mesh/test_injection.py); the upgrade strategy.
    Ambient pods (mesh.dataplane=ambient) have no sidecar that must start first."""
    out = []
    mtls = values.get("mtls") or {}
    ambient = (values.get("mesh") or {}).get("dataplane") == "ambient"
    if (mtls.get("enabled") and mtls.get("mode") == "STRICT" and not ambient
            and not native_sidecar_workers(objs)):
        out.append("mtls.mode STRICT: run the KubeRay operator with "
                   "ENABLE_INIT_CONTAINER_INJECTION=false, unless Istio injects istio-proxy "
                   "as a native sidecar. Otherwise the operator's wait-gcs-ready init container "
                   "(added to every worker pod at its default; KubeRay 1.1.0 and 1.6.2, "
                   "measured) runs before istio-proxy, STRICT refuses its traffic, and the "
                   "workers never leave Init. Native sidecars start before it: set "
                   f"workerDefaults.annotations.{NATIVE_SIDECAR}: \"true\" (Kubernetes 1.29+), "
                   "or run istiod with ENABLE_NATIVE_SIDECARS=true, or at its default (auto) "
                   "with every node's kubelet 1.33 or later")
    if not ambient:
        out.append("Pod Security: if the namespace enforces baseline or restricted, run Istio "
                   "with istio-cni (istioctl install --set components.cni.enabled=true). "
                   "Istio's injected istio-init container adds NET_ADMIN and NET_RAW, which "
                   "both levels refuse; with istio-cni the injected Ray pods meet restricted "
                   "(measured with the API server's PodSecurity admission)")
    kuberay = values.get("kuberay") or {}
    kind = (values.get("workload") or {}).get("kind", "RayCluster")
    if kind == "RayCluster" and kuberay.get("upgradeStrategy") == "Recreate":
        out.append(f"kuberay.upgradeStrategy Recreate needs KubeRay 1.6.0 or later (older CRDs "
                   f"lack the field and Helm 4 refuses it); the chart assumes kuberay.version "
                   f"{kuberay.get('version')}: for an older operator set kuberay.version, and "
                   f"kuberay.upgradeStrategy=\"\"")
    if kind == "RayJob" and not ambient:
        operator = kuberay.get("operator") or {}
        out.append(f"workload.kind RayJob: the KubeRay operator polls the job on the head's "
                   f"dashboard port, which STRICT mTLS and the AuthorizationPolicy close to "
                   f"callers outside the mesh: inject istio-proxy into the operator (namespace "
                   f"{operator.get('namespace')}), whose identity kuberay.operator names "
                   f"(ServiceAccount {operator.get('serviceAccount')})")
    return out


def _cpus(value: Any) -> float | None:
    text = str(value).strip() if value is not None else ""
    if text.endswith("m") and text[:-1].isdigit():
        return int(text[:-1]) / 1000
    try:
        return float(text)
    except ValueError:
        return None


def worker_demand(cpus: float) -> int:
    """Worker ports one pod is likely to need, from the measured rule num-cpus + live actors:
    a task worker per CPU, PLANNED_ACTORS actors, Ray's I/O workers and one driver."""
    return math.ceil(cpus) + PLANNED_ACTORS + IO_WORKERS + 1


# Audit findings a render of one values file always draws, and NOTES covers: a RayJob on an
# existing cluster (rayJob.clusterSelector) names a RayCluster another release renders.
_ELSEWHERE_BY_DESIGN = frozenset({"rayjob-cluster-not-found"})


def warnings(file: str, values: Mapping[str, Any], objs: Sequence[manifests.Manifest],
             namespace: str) -> list[Problem]:
    """Legal but risky choices, blamed on the values key that makes them, then the audit's
    errors and warnings on the rendered objects (its info findings stay hidden)."""
    out: list[Problem] = []
    mtls = values.get("mtls") or {}
    if mtls.get("enabled") and mtls.get("mode") in {"PERMISSIVE", "DISABLE"}:
        out.append(Problem(file, "mtls.mode", "lets plaintext reach the Ray pods; Ray's "
                           "dashboard and client run code for whoever reaches them",
                           mtls.get("mode"), WARNING))
    for i, entry in enumerate(mtls.get("portLevelMtls") or []):
        if isinstance(entry, dict) and entry.get("mode") in {"PERMISSIVE", "DISABLE"}:
            out.append(Problem(file, f"mtls.portLevelMtls[{i}].mode",
                               f"port {entry.get('port')} accepts plaintext", entry.get("mode"),
                               WARNING))
    dash = (values.get("ingress") or {}).get("dashboard") or {}
    if dash.get("enabled"):
        auth = (dash.get("auth") or {}).get("type", "none")
        why = ("with no authentication (acknowledgeUnauthenticated)" if auth == "none"
               else f"behind {auth} auth")
        out.append(Problem(file, "ingress.dashboard.enabled", f"the dashboard and Jobs API are "
                           f"exposed {why}; they run arbitrary code for whoever gets through "
                           "(CVE-2023-48022)", True, WARNING))
    client = (values.get("ingress") or {}).get("client") or {}
    if client.get("enabled"):
        out.append(Problem(file, "ingress.client.enabled", "the Ray Client port is exposed; it "
                           "runs arbitrary code for whoever connects", True, WARNING))
    out += _token_auth_warnings(file, values)
    out += _worker_range_warnings(file, values, objs)
    out += _mesh_cost_warnings(file, values, objs)
    out += _shared_identity_warnings(file, objs)
    out += [audit_problem(file, f) for f in audit_mod.audit(objs, namespace=namespace)
            if f.severity in _AUDIT_SEVERITY and f.check not in _ELSEWHERE_BY_DESIGN]
    return out


# Ray 2.61 turns token authentication on for every cluster (its release notes): `ray start
# --head` then needs a token, which KubeRay provides only with authOptions (rayAuth.enabled).
TOKEN_AUTH_DEFAULT = (2, 61)


def _token_auth_warnings(file: str, values: Mapping[str, Any]) -> list[Problem]:
    version = str((values.get("ray") or {}).get("version") or "")
    parts = version.split(".")
    if len(parts) < 2 or not all(p.isdigit() for p in parts[:2]):
        return []
    if (int(parts[0]), int(parts[1])) < TOKEN_AUTH_DEFAULT or (values.get("rayAuth") or {}).get(
            "enabled"):
        return []
    return [Problem(file, "rayAuth.enabled", f"ray.version {version}: Ray 2.61 turns token "
                    "authentication on for every cluster (its release notes; not run here), "
                    "so the head needs a token, which KubeRay creates only with "
                    "rayAuth.enabled: true", False, WARNING)]


# The audit's severities validate reports, as its own; info findings are not shown.
_AUDIT_SEVERITY = {audit_mod.ERROR: ERROR, audit_mod.WARNING: WARNING}


def audit_problem(file: str, f: audit_mod.Finding) -> Problem:
    """An error or warning finding on the render, naming its check and object so `meshray
    audit` on the render (``validate -o``) finds the same finding."""
    # the audit leaves value None when it has none to show, as Problem's MISSING does
    value = MISSING if f.value is None else f.value
    return Problem(file, "(render)", f"audit {f.check} on {f.kind}/{f.name} {f.key}: "
                   f"{f.message}", value, _AUDIT_SEVERITY[f.severity])


ACKNOWLEDGED = "meshray.io/acknowledged"


def _shared_identity_warnings(file: str, objs: Sequence[manifests.Manifest]) -> list[Problem]:
    """With serviceAccount.acknowledgeShared (the RayCluster says `shared-identity`), who else
    the AuthorizationPolicy's own-identity rule admits: every Pod running as the Ray pods'
    ServiceAccounts, read from the rendered pod templates (the audit sees only the render, where
    nobody else runs as them)."""
    out = []
    for m in objs:
        if m.kind != "RayCluster":
            continue
        annotations = (m.obj.get("metadata") or {}).get("annotations") or {}
        if "shared-identity" not in str(annotations.get(ACKNOWLEDGED, "")).split(","):
            continue
        spec = m.obj.get("spec") or {}
        groups = [spec.get("headGroupSpec") or {}, *(spec.get("workerGroupSpecs") or [])]
        accounts = sorted({str(((g.get("template") or {}).get("spec") or {})
                               .get("serviceAccountName") or "default") for g in groups})
        ns = m.namespace("default")
        for sa in accounts:
            out.append(Problem(
                file, "serviceAccount.acknowledgeShared",
                f"RayCluster {m.name} runs as ServiceAccount {sa}, which the chart does not "
                f"create for it: the AuthorizationPolicy admits ns/{ns}/sa/{sa} to the GCS and "
                f"raylets, so every other Pod running as {sa} in namespace {ns} can run code on "
                "the cluster" + (" (every Pod without serviceAccountName)" if sa == "default"
                                 else ""), True, WARNING))
    return out


def _worker_ports_key(values: Mapping[str, Any]) -> tuple[str, Any]:
    """The values key that sets the worker ports (list or range end), and its value."""
    ports = values.get("ports") or {}
    key = "workerPortList" if ports.get("workerPortList") else "maxWorkerPort"
    return f"ports.{key}", ports.get(key)


def _cluster_specs(objs: Sequence[manifests.Manifest],
                   ) -> Iterator[tuple[manifests.Manifest, dict[str, Any]]]:
    """Each rendered cluster spec: a RayCluster's spec, or a RayJob's rayClusterSpec (the
    cluster the operator creates for it), with the object that holds it."""
    for m in objs:
        spec = m.obj.get("spec") or {}
        if m.kind == "RayCluster":
            yield m, spec
        elif m.kind == "RayJob" and isinstance(spec.get("rayClusterSpec"), dict):
            yield m, spec["rayClusterSpec"]


def _rayclusters(objs: Sequence[manifests.Manifest],
                 ) -> Iterator[tuple[manifests.Manifest, Cluster]]:
    """Each rendered cluster with the model of it (a RayJob's as the RayCluster the operator
    makes of its rayClusterSpec)."""
    for m in objs:
        if m.kind == "RayCluster":
            yield m, cluster_from(m.obj, m.namespace("default"))
        elif m.kind == "RayJob" and (c := rayjob_cluster_from(m.obj, m.namespace("default"))):
            yield m, c


def _mesh_cost_warnings(file: str, values: Mapping[str, Any],
                        objs: Sequence[manifests.Manifest]) -> list[Problem]:
    """Sidecar config that grows with declared ports, with exportTo "*" in every sidecar of
    the mesh, and with rayTls with pods x ports; the sizes are meshcost's (make bench-mesh)."""
    out = []
    key, value = _worker_ports_key(values)
    measured = f"measured: make bench-mesh, {meshcost.MEASURED}"
    export_to = list((values.get("service") or {}).get("exportTo") or [])
    # Ray pods run no sidecar in ambient mode; other namespaces' sidecars still get what is
    # exported to them.
    ray_sidecars = (values.get("mesh") or {}).get("dataplane", "sidecar") != "ambient"
    for m, cluster in _rayclusters(objs):
        count = max((len(g.worker_ports) for g in cluster.groups), default=0)
        if ray_sidecars and count > WARN_WORKER_PORTS:
            out.append(Problem(
                file, key, f"{count} worker ports: istiod sends every Ray sidecar about "
                f"{count * meshcost.KB_PER_WORKER_PORT / 1024:.1f} MB of config for them "
                f"({meshcost.KB_PER_WORKER_PORT} KB per declared port, {measured}); declare only "
                "what the pods need", value, WARNING))
        if "*" in export_to:
            out.append(Problem(
                file, "service.exportTo", f"the Ray Services are exported to every namespace: "
                f"every sidecar of the mesh gets about "
                f"{count * meshcost.OTHER_KB_PER_WORKER_PORT_EXPORTED:,.0f} KB of config for "
                f"this cluster's {count} worker ports "
                f"({meshcost.OTHER_KB_PER_WORKER_PORT_EXPORTED} KB per port, {measured}); keep "
                '"." unless other namespaces call Ray', export_to, WARNING))
        if not ray_sidecars or not (values.get("rayTls") or {}).get("enabled"):
            continue
        spec = m.obj.get("spec") or {}
        pods = 1 + sum(int(g.get("maxReplicas") or g.get("replicas") or 0) *
                       int(g.get("numOfHosts") or 1)
                       for g in spec.get("workerGroupSpecs") or [] if isinstance(g, dict))
        listeners = pods * count
        if listeners > WARN_TLS_LISTENERS:
            limit = (values.get("rayTls") or {}).get("maxListeners")
            out.append(Problem(
                file, "rayTls.enabled", f"with Ray TLS the worker ports are declared tls, and "
                f"istiod builds a listener per Ray pod and port: up to {pods} pods x {count} "
                f"ports is {listeners} listeners, about "
                f"{listeners * meshcost.KB_PER_TLS_LISTENER / 1024:.1f} MB in every Ray sidecar "
                f"({meshcost.KB_PER_TLS_LISTENER} KB per listener, {measured}), growing with "
                f"each scale-up (the chart refuses above rayTls.maxListeners={limit}); narrow "
                "the worker range, or end TLS at a gateway (gatewayAPI.routes.client.mode grpc)",
                True, WARNING))
    return out


def _worker_range_warnings(file: str, values: Mapping[str, Any],
                           objs: Sequence[manifests.Manifest]) -> list[Problem]:
    out = []
    key, value = _worker_ports_key(values)
    for _, cluster in _rayclusters(objs):
        for g in cluster.groups:
            res = g.ray_container.get("resources") or {}
            cpus = _cpus(g.params.get("num-cpus"))
            if cpus is None:
                for part in ("limits", "requests"):
                    cpus = _cpus((res.get(part) or {}).get("cpu"))
                    if cpus is not None:
                        break
            if cpus is None or not g.worker_ports:
                continue
            need = worker_demand(cpus)
            have = len(g.worker_ports)
            if have < need:
                out.append(Problem(
                    file, key, f"{have} worker ports per pod is likely too few for group "
                    f"{g.name} ({cpus:g} CPUs): each task worker, actor, driver and up to "
                    f"{IO_WORKERS} I/O workers hold one (measured: num-cpus + live actors), so "
                    f"plan for at least {need} ({PLANNED_ACTORS} actors); when they run out "
                    "tasks and actors hang", value, WARNING))
    return out
