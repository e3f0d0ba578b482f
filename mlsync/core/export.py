"""Observed cluster -> desired-state file: the inverse of `mlsync.core.normalize`, pure (no I/O, no clock).

`export_stack(observed, ...)` turns what `Cluster.observe()` read into a ruamel document in the
file's form, so that planning the exported file against the same cluster adopts every object and
changes nothing (docs/export-import.md). What the server never returns is written as a placeholder
with a comment that says so:

- credentials: `${env:MLSYNC_CRED_<CONNECTOR>_<KEY>}` (the server returns neither the values nor the
  keys; the keys are the `${credential.x}` the connector references);
- the artifact of a local model: the server keeps its SHA-256 but neither the URL it was downloaded
  from nor the file it was uploaded from, so each version gets a `.invalid` placeholder URL plus the
  real hash; the planner matches versions by hash, so it adopts them, and the placeholder is only
  ever fetched if something forces a re-registration (which then fails loudly, naming the URL).

Same-name remote models in one group export as one model with a version each (labelled with the
server's version numbers). Anything the file cannot express (a duplicate connector name, a remote
model and local versions of one name in a group, a field unknown to the file) is left out with a
warning, never silently.
"""

from __future__ import annotations

import io
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

from mlsync.core import field_rules, normalize, references
from mlsync.core.errors import MlsyncError
from mlsync.core.normalize import CLIENT_CONFIG_DEFAULTS, is_deployed
from mlsync.core.observed import Observed, ObservedObject

PLACEHOLDER_HOST = "mlsync-export.invalid"   # RFC 2606: never resolves
DEFAULT_STACK = "exported"

_CREDENTIAL_REF = re.compile(r"\$\{credential\.([^}]+)\}")
_AWS_KEYS = ("access_key", "secret_key")
_STAND_IN_KEY = "api_key"

# Server fields that are outputs (ids, times, states, counters) or that the exporter maps elsewhere;
# anything else a document holds that the file cannot express is reported, not dropped silently.
_CONNECTOR_OUTPUTS = {"created_time", "last_updated_time", "owner", "access", "backend_roles", "tenant_id",
                      "connector_id", "credential"}
# What the file expresses of each kind comes from the field rules; access fields and function_name are
# exported on their own (they are in the outputs above).
_ACCESS = {"access_mode", "backend_roles"}
_CONNECTOR_FIELDS = set(field_rules.file_fields("connector") - _ACCESS)
_ACTION_FIELDS = ("action_type", "method", "url", "headers", "request_body", "pre_process_function",
                  "post_process_function")
_GROUP_OUTPUTS = {"created_time", "last_updated_time", "latest_version", "access", "owner", "backend_roles",
                  "model_group_id", "tenant_id"}
_GROUP_FIELDS = set(field_rules.file_fields("model_group") - _ACCESS)
_MODEL_OUTPUTS = {
    "model_version", "version", "algorithm", "function_name", "model_state", "created_time", "last_updated_time",
    "last_registered_time", "last_deployed_time", "last_undeployed_time", "last_uploaded_time", "last_loaded_time",
    "last_unloaded_time", "model_content_size_in_bytes", "total_chunks", "is_hidden", "planning_worker_node_count",
    "current_worker_node_count", "planning_worker_nodes", "deploy_to_all_nodes", "auto_redeploy_retry_times",
    "model_group_id", "connector_id", "model_id", "owner", "user", "is_controller_enabled", "tenant_id",
    "chunk_number", "model_content", "content",
}
_MODEL_FIELDS = set(field_rules.file_fields("model") - {"function_name"})
_MODEL_CONFIG_FIELDS = ("model_type", "embedding_dimension", "framework_type", "all_config", "pooling_mode",
                        "normalize_result", "model_max_length", "query_prefix", "passage_prefix")
_GUARDRAIL_FIELDS = ("stop_words", "regex", "model_id", "response_filter", "response_validation_regex")
# A version's fields in the order the file shows them; those equal in every version move to the model.
_VERSION_FIELDS = ("description", "model_format", "model_config", "is_enabled", "rate_limiter", "interface",
                   "guardrails", "deploy_setting", "deploy")
_NORMAL_STATES = {"REGISTERED", "DEPLOYED", "UNDEPLOYED"}


@dataclass(frozen=True)
class ExportSource:
    """What the header comment says about where and when the file was made (the caller's clock)."""

    cluster: str                      # the cluster URL, without credentials
    cluster_version: Optional[str]
    exported_at: str                  # ISO 8601, UTC
    tool_version: str


