"""The chart's yamale schema: loading it, describing its types, and converting it to JSON Schema.

The yamale file (``values.schema.yamale``) is the single source of truth; ``values.schema.json``
is generated from it so that helm itself (and Argo CD, Flux) rejects typos and wrong types.
Static maps become ``additionalProperties: false``; ``map(...)`` validators keep free keys.
"""

from __future__ import annotations

import difflib
import json
import re
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yamale
from yamale import validators as yv
from yamale.validators.constraints import StringMatches

from .errors import MeshrayError

YAMALE_FILE = "values.schema.yamale"
JSON_FILE = "values.schema.json"
VALUES_FILE = "values.yaml"
JSON_SCHEMA_DRAFT = "http://json-schema.org/draft-07/schema#"
# A key path into a values tree (map keys and list indexes), and the value the walker reports
# for a required key that is missing.
KeyPath = tuple[str | int, ...]
MISSING: Any = object()


class SchemaError(MeshrayError):
    """The yamale schema cannot be read or uses something the converter does not support."""


@dataclass
class ChartSchema:
    """A loaded yamale schema: the root node and the named includes (name -> root node)."""

    root: Any
    includes: dict[str, Any]
    path: Path

    def resolve(self, node: Any) -> Any:
        """Follow include() chains to the node they name."""
        seen: set[str] = set()
        while isinstance(node, yv.Include):
            name = node.get_name()
            if name in seen or name not in self.includes:
                raise SchemaError(f"{self.path}: include('{name}') is undefined or recursive")
            seen.add(name)
            node = self.includes[name]
        return node


def load(path: Path) -> ChartSchema:
    try:
        with warnings.catch_warnings():
            # yamale evaluates each rule as a Python expression: '\.' in a non-raw string
            # warns (and will fail in a future Python); the schema should use r'...' strings
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", SyntaxWarning)
            schema = yamale.make_schema(str(path))
    except (OSError, SyntaxError, ValueError) as exc:
        raise SchemaError(f"{path}: {str(exc).strip()}") from None
    includes = {name: inc._schema for name, inc in schema.includes.items()}
    for node in (schema._schema, *includes.values()):
        _anchor_like_go(node)
    return ChartSchema(root=schema._schema, includes=includes, path=path)


class GoAnchoredPattern:
    """A yamale regex whose ``$`` means the end of the text, as in Go (helm's JSON Schema).

    Python's ``$`` also matches before a trailing newline, so ``re.match(r'^a$', 'a\\n')``
    succeeds where helm refuses the value; ``pattern`` and ``flags`` stay the schema's own text,
    so error messages and the generated JSON Schema do not change."""

    def __init__(self, compiled: re.Pattern[str]) -> None:
        self.pattern = compiled.pattern
        self.flags = compiled.flags
        # re.MULTILINE makes $ an end-of-line anchor in Go's (?m) too: keep those as they are.
        text = self.pattern if self.flags & re.MULTILINE else go_dollar(self.pattern)
        self._compiled = re.compile(text, self.flags)

    def match(self, value: str) -> re.Match[str] | None:
        return self._compiled.match(value)


def go_dollar(pattern: str) -> str:
    r"""``pattern`` with each ``$`` anchor (not escaped, not in a character class) as ``\Z``."""
    out: list[str] = []
    i, members = 0, -1  # members: index where the open class's members begin, -1 outside one
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            out.append(pattern[i:i + 2])  # an escape (\$, \], \\) is copied untouched
            i += 2
            continue
        if members >= 0:
            # a "]" first in the class ("[]...]", "[^]...]") is a member, not its end
            if c == "]" and i > members:
                members = -1
        elif c == "[":
            members = i + 2 if pattern[i + 1:i + 2] == "^" else i + 1
        out.append(r"\Z" if c == "$" and members < 0 else c)
        i += 1
    return "".join(out)


