"""The chart's templates as source code a newcomer can read: short lines, messages that name
real values keys, and component folders that lean only on root helpers.

Fast checks over the template text (no render), each with a self-test on a small synthetic
input that shows the check failing when its rule is broken; and the render comparison tool
(tools/dev/compare_renders.py) on two copies of the chart, one of them altered.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from chart_support import CHART, REPO

TEMPLATES = CHART / "templates"
MAX_LINE = 160
# The folders of the chart's components: each leans on the root's helpers, never on another's.
COMPONENTS = ("cluster", "mesh", "gateway", "gatewayapi", "ingress")
# Stands for a part of a key the template fills in at render time (a group name, an index).
WILD = "\x00"


def template_files(root: Path = TEMPLATES) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


# ---- line length ------------------------------------------------------------------------------


def long_lines(root: Path = TEMPLATES, limit: int = MAX_LINE) -> list[str]:
    """Every template line longer than limit, as file:line (length)."""
    out = []
    for path in template_files(root):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if len(line) > limit:
                out.append(f"{path.relative_to(root)}:{number} ({len(line)} characters)")
    return out


def test_no_template_line_over_160_characters() -> None:
    lines = long_lines()
    assert not lines, f"template lines over {MAX_LINE} characters:\n" + "\n".join(lines)


def test_long_line_check_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "mesh").mkdir()
    (tmp_path / "mesh" / "x.yaml").write_text("a\n" + "b" * MAX_LINE + "\n" + "c" * 161 + "\n")
    assert long_lines(tmp_path) == ["mesh/x.yaml:3 (161 characters)"]


# ---- reading template actions -----------------------------------------------------------------

# A token of a template action: a string, a raw string, a character, a parenthesis, or a word.
TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|`[^`]*`|\'(?:[^\'\\]|\\.)*\'|[()]|(?:(?!\}\})[^\s()"`\'])+')
Expr = str | list["Expr"]


@dataclass(frozen=True)
class Action:
    """One `{{ ... }}` of a template (comments are skipped): its line and parsed tokens."""

    line: int
    tokens: list[Expr]


def parse(tokens: list[str]) -> list[Expr]:
    """Nest the tokens of an action by parentheses."""
    stack: list[list[Expr]] = [[]]
    for tok in tokens:
        if tok == "(":
            stack.append([])
        elif tok == ")":
            inner = stack.pop()
            stack[-1].append(inner)
        else:
            stack[-1].append(tok)
    return stack[0]


def actions(text: str) -> Iterator[Action]:
    """The actions of a template, in order; comments `{{/* */}}` yield nothing."""
    pos = 0
    while (start := text.find("{{", pos)) >= 0:
        body_start = start + 2
        if text.startswith("- ", body_start) or text.startswith("-\n", body_start):
            body_start += 2
        rest = text[body_start:].lstrip()
        if rest.startswith("/*"):
            end = text.index("*/", body_start) + 2
            pos = text.index("}}", end) + 2
            continue
        tokens = []
        i = body_start
        while not text.startswith("}}", i):
            if i >= len(text):
                raise ValueError(f"unclosed action at line {text.count(chr(10), 0, start) + 1}")
            match = TOKEN.match(text, i)
            if match is None:  # whitespace
                i += 1
                continue
            tokens.append(match.group())
            i = match.end()
        if tokens and tokens[-1] == "-":  # the right trim marker
            tokens.pop()
        pos = i + 2
        yield Action(text.count("\n", 0, start) + 1, parse(tokens))


def defines(text: str) -> Iterator[tuple[str, list[Action]]]:
    """Each define of a template with its actions (a define runs to the next one)."""
    name = ""
    body: list[Action] = []
    for action in actions(text):
        t = action.tokens
        if len(t) >= 2 and t[0] == "define" and isinstance(t[1], str):
            if name:
                yield name, body
            name, body = json.loads(t[1]), []
        else:
            body.append(action)
    if name:
        yield name, body


def walk(expr: Expr) -> Iterator[list[Expr]]:
    """Every command (token list) inside an expression, outermost first."""
    if isinstance(expr, list):
        yield expr
        for item in expr:
            yield from walk(item)


# ---- messages name real values keys -----------------------------------------------------------

Env = dict[str, list[list[Expr]]]


def literal(tok: Expr) -> str | None:
    if isinstance(tok, str) and tok[:1] == '"':
        return str(json.loads(tok))
    if isinstance(tok, str) and tok[:1] == "`":
        return tok[1:-1]
    return None


def candidates(expr: Expr | list[Expr], env: Env, depth: int = 0) -> list[str]:
    """The strings an expression can produce, with WILD for what only the render knows."""
    if depth > 8:
        return [WILD]
    if isinstance(expr, list) and len(expr) == 1:
        return candidates(expr[0], env, depth + 1)
    if isinstance(expr, str):
        value = literal(expr)
        if value is not None:
            return [value]
        if expr in env:
            return [c for e in env[expr] for c in candidates(e, env, depth + 1)]
        return [WILD]
    if not expr:
        return [WILD]
    head, args = expr[0], expr[1:]
    if head == "printf" and args:
        out = []
        for fmt in candidates(args[0], env, depth + 1):
            out += format_all(fmt, [candidates(a, env, depth + 1) for a in args[1:]])
        return out
    if head == "print":
        out = [""]
        for arg in args:
            out = [o + c for o in out for c in candidates(arg, env, depth + 1)]
        return out
    if head == "ternary" and len(args) == 3:
        return candidates(args[0], env, depth + 1) + candidates(args[1], env, depth + 1)
    return [WILD]


def format_all(fmt: str, args: list[list[str]]) -> list[str]:
    """fmt with each verb replaced by every candidate of its argument (WILD if missing)."""
    parts = re.split(r"(%[-+# 0-9.]*[a-zA-Z%])", fmt)
    out = [""]
    arg = 0
    for part in parts:
        if part == "%%":
            out = [o + "%" for o in out]
        elif part.startswith("%") and len(part) > 1:
            values = args[arg] if arg < len(args) else [WILD]
            arg += 1
            if part.endswith("q"):
                values = [v if v == WILD else json.dumps(v) for v in values]
            out = [o + v for o in out for v in values]
        else:
            out = [o + part for o in out]
    return out


def define_env(
    body: list[Action], group_keys: list[str], port_keys: list[str], worker_keys: list[str]
) -> Env:
    """What each variable of a define may hold: every `$x := ...` / `$x = ...` assignment, and
    `.key` as the group sources' (or the port map's) keys where the define ranges over them."""
    env: Env = {}
    for action in body:
        t = action.tokens
        if len(t) >= 3 and isinstance(t[0], str) and t[0].startswith("$") and t[1] in (":=", "="):
            env.setdefault(t[0], []).append(t[2:])
        # `range $i, $x := list "a" "b"` gives $x each listed string
        if t and t[0] == "range" and ":=" in t:
            names = [x for x in t[1 : t.index(":=")] if isinstance(x, str)]
            source = t[t.index(":=") + 1 :]
            if names and source and source[0] == "list":
                env.setdefault(names[-1].rstrip(","), []).extend([[s] for s in source[1:]])
            # `range $k, $v := dict "a" x "b" y` gives $k each key
            if len(names) == 2 and source and source[0] == "dict":
                env.setdefault(names[0].rstrip(","), []).extend([[s] for s in source[1::2]])
        if t and t[0] == "range" and ".model.groupSources" in t:
            env[".key"] = [[json.dumps(k)] for k in group_keys]
        if t and t[0] == "range" and ".model.ports" in t:
            env[".key"] = [[json.dumps(k)] for k in port_keys]
    # the key of the worker ports, as the model gives it
    for ref in (".model.workerPortsKey", "$.model.workerPortsKey"):
        env[ref] = [[json.dumps(k)] for k in worker_keys]
    return env


def group_source_keys() -> list[str]:
    """The keys meshray.model.groups gives the group sources (head, workerDefaults, and each
    workerGroups entry), read from _model.tpl's dicts."""
    text = (TEMPLATES / "_model.tpl").read_text()
    keys = re.findall(r'\(dict "key" (?:"([^"]+)"|\(printf "([^"]+)")', text)
    return [(a or b).replace("%s", WILD) for a, b in keys]


