"""Values as helm sees them: a values file layered over the chart's defaults (maps merge,
lists replace, null deletes), numbers read as helm reads them, and each problem blamed on the
file that set the offending key."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .schema import KeyPath


def as_helm_reads(value: Any) -> Any:
    """The values as helm's templates receive them: helm turns every YAML number into a JSON
    number, so ``6379.0`` and ``6379`` are the same value to the chart and render alike; an
    integral float becomes an int here too, so validate refuses what the chart refuses and
    nothing more. Other floats (``6379.5``) stay floats and fail the integer checks."""
    if isinstance(value, dict):
        return {k: as_helm_reads(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_helm_reads(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def merge(base: Any, over: Any) -> Any:
    """Helm's coalescing of a values file onto defaults: maps merge, null deletes, else replace."""
    if not isinstance(base, dict) or not isinstance(over, dict):
        return over
    out = dict(base)
    for k, v in over.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def set_paths(data: Any, path: KeyPath = ()) -> Iterator[tuple[KeyPath, bool]]:
    """Every (path, is_map) the file sets."""
    if isinstance(data, dict):
        for k, v in data.items():
            yield (*path, str(k)), isinstance(v, dict)
            yield from set_paths(v, (*path, str(k)))


def blame(path: KeyPath, user: dict[KeyPath, bool], defaults: Any, missing: bool) -> bool:
    """True when the problem is the user's file's doing, False when it is in the defaults."""
    if path in user or any(path[:i] in user and not user[path[:i]] for i in range(1, len(path))):
        return True
    if _exists(defaults, path):
        return False
    # a required key missing from a map the defaults already have is the defaults' problem
    return not (missing and _exists(defaults, path[:-1]))


def _exists(data: Any, path: KeyPath) -> bool:
    for part in path:
        in_map = isinstance(data, dict) and part in data
        in_list = isinstance(data, list) and isinstance(part, int) and part < len(data)
        if not (in_map or in_list):
            return False
        data = data[part]
    return True
