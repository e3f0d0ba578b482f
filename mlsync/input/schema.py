"""The JSON Schema of a desired-state file (draft 2020-12), generated from the declarations of
`mlsync.input.model`.

`schemas/mlsync.schema.json` in the repository is this module's output, committed so that editors
find it (`# yaml-language-server: $schema=../schemas/mlsync.schema.json`); a test asserts that the
committed file equals `schema_text()`. The installed package needs no data file: it generates the
schema from the model it validates with, so the two cannot drift apart.

Runtime validation reads the same classes (`mlsync.input.validator`, which produces the typed
view); the schema serves editors and other tools, and the test suite keeps both accepting and
rejecting the same documents.
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
import types
import typing
from typing import Any

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "urn:mlsync:desired-state:1"
COMMITTED_PATH = "schemas/mlsync.schema.json"  # relative to the repository root


@functools.lru_cache(maxsize=1)
def _generated() -> dict:
    from mlsync.input.model import StackFile

    defs: dict[str, Any] = {}
    body = _record_schema(StackFile, defs)
    schema: dict[str, Any] = {
        "$schema": SCHEMA_DIALECT,
        "$id": SCHEMA_ID,
        "title": "mlsync desired-state file",
        "description": (
            "The connectors, model groups and models (with every registered version) that one mlsync stack "
            "manages in OpenSearch ML Commons. Strings may use ${env:NAME}, ${env:NAME:-default} and "
            "${file:relative/path}; $${ is a literal ${; ML Commons' own ${parameters.x} and ${credential.x} "
            "pass through untouched."),
        "$defs": {name: defs[name] for name in sorted(defs)},
    }
    for key, value in body.items():
        if key not in ("title", "description"):
            schema[key] = value
    return schema


def generate() -> dict:
    """The schema as a fresh dict."""
    return copy.deepcopy(_generated())


def schema_text() -> str:
    """The schema as the text of `schemas/mlsync.schema.json` (stable key order, trailing newline)."""
    return json.dumps(_generated(), indent=2, ensure_ascii=False) + "\n"


# --- from the declarations (mlsync.input.declare) ------------------------------------------------
# The keys of each schema object are sorted, except a record's `properties`, which follow its fields.


def _record_schema(cls: Any, defs: dict) -> dict:
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, info in cls.model_fields.items():
        key = info.alias or name
        prop = dict(_type_schema(info.annotation, list(info.metadata), defs))
        if info.description:
            prop["description"] = info.description
        if not info.is_required() and info.default_factory is None and info.default is not None:
            prop["default"] = _jsonable(info.default)
        properties[key] = _sorted(prop)
        if info.is_required():
            required.append(key)
    out: dict[str, Any] = {"additionalProperties": False}
    if cls.__doc__:
        out["description"] = inspect.cleandoc(cls.__doc__)
    out["properties"] = properties
    if required:
        out["required"] = required
    out["title"] = cls.__name__
    out["type"] = "object"
    return out


def _type_schema(tp: Any, metadata: list, defs: dict) -> dict:
    from mlsync.input.declare import Discriminator, Ge, Gt, MinLen, Record, WithJsonSchema, annotated

    tp, flat = annotated(tp, metadata)
    given = [m.json_schema for m in flat if isinstance(m, WithJsonSchema)]
    if given:
        return _deep_sorted(given[-1])
    limits = {type(m): m for m in flat if isinstance(m, (MinLen, Gt, Ge))}
    origin = typing.get_origin(tp)
    if any(isinstance(m, Discriminator) for m in flat):
        return {"oneOf": [_type_schema(a, [], defs) for a in typing.get_args(tp)]}
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        inner = [m for m in flat if isinstance(m, MinLen)]
        return {"anyOf": [_type_schema(members[0], inner, defs), {"type": "null"}]}
    if origin is list:
        out = {"items": _type_schema(typing.get_args(tp)[0], [], defs), "type": "array"}
        if MinLen in limits:
            out["minItems"] = limits[MinLen].min_length
        return _sorted(out)
    if origin is dict:
        value_type = typing.get_args(tp)[1]
        out = {"additionalProperties": True if value_type is Any else _type_schema(value_type, [], defs),
               "type": "object"}
        if MinLen in limits:
            out["minProperties"] = limits[MinLen].min_length
        return _sorted(out)
    if origin is typing.Literal:
        (value,) = typing.get_args(tp)
        return {"const": value, "type": "integer" if isinstance(value, int) else "string"}
    if tp is Any:
        return {}
    if isinstance(tp, type) and issubclass(tp, Record):
        if tp.__name__ not in defs:
            defs[tp.__name__] = {}   # reserved first: a record may contain itself
            defs[tp.__name__] = _record_schema(tp, defs)
        return {"$ref": f"#/$defs/{tp.__name__}"}
    simple = {str: "string", int: "integer", bool: "boolean"}
    if tp in simple:
        out = {"type": simple[tp]}
        if MinLen in limits:
            out["minLength"] = limits[MinLen].min_length
        if Gt in limits:
            out["exclusiveMinimum"] = limits[Gt].gt
        if Ge in limits:
            out["minimum"] = limits[Ge].ge
        return _sorted(out)
    raise NotImplementedError(f"mlsync.input.schema: no JSON Schema for {tp!r}")


def _sorted(node: dict) -> dict:
    return {key: node[key] for key in sorted(node)}


def _deep_sorted(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: _deep_sorted(node[key]) for key in sorted(node)}
    if isinstance(node, list):
        return [_deep_sorted(v) for v in node]
    return node


def _jsonable(value: Any) -> Any:
    from mlsync.input.declare import Record

    return value.model_dump(by_alias=True) if isinstance(value, Record) else value


@functools.lru_cache(maxsize=1)
def validator() -> Any:
    """A jsonschema Draft 2020-12 validator for the generated schema.

    `pattern` is checked with ECMA-262 semantics, as JSON Schema specifies and editors do: a final
    `$` matches only at the very end (Python's `re` would also let it match before a final newline).
    """
    import jsonschema
    from jsonschema import validators

    def pattern(validator: Any, patrn: str, instance: Any, schema: dict) -> Any:
        if isinstance(instance, str) and not _ecma_regex(patrn).search(instance):
            yield jsonschema.ValidationError(f"{instance!r} does not match {patrn!r}")

    schema = _generated()
    jsonschema.Draft202012Validator.check_schema(schema)
    cls = validators.extend(jsonschema.Draft202012Validator, {"pattern": pattern})
    return cls(schema)


@functools.lru_cache(maxsize=None)
def _ecma_regex(patrn: str) -> Any:
    import re

    if patrn.endswith("$") and not patrn.endswith("\\$"):
        patrn = patrn[:-1] + r"\Z"
    return re.compile(patrn)


def schema_errors(tree: Any) -> list[Any]:
    """jsonschema's errors for a plain tree (as produced by the loader), in document order."""
    return sorted(validator().iter_errors(tree), key=lambda e: [str(p) for p in e.absolute_path])


def is_valid(tree: Any) -> bool:
    return validator().is_valid(tree)
