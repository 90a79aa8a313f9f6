"""What the audit reports and how: check declarations, findings, text and JSON output."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import yaml

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
        # an object without metadata.name is named as such, never as an empty string
        name = self.name or UNNAMED
        return (f"{self.severity}: {self.kind}/{name} [{self.namespace}] {self.key}: "
                f"{self.message}{got} [{self.check}] fix: {self.fix}")


UNNAMED = "(no metadata.name)"  # how the text format names an object without a name
# characters a one-line finding cannot carry as they are (newlines, tabs, other controls)
_CONTROL = {chr(c) for c in range(32)} | {chr(127)}


def yaml_text(value: Any) -> str:
    """A value as a user writes it in a manifest: strings as they are, ``true``/``false``,
    ``null``, numbers, and lists and mappings in YAML flow style (``[a, b]``, ``{k: v}``),
    never Python's spelling (``True``, ``None``, ``['a']``)."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    try:
        text: str = yaml.safe_dump(value, default_flow_style=True, width=10**6,
                                   allow_unicode=True, sort_keys=False)
    except yaml.YAMLError:
        return str(value)
    return text.strip().removesuffix("...").strip()


def quoted(value: Any) -> str:
    """A value as a quoted YAML string (``"true"``, ``"6379"``): what a field that takes
    strings (rayStartParams, labels, annotations) wants, in a hint to copy. Single quotes
    when the text holds a backslash or a double quote (YAML escapes nothing there)."""
    text = yaml_text(value)
    if _CONTROL & set(text):
        return json.dumps(text, ensure_ascii=False)  # only double quotes can escape these
    if "\\" in text or '"' in text:
        return "'" + text.replace("'", "''") + "'"
    return f'"{text}"'


def show(value: Any, limit: int = 160) -> str:
    """A finding's value in the text format, as the user typed it: a string between double
    quotes with its characters unchanged (backslashes stay single, so a copied command
    works), escaped only when it holds a line break or another control character; other
    values in YAML spelling (``true``, ``[6379, 8265]``)."""
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False) if _CONTROL & set(value) else f'"{value}"'
    else:
        text = yaml_text(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def counts(findings: Sequence[Finding]) -> dict[str, int]:
    """Findings per severity, every severity present."""
    return {s: sum(f.severity == s for f in findings) for s in SEVERITIES}


def at_least(findings: Sequence[Finding], min_severity: str) -> list[Finding]:
    """The findings as severe as ``min_severity`` or more."""
    return [f for f in findings if RANK[f.severity] <= RANK[min_severity]]


def to_json(findings: Sequence[Finding], errors: Sequence[tuple[str, str]] = ()) -> str:
    """The JSON format: every finding's fields, the count per severity, and the inputs that
    could not be read or are not Kubernetes objects (``errors``: source, message)."""
    return json.dumps({"findings": [asdict(f) for f in findings], "counts": counts(findings),
                       "errors": [{"source": s, "message": m} for s, m in errors]},
                      indent=2, default=str)


def summary(findings: Sequence[Finding], objects: int, clusters: int, jobs: int = 0,
            unreadable: int = 0) -> str:
    """The text format's closing line (printed to stderr)."""
    n = counts(findings)
    workloads = f"{clusters} RayCluster(s)" + (f", {jobs} RayJob(s)" if jobs else "")
    bad = f"; {unreadable} input(s) not audited (see above)" if unreadable else ""
    return (f"{objects} object(s), {workloads}: {n[ERROR]} error(s), "
            f"{n[WARNING]} warning(s), {n[INFO]} info{bad}")

