"""References between resources: `${model:GROUP/NAME}`, `${model:GROUP/NAME@LABEL}`, `${connector:NAME}`,
`${agent:NAME}` inside the bodies of pipelines and agents (docs/references.md).

Pure helpers: find the references in a value, turn a reference into the address it names, resolve
every reference in a value with a lookup, and search a value for server ids (the "in use" check).
A reference may be a whole string value or part of one (a prompt, a query template).
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterator, Optional

from mlsync.core.address import Address

KNOWN_AFTER_APPLY = "(known after apply)"
REFERENCE = re.compile(r"\$\{(model|connector|agent):([^}]*)\}")
# The ids searched for are the server's (ML Commons makes 20 random URL-safe characters); an id shorter
# than this is only matched as a whole string value, never inside a longer string.
_MIN_EMBEDDED_ID = 6


def token(address: Address) -> str:
    """The canonical reference to `address` (what the planner and the executor resolve)."""
    if address.kind == "model":
        return "${model:" + f"{address.group}/{address.name}" + (f"@{address.version}" if address.version else "") + "}"
    return "${" + f"{address.kind}:{address.name}" + "}"


def parse(kind: str, body: str) -> tuple[str, str, Optional[str]]:
    """`${kind:body}` -> (group or "", name, label or None). A model reference is GROUP/NAME[@LABEL]:
    the group ends at the first `/`, the label starts at the last `@`. ValueError when malformed."""
    if kind != "model":
        if not body:
            raise ValueError(f"${{{kind}:}} names no {kind}")
        return "", body, None
    group, slash, rest = body.partition("/")
    if not slash or not group or not rest:
        raise ValueError(f"${{model:{body}}} must name GROUP/NAME or GROUP/NAME@LABEL")
    name, at, label = rest.rpartition("@") if "@" in rest else (rest, "", "")
    if at and (not name or not label):
        raise ValueError(f"${{model:{body}}} must name GROUP/NAME or GROUP/NAME@LABEL")
    return group, name, (label if at else None)


def address_of(kind: str, body: str) -> Address:
    """The address a canonical reference names (a model reference with a label: that version)."""
    group, name, label = parse(kind, body)
    if kind == "model":
        return Address("model", name, group=group, version=label)
    return Address(kind, name)


def strings(value: Any, path: tuple = ()) -> Iterator[tuple[tuple, str]]:
    """Every string value inside `value`, with its path (keys and list indexes)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from strings(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from strings(v, path + (i,))


def found(value: Any) -> Iterator[tuple[tuple, str, str]]:
    """(path, kind, body) of every reference inside `value`."""
    for path, text in strings(value):
        for m in REFERENCE.finditer(text):
            yield path, m.group(1), m.group(2)


def rewrite(value: Any, fn: Callable[[str, str], str]) -> Any:
    """`value` with every reference replaced by `fn(kind, body)`."""
    if isinstance(value, str):
        return REFERENCE.sub(lambda m: fn(m.group(1), m.group(2)), value) if "${" in value else value
    if isinstance(value, dict):
        return {k: rewrite(v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [rewrite(v, fn) for v in value]
    return value


def resolve(value: Any, ids: Callable[[Address], Optional[str]]) -> Any:
    """`value` with every canonical reference replaced by its target's id (`ids(address)`), or by
    "(known after apply)" where the id does not exist yet."""
    return rewrite(value, lambda kind, body: ids(address_of(kind, body)) or KNOWN_AFTER_APPLY)


def targets(value: Any) -> list[Address]:
    """The addresses the canonical references in `value` name, in order, once each."""
    return list(dict.fromkeys(address_of(kind, body) for _, kind, body in found(value)))


def ids_used(value: Any, ids: set[str]) -> set[str]:
    """Which of `ids` appear in `value`: as a whole string value under any key, or (for ids long enough
    to be unambiguous) inside a longer string such as a prompt or a query template."""
    out: set[str] = set()
    if not ids:
        return out
    long_ids = [i for i in ids if len(i) >= _MIN_EMBEDDED_ID]
    for _, text in strings(value):
        if text in ids:
            out.add(text)
        elif len(text) > _MIN_EMBEDDED_ID:
            out.update(i for i in long_ids if i in text)
    return out


def at(value: Any, path: tuple) -> Any:
    """The value at `path` inside `value`, or None when the path does not exist there."""
    for p in path:
        if isinstance(value, dict) and isinstance(p, str):
            value = value.get(p)
        elif isinstance(value, list) and isinstance(p, int) and 0 <= p < len(value):
            value = value[p]
        else:
            return None
    return value