def _anchor_like_go(node: Any) -> None:
    """Give every regex() in ``node`` (nested maps, lists, any(), map keys) Go's ``$``."""
    if isinstance(node, Mapping):
        for sub in node.values():
            _anchor_like_go(sub)
        return
    if not isinstance(node, yv.Validator):
        return
    if isinstance(node, yv.Regex):
        node.regexes = [r if isinstance(r, GoAnchoredPattern) else GoAnchoredPattern(r)
                        for r in node.regexes]
    for constraint in getattr(node, "_constraints_inst", None) or ():
        # str(matches=...) also checks with re.match; its JSON text comes from node.kwargs
        if (isinstance(constraint, StringMatches) and isinstance(constraint.matches, str)
                and not constraint._flags & re.MULTILINE):
            constraint.matches = go_dollar(node.kwargs["matches"])
    for sub in getattr(node, "validators", None) or ():
        _anchor_like_go(sub)
    _anchor_like_go(node.kwargs.get("key"))


def is_static_map(node: Any) -> bool:
    return isinstance(node, Mapping)


def is_required(node: Any) -> bool:
    return not isinstance(node, yv.Validator) or bool(node.is_required)


def _kw(node: yv.Validator, name: str) -> Any:
    return node.kwargs.get(name)


def describe(node: Any, schema: ChartSchema, plural: bool = False) -> str:
    """A phrase for error messages: ``an integer between 1024 and 65535``, ``one of: a, b``."""
    node = schema.resolve(node)
    if is_static_map(node):
        return "a map"
    if isinstance(node, yv.Enum):
        return "one of: " + ", ".join(_plain(v) for v in node.enums)
    if isinstance(node, yv.Regex) and not isinstance(node, (yv.Mac, yv.SemVer)):
        name = node.regex_name
        return str(name) if name else "a string matching " + " or ".join(
            r.pattern for r in node.regexes)
    if isinstance(node, yv.SemVer):
        return "a semantic version"
    if isinstance(node, yv.Integer | yv.Number):
        noun = "an integer" if isinstance(node, yv.Integer) else "a number"
        lo, hi = _kw(node, "min"), _kw(node, "max")
        if lo is not None and hi is not None:
            return f"{noun} between {lo} and {hi}"
        if lo is not None:
            return f"{noun} >= {lo}"
        if hi is not None:
            return f"{noun} <= {hi}"
        return noun
    if isinstance(node, yv.String):
        lo, hi = _kw(node, "min"), _kw(node, "max")
        if lo == 1 and hi is None:
            return "a non-empty string"
        if lo is not None and hi is not None:
            return f"a string of {lo} to {hi} characters"
        if lo is not None:
            return f"a string of at least {lo} characters"
        if hi is not None:
            return f"a string of at most {hi} characters"
        return "a string"
    if isinstance(node, yv.Boolean):
        return "true or false"
    if isinstance(node, yv.Null):
        return "null"
    if isinstance(node, yv.Map):
        return _sized("a map", node, "entry", "entries")
    if isinstance(node, yv.List):
        return _sized("a list", node, "item", "items")
    if isinstance(node, yv.Any):
        if not node.validators:
            return "any value"
        return " or ".join(describe(v, schema) for v in node.validators)
    if isinstance(node, yv.Ip):
        return "an IP address"
    return str(node.get_name())


def _sized(noun: str, node: yv.Validator, one: str, many: str) -> str:
    lo, hi = _kw(node, "min"), _kw(node, "max")
    if lo is not None and hi is not None:
        return f"{noun} of {lo} to {hi} {many}"
    if lo is not None:
        return f"{noun} of at least {lo} {one if lo == 1 else many}"
    if hi is not None:
        return f"{noun} of at most {hi} {one if hi == 1 else many}"
    return noun


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def type_name(node: Any, schema: ChartSchema) -> str:
    """A compact type for the values reference: ``int (1024-65535)``, ``map[string]string``."""
    node = schema.resolve(node)
    if is_static_map(node):
        return "object"
    if isinstance(node, yv.Enum):
        return "enum: " + " \\| ".join(_plain(v) for v in node.enums)
    if isinstance(node, yv.Regex):
        return "string"
    if isinstance(node, yv.Integer | yv.Number):
        noun = "int" if isinstance(node, yv.Integer) else "number"
        lo, hi = _kw(node, "min"), _kw(node, "max")
        if lo is not None and hi is not None:
            return f"{noun} ({lo}-{hi})"
        if lo is not None:
            return f"{noun} (>= {lo})"
        if hi is not None:
            return f"{noun} (<= {hi})"
        return noun
    if isinstance(node, yv.String):
        return "string"
    if isinstance(node, yv.Boolean):
        return "bool"
    if isinstance(node, yv.Map):
        key = _kw(node, "key")
        key_t = "name" if key is not None and isinstance(key, yv.Regex) else "string"
        return f"map[{key_t}]{_inner(node, schema)}"
    if isinstance(node, yv.List):
        return f"list[{_inner(node, schema)}]"
    if isinstance(node, yv.Any):
        return " \\| ".join(type_name(v, schema) for v in node.validators) or "any"
    if isinstance(node, yv.Include):  # pragma: no cover - resolved above
        return str(node.get_name())
    return str(node.get_name())


