"""Pieces shared by the text and Markdown renderers: words, symbols, value formatting, masking.

Everything here only *formats* what a `Plan` already says; nothing decides what changes.
"""

from __future__ import annotations

import difflib
import json
import re
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from functools import lru_cache
from typing import Any, Iterable, Iterator, NamedTuple, Optional, Union

from mlsync.core import kinds
from mlsync.core.plan import KNOWN_AFTER_APPLY, Action, FieldChange, Plan, ResourceChange
from mlsync.core.secrets import MASK, Secret
from mlsync.render import plural  # noqa: F401  (the renderers take it from here)

NOT_SET = "(not set)"
ARROW = "→"
ELLIPSIS = "…"

#: Order of the summary line (and of the Markdown summary table): Terraform-like, no-op apart.
SUMMARY_ORDER: tuple[Action, ...] = (
    Action.CREATE, Action.REGISTER, Action.UPDATE, Action.REPLACE, Action.DELETE,
    Action.DEPLOY, Action.UNDEPLOY, Action.ADOPT,
)

#: What the summary line says per action ("2 to create").
SUMMARY_WORDS = {
    Action.CREATE: "create", Action.REGISTER: "register", Action.UPDATE: "update",
    Action.REPLACE: "replace", Action.DELETE: "delete", Action.DEPLOY: "deploy",
    Action.UNDEPLOY: "undeploy", Action.ADOPT: "adopt",
}

#: Legend: what each symbol means.
LEGEND = {
    Action.CREATE: "create",
    Action.REGISTER: "register a new model version",
    Action.UPDATE: "update in place",
    Action.REPLACE: "replace (delete, then register again)",
    Action.DELETE: "delete",
    Action.DEPLOY: "deploy",
    Action.UNDEPLOY: "undeploy",
    Action.ADOPT: "adopt into the stack's state",
}

#: "... will be <word>"
_PAST = {
    Action.CREATE: "created",
    Action.REGISTER: "registered as a new version",
    Action.UPDATE: "updated in place",
    Action.REPLACE: "replaced",
    Action.DELETE: "deleted",
    Action.DEPLOY: "deployed",
    Action.UNDEPLOY: "undeployed",
    Action.ADOPT: "adopted into the stack's state",
    Action.NOOP: "left unchanged",
}

SECTION_TITLES = {k.name: k.title for k in kinds.KINDS}

#: rich style names per action (used by the text renderer when colour is on).
ACTION_STYLES = {
    Action.CREATE: "green", Action.REGISTER: "green", Action.UPDATE: "yellow",
    Action.REPLACE: "red", Action.DELETE: "red", Action.DEPLOY: "cyan",
    Action.UNDEPLOY: "magenta", Action.ADOPT: "blue", Action.NOOP: "",
}


# --------------------------------------------------------------------------- actions


def shown_actions(change: ResourceChange) -> tuple[Action, ...]:
    """The change's actions without no-op (a no-op inside a combination says nothing)."""
    return tuple(a for a in change.actions if a is not Action.NOOP)


def change_symbol(actions: Iterable[Action]) -> str:
    """`+`, `~`, ...; a combination concatenates in order: undeploy, update, deploy → `<~>`."""
    acts = [a for a in actions if a is not Action.NOOP]
    return "".join(a.symbol for a in acts) or "?"


def symbol_parts(actions: Iterable[Action]) -> list[tuple[str, Action]]:
    return [(a.symbol, a) for a in actions if a is not Action.NOOP]


def action_phrase(actions: Iterable[Action]) -> str:
    """"will be created"; "will be undeployed, updated in place, then redeployed"."""
    acts = [a for a in actions if a is not Action.NOOP]
    if not acts:
        return "will be left unchanged"
    words = []
    for i, a in enumerate(acts):
        w = _PAST[a]
        if a is Action.DEPLOY and Action.UNDEPLOY in acts[:i]:
            w = "redeployed"
        words.append(w)
    if len(words) == 1:
        return "will be " + words[0]
    return "will be " + ", ".join(words[:-1]) + ", then " + words[-1]