@dataclass
class ExportResult:
    document: Any                     # ruamel CommentedMap: the desired-state file with its comments
    stack: str
    env_vars: list[str] = field(default_factory=list)     # credential variables to set before planning
    warnings: list[str] = field(default_factory=list)     # what was left out, and why
    counts: dict[str, int] = field(default_factory=dict)  # connectors, model_groups, models, versions

    def text(self) -> str:
        return dump(self.document)


# --- YAML ------------------------------------------------------------------------------------------

def _yaml():
    from ruamel.yaml import YAML

    y = YAML(typ="rt")
    y.width = 4096            # never fold long URLs or scripts
    y.indent(mapping=2, sequence=4, offset=2)
    y.preserve_quotes = True
    return y


def dump(document: Any) -> str:
    buf = io.StringIO()
    _yaml().dump(document, buf)
    return buf.getvalue()


def _cmap(pairs: Iterable[tuple[str, Any]] = ()):
    from ruamel.yaml.comments import CommentedMap

    m = CommentedMap()
    for k, v in pairs:
        m[k] = v
    return m


def _cseq(items: Iterable[Any] = ()):
    from ruamel.yaml.comments import CommentedSeq

    return CommentedSeq(list(items))


def escape(text: str) -> str:
    """A string as the file must spell it to load back unchanged.

    The loader interpolates every string value: `$${` becomes `${`, and `${env:...}`/`${file:...}`
    are substituted. Doubling every `${` (to `$${`) undoes exactly that, so it is done whenever the
    text holds one of those three; ML Commons' own `${parameters.x}` is otherwise left readable.
    """
    if "$${" in text or "${env:" in text or "${file:" in text:
        return text.replace("${", "$${")
    return text


def _string(text: str) -> Any:
    """Multi-line text (painless scripts, request bodies) as a literal block when YAML allows it."""
    text = escape(text)
    if "\n" in text and _literal_ok(text):
        from ruamel.yaml.scalarstring import LiteralScalarString

        return LiteralScalarString(text)
    return text


def _literal_ok(text: str) -> bool:
    """Printable lines without tabs, trailing blanks or a leading blank: a block scalar keeps them exactly."""
    lines = text.split("\n")
    return all(line.isprintable() and "\t" not in line and line == line.rstrip(" ") for line in lines) \
        and not text.startswith((" ", "\n"))


def _value(value: Any) -> Any:
    """A natural (JSON) value for the file: strings escaped, mappings and lists recursively."""
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, dict):
        return _cmap((str(k), _value(v)) for k, v in value.items())
    if isinstance(value, list):
        return _cseq(_value(v) for v in value)
    return value


# --- server text -> natural values ---------------------------------------------------------------

def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


_NOT_JSON = object()


def _parsed(text: Any) -> Any:
    """`text` parsed as JSON, or `_NOT_JSON` when it is not a string holding JSON."""
    if not isinstance(text, str):
        return _NOT_JSON
    try:
        return json.loads(text)
    except ValueError:
        return _NOT_JSON


def parameter_value(text: Any) -> Any:
    """A stored connector parameter (always a string) back to its natural type, where that is unambiguous:
    only when the server would store the natural value as exactly this text again ("4" -> 4, "true" ->
    true, '{"a":[1,2]}' -> a mapping; '{"a": 1}' with a space, "007", "1e5", "null" stay strings)."""
    value = _parsed(text)
    if value is _NOT_JSON or value is None or isinstance(value, str) or not _finite(value):
        return text
    if json.dumps(value, separators=(",", ":"), ensure_ascii=False) != text:
        return text
    return value


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def json_value(text: Any, *, mapping_only: bool = True) -> Any:
    """A JSON string the server keeps (all_config, interface schemas) as a mapping when it is one.
    The normaliser compares these by meaning, so spacing and key order need not survive."""
    value = _parsed(text)
    if value is _NOT_JSON or (mapping_only and not isinstance(value, dict)) or not _finite(value):
        return text
    return value


def _number(text: Any) -> Any:
    """A rate limit ("100", "0.5") as a number; anything else unchanged."""
    if isinstance(text, str):
        try:
            f = float(text)
        except ValueError:
            return text
        if math.isfinite(f):
            return int(f) if f.is_integer() and "." not in text and "e" not in text.lower() else f
    return text


def env_name(*parts: str) -> str:
    """`MLSYNC_CRED_<PARTS>`: upper case, every run of other characters one `_`."""
    words = [re.sub(r"[^A-Z0-9]+", "_", p.upper()).strip("_") for p in parts]
    return "_".join(["MLSYNC_CRED", *[w for w in words if w]])


