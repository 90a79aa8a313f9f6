"""Validate values files: the yamale schema, then the chart's own ``fail`` checks, then warnings
and the audit's errors and warnings on the render.

Every problem prints as ``file: key.path: problem (got value)``. A values file is checked as
helm sees it: layered over the chart's ``values.yaml`` (maps merge, lists replace, null
deletes), and each problem is blamed on the file that set the offending key.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yamale import validators as yv

from . import audit as audit_mod
from . import manifests, meshcost, valuesfile
from .raymodel import Cluster, cluster_from, rayjob_cluster_from
from .render import RENDER_SOURCE, RenderError, RenderRequest, render_each
from .schema import ChartSchema, describe, is_required, is_static_map

ERROR = "error"
WARNING = "warning"
_MISSING: Any = object()
Path_ = tuple[str | int, ...]
IO_WORKERS = 4  # Ray keeps up to 4 spill/restore I/O workers per node, each holding a port
# Measured (make sizing, README "Worker-port sizing"): 2000 tasks + K live actors + a job need
# num-cpus + K worker ports per pod on Ray 2.60 (9/10/12 for 1/2/4 CPUs at K=8; 17 at K=16).
# The warning plans for this many live actors per pod when nothing else is known.
PLANNED_ACTORS = 8
# Mesh cost: the measured numbers live in meshcost.py (one make bench-mesh run). Warn above
# 100 worker ports, and with rayTls above 1000 listeners (half the chart's default ceiling,
# rayTls.maxListeners, above which the chart refuses).
WARN_WORKER_PORTS = 100
WARN_TLS_LISTENERS = 1000


@dataclass(frozen=True)
class Problem:
    file: str
    path: str
    problem: str
    value: Any = _MISSING
    severity: str = ERROR

    def line(self) -> str:
        got = "" if self.value is _MISSING else f" (got {show(self.value)})"
        prefix = "warning: " if self.severity == WARNING else ""
        return f"{self.file}: {prefix}{self.path}: {self.problem}{got}"


def show(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def dotted(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(root)"


# ------------------------------------------------------------------------------ schema


def check(schema: ChartSchema, data: Any) -> list[tuple[Path_, str, Any]]:
    """Schema problems of a complete values tree as (path, problem, value)."""
    return list(_check(schema.root, data, (), schema))


def _check(node: Any, value: Any, path: Path_, schema: ChartSchema,
           ) -> Iterator[tuple[Path_, str, Any]]:
    node = schema.resolve(node)
    if is_static_map(node):
        if not isinstance(value, Mapping):
            yield path, "must be a map", value
            return
        known = [str(k) for k in node]
        for key, sub_value in value.items():
            if str(key) not in known:
                close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]}?)" if close else ""
                yield (*path, str(key)), f"unknown key{hint}", sub_value
        for key, sub in node.items():
            if key not in value:
                if is_required(sub):
                    yield (*path, str(key)), "required key missing", _MISSING
                continue
            sub_value = value[key]
            if sub_value is None and isinstance(sub, yv.Validator) and (
                    sub.is_optional and sub.can_be_none):
                continue
            yield from _check(sub, sub_value, (*path, str(key)), schema)
        return
    if isinstance(node, yv.Map):
        if not isinstance(value, Mapping) or not _sized_ok(node, value):
            yield path, f"must be {describe(node, schema)}", value
            return
        key_v = node.kwargs.get("key")
        for k, v in value.items():
            if key_v is not None and key_v.validate(k):
                yield (*path, str(k)), f"key must be {describe(key_v, schema)}", k
                continue
            yield from _one_of(node.validators, v, (*path, str(k)), schema)
        return
    if isinstance(node, yv.List):
        if not isinstance(value, list) or not _sized_ok(node, value):
            yield path, f"must be {describe(node, schema)}", value
            return
        for i, v in enumerate(value):
            yield from _one_of(node.validators, v, (*path, i), schema)
        return
    if isinstance(node, yv.Any):
        yield from _one_of(node.validators, value, path, schema)
        return
    if node.validate(value):
        yield path, f"must be {describe(node, schema)}", value


def as_helm_reads(value: Any) -> Any:
    """The values as helm's templates receive them: helm turns every YAML number into a JSON
    number, so ``6379.0`` and ``6379`` are the same value to the chart and render alike; an
    integral float becomes an int here too, so validate refuses what the chart refuses and
    nothing more. Other floats (``6379.5``) stay floats and fail the integer checks."""
    if isinstance(value, dict):
        return {k: as_helm_reads(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_helm_reads(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _sized_ok(node: yv.Validator, value: Any) -> bool:
    lo, hi = node.kwargs.get("min"), node.kwargs.get("max")
    return (lo is None or len(value) >= lo) and (hi is None or len(value) <= hi)


def _one_of(validators: Sequence[Any], value: Any, path: Path_, schema: ChartSchema,
            ) -> Iterator[tuple[Path_, str, Any]]:
    """yamale's any-of: fine if one validator accepts; else the closest one's problems."""
    if not validators:
        return
    results = [list(_check(v, value, path, schema)) for v in validators]
    if any(not r for r in results):
        return
    if len(validators) == 1:
        yield from results[0]
        return
    deeper = [r for r in results if all(p != path for p, _, _ in r)]
    if len(deeper) == 1:  # only one alternative had the right shape: its details help
        yield from deeper[0]
        return
    yield path, "must be " + " or ".join(describe(v, schema) for v in validators), value


# ------------------------------------------------------------------------ values layers


def merge(base: Any, over: Any) -> Any:
    """Helm's coalescing of a values file onto defaults: maps merge, null deletes, else replace."""
    if not isinstance(base, dict) or not isinstance(over, dict):
        return over
    out = dict(base)
    for k, v in over.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def _paths(data: Any, path: Path_ = ()) -> Iterator[tuple[Path_, bool]]:
    """Every (path, is_map) the file sets."""
    if isinstance(data, dict):
        for k, v in data.items():
            yield (*path, str(k)), isinstance(v, dict)
            yield from _paths(v, (*path, str(k)))


