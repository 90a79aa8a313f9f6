"""meshray/audit/inputs.py and the input side of a run: duplicates, List kinds, namespaces."""

from __future__ import annotations

import copy

import yaml
from audit_support import (
    BASE,
    Case,
    base,
    cluster,
    head,
    run,
    svc,
    worker,
)
from meshray.audit import audit
from meshray.manifests import Manifest, parse_stream, read_stream

CASES: list[Case] = [
    ("duplicate-object", "info", lambda d: d.append(copy.deepcopy(svc(d)))),
    ("object-unnamed", "error", lambda d: cluster(d)["metadata"].pop("name")),
    ("object-unnamed", "warning",
     lambda d: cluster(d)["metadata"].update(name="", generateName="demo-")),
    ("object-unnamed", "error", lambda d: svc(d)["metadata"].update(name=None)),
]


def test_list_kinds_and_unknown_docs() -> None:
    """A List wrapper gives its items and an empty document nothing; a top-level list, a
    scalar and a mapping without apiVersion/kind are named (file, document, line) as not
    Kubernetes objects by read_stream (what `meshray audit` reads files with), and skipped by
    parse_stream (helm's output)."""
    text = yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": base()})
    lines = text.count("\n")
    text += "---\n# empty\n---\n- just a list\n---\nplain string\n---\nworkers: {cpu: 2}\n"
    objs = parse_stream(text, "list.yaml")
    assert [o.kind for o in objs] == [d["kind"] for d in BASE]
    assert [o.source for o in objs] == [f"list.yaml#0.items[{i}]" for i in range(len(BASE))]
    assert audit(objs) == []
    read, errors = read_stream(text, "list.yaml")
    assert [o.obj for o in read] == [o.obj for o in objs]
    assert [(e.source, e.message.split(":")[0].split(" (")[0]) for e in errors] == [
        (f"list.yaml#2 (line {lines + 4})", "a YAML list at top level, not an object"),
        (f"list.yaml#3 (line {lines + 6})", "a YAML str at top level, not an object"),
        (f"list.yaml#4 (line {lines + 8})", "a mapping without apiVersion and kind")]
    assert "workers" in errors[2].message  # the keys it has, to recognise the file


def test_list_items_that_are_not_objects_are_named() -> None:
    text = yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [
        BASE[1], {"kind": "Service"}, "x"]})
    objs, errors = read_stream(text, "l.yaml")
    assert [o.source for o in objs] == ["l.yaml#0.items[0]"]
    assert [e.source for e in errors] == ["l.yaml#0.items[1] (line 1)",
                                          "l.yaml#0.items[2] (line 1)"]
    assert errors[0].message.startswith("a mapping without apiVersion (")


def test_unnamed_objects_get_no_made_up_names() -> None:
    """A RayCluster without a name is named as unnamed by where it is, and nothing is
    derived from its empty name: no `RayCluster/ `, no `-headless-svc`, no `ray.io/cluster: `
    hint."""
    docs = base()
    cluster(docs)["metadata"].pop("name")
    got = run(docs)
    [f] = [f for f in got if f.check == "object-unnamed"]
    assert f.kind == "RayCluster" and f.name == "" and f.source == "test#0"
    assert "test#0" in f.message and "no metadata.name" in f.message
    assert f.line().startswith("error: RayCluster/(no metadata.name) [ray] metadata.name: ")
    text = "\n".join(g.line() for g in got)
    for made_up in ("RayCluster/ ", " -headless-svc", "ray.io/cluster: \n", "ray.io/cluster:  "):
        assert made_up not in text, text
    # two unnamed objects of one kind are two objects, each reported
    docs.append(copy.deepcopy(cluster(docs)))
    assert [g.source for g in run(docs) if g.check == "object-unnamed"] == ["test#0", "test#5"]


def test_namespace_default_applies_to_objects_without_one() -> None:
    docs = base()
    for d in docs:
        d["metadata"].pop("namespace")
    for g in (head(docs), worker(docs)):
        g["rayStartParams"]["node-ip-address"] = (
            "${POD_IP//[.:]/-}.demo-headless-svc.team-a.svc.cluster.local")
    objs = [Manifest(d, "x") for d in docs]
    assert audit(objs, namespace="team-a") == []
    assert {f.check for f in audit(objs, namespace="default")} == {"node-ip-not-fqdn"}
