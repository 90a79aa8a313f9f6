"""No string in values can inject YAML into the chart's render (issue 19).

Every string field and every free map key of the values schema (values.schema.json, walked
here, not the chart's helpers) gets payloads that break YAML when a template writes them
unquoted: a second document (a ClusterRoleBinding to cluster-admin), `"`, `'`, a template
action, `: `, ` #`, leading and trailing spaces, a trailing newline. For each field and each
payload, `helm template` must either refuse the values (non-zero exit) or render exactly the
documents (kind, name, namespace) it renders with a benign value there, of kinds the chart
renders anyway, with the payload back as the same string wherever the field's text lands.

A field only reaches the templates when its feature is on, so the fields are pushed on top of
base values files (values-examples/ and tests/fixtures/injection/). Reachability is proven,
not assumed: a benign value carrying a token unique to the field must show up in the render of
some base; the fields no base reaches are listed in UNREACHABLE with a reason, and a test keeps
that list exact. Enums are closed: every payload in every enum must be refused.

helm runs once per batch (many fields at once, each with its own token) and batches are split
when a render fails, so the whole module runs a few hundred renders side by side.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_support import CHART, EXAMPLES, REPO, merge_values

BASES_DIR = REPO / "tests" / "fixtures" / "injection"
SCHEMA_ERROR = "values don't meet the specifications of the schema"
FREE_KEY = "zinj"  # the name of the entry a field adds to a map with free keys

# The document a payload tries to smuggle in: cluster-admin for the default service account.
# The trailing "---" and "#" make the rest of the template's line a comment in a document of
# its own, so the render stays valid YAML wherever the value lands unquoted.
ROGUE_DOC = ("\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\n"
             "metadata:\n  name: injected\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n"
             "  kind: ClusterRole\n  name: cluster-admin\nsubjects:\n  - kind: ServiceAccount\n"
             "    name: default\n    namespace: default\n---\n# ")
# Payload classes: each turns a benign value (which passes the field's pattern, so a pattern
# anchored at one end only lets the payload through) into a hostile one.
PAYLOADS: dict[str, Callable[[str], str]] = {
    "document": lambda b: b + ROGUE_DOC,
    "double-quote": lambda b: b + '"q',
    "single-quote": lambda b: b + "'q",
    "template": lambda b: b + "{{ .Release.Name }}",
    "colon-hash": lambda b: b + ": q #q",
    "spaces": lambda b: " " + b + " ",
    "newline": lambda b: b + "\n",
}

# Fields no base reaches, with why. test_unreachable_list_is_exact keeps it true.
UNREACHABLE: dict[str, str] = {
    "gateway.trustDomain": "the chart refuses any value but mesh.trustDomain's (one trust "
                           "domain per mesh), so no value of its own reaches the render",
    "ingress.client.className": "the chart refuses any class but nginx (the Ray Client Ingress "
                                "needs ingress-nginx's ssl-passthrough)",
    "kuberay.version": "compared with the KubeRay release that added each field (semverCompare), "
                       "never written into an object",
    **{f"networkPolicy.{peers}From[].{part}": "the chart refuses a peer key other than "
       "podSelector, namespaceSelector, ipBlock (whose insides the schema leaves open)"
       for peers in ("dashboard", "client", "metrics", "serve") for part in ("<key>", "*")},
}


def helm() -> str:
    return os.environ.get("MESHRAY_HELM") or str(REPO / "bin" / "helm")


# ----------------------------------------------------------------------------- the schema


@dataclass(frozen=True)
class Field:
    """A place a string can go: ``path`` segments are property names, ``[]`` (an item appended
    to the list) and ``{}`` (an entry added to a map with free keys); ``key``: the string is a
    new key of the map at ``path``, else the value at ``path``."""

    path: tuple[str, ...]
    key: bool
    leaf: Any = field(compare=False)  # the JSON Schema the string must meet (a dict)

    @property
    def name(self) -> str:
        text = ".".join(self.path).replace(".[]", "[]").replace(".{}", ".*")
        return text + ".<key>" if self.key else text


@cache
def schema() -> dict[str, Any]:
    return dict(yaml.safe_load((CHART / "values.schema.json").read_text()))


def resolve(node: Any, root: dict[str, Any]) -> dict[str, Any]:
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/definitions/"), ref
        extra = {k: v for k, v in node.items() if k not in ("$ref", "description")}
        node = {**root["definitions"][ref.split("/")[-1]], **extra}
    return node if isinstance(node, dict) else {}


def types_of(node: dict[str, Any]) -> set[str] | None:
    """The JSON types ``node`` admits; None for any value."""
    t = node.get("type")
    if t is None:
        return None if not {"properties", "items", "additionalProperties"} & set(node) else (
            {"object"} if "items" not in node else {"array"})
    return {t} if isinstance(t, str) else set(t)


def walk(root: dict[str, Any]) -> tuple[list[Field], list[tuple[str, ...]]]:
    """Every string field and free map key under ``root``, and the paths of the enums."""
    fields: dict[tuple[tuple[str, ...], bool], Field] = {}
    enums: list[tuple[str, ...]] = []

    def visit(raw: Any, path: tuple[str, ...], depth: int) -> None:
        assert depth < 30, path  # the schema has no recursion; a cycle would loop here
        node = resolve(raw, root)
        if "enum" in node:
            enums.append(path)
            return
        if "anyOf" in node:
            for branch in node["anyOf"]:
                visit(branch, path, depth + 1)
            return
        types = types_of(node)
        if types is None or "string" in types:
            fields.setdefault((path, False), Field(path, False, node if types else {}))
        if types and "object" in types:
            for name, sub in node.get("properties", {}).items():
                visit(sub, (*path, name), depth + 1)
            extra = node.get("additionalProperties", {})
            if extra is not False:
                keys = resolve(node.get("propertyNames", {}), root)
                fields.setdefault((path, True), Field(path, True, keys))
                visit(extra, (*path, "{}"), depth + 1)
        if types and "array" in types:
            visit(node.get("items", {}), (*path, "[]"), depth + 1)

    visit(root, (), 0)
    return sorted(fields.values(), key=lambda f: (f.path, f.key)), sorted(set(enums))


# ----------------------------------------------------------------------------- values


def patterns(leaf: dict[str, Any], root: dict[str, Any]) -> list[str]:
    out = [leaf["pattern"]] if "pattern" in leaf else []
    for part in leaf.get("allOf", []):
        out += patterns(resolve(part, root), root)
    return out


def fits(text: str, leaf: dict[str, Any], root: dict[str, Any]) -> bool:
    """Whether a benign candidate (no newline, so Go's and Python's ``$`` agree) meets
    ``leaf``; helm has the last word, this only picks a value to try."""
    if len(text) < leaf.get("minLength", 0) or len(text) > leaf.get("maxLength", 1 << 30):
        return False
    if "anyOf" in leaf:
        return any(fits(text, resolve(b, root), root) for b in leaf["anyOf"]
                   if (types_of(resolve(b, root)) or {"string"}) & {"string"})
    if types_of(leaf) is not None and "string" not in (types_of(leaf) or set()):
        return False
    return all(re.search(p, text) for p in patterns(leaf, root))


def benign(leaf: dict[str, Any], token: str, number: int, root: dict[str, Any]) -> str:
    """A value ``leaf`` accepts that carries ``token`` (or ``number`` for a quantity)."""
    # a release X.Y.Z (ray.version) carries no letters: its unique number stands for the token
    for text in (token, "/" + token, token + ".example.com", "https://" + token + ".example.com",
                 "./" + token, "ns/" + token, "2.60.0-" + token, f"{number}m", f"2.{number}.0"):
        if fits(text, leaf, root):
            return text
    raise AssertionError(f"no benign candidate fits {leaf}")


def minimal(raw: Any, root: dict[str, Any], n: int = 0) -> Any:
    """The smallest value ``raw`` accepts (for the required siblings of a new item); strings
    carry ``n`` so that two new items never collide (the chart refuses duplicate env names)."""
    node = resolve(raw, root)
    if "enum" in node:
        return node["enum"][0]
    if "anyOf" in node:
        return minimal(node["anyOf"][0], root, n)
    types = types_of(node)
    if types is None or "string" in types:
        return benign(node, f"{FREE_KEY}{n}", 1, root) if types else f"{FREE_KEY}{n}"
    if "object" in types:
        out = {k: minimal(node["properties"][k], root, n) for k in node.get("required", [])}
        if node.get("minProperties", 0) > len(out):
            out[FREE_KEY] = minimal(node.get("additionalProperties", {}), root, n)
        return out
    if "array" in types:
        return [minimal(node.get("items", {}), root, n)] * node.get("minItems", 0)
    if "boolean" in types:
        return False
    if types & {"integer", "number"}:
        return max(int(node.get("minimum", 1)), 1)
    return None


# New list items the chart only takes whole: a volume needs a name, a mount names a volume of
# the pod (overlay adds that volume beside the mount), a sysctl has a name and a value.
ITEM_SEEDS: dict[str, Callable[[int], dict[str, Any]]] = {
    "volumes": lambda n: {"name": f"{FREE_KEY}{n}", "emptyDir": {}},
    "volumeMounts": lambda n: {"name": f"{FREE_KEY}{n}", "mountPath": f"/{FREE_KEY}{n}"},
    "sysctls": lambda n: {"name": f"kernel.{FREE_KEY}{n}", "value": "1"},
}


class Added(list[Any]):
    """Items appended to the list at this place; the base's own items stay in front."""