def _blame(path: Path_, user: dict[Path_, bool], defaults: Any, missing: bool) -> bool:
    """True when the problem is the user's file's doing, False when it is in the defaults."""
    if path in user or any(path[:i] in user and not user[path[:i]] for i in range(1, len(path))):
        return True
    if _exists(defaults, path):
        return False
    # a required key missing from a map the defaults already have is the defaults' problem
    return not (missing and _exists(defaults, path[:-1]))


def _exists(data: Any, path: Path_) -> bool:
    for part in path:
        in_map = isinstance(data, dict) and part in data
        in_list = isinstance(data, list) and isinstance(part, int) and part < len(data)
        if not (in_map or in_list):
            return False
        data = data[part]
    return True


# ---------------------------------------------------------------------------- the verb


@dataclass
class Options:
    chart: Path
    schema: ChartSchema
    defaults: dict[str, Any]
    release: str = "meshray"
    namespace: str = "default"
    render: bool = True


@dataclass
class Checked:
    """The verdict on one values file, and the render it was judged on (None when the schema
    check failed first, or rendering was off or refused)."""

    problems: list[Problem]
    rendered: str | None = None
    # What the cluster must provide for these values (not a problem of the file): printed
    # apart from problems, on stderr, as `note:` lines.
    notes: list[str] = field(default_factory=list)


def validate_file(file: str, opts: Options) -> list[Problem]:
    """All problems and warnings of one values file (layered on the chart defaults)."""
    return check_file(file, opts).problems


def check_file(file: str, opts: Options) -> Checked:
    """Schema, then one helm render, then warnings and the audit on that same render, which
    the caller may reuse (``validate --output-dir``) instead of rendering again."""
    return check_files([file], opts)[0]


@dataclass
class _Pending:
    """A file that passed the schema and waits for its render."""

    file: str
    merged: dict[str, Any]


def check_files(files: Sequence[str], opts: Options) -> list[Checked]:
    """``check_file`` for each file, in order, with the helm renders run side by side (up to
    one per CPU): the schema check first, then every render at once, then each audit."""
    first = [_schema_stage(file, opts) for file in files]
    pending = [p for p in first if isinstance(p, _Pending)]
    done = render_each([RenderRequest(values_files=[p.file], release=opts.release,
                                      namespace=opts.namespace, chart=opts.chart)
                        for p in pending],
                       lambda i, rendered: _audit_stage(pending[i], rendered, opts))
    audited = iter(done)
    return [p if isinstance(p, Checked) else next(audited) for p in first]


