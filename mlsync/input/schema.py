"""The JSON Schema of a desired-state file (draft 2020-12), generated from the pydantic model.

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
import json
from typing import Any

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "urn:mlsync:desired-state:1"
COMMITTED_PATH = "schemas/mlsync.schema.json"  # relative to the repository root


@functools.lru_cache(maxsize=1)
def _generated() -> dict:
    from mlsync.input.model import StackFile

    raw = StackFile.model_json_schema(by_alias=True, mode="validation")
    body = _clean(raw)
    schema: dict[str, Any] = {
        "$schema": SCHEMA_DIALECT,
        "$id": SCHEMA_ID,
        "title": "mlsync desired-state file",
        "description": (
            "The connectors, model groups and models (with every registered version) that one mlsync stack "
            "manages in OpenSearch ML Commons. Strings may use ${env:NAME}, ${env:NAME:-default} and "
            "${file:relative/path}; $${ is a literal ${; ML Commons' own ${parameters.x} and ${credential.x} "
            "pass through untouched."),
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


def _clean(node: Any, in_properties: bool = False) -> Any:
    """Drop pydantic's auto-generated property titles and `default: null`; keep everything else."""
    if isinstance(node, list):
        return [_clean(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if in_properties:
            out[key] = _clean(value)
            continue
        if key == "default" and value is None:
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {k: _strip_title(_clean(v)) for k, v in value.items()}
            continue
        out[key] = _clean(value, in_properties=key in ("$defs",))
    return out


def _strip_title(prop: Any) -> Any:
    if isinstance(prop, dict):
        prop = {k: v for k, v in prop.items() if k != "title"}
    return prop


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