def overlay(raw: Any, path: tuple[str, ...], final: Callable[[dict[str, Any]], Any],
            eff: Any, root: dict[str, Any], n: int, seed: dict[str, Any] | None = None,
            ) -> Any:
    """The values that put ``final(node)`` at ``path`` over the effective values ``eff``; in a
    map the base does not have (a new item or entry) the required siblings get their minimal
    values (or ``seed``'s)."""
    node = resolve(raw, root)
    fresh = not isinstance(eff, dict)
    start = (dict(seed) if seed is not None else minimal(node, root, n)) if fresh else {}
    if not path:
        out = final(node)
        return {**start, **out} if isinstance(out, dict) and isinstance(start, dict) else out
    seg, rest = path[0], path[1:]
    if seg == "[]":
        return Added([overlay(node.get("items", {}), rest, final, None, root, n, seed)])
    assert isinstance(start, dict), path
    if seg == "{}":
        start[FREE_KEY] = overlay(node.get("additionalProperties", {}), rest, final,
                                  None if fresh else eff.get(FREE_KEY), root, n)
        return start
    sub_seed = ITEM_SEEDS[seg](n) if seg in ITEM_SEEDS and rest[:1] == ("[]",) else None
    start[seg] = overlay(node["properties"][seg], rest, final,
                         None if fresh else eff.get(seg), root, n, sub_seed)
    if seg == "volumeMounts" and sub_seed is not None:
        # the mount's volume, named as the mount (the probe's own text if it is the name)
        mount = start[seg][0]
        start["volumes"] = Added([{"name": mount["name"], "emptyDir": {}}])
    return start