def credential_keys(connector: dict) -> tuple[list[str], bool]:
    """The credential keys a connector references (`${credential.x}` anywhere in it) -> (keys, inferred).

    The server returns neither credential values nor their keys. aws_sigv4 always signs with
    access_key and secret_key; an http connector that references none still needs one key (the file
    requires a non-empty credential), so `api_key` stands in and `inferred` is False.
    """
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, str):
            found.update(_CREDENTIAL_REF.findall(value))
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk({k: v for k, v in connector.items() if k != "credential"})
    if (connector.get("protocol") or "").lower() == "aws_sigv4":
        found.update(_AWS_KEYS)
    if not found:
        return [_STAND_IN_KEY], False
    return sorted(found), True


# --- the exporter ----------------------------------------------------------------------------------

class _Exporter:
    def __init__(self, observed: Observed):
        self.observed = observed
        self.warnings: list[str] = []
        self.env_vars: list[str] = []
        self._used_env: set[str] = set()

    def warn(self, text: str) -> None:
        self.warnings.append(text)

    def unexpressible(self, what: str, source: dict, known: set, outputs: set) -> None:
        extra = sorted(k for k in source if k not in known and k not in outputs)
        if extra:
            self.warn(f"{what}: field(s) {', '.join(extra)} cannot be written in the file; left out")

    def _env(self, owner: str, key: str) -> str:
        name = env_name(owner, key)
        candidate, n = name, 2
        while candidate in self._used_env:   # two owners that spell alike get distinct variables
            candidate, n = f"{name}_{n}", n + 1
        self._used_env.add(candidate)
        self.env_vars.append(candidate)
        return candidate

    # connectors
    def connector(self, src: dict, *, owner: str, inline: bool, what: str):
        m = _cmap()
        if src.get("name") is not None:
            m["name"] = escape(src["name"])
        if src.get("description"):
            m["description"] = _string(src["description"])
        if src.get("version") is not None:
            m["version"] = escape(str(src["version"]))
        m["protocol"] = (src.get("protocol") or "").lower()
        if not inline and self.observed.connector_access_control:
            self._access(m, src)
        params = src.get("parameters") or {}
        if params:
            m["parameters"] = _cmap((k, _value(parameter_value(params[k]))) for k in sorted(params))
        keys, inferred = credential_keys(src)
        m["credential"] = _cmap((k, "${env:" + self._env(owner, k) + "}") for k in keys)
        m.yaml_add_eol_comment(
            "the server never returns credentials: set these variables" +
            ("" if inferred else f" ({_STAND_IN_KEY} stands in: no action references a credential key)"),
            "credential")
        m["actions"] = _cseq(self.action(a, what) for a in src.get("actions") or [])
        cc = src.get("client_config")
        if cc:
            out = _cmap()
            for k in tuple(CLIENT_CONFIG_DEFAULTS):
                if cc.get(k) is not None:
                    out[k] = cc[k].lower() if k == "retry_backoff_policy" and isinstance(cc[k], str) else cc[k]
            m["client_config"] = out
            self.unexpressible(f"{what} client_config", cc, set(tuple(CLIENT_CONFIG_DEFAULTS)), set())
        self.unexpressible(what, src, _CONNECTOR_FIELDS, _CONNECTOR_OUTPUTS)
        return m

    def action(self, a: dict, what: str):
        m = _cmap()
        m["action_type"] = (a.get("action_type") or "").lower()
        m["method"] = (a.get("method") or "").upper()
        m["url"] = escape(a.get("url") or "")
        if a.get("headers"):
            m["headers"] = _cmap((k, _string(str(a["headers"][k]))) for k in sorted(a["headers"]))
        for k in ("request_body", "pre_process_function", "post_process_function"):
            if a.get(k) is not None:
                m[k] = _string(a[k])
        self.unexpressible(f"{what} action {m['action_type']}", a, set(_ACTION_FIELDS), set())
        return m

    def _access(self, m, src: dict) -> None:
        if src.get("access") or src.get("access_mode"):
            m["access_mode"] = (src.get("access") or src.get("access_mode")).lower()
        if src.get("backend_roles"):
            m["backend_roles"] = _cseq(sorted(src["backend_roles"]))

    # groups
    def group(self, obj: ObservedObject):
        src = obj.source
        m = _cmap([("name", escape(src["name"]))])
        m.yaml_add_eol_comment(f"id {obj.id}", "name")
        if src.get("description"):
            m["description"] = _string(src["description"])
        if self.observed.model_access_control:
            self._access(m, src)
        self.unexpressible(f"model_group[{src['name']!r}]", src, _GROUP_FIELDS, _GROUP_OUTPUTS)
        return m

    # models
    def version_fields(self, src: dict, what: str) -> dict:
        """One model document's settable fields in file form (None: not set)."""
        out: dict[str, Any] = {k: None for k in _VERSION_FIELDS}
        if src.get("description"):
            out["description"] = _string(src["description"])
        if src.get("model_format") and (src.get("algorithm") or "").upper() != "REMOTE":
            out["model_format"] = src["model_format"].upper()
        out["model_config"] = self.model_config(src.get("model_config"), what)
        if src.get("is_enabled") is not None:
            out["is_enabled"] = bool(src["is_enabled"])
        rl = src.get("rate_limiter")
        if rl:
            out["rate_limiter"] = _cmap([(k, v) for k, v in (("limit", _number(rl.get("limit"))),
                                                             ("unit", (rl.get("unit") or "").upper() or None))
                                         if v is not None])
        itf = src.get("interface")
        if itf:
            not_json = [k for k in ("input", "output") if isinstance(itf.get(k), str) and not _is_json(itf[k])]
            if not_json:
                # the file takes only JSON schemas here; leaving the whole interface out keeps it unmanaged
                self.warn(f"{what}: interface.{' and interface.'.join(not_json)} is not JSON, which the file does "
                          "not accept; the interface is left out (mlsync will not manage it)")
            else:
                out["interface"] = _cmap((k, _value(json_value(itf[k]))) for k in ("input", "output")
                                         if itf.get(k) is not None) or None
            self.unexpressible(f"{what} interface", itf, {"input", "output"}, set())
        out["guardrails"] = self.guardrails(src.get("guardrails"), what)
        ds = src.get("deploy_setting")
        if ds:
            items = [("is_auto_deploy_enabled", ds.get("is_auto_deploy_enabled"))]
            if ds.get("model_ttl_minutes") is not None and ds["model_ttl_minutes"] != -1:   # -1: no TTL (default)
                items.append(("model_ttl_minutes", ds["model_ttl_minutes"]))
            out["deploy_setting"] = _cmap((k, v) for k, v in items if v is not None) or None
            self.unexpressible(f"{what} deploy_setting", ds, {"is_auto_deploy_enabled", "model_ttl_minutes"}, set())
        out["deploy"] = is_deployed(src)
        return out

    def model_config(self, mc: Optional[dict], what: str):
        if not mc:
            return None
        m = _cmap()
        for k in _MODEL_CONFIG_FIELDS:
            v = mc.get(k)
            if v is None or (k == "normalize_result" and v is False):
                continue
            if k in ("framework_type", "pooling_mode") and isinstance(v, str):
                v = v.lower()
            elif k == "all_config":
                if isinstance(v, str) and not _is_json(v):
                    self.warn(f"{what}: model_config.all_config is not JSON, which the file does not accept; left "
                              "out (plan will show it as a change)")
                    continue
                v = json_value(v)
            m[k] = _value(v)
        self.unexpressible(f"{what} model_config", mc, set(_MODEL_CONFIG_FIELDS), set())
        return m or None

    def guardrails(self, g: Optional[dict], what: str):
        if not g:
            return None
        m = _cmap([("type", (g.get("type") or "").lower())])
        for side in ("input_guardrail", "output_guardrail"):
            guard = g.get(side)
            if not guard:
                continue
            s = _cmap()
            for k in _GUARDRAIL_FIELDS:
                if guard.get(k) is None:
                    continue
                if k == "stop_words":
                    s[k] = _cseq(_cmap([("index_name", escape(w.get("index_name", ""))),
                                        ("source_fields", _value(list(w.get("source_fields") or [])))])
                                 for w in guard[k])
                else:
                    s[k] = _value(guard[k])
            self.unexpressible(f"{what} guardrails.{side}", guard, set(_GUARDRAIL_FIELDS), set())
            m[side] = s
        self.unexpressible(f"{what} guardrails", g, {"type", "input_guardrail", "output_guardrail"}, set())
        return m


