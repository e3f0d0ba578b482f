"""Resource addresses: how a user names a resource on the command line and how plans and state key it.

    connector["embeddings-api"]
    model_group["embeddings"]
    model["embeddings"]["all-MiniLM-L6-v2"]["1.0.1"]     a registered version (group, model, label)
    model["embeddings"]["embeddings-remote"]             a remote model (one version, updated in place)
    ingest_pipeline["docs-embed"]                        an ingest pipeline, by its (user-chosen) id
    search_pipeline["docs-search"]                       a search pipeline, by its id
    agent["docs-qa"]                                     an ML Commons agent, by its name in the file

Names may hold spaces, colons and slashes, so every part is a JSON string literal.
"""

from __future__ import annotations

import json
import re
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from dataclasses import dataclass
from typing import Optional

KINDS = ("connector", "model_group", "model", "ingest_pipeline", "search_pipeline", "agent")
_PART = re.compile(r'\[("(?:[^"\\]|\\.)*")\]')
_PLAIN = re.compile(r'"[^"\\\x00-\x1f]*"')    # a part json.loads would return as it stands, quotes off


def _quoted(part) -> str:
    """`json.dumps(part, ensure_ascii=False)`, without building an encoder for each string."""
    return encode_basestring(part) if type(part) is str else json.dumps(part, ensure_ascii=False)


@dataclass(frozen=True, order=True)
class Address:
    kind: str
    name: str                       # connector / group name; for a model: the model name
    group: Optional[str] = None     # models only: the group's name
    version: Optional[str] = None   # models only: the version label (None for a remote model)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown resource kind {self.kind!r} (allowed: {', '.join(KINDS)})")
        # the text, made once and eagerly: plans key everything by address strings, and almost every
        # address is turned into one (a cached_property takes a lock on every first read in 3.10/3.11)
        parts = (self.group, self.name, self.version) if self.kind == "model" else (self.name,)
        object.__setattr__(self, "_text", self.kind + "".join(f"[{_quoted(p)}]" for p in parts if p is not None))

    def __str__(self) -> str:
        return self._text

    @classmethod
    def parse(cls, text: str) -> "Address":
        """Parse `kind["a"]["b"]...`; raises ValueError with what is allowed."""
        kind, _, rest = text.partition("[")
        rest = "[" + rest if rest else ""
        parts, pos = [], 0
        for m in _PART.finditer(rest):
            if m.start() != pos:
                break
            part = m.group(1)
            parts.append(part[1:-1] if _PLAIN.fullmatch(part) else json.loads(part))
            pos = m.end()
        ok = pos == len(rest) and kind in KINDS and (
            (kind == "model" and len(parts) in (2, 3)) or (kind != "model" and len(parts) == 1))
        if not ok:
            raise ValueError(
                f"not a resource address: {text!r} (allowed: connector[\"NAME\"], model_group[\"NAME\"], "
                'model["GROUP"]["MODEL"]["VERSION"], model["GROUP"]["MODEL"], ingest_pipeline["ID"], '
                'search_pipeline["ID"], agent["NAME"])')
        if kind == "model":
            return cls("model", parts[1], group=parts[0], version=parts[2] if len(parts) == 3 else None)
        return cls(kind, parts[0])
