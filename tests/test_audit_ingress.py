"""meshray/audit/ingress.py: Ingress backends to Ray's Services."""

from __future__ import annotations

import pytest
from meshray.audit import ingress as family
from test_audit_support import (
    Case,
    Mutation,
    assert_clean,
    assert_triggers,
    backend,
    case_ids,
    cluster,
    ingress,
)

CASES: list[Case] = [
    ("ingress-service-missing", "error", lambda d: backend(d).update(name="demo-svc")),
    ("ingress-port-missing", "error", lambda d: backend(d).update(port={"number": 9999})),
    ("ingress-port-missing", "error", lambda d: backend(d).update(port={"name": "dash"})),
    ("ingress-protocol-mismatch", "error", lambda d: ingress(d)["metadata"]["annotations"].update(
        {"nginx.ingress.kubernetes.io/backend-protocol": "GRPC"})),
    ("ingress-protocol-mismatch", "error", lambda d: (
        backend(d).update(port={"number": 10001}),
        ingress(d)["metadata"]["annotations"].update(
            {"nginx.ingress.kubernetes.io/backend-protocol": "HTTPS"}))),
    ("ingress-exposes-ray", "warning", lambda d: ingress(d)["metadata"]["annotations"].pop(
        "nginx.ingress.kubernetes.io/auth-url")),
]


def test_cases_cover_the_family() -> None:
    assert {c for c, _, _ in CASES} == {c.id for c in family.CHECKS}


@pytest.mark.parametrize(("check", "severity", "mutate"), CASES, ids=case_ids(CASES))
def test_check_triggers(check: str, severity: str, mutate: Mutation) -> None:
    assert_triggers(check, severity, mutate)


CLEAN_VARIANTS: list[tuple[str, Mutation]] = [
    # the ingress may name the head Service's port by name
    ("ingress by port name", lambda d: backend(d).update(port={"name": "dashboard"})),
    # an ingress to a Service in the input
    ("ingress to input service", lambda d: backend(d).update(
        name="demo-headless-svc", port={"number": 8080})),
    # Ray token auth (KubeRay authOptions) guards the dashboard behind an unauthenticated Ingress
    ("ray token auth", lambda d: (
        ingress(d)["metadata"]["annotations"].pop("nginx.ingress.kubernetes.io/auth-url"),
        cluster(d)["spec"].update(authOptions={"mode": "token"}))),
]


@pytest.mark.parametrize(("name", "mutate"), CLEAN_VARIANTS, ids=[n for n, _ in CLEAN_VARIANTS])
def test_clean_variants(name: str, mutate: Mutation) -> None:
    assert_clean(mutate)