def _order(obj: ObservedObject) -> tuple:
    return (obj.source.get("created_time") or 0, obj.id)


def _version_number(obj: ObservedObject) -> tuple:
    v = str(obj.source.get("model_version") or "")
    return (0, int(v), "") if v.isdigit() else (1, 0, v)


def _function(src: dict) -> str:
    return (src.get("algorithm") or src.get("function_name") or "TEXT_EMBEDDING").upper()


def _artifact_comment(src: dict) -> str:
    # URL registration sets last_registered_time; the last upload_chunk re-indexes the document without it.
    if src.get("last_registered_time") is not None:
        return "placeholder: registered from a URL the server does not keep"
    return "placeholder: uploaded from a local file whose bytes cannot be read back"


def export_stack(observed: Observed, *, source: ExportSource, groups: Optional[list[str]] = None,
                 stack: Optional[str] = None) -> ExportResult:
    """The desired-state document for `observed` (all groups, or only `groups` and the connectors
    their models use). Raises MlsyncError for a group name that is not on the cluster."""
    ex = _Exporter(observed)
    by_name = {}
    for obj in sorted(observed.groups.values(), key=_order):
        by_name.setdefault(obj.source.get("name"), obj)
    if groups:
        missing = sorted(set(groups) - set(by_name))
        if missing:
            raise MlsyncError("no model group named " + ", ".join(repr(g) for g in missing) + " on the cluster")
        chosen = [by_name[g] for g in sorted(set(groups))]
    else:
        chosen = [by_name[n] for n in sorted(by_name)]
    chosen_ids = {g.id: g for g in chosen}

    models_by_group: dict[str, list[ObservedObject]] = {}
    hidden = 0
    for obj in observed.models.values():
        gid = obj.source.get("model_group_id")
        if obj.source.get("is_hidden"):
            hidden += gid in chosen_ids or not groups   # system models: not the user's to manage
            continue
        if gid in chosen_ids:
            models_by_group.setdefault(gid, []).append(obj)
        elif not groups and gid not in observed.groups:
            ex.warn(f"model {obj.id} ({obj.source.get('name')!r}) is in no model group that exists "
                    f"(model_group_id {gid!r}); left out")

    if hidden:
        ex.warn(f"{hidden} hidden (system) model(s) skipped")

    # Connectors: every one (or those the chosen groups' models use), one per name.
    used_ids = {o.source.get("connector_id") for objs in models_by_group.values() for o in objs
                if o.source.get("connector_id")}
    conn_by_name: dict[str, list[ObservedObject]] = {}
    for obj in sorted(observed.connectors.values(), key=_order):
        if groups and obj.id not in used_ids:
            continue
        conn_by_name.setdefault(obj.source.get("name") or "", []).append(obj)
    conn_names: dict[str, str] = {}
    connectors_out = _cseq()
    for name in sorted(conn_by_name):
        objs = conn_by_name[name]
        kept = objs[0]
        for o in objs:
            conn_names[o.id] = name
        what = f"connector[{name!r}]"
        entry = ex.connector(kept.source, owner=name, inline=False, what=what)
        entry.yaml_add_eol_comment(f"id {kept.id}", "name")
        if len(objs) > 1:
            others = ", ".join(o.id for o in objs[1:])
            ex.warn(f"{what}: {len(objs)} connectors share this name (server names are not unique); exported "
                    f"the oldest ({kept.id}), left out {others}. Plan refuses to choose between them: run "
                    f"`mlsync import '{_addr('connector', name)}' ID` with the one you mean")
        connectors_out.append(entry)

    groups_out = _cseq(ex.group(g) for g in chosen)
    models_out = _cseq()
    versions = 0
    tokens: dict[str, str] = {}     # server id -> the reference the file writes for it (consumers)
    for g in chosen:
        gname = g.source["name"]
        by_model: dict[str, list[ObservedObject]] = {}
        for obj in models_by_group.get(g.id, []):
            by_model.setdefault(obj.source.get("name") or "", []).append(obj)
        for mname in sorted(by_model):
            entry, n = _model_entry(ex, gname, mname, by_model[mname], conn_names)
            if entry is not None:
                models_out.append(entry)
                versions += n
                tokens.update(_model_tokens(gname, mname, by_model[mname], entry))
    exported_connectors = {c["name"] for c in connectors_out}
    tokens.update({cid: "${connector:" + name + "}" for cid, name in conn_names.items()
                   if name in exported_connectors and _referable(name)})
    consumers = _consumers(ex, observed, tokens)

    stack_name = stack or (chosen[0].source["name"] if groups and len(chosen) == 1 else DEFAULT_STACK)
    doc = _cmap([("version", 1), ("stack", escape(stack_name)), ("connectors", connectors_out),
                 ("model_groups", groups_out), ("models", models_out)]
                + [(key, items) for key, items in consumers.items() if items])
    doc.yaml_set_start_comment(_header(source, groups, ex))
    counts = {"connectors": len(connectors_out), "model_groups": len(groups_out), "models": len(models_out),
              "versions": versions, **{key: len(items) for key, items in consumers.items() if items}}
    return ExportResult(doc, stack_name, env_vars=ex.env_vars, warnings=ex.warnings, counts=counts)


