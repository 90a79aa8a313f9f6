"""meshray/audit/nodeip.py: node-ip-address must be a Pod FQDN under the headless Service."""

from __future__ import annotations

import pytest
from meshray.audit import nodeip as family
from test_audit_support import (
    Case,
    Mutation,
    assert_clean,
    assert_triggers,
    both,
    case_ids,
    worker,
)

CASES: list[Case] = [
    ("node-ip-missing", "error", lambda d: worker(d)["rayStartParams"].pop("node-ip-address")),
    ("node-ip-not-fqdn", "error", lambda d: worker(d)["rayStartParams"].update(
        {"node-ip-address": "${POD_IP//[.:]/-}.demo-headless-svc.default.svc.cluster.local"})),
    ("node-ip-not-fqdn", "error", lambda d: worker(d)["rayStartParams"].update(
        {"node-ip-address": "${POD_IP//[.:]/-}.other-svc.ray.svc.cluster.local"})),
    ("node-ip-not-fqdn", "error",
     lambda d: worker(d)["rayStartParams"].update({"node-ip-address": "$POD_IP"})),
    ("node-ip-not-fqdn", "error", lambda d: worker(d)["rayStartParams"].update(
        {"node-ip-address": "10-0-0-1.demo-headless-svc.ray.svc.cluster.local"})),
    ("node-ip-not-fqdn", "error", lambda d: worker(d)["rayStartParams"].update(
        {"node-ip-address": "${POD_IP}.demo-headless-svc.ray.svc.cluster.local"})),
    ("node-ip-hostname-i", "error", lambda d: worker(d)["rayStartParams"].update(
        {"node-ip-address": "$(hostname -I | tr -d ' ' | sed 's/\\./-/g')"
                            ".demo-headless-svc.ray.svc.cluster.local"})),
    ("node-ip-env-missing", "error",
     lambda d: worker(d)["template"]["spec"]["containers"][0].pop("env")),
    ("node-ip-env-missing", "error",  # a literal value is not the pod's IP
     lambda d: worker(d)["template"]["spec"]["containers"][0].update(
         env=[{"name": "POD_IP", "value": "10.0.0.1"}])),
]


def test_cases_cover_the_family() -> None:
    assert {c for c, _, _ in CASES} == {c.id for c in family.CHECKS}


@pytest.mark.parametrize(("check", "severity", "mutate"), CASES, ids=case_ids(CASES))
def test_check_triggers(check: str, severity: str, mutate: Mutation) -> None:
    assert_triggers(check, severity, mutate)


CLEAN_VARIANTS: list[tuple[str, Mutation]] = [
    # the Pod FQDN may end with a dot and use a custom cluster domain
    ("fqdn variants", both(lambda g: g["rayStartParams"].update(
        {"node-ip-address": "${POD_IP//[.:]/-}.demo-headless-svc.ray.svc.corp.example."}))),
]


@pytest.mark.parametrize(("name", "mutate"), CLEAN_VARIANTS, ids=[n for n, _ in CLEAN_VARIANTS])
def test_clean_variants(name: str, mutate: Mutation) -> None:
    assert_clean(mutate)