def combine(a: Any, b: Any) -> Any:
    if isinstance(a, Added) and isinstance(b, Added):
        return Added([*a, *b])
    if isinstance(a, dict) and isinstance(b, dict):
        out = dict(a)
        for k, v in b.items():
            out[k] = combine(out[k], v) if k in out else v
        return out
    return b


def materialize(tree: Any, effective: Any) -> Any:
    """A values file: each Added list becomes the effective list plus the new items."""
    if isinstance(tree, Added):
        own = effective if isinstance(effective, list) else []
        return [*own, *(materialize(x, None) for x in tree)]
    if isinstance(tree, dict):
        eff = effective if isinstance(effective, dict) else {}
        return {k: materialize(v, eff.get(k)) for k, v in tree.items()}
    return tree


# ----------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class Base:
    name: str
    path: Path | None  # None: the chart's defaults alone

    def effective(self, chart: Path) -> dict[str, Any]:
        values = yaml.safe_load((chart / "values.yaml").read_text())
        if self.path is None:
            return dict(values)
        return merge_values(values, yaml.safe_load(self.path.read_text()) or {})


BASES = [Base("defaults", None),
         *(Base(p.stem, p) for p in EXAMPLES),
         *(Base("injection/" + p.stem, p) for p in sorted(BASES_DIR.glob("*.yaml")))]


@dataclass(frozen=True)
class Render:
    rc: int
    stdout: str
    stderr: str


def render(chart: Path, base: Base, values: dict[str, Any] | None) -> Render:
    with tempfile.TemporaryDirectory() as tmp:
        # --debug: a render that is not YAML still prints, so the culprit can be found in it
        args = [helm(), "template", "meshray", str(chart), "--namespace", "default", "--debug"]
        if base.path is not None:
            args += ["-f", str(base.path)]
        if values:
            text = yaml.safe_dump(values, allow_unicode=True, sort_keys=False)
            assert yaml.safe_load(text) == values  # the file says exactly what we mean
            (Path(tmp) / "v.yaml").write_text(text, encoding="utf-8")
            args += ["-f", str(Path(tmp) / "v.yaml")]
        res = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    return Render(res.returncode, res.stdout, res.stderr)


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