def action_words(actions: Iterable[Action]) -> str:
    """"undeploy, update, deploy" (the action values, in order)."""
    return ", ".join(a.value for a in actions if a is not Action.NOOP) or "no-op"


def id_text(change: ResourceChange) -> str:
    """`id abc123, server version 3`; `(known after apply)` for what does not exist yet."""
    acts = change.actions
    new_object = Action.REPLACE in acts
    shows_version = change.kind == "model" or change.server_version is not None
    sid = change.server_id or KNOWN_AFTER_APPLY
    ver = change.server_version or KNOWN_AFTER_APPLY
    if new_object and change.server_id:
        sid = f"{change.server_id} {ARROW} {KNOWN_AFTER_APPLY}"
        if change.server_version:
            ver = f"{change.server_version} {ARROW} {KNOWN_AFTER_APPLY}"
    text = f"id {sid}"
    if shows_version:
        text += f", server version {ver}"
    return text


def artifact_text(change: ResourceChange) -> Optional[str]:
    """What registering this version moves: `upload models/x.zip (86.7 MiB, sha256 c15f0d2e62d8…)` for a
    local file, `the node downloads https://… (sha256 …)` for a URL version."""
    art = change.artifact
    if not isinstance(art, dict) or not (Action.REGISTER in change.actions or Action.REPLACE in change.actions):
        return None
    bits = []
    if isinstance(art.get("size"), int):
        bits.append(human_size(art["size"]))
    if art.get("sha256"):
        bits.append(f"sha256 {str(art['sha256'])[:12]}{ELLIPSIS}")
    detail = f" ({', '.join(bits)})" if bits else ""
    if art.get("path"):
        return f"upload {art['path']}{detail}"
    if art.get("url"):   # the node downloads it itself during the register task
        return f"the node downloads {art['url']}{detail}"
    return None


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{n:,} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n:,} bytes"  # pragma: no cover


def summary_counts(plan: Plan) -> dict[Action, int]:
    raw = plan.summary()
    return {a: raw.get(a.value, 0) for a in Action}


def summary_line(plan: Plan) -> str:
    counts = summary_counts(plan)
    return "Plan: " + ", ".join(f"{counts[a]} to {SUMMARY_WORDS[a]}" for a in SUMMARY_ORDER) + "."


def unchanged_count(plan: Plan) -> int:
    return sum(1 for c in plan.changes if c.is_noop)


NO_CHANGES = "No changes. The cluster matches the file."


# --------------------------------------------------------------------------- secrets


def mask_secrets(value: Any) -> Any:
    """A copy of `value` (JSON-like data) in which every `Secret` (also as a dict key) is `(sensitive)`."""
    if isinstance(value, Secret):
        return MASK
    if isinstance(value, dict):
        return {(MASK if isinstance(k, Secret) else k): mask_secrets(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [mask_secrets(v) for v in value]
    return value


def _json_default(o: Any) -> Any:
    if isinstance(o, Secret):
        return MASK
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    return str(o)


def to_json_text(value: Any, *, indent: Optional[int] = None) -> str:
    """JSON text for display; never reveals a Secret."""
    if indent is None:
        return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=_json_default)
    return json.dumps(value, ensure_ascii=False, indent=indent, default=_json_default)


# --------------------------------------------------------------------------- terminal safety

#: Control characters (but tab) and bidi overrides: text from the cluster must not be able to move
#: the cursor, recolour the terminal or reorder what a reviewer reads.
_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_UNSAFE_NO_NL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _escape_char(m: "re.Match[str]") -> str:
    o = ord(m.group())
    return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}"


#: `UNSAFE_SEARCH(text)` is not None when `text` holds a character `make_safe` escapes (newlines included).
UNSAFE_SEARCH = _UNSAFE.search


def has_unsafe(text: str) -> bool:
    return _UNSAFE.search(text) is not None


def make_safe(text: str, *, keep_newlines: bool = False) -> str:
    """`text` with control characters and bidi overrides shown as `\\x1b` / `\\u202e`."""
    return (_UNSAFE_NO_NL if keep_newlines else _UNSAFE).sub(_escape_char, text)