def _inner(node: yv.Map | yv.List, schema: ChartSchema) -> str:
    if not node.validators:
        return "any"
    parts = []
    for v in node.validators:
        if isinstance(v, yv.Include):
            parts.append(str(v.get_name()))
        else:
            parts.append(type_name(v, schema))
    return " \\| ".join(parts)


# ------------------------------------------------------------------------- JSON Schema


def to_json_schema(schema: ChartSchema, descriptions: Mapping[str, str] | None = None,
                   ) -> dict[str, Any]:
    """The JSON Schema helm validates values against (draft-07, so Helm 3 and 4 both read it)."""
    defs: dict[str, Any] = {}
    body = _convert(schema.root, schema, (), descriptions or {}, (), defs)
    out: dict[str, Any] = {
        "$schema": JSON_SCHEMA_DRAFT,
        "title": "meshray values",
        "description": f"Generated from {YAMALE_FILE} by `meshray schema`; do not edit.",
    }
    out.update(body)
    _share_patterns(out, defs)
    if defs:
        out["definitions"] = dict(sorted(defs.items()))
    return out


def _share_patterns(out: dict[str, Any], defs: dict[str, Any]) -> None:
    """Write each string pattern the schema uses more than once as one definition.

    helm compiles values.schema.json on every render, each ``pattern`` into its own regexp
    (about 20 µs each); the chart repeats a dozen patterns (label keys, DNS names, hosts) up
    to ten times. A shared ``$ref`` compiles each once; helm's message for a value that does
    not match is the same (the value's path and the pattern). A description stays beside the
    ``$ref`` where the key is described."""
    def leaves(node: Any) -> Iterator[dict[str, Any]]:
        if isinstance(node, dict):
            if _pattern_leaf(node):
                yield node
            for v in node.values():
                yield from leaves(v)
        elif isinstance(node, list):
            for v in node:
                yield from leaves(v)

    found = [*leaves(out), *leaves(defs)]
    counts = Counter(leaf["pattern"] for leaf in found)
    names: dict[str, str] = {}
    for leaf in found:
        pattern = leaf["pattern"]
        if counts[pattern] < 2:
            continue
        if pattern not in names:
            names[pattern] = f"pattern{len(names) + 1:02d}"
            defs[names[pattern]] = {"type": "string", "pattern": pattern}
        del leaf["type"], leaf["pattern"]
        leaf["$ref"] = f"#/definitions/{names[pattern]}"


def _pattern_leaf(node: dict[str, Any]) -> bool:
    return (node.get("type") == "string" and isinstance(node.get("pattern"), str)
            and set(node) <= {"type", "pattern", "description"})


def _convert(node: Any, schema: ChartSchema, path: tuple[str, ...],
             descriptions: Mapping[str, str], stack: tuple[str, ...],
             defs: dict[str, Any]) -> dict[str, Any]:
    if isinstance(node, yv.Include):
        name = node.get_name()
        if name in stack:
            raise SchemaError(f"{schema.path}: include('{name}') is recursive")
        if name not in schema.includes:
            raise SchemaError(f"{schema.path}: include('{name}') is not defined")
        inner = (*stack, name)
        body = _convert(schema.includes[name], schema, path, descriptions, inner, defs)
        # An include with no path-specific description inside is written once, under
        # definitions, and referenced: helm compiles the schema on every render, so size counts.
        if body == _convert(schema.includes[name], schema, path, {}, inner, {}):
            defs.setdefault(name, body)
            return {"$ref": f"#/definitions/{name}"}
        return body
    if is_static_map(node):
        props: dict[str, Any] = {}
        required: list[str] = []
        for key, sub in node.items():
            child = _convert(sub, schema, (*path, str(key)), descriptions, stack, defs)
            desc = descriptions.get(".".join((*path, str(key))))
            if desc:
                child = {"description": desc, **child}
            props[str(key)] = child
            if is_required(sub):
                required.append(str(key))
        out: dict[str, Any] = {"type": "object", "properties": props}
        if required:
            out["required"] = required
        out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        raise SchemaError(f"{schema.path}: static lists in the schema are not supported "
                          f"(at {'.'.join(path) or '<root>'}); use list(...)")
    if not isinstance(node, yv.Validator):  # pragma: no cover - yamale parses every leaf
        raise SchemaError(f"{schema.path}: cannot convert {node!r}")
    return _validator(node, schema, path, descriptions, stack, defs)


