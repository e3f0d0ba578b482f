"""The machine-readable plan: `Plan.to_json()` pretty-printed, with every secret masked.

The format (and its versioning policy) is documented in docs/plan-format.md; `format_version` is the
first key. Masking is done here as well as upstream: field values are masked before the changes are
made plain (`ResourceChange.to_json`, which writes any other Secret as its stored form, never its
value), the rest of the document is walked and any `mlsync.core.secrets.Secret` becomes
`(sensitive)`, and the before/after of a sensitive field change (keyed fingerprints in the plan)
are shown as `(sensitive)` too, so no secret and nothing derived from one reaches this output even if
a producer forgot to mask it.

The text is what `json.dumps(document, indent=2, ensure_ascii=False)` gives, written by `_indented`:
the standard library has no C encoder for indented output, and at 10,000 changes (12–17 MB) its
Python one took about a second (docs/performance.md §3).
"""

from __future__ import annotations

import dataclasses
import json
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any, Callable

from mlsync.core.plan import FORMAT_VERSION, FieldChange, Plan, ResourceChange
from mlsync.render._common import _json_default, mask_secrets
from mlsync.core.secrets import MASK, Secret


def _masked_change(ch: ResourceChange) -> ResourceChange:
    if not any(_maskable(f.before) or _maskable(f.after) for f in ch.field_changes):
        return ch     # mask_secrets would give the same values (as far as ResourceChange.to_json can tell)
    fields = tuple(
        FieldChange(f.path, mask_secrets(f.before), mask_secrets(f.after), f.sensitive, f.forces_replace)
        for f in ch.field_changes)
    return dataclasses.replace(ch, field_changes=fields)


def _maskable(value: Any) -> bool:
    """Would `mask_secrets` make a difference that `ResourceChange.to_json` does not make the same way:
    a Secret (masked, where to_json writes its stored form) or a set (listed as it iterates, where
    to_json sorts it), anywhere in `value`, keys included?"""
    t = type(value)
    if t is str or value is None or t is int or t is bool or t is float:
        return False
    if t is dict:
        return any(type(k) is not str and _maskable(k) or type(v) is not str and _maskable(v)
                   for k, v in value.items())
    if t is list or t is tuple:
        return any(type(v) is not str and _maskable(v) for v in value)
    return isinstance(value, (Secret, set, frozenset, dict, list, tuple))


def document(plan: Plan) -> dict[str, Any]:
    """The JSON plan as a dict (secrets masked)."""
    # Field values are masked first, then the changes are made plain (`ResourceChange.to_json`: a
    # Secret anywhere else in a change becomes its stored form, so walking them again finds none) and
    # the rest of the document is walked, so a Secret anywhere else is masked too.
    masked = dataclasses.replace(plan, changes=tuple(_masked_change(ch) for ch in plan.changes))
    doc = {k: v if k == "resource_changes" else mask_secrets(v) for k, v in masked.to_json().items()}
    doc = {"format_version": doc.pop("format_version", FORMAT_VERSION), **doc}
    for rc in doc.get("resource_changes", ()):
        for fc in rc.get("field_changes", ()):
            if fc.get("sensitive"):
                for side in ("before", "after"):
                    if fc.get(side) is not None:
                        fc[side] = MASK
    return doc


def render(plan: Plan, *, color: bool = False, width: int = 100) -> str:
    """The plan as pretty-printed JSON (`color` and `width` are accepted for a uniform signature, unused)."""
    return _indented(document(plan), _json_default) + "\n"


_INF = float("inf")


def _indented(value: Any, default: Callable[[Any], Any]) -> str:
    """`json.dumps(value, indent=2, ensure_ascii=False, default=default)`, the same text (the standard
    library's pure-Python encoder, followed case by case, without its generators), several times
    faster. A reference cycle recurses until RecursionError instead of ValueError."""
    def scalar(o: Any) -> Any:   # the text of a non-container, or None
        if isinstance(o, str):
            return encode_basestring(o)
        if o is None:
            return "null"
        if o is True:
            return "true"
        if o is False:
            return "false"
        if isinstance(o, int):
            return int.__repr__(o)
        if isinstance(o, float):
            return ("NaN" if o != o else "Infinity" if o == _INF else "-Infinity" if o == -_INF
                    else float.__repr__(o))
        return None

    def key(k: Any) -> str:
        if isinstance(k, str):
            return encode_basestring(k)
        if isinstance(k, float) or k is True or k is False or k is None or isinstance(k, int):
            return encode_basestring(scalar(k))
        raise TypeError(f"keys must be str, int, float, bool or None, not {k.__class__.__name__}")

    keys: dict[str, str] = {}   # the text of each key: a plan repeats the same few hundred

    def enc(o: Any, ind: str) -> str:
        t = type(o)
        if t is str:
            return encode_basestring(o)
        if t is dict:
            if not o:
                return "{}"
            inner = ind + "  "
            return ("{" + inner + ("," + inner).join([
                ((keys.get(k) or keys.setdefault(k, encode_basestring(k))) if type(k) is str else key(k)) + ": " +
                (encode_basestring(v) if type(v) is str else "null" if v is None else "true" if v is True else
                 "false" if v is False else enc(v, inner)) for k, v in o.items()])
                + ind + "}")
        if t is list or t is tuple:
            if not o:
                return "[]"
            inner = ind + "  "
            return ("[" + inner + ("," + inner).join([
                encode_basestring(v) if type(v) is str else "null" if v is None else "true" if v is True else
                "false" if v is False else enc(v, inner) for v in o]) + ind + "]")
        text = scalar(o)
        if text is not None:
            return text
        if isinstance(o, (list, tuple)):
            return enc(list(o), ind)
        if isinstance(o, dict):
            return enc(dict(o), ind)
        return enc(default(o), ind)

    return enc(value, "\n")