def identity(doc: dict[str, Any]) -> tuple[str, str, str]:
    meta = doc.get("metadata") or {}
    return str(doc.get("kind")), str(meta.get("name")), str(meta.get("namespace"))


def strings(node: Any) -> Iterator[str]:
    """Every string in a parsed document, map keys included."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from strings(k)
            yield from strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from strings(v)


@dataclass
class Probe:
    """One field with one string (benign or payload) and the token that marks where it lands."""

    field: Field
    text: str
    token: str
    n: int  # the field's number: new items and entries are made unique with it

    def values(self, root: dict[str, Any], effective: dict[str, Any]) -> Any:
        f = self.field
        if f.key:
            def final(node: dict[str, Any]) -> Any:
                return {self.text: minimal(node.get("additionalProperties", {}), root, self.n)}
        else:
            def final(node: dict[str, Any]) -> Any:
                return self.text
        return overlay(root, f.path, final, effective, root, self.n)


def values_for(probes: list[Probe], effective: dict[str, Any], root: dict[str, Any],
               ) -> dict[str, Any]:
    tree: Any = {}
    for p in probes:
        tree = combine(tree, p.values(root, effective))
    return dict(materialize(tree, effective))


def go_quoted(text: str) -> str:
    """How helm's schema report prints a string (Go's %q without the quotes)."""
    return text.encode("unicode_escape").decode().replace('"', '\\"')


def named_in(res: Render, probes: list[Probe]) -> list[Probe]:
    """The probes an error names: the schema report and the chart's messages quote the value
    (or key), which carries the probe's token; for a template whose output is not YAML, the
    probes whose token is in that template's output (helm --debug prints it)."""
    named = [p for p in probes if p.token in res.stderr]
    broken = re.search(r"YAML parse error on (\S+?):", res.stderr)
    if not named and broken:
        parts = res.stdout.split("# Source: ")
        text = "".join(part for part in parts if part.startswith(broken.group(1) + "\n"))
        named = [p for p in probes if p.token in text]
    return named


def settle(run: Callable[[list[Probe]], Render], probes: list[Probe],
           ) -> Iterator[tuple[list[Probe], Render]]:
    """Render ``probes`` together; set aside the ones the error names and split a batch whose
    render fails without naming one, down to single probes. Yields (batch, its render)."""
    if not probes:
        return
    res = run(probes)
    if res.rc == 0 or len(probes) == 1:
        yield probes, res
        return
    named = named_in(res, probes)
    rest = [p for p in probes if p not in named]
    if named and SCHEMA_ERROR in res.stderr:
        # the schema judges each value on its own: a value it names is refused
        for p in named:
            yield [p], Render(res.rc, "", res.stderr)
    elif named:
        # the chart's checks may name a value beside the culprit: each named one alone
        for p in named:
            yield from settle(run, [p])
    else:
        half = len(rest) // 2
        yield from settle(run, rest[:half])
        rest = rest[half:]
    yield from settle(run, rest)


def parallel(jobs: list[Callable[[], Any]]) -> list[Any]:
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return list(pool.map(lambda j: j(), jobs))


# ----------------------------------------------------------------------------- the checks


def token_of(i: int) -> str:
    return f"zq{i:03d}k"


@dataclass
class Reach:
    """Which bases each field reaches (by how many landings of its token), and in which round:
    a field that switches a feature off (gateway.existingGateway) hides others in its round,
    so each round retries the fields not reached yet, without the ones reached."""

    hits: dict[Field, dict[str, int]] = field(default_factory=dict)
    benign: dict[Field, str] = field(default_factory=dict)
    token: dict[Field, str] = field(default_factory=dict)

    home: dict[Field, str] = field(default_factory=dict)

    def best(self, f: Field) -> str | None:
        return self.home.get(f)

    def assign(self, bases: list[Base]) -> None:
        """A home base for each reached field: few bases, each taking all it reaches (fewer
        renders), in the order of ``bases``."""
        left = set(self.hits)
        while left:
            name = max((b.name for b in bases),
                       key=lambda n: sum(1 for f in left if n in self.hits[f]))
            for f in [f for f in left if name in self.hits[f]]:
                self.home[f] = name
                left.discard(f)


