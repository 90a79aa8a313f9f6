"""meshray/audit/registry.py: every check is declared once, tested, and listed in a fixed order.

The order and severities below are the published contract (`meshray audit --list-checks`,
the checks table in docs/cli.md): written out here, not read from the code.
"""

from __future__ import annotations

import ast
import copy
import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import meshray
import pytest
import test_audit_ambient
import test_audit_authz
import test_audit_capture
import test_audit_gatewayapi
import test_audit_identity
import test_audit_ingress
import test_audit_inputs
import test_audit_netpolicy
import test_audit_nodeip
import test_audit_peerauth
import test_audit_pods
import test_audit_portmap
import test_audit_restricted
import test_audit_versions
from audit_support import assert_clean, assert_triggers, base, case_ids, hardened, run
from chart_support import CHART, EXAMPLES_DIR, FIXTURES
from meshray.audit import CHECKS, Finding, audit, engine, inputs, kinds, registry
from meshray.audit.context import Context
from meshray.manifests import Manifest, read_stream
from meshray.render import RenderRequest, render
from test_audit_ambient import CASES as AMBIENT
from test_audit_authz import CASES as AUTHZ
from test_audit_capture import CASES as CAPTURE
from test_audit_gatewayapi import CASES as GATEWAYAPI
from test_audit_groups import CASES as GROUP_CASES
from test_audit_groups import CLEAN as THREE_GROUPS
from test_audit_groups import HARD as THREE_HARDENED
from test_audit_groups import apply as apply_to_group
from test_audit_identity import CASES as IDENTITY
from test_audit_ingress import CASES as INGRESS
from test_audit_inputs import CASES as INPUTS
from test_audit_netpolicy import CASES as NETPOLICY
from test_audit_nodeip import CASES as NODEIP
from test_audit_peerauth import CASES as PEERAUTH
from test_audit_pods import CASES as PODS
from test_audit_pods import live_base
from test_audit_portmap import CASES as PORTMAP
from test_audit_protocols import CASES as PROTOCOLS
from test_audit_rayjob import CASES as RAYJOB
from test_audit_restricted import CASES as RESTRICTED
from test_audit_versions import CASES as VERSIONS

# the clean variants of the family tests: legal edits that must change no finding
VARIANTS = [v for m in (test_audit_ambient, test_audit_authz, test_audit_capture,
                        test_audit_portmap, test_audit_gatewayapi, test_audit_identity,
                        test_audit_ingress, test_audit_netpolicy, test_audit_nodeip,
                        test_audit_peerauth, test_audit_restricted, test_audit_versions)
            for v in m.CLEAN_VARIANTS]

PUBLISHED = [
    ("no-headless-service", "error"), ("group-not-selected", "error"),
    ("port-missing", "error"), ("worker-port-missing", "error"), ("port-unused", "warning"),
    ("app-protocol-wrong", "error"), ("app-protocol-missing", "error"),
    ("target-port-mismatch", "error"), ("port-conflict", "error"),
    ("port-not-pinned", "error"), ("worker-range-not-pinned", "error"),
    ("worker-range-large", "warning"), ("invalid-port", "error"),
    ("param-not-string", "error"), ("params-not-mapping", "error"),
    ("headless-label-missing", "warning"),
    ("publish-not-ready-missing", "error"), ("export-to-missing", "info"),
    ("service-protocol-conflict", "error"),
    ("node-ip-missing", "error"), ("node-ip-not-fqdn", "error"),
    ("node-ip-hostname-i", "error"), ("node-ip-env-missing", "error"),
    ("flag-removed", "error"), ("flag-unused", "warning"), ("ray-version-unknown", "info"),
    ("peerauth-no-match", "error"), ("peerauth-port-unused", "error"),
    ("peerauth-port-no-selector", "error"), ("peerauth-root-selector", "warning"),
    ("peerauth-permissive", "warning"), ("peerauth-none", "info"),
    ("authz-port-denied", "error"), ("authz-any-source", "warning"),
    ("authz-dashboard-open", "error"), ("authz-http-on-tcp", "error"),
    ("netpol-port-blocked", "error"), ("kuberay-netpol-blocks-istiod", "error"),
    ("identity-default-service-account", "error"), ("identity-shared-service-account", "error"),
    ("ingress-service-missing", "error"), ("ingress-port-missing", "error"),
    ("ingress-protocol-mismatch", "error"), ("ingress-exposes-ray", "warning"),
    ("route-service-missing", "error"), ("route-port-missing", "error"),
    ("route-protocol-mismatch", "error"), ("route-reference-not-granted", "warning"),
    ("route-exposes-ray", "warning"),
    ("ambient-with-sidecar", "error"), ("waypoint-missing", "warning"),
    ("waypoint-wrong-class", "error"), ("waypoint-for-mismatch", "error"),
    ("mesh-capture-override", "error"),
    ("pod-port-undeclared", "error"), ("pod-stale-flags", "error"), ("pod-node-ip", "error"),
    ("pod-command-unreadable", "error"),
    ("pod-privileged", "error"), ("pod-capabilities", "error"), ("pod-root", "error"),
    ("pod-proxy-uid", "error"), ("pod-privilege-escalation", "error"),
    ("pod-host-namespace", "error"), ("pod-host-path", "error"), ("pod-unconfined", "error"),
    ("pod-unsafe-sysctl", "error"), ("pod-proc-mount", "error"), ("pod-host-process", "error"),
    ("rayjob-selects-job-name", "error"), ("rayjob-no-cluster", "error"),
    ("rayjob-cluster-not-found", "warning"), ("rayjob-dashboard-port-missing", "error"),
    ("rayjob-submitter-template-missing", "error"),
    ("rayjob-submitter-default-service-account", "warning"),
    ("rayjob-submitter-ray-identity", "error"), ("rayjob-submitter-restart-policy", "error"),
    ("rayjob-submitter-native-sidecar", "error"), ("rayjob-submitter-denied", "error"),
    ("rayjob-submitter-beyond-dashboard", "error"),
    ("duplicate-object", "info"), ("object-unnamed", "error"),
]