def port_map_keys() -> list[str]:
    """The values keys of the port map's entries (`"key" "ports.gcs"` ... in _ports.tpl)."""
    return re.findall(r'"key" "([^"]+)"', (TEMPLATES / "_ports.tpl").read_text())


def worker_port_keys() -> list[str]:
    """The keys the model names the worker ports by ($m.workerPortsKey, from _ports.tpl)."""
    return re.findall(r'\$workersKey :?= "([^"]+)"', (TEMPLATES / "_ports.tpl").read_text())


@dataclass(frozen=True)
class NamedKey:
    """A values key a template names in a message, and where."""

    where: str
    key: str


def message_keys(root: Path = TEMPLATES) -> tuple[list[NamedKey], list[str]]:
    """The key at the start of every validation message (`$problems = append $problems MSG`),
    every `"key"` of a dict that carries a message's key, and the keys meshray.offSettings
    names; with the messages whose key only the render knows (where they are)."""
    group_keys = group_source_keys() if (root / "_model.tpl").exists() else []
    port_keys = port_map_keys() if (root / "_ports.tpl").exists() else []
    worker_keys = worker_port_keys() if (root / "_ports.tpl").exists() else []
    found: list[NamedKey] = []
    unresolved: list[str] = []
    for path in template_files(root):
        for define, body in defines(path.read_text()):
            env = define_env(body, group_keys, port_keys, worker_keys)
            for action in body:
                where = f"{path.relative_to(root)}:{action.line} ({define})"
                exprs: list[Expr] = []
                t = action.tokens
                if t[:4] == ["$problems", "=", "append", "$problems"] and len(t) > 4:
                    exprs.append(t[4:])
                for cmd in walk(t):
                    if cmd and cmd[0] == "dict":
                        pairs = list(zip(cmd[1::2], cmd[2::2], strict=False))
                        exprs += [v for k, v in pairs if k in ('"key"', '"switch"')]
                        for k, v in pairs:
                            if k == '"set"' and isinstance(v, list) and v[:1] == ["dict"]:
                                exprs += [s for s in v[1::2] if literal(s) is not None]
                for expr in exprs:
                    for text in candidates(expr, env):
                        key = text.split(": ", 1)[0]
                        if key.startswith(WILD):  # which values section only the render knows
                            unresolved.append(where)
                        elif NamedKey(where, key) not in found:
                            found.append(NamedKey(where, key))
    return found, unresolved


