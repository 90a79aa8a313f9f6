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


def structure_problems(text: str) -> list[tuple[str, str]]:
    """(where, message) for what YAML parses without a word but loses: a key written twice in
    one map (helm and PyYAML keep the last) and more than one document (Helm 3 reads the first,
    Helm 4 merges them). Helm cannot report either, so ``meshray validate`` does. Assumes the
    text parses (the caller reports malformed YAML first)."""
    docs = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    out: list[tuple[str, str]] = []
    if len(docs) > 1:
        second = docs[1].start_mark.line + 1 if docs[1] is not None else 0
        out.append(("(file)", f"holds {len(docs)} YAML documents (the second at line {second}): "
                    "Helm 3 reads only the first and Helm 4 merges them, so the two render "
                    "different clusters; write one document"))
    for doc in docs:
        if doc is not None:
            out.extend(_duplicates(doc, ()))
    return out


def _duplicates(node: yaml.Node, path: tuple[str, ...]) -> list[tuple[str, str]]:
    """Keys written twice in any map under ``node``, named by their dotted path."""
    out: list[tuple[str, str]] = []
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            line = key_node.start_mark.line + 1
            if key in first:
                out.append((".".join((*path, key)),
                            f"written twice in one map (lines {first[key]} and {line}): helm "
                            "keeps only the last one and drops the first without a word; "
                            "keep one"))
            else:
                first[key] = line
            out.extend(_duplicates(value_node, (*path, key)))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out.extend(_duplicates(item, (*path[:-1], f"{path[-1]}[{i}]") if path else (f"[{i}]",)))
    return out


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
