"""Read Kubernetes manifests from files or stdin, independently of how they were produced.

Handles multi-document streams, ``kind: List`` (and ``*List``) wrappers, and empty or
non-mapping documents (ignored). Malformed YAML raises :class:`ManifestError` with the file
and line, so callers can print one clean line instead of a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from .errors import MeshrayError

try:  # the C loader is ~10x faster on large renders; fall back when libyaml is absent
    LOADER: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    LOADER = yaml.SafeLoader

STDIN = "-"


class ManifestError(MeshrayError):
    """A manifest source could not be read or parsed."""


@dataclass(frozen=True)
class Manifest:
    """One Kubernetes object and where it came from (``file#document``)."""

    obj: dict[str, Any]
    source: str

    @property
    def kind(self) -> str:
        return str(self.obj.get("kind") or "")

    @property
    def api_group(self) -> str:
        api = str(self.obj.get("apiVersion") or "")
        return api.rsplit("/", 1)[0] if "/" in api else ""

    @property
    def name(self) -> str:
        meta = self.obj.get("metadata")
        return str(meta.get("name") or "") if isinstance(meta, dict) else ""

    def namespace(self, default: str) -> str:
        meta = self.obj.get("metadata")
        ns = meta.get("namespace") if isinstance(meta, dict) else None
        return str(ns) if ns else default


def _expand(obj: Any, source: str) -> Iterator[Manifest]:
    if not isinstance(obj, dict) or not obj:
        return
    kind = obj.get("kind")
    items = obj.get("items")
    if isinstance(kind, str) and kind.endswith("List") and isinstance(items, list):
        for i, item in enumerate(items):
            yield from _expand(item, f"{source}.items[{i}]")
        return
    yield Manifest(obj, source)


def parse_stream(text: str, name: str) -> list[Manifest]:
    """Every object of a YAML stream; ``name`` labels the source in messages."""
    out: list[Manifest] = []
    try:
        for i, doc in enumerate(yaml.load_all(text, Loader=LOADER)):
            out.extend(_expand(doc, f"{name}#{i}"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}:{mark.line + 1}" if mark is not None else name
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ManifestError(f"{where}: malformed YAML: {problem}") from None
    return out


def load(paths: Sequence[str], stdin: TextIO | None = None) -> list[Manifest]:
    """Objects from each path in order; ``-`` reads stdin. Directories read their *.yaml/*.yml."""
    out: list[Manifest] = []
    for path in paths:
        if path == STDIN:
            out.extend(parse_stream((stdin or sys.stdin).read(), "<stdin>"))
            continue
        for file in _files(Path(path)):
            try:
                text = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ManifestError(f"{file}: cannot read: {exc}") from None
            out.extend(parse_stream(text, str(file)))
    return out


def _files(path: Path) -> Iterable[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix in {".yaml", ".yml"} and p.is_file())
    if not path.exists():
        raise ManifestError(f"{path}: no such file")
    return [path]