def key_in_values(values: Any, key: str) -> bool:
    """Whether a dotted key (WILD for a render-time part, [n] for a list index) is a key of the
    values: map keys must exist, except under an empty map, list or string, whose entries the
    schema defines (labels, pod-spec fields); a workerGroups entry has workerDefaults' keys."""
    segments = re.findall(r"(?:[^.\[\]]|\[[^\]]*\])+", key)
    return _walk_key(values, values, segments, ())


def _walk_key(root: Any, node: Any, segments: list[str], path: tuple[str, ...]) -> bool:
    if not segments:
        return True
    name, *indexes = re.split(r"\[[^\]]*\]", segments[0])
    rest = segments[1:]
    if path == ("workerGroups",):
        # workerGroups.<name>: any group name, holding what workerDefaults holds
        return _walk_key(root, root["workerDefaults"], rest, ("workerDefaults",))
    if node in (None, "", {}, []):
        return True
    if not isinstance(node, dict):
        return False
    pattern = re.compile("^" + ".*".join(map(re.escape, name.split(WILD))) + "$")
    matches = [k for k in node if pattern.match(str(k))]
    for k in matches:
        child = node[k]
        for _ in indexes:
            child = child[0] if isinstance(child, list) and child else None
        if _walk_key(root, child, rest, (*path, k)):
            return True
    return False


def values() -> Any:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def test_messages_name_real_values_keys() -> None:
    found, _ = message_keys()
    doc = values()
    wrong = [
        f"{k.where}: {k.key.replace(WILD, '<*>')}" for k in found if not key_in_values(doc, k.key)
    ]
    assert not wrong, "messages name keys values.yaml does not have:\n" + "\n".join(wrong)
    # The check reads most messages: it is not silently matching nothing.
    assert len({k.where for k in found}) > 120


