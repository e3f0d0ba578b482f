"""Turning validation errors into located, readable problems.

Each problem reads `file:line:col: path.to.field: what is wrong (allowed: ...)`. Values of
credentials are never shown: a path through a `credential` mapping shows `(sensitive)`.
"""

from __future__ import annotations

import difflib
import re
import typing
from typing import Any, Iterable, Optional

from mlsync.core.errors import Problem
from mlsync.core.secrets import MASK

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")


def format_path(path: Iterable[Any]) -> str:
    """('models', 0, 'model_config', 'x') -> models[0].model_config.x"""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENT.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


def is_sensitive(path: Iterable[Any]) -> bool:
    return "credential" in tuple(path)


def did_you_mean(word: str, candidates: Iterable[str]) -> Optional[str]:
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


# --- which keys a mapping takes ----------------------------------------------------------------

def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
            continue
        if origin is typing.Union or (origin is not None and str(origin) == "types.UnionType"):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            models = [a for a in args if _is_model(_unwrap(a))]
            tp = models[0] if models else (args[0] if args else tp)
            continue
        return tp


def _is_model(tp: Any) -> bool:
    from mlsync.input.declare import Record

    return isinstance(tp, type) and issubclass(tp, Record)


def model_class_at(path: Iterable[Any]) -> Any:
    """The record class of the mapping at `path` in a desired-state tree (None if not a closed mapping)."""
    from mlsync.input.model import StackFile

    tp: Any = StackFile
    for part in path:
        tp = _unwrap(tp)
        if isinstance(part, int):
            if typing.get_origin(tp) is list:
                tp = typing.get_args(tp)[0]
                continue
            return None
        if _is_model(tp):
            field = _field(tp, part)
            if field is None:
                return None
            tp = field.annotation
            continue
        if typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
            continue
        return None
    tp = _unwrap(tp)
    return tp if _is_model(tp) else None


def _field(cls: Any, key: str) -> Any:
    for name, info in cls.model_fields.items():
        if (info.alias or name) == key:
            return info
    return None


def allowed_keys(path: Iterable[Any]) -> list[str]:
    cls = model_class_at(path)
    if cls is None:
        return []
    return [info.alias or name for name, info in cls.model_fields.items()]


def required_keys(path: Iterable[Any]) -> list[str]:
    cls = model_class_at(path)
    if cls is None:
        return []
    return [info.alias or name for name, info in cls.model_fields.items() if info.is_required()]


# --- validation errors -----------------------------------------------------------------------------

def _tree_path(tree: Any, loc: tuple) -> tuple[tuple, bool]:
    """Map an error's loc onto the tree: drop union tags and wrappers; tell whether the last part exists."""
    path: list[Any] = []
    node = tree
    exists = True
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, dict) and isinstance(part, str):
            if part in node:
                path.append(part)
                node = node[part]
                continue
            if last:  # a missing key
                path.append(part)
                exists = False
                break
            continue  # a union tag ('inline') or a validator name: errors never reach inside a missing key
        if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path.append(part)
            node = node[part]
            continue
        # tags like 'inline' or 'function-after[...]' when the node is not a container
    return tuple(path), exists


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if value is None:
        return "null"
    return type(value).__name__


def _got(value: Any, sensitive: bool) -> str:
    from mlsync.input.model import show

    if sensitive:
        return f"got {MASK}"
    if isinstance(value, (dict, list)) or value is None:
        return f"got {_type_name(value)}"
    return f"got {show(value)}"


def message_for(err: dict, path: tuple, sensitive: bool) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    value = err.get("input")
    got = _got(value, sensitive)
    if kind == "extra_forbidden":
        key = path[-1] if path else "?"
        allowed = allowed_keys(path[:-1])
        hint = did_you_mean(str(key), allowed)
        text = f"unknown key '{key}'"
        if hint:
            text += f"; did you mean '{hint}'?"
        return text + (f" (allowed: {', '.join(allowed)})" if allowed else "")
    if kind == "missing":
        return f"missing required key '{path[-1]}'" if path else "missing required key"
    if kind in ("value_error", "assertion_error"):
        msg = str(ctx.get("error", err.get("msg", "")))
        if sensitive:
            msg = msg.replace(repr(value), MASK) if isinstance(value, str) and value else msg
        return msg
    if kind in ("string_type", "string_sub_type"):
        return f"must be a string, {got}"
    if kind in ("int_type", "int_parsing"):
        return f"must be an integer, {got}"
    if kind == "int_from_float":
        return f"must be a whole number, {got}"
    if kind in ("bool_type", "bool_parsing"):
        return f"must be true or false, {got}"
    if kind in ("dict_type", "model_type", "model_attributes_type", "mapping_type"):
        return f"must be a mapping, {got}"
    if kind in ("list_type", "tuple_type", "iterable_type"):
        return f"must be a list, {got}"
    if kind == "greater_than":
        return f"must be greater than {ctx.get('gt')}, {got}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')}, {got}"
    if kind in ("too_short", "string_too_short"):
        return "must not be empty"
    if kind == "literal_error":
        return f"invalid value, {got} (allowed: {ctx.get('expected', '')})"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return f"must be a connector name or an inline connector mapping, {got}"
    if kind == "finite_number":
        return f"must be a finite number, {got}"
    return " ".join(str(err.get("msg", kind)).split())


def validation_problems(errors: list[dict], tree: Any, locate: Any) -> list[Problem]:
    """Problems for validation errors of `tree`, in the shape of pydantic's `ValidationError.errors()`
    (`mlsync.input.validator` reports them so).

    `locate(path, exists)` gives (file, line, col): an unknown key at the key, a missing key at the
    mapping that lacks it, anything else at the key whose value is wrong.
    """
    problems = []
    for err in errors:
        path, exists = _tree_path(tree, tuple(err["loc"]))
        sensitive = is_sensitive(path)
        message = message_for(err, path, sensitive)
        if err["type"] == "missing":
            file, line, col = locate(path[:-1])
            shown = format_path(path[:-1])
        else:
            file, line, col = locate(path if exists else path[:-1])
            shown = format_path(path)
        problems.append(Problem(file, line, col, shown, message))
    return problems