def test_published_order_and_severities() -> None:
    assert [(check, sev) for check, (sev, _) in CHECKS.items()] == PUBLISHED


def test_every_check_catches_something_and_is_declared_once() -> None:
    ids = [c.id for c in registry.ALL]
    assert [i for i in ids if ids.count(i) > 1] == []  # no id declared twice
    assert ids == list(CHECKS)  # every declared check is in the table, in its order
    assert all(catches and "\n" not in catches for _, catches in CHECKS.values())


def test_base_is_clean() -> None:
    assert run(base()) == []


def test_every_check_has_a_triggering_case() -> None:
    cases = (PORTMAP + PROTOCOLS + NODEIP + VERSIONS + PEERAUTH + AUTHZ + NETPOLICY + IDENTITY
             + INGRESS + GATEWAYAPI + AMBIENT + CAPTURE + PODS + RESTRICTED + INPUTS)
    assert {c for c, _, _ in cases} | {c for c, _ in RAYJOB} == set(CHECKS)


# The family test modules whose cases share one shape, (check, severity, mutate) on the clean
# base: the three tests each module would repeat run here once, over all of them. Modules with
# their own base or assertions (capture, identity, pods, protocols, restricted, rayjob) keep
# their tests.
COVERED = [test_audit_ambient, test_audit_authz, test_audit_capture, test_audit_portmap,
           test_audit_gatewayapi, test_audit_identity, test_audit_ingress, test_audit_inputs,
           test_audit_netpolicy, test_audit_nodeip, test_audit_peerauth, test_audit_pods,
           test_audit_versions]
TRIGGERED = [test_audit_ambient, test_audit_authz, test_audit_portmap, test_audit_gatewayapi,
             test_audit_ingress, test_audit_inputs, test_audit_netpolicy, test_audit_nodeip,
             test_audit_peerauth, test_audit_versions]
CLEANED = [test_audit_ambient, test_audit_authz, test_audit_portmap, test_audit_ingress,
           test_audit_netpolicy, test_audit_nodeip, test_audit_peerauth, test_audit_versions]


def _short(module: ModuleType) -> str:
    return module.__name__.removeprefix("test_audit_")


@pytest.mark.parametrize("module", COVERED, ids=_short)
def test_cases_cover_their_family(module: ModuleType) -> None:
    """Each family's cases name exactly the checks that family (same name) registers."""
    family = importlib.import_module(f"meshray.audit.{_short(module)}")
    assert {c for c, _, _ in module.CASES} == {c.id for c in family.CHECKS}


@pytest.mark.parametrize(("check", "severity", "mutate"), [
    pytest.param(*case, id=f"{_short(m)}:{cid}")
    for m in TRIGGERED for case, cid in zip(m.CASES, case_ids(m.CASES), strict=True)])
def test_check_triggers(check: str, severity: str, mutate: Callable[[list[Any]], None]) -> None:
    """The clean base has no finding of the check; the case's edit makes it, at its severity."""
    assert_triggers(check, severity, mutate)


