"""`meshray validate` and helm judge a pattern's `$` the same way.

yamale checks `regex(...)` with Python's re.match, where `$` also matches before a trailing
newline; helm checks the generated JSON Schema with Go's regexp, where `$` is the end of the
text. meshray's schema loader gives the yamale regexes Go's meaning without touching the
.yamale text or the generated JSON. The oracle here is helm's own verdict (raw exit status) and
the CLI's output; a plain yamale load is the negative control.
"""

from __future__ import annotations

import os
import subprocess
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yamale
import yaml
from chart_support import CHART, REPO
from meshray import schema as schema_mod
from meshray.schema import check
from yamale import validators as yv

MESHRAY = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin" / "meshray"
YAMALE = CHART / schema_mod.YAMALE_FILE


def helm() -> str:
    return os.environ.get("MESHRAY_HELM") or str(REPO / "bin" / "helm")


def defaults() -> dict[str, Any]:
    return dict(yaml.safe_load((CHART / "values.yaml").read_text()))


def regex_leaves(loaded: schema_mod.ChartSchema, node: Any, path: tuple[str, ...] = (),
                 ) -> list[tuple[tuple[str, ...], Any]]:
    """The regex() leaves of the static part of the schema (reachable by a dotted key)."""
    node = loaded.resolve(node)
    if isinstance(node, dict):
        out = []
        for key, sub in node.items():
            out += regex_leaves(loaded, sub, (*path, str(key)))
        return out
    return [(path, node)] if isinstance(node, yv.Regex) else []


def value_at(values: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = values
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def nested(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out: Any = value
    for key in reversed(path):
        out = {key: out}
    return dict(out)


def string_fields() -> list[tuple[tuple[str, ...], str]]:
    """Every static regex field whose default is a non-empty string, with that default."""
    loaded = schema_mod.load(YAMALE)
    vals = defaults()
    out = []
    for path, _ in regex_leaves(loaded, loaded.root):
        v = value_at(vals, path)
        if isinstance(v, str) and v:
            out.append((path, v))
    return out


def validate_refuses(values: dict[str, Any], path: tuple[str, ...], loaded: Any) -> bool:
    return any(p[:len(path)] == path for p, _, _ in check(loaded, values))


def helm_refuses(tmp: Path, path: tuple[str, ...], value: str) -> bool:
    f = tmp / ("_".join(path) + ".yaml")
    f.write_text(yaml.safe_dump(nested(path, value)))
    res = subprocess.run([helm(), "template", "meshray", str(CHART), "-f", str(f)],
                         capture_output=True, text=True, timeout=120, check=False)
    if res.returncode == 0:
        return False
    # the refusal must be the schema's verdict on this key, not an unrelated failure
    pointer = "/" + "/".join(path)
    return f"at '{pointer}'" in res.stderr


def test_go_dollar_rewrites_only_anchors() -> None:
    assert schema_mod.go_dollar(r"^a$") == r"^a\Z"
    assert schema_mod.go_dollar(r"^$|^b$") == r"^\Z|^b\Z"
    assert schema_mod.go_dollar(r"^[$]$") == r"^[$]\Z"  # a $ in a class is a character
    assert schema_mod.go_dollar(r"^\$$") == r"^\$\Z"  # an escaped $ is a character
    assert schema_mod.go_dollar(r"^[]$]x$") == r"^[]$]x\Z"  # "]" first in a class is a member
    assert schema_mod.go_dollar(r"^[^]$]$") == r"^[^]$]\Z"


def test_a_trailing_newline_is_refused_by_validate_and_by_helm(tmp_path: Path) -> None:
    loaded = schema_mod.load(YAMALE)
    values = defaults()
    values["clusterName"] = "ray\n"
    assert validate_refuses(values, ("clusterName",), loaded)
    assert helm_refuses(tmp_path, ("clusterName",), "ray\n")
    # the CLI says so too, naming the key
    f = tmp_path / "nl.yaml"
    f.write_text(yaml.safe_dump({"clusterName": "ray\n"}))
    res = subprocess.run([str(MESHRAY), "validate", str(f)], capture_output=True, text=True,
                         timeout=300, check=False)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "clusterName" in res.stdout, res.stdout


def test_validate_and_helm_agree_on_every_trailing_newline(tmp_path: Path) -> None:
    """For every static regex field: default + "\\n" is refused by both tools or by neither."""
    loaded = schema_mod.load(YAMALE)
    cases = string_fields()
    assert len(cases) >= 10, cases

    def verdicts(case: tuple[tuple[str, ...], str]) -> tuple[str, bool, bool]:
        path, default = case
        values = defaults()
        value_at(values, path[:-1])[path[-1]] = default + "\n"
        return (".".join(path), validate_refuses(values, path, loaded),
                helm_refuses(tmp_path, path, default + "\n"))

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = list(pool.map(verdicts, cases))
    disagree = [(key, v, h) for key, v, h in results if v != h]
    assert not disagree, f"(key, validate refuses, helm refuses): {disagree}"
    assert any(v for _, v, _ in results), "no field refused a trailing newline at all"


def plain_yamale_schema() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", SyntaxWarning)
        return yamale.make_schema(str(YAMALE))


def test_negative_control_python_dollar_accepts_the_newline() -> None:
    """Without the loader's rewrite, yamale's regex takes "ray\\n": the check above is real."""
    raw = plain_yamale_schema()
    node = raw._schema["clusterName"]
    assert isinstance(node, yv.Regex)
    assert not node.validate("ray\n"), "plain yamale should accept it (Python's $)"
    fixed = schema_mod.load(YAMALE).root["clusterName"]
    assert fixed.validate("ray\n"), "meshray's loader must refuse it (Go's $)"
    assert not fixed.validate("ray")


def test_the_generated_json_schema_is_unchanged() -> None:
    """The rewrite is for checking only: patterns in the JSON Schema keep the .yamale text."""
    loaded = schema_mod.load(YAMALE)
    raw = plain_yamale_schema()
    plain = schema_mod.ChartSchema(
        root=raw._schema, includes={n: i._schema for n, i in raw.includes.items()}, path=YAMALE)
    assert schema_mod.to_json_schema(loaded) == schema_mod.to_json_schema(plain)
    # and the rewrite did happen: the same schema's regexes now refuse a trailing newline
    rewritten = [r for _, n in regex_leaves(loaded, loaded.root) for r in n.regexes]
    assert rewritten and all(isinstance(r, schema_mod.GoAnchoredPattern) for r in rewritten)


@pytest.mark.parametrize("flag", ["multiline=True"])
def test_multiline_patterns_keep_pythons_meaning(tmp_path: Path, flag: str) -> None:
    """With re.MULTILINE, $ is an end-of-line anchor in Go's (?m) as well: left as it is."""
    f = tmp_path / "s.yamale"
    f.write_text(f"a: regex(r'^x$', {flag})\nb: regex(r'^x$')\n")
    loaded = schema_mod.load(f)
    assert not loaded.root["a"].validate("x\ny")
    assert loaded.root["b"].validate("x\n")