def benign_probes(fields: list[Field], root: dict[str, Any]) -> list[Probe]:
    out = []
    for i, f in enumerate(fields):
        token = token_of(i)
        # the chart wants an image tag that starts with ray.version (2.60.0 by default)
        text = ("2.60.0-" + token if f.name == "ray.image.tag"
                else benign(f.leaf, token, 7000 + i, root))
        out.append(Probe(f, text, token if token in text else text, i))
    return out


def reachability(chart: Path, bases: list[Base], fields: list[Field]) -> Reach:
    root = schema()
    probes = benign_probes(fields, root)
    reach = Reach(benign={p.field: p.text for p in probes},
                  token={p.field: p.token for p in probes})
    refused: set[tuple[str, Field]] = set()  # a base refuses this benign value: do not retry

    def one_base(base: Base, todo: list[Probe]) -> list[tuple[list[Probe], Render]]:
        eff = base.effective(chart)
        todo = [p for p in todo if (base.name, p.field) not in refused]
        return list(settle(lambda ps: render(chart, base, values_for(ps, eff, root)), todo))

    for _ in range(4):  # rounds
        todo = [p for p in probes if p.field not in reach.hits]
        runs = parallel([lambda b=b, t=todo: one_base(b, t) for b in bases])
        for base, settled in zip(bases, runs, strict=True):
            for batch, res in settled:
                if res.rc != 0:
                    refused.update((base.name, p.field) for p in batch)
                for p in batch if res.rc == 0 else []:
                    count = res.stdout.count(p.token)
                    if count:
                        reach.hits.setdefault(p.field, {})[base.name] = count
        if all(p.field in reach.hits for p in todo) or not any(
                p.field in reach.hits for p in todo):
            break
    reach.assign(bases)
    return reach


@dataclass(frozen=True)
class Finding:
    field: str
    payload: str
    base: str
    what: str


def check_batch(chart: Path, base: Base, probes: list[Probe], benign_of: dict[Field, str],
                chart_kinds: set[str]) -> list[Finding]:
    """The core check: each probe's payload is refused, or rendered as data."""
    root = schema()
    eff = base.effective(chart)

    def run(ps: list[Probe]) -> Render:
        return render(chart, base, values_for(ps, eff, root))

    findings: list[Finding] = []
    for batch, res in settle(run, probes):
        if res.rc != 0 and refused_as_values(res.stderr):
            continue  # refused: the payload never reaches a manifest
        if res.rc != 0:  # helm failed on a template's output: the value was read as YAML
            error = next((ln for ln in res.stderr.splitlines() if ln.startswith("Error:")),
                         res.stderr.strip()[-300:])
            findings.append(Finding(batch[0].field.name, "", base.name,
                                    f"{batch[0].text!r} broke the render, not refused as a "
                                    f"value: {error}"))
            continue
        ref = benign_render(chart, base, batch, benign_of)
        assert ref.rc == 0, (base.name, [p.field.name for p in batch], ref.stderr)
        problems = judge(res.stdout, batch, documents(ref.stdout), chart_kinds)
        if not problems:
            continue
        if len(batch) == 1:
            findings += [Finding(batch[0].field.name, "", base.name, what)
                         for _, what in problems]
            continue
        suspects = [p for p in batch if any(who is p for who, _ in problems)]
        if all(who is not None for who, _ in problems) and len(suspects) < len(batch):
            # only some values went astray (one field can hide another, as a worker group
            # hides workerDefaults): those again, in a batch of their own
            findings += check_batch(chart, base, suspects, benign_of, chart_kinds)
            continue
        half = len(batch) // 2  # the documents changed: split the batch to find who did it
        for part in (batch[:half], batch[half:]):
            findings += check_batch(chart, base, part, benign_of, chart_kinds)
    return findings


_benign_renders: dict[tuple[Path, str, frozenset[Field]], Render] = {}


def benign_render(chart: Path, base: Base, batch: list[Probe], benign_of: dict[Field, str],
                  ) -> Render:
    """The render with the batch's fields benign (the same for every payload class)."""
    key = (chart, base.name, frozenset(p.field for p in batch))
    if key not in _benign_renders:
        calm = [Probe(p.field, benign_of[p.field], p.token, p.n) for p in batch]
        _benign_renders[key] = render(chart, base, values_for(calm, base.effective(chart),
                                                              schema()))
    return _benign_renders[key]