def _validator(node: yv.Validator, schema: ChartSchema, path: tuple[str, ...],
               descriptions: Mapping[str, str], stack: tuple[str, ...],
               defs: dict[str, Any]) -> dict[str, Any]:
    def sub(v: Any) -> dict[str, Any]:
        return _convert(v, schema, (*path, "*"), descriptions, stack, defs)

    if isinstance(node, yv.Enum):
        return {"enum": list(node.enums)}
    if isinstance(node, yv.Regex):  # before String: Mac/SemVer are Regex subclasses
        pats = [_anchor(("(?i)" if r.flags & re.IGNORECASE else "") + r.pattern)
                for r in node.regexes]
        if len(pats) == 1:
            return {"type": "string", "pattern": pats[0]}
        return {"type": "string", "anyOf": [{"pattern": p} for p in pats]}
    if isinstance(node, yv.String):
        out: dict[str, Any] = {"type": "string"}
        _copy(node, out, {"min": "minLength", "max": "maxLength"})
        if _kw(node, "equals") is not None:
            out["const"] = _kw(node, "equals")
        for kw, fmt in (("starts_with", "^{}"), ("ends_with", "{}$")):
            if _kw(node, kw) is not None:
                out.setdefault("allOf", []).append({"pattern": fmt.format(_escape(_kw(node, kw)))})
        if _kw(node, "matches") is not None:
            out.setdefault("allOf", []).append({"pattern": _anchor(_kw(node, "matches"))})
        if _kw(node, "exclude") is not None:
            out.setdefault("allOf", []).append(
                {"pattern": "^[^" + _escape_class(_kw(node, "exclude")) + "]*$"})
        return out
    if isinstance(node, yv.Integer | yv.Number):
        out = {"type": "integer" if isinstance(node, yv.Integer) else "number"}
        _copy(node, out, {"min": "minimum", "max": "maximum"})
        return out
    if isinstance(node, yv.Boolean):
        return {"type": "boolean"}
    if isinstance(node, yv.Null):
        return {"type": "null"}
    if isinstance(node, yv.Map):
        out = {"type": "object"}
        key = _kw(node, "key")
        value = _one_of([sub(v) for v in node.validators]) if node.validators else None
        if isinstance(key, yv.Enum):
            # A closed set of keys becomes properties: helm then names an unknown key beside
            # its map ("additional properties"), where a propertyNames error is reported at
            # another key's location.
            out["properties"] = {str(k): dict(value or {}) for k in key.args}
            out["additionalProperties"] = False
            _copy(node, out, {"min": "minProperties", "max": "maxProperties"})
            return out
        if key is not None and not (isinstance(key, yv.String) and not isinstance(key, yv.Regex)
                                    and not key.kwargs):
            out["propertyNames"] = _convert(key, schema, path, descriptions, stack, defs)
        if value is not None:  # map() with no value type takes any value: nothing to say
            out["additionalProperties"] = value
        _copy(node, out, {"min": "minProperties", "max": "maxProperties"})
        return out
    if isinstance(node, yv.List):
        out = {"type": "array"}
        if node.validators:
            out["items"] = _one_of([sub(v) for v in node.validators])
        _copy(node, out, {"min": "minItems", "max": "maxItems"})
        return out
    if isinstance(node, yv.Any):
        return _one_of([_convert(v, schema, path, descriptions, stack, defs)
                        for v in node.validators])
    if isinstance(node, yv.Ip):
        return {"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]}
    raise SchemaError(f"{schema.path}: {node.get_name()}() at {'.'.join(path) or '<root>'} "
                      "has no JSON Schema equivalent in meshray's converter")


def _one_of(parts: list[dict[str, Any]]) -> dict[str, Any]:
    if not parts:
        return {}
    if len(parts) == 1:
        return parts[0]
    if all(set(p) == {"type"} and isinstance(p["type"], str) for p in parts):
        return {"type": list(dict.fromkeys(p["type"] for p in parts))}  # one subschema, not n
    return {"anyOf": parts}


def _copy(node: yv.Validator, out: dict[str, Any], names: dict[str, str]) -> None:
    for kw, json_kw in names.items():
        if _kw(node, kw) is not None:
            out[json_kw] = _kw(node, kw)


def _anchor(pattern: str) -> str:
    """yamale uses re.match (anchored at the start); JSON Schema patterns search anywhere."""
    if pattern.startswith("^") or pattern.startswith("(?i)^"):
        return pattern
    return f"^(?:{pattern})"


def _escape(text: str) -> str:
    return "".join("\\" + c if c in r".^$*+?()[]{}|\/" else c for c in text)


def _escape_class(text: str) -> str:
    return "".join("\\" + c if c in r"\]^-[" else c for c in text)


def dump(schema_json: Mapping[str, Any]) -> str:
    return json.dumps(schema_json, indent=2, ensure_ascii=False) + "\n"


# ----------------------------------------------------------- checking a values tree


def check(schema: ChartSchema, data: Any) -> list[tuple[KeyPath, str, Any]]:
    """Schema problems of a complete values tree as (path, problem, value)."""
    return list(_check(schema.root, data, (), schema))


def _check(node: Any, value: Any, path: KeyPath, schema: ChartSchema,
           ) -> Iterator[tuple[KeyPath, str, Any]]:
    node = schema.resolve(node)
    if is_static_map(node):
        if not isinstance(value, Mapping):
            yield path, "must be a map", value
            return
        known = [str(k) for k in node]
        for key, sub_value in value.items():
            if str(key) not in known:
                close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]}?)" if close else ""
                yield (*path, str(key)), f"unknown key{hint}", sub_value
        for key, sub in node.items():
            if key not in value:
                if is_required(sub):
                    yield (*path, str(key)), "required key missing", MISSING
                continue
            sub_value = value[key]
            if sub_value is None and isinstance(sub, yv.Validator) and (
                    sub.is_optional and sub.can_be_none):
                continue
            yield from _check(sub, sub_value, (*path, str(key)), schema)
        return
    if isinstance(node, yv.Map):
        if not isinstance(value, Mapping) or not _sized_ok(node, value):
            yield path, f"must be {describe(node, schema)}", value
            return
        key_v = node.kwargs.get("key")
        for k, v in value.items():
            if key_v is not None and key_v.validate(k):
                yield (*path, str(k)), f"key must be {describe(key_v, schema)}", k
                continue
            yield from _check_any_of(node.validators, v, (*path, str(k)), schema)
        return
    if isinstance(node, yv.List):
        if not isinstance(value, list) or not _sized_ok(node, value):
            yield path, f"must be {describe(node, schema)}", value
            return
        for i, v in enumerate(value):
            yield from _check_any_of(node.validators, v, (*path, i), schema)
        return
    if isinstance(node, yv.Any):
        yield from _check_any_of(node.validators, value, path, schema)
        return
    if node.validate(value):
        yield path, f"must be {describe(node, schema)}", value


def _sized_ok(node: yv.Validator, value: Any) -> bool:
    lo, hi = node.kwargs.get("min"), node.kwargs.get("max")
    return (lo is None or len(value) >= lo) and (hi is None or len(value) <= hi)


def _check_any_of(validators: Sequence[Any], value: Any, path: KeyPath, schema: ChartSchema,
            ) -> Iterator[tuple[KeyPath, str, Any]]:
    """yamale's any-of: fine if one validator accepts; else the closest one's problems."""
    if not validators:
        return
    results = [list(_check(v, value, path, schema)) for v in validators]
    if any(not r for r in results):
        return
    if len(validators) == 1:
        yield from results[0]
        return
    deeper = [r for r in results if all(p != path for p, _, _ in r)]
    if len(deeper) == 1:  # only one alternative had the right shape: its details help
        yield from deeper[0]
        return
    yield path, "must be " + " or ".join(describe(v, schema) for v in validators), value
