"""What ``meshray validate`` reports: one problem of a values file, named by its dotted key,
with the value that caused it, as ``file: key.path: problem (got value)``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .schema import MISSING, KeyPath

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    file: str
    path: str
    problem: str
    value: Any = MISSING
    severity: str = ERROR

    def line(self) -> str:
        got = "" if self.value is MISSING else f" (got {show(self.value)})"
        prefix = "warning: " if self.severity == WARNING else ""
        return f"{self.file}: {prefix}{self.path}: {self.problem}{got}"


def show(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def dotted(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(root)"