def _referable(*names: str) -> bool:
    """Names a reference can spell: `${model:GROUP/NAME@LABEL}` splits at `/`, `@` and ends at `}`."""
    return all(n and not set(n) & set("/@}") and "${" not in n for n in names)


def _model_tokens(gname: str, mname: str, objs: list[ObservedObject], entry: Any) -> dict[str, str]:
    """server id -> `${model:...}` for the documents `entry` exported (a version each, or the one remote model)."""
    if not _referable(gname, mname):
        return {}
    if "versions" in entry:
        labels = {str(v["version"]) for v in entry["versions"]}
        return {o.id: "${model:" + f"{gname}/{mname}@{o.source.get('model_version')}" + "}" for o in objs
                if str(o.source.get("model_version")) in labels}
    remote = [o for o in sorted(objs, key=_order) if _function(o.source) == "REMOTE"]
    return {remote[0].id: "${model:" + f"{gname}/{mname}" + "}"} if remote else {}


_CONSUMER_KEYS = (("ingest_pipeline", "ingest_pipelines", "ingest_pipelines"),
                  ("search_pipeline", "search_pipelines", "search_pipelines"),
                  ("agent", "agents", "agents"))


def _consumer_value(value: Any, tokens: dict[str, str]) -> Any:
    """A consumer's value for the file: strings escaped (a literal `${model:` too), then every exported id
    in them written as its reference; mappings and lists recursively."""
    if isinstance(value, str):
        text = value
        if "$${" in text or "${env:" in text or "${file:" in text or references.REFERENCE.search(text):
            text = text.replace("${", "$${")
        if text in tokens:
            return tokens[text]
        for oid in sorted((i for i in tokens if len(i) >= 6 and i in text), key=len, reverse=True):
            text = text.replace(oid, tokens[oid])
        return text   # already escaped: not through _string, which would escape it again
    if isinstance(value, dict):
        return _cmap((str(k), _consumer_value(v, tokens)) for k, v in value.items())
    if isinstance(value, list):
        return _cseq(_consumer_value(v, tokens) for v in value)
    return value


