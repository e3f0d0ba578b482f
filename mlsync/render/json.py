"""The machine-readable plan: `Plan.to_json()` pretty-printed, with every secret masked.

The format (and its versioning policy) is documented in docs/plan-format.md; `format_version` is the
first key. Masking is done here as well as upstream: the whole document is walked and any
`mlsync.core.secrets.Secret` becomes `(sensitive)`, and the before/after of a sensitive field change
(keyed fingerprints in the plan) are shown as `(sensitive)` too, so no secret and nothing derived
from one reaches this output even if a producer forgot to mask it.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from mlsync.core.plan import FORMAT_VERSION, FieldChange, Plan, ResourceChange
from mlsync.render._common import _json_default, mask_secrets
from mlsync.core.secrets import MASK


def _masked_change(ch: ResourceChange) -> ResourceChange:
    if not ch.field_changes:
        return ch
    fields = tuple(
        FieldChange(f.path, mask_secrets(f.before), mask_secrets(f.after), f.sensitive, f.forces_replace)
        for f in ch.field_changes)
    return dataclasses.replace(ch, field_changes=fields)


def document(plan: Plan) -> dict[str, Any]:
    """The JSON plan as a dict (secrets masked)."""
    # Field values are masked first (FieldChange.to_json deep-copies them, which a Secret refuses),
    # then the whole document is walked, so a Secret anywhere else is masked too.
    masked = dataclasses.replace(plan, changes=tuple(_masked_change(ch) for ch in plan.changes))
    doc = mask_secrets(masked.to_json())
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
    return json.dumps(document(plan), indent=2, ensure_ascii=False, default=_json_default) + "\n"
