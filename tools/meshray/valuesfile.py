"""The chart's ``values.yaml``: its defaults and its helm-docs style ``# --`` descriptions."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from .manifests import LOADER

_KEY = re.compile(r"^(?P<indent> *)(?P<key>\"[^\"]+\"|'[^']+'|[^\s#:'\"-][^\s:]*)\s*:(\s|$)")
_ITEM = re.compile(r"^(?P<indent> *)- ")


def descriptions(text: str) -> dict[str, str]:
    """Dotted key path -> description, from ``# -- text`` comments directly above a key.

    Follows helm-docs: the comment starts with ``# --``; further ``#`` lines continue it; a
    blank line or a plain comment before the ``# --`` line is not part of it. Keys inside list
    items are skipped (they are not values keys).
    """
    out: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    pending: list[str] | None = None
    list_indent: int | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            pending = None
            continue
        if stripped.startswith("#"):
            body = stripped[1:].strip()
            if body.startswith("--"):
                pending = [body[2:].strip()]
            elif pending is not None:
                pending.append(body)
            continue
        indent = len(line) - len(line.lstrip(" "))
        if list_indent is not None and indent > list_indent:
            pending = None
            continue
        list_indent = None
        item = _ITEM.match(line)
        if item:
            list_indent = indent
            pending = None
            continue
        m = _KEY.match(line)
        if not m:
            pending = None
            continue
        key = m.group("key").strip("\"'")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        if pending:
            out[".".join(k for _, k in stack)] = " ".join(p for p in pending if p).strip()
        pending = None
    return out


def load_text(text: str) -> Any:
    """A values document as plain data (YAML's safe subset, through libyaml when present)."""
    return yaml.load(text, Loader=LOADER)


def load_defaults(path: Path) -> dict[str, Any]:
    data = load_text(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def lookup(data: Any, path: tuple[str, ...]) -> tuple[bool, Any]:
    """(found, value) at a key path of nested maps."""
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return False, None
        data = data[key]
    return True, data