@pytest.mark.parametrize(("name", "mutate"), [
    pytest.param(name, mutate, id=f"{_short(m)}:{name}")
    for m in CLEANED for name, mutate in m.CLEAN_VARIANTS])
def test_clean_variants(name: str, mutate: Callable[[list[Any]], None]) -> None:
    """A legal edit of the clean base changes no finding."""
    assert_clean(mutate)


def imports(path: Path) -> set[str]:
    """Absolute names of the meshray modules a source file imports (relative ones resolved)."""
    package = ["meshray", *path.parent.relative_to(PACKAGE).parts]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("meshray")}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            if not module.startswith("meshray"):
                continue
            out.add(module)
            out |= {f"{module}.{a.name}" for a in node.names}  # `from . import audit`
    return out


PACKAGE = Path(meshray.__file__).parent
MODEL = {"raymodel", "services", "protocol", "manifests", "render", "ports", "paths", "errors",
         "schema", "valuesfile"}
# the audit's modules that are no family: what families share (ground), and what runs them
GROUND = {"context", "findings", "kinds", "raypods", "acknowledge", "policies", "backends"}
RUNNER = {"__init__", "registry", "engine"}


def test_layering_is_one_way() -> None:
    """The model, render and ports never import the audit; nothing outside meshray/audit/
    imports the audit's modules, only the package's public names."""
    for path in PACKAGE.glob("*.py"):
        names = imports(path)
        audit_names = {n for n in names if n == "meshray.audit" or n.startswith("meshray.audit.")}
        if path.stem in MODEL:
            assert not audit_names, (path.name, audit_names)
        modules = {p.stem for p in (PACKAGE / "audit").glob("*.py")}
        internals = {n for n in audit_names if n.count(".") >= 2 and n.split(".")[2] in modules}
        assert not internals, (path.name, internals)


