"""meshray/audit/inputs.py and the input side of a run: duplicates, List kinds, namespaces."""

from __future__ import annotations

import copy

import pytest
import yaml
from meshray.audit import audit
from meshray.audit import inputs as family
from meshray.manifests import Manifest, parse_stream
from test_audit_support import (
    BASE,
    Case,
    Mutation,
    assert_triggers,
    base,
    case_ids,
    head,
    svc,
    worker,
)

CASES: list[Case] = [
    ("duplicate-object", "info", lambda d: d.append(copy.deepcopy(svc(d)))),
]


def test_cases_cover_the_family() -> None:
    assert {c for c, _, _ in CASES} == {c.id for c in family.CHECKS}


@pytest.mark.parametrize(("check", "severity", "mutate"), CASES, ids=case_ids(CASES))
def test_check_triggers(check: str, severity: str, mutate: Mutation) -> None:
    assert_triggers(check, severity, mutate)


def test_list_kinds_and_unknown_docs() -> None:
    text = yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": base()})
    text += "---\n# empty\n---\n- just a list\n---\nplain string\n"
    objs = parse_stream(text, "list.yaml")
    assert [o.kind for o in objs] == [d["kind"] for d in BASE]
    assert audit(objs) == []


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
