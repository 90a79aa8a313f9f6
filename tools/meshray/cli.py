"""``meshray``: validate values, render the chart, audit manifests, generate schema and docs.

Exit status: 0 success, 1 problems found (validation errors, error findings, drift, and with
``validate --strict`` any warning), 2 the command could not run (bad arguments, unreadable or
malformed input, missing helm).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import textwrap
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from . import __version__
from .errors import OK, PROBLEMS, UNUSABLE, MeshrayError, UsageError
from .paths import CHART_ENV, chart_dir

if TYPE_CHECKING:
    from .schema import ChartSchema
    from .validate import Checked



def _chart(args: argparse.Namespace) -> Path:
    chart = Path(args.chart)
    if not (chart / "Chart.yaml").is_file():
        raise UsageError(f"{chart}: not a chart directory (no Chart.yaml)")
    return chart


def _schema_inputs(chart: Path) -> tuple[ChartSchema, dict[str, Any], dict[str, str]]:
    """The yamale schema, the chart defaults and their descriptions."""
    from . import schema, valuesfile

    yamale_path = chart / schema.YAMALE_FILE
    values_path = chart / schema.VALUES_FILE
    for p in (yamale_path, values_path):
        if not p.is_file():
            raise UsageError(f"{p}: missing")
    loaded = schema.load(yamale_path)
    text = values_path.read_text(encoding="utf-8")
    return loaded, valuesfile.load_defaults(values_path), valuesfile.descriptions(text)


# ----------------------------------------------------------------------------- verbs


def cmd_validate(args: argparse.Namespace, out: TextIO) -> int:
    from . import schema, validate, valuesfile

    chart = _chart(args)
    files = args.values or [str(chart / schema.VALUES_FILE)]
    outputs = _render_outputs(args, files)
    loaded = schema.load(chart / schema.YAMALE_FILE)
    defaults = valuesfile.load_defaults(chart / schema.VALUES_FILE)
    opts = validate.Options(chart=chart, schema=loaded, defaults=defaults, release=args.release,
                            namespace=args.namespace, render=not args.no_render)
    errors = warnings = 0
    notes: dict[str, None] = {}
    for file, checked in zip(files, validate.check_files(files, opts), strict=True):
        notes.update(dict.fromkeys(checked.notes))
        for p in checked.problems:
            print(p.line(), file=out)
            if p.severity == validate.ERROR:
                errors += 1
            else:
                warnings += 1
        if file in outputs:
            _keep_render(outputs[file], checked, args.strict)
    summary = f"{len(files)} file(s): {errors} error(s), {warnings} warning(s)"
    if outputs:
        summary += f"; renders in {args.output_dir}"
    out.flush()
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print(summary, file=sys.stderr)
    return PROBLEMS if errors or (args.strict and warnings) else OK


def _render_outputs(args: argparse.Namespace, files: list[str]) -> dict[str, Path]:
    """values file -> where ``--output-dir`` keeps its render (``<dir>/<file stem>.yaml``)."""
    if not args.output_dir:
        return {}
    if args.no_render:
        raise UsageError("--output-dir needs the render; drop --no-render")
    target = Path(args.output_dir)
    outputs = {f: target / f"{Path(f).stem}.yaml" for f in dict.fromkeys(files)}
    seen: dict[Path, str] = {}
    for file, dest in outputs.items():
        if dest in seen:
            raise UsageError(f"{file} and {seen[dest]} would both render to {dest}")
        seen[dest] = file
    target.mkdir(parents=True, exist_ok=True)
    return outputs


def _keep_render(dest: Path, checked: Checked, strict: bool) -> None:
    """Write the render validate judged; never leave an older render of a file that now fails
    (a later `meshray audit DIR` or `kubectl apply` would take it for the current one). With
    ``strict`` a warning fails the file too."""
    from .validate import ERROR

    fails = [p for p in checked.problems if strict or p.severity == ERROR]
    if checked.rendered is not None and not fails:
        dest.write_text(checked.rendered, encoding="utf-8")
    else:
        dest.unlink(missing_ok=True)


def cmd_render(args: argparse.Namespace, out: TextIO) -> int:
    from . import manifests, ports
    from .render import RENDER_SOURCE, RenderRequest, render_text

    request = RenderRequest(values_files=args.values, set_values=args.set,
                            set_string_values=args.set_string, release=args.release,
                            namespace=args.namespace, chart=_chart(args))
    text = render_text(request)  # a RenderError exits 1 with helm's message (see main)
    if not args.ports:
        out.write(text)
    if args.ports or args.ports_after:
        rows = ports.table(manifests.parse_stream(text, RENDER_SOURCE), args.namespace)
        if args.ports_after:
            out.write("\n# Port table\n")
            out.write("".join(f"# {line}\n" for line in ports.format_table(rows).splitlines()))
        else:
            out.write(ports.format_table(rows))
    return OK


def cmd_audit(args: argparse.Namespace, out: TextIO) -> int:
    from . import audit, manifests

    if args.list_checks:
        from .docs import checks_table

        out.write(checks_table(audit.CHECKS))
        return OK
    namespace = args.namespace
    errors: list[manifests.InputError] = []
    if args.cluster:
        if args.files:
            raise UsageError("--cluster reads the live cluster: give no files with it")
        from . import live

        objs, namespace = live.read_cluster(args.namespace, args.kubeconfig, args.context,
                                            args.root_namespace)
        if args.format == "text":
            print(f"read from namespace {namespace}: {live.objects_summary(objs) or 'nothing'}",
                  file=sys.stderr)
    else:
        if args.kubeconfig or args.context:
            raise UsageError("--kubeconfig and --context go with --cluster")
        if not args.files:
            raise UsageError("no input: give manifest files, directories or - for stdin "
                             "(or --cluster)")
        if args.files.count(manifests.STDIN) > 1:
            raise UsageError("stdin (-) can be read only once")
        # every readable file is audited; what could not be read is reported, and exits 2
        loaded = manifests.read(args.files)
        objs, errors = loaded.objects, loaded.errors
    findings = audit.audit(objs, namespace=namespace or "default",
                           root_namespace=args.root_namespace)
    shown = audit.at_least(findings, args.min_severity)
    if args.format == "json":
        out.write(audit.to_json(shown, [(e.source, e.message) for e in errors]) + "\n")
        out.flush()
        for e in errors:
            print(f"meshray audit: {e}", file=sys.stderr)
    else:
        for f in shown:
            print(f.line(), file=out)
        out.flush()
        for e in errors:
            print(f"meshray audit: {e}", file=sys.stderr)
        clusters = sum(m.kind == "RayCluster" for m in objs)
        jobs = sum(m.kind == "RayJob" for m in objs)
        if objs or not errors:
            print(audit.summary(findings, len(objs), clusters, jobs, len(errors)),
                  file=sys.stderr)
    if errors:
        return UNUSABLE
    return PROBLEMS if any(f.severity == audit.ERROR for f in findings) else OK


def cmd_schema(args: argparse.Namespace, out: TextIO) -> int:
    from . import schema

    chart = _chart(args)
    loaded, _, descriptions = _schema_inputs(chart)
    text = schema.dump(schema.to_json_schema(loaded, descriptions))
    target = chart / schema.JSON_FILE
    return _write_or_check(target, text, args.check, "meshray schema", out)


def cmd_docs(args: argparse.Namespace, out: TextIO) -> int:
    from . import docs
    from .audit import CHECKS

    chart = _chart(args)
    loaded, defaults, descriptions = _schema_inputs(chart)
    blocks = [docs.values_block(docs.table(loaded, defaults, descriptions)),
              docs.checks_block(docs.checks_table(CHECKS))]
    code = OK
    targets = [(Path(args.readme), True)] if args.readme else docs.targets(chart)
    for target, required in targets:
        if not target.is_file():
            if required:
                raise UsageError(f"{target}: missing")
            continue
        try:
            new = docs.fill(target.read_text(encoding="utf-8"), blocks)
        except docs.DocsError as exc:
            raise UsageError(f"{target}: {exc}") from None
        if new is None:
            if required:
                raise UsageError(f"{target}: no {docs.START} and {docs.END} markers; add "
                                 "both where the table belongs")
            continue
        code = max(code, _write_or_check(target, new, args.check, "meshray docs", out))
    return code


def _write_or_check(target: Path, text: str, check: bool, command: str, out: TextIO) -> int:
    current = target.read_text(encoding="utf-8") if target.is_file() else None
    if check:
        if current == text:
            print(f"{target}: up to date", file=out)
            return OK
        state = "missing" if current is None else "out of date"
        print(f"{target}: {state}; run `{command}` and commit the result", file=out)
        return PROBLEMS
    if current != text:
        target.write_text(text, encoding="utf-8")
        print(f"{target}: written", file=out)
    else:
        print(f"{target}: unchanged", file=out)
    return OK


# ----------------------------------------------------------------------------- parser

_DESCRIPTION = """\
Tooling for the meshray chart: Ray (KubeRay) inside an Istio mesh with STRICT mTLS.
Every Ray port must be pinned, declared in a headless Service with the right appProtocol,
and reachable at a Pod FQDN; meshray checks and renders exactly that."""

_EPILOG = """\
exit status: 0 ok, 1 problems found (errors, error findings, drift; validate --strict: any
warning too), 2 could not run.
examples:
  meshray validate values-examples/*.yaml
  meshray validate -o rendered/ my-values.yaml && meshray audit rendered/
  meshray render -f my-values.yaml --ports
  helm template r charts/meshray | meshray audit -
  meshray schema --check && meshray docs --check"""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30, width=100)


def _para(text: str) -> str:
    """A description paragraph wrapped for the terminal (the formatter keeps our newlines)."""
    return textwrap.fill(" ".join(text.split()), width=92)


def _chart_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--chart", default=str(chart_dir()), metavar="DIR",
                   help=f"chart directory (default: ${CHART_ENV}, else the chart shipped with "
                   "meshray: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meshray", description=_DESCRIPTION, epilog=_EPILOG,
                                     formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"meshray {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "validate", formatter_class=_Formatter,
        help="check values files against the schema and the chart's own checks",
        description=_para("Check each values file (layered over the chart's values.yaml, as helm "
        "does) against values.schema.yamale, then render the chart with it so the chart's "
        "`fail` checks surface too, and audit that render. Problems print as `file: key.path: "
        "problem (got value)`, warnings as `file: warning: key.path: problem (got value)`. "
        "Warns about legal but risky choices: a worker range likely too small for a group's "
        "CPUs, an exposed dashboard or Ray Client, PERMISSIVE mTLS. The audit's errors and "
        "warnings on the render have `(render)` as key path and `audit <check> on Kind/name "
        "key: message` as problem; its info findings stay hidden (meshray audit shows them). "
        "helm runs once per file; --output-dir keeps that render."),
        epilog="exit status:\n"
        "  0  no errors (warnings alone exit 0, unless --strict)\n"
        "  1  any file has an error (schema, chart check, or audit error on the render), or\n"
        "     with --strict any warning (validate's own or the audit's)\n"
        "  2  could not run: bad arguments, no chart or schema, no helm")
    p.add_argument("values", nargs="*", metavar="VALUES",
                   help="values files (default: the chart's own values.yaml)")
    p.add_argument("--no-render", action="store_true",
                   help="schema check only; skip helm and the chart's `fail` checks")
    p.add_argument("-o", "--output-dir", metavar="DIR",
                   help="also write each file's render, the one validate judged, to "
                   "DIR/<file stem>.yaml (helm runs once per file; a file that fails gets none)")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 on any warning too, validate's own or the audit's (and keep "
                   "no --output-dir render of a file that warns)")
    p.add_argument("--release", default="meshray", help="release name (default: %(default)s)")
    p.add_argument("-n", "--namespace", default="default",
                   help="namespace (default: %(default)s)")
    _chart_args(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "render", formatter_class=_Formatter, help="render the chart (helm template)",
        description=_para(
            "Render the chart through helm (pyhelm3) and print the manifests, or with "
            "--ports the port table: every port, its name, protocol, the groups that listen on it "
        "and the Service that declares it."))
    p.add_argument("-f", "--values", action="append", default=[], metavar="VALUES",
                   help="values file, repeatable; later files win")
    p.add_argument("--set", action="append", default=[], metavar="K=V",
                   help="set a value (helm --set), repeatable")
    p.add_argument("--set-string", action="append", default=[], metavar="K=V",
                   help="set a string value (helm --set-string), repeatable")
    p.add_argument("--release", default="meshray", help="release name (default: %(default)s)")
    p.add_argument("-n", "--namespace", default="default",
                   help="namespace (default: %(default)s)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--ports", action="store_true",
                       help="print only the port table instead of the manifests")
    group.add_argument("--ports-after", action="store_true",
                       help="print the manifests, then the port table as YAML comments")
    _chart_args(p)
    p.set_defaults(func=cmd_render)

    p = sub.add_parser(
        "audit", formatter_class=_Formatter,
        help="check any manifests for Ray/Istio port and protocol drift",
        description=_para("Audit Kubernetes manifests from any source (this chart, another chart, "
        "hand-written) without using the chart: for each RayCluster, find the headless Service "
        "that selects it and report every drift between them, plus PeerAuthentication and "
        "Ingress problems. One finding per line: `severity: Kind/name [namespace] key: message "
        "(got value) [check] fix: hint`."),
        epilog="exit status: 1 when any finding is an error, 2 when any input could not be "
        "audited:\nmissing, unreadable or malformed, or a document that is not a Kubernetes "
        "object (a\nvalues file, a top-level list); every other input is still audited and "
        "its findings\nprinted (--format json lists those inputs under \"errors\").\n"
        "checks: meshray audit --list-checks")
    p.add_argument("files", nargs="*", metavar="FILE",
                   help="manifest files or directories; - reads stdin")
    p.add_argument("--list-checks", action="store_true",
                   help="print every check with its severity (Markdown table) and exit")
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="output format (default: %(default)s)")
    p.add_argument("-n", "--namespace", default=None,
                   help="namespace of objects that set none; with --cluster, the namespace to "
                   "read (default: default, or the kubeconfig context's namespace)")
    p.add_argument("--cluster", action="store_true",
                   help="audit the live objects of a running cluster (Services, RayClusters, "
                   "the Ray Pods' actual command lines, Ingresses, Istio policies and "
                   "Sidecars, NetworkPolicies, Gateway API Gateways and routes) "
                   "instead of files; needs pip install 'meshray[cluster]'")
    p.add_argument("--kubeconfig", default=None, help="kubeconfig file for --cluster")
    p.add_argument("--context", default=None, help="kubeconfig context for --cluster")
    p.add_argument("--root-namespace", default="istio-system",
                   help="Istio root namespace (default: %(default)s)")
    p.add_argument("--min-severity", choices=("error", "warning", "info"), default="info",
                   help="hide findings below this severity (default: %(default)s)")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser(
        "schema", formatter_class=_Formatter,
        help="generate values.schema.json from values.schema.yamale",
        description=_para("Regenerate the chart's values.schema.json (strict JSON Schema, so helm "
        "rejects unknown keys and wrong types) from values.schema.yamale, with descriptions "
        "from values.yaml."))
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 if the committed file differs")
    _chart_args(p)
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser(
        "docs", formatter_class=_Formatter,
        help="generate the values reference and the checks table in the docs",
        description=_para("Regenerate the values reference (key, type, default, description) "
        "from values.schema.yamale and values.yaml between <!-- values-reference:start --> and "
        "<!-- values-reference:end -->, and the table of audit checks between "
        "<!-- audit-checks:start --> and <!-- audit-checks:end -->, in every file that has "
        "those markers: the chart's README.md (which must have the values markers), and in a "
        "checkout README.md and docs/*.md."))
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 if any file differs")
    p.add_argument("--readme", metavar="FILE",
                   help="update only this file (it must have markers)")
    _chart_args(p)
    p.set_defaults(func=cmd_docs)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # pyhelm3 logs every failed helm call; we report the failure ourselves, once
    logging.getLogger("pyhelm3").setLevel(logging.CRITICAL)
    stream = out or sys.stdout
    try:
        code: int = args.func(args, stream)
        return code
    except KeyboardInterrupt:
        print("meshray: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (e.g. `| head`): silence the interpreter's own complaint
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return OK
    except MeshrayError as exc:
        print(f"meshray {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"meshray {args.command}: {exc}", file=sys.stderr)
        return UNUSABLE
    except Exception as exc:
        if os.environ.get("MESHRAY_DEBUG"):
            traceback.print_exc()
        print(f"meshray {args.command}: internal error: {type(exc).__name__}: {exc} "
              "(set MESHRAY_DEBUG=1 for the traceback)", file=sys.stderr)
        return UNUSABLE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
