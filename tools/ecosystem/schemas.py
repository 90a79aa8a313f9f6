#!/usr/bin/env python3
"""Generate strict, offline JSON schemas for kubeconform.

Two sources:

* ``k8s``: the Kubernetes OpenAPI v2 document (``api/openapi-spec/swagger.json`` of the
  ``k8s.io/kubernetes`` Go module) -> one self-contained schema per group/version/kind.
* ``crds``: CustomResourceDefinition manifests -> one schema per served version of each CRD.

Layout of the output directory (matches the kubeconform ``-schema-location`` template
``<dir>/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json``; for the core group
kubeconform's ``.Group`` is the version, so core kinds land in ``<dir>/v1/``)::

    <out>/<group or version for core>/<lowercase kind>_<version>.json

"Strict" is a property of the schema, not of kubeconform (its ``-strict`` flag only picks
``*-strict`` default locations and rejects duplicate keys): every object schema that lists
``properties`` and does not opt out (``additionalProperties`` given, or
``x-kubernetes-preserve-unknown-fields``) gets ``additionalProperties: false``. That is what the
API server does with ``fieldValidation=Strict`` (kubectl's default): an unknown field is an
error, not a silent drop.

Conversion rules (Kubernetes structural-schema semantics -> JSON Schema 2020-12):

* ``x-kubernetes-int-or-string`` and ``IntOrString`` -> ``type: [integer, string]``;
  ``Quantity`` -> ``type: [string, number]`` (``cpu: 1`` is valid).
* ``nullable: true`` -> ``null`` added to ``type``. Other fields reject ``null``: the API server
  would drop such a field, which in a rendered chart is almost always a template bug.
* ``x-kubernetes-embedded-resource`` -> ``apiVersion``/``kind``/``metadata`` allowed.
* ``x-kubernetes-validations`` (CEL) cannot be evaluated by a JSON-schema validator; they are
  dropped and counted (``--report``).
* ``format`` and ``description`` are dropped (annotations only; they make files large).
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

JSONSCHEMA_DRAFT = "https://json-schema.org/draft/2020-12/schema"
Schema = dict[str, Any]

_DROP_KEYS = {"description", "format", "example", "externalDocs"}


@dataclass
class Stats:
    """What a conversion dropped or tightened, for the report."""

    cel_rules: int = 0
    strict_objects: int = 0
    files: list[str] = field(default_factory=list)


def _add_type(schema: Schema, extra: str) -> None:
    t = schema.get("type")
    if t is None:
        return
    types = list(t) if isinstance(t, list) else [t]
    if extra not in types:
        types.append(extra)
    schema["type"] = types


def _embedded_meta(props: dict[str, Any]) -> None:
    props.setdefault("apiVersion", {"type": "string"})
    props.setdefault("kind", {"type": "string"})
    props.setdefault("metadata", {"type": "object"})


def strictify(node: Any, stats: Stats) -> Any:
    """Return a converted copy of a (sub)schema following the rules in the module doc."""
    if isinstance(node, list):
        return [strictify(x, stats) for x in node]
    if not isinstance(node, dict):
        return node
    out: Schema = {}
    for key, value in node.items():
        if key in _DROP_KEYS or key.startswith("x-"):
            continue
        if key == "nullable":
            continue
        if key in ("properties", "patternProperties", "$defs", "definitions"):
            out[key] = {k: strictify(v, stats) for k, v in value.items()}
        elif key in ("default", "enum", "const", "required"):
            out[key] = copy.deepcopy(value)
        else:
            out[key] = strictify(value, stats)
    stats.cel_rules += len(node.get("x-kubernetes-validations", []))

    if node.get("x-kubernetes-int-or-string"):
        # CRDs spell it `anyOf: [{type: integer}, {type: string}]` plus the marker.
        out.pop("anyOf", None)
        out["type"] = ["integer", "string"]
    if node.get("x-kubernetes-embedded-resource"):
        _embedded_meta(out.setdefault("properties", {}))
    if node.get("nullable"):
        _add_type(out, "null")

    preserve = bool(node.get("x-kubernetes-preserve-unknown-fields"))
    if "properties" in out and "additionalProperties" not in out and not preserve:
        out["additionalProperties"] = False
        stats.strict_objects += 1
    return out


# --------------------------------------------------------------------------------------------
# CRDs


def _iter_yaml_docs(paths: Iterable[Path]) -> Iterator[Schema]:
    for path in paths:
        with path.open() as fh:
            for doc in yaml.safe_load_all(fh):
                if isinstance(doc, dict) and doc:
                    yield doc


def crd_schemas(crds: Iterable[Schema], stats: Stats) -> dict[tuple[str, str, str], Schema]:
    """(group, kind, version) -> JSON schema for every served version that has a schema."""
    result: dict[tuple[str, str, str], Schema] = {}
    for crd in crds:
        if crd.get("kind") != "CustomResourceDefinition":
            continue
        spec = crd["spec"]
        group: str = spec["group"]
        kind: str = spec["names"]["kind"]
        for version in spec.get("versions", []):
            if not version.get("served", True):
                continue
            raw = (version.get("schema") or {}).get("openAPIV3Schema")
            if raw is None:
                continue
            schema = strictify(raw, stats)
            props = schema.setdefault("properties", {})
            props["apiVersion"] = {"enum": [f"{group}/{version['name']}"]}
            props["kind"] = {"enum": [kind]}
            props.setdefault("metadata", {"type": "object"})
            schema.setdefault("type", "object")
            schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind"})
            schema["$schema"] = JSONSCHEMA_DRAFT
            schema["title"] = f"{kind} {group}/{version['name']}"
            result[(group, kind, version["name"])] = schema
    return result


# --------------------------------------------------------------------------------------------
# Kubernetes built-in types (OpenAPI v2)

_SPECIAL_DEFS: dict[str, Schema] = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {"type": ["integer", "string"]},
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {"type": ["string", "number"]},
}
_V2_REF = "#/definitions/"
_V3_REF = "#/$defs/"


def _rewrite_refs(node: Any, seen: set[str]) -> Any:
    if isinstance(node, list):
        return [_rewrite_refs(x, seen) for x in node]
    if not isinstance(node, dict):
        return node
    out: Schema = {}
    for key, value in node.items():
        if key == "$ref" and isinstance(value, str) and value.startswith(_V2_REF):
            name = value[len(_V2_REF) :]
            seen.add(name)
            out[key] = _V3_REF + name
        elif key in ("properties", "$defs"):
            out[key] = {k: _rewrite_refs(v, seen) for k, v in value.items()}
        else:
            out[key] = _rewrite_refs(value, seen)
    return out


def k8s_schemas(swagger: Schema, stats: Stats) -> dict[tuple[str, str, str], Schema]:
    """(group, kind, version) -> self-contained JSON schema for each top-level API kind."""
    definitions: dict[str, Schema] = swagger["definitions"]
    converted: dict[str, Schema] = {}
    deps: dict[str, set[str]] = {}
    for name, raw in definitions.items():
        refs: set[str] = set()
        if name in _SPECIAL_DEFS:
            conv = copy.deepcopy(_SPECIAL_DEFS[name])
        else:
            conv = _rewrite_refs(strictify(raw, stats), refs)
        converted[name] = conv
        deps[name] = refs

    def closure(root: str) -> list[str]:
        todo, done = [root], set()
        while todo:
            cur = todo.pop()
            if cur in done:
                continue
            done.add(cur)
            todo.extend(deps.get(cur, ()))
        return sorted(done)

    result: dict[tuple[str, str, str], Schema] = {}
    for name, raw in definitions.items():
        gvks = raw.get("x-kubernetes-group-version-kind") or []
        # Meta kinds (DeleteOptions, WatchEvent, Status...) carry one GVK per API group.
        if len(gvks) != 1 or "properties" not in raw or "kind" not in raw["properties"]:
            continue
        gvk = gvks[0]
        group, version, kind = gvk["group"], gvk["version"], gvk["kind"]
        api_version = f"{group}/{version}" if group else version
        result[(group, kind, version)] = {
            "$schema": JSONSCHEMA_DRAFT,
            "title": f"{kind} {api_version}",
            "$ref": _V3_REF + name,
            "properties": {"apiVersion": {"enum": [api_version]}, "kind": {"enum": [kind]}},
            "required": ["apiVersion", "kind"],
            "$defs": {dep: converted[dep] for dep in closure(name)},
        }
    return result


# --------------------------------------------------------------------------------------------
# output


def schema_path(out: Path, group: str, kind: str, version: str) -> Path:
    """Where kubeconform's template ``{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}``
    looks: for the core group ``.Group`` is the version string."""
    return out / (group or version) / f"{kind.lower()}_{version}.json"


LOCATION_TEMPLATE = "{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"


def write_schemas(schemas: dict[tuple[str, str, str], Schema], out: Path, stats: Stats) -> None:
    for (group, kind, version), schema in sorted(schemas.items()):
        path = schema_path(out, group, kind, version)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
        tmp.replace(path)
        stats.files.append(str(path.relative_to(out)))


def go_module_dir(module: str) -> Path:
    """Download ``path@version`` through the Go module proxy; return its directory."""
    proc = subprocess.run(
        ["go", "mod", "download", "-json", module], capture_output=True, text=True, check=False
    )
    info: dict[str, Any] = json.loads(proc.stdout) if proc.stdout.strip() else {}
    if proc.returncode != 0 or "Dir" not in info:
        raise SystemExit(f"go mod download {module}: {info.get('Error') or proc.stderr.strip()}")
    return Path(info["Dir"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="source", required=True)
    k8s = sub.add_parser("k8s", help="Kubernetes swagger.json -> schemas")
    k8s.add_argument("--spec", type=Path, required=True, help="api/openapi-spec/swagger.json")
    crds = sub.add_parser("crds", help="CRD YAML files -> schemas")
    crds.add_argument("files", type=Path, nargs="+")
    for p in (k8s, crds):
        p.add_argument("--out", type=Path, required=True)
        p.add_argument("--report", action="store_true", help="print what was converted")
        p.add_argument(
            "--module",
            metavar="PATH@VERSION",
            help="Go module to download; input paths are relative to its directory",
        )
    args = parser.parse_args(argv)

    base = go_module_dir(args.module) if args.module else Path()
    stats = Stats()
    if args.source == "k8s":
        schemas = k8s_schemas(json.loads((base / args.spec).read_text()), stats)
    else:
        schemas = crd_schemas(_iter_yaml_docs(base / f for f in args.files), stats)
    if not schemas:
        print("no schemas produced", file=sys.stderr)
        return 1
    write_schemas(schemas, args.out, stats)
    if args.report:
        print(
            f"{args.out}: {len(stats.files)} schemas, {stats.strict_objects} objects closed "
            f"(additionalProperties: false), {stats.cel_rules} CEL rules not checkable"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