def _consumers(ex: _Exporter, observed: Observed, tokens: dict[str, str]) -> dict[str, Any]:
    """The pipelines and agents that name an exported model or connector (or an exported agent), with
    those ids written as references, so that they follow the models from now on (docs/references.md)."""
    out: dict[str, Any] = {key: _cseq() for _, key, _ in _CONSUMER_KEYS}
    agents_by_name: dict[str, list[ObservedObject]] = {}
    for obj in sorted(observed.agents.values(), key=_order):
        if not obj.source.get("is_hidden"):
            agents_by_name.setdefault(obj.source.get("name") or "", []).append(obj)
    chosen_agents: dict[str, ObservedObject] = {}
    grew = True
    while grew:   # agents naming exported agents are exported too (AgentTool's agent_id)
        grew = False
        for name, objs in agents_by_name.items():
            if name in chosen_agents or not references.ids_used(objs[0].source, set(tokens)):
                continue
            if len(objs) > 1:
                ex.warn(f"agent[{name!r}]: {len(objs)} agents share this name (server names are not unique); "
                        f"exported the oldest ({objs[0].id}), left out {', '.join(o.id for o in objs[1:])}")
            chosen_agents[name] = objs[0]
            if _referable(name):
                tokens[objs[0].id] = "${agent:" + name + "}"
            grew = True
    for kind, key, _ in _CONSUMER_KEYS:
        if kind == "agent":
            items = [(name, obj) for name, obj in sorted(chosen_agents.items())]
        else:
            pool = observed.ingest_pipelines if kind == "ingest_pipeline" else observed.search_pipelines
            items = [(pid, pool[pid]) for pid in sorted(pool) if references.ids_used(pool[pid].source, set(tokens))]
        for name, obj in items:
            what = f'{kind}["{name}"]'
            if kind == "agent":
                form = normalize.agent_form(obj.source)
                for tool in form.get("tools") or []:
                    if tool.get("include_output_in_agent_response") is False:
                        del tool["include_output_in_agent_response"]   # the server's default
                entry = _cmap([("name", escape(name))])
                entry.yaml_add_eol_comment(f"id {obj.id}", "name")
                for k, v in form.items():
                    if k != "name":
                        entry[k] = _consumer_value(v, tokens)
                ex.unexpressible(what, obj.source, set(form) | {"name"},
                                 {"created_time", "last_updated_time", "is_hidden", "tenant_id"})
            else:
                form = normalize.pipeline_form(obj.source, kind)
                entry = _cmap([("id", name)])
                for k, v in form.items():
                    entry[k] = _consumer_value(v, tokens)
                ex.unexpressible(what, obj.source, set(form), set())
                if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", name) or name == "_none":
                    ex.warn(f"{what}: its id is not one mlsync manages (lower-case letters, digits, '.', '_', '-'); "
                            "left out")
                    continue
            out[key].append(entry)
    return out


