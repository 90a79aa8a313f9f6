"""Validate values files: the yamale schema, then the chart's own ``fail`` checks (one helm
render), then warnings and the audit's errors and warnings on that render.

The pipeline only: the schema walker is in ``schema``, layering and blame in ``coalesce``,
notes and warnings in ``advice``, the problem format in ``problems``. Every problem prints as
``file: key.path: problem (got value)``, blamed on the file that set the offending key.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import advice, coalesce, manifests, valuesfile
from .problems import ERROR, WARNING, Problem, dotted
from .render import RENDER_SOURCE, RenderError, RenderRequest, render_each
from .schema import MISSING, ChartSchema, check

__all__ = ["ERROR", "WARNING", "Checked", "Options", "Problem", "check_file", "check_files"]


@dataclass
class Options:
    chart: Path
    schema: ChartSchema
    defaults: dict[str, Any]
    release: str = "meshray"
    namespace: str = "default"
    render: bool = True


@dataclass
class Checked:
    """The verdict on one values file, and the render it was judged on (None when the schema
    check failed first, or rendering was off or refused)."""

    problems: list[Problem]
    rendered: str | None = None
    # What the cluster must provide for these values (not a problem of the file): printed
    # apart from problems, on stderr, as `note:` lines.
    notes: list[str] = field(default_factory=list)


def validate_file(file: str, opts: Options) -> list[Problem]:
    """All problems and warnings of one values file (layered on the chart defaults)."""
    return check_file(file, opts).problems


def check_file(file: str, opts: Options) -> Checked:
    """Schema, then one helm render, then warnings and the audit on that same render, which
    the caller may reuse (``validate --output-dir``) instead of rendering again."""
    return check_files([file], opts)[0]


@dataclass
class _Pending:
    """A file that passed the schema and waits for its render."""

    file: str
    merged: dict[str, Any]


def check_files(files: Sequence[str], opts: Options) -> list[Checked]:
    """``check_file`` for each file, in order, with the helm renders run side by side (up to
    one per CPU): the schema check first, then every render at once, then each audit."""
    first = [_schema_stage(file, opts) for file in files]
    pending = [p for p in first if isinstance(p, _Pending)]
    done = render_each([RenderRequest(values_files=[p.file], release=opts.release,
                                      namespace=opts.namespace, chart=opts.chart)
                        for p in pending],
                       lambda i, rendered: _audit_stage(pending[i], rendered, opts))
    audited = iter(done)
    return [p if isinstance(p, Checked) else next(audited) for p in first]


def _schema_stage(file: str, opts: Options) -> Checked | _Pending:
    try:
        text = Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return Checked([Problem(file, "(file)", f"cannot read: {exc}")])
    try:
        structure = valuesfile.structure_problems(text)
        user = valuesfile.load_text(text) if not structure else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "(file)"
        return Checked([Problem(file, where, f"malformed YAML: {getattr(exc, 'problem', exc)}")])
    if structure:  # data YAML would lose: say so before anything reads the values
        return Checked([Problem(file, where, msg) for where, msg in structure])
    if user is None:
        user = {}
    if not isinstance(user, dict):
        return Checked([Problem(file, "(root)", "must be a map", user)])
    user = coalesce.as_helm_reads(user)
    merged = coalesce.merge(opts.defaults, user)
    user_paths = dict(coalesce.set_paths(user))
    defaults_file = str(opts.chart / "values.yaml")
    problems = [
        Problem(file if coalesce.blame(p, user_paths, opts.defaults, val is MISSING)
                else defaults_file, dotted(p), msg, val)
        for p, msg, val in check(opts.schema, merged)
    ]
    if problems or not opts.render:
        return Checked(problems)
    return _Pending(file, merged)


def _audit_stage(pending: _Pending, rendered: str | RenderError, opts: Options) -> Checked:
    file, merged = pending.file, pending.merged
    if isinstance(rendered, RenderError):
        if rendered.problems:  # the chart's refusals, each already (key, problem)
            return Checked([Problem(file, key, problem) for key, problem in rendered.problems])
        return Checked([_render_problem(file, line) for line in _render_lines(rendered.message)])
    try:
        objs = manifests.parse_stream(rendered, RENDER_SOURCE)
    except manifests.ManifestError as exc:
        return Checked([*advice.warnings(file, merged, [], opts.namespace),
                        Problem(file, "(chart)", f"rendered output is not YAML: {exc}")])
    return Checked(advice.warnings(file, merged, objs, opts.namespace), rendered,
                   advice.prerequisites(merged, objs))


_SCHEMA_LINE = re.compile(r"^\s*-\s*at '(?P<ptr>[^']*)':\s*(?P<msg>.*)$")


def _render_lines(message: str) -> list[str]:
    """One line per problem of helm's own schema report (``- at '/a/b': msg``); anything else
    helm says (a template error) is one line."""
    lines = [ln for ln in message.splitlines() if _SCHEMA_LINE.match(ln)]
    return lines or [" ".join(message.split())]


def _render_problem(file: str, line: str) -> Problem:
    m = _SCHEMA_LINE.match(line)
    if m:
        ptr = m.group("ptr").strip("/").replace("/", ".") or "(root)"
        return Problem(file, ptr, m.group("msg"))
    return Problem(file, "(chart)", line)
