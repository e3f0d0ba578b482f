"""Reading the server's answers: the fields mlsync needs, or a `MalformedResponse` that names the
operation, the resource and the field (never a KeyError from deep inside a call). Shared by every
edge module that reads a response."""

from __future__ import annotations

from typing import Any

from mlsync.core.errors import MalformedResponse


def field(resp: Any, key: str, operation: str, resource: str = "", types: Any = str) -> Any:
    """`resp[key]`, which the server always sends: a missing key (or null, or an empty string), a value
    of another type, or a response that is not a JSON object raises `MalformedResponse` naming the
    operation, the resource and the field, instead of a KeyError/TypeError."""
    if not isinstance(resp, dict):
        raise MalformedResponse(operation, resource, key, f"cannot be read: the response is {kind_of(resp)}, "
                                                          f"not a JSON object")
    value = resp.get(key)
    if value is None or value == "":
        raise MalformedResponse(operation, resource, key, "is missing")
    allowed = types if isinstance(types, tuple) else (types,)
    if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
        names = " or ".join(_KINDS.get(t, t.__name__) for t in allowed)
        raise MalformedResponse(operation, resource, key, f"is {kind_of(value)}, not {names}")
    return value


def mapping(resp: Any, operation: str, resource: str = "") -> dict:
    """A response that must be a JSON object (None, as opensearch-py gives for an empty body, is {})."""
    if resp is None:
        return {}
    if not isinstance(resp, dict):
        raise MalformedResponse(operation, resource, "(body)", f"is {kind_of(resp)}, not a JSON object")
    return resp


def search_hits(resp: Any, operation: str, resource: str) -> list[dict]:
    """`hits.hits` of a search response, every hit an object with an `_id`."""
    hits = (mapping(resp, operation, resource).get("hits") or {})
    hits = mapping(hits, operation, resource).get("hits") or []
    if not isinstance(hits, list):
        raise MalformedResponse(operation, resource, "hits.hits", f"is {kind_of(hits)}, not a list")
    for hit in hits:
        field(hit, "_id", operation, resource)
        if not isinstance(hit.get("_source") or {}, dict):
            raise MalformedResponse(operation, resource, "_source", f"of {hit['_id']} is {kind_of(hit['_source'])}, "
                                                                    f"not a JSON object")
    return hits


_KINDS = {str: "a string", int: "an integer", float: "a number", bool: "true/false", dict: "a JSON object",
          list: "a list"}


def kind_of(value: Any) -> str:
    return "null" if value is None else _KINDS.get(type(value), type(value).__name__)
