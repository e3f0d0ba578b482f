"""One comparable form per kind, reached from the file's side and from the server's side.

The server rewrites what it stores (upper-case enums, `algorithm` for `function_name`, stringified
connector parameters and interface schemas, filled `client_config` defaults, `access` for
`access_mode`, dropped `normalize_result: false`, ...; see docs/ml-commons-notes.md). Comparing raw
documents would show a diff for every unchanged resource, so both sides go through here first and
equal dicts mean "no change". The same form, with references resolved, is the request body.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
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
    blob = json.dumps(form, sort_keys=True, separators=(",", ":"),
                      default=lambda o: o.stored() if isinstance(o, Secret) else str(o))
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
    """Comparable form of a connector, from a file mapping (a record's dump) or a server _source."""
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
            out["all_config"] = _canonical_json(out["all_config"])
        except ValueError:
            pass
    if not out.get("normalize_result"):
        out.pop("normalize_result", None)  # the server omits false
    return _drop_none(out)


@functools.lru_cache(maxsize=1024)
def _canonical_json(text: str) -> str:
    """JSON text re-encoded compactly with sorted keys; ValueError if it is not JSON. Cached: the models
    of a large stack mostly share a handful of `all_config` texts (10,000 of them in one plan)."""
    return json.dumps(json.loads(text), separators=(",", ":"), sort_keys=True)


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


# On a cluster of several nodes a deployed model can serve on fewer nodes than ML Commons planned: a node
# that left and came back (with plugins.ml_commons.model_auto_redeploy.enable false, or its retries spent)
# or a deploy that failed on one node (task COMPLETED_WITH_ERROR). The sync-up job then writes
# PARTIALLY_DEPLOYED and planning_worker_node_count > current_worker_node_count (docs/ml-commons-notes.md,
# "Two nodes"). Deploying again loads it on the missing nodes.
PARTIAL_STATES = frozenset({"PARTIALLY_DEPLOYED", "PARTIALLY_LOADED"})


def partially_deployed(model_source: dict) -> Optional[str]:
    """Why a deployed model serves on fewer nodes than planned ("state PARTIALLY_DEPLOYED, 1 of 2 nodes"),
    or None when it is fully deployed or not deployed at all."""
    state = (model_source.get("model_state") or "").upper()
    planned, current = (model_source.get("planning_worker_node_count"),
                        model_source.get("current_worker_node_count"))
    counts = (f", {current} of {planned} nodes" if isinstance(planned, int) and isinstance(current, int)
              else "")
    if state in PARTIAL_STATES:
        return f"state {state}{counts}"
    if (state in ("DEPLOYED", "LOADED") and isinstance(planned, int) and isinstance(current, int)
            and 0 <= current < planned):
        return f"state {state} but on {current} of {planned} planned nodes"
    return None


def may_be_loaded(model_source: dict) -> bool:
    """Deployed, or failed to deploy and possibly still in a node's memory."""
    return (model_source.get("model_state") or "").upper() in MAYBE_LOADED_STATES


# --- consumers of models: pipelines and agents (reference: model-consumers.md) -----------------

INGEST_PIPELINE_KEYS = ("description", "version", "processors", "on_failure")
SEARCH_PIPELINE_KEYS = ("description", "version", "request_processors", "response_processors",
                        "phase_results_processors")


def pipeline_form(raw: dict, kind: str) -> dict:
    """An ingest or search pipeline: the server stores the PUT body unchanged and returns it in order
    (model-consumers.md §1.3, §2), so the form is the body itself, without unset keys."""
    keys = INGEST_PIPELINE_KEYS if kind == "ingest_pipeline" else SEARCH_PIPELINE_KEYS
    return {k: json.loads(json.dumps(raw[k])) for k in keys if raw.get(k) is not None}


_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def _agent_value(value: Any) -> str:
    """An agent parameter as the server stores it (every value a string, non-strings as Gson JSON
    text; §4.3), compared by meaning: JSON objects and lists are re-written compact with sorted keys,
    so Gson's `\u003d` escapes, spacing and HashMap key order make no difference."""
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if text[:1] in ("{", "[") or _NUMBER.fullmatch(text):
        try:
            parsed = json.loads(text)
        except ValueError:
            return text
        if isinstance(parsed, float):   # Java writes 1e7 as "1.0E7", Python as "10000000.0"
            return repr(parsed)
        return json.dumps(parsed, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return text


def _agent_params(params: Any) -> Optional[dict]:
    if not isinstance(params, dict) or not params:
        return None   # the server omits an empty map
    return {k: _agent_value(v) for k, v in params.items()}


def agent_form(raw: dict) -> dict:
    """An agent, from the file or from the server's _source: parameter maps stringified, `type` in
    lower case, the tool flag the server always writes filled in, empty maps and lists and the
    server's own fields (times, is_hidden, tenant_id) dropped (model-consumers.md §4.3)."""
    llm = raw.get("llm")
    if isinstance(llm, dict):
        llm = _drop_none({"model_id": llm.get("model_id"), "parameters": _agent_params(llm.get("parameters"))})
    tools = []
    for t in raw.get("tools") or []:
        tools.append(_drop_none({
            "type": t.get("type"), "name": t.get("name"), "description": t.get("description"),
            "parameters": _agent_params(t.get("parameters")),
            "include_output_in_agent_response": bool(t.get("include_output_in_agent_response", False)),
            "config": _agent_params(t.get("config")),
        }))
    memory = raw.get("memory")
    form = {
        "name": raw.get("name"),
        "type": _lower(raw.get("type")),
        "description": raw.get("description"),
        "llm": llm or None,
        "tools": tools or None,
        "parameters": _agent_params(raw.get("parameters")),
        "memory": _drop_none(dict(memory)) if isinstance(memory, dict) else None,
        "app_type": raw.get("app_type"),
    }
    return _drop_none(form)


def consumer_form(kind: str, raw: dict) -> dict:
    return agent_form(raw) if kind == "agent" else pipeline_form(raw, kind)


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
    if kind in ("ingest_pipeline", "search_pipeline", "agent"):
        return dict(after)   # references were resolved by the executor (run/steps/consumers.py)
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