def test_message_key_check_catches_an_unknown_key(tmp_path: Path) -> None:
    (tmp_path / "cluster").mkdir()
    (tmp_path / "cluster" / "_v.tpl").write_text(
        '{{- define "meshray.validate.x" -}}\n'
        "{{- $p := .ctx.Values.ports -}}\n"
        '{{- $key := printf "%s.rayStartParams" .key -}}\n'
        '{{- $problems = append $problems (printf "ports.workerPorts: %d" 1) -}}\n'
        '{{- $problems = append $problems (printf (print "ports.minWorkerPort: %d"\n'
        '  " is wrapped") 1) -}}\n'
        '{{- $problems = append $problems (printf "%s.%s: %q" $key "x" "y") -}}\n'
        '{{- $problems = append $problems "ports.nope: plain" -}}\n'
        '{{- $x := include "meshray.offSettings" (dict "switch" "gateway.enabled"\n'
        '  "set" (dict "gateway.https.enabled" 1 "gateway.htps.port" 2)) -}}\n'
        "{{- end -}}\n"
    )
    found, unresolved = message_keys(tmp_path)
    doc = values()
    verdict = {k.key.replace(WILD, "*"): key_in_values(doc, k.key) for k in found}
    assert verdict == {
        "ports.workerPorts": False,
        "ports.minWorkerPort": True,
        "ports.nope": False,
        "gateway.enabled": True,
        "gateway.https.enabled": True,
        "gateway.htps.port": False,
    }
    # `.key` outside a range over the group sources: the render alone knows the section
    assert unresolved == ["cluster/_v.tpl:7 (meshray.validate.x)"]


def test_key_walk_follows_values_shapes() -> None:
    doc = values()
    assert key_in_values(doc, f"workerGroups.{WILD}.replicas")
    assert not key_in_values(doc, f"workerGroups.{WILD}.replica")
    assert key_in_values(doc, f"head.env[{WILD}].name")  # an empty list: the schema's shape
    assert key_in_values(doc, "commonLabels.app.kubernetes.io/name")
    assert key_in_values(doc, f"mesh.authorizationPolicy.{WILD}Principals[{WILD}]")
    assert not key_in_values(doc, f"mesh.authorizationPolicy.{WILD}Principal")
    assert not key_in_values(doc, "ray.version.major")


# ---- component folders lean on root helpers only ----------------------------------------------


def includes_across_components(root: Path = TEMPLATES) -> list[str]:
    """Every include/template in a component folder of a define another component folder holds,
    as `file:line includes NAME (defined in FOLDER/)`."""
    where: dict[str, str] = {}
    calls: list[tuple[Path, int, str]] = []
    for path in template_files(root):
        for action in actions(path.read_text()):
            for cmd in walk(action.tokens):
                for i, tok in enumerate(cmd[:-1]):
                    name = literal(cmd[i + 1])
                    if name is None:
                        continue
                    if tok == "define":
                        where[name] = path.relative_to(root).parts[0]
                    elif tok in ("include", "template"):
                        calls.append((path, action.line, name))
    out = []
    for path, line, name in calls:
        folder = path.relative_to(root).parts[0]
        home = where.get(name, "")
        if folder in COMPONENTS and home in COMPONENTS and home != folder:
            out.append(f"{path.relative_to(root)}:{line} includes {name} (defined in {home}/)")
    return out


def test_component_folders_include_only_their_own_and_root_defines() -> None:
    found = includes_across_components()
    assert not found, "a component folder includes a sibling's define:\n" + "\n".join(found)