# --------------------------------------------------------------------------- values


def is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool, Secret))


_NEEDS_ESCAPE = re.compile(r'[\x00-\x1f"\\]')


def scalar_text(v: Any) -> str:
    """Display form of one value on one line (strings quoted as JSON, None as `(not set)`)."""
    if v is None:
        return NOT_SET
    if isinstance(v, str):
        if v in (MASK, KNOWN_AFTER_APPLY):
            return v
        if _NEEDS_ESCAPE.search(v) is None:   # fast path: what json.dumps would give
            return '"' + v + '"'
        return encode_basestring(v)            # json.dumps(v, ensure_ascii=False), without an encoder
    if v is True:
        return "true"
    if v is False:
        return "false"
    if type(v) is int:
        return str(v)
    if isinstance(v, Secret):
        return MASK
    return to_json_text(v)


def _clip_string(s: str, start: int, limit: int) -> str:
    """`s[start:start+limit]` quoted, with `…` inside the quotes where text was cut."""
    end = min(len(s), start + limit)
    body = json.dumps(s[start:end], ensure_ascii=False)[1:-1]
    return '"' + (ELLIPSIS if start > 0 else "") + body + (ELLIPSIS if end < len(s) else "") + '"'


def clip_value(v: Any, limit: int) -> str:
    """One-line display of `v`, cut to about `limit` characters of content."""
    if isinstance(v, str) and v not in (MASK, KNOWN_AFTER_APPLY) and len(v) > limit:
        return _clip_string(v, 0, limit)
    text = scalar_text(v)
    if len(text) > limit + 2:
        return text[:limit] + ELLIPSIS
    return text


