"""Read Kubernetes manifests from files or stdin, independently of how they were produced.

Handles multi-document streams, ``kind: List`` (and ``*List``) wrappers and empty documents.
:func:`read` (what ``meshray audit`` uses) reads every source it can and returns, next to the
objects, one :class:`InputError` per source it could not read (missing, not UTF-8, malformed
YAML, with file and line) and per document that is not a Kubernetes object (a top-level list
or scalar, a mapping without ``apiVersion`` and ``kind`` such as a chart's values.yaml), so
one bad file never hides the findings of the others. :func:`load` and :func:`parse_stream`
raise :class:`ManifestError` on the first unreadable source instead; :func:`parse_stream`
(helm's output) skips documents that are not objects.
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


@dataclass(frozen=True)
class InputError:
    """A source, or one document of it, that gives no Kubernetes object to audit."""

    source: str  # ``file``, ``file:line`` or ``file#document``
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.message}"


def is_object(obj: dict[str, Any]) -> bool:
    """A Kubernetes object names its API version and kind (both non-empty strings)."""
    api, kind = obj.get("apiVersion"), obj.get("kind")
    return isinstance(api, str) and bool(api.strip()) and isinstance(kind, str) and bool(
        kind.strip())


def _what(doc: Any) -> str:
    """What a document that is not a Kubernetes object is, for the message."""
    if isinstance(doc, list):
        return "a YAML list at top level, not an object"
    if not isinstance(doc, dict):
        return f"a YAML {type(doc).__name__ if doc is not None else 'null'} at top level, " \
               "not an object"
    missing = " and ".join(k for k in ("apiVersion", "kind") if not (
        isinstance(doc.get(k), str) and str(doc.get(k)).strip()))
    keys = ", ".join(str(k) for k in list(doc)[:4]) + (", ..." if len(doc) > 4 else "")
    return (f"a mapping without {missing} (top-level keys: {keys}): a values file or a "
            "fragment, not a Kubernetes object; render it first (helm template) and audit "
            "the output")


def _expand(obj: Any, source: str, problems: list[InputError] | None = None,
            ) -> Iterator[Manifest]:
    """The objects of one document: itself, or the items of a ``*List`` wrapper. Empty
    documents give none; anything else that is not an object goes to ``problems``."""
    if obj is None or obj == {}:
        return
    if isinstance(obj, dict):
        kind = obj.get("kind")
        items = obj.get("items")
        if isinstance(kind, str) and kind.endswith("List") and isinstance(items, list):
            for i, item in enumerate(items):
                yield from _expand(item, f"{source}.items[{i}]", problems)
            return
        if is_object(obj):
            yield Manifest(obj, source)
            return
    if problems is not None:
        problems.append(InputError(source, _what(obj)))


def _malformed(exc: yaml.YAMLError, name: str) -> InputError:
    mark = getattr(exc, "problem_mark", None)
    where = f"{name}:{mark.line + 1}" if mark is not None else name
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return InputError(where, f"malformed YAML: {problem}")


def read_stream(text: str, name: str) -> tuple[list[Manifest], list[InputError]]:
    """Every object of a YAML stream (``name`` labels the source in messages), and what in
    it is not one. Malformed YAML gives no object at all: a stream read only up to the
    error could hide the rest of the file's objects."""
    out: list[Manifest] = []
    problems: list[InputError] = []
    loader = LOADER(text)
    try:
        i = 0
        while loader.check_node():
            node = loader.get_node()
            doc = loader.construct_document(node)
            line = node.start_mark.line + 1 if node is not None else 0
            found: list[InputError] = []
            out.extend(_expand(doc, f"{name}#{i}", found))
            # a document is named by its index and the line it starts on
            problems += [InputError(f"{p.source} (line {line})", p.message) for p in found]
            i += 1
    except yaml.YAMLError as exc:
        return [], [_malformed(exc, name)]
    finally:
        loader.dispose()
    return out, problems


def parse_stream(text: str, name: str) -> list[Manifest]:
    """Every object of a YAML stream (what helm renders); documents that are not objects are
    skipped. Malformed YAML raises :class:`ManifestError`."""
    try:
        out: list[Manifest] = []
        for i, doc in enumerate(yaml.load_all(text, Loader=LOADER)):
            out.extend(_expand(doc, f"{name}#{i}"))
    except yaml.YAMLError as exc:
        raise ManifestError(str(_malformed(exc, name))) from None
    return out


@dataclass
class Loaded:
    """What :func:`read` got: the objects in input order, and what it could not audit."""

    objects: list[Manifest]
    errors: list[InputError]


def read(paths: Sequence[str], stdin: TextIO | None = None) -> Loaded:
    """Objects from each path in order; ``-`` reads stdin. Directories read their
    *.yaml/*.yml. A source that cannot be read is an error in the result, not an exception."""
    got = Loaded([], [])
    for path in paths:
        if path == STDIN:
            _add(got, *read_stream((stdin or sys.stdin).read(), "<stdin>"))
            continue
        try:
            files = _files(Path(path))
        except ManifestError as exc:
            got.errors.append(InputError(path, str(exc).removeprefix(f"{path}: ")))
            continue
        for file in files:
            try:
                text = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                got.errors.append(InputError(str(file), f"cannot read: {exc}"))
                continue
            _add(got, *read_stream(text, str(file)))
    return got


def _add(got: Loaded, objects: list[Manifest], errors: list[InputError]) -> None:
    got.objects += objects
    got.errors += errors


def load(paths: Sequence[str], stdin: TextIO | None = None) -> list[Manifest]:
    """The objects of :func:`read`; raises :class:`ManifestError` on its first error."""
    got = read(paths, stdin)
    if got.errors:
        raise ManifestError(str(got.errors[0]))
    return got.objects


def _files(path: Path) -> Iterable[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix in {".yaml", ".yml"} and p.is_file())
    if not path.exists():
        raise ManifestError(f"{path}: no such file")
    return [path]