def test_cross_component_check_catches_a_sibling_include(tmp_path: Path) -> None:
    for folder in ("mesh", "gateway"):
        (tmp_path / folder).mkdir()
    (tmp_path / "_root.tpl").write_text('{{- define "meshray.root" -}}r{{- end -}}\n')
    (tmp_path / "gateway" / "_g.tpl").write_text('{{- define "meshray.g" -}}g{{- end -}}\n')
    (tmp_path / "mesh" / "_m.tpl").write_text(
        '{{- define "meshray.m" -}}{{ include "meshray.root" . }}{{- end -}}\n'
        '{{/* a comment may name {{ include "meshray.g" . }} */}}\n'
        '{{- $x := list\n  (include "meshray.g" .) -}}\n'
    )
    assert includes_across_components(tmp_path) == [
        "mesh/_m.tpl:3 includes meshray.g (defined in gateway/)"
    ]


# ---- the render comparison tool ---------------------------------------------------------------


def compare_tool() -> ModuleType:
    path = REPO / "tools" / "dev" / "compare_renders.py"
    spec = importlib.util.spec_from_file_location("compare_renders", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["compare_renders"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tool() -> ModuleType:
    return compare_tool()


def copy_chart(tmp_path: Path, name: str) -> Path:
    out = tmp_path / name
    shutil.copytree(CHART, out)
    return out


def test_compare_finds_no_difference_between_equal_charts(tool: Any, tmp_path: Path) -> None:
    bad = next((REPO / "tests/fixtures/values-corpus/bad/ports").glob("*.yaml"))
    inputs = [tool.Input("default", None), tool.Input("bad", bad)]
    report = tool.compare(tool.helm_binary(), CHART, copy_chart(tmp_path, "same"), inputs)
    assert report.differences == []


def test_compare_reports_a_changed_manifest_and_message(tool: Any, tmp_path: Path) -> None:
    changed = copy_chart(tmp_path, "changed")
    service = changed / "templates" / "cluster" / "headless-service.yaml"
    service.write_text(service.read_text().replace("kind: Service", "kind: Service\n# x", 1))
    validate = changed / "templates" / "cluster" / "_validate.tpl"
    validate.write_text(validate.read_text().replace("is listed twice", "is listed 2x", 1))
    bad = REPO / "tests/fixtures/values-corpus/bad/ports/worker-list-duplicate.yaml"
    inputs = [tool.Input("default", None), tool.Input("dup", bad)]
    report = tool.compare(tool.helm_binary(), CHART, changed, inputs, jobs=1)
    diffs = {d.label: d.diff for d in report.differences}
    assert set(diffs) == {"default", "dup"}
    assert "+# x" in diffs["default"]
    assert any(line.startswith("+") and "is listed 2x" in line for line in diffs["dup"])


def test_compare_reports_changed_notes(tool: Any, tmp_path: Path) -> None:
    # Helm 4's client-side dry run renders NOTES without a cluster (Helm 3's needs one), so
    # this check runs with the checkout's Helm 4 whichever helm the suite is run with.
    helm = str(REPO / "bin" / "helm")
    assert tool.notes(helm, CHART, None).returncode == 0, "NOTES not renderable with bin/helm"
    changed = copy_chart(tmp_path, "notes")
    notes = changed / "templates" / "NOTES.txt"
    notes.write_text(notes.read_text() + "one more line\n")
    report = tool.compare(helm, CHART, changed, [tool.Input("default", None)])
    assert [d.label for d in report.differences] == ["default"]
    assert "+one more line" in report.differences[0].diff


def test_compare_masks_only_helms_random_schema_location(tool: Any) -> None:
    err = "- at '/gateway': invalid propertyName 'GPU'\n- at '/ports/gcs': got string\n"
    assert tool.UNSTABLE.sub(r"\1'<masked>'\2", err) == (
        "- at '<masked>': invalid propertyName 'GPU'\n- at '/ports/gcs': got string\n"
    )


def test_compare_reads_the_meshray_values_of_the_gitops_examples(tool: Any) -> None:
    gitops = REPO / "values-examples" / "gitops"
    found = {
        f"{p.name}#{label}": v for p in gitops.glob("*.yaml") for label, v in tool.gitops_values(p)
    }
    assert set(found) == {
        "argocd-application.yaml#Application/meshray",
        "flux-helmrelease.yaml#HelmRelease/meshray",
    }
    assert all(v["clusterName"] == "ray" for v in found.values())