def _schema_stage(file: str, opts: Options) -> Checked | _Pending:
    try:
        text = Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return Checked([Problem(file, "(file)", f"cannot read: {exc}")])
    try:
        structure = valuesfile.structure_problems(text)
        user = valuesfile.load_text(text) if not structure else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "(file)"
        return Checked([Problem(file, where, f"malformed YAML: {getattr(exc, 'problem', exc)}")])
    if structure:  # data YAML would lose: say so before anything reads the values
        return Checked([Problem(file, where, msg) for where, msg in structure])
    if user is None:
        user = {}
    if not isinstance(user, dict):
        return Checked([Problem(file, "(root)", "must be a map", user)])
    user = as_helm_reads(user)
    merged = merge(opts.defaults, user)
    user_paths = dict(_paths(user))
    defaults_file = str(opts.chart / "values.yaml")
    problems = [
        Problem(file if _blame(p, user_paths, opts.defaults, val is _MISSING) else defaults_file,
                dotted(p), msg, val)
        for p, msg, val in check(opts.schema, merged)
    ]
    if problems or not opts.render:
        return Checked(problems)
    return _Pending(file, merged)


def _audit_stage(pending: _Pending, rendered: str | RenderError, opts: Options) -> Checked:
    file, merged = pending.file, pending.merged
    if isinstance(rendered, RenderError):
        return Checked([_render_problem(file, line) for line in _render_lines(rendered.message)])
    try:
        objs = manifests.parse_stream(rendered, RENDER_SOURCE)
    except manifests.ManifestError as exc:
        return Checked([*warnings(file, merged, [], opts),
                        Problem(file, "(chart)", f"rendered output is not YAML: {exc}")])
    return Checked(warnings(file, merged, objs, opts), rendered, prerequisites(merged, objs))


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
    the operator's init container, unless every worker gets a native sidecar; the upgrade
    strategy. Ambient pods (mesh.dataplane=ambient) have no sidecar that must start first."""
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


_SCHEMA_LINE = re.compile(r"^\s*-\s*at '(?P<ptr>[^']*)':\s*(?P<msg>.*)$")


def _render_lines(message: str) -> list[str]:
    """One line per problem: helm's schema report lists them as ``- at '/a/b': msg``; the
    chart's single `fail` (templates/validate.yaml) puts one ``key: problem`` per line."""
    lines = [ln for ln in message.splitlines() if _SCHEMA_LINE.match(ln)]
    return lines or [" ".join(ln.split()) for ln in message.splitlines() if ln.strip()]


def _render_problem(file: str, line: str) -> Problem:
    m = _SCHEMA_LINE.match(line)
    if m:
        ptr = m.group("ptr").strip("/").replace("/", ".") or "(root)"
        return Problem(file, ptr, m.group("msg"))
    key, sep, rest = line.partition(": ")
    if sep and re.fullmatch(r"[A-Za-z0-9_.\[\]/-]+", key):
        return Problem(file, key, rest)
    return Problem(file, "(chart)", line)


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
             opts: Options) -> list[Problem]:
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
    out += _worker_range_warnings(file, values, objs)
    out += _mesh_cost_warnings(file, values, objs)
    out += _shared_identity_warnings(file, objs)
    out += [audit_problem(file, f) for f in audit_mod.audit(objs, namespace=opts.namespace)
            if f.severity in _AUDIT_SEVERITY and f.check not in _ELSEWHERE_BY_DESIGN]
    return out


# The audit's severities validate reports, as its own; info findings are not shown.
_AUDIT_SEVERITY = {audit_mod.ERROR: ERROR, audit_mod.WARNING: WARNING}


def audit_problem(file: str, f: audit_mod.Finding) -> Problem:
    """An error or warning finding on the render, naming its check and object so `meshray
    audit` on the render (``validate -o``) finds the same finding."""
    # the audit leaves value None when it has none to show, as Problem's _MISSING does
    value = _MISSING if f.value is None else f.value
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