def _addr(kind: str, *parts: str) -> str:
    return kind + "".join(f"[{json.dumps(p, ensure_ascii=False)}]" for p in parts)


def _model_entry(ex: _Exporter, gname: str, mname: str, objs: list[ObservedObject],
                 conn_names: dict[str, str]) -> tuple[Any, int]:
    """One `models[]` entry for the documents named `mname` in group `gname` -> (entry or None, versions)."""
    what = _addr("model", gname, mname)
    objs = sorted(objs, key=_order)
    remote = [o for o in objs if _function(o.source) == "REMOTE"]
    local = sorted((o for o in objs if _function(o.source) != "REMOTE"), key=_version_number)
    if local and remote:
        ex.warn(f"{what}: a remote model and local versions share this name in one group (the file cannot say "
                f"that); exported the local versions, left out {', '.join(o.id for o in remote)}")
        remote = []
    if len(remote) > 1:   # a family: every re-registration is a version (labels: the server's numbers)
        entry = _remote_family_entry(ex, gname, mname, sorted(remote, key=_version_number), conn_names, what)
        return entry, (len(entry["versions"]) if entry is not None else 0)
    if remote:
        return _remote_entry(ex, gname, mname, remote[0], conn_names, what), 1
    function = _function(local[0].source)
    odd = [o for o in local if _function(o.source) != function]
    if odd:
        ex.warn(f"{what}: versions with another function_name than {function} (the first version's) cannot share "
                f"the model; left out {', '.join(o.id for o in odd)}")
        local = [o for o in local if o not in odd]
    return _local_entry(ex, gname, mname, function, local, what), len(local)


def _remote_entry(ex: _Exporter, gname: str, mname: str, obj: ObservedObject, conn_names: dict[str, str], what: str):
    src = obj.source
    m = _cmap([("name", escape(mname)), ("model_group", escape(gname))])
    m.yaml_add_eol_comment(f"id {obj.id}, server version {src.get('model_version')}{_state_note(src)}", "name")
    fields = ex.version_fields(src, what)
    if fields["description"] is not None:
        m["description"] = fields.pop("description")
    m["function_name"] = "remote"
    cid = src.get("connector_id")
    if cid:
        if cid not in conn_names:
            ex.warn(f"{what}: uses connector {cid}, which is not on the cluster; left out")
            return None
        m["connector"] = escape(conn_names[cid])
    elif isinstance(src.get("connector"), dict):
        m["connector"] = ex.connector(src["connector"], owner=mname, inline=True, what=f"{what} connector")
    else:
        ex.warn(f"{what}: a remote model with neither connector_id nor an inline connector; left out")
        return None
    for k in _VERSION_FIELDS:
        if fields.get(k) is not None:
            m[k] = fields[k]
    ex.unexpressible(what, src, _MODEL_FIELDS, _MODEL_OUTPUTS)
    return m


def _remote_connector(ex: _Exporter, src: dict, owner: str, conn_names: dict[str, str], what: str) -> Any:
    """A remote model's connector in file form (a name, or the inline connector); None: cannot say."""
    cid = src.get("connector_id")
    if cid:
        if cid not in conn_names:
            ex.warn(f"{what}: uses connector {cid}, which is not on the cluster; left out")
            return None
        return escape(conn_names[cid])
    if isinstance(src.get("connector"), dict):
        return ex.connector(src["connector"], owner=owner, inline=True, what=f"{what} connector")
    ex.warn(f"{what}: a remote model with neither connector_id nor an inline connector; left out")
    return None


def _remote_family_entry(ex: _Exporter, gname: str, mname: str, objs: list[ObservedObject],
                         conn_names: dict[str, str], what: str):
    """Same-name remote models in one group (ML Commons keeps each re-registration as a new version of
    the group): one model with a version per document, labelled with the server's version number, so
    that the plan of the exported file adopts each one (docs/references.md)."""
    kept, connectors, per_version = [], [], []
    for o in objs:
        vwhat = f"{what}[{str(o.source.get('model_version'))!r}]"
        conn = _remote_connector(ex, o.source, f"{mname}-{o.source.get('model_version')}", conn_names, vwhat)
        if conn is None:
            continue
        kept.append(o)
        connectors.append(conn)
        per_version.append(ex.version_fields(o.source, vwhat))
    if not kept:
        return None
    m = _cmap([("name", escape(mname)), ("model_group", escape(gname))])
    m.yaml_add_eol_comment(f"{len(kept)} remote models of this name in the group, one version each", "name")
    names = [c for c in connectors if isinstance(c, str)]
    shared_connector = len(names) == len(connectors) and len(set(names)) == 1
    common = _model_head(m, per_version, "remote", [("connector", names[0])] if shared_connector else [])
    vs = _cseq()
    for obj, conn, fields in zip(kept, connectors, per_version):
        src = obj.source
        v = _cmap([("version", str(src.get("model_version")))])
        v.yaml_add_eol_comment(f"id {obj.id}{_state_note(src)}", "version")
        if not shared_connector:
            v["connector"] = conn
        vs.append(_version_rest(ex, v, fields, common, what, src))
    m["versions"] = vs
    return m


