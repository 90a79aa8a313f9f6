"""What the audit reports and how: check declarations, findings, text and JSON output."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

ERROR = "error"
WARNING = "warning"
INFO = "info"
SEVERITIES = (ERROR, WARNING, INFO)  # most severe first
RANK = {s: i for i, s in enumerate(SEVERITIES)}


@dataclass(frozen=True)
class Check:
    """One audit check, declared by its family module next to the code that reports it."""

    id: str  # what findings carry as ``check`` and ``--list-checks`` prints
    severity: str  # default severity; a finding may raise or lower it with a reason
    catches: str  # one line for the checks table: what the check catches


@dataclass(frozen=True)
class Finding:
    severity: str
    check: str
    kind: str
    namespace: str
    name: str
    key: str
    value: Any
    message: str
    fix: str
    source: str = ""

    def line(self) -> str:
        """The text format: ``severity: Kind/name [namespace] key: message (got value)
        [check] fix: hint``."""
        got = "" if self.value is None else f" (got {show(self.value)})"
        return (f"{self.severity}: {self.kind}/{self.name} [{self.namespace}] {self.key}: "
                f"{self.message}{got} [{self.check}] fix: {self.fix}")


def show(value: Any, limit: int = 160) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def counts(findings: Sequence[Finding]) -> dict[str, int]:
    """Findings per severity, every severity present."""
    return {s: sum(f.severity == s for f in findings) for s in SEVERITIES}


def at_least(findings: Sequence[Finding], min_severity: str) -> list[Finding]:
    """The findings as severe as ``min_severity`` or more."""
    return [f for f in findings if RANK[f.severity] <= RANK[min_severity]]


def to_json(findings: Sequence[Finding]) -> str:
    """The JSON format: every finding's fields, and the count per severity."""
    return json.dumps({"findings": [asdict(f) for f in findings], "counts": counts(findings)},
                      indent=2, default=str)


def summary(findings: Sequence[Finding], objects: int, clusters: int, jobs: int = 0) -> str:
    """The text format's closing line (printed to stderr)."""
    n = counts(findings)
    workloads = f"{clusters} RayCluster(s)" + (f", {jobs} RayJob(s)" if jobs else "")
    return (f"{objects} object(s), {workloads}: {n[ERROR]} error(s), "
            f"{n[WARNING]} warning(s), {n[INFO]} info")

