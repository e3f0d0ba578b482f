"""One comparable form per kind, reached from the file's side and from the server's side.

The server rewrites what it stores (upper-case enums, `algorithm` for `function_name`, stringified
connector parameters and interface schemas, filled `client_config` defaults, `access` for
`access_mode`, dropped `normalize_result: false`, ...; see docs/ml-commons-notes.md). Comparing raw
documents would show a diff for every unchanged resource, so both sides go through here first and
equal dicts mean "no change". The same form, with references resolved, is the request body.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Optional

from mlsync.core.field_rules import Rule, fields
from mlsync.core.secrets import Secret

# The server fills every missing client_config key with these when the object is sent at all
# (ConnectorClientConfig; confirmed on 2.19.6: connection_timeout comes back as 30000).
CLIENT_CONFIG_DEFAULTS = {
    "max_connection": 30,
    "connection_timeout": 30000,
    "read_timeout": 30000,
    "retry_backoff_millis": 200,
    "retry_timeout_seconds": 30,
    "max_retry_times": 0,
    "retry_backoff_policy": "constant",
}

# Which fields update in place and which force a replace: mlsync/field_rules.py (reference §2.7, §4.3).
MODEL_UPDATABLE = fields("model", Rule.UPDATE)
MODEL_REPLACE_FIELDS = fields("model", Rule.REPLACE)
CONNECTOR_UPDATABLE = fields("connector", Rule.UPDATE)
# Update Model works only for these functions (403 otherwise, reference §2.7).
MODEL_UPDATE_FUNCTIONS = ("TEXT_EMBEDDING", "REMOTE")
# Fields the last upload_chunk (and, in 2.x, URL registration) drops; set again with Update Model.
MODEL_FIXUP_FIELDS = ("description", "is_enabled", "rate_limiter", "deploy_setting", "interface", "guardrails")
DEPLOYED_STATES = frozenset({"DEPLOYED", "PARTIALLY_DEPLOYED", "DEPLOYING", "LOADED", "PARTIALLY_LOADED", "LOADING"})
# A failed deploy can still hold the model in a node's memory (auto-redeploy after a restart loads it
# while the document still reads DEPLOY_FAILED), and the server's "connector in use" check looks at
# memory, not at the document.
FAILED_STATES = frozenset({"DEPLOY_FAILED", "LOAD_FAILED"})
MAYBE_LOADED_STATES = DEPLOYED_STATES | FAILED_STATES


def _drop_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None and v != {} }


def _param_text(value: Any) -> str:
    """The server stores every parameter value as a string: JSON text for non-strings."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _json_text(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _upper(value: Optional[str]) -> Optional[str]:
    return value.upper() if isinstance(value, str) else value


def _lower(value: Optional[str]) -> Optional[str]:
    return value.lower() if isinstance(value, str) else value


