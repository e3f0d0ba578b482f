"""What newer ML Commons versions refuse that 2.19 accepts, checked at plan time (docs/compatibility.md).

Pure: the cluster's version comes with the plan (`Plan.cluster_version`, from `GET /`), the values from
the plan's `after` forms, the locations from the desired state. Each check is a row of `CHECKS` with
the first version that has the rule; a cluster that reports an older version, or none, gets none of
them. Only what the plan will send is checked (creates, registrations, updates, replacements): an
object already on the cluster and left alone is not refused for a name it was created with.

Read from the ML Commons source (github.com/opensearch-project/ml-commons, branches 3.0-3.4 and
main; tags to 3.8.0.0):

- 3.1: `StringUtils.SAFE_INPUT_PATTERN` `^[\\p{L}\\p{N}\\s.,!?():@\\-_/'"]*$`, applied by the request
  validation of create/update connector, register/update model group and register/update model to
  the `name` (required, not blank, on create/register) and `description` (when not blank) fields:
  "Model group name can only contain letters, numbers, spaces, and basic punctuation (.,!?():@-_'/")".
- 3.2: `ConnectorUtils.buildSdkRequest` turns the action's endpoint (the url with `${parameters.*}`
  filled in) into a `java.net.URI` and refuses, at predict time, one that does not parse or has no
  host ("Encountered error when trying to create uri from endpoint in ml connector"). `java.net.URI`
  is stricter than a browser: no spaces or `"<>{}|\\^`` characters, and a host with `_` is no host.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Callable, Iterator, Optional
from urllib.parse import urlsplit

from mlsync.core.desired import DesiredState
from mlsync.core.plan import Action, Plan, ResourceChange
from mlsync.core.secrets import Secret

SAFE_INPUT_SINCE = (3, 1)
ENDPOINT_URI_SINCE = (3, 2)
#: Java's `\s` (without UNICODE_CHARACTER_CLASS) and the punctuation of SAFE_INPUT_PATTERN.
_SAFE_EXTRA = frozenset(" \t\n\x0b\f\r.,!?():@-_/'\"")
_SAFE_DESCRIPTION = "letters, numbers, spaces, and basic punctuation (.,!?():@-_'/\")"
_SENT = {Action.CREATE, Action.REGISTER, Action.UPDATE, Action.REPLACE}
_NAMED_KINDS = {"connector": "connector", "model_group": "model group", "model": "model"}
_PLACEHOLDER = re.compile(r"\$\{parameters\.([^}]+)\}")
_URI_ILLEGAL = re.compile(r'[\x00-\x20\x7f"<>{}|\\^`]')
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}\.?|\d{{1,3}}(?:\.\d{{1,3}}){{3}}|\[[0-9A-Fa-f:.]+\]")


def parse_version(text: Optional[str]) -> Optional[tuple[int, int]]:
    """(major, minor) of a cluster version such as "3.1.0" or "opensearch 3.2.0"; None when unknown."""
    m = re.search(r"(\d+)\.(\d+)", text or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def is_safe_text(value: str) -> bool:
    """Whether ML Commons 3.1+'s SAFE_INPUT_PATTERN matches `value` (Java: \\p{L} \\p{N} are Unicode
    letters and numbers, \\s is ASCII white space)."""
    return all(ch in _SAFE_EXTRA or unicodedata.category(ch)[0] in "LN" for ch in value)


def _unsafe_chars(value: str) -> str:
    bad = dict.fromkeys(ch for ch in value if not is_safe_text(ch))
    return ", ".join(repr(ch) for ch in bad)


def endpoint_problem(url: str, parameters: dict) -> Optional[str]:
    """Why ML Commons 3.2+ would refuse the endpoint `url` (its `${parameters.*}` filled from
    `parameters`) at predict time, or None. An endpoint that still has a placeholder after filling is
    not judged: the predict request may supply it."""
    endpoint = _PLACEHOLDER.sub(lambda m: str(parameters[m.group(1)]) if m.group(1) in parameters else m.group(0), url)
    if "${" in endpoint:
        return None
    bad = _URI_ILLEGAL.search(endpoint)
    if bad:
        return f"the endpoint {endpoint!r} has {bad.group()!r}, which a URI may not contain unencoded"
    try:
        parts = urlsplit(endpoint)
        host = parts.netloc.rpartition("@")[2]
        host = host[:host.find("]") + 1] if host.startswith("[") else host.rsplit(":", 1)[0]
    except ValueError as err:
        return f"the endpoint {endpoint!r} is not a URI ({err})"
    if not parts.scheme or not parts.netloc:
        return f"the endpoint {endpoint!r} has no scheme and host"
    if not _HOST.fullmatch(host):
        return (f"the endpoint {endpoint!r} has no host ML Commons can read ({host!r}: a host name is letters, "
                "digits, '-' and dots; java.net.URI reads a name with '_' as no host)")
    return None


@dataclass(frozen=True)
class Check:
    since: tuple[int, int]
    what: str                                                         # for docs/compatibility.md
    problems: Callable[[ResourceChange, str], Iterator[str]]          # (change, version text) -> messages


def _safe_input(ch: ResourceChange, version: str) -> Iterator[str]:
    what = _NAMED_KINDS.get(ch.kind)
    if what is None or not ch.after:
        return
    for field in ("name", "description"):
        value = ch.after.get(field)
        sensitive = isinstance(value, Secret)     # `${env:…}`: checked like any value, never quoted
        value = value.reveal() if sensitive else value
        if not isinstance(value, str) or not value.strip():
            continue        # a blank name is the schema's to refuse; a blank description is allowed
        if not is_safe_text(value):
            has = ("characters outside that set (not shown: the value is sensitive)" if sensitive
                   else _unsafe_chars(value))
            yield (f"ML Commons {version} (3.1 and later) refuses this {what} {field}: it has "
                   f"{has}; names and descriptions can only contain {_SAFE_DESCRIPTION}")


def _endpoints(ch: ResourceChange, version: str) -> Iterator[str]:
    form = ch.after or {}
    if ch.kind == "model" and isinstance(form.get("connector"), dict):
        form, where = form["connector"], "inline connector action"
    elif ch.kind == "connector":
        where = "action"
    else:
        return
    raw = form.get("parameters") or {}
    parameters = {k: (v.reveal() if isinstance(v, Secret) else v) for k, v in raw.items()}
    for i, action in enumerate(form.get("actions") or ()):
        url = action.get("url") if isinstance(action, dict) else None
        # a URL or a parameter from `${env:…}` is checked with its value, and the message never quotes it
        if isinstance(url, Secret):
            url, sensitive = url.reveal(), True
        elif isinstance(url, str):
            sensitive = any(isinstance(raw.get(m.group(1)), Secret) for m in _PLACEHOLDER.finditer(url))
        else:
            continue
        problem = endpoint_problem(url, parameters)
        if problem and sensitive:
            problem = "the endpoint (not shown: it holds a sensitive value) is not a URI with a host ML Commons can read"
        if problem:
            yield (f"ML Commons {version} (3.2 and later) refuses {where} {i} "
                   f"({action.get('action_type', '?')}) at predict time: {problem}")


CHECKS: tuple[Check, ...] = (
    Check(SAFE_INPUT_SINCE, "connector, model group and model `name` and `description`: letters, numbers, "
                            "spaces and `.,!?():@-_'/\"` only", _safe_input),
    Check(ENDPOINT_URI_SINCE, "connector action URLs (standalone and inline), `${parameters.*}` filled in: an "
                              "absolute URI with a host name (no `_`), no unencoded spaces or `\"<>{}|\\^`` "
                              "characters", _endpoints),
)


def check(plan: Plan, desired: Optional[DesiredState] = None) -> list[str]:
    """Every problem the cluster's ML Commons version would refuse in what `plan` sends, each located
    (`file:line:col: address: ...`) where the desired state knows where it was written."""
    version = parse_version(plan.cluster_version)
    if version is None:
        return []
    active = [c for c in CHECKS if version >= c.since]
    if not active:
        return []
    shown = plan.cluster_version or ""
    problems = []
    for ch in plan.changes:
        if not _SENT & set(ch.actions):
            continue
        where = _location(ch, desired)
        for c in active:
            problems += [f"{where}{ch.address}: {p}" for p in c.problems(ch, shown)]
    return problems


def _location(ch: ResourceChange, desired: Optional[DesiredState]) -> str:
    res = desired.resources.get(ch.address) if desired else None
    loc = res.location if res else None
    return f"{loc[0]}:{loc[1]}:{loc[2]}: " if loc else ""
