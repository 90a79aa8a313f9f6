"""`meshray validate` on values the chart renders but the audit refuses: the audit's error
findings on the render are validate's errors (exit 1, no `warning:` prefix), never warnings.

Each values file below passes the schema and every `fail` of the chart, and its render draws an
error finding from the audit: a passthrough Ingress annotation that tells NGINX the dashboard
speaks gRPC, and a dashboard principal `*` that admits any mesh identity to the Jobs API. The
oracle is `meshray audit` run on the same render (helm's output written to a file): whatever
it calls an error, validate must print as an error and count in its summary. A control file
without the offending key shows that the error comes from that key alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from meshray.cli import main

# name -> (values that draw the error, the same values without the offending key, the
# audit check that must report it, the object it names)
CASES = {
    "ingress-backend-protocol": (
        "ingress:\n  dashboard:\n    enabled: true\n    host: ray.example.com\n"
        "    acknowledgeUnauthenticated: true\n"
        "    annotations:\n      nginx.ingress.kubernetes.io/backend-protocol: GRPC\n",
        "ingress:\n  dashboard:\n    enabled: true\n    host: ray.example.com\n"
        "    acknowledgeUnauthenticated: true\n",
        "ingress-protocol-mismatch", "Ingress/meshray-dashboard"),
    "dashboard-open-to-any-principal": (
        "mesh:\n  authorizationPolicy:\n    dashboardPrincipals: ['*']\n",
        "mesh:\n  authorizationPolicy:\n"
        "    dashboardPrincipals: ['cluster.local/ns/ci/sa/submitter']\n",
        "authz-dashboard-open", "AuthorizationPolicy/meshray-ray"),
}
# `meshray audit` prints one finding per line: `severity: Kind/name [ns] key: message [check]`.
AUDIT_LINE = re.compile(
    r"^(?P<severity>error|warning|info): (?P<obj>\S+) .* \[(?P<check>[a-z-]+)\]")
SUMMARY = re.compile(r"1 file\(s\): (?P<errors>\d+) error\(s\), (?P<warnings>\d+) warning\(s\)")


def audit_of_render(render_text: Callable[..., str], values: Path,
                    capsys: pytest.CaptureFixture[str]) -> list[tuple[str, str, str]]:
    """(severity, object, check) of every finding `meshray audit` reports on the render."""
    rendered = values.with_suffix(".rendered.yaml")
    rendered.write_text(render_text(values))
    main(["audit", str(rendered)])
    out = capsys.readouterr().out
    return [(m["severity"], m["obj"], m["check"])
            for m in map(AUDIT_LINE.match, out.splitlines()) if m]


@pytest.mark.parametrize("case", CASES)
def test_audit_errors_on_the_render_are_validate_errors(
        case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        render_chart_text: Callable[..., str]) -> None:
    bad, _, check, obj = CASES[case]
    f = tmp_path / f"{case}.yaml"
    f.write_text(bad)
    # the oracle: the audit itself calls this render's finding an error
    findings = audit_of_render(render_chart_text, f, capsys)
    audit_errors = [(o, c) for s, o, c in findings if s == "error"]
    assert (obj, check) in audit_errors, findings

    status = main(["validate", str(f)])
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert not [ln for ln in lines if not ln.startswith(f"{f}: ")], lines
    errors = [ln for ln in lines if not ln.startswith(f"{f}: warning: ")]
    # every error the audit reports is one of validate's error lines, named as the audit names it
    for o, c in audit_errors:
        prefix = f"{f}: (render): audit {c} on {o} "
        assert [ln for ln in errors if ln.startswith(prefix)], (prefix, lines)
        assert not [ln for ln in lines if ln.startswith(f"{f}: warning: (render): audit {c} ")
                    ], f"audit error {c} shown as a warning: {lines}"
    assert status == 1, "an audit error on the render must fail validate"
    summary = SUMMARY.search(captured.err)
    assert summary, captured.err
    assert int(summary["errors"]) == len(errors) >= len(audit_errors)
    assert int(summary["warnings"]) == len(lines) - len(errors)


@pytest.mark.parametrize("case", CASES)
def test_the_control_file_renders_without_that_error(
        case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        render_chart_text: Callable[..., str]) -> None:
    """The same values without the offending key: no such finding, no error, exit 0, so the
    error above is the key's doing and the chart renders both files."""
    _, good, check, _ = CASES[case]
    f = tmp_path / f"{case}-control.yaml"
    f.write_text(good)
    findings = audit_of_render(render_chart_text, f, capsys)
    assert not [x for x in findings if x[0] == "error"], findings
    assert main(["validate", str(f)]) == 0
    out = capsys.readouterr().out
    assert f"audit {check} " not in out, out