def clip_pair(before: Any, after: Any, limit: int) -> tuple[str, str]:
    """Display both sides of a change, each about `limit` characters at most.

    Two long strings are cut around their first difference, so the part that changed stays in view.
    """
    if (isinstance(before, str) and isinstance(after, str)
            and (len(before) > limit or len(after) > limit)
            and before not in (MASK, KNOWN_AFTER_APPLY) and after not in (MASK, KNOWN_AFTER_APPLY)):
        n = min(len(before), len(after))
        p = 0
        while p < n and before[p] == after[p]:
            p += 1
        context = min(limit // 3, 24)
        start = max(0, p - context)
        return _clip_string(before, start, limit), _clip_string(after, start, limit)
    return clip_value(before, limit), clip_value(after, limit)


def is_multiline(v: Any) -> bool:
    return isinstance(v, str) and "\n" in v


def value_lines(v: Any) -> list[str]:
    """A value as lines for a block display: a multi-line string's lines, or pretty JSON."""
    if v is None:
        return []
    if isinstance(v, Secret):
        return [MASK]
    if isinstance(v, str):
        return v.split("\n")
    if isinstance(v, (dict, list, tuple)):
        # one `path: value` line per leaf: a line diff of these reads like a field diff
        return [f"{p}: {scalar_text(x) if is_scalar(x) else to_json_text(x)}" if p else to_json_text(x)
                for p, x in leaf_items(v)] or [to_json_text(v)]
    return [scalar_text(v)]


def line_diff(before: list[str], after: list[str], *, context: int = 2) -> list[tuple[str, str]]:
    """A line diff as (tag, line): tag ' ' same, '-' removed, '+' added, '…' skipped same lines."""
    out: list[tuple[str, str]] = []
    sm = difflib.SequenceMatcher(a=before, b=after, autojunk=False)
    opcodes = sm.get_opcodes()
    for idx, (tag, i1, i2, j1, j2) in enumerate(opcodes):
        if tag == "equal":
            same = before[i1:i2]
            head = context if idx > 0 else 0
            tail = context if idx < len(opcodes) - 1 else 0
            if len(same) > head + tail + 1:
                out.extend((" ", s) for s in same[:head])
                skipped = len(same) - head - tail
                out.append((ELLIPSIS, f"{ELLIPSIS} {plural(skipped, 'unchanged line')}"))
                out.extend((" ", s) for s in same[len(same) - tail:] if tail)
            else:
                out.extend((" ", s) for s in same)
            continue
        out.extend(("-", s) for s in before[i1:i2])
        out.extend(("+", s) for s in after[j1:j2])
    return out


def block_diff(before: Any, after: Any, max_lines: int) -> tuple[tuple[str, str], ...]:
    """The line diff of two values for a block display, cut after `max_lines` lines."""
    return _block_diff(tuple(value_lines(before)), tuple(value_lines(after)), max_lines)


@lru_cache(maxsize=1024)
def _block_diff(before: tuple[str, ...], after: tuple[str, ...], max_lines: int) -> tuple[tuple[str, str], ...]:
    # a large plan repeats the same change (a script, a client_config) on many resources: diffed once
    return tuple(cap_lines(line_diff(list(before), list(after)), max_lines))


def cap_lines(lines: list[tuple[str, str]], max_lines: int) -> list[tuple[str, str]]:
    if len(lines) <= max_lines:
        return lines
    rest = len(lines) - max_lines
    return lines[:max_lines] + [(ELLIPSIS, f"{ELLIPSIS} {plural(rest, 'more line')}")]


# --------------------------------------------------------------------------- field entries


def leaf_items(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Leaves of a comparable form as (dotted path, value); `[i]` for list items that are mappings or lists."""
    out: list[tuple[str, Any]] = []
    _leaves(value, prefix, out)
    return iter(out)


def _leaves(value: Any, prefix: str, out: list) -> None:
    # a list, not nested generators: a 10,000-change plan walks a few hundred thousand leaves
    if isinstance(value, dict):
        if not value and prefix:
            out.append((prefix, value))
        for k, v in value.items():
            key = MASK if isinstance(k, Secret) else str(k)
            _leaves(v, f"{prefix}.{key}" if prefix else key, out)
    elif isinstance(value, (list, tuple)) and any(isinstance(v, (dict, list, tuple)) for v in value):
        for i, v in enumerate(value):
            _leaves(v, f"{prefix}[{i}]", out)
    else:
        out.append((prefix, value))


class NewField(NamedTuple):
    """A field of an object about to be created, shown like an added field (same attributes as FieldChange)."""

    path: str
    before: Any
    after: Any
    sensitive: bool = False
    forces_replace: bool = False


Field = Union[FieldChange, NewField]


def field_entries(change: ResourceChange) -> tuple[Field, ...]:
    """What to show under a change: its field changes; for a create/register without any, the new
    object's fields (like Terraform shows every attribute of a resource it creates)."""
    if change.field_changes:
        return change.field_changes
    acts = change.actions
    if (Action.CREATE in acts or Action.REGISTER in acts) and isinstance(change.after, dict):
        fields = [NewField(p, None, v) for p, v in leaf_items(change.after) if p]
        credential = _credential_path(change)
        if credential:
            fields = _with_credential(fields, credential)
        return tuple(fields)
    return ()


def _credential_path(change: ResourceChange) -> Optional[str]:
    """Where a new object's credential goes: the comparable form never holds it (the server never
    returns it), so without this a reviewer would not see that a credential is being sent."""
    if not change.credential_fingerprint:
        return None
    if change.kind == "connector":
        return "credential"
    if isinstance((change.after or {}).get("connector"), dict):
        return "connector.credential"   # a remote model's inline connector
    return None


def _with_credential(fields: list[NewField], path: str) -> list[NewField]:
    """`fields` with `path: (sensitive)` where the file writes it: after the parameters, before the actions."""
    entry = NewField(path, None, MASK, sensitive=True)
    actions = path.rsplit("credential", 1)[0] + "actions"
    at = next((i for i, f in enumerate(fields) if f.path.startswith(actions)), len(fields))
    return fields[:at] + [entry] + fields[at:]


def field_sign(fc: Field) -> str:
    if fc.before is None and fc.after is not None:
        return "+"
    if fc.after is None and fc.before is not None:
        return "-"
    return "~"


def sensitive_text(v: Any) -> str:
    return NOT_SET if v is None else MASK


def drifted(plan: Plan) -> list[ResourceChange]:
    return [c for c in plan.changes if c.drift]