def module_name(path: Path) -> str:
    """``meshray.audit.engine`` for tools/meshray/audit/engine.py, ``meshray.audit`` for its
    ``__init__.py``."""
    parts = ["meshray", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Every meshray module under ``root`` -> the meshray modules it imports, wherever the
    import stands (module level, inside a function, under TYPE_CHECKING). ``from pkg import
    name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``."""
    files = {module_name(p): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.stem == "__init__" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name in files}
            elif isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] \
                    if node.level else []
                module = ".".join([*base, *(node.module.split(".") if node.module else [])])
                for a in node.names:
                    sub = f"{module}.{a.name}"
                    edges.add(sub if sub in files else module)
        graph[name] = {e for e in edges if e in files and e != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One import cycle per strongly connected group of modules, as the path ``a, b, ..., a``
    (Tarjan's algorithm, then a walk inside the group from its first module)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    out = []
    for group in groups:
        members = set(group)
        path = [group[0]]
        while True:
            # step to a module of the group that leads back: the cycle closes at a repeat
            nxt = min(w for w in graph[path[-1]] if w in members)
            if nxt in path:
                out.append([*path[path.index(nxt):], nxt])
                break
            path.append(nxt)
    return out


def test_cycles_finds_and_names_a_cycle() -> None:
    """The cycle finder itself: a loop of three is named in order, a tree has none."""
    loop = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(loop) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_no_import_cycle() -> None:
    """No meshray module imports itself back through others (a lazy import inside a
    function counts: it is the same loop, only later)."""
    graph = module_graph()
    assert graph.get("meshray.audit.engine")  # it found the modules and read their imports
    assert cycles(graph) == [], " ; ".join(" -> ".join(c) for c in cycles(graph))


def test_families_import_only_ground() -> None:
    """A check family imports the audit's ground modules and modules outside the audit, never
    another family (what two families share lives in a ground module), the registry, the
    engine or the package; a ground module imports no family. Every module of the audit is a
    registered family or named here as ground or runner."""
    graph = module_graph()
    audit_modules = {m.rpartition(".")[2] for m in graph if m.startswith("meshray.audit.")}
    families = {f.__name__.rpartition(".")[2] for f in registry.FAMILIES}
    unsorted = audit_modules - families - GROUND - RUNNER
    assert not unsorted, f"neither a registered family nor ground nor runner: {unsorted}"
    for name in sorted(audit_modules):
        tree = ast.parse((PACKAGE / "audit" / f"{name}.py").read_text())
        declares = any(isinstance(n, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "CHECKS" for t in n.targets) for n in tree.body)
        assert not declares or name in families, f"{name} declares CHECKS but is no family"
    audit_of = {m: m.rpartition(".")[2] for m in graph
                if m == "meshray.audit" or m.startswith("meshray.audit.")}
    audit_of["meshray.audit"] = "__init__"
    wrong: dict[str, list[str]] = {}
    for name in sorted(audit_modules & (families | GROUND)):
        took = {audit_of[t] for t in graph[f"meshray.audit.{name}"] if t in audit_of}
        if took - GROUND:
            wrong[name] = sorted(took - GROUND)
    assert wrong == {}, "audit modules importing a family or the runner: " + "; ".join(
        f"{name} -> {', '.join(took)}" for name, took in wrong.items())


# --- the kinds each family reads ----------------------------------------------------------

Input = tuple[str, list[Manifest], str]  # (what it is, the objects, the default namespace)
FOREIGN = FIXTURES / "foreign"


def _as_input(label: str, docs: list[dict[str, Any]], namespace: str = "default") -> Input:
    # sources of their own, so these runs are not mistaken for the family tests' inputs
    return label, [Manifest(d, f"{label}#{i}") for i, d in enumerate(docs)], namespace


def _edited(label: str, start: list[dict[str, Any]], edit: Callable[[Any], Any],
            namespace: str = "default") -> Input | None:
    docs = copy.deepcopy(start)
    try:
        edit(docs)
    except (KeyError, IndexError, StopIteration, TypeError, AttributeError, AssertionError):
        return None  # an edit written for the other base
    return _as_input(label, docs, namespace)


@pytest.fixture(scope="module")
def corpus() -> list[tuple[Input, list[Finding]]]:
    """Every audit case and clean variant of the family tests on the bases they fit (the
    clean base, the hardened one, the running Pods' base, the three-group bases, the RayJob
    example's render), and the foreign corpus; each with the findings of a whole audit."""
    cases = (PORTMAP + PROTOCOLS + NODEIP + VERSIONS + PEERAUTH + AUTHZ + NETPOLICY + IDENTITY
             + INGRESS + GATEWAYAPI + AMBIENT + CAPTURE + PODS + RESTRICTED + INPUTS)
    edits = [(f"{c[0]}-{i}", c[-1]) for i, c in enumerate(cases)] + [
        (f"clean-{name}", edit) for name, edit in VARIANTS]
    bases = {"base": base(), "hardened": hardened(), "live": live_base()}
    inputs_: list[Input | None] = [_as_input(name, docs) for name, docs in bases.items()]
    inputs_ += [_as_input("groups", THREE_GROUPS()), _as_input("groups-hard", THREE_HARDENED())]
    inputs_ += [_edited(f"{label}-{name}", docs, edit)
                for label, edit in edits for name, docs in bases.items()]
    for i, (check, _, make, index, group_edit) in enumerate(GROUP_CASES):
        docs = make()
        apply_to_group(docs, index, group_edit)
        inputs_.append(_as_input(f"{check}-{i}-group", docs))
    job = render(RenderRequest(values_files=[EXAMPLES_DIR / "rayjob.yaml"], namespace="jobs",
                               chart=CHART))
    inputs_.append(_as_input("rayjob", job, "jobs"))
    inputs_ += [_edited(f"{check}-{i}-rayjob", job, edit, "jobs")
                for i, (check, edit) in enumerate(RAYJOB)]
    for path in sorted(FOREIGN.glob("*.yaml")):
        objects, _ = read_stream(path.read_text(), path.name)
        inputs_.append((path.name, objects, "default"))
    return [(i, audit(i[1], namespace=i[2])) for i in inputs_ if i is not None]


def alone(family: ModuleType, reads: Sequence[kinds.Kind], objects: list[Manifest],
          namespace: str, monkeypatch: pytest.MonkeyPatch) -> list[Finding]:
    """The family's findings when the engine sorts only the kinds ``reads`` names and runs
    only the family's checks."""
    ids = {c.id for c in family.CHECKS}
    with monkeypatch.context() as m:
        m.setattr(registry, "KINDS", tuple(k for k in registry.KINDS if k in reads))
        m.setattr(registry, "PER_CLUSTER", tuple(
            c for c in registry.PER_CLUSTER if c.__module__ == family.__name__))
        m.setattr(registry, "ACROSS_INPUT", tuple(
            c for c in registry.ACROSS_INPUT if c.__module__ == family.__name__))
        return [f for f in audit(objects, namespace=namespace) if f.check in ids]


# inputs has no kind of its own: it judges every object the other families read
READING = [f for f in registry.FAMILIES if f is not inputs]


@pytest.mark.parametrize("family", READING, ids=[f.__name__.rpartition(".")[2] for f in READING])
def test_a_family_needs_only_the_kinds_it_reads(
        family: ModuleType, corpus: list[tuple[Input, list[Finding]]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """On every case, a family fed only the kinds its READS declares finds what it finds in a
    whole audit: what it reads is declared, not taken from the other families' kinds."""
    assert family.READS and set(family.READS) <= set(registry.KINDS)
    ids = {c.id for c in family.CHECKS}
    differ = [label for (label, objects, ns), full in corpus
              if alone(family, family.READS, objects, ns, monkeypatch)
              != [f for f in full if f.check in ids]]
    assert differ == []


BUCKETS = {k.bucket for k in kinds.ALL}


def lists_read(corpus: list[tuple[Input, list[Finding]]], monkeypatch: pytest.MonkeyPatch
               ) -> dict[str, set[str]]:
    """Family -> the lists of the run's ``Context`` its code touched over the whole corpus
    (its checks, and for rayjob the step that adds RayJobs' clusters): read off attribute
    access while that family's code runs, so a list counts even when it is empty."""
    read: dict[str, set[str]] = {}
    running: list[str] = []

    class Recording(Context):
        def __getattribute__(self, name: str) -> Any:
            if running and name in BUCKETS:
                read.setdefault(running[-1], set()).add(name)
            return super().__getattribute__(name)

    def as_family(fn: Callable[..., None]) -> Callable[..., None]:
        family = fn.__module__.rpartition(".")[2]

        def run_as(*args: Any) -> None:
            if len(args) == 3:  # a per-cluster check: the engine hands it ctx.clusters
                read.setdefault(family, set()).add("clusters")
            running.append(family)
            try:
                fn(*args)
            finally:
                running.pop()
        return run_as

    with monkeypatch.context() as m:
        m.setattr(engine, "Context", Recording)
        for step in ("PREPARE", "PER_CLUSTER", "ACROSS_INPUT"):
            m.setattr(registry, step, tuple(as_family(f) for f in getattr(registry, step)))
        for (_, objects, ns), _ in corpus:
            audit(objects, namespace=ns)
    return read


def test_a_family_declares_every_kind_it_reads(corpus: list[tuple[Input, list[Finding]]],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Each list of the run a family's code touches holds a kind its READS declares; the
    list of Ray clusters also holds RayJobs' clusters, so reading it declares both."""
    read = lists_read(corpus, monkeypatch)
    assert read.get("protocols", set()) >= {"services", "sidecars", "pods"}  # it saw them
    undeclared = {}
    for family in registry.FAMILIES:
        name = family.__name__.rpartition(".")[2]
        needs = {k for k in kinds.ALL if k.bucket in read.get(name, set())}
        if kinds.RAYCLUSTER in needs:
            needs |= set(kinds.CLUSTERS)
        if needs - set(family.READS):
            undeclared[name] = sorted(k.bucket for k in needs - set(family.READS))
    assert undeclared == {}


def test_negative_control_a_kind_left_out(corpus: list[tuple[Input, list[Finding]]],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison above sees a kind left out: ingress fed no Services finds the backends
    its cases name missing, which a whole audit finds."""
    from meshray.audit import ingress

    reads = [k for k in ingress.READS if k is not kinds.SERVICE]
    ids = {c.id for c in ingress.CHECKS}
    differ = [label for (label, objects, ns), full in corpus
              if alone(ingress, reads, objects, ns, monkeypatch)
              != [f for f in full if f.check in ids]]
    assert differ


def test_no_object_is_of_two_kinds(corpus: list[tuple[Input, list[Finding]]]) -> None:
    """The kinds do not overlap (so the order the engine tries them in decides nothing): a
    running Ray Pod is a Ray Pod, not also a workload; a RayJob is a RayJob."""
    pod = Manifest({"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": "demo-head-x", "labels": {"ray.io/cluster": "demo"}}}, "pod")
    job = Manifest({"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "j"}}, "j")
    other = Manifest({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}, "p")
    assert [k for k in kinds.ALL if k.test(pod)] == [kinds.RAY_POD]
    assert [k for k in kinds.ALL if k.test(job)] == [kinds.RAYJOB]
    assert [k for k in kinds.ALL if k.test(other)] == [kinds.WORKLOAD]
    seen = 0
    for (_, objects, _), _ in corpus:
        for m in objects:
            of = [k.bucket for k in kinds.ALL if k.test(m)]
            assert len(of) <= 1, (m.kind, m.name, of)
            seen += bool(of)
    assert seen > 1000  # the corpus holds objects of the kinds