def refused_as_values(stderr: str) -> bool:
    """helm refused the values themselves: the schema, or the chart's own checks (its one
    `fail`), which name the key and the value. A template whose output is not YAML is not a
    refusal: the value was written unquoted, and another payload may parse."""
    return SCHEMA_ERROR in stderr or "execution error at (meshray/templates/" in stderr


def judge(text: str, batch: list[Probe], expected: list[dict[str, Any]],
          chart_kinds: set[str]) -> list[tuple[Probe | None, str]]:
    """What is wrong with a render of ``batch``'s payloads: (the probe at fault or None, what)."""
    try:
        docs = documents(text)
    except yaml.YAMLError as exc:
        return [(None, f"the render is not YAML: {str(exc).splitlines()[0]}")]
    problems: list[tuple[Probe | None, str]] = []
    got, want = sorted(map(identity, docs)), sorted(map(identity, expected))
    if got != want:
        extra = sorted(set(got) - set(want))
        missing = sorted(set(want) - set(got))
        problems.append((None, f"documents differ from the benign render: extra {extra}, "
                               f"missing {missing}"))
    foreign = {identity(d)[0] for d in docs} - chart_kinds
    if foreign:
        problems.append((None, f"kinds the chart never renders: {sorted(foreign)}"))
    found = list(strings(docs))
    for p in batch:
        landed = [s for s in found if p.token in s]
        if not landed:
            problems.append((p, f"{p.field.name}: the value landed nowhere as a string"))
        bent = [s for s in landed if p.text not in s]
        if bent:
            problems.append((p, f"{p.field.name}: {p.text!r} came back as {bent[0]!r}"))
    return problems


def payload_probes(fields: list[Field], reach: Reach, cls: str) -> list[Probe]:
    out = []
    for i, f in enumerate(fields):
        if reach.best(f) is None:
            continue
        out.append(Probe(f, PAYLOADS[cls](reach.benign[f]), reach.token[f], i))
    return out


def run_checks(chart: Path, fields: list[Field], reach: Reach, classes: list[str],
               ) -> dict[str, list[Finding]]:
    """Findings per payload class: every reached field with that payload, in its best base."""
    kinds = chart_kinds(chart)
    by_name = {b.name: b for b in BASES}
    jobs: list[Callable[[], list[Finding]]] = []
    keys: list[str] = []
    for cls in classes:
        probes = payload_probes(fields, reach, cls)
        # each field goes to the base it was shown to land in (check_batch re-checks apart
        # the fields another one hid)
        for home in sorted({reach.best(p.field) or "" for p in probes}):
            batch = [p for p in probes if reach.best(p.field) == home]
            jobs.append(lambda b=by_name[home], ps=batch: check_batch(
                chart, b, ps, reach.benign, kinds))
            keys.append(cls)
    out: dict[str, list[Finding]] = {cls: [] for cls in classes}
    for cls, found in zip(keys, parallel(jobs), strict=True):
        out[cls] += [Finding(f.field, cls, f.base, f.what) for f in found]
    return out


@cache
def chart_kinds(chart: Path) -> set[str]:
    """The kinds the chart renders with a benign value, over every base."""
    renders = parallel([lambda b=b: render(chart, b, None) for b in BASES])
    return {identity(d)[0] for r in renders if r.rc == 0 for d in documents(r.stdout)}


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def fields() -> list[Field]:
    return walk(schema())[0]


@pytest.fixture(scope="module")
def reach(fields: list[Field]) -> Reach:
    return reachability(CHART, BASES, fields)


@pytest.fixture(scope="module")
def findings(fields: list[Field], reach: Reach) -> dict[str, list[Finding]]:
    return run_checks(CHART, fields, reach, list(PAYLOADS))


# ----------------------------------------------------------------------------- tests


def test_the_walk_finds_the_fields_the_issue_names(fields: list[Field]) -> None:
    names = {f.name for f in fields}
    for expected in ("gateway.routes.dashboard.pathPrefix", "gatewayAPI.routes.serve.pathPrefix",
                     "ingress.dashboard.path", "ingress.dashboard.tls.secretName",
                     "gateway.https.credentialName", "head.annotations.<key>",
                     "head.annotations.*", "workerGroups.*.nodeSelector.<key>",
                     "workerGroups.*.env[].value", "head.rayStartParams.*",
                     "commonLabels.<key>", "mtls.extraPolicies[].matchLabels.<key>",
                     "gateway.selector.<key>", "mesh.authorizationPolicy.clientPrincipals[]"):
        assert expected in names, expected
    assert len(fields) > 150, len(fields)