def digest(form: Optional[dict]) -> str:
    """A stable hash of a comparable form (the state's applied fingerprint)."""
    blob = json.dumps(form, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()


# --- connectors --------------------------------------------------------------------------------

def _actions(actions: list[dict]) -> list[dict]:
    out = []
    for a in actions or []:
        out.append(_drop_none({
            "action_type": _upper(a.get("action_type")),
            "method": _upper(a.get("method")),
            "url": a.get("url"),
            "headers": dict(a["headers"]) if a.get("headers") else None,
            "request_body": a.get("request_body"),
            "pre_process_function": a.get("pre_process_function"),
            "post_process_function": a.get("post_process_function"),
        }))
    return out


def _client_config(cc: Optional[dict]) -> Optional[dict]:
    if cc is None:
        return None
    out = dict(CLIENT_CONFIG_DEFAULTS)
    out.update({k: v for k, v in cc.items() if v is not None})
    out["retry_backoff_policy"] = _lower(out["retry_backoff_policy"])
    return out


def connector_form(raw: dict, *, access_control: bool, inline: bool = False) -> dict:
    """Comparable form of a connector, from a file mapping (pydantic dump) or a server _source."""
    form = {
        "name": raw.get("name"),
        "description": raw.get("description") or None,
        "version": None if raw.get("version") is None else str(raw.get("version")),
        "protocol": _lower(raw.get("protocol")),
        "parameters": {k: _param_text(v) for k, v in (raw.get("parameters") or {}).items()} or None,
        "actions": _actions(raw.get("actions") or []),
        "client_config": _client_config(raw.get("client_config")),
    }
    if access_control and not inline:
        form["access_mode"] = _lower(raw.get("access_mode") or raw.get("access"))
        form["backend_roles"] = sorted(raw.get("backend_roles") or []) or None
    return _drop_none(form)


# --- model groups ------------------------------------------------------------------------------

def group_form(raw: dict, *, access_control: bool) -> dict:
    form = {"name": raw.get("name"), "description": raw.get("description") or None}
    if access_control:
        form["access_mode"] = _lower(raw.get("access_mode") or raw.get("access"))
        form["backend_roles"] = sorted(raw.get("backend_roles") or []) or None
    return _drop_none(form)


# --- models ------------------------------------------------------------------------------------

def _model_config(mc: Optional[dict]) -> Optional[dict]:
    if not mc:
        return None
    out = dict(mc)
    for key in ("framework_type", "pooling_mode"):
        out[key] = _upper(out.get(key))
    out["all_config"] = _json_text(out.get("all_config"))
    if out.get("all_config") is not None:
        try:  # compare JSON text by meaning, not by spacing or key order
            out["all_config"] = json.dumps(json.loads(out["all_config"]), separators=(",", ":"), sort_keys=True)
        except ValueError:
            pass
    if not out.get("normalize_result"):
        out.pop("normalize_result", None)  # the server omits false
    return _drop_none(out)


def _rate_limiter(rl: Optional[dict]) -> Optional[dict]:
    if not rl:
        return None
    limit = rl.get("limit")
    if isinstance(limit, (int, float)) and not isinstance(limit, bool):
        limit = str(limit)
    if isinstance(limit, str):
        try:  # "100", "100.0" and 100 are the same limit
            f = float(limit)
            limit = str(int(f)) if f.is_integer() else str(f)
        except ValueError:
            pass
    return _drop_none({"limit": limit, "unit": _upper(rl.get("unit"))})


def _interface(itf: Optional[dict]) -> Optional[dict]:
    if not itf:
        return None
    out = {}
    for key in ("input", "output"):
        v = itf.get(key)
        if v is None:
            continue
        if isinstance(v, str):
            try:
                v = json.loads(v)
            except ValueError:
                out[key] = v
                continue
        out[key] = json.dumps(v, separators=(",", ":"), sort_keys=True)
    return out or None


def _guardrails(g: Optional[dict]) -> Optional[dict]:
    if not g:
        return None
    out = dict(g)
    out["type"] = _lower(out.get("type"))
    return _drop_none(out)


def _deploy_setting(ds: Optional[dict]) -> Optional[dict]:
    if not ds:
        return None
    out = _drop_none(dict(ds))
    if out.get("model_ttl_minutes") == -1:
        out.pop("model_ttl_minutes")   # the server fills -1 ("no TTL") when none is sent
    return out or None


def model_form(raw: dict, *, connector_name: Optional[str] = None) -> dict:
    """Comparable form of a model version.

    `raw` is either the effective file fields of one version (request keys) or a server _source
    (response keys: `algorithm`, `model_version`, ...). `connector_name` is the standalone connector
    this model uses, already resolved from `connector_id` by the caller.
    """
    function = raw.get("function_name") or raw.get("algorithm") or "TEXT_EMBEDDING"
    function = function.upper()
    connector: Any = connector_name
    if connector is None and isinstance(raw.get("connector"), dict):
        connector = connector_form(raw["connector"], access_control=False, inline=True)
    elif connector is None and isinstance(raw.get("connector"), str):
        connector = raw["connector"]
    deploy_setting = _deploy_setting(raw.get("deploy_setting"))
    form = {
        "name": raw.get("name"),
        "description": raw.get("description") or None,
        "function_name": function,
        "model_format": _upper(raw.get("model_format")) if function != "REMOTE" else None,
        "model_config": _model_config(raw.get("model_config")),
        "model_content_hash_value": raw.get("model_content_hash_value") if function != "REMOTE" else None,
        "is_enabled": raw.get("is_enabled"),
        "rate_limiter": _rate_limiter(raw.get("rate_limiter")),
        "interface": _interface(raw.get("interface")),
        "guardrails": _guardrails(raw.get("guardrails")),
        "deploy_setting": deploy_setting,
        "connector": connector,
    }
    return _drop_none(form)


def is_deployed(model_source: dict) -> bool:
    """Deployed or on its way; REGISTERED, UNDEPLOYED and DEPLOY_FAILED all count as not deployed."""
    return (model_source.get("model_state") or "").upper() in DEPLOYED_STATES


def may_be_loaded(model_source: dict) -> bool:
    """Deployed, or failed to deploy and possibly still in a node's memory."""
    return (model_source.get("model_state") or "").upper() in MAYBE_LOADED_STATES


# --- request bodies ----------------------------------------------------------------------------

def request_body(change, *, refs: dict[str, str], credential: Optional[dict[str, Secret]] = None,
                 inline_credential: Optional[dict[str, Secret]] = None, update: bool = False) -> dict:
    """The JSON body for creating/registering (or, with update=True, updating) `change.after`.

    `refs` maps address strings to server ids (model groups and connectors). For a model the group
    id and the connector id come from there and the artifact (url/hash) from `change.artifact`.
    """
    from mlsync.core.address import Address  # local: keeps this module's import graph flat

    after = dict(change.after or {})
    kind = change.address.kind
    if kind == "connector":
        body = dict(after)
        if credential:  # Secrets stay wrapped; the adapter reveals them while serialising
            body["credential"] = dict(credential)
        return body
    if kind == "model_group":
        return dict(after)
    # model
    body = {k: v for k, v in after.items() if k != "connector"}
    connector = after.get("connector")
    if isinstance(connector, str):
        body["connector_id"] = refs[str(Address("connector", connector))]
    elif isinstance(connector, dict):
        inline = dict(connector)
        if inline_credential:
            inline["credential"] = dict(inline_credential)
        body["connector"] = inline
    if body.get("function_name") == "REMOTE":
        body["function_name"] = "remote"
    group = change.address.group
    if group is not None and str(Address("model_group", group)) in refs:
        body["model_group_id"] = refs[str(Address("model_group", group))]
    if update:
        for key in MODEL_REPLACE_FIELDS:
            body.pop(key, None)  # not updatable; the server ignores them
        if body.get("model_config") and after.get("function_name") not in MODEL_UPDATE_FUNCTIONS:
            body.pop("model_config")   # the server takes it for TEXT_EMBEDDING and remote models only
        return body
    if change.address.version is not None:
        body["version"] = change.address.version  # ignored by the server, kept for the record
    artifact = change.artifact or {}
    if artifact.get("url"):
        body["url"] = artifact["url"]
    if artifact.get("sha256"):
        body["model_content_hash_value"] = artifact["sha256"]
    if artifact.get("path"):
        body["model_content_size_in_bytes"] = artifact.get("size")
    return body
