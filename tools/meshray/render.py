"""Render the meshray chart through pyhelm3 (the real helm binary underneath).

Values files are handed to helm as ``-f`` arguments, in order, so helm's own merge rules
apply (maps merge, lists replace, ``null`` deletes); nothing is merged in Python.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pyhelm3 import Command
from pyhelm3 import errors as helm_errors

from . import manifests
from .errors import PROBLEMS, UNUSABLE, MeshrayError
from .paths import chart_dir, checkout_root

T = TypeVar("T")


# The first line of the chart's single `fail` (templates/validate.yaml): how many problems
# follow, one per line as "key: problem".
CHART_REFUSAL = re.compile(r"^meshray refused these values \((?P<count>\d+) problem\(s\), "
                           r"one per line as key: problem\):$", re.MULTILINE)


class RenderError(MeshrayError):
    """helm refused to render: a chart ``fail``, a schema violation or a template error.
    ``problems`` holds the chart's own refusals as (key, problem), read from the counted block
    templates/validate.yaml writes; empty for anything else helm says."""

    exit_code = PROBLEMS  # the values are the problem, as with a validation error

    def __init__(self, message: str, stderr: str = "",
                 problems: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.stderr = stderr
        self.problems = list(problems)


def chart_refusals(text: str) -> list[tuple[str, str]] | None:
    """The chart's refusals in helm's error text as (key, problem), or None when the text holds
    no refusal block (a schema error, a template error). The block's count must match."""
    m = CHART_REFUSAL.search(text)
    if not m:
        return None
    lines = text[m.end():].lstrip("\n").splitlines()[: int(m.group("count"))]
    if len(lines) != int(m.group("count")):
        return None
    return [(key, rest) for key, _, rest in (ln.partition(": ") for ln in lines)]


class HelmNotFound(RenderError):
    """No helm binary to run: the command cannot run at all."""

    exit_code = UNUSABLE


def helm_executable() -> str:
    """The helm binary to use: $MESHRAY_HELM, then bin/helm of the checkout meshray runs from
    (``make setup`` builds it there), then PATH."""
    env = os.environ.get("MESHRAY_HELM")
    if env:
        return env
    root = checkout_root()
    if root is not None and (root / "bin" / "helm").exists():
        return str(root / "bin" / "helm")
    found = shutil.which("helm")
    if found:
        return found
    raise HelmNotFound("no helm binary found: run `make setup` or set MESHRAY_HELM")


@dataclass
class RenderRequest:
    values_files: Sequence[str | os.PathLike[str]] = ()
    set_values: Sequence[str] = ()
    set_string_values: Sequence[str] = ()
    release: str = "meshray"
    namespace: str = "default"
    chart: str | os.PathLike[str] = field(default_factory=chart_dir)
    extra_args: Sequence[str] = field(default_factory=tuple)

    def args(self) -> list[str]:
        args = ["template", self.release, str(self.chart), "--namespace", self.namespace]
        for f in self.values_files:
            args += ["--values", str(f)]
        for s in self.set_values:
            args += ["--set", s]
        for s in self.set_string_values:
            args += ["--set-string", s]
        args += list(self.extra_args)
        return args


_HELM_ERROR_PREFIX = re.compile(r"^Error:\s*", re.MULTILINE)
_DEBUG_HINT = re.compile(r"\s*Use --debug flag to render out invalid YAML\s*$")


def clean_helm_error(stderr: str) -> str:
    """Reduce helm's stderr to the message a user needs: the chart's refusals one per line
    (without their count line), or helm's schema or template error."""
    text = _helm_message(stderr)
    refusals = chart_refusals(text)
    if refusals is not None:
        return "\n".join(f"{key}: {problem}" for key, problem in refusals)
    return text


def _helm_message(stderr: str) -> str:
    """helm's stderr without its noise: the `Error:` prefix, the template position of a
    `fail`, the --debug hint and warnings."""
    text = stderr.strip()
    lines = [ln for ln in text.splitlines() if not ln.startswith(("WARNING:", "walk.go"))]
    text = "\n".join(lines).strip()
    text = _HELM_ERROR_PREFIX.sub("", text, count=1)
    # `fail` messages arrive as: execution error at (meshray/templates/x.yaml:3:4): <message>
    text = _DEBUG_HINT.sub("", text).strip()
    m = re.search(r"execution error at \([^)]*\):\s*(.*)", text, re.DOTALL)
    if m:
        return m.group(1).strip()
    return text


async def _run(request: RenderRequest) -> str:
    command = Command(executable=helm_executable())
    try:
        out = await command.run(request.args())
    except helm_errors.Error as exc:  # every pyhelm3 failure derives from Error
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        raise RenderError(clean_helm_error(stderr) or str(exc), stderr,
                          chart_refusals(_helm_message(stderr)) or ()) from None
    return bytes(out).decode()


def render_text(request: RenderRequest | None = None) -> str:
    """The rendered manifests exactly as helm prints them."""
    return asyncio.run(_run(request or RenderRequest()))


def default_jobs() -> int:
    """How many helm processes to run at once: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def render_each(requests: Sequence[RenderRequest], then: Callable[[int, str | RenderError], T],
                jobs: int | None = None) -> list[T]:
    """Render several requests with up to ``jobs`` helm processes at once (pyhelm3 runs helm
    as an asyncio subprocess) and hand each result, helm's output or the RenderError that
    request got, to ``then(index, result)`` as soon as it arrives, so the caller's work on one
    render overlaps the others still rendering. Returns ``then``'s results in request order.
    A missing helm binary still raises HelmNotFound."""

    async def all_of() -> list[T]:
        gate = asyncio.Semaphore(jobs or default_jobs())

        async def one(index: int, request: RenderRequest) -> T:
            async with gate:
                try:
                    result: str | RenderError = await _run(request)
                except HelmNotFound:
                    raise
                except RenderError as exc:
                    result = exc
            return then(index, result)

        return list(await asyncio.gather(*(one(i, r) for i, r in enumerate(requests))))

    return asyncio.run(all_of()) if requests else []


RENDER_SOURCE = "render"  # how rendered objects name their source (``render#3``)


def render_manifests(request: RenderRequest | None = None) -> list[manifests.Manifest]:
    """The rendered objects, parsed once by the same reader ``audit`` uses for any input."""
    return manifests.parse_stream(render_text(request), RENDER_SOURCE)


def render(request: RenderRequest | None = None) -> list[dict[str, Any]]:
    """The rendered objects as plain dicts."""
    return [m.obj for m in render_manifests(request)]