def _model_head(m: Any, per_version: list[dict], function: str, extra: list[tuple[str, Any]]) -> dict:
    """Fill a versioned model's own fields: those equal in every version (returned), `function_name`, `extra`."""
    common = {}
    for k in _VERSION_FIELDS:
        values = [f[k] for f in per_version]
        if values[0] is not None and all(_same(v, values[0]) for v in values[1:]):
            common[k] = values[0]
    if "description" in common:
        m["description"] = common["description"]
    m["function_name"] = function
    for k, v in extra:
        m[k] = v
    for k in _VERSION_FIELDS:
        if k != "description" and k in common:
            m[k] = common[k]
    return common


def _version_rest(ex: _Exporter, v: Any, fields: dict, common: dict, what: str, src: dict) -> Any:
    """A version entry's fields that differ from the model's; warns about what the file cannot say."""
    for k in _VERSION_FIELDS:
        if k not in common and fields[k] is not None:
            v[k] = fields[k]
    ex.unexpressible(f"{what}[{src.get('model_version')!r}]", src, _MODEL_FIELDS, _MODEL_OUTPUTS)
    return v


def _local_entry(ex: _Exporter, gname: str, mname: str, function: str, objs: list[ObservedObject], what: str):
    m = _cmap([("name", escape(mname)), ("model_group", escape(gname))])
    per_version = [ex.version_fields(o.source, f"{what}[{o.source.get('model_version')!r}]") for o in objs]
    common = _model_head(m, per_version, function, [])
    vs = _cseq()
    for obj, fields in zip(objs, per_version):
        src = obj.source
        v = _cmap([("version", str(src.get("model_version")))])
        v.yaml_add_eol_comment(f"id {obj.id}{_state_note(src)}", "version")
        v["url"] = f"https://{PLACEHOLDER_HOST}/{src.get('model_content_hash_value')}.zip"
        v.yaml_add_eol_comment(_artifact_comment(src), "url")
        v["model_content_hash_value"] = src.get("model_content_hash_value")
        if not src.get("model_content_hash_value"):
            ex.warn(f"{what}[{src.get('model_version')!r}]: the server has no model_content_hash_value for it; "
                    "the file will not validate until one is filled in")
        vs.append(_version_rest(ex, v, fields, common, what, src))
    m["versions"] = vs
    return m


def _state_note(src: dict) -> str:
    """Say so when a model was neither registered, deployed nor undeployed (e.g. DEPLOY_FAILED)."""
    state = (src.get("model_state") or "").upper()
    return f", model_state {state} at export" if state and state not in _NORMAL_STATES else ""


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _header(source: ExportSource, groups: Optional[list[str]], ex: _Exporter) -> str:
    lines = [
        f"Exported by mlsync {source.tool_version} from {source.cluster}"
        + (f" (OpenSearch {source.cluster_version})" if source.cluster_version else "")
        + f" at {source.exported_at}.",
        "Model groups: " + (", ".join(sorted(set(groups))) if groups else "all") + ".",
        "",
        "The server never returns credentials: each connector's credential is an ${env:...} placeholder.",
        "Set these variables before `mlsync plan` (the file does not load without them):",
    ]
    lines += [f"  {v}" for v in ex.env_vars] or ["  (none: no connectors)"]
    lines += [
        "Local model versions: the server keeps each artifact's SHA-256 but not the URL it came from nor the",
        f"file it was uploaded from, so every url below is a placeholder ({PLACEHOLDER_HOST}). Plan matches",
        "versions by hash and adopts them; put the real url (or path) in before anything re-registers one.",
        "Version labels are the server's version numbers. See docs/export-import.md.",
    ]
    if ex.warnings:
        lines += ["", "Left out (the file cannot express it):"] + [f"  - {w}" for w in ex.warnings]
    return "\n".join(lines)