def test_every_field_is_reached_or_excluded(fields: list[Field], reach: Reach) -> None:
    unreached = sorted(f.name for f in fields if reach.best(f) is None)
    assert unreached == sorted(UNREACHABLE), (
        "fields no base reaches must be in UNREACHABLE (with a reason), and only those: "
        f"not excluded: {sorted(set(unreached) - set(UNREACHABLE))}; excluded but reached: "
        f"{sorted(set(UNREACHABLE) - set(unreached))}")


@pytest.mark.parametrize("cls", list(PAYLOADS))
def test_no_payload_gets_into_the_render(cls: str,
                                         findings: dict[str, list[Finding]]) -> None:
    found = findings[cls]
    assert not found, f"{len(found)} field(s) let a {cls!r} payload through:\n" + "\n".join(
        f"  {f.field} (base {f.base}): {f.what}" for f in found)


def test_enums_refuse_every_payload() -> None:
    """An enum cannot carry a string: helm's schema refuses each payload in each enum."""
    root = schema()
    enums = walk(root)[1]
    assert len(enums) >= 15, enums
    base = BASES[0]
    eff = base.effective(CHART)

    def one(cls: str) -> tuple[str, Render]:
        tree: Any = {}
        for i, path in enumerate(enums):
            text = PAYLOADS[cls](token_of(i))
            tree = combine(tree, overlay(root, path, lambda _n, t=text: t, eff, root, i))
        return cls, render(CHART, base, dict(materialize(tree, eff)))

    def pointer(path: tuple[str, ...]) -> str:
        """The JSON pointer helm names: an appended item has some index, an entry FREE_KEY."""
        parts = [r"\d+" if p == "[]" else FREE_KEY if p == "{}" else re.escape(p) for p in path]
        return "at '/" + "/".join(parts) + "'"

    for cls, res in parallel([lambda c=c: one(c) for c in PAYLOADS]):
        assert res.rc != 0 and SCHEMA_ERROR in res.stderr, (cls, res.stderr)
        missing = [".".join(p) for p in enums if not re.search(pointer(p), res.stderr)]
        assert not missing, (cls, missing, res.stderr)


def test_negative_control_an_unquoted_value_is_caught(
        fields: list[Field], reach: Reach, tmp_path: Path) -> None:
    """Drop the ``| quote`` of one field the chart quotes today, and its pattern (a field
    without one is what the quote protects): the core check must find it."""
    target = next(f for f in fields if f.name == "gateway.auth.jwtIssuer")
    base = {b.name: b for b in BASES}[reach.best(target) or ""]
    kinds = chart_kinds(CHART)
    probes = {cls: Probe(target, make(reach.benign[target]), reach.token[target],
                         fields.index(target)) for cls, make in PAYLOADS.items()}
    copy = tmp_path / "meshray"
    shutil.copytree(CHART, copy)
    template = copy / "templates" / "gateway" / "requestauthentication.yaml"
    quoted = "{{ $gw.auth.jwtIssuer | quote }}"
    text = template.read_text()
    assert text.count(quoted) == 1, "the control's quote moved; point the control at it"
    template.write_text(text.replace(quoted, "{{ $gw.auth.jwtIssuer }}"))
    schema_file = copy / "values.schema.json"
    loose = json.loads(schema_file.read_text())
    loose["properties"]["gateway"]["properties"]["auth"]["properties"]["jwtIssuer"] = {
        "type": "string"}
    schema_file.write_text(json.dumps(loose))

    def both(p: Probe) -> tuple[list[Finding], list[Finding]]:
        return (check_batch(CHART, base, [p], reach.benign, kinds),
                check_batch(copy, base, [p], reach.benign, kinds))

    results = dict(zip(probes, parallel([lambda p=p: both(p) for p in probes.values()]),
                       strict=True))
    for cls, (real, _) in results.items():
        assert real == [], (cls, "the control needs a field that is safe in the real chart", real)
    caught = sorted(cls for cls, (_, broken) in results.items() if broken)
    # a second document, a comment, a trailing newline: each breaks an unquoted value
    assert {"document", "colon-hash", "newline"} <= set(caught), caught
