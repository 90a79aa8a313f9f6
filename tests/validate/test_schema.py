"""`meshray schema`: yamale -> JSON Schema conversion, strictness, agreement, drift.

Oracles: hand-written JSON for a fixture schema; the `jsonschema` library and yamale itself
judging the same values (they must agree); helm refusing a typo through the generated file.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yamale
import yaml
from chart_support import CHART, EXAMPLES, merge_values
from meshray import schema as schema_mod
from meshray.cli import main
from meshray.render import RenderError, RenderRequest, render_text

FIXTURE = """\
name: regex('^[a-z]+$', name='a word')
count: int(min=1, max=10)
mode: enum('A', 'B')
title: str(min=1, required=False)
labels: map(str(), key=str())
groups: map(include('group'), key=regex('^[a-z]+$'))
tags: list(int(), min=1)
either: any(int(), bool())
---
group:
  size: int(min=0)
"""


def load_fixture(tmp_path: Path) -> schema_mod.ChartSchema:
    p = tmp_path / "s.yamale"
    p.write_text(FIXTURE)
    return schema_mod.load(p)


def test_fixture_conversion(tmp_path: Path) -> None:
    out = schema_mod.to_json_schema(load_fixture(tmp_path), {"count": "How many."})
    assert out["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert out["type"] == "object" and out["additionalProperties"] is False
    assert out["required"] == ["name", "count", "mode", "labels", "groups", "tags", "either"]
    p = out["properties"]
    # a pattern used twice (name, and the groups' keys) is compiled once: one definition
    assert p["name"] == {"$ref": "#/definitions/pattern01"}
    assert p["count"] == {"description": "How many.", "type": "integer", "minimum": 1,
                          "maximum": 10}
    assert p["mode"] == {"enum": ["A", "B"]}
    assert p["title"] == {"type": "string", "minLength": 1}
    assert p["labels"] == {"type": "object", "additionalProperties": {"type": "string"}}
    assert p["groups"] == {
        "type": "object",
        "propertyNames": {"$ref": "#/definitions/pattern01"},
        "additionalProperties": {"$ref": "#/definitions/group"}}
    assert p["tags"] == {"type": "array", "items": {"type": "integer"}, "minItems": 1}
    assert p["either"] == {"type": ["integer", "boolean"]}
    # an include without descriptions inside is written once and referenced
    assert out["definitions"] == {
        "group": {"type": "object", "properties": {"size": {"type": "integer", "minimum": 0}},
                  "required": ["size"], "additionalProperties": False},
        "pattern01": {"type": "string", "pattern": "^[a-z]+$"}}


def test_an_include_with_descriptions_inside_stays_inline(tmp_path: Path) -> None:
    """values.yaml describes keys by path, so an include whose keys have descriptions where
    it is used cannot be shared: it is written out in place."""
    out = schema_mod.to_json_schema(load_fixture(tmp_path), {"groups.*.size": "Pods."})
    assert "group" not in out.get("definitions", {})
    group = out["properties"]["groups"]["additionalProperties"]
    assert group["properties"]["size"]["description"] == "Pods."


def test_unsupported_and_recursive_schemas_fail_cleanly(tmp_path: Path) -> None:
    p = tmp_path / "r.yamale"
    p.write_text("a: include('x')\n---\nx:\n  b: include('x')\n")
    with pytest.raises(schema_mod.SchemaError, match="recursive"):
        schema_mod.to_json_schema(schema_mod.load(p))
    p.write_text("a: day()\n")
    with pytest.raises(schema_mod.SchemaError, match="no JSON Schema equivalent"):
        schema_mod.to_json_schema(schema_mod.load(p))


# --------------------------------------------------------------------- the real chart


def chart_json() -> dict[str, Any]:
    from meshray.valuesfile import descriptions

    loaded = schema_mod.load(CHART / "values.schema.yamale")
    return schema_mod.to_json_schema(
        loaded, descriptions((CHART / "values.yaml").read_text()))


def defaults() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return data


def samples() -> list[tuple[str, dict[str, Any]]]:
    base = defaults()
    out = [("defaults", base)]
    out += [(p.stem, merge_values(base, yaml.safe_load(p.read_text()) or {})) for p in EXAMPLES]

    def edit(name: str, fn: Any) -> None:
        v = copy.deepcopy(base)
        fn(v)
        out.append((name, v))

    edit("typo-top", lambda v: v.update(clusterNmae="x"))
    edit("typo-nested", lambda v: v["ports"].update(gcss=1))
    edit("port-range", lambda v: v["ports"].update(gcs=80))
    edit("port-type", lambda v: v["ports"].update(gcs="6379"))
    edit("enum", lambda v: v["mtls"].update(mode="strict"))
    edit("group-key", lambda v: v["workerGroups"].update({"Bad_Name": {}}))
    edit("group-typo", lambda v: v["workerGroups"].update({"gpu": {"replcas": 1}}))
    edit("group-ok", lambda v: v["workerGroups"].update({"gpu": {"replicas": 1}}))
    edit("labels-free-keys", lambda v: v["head"]["labels"].update({"any/key": "x"}))
    edit("labels-value", lambda v: v["head"]["labels"].update({"k": 1}))
    edit("missing-required", lambda v: v["ports"].pop("gcs"))
    edit("list-item", lambda v: v["ray"].update(imagePullSecrets=[1]))
    return out


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # yamale evals '\\.' patterns
@pytest.mark.parametrize(("name", "values"), samples(), ids=[n for n, _ in samples()])
def test_json_schema_agrees_with_yamale(name: str, values: dict[str, Any]) -> None:
    raw = yamale.make_schema(str(CHART / "values.schema.yamale"))
    yamale_ok = all(r.isValid() for r in yamale.validate(raw, [(values, name)],
                                                         _raise_error=False))
    json_ok = jsonschema.Draft7Validator(chart_json()).is_valid(values)
    assert yamale_ok == json_ok
    assert yamale_ok == (name in {"defaults", "group-ok", "labels-free-keys",
                                  *[p.stem for p in EXAMPLES]})


def test_generated_schema_is_a_valid_draft7_schema() -> None:
    jsonschema.Draft7Validator.check_schema(chart_json())


def test_committed_schema_has_no_drift(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["schema", "--check"])
    assert code == 0, capsys.readouterr().out


def test_check_reports_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    chart = tmp_path / "meshray"
    shutil.copytree(CHART, chart)
    (chart / "values.schema.json").write_text("{}\n")
    assert main(["schema", "--check", "--chart", str(chart)]) == 1
    assert "out of date" in capsys.readouterr().out
    assert main(["schema", "--chart", str(chart)]) == 0
    assert main(["schema", "--check", "--chart", str(chart)]) == 0
    assert json.loads((chart / "values.schema.json").read_text()) == chart_json()


@pytest.mark.parametrize("bad", ["ports.gcss=1", "clusterNmae=x", "mtls.mode=strict"])
def test_helm_rejects_what_the_schema_forbids(bad: str) -> None:
    with pytest.raises(RenderError):
        render_text(RenderRequest(set_values=[bad], chart=CHART))
