"""What the server lets mlsync do with each field, per kind: the table the planner's actions follow.

Every key of a comparable form (mlsync/normalize.py) has exactly one rule here, and the planner and
the request builder read their field lists from this table (a test checks both, and that
docs/field-rules.md shows this table). `§` cites ../shared/reference/ml-commons-api.md; notes add what
the 2.19.6 node showed (docs/ml-commons-notes.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Rule(str, Enum):
    IDENTITY = "identity"            # part of the address: a different value is a different resource
    UPDATE = "update in place"       # an update call changes it
    REPLACE = "replace"              # no API changes it: register a new version / recreate
    WRITE_ONLY = "write-only"        # sent, never returned: compared through a keyed fingerprint in state
    INPUT = "input only"             # consumed by registration, not stored; the artifact hash stands in
    DEPLOY = "deploy / undeploy"     # desired runtime state, carried out with deploy / undeploy calls
    SERVER = "server-managed"        # the server's output: shown in plans, never in the file, never compared


@dataclass(frozen=True)
class Field:
    name: str
    rule: Rule
    ref: str            # section of the reference
    note: str = ""


_C, _G, _M = "connector", "model_group", "model"
_IP, _SP, _A = "ingest_pipeline", "search_pipeline", "agent"
_CONSUMER_REF = "model-consumers.md"

TABLE: dict[str, tuple[Field, ...]] = {
    _C: (
        Field("name", Rule.IDENTITY, "§4.1, §4.3", "the connector's name within the stack; renaming is a new connector"),
        Field("description", Rule.UPDATE, "§4.3"),
        Field("version", Rule.UPDATE, "§4.3", "required by create (400 without it); mlsync sends \"1\" when unset"),
        Field("protocol", Rule.UPDATE, "§4.3", "case-sensitive on the node: `http`, `aws_sigv4`"),
        Field("parameters", Rule.UPDATE, "§4.3",
              "merged key by key: a key removed from the file stays on the server (warned, not planned)"),
        Field("actions", Rule.UPDATE, "§4.3", "replaced whole"),
        Field("client_config", Rule.UPDATE, "§4.3", "replaced whole; missing keys filled with the server's defaults"),
        Field("access_mode", Rule.UPDATE, "§4.3", "only with connector access control; stored as `access`"),
        Field("backend_roles", Rule.UPDATE, "§4.3", "only with connector access control"),
        Field("credential", Rule.WRITE_ONLY, "§4.2", "never returned by GET or search"),
        Field("owner, access, created_time, last_updated_time", Rule.SERVER, "§4.2"),
    ),
    _G: (
        Field("name", Rule.IDENTITY, "§1.1, §1.3", "group names are unique on the cluster"),
        Field("description", Rule.UPDATE, "§1.3", "applied only when non-blank: it cannot be cleared"),
        Field("access_mode", Rule.UPDATE, "§1.3", "only with model access control; stored as `access`"),
        Field("backend_roles", Rule.UPDATE, "§1.3", "only with model access control"),
        Field("latest_version, owner, access, created_time, last_updated_time", Rule.SERVER, "§1.2"),
    ),
    _M: (
        Field("name", Rule.IDENTITY, "§2.1", "with the group and the version label"),
        Field("version (label)", Rule.IDENTITY, "§2.3", "the file's label; the server numbers versions itself"),
        Field("description", Rule.UPDATE, "§2.7", "re-set after upload / URL registration, which drop it (§2.4)"),
        Field("is_enabled", Rule.UPDATE, "§2.7", "TEXT_EMBEDDING and remote only (Update Model is 403 otherwise)"),
        Field("rate_limiter", Rule.UPDATE, "§2.7"),
        Field("model_config", Rule.UPDATE, "§2.7",
              "TEXT_EMBEDDING and remote only; for other functions a change is a replace"),
        Field("deploy_setting", Rule.UPDATE, "§2.7", "`model_ttl_minutes: -1` is the server's \"unset\""),
        Field("interface", Rule.UPDATE, "§2.7"),
        Field("guardrails", Rule.UPDATE, "§2.7"),
        Field("connector", Rule.UPDATE, "§2.7, §4.6",
              "a standalone connector by name, or the inline connector (merged like Update Connector); "
              "switching between the two, or adding parameters to an inline connector stored without any, "
              "is a replace"),
        Field("function_name", Rule.REPLACE, "§2.7", "stored as `algorithm`"),
        Field("model_format", Rule.REPLACE, "§2.7"),
        Field("model_content_hash_value", Rule.REPLACE, "§2.7", "the artifact's identity"),
        Field("url, path", Rule.INPUT, "§2.2, §2.4", "not stored: a new URL with the same hash is no change"),
        Field("connector.credential", Rule.WRITE_ONLY, "§2.5, §4.6", "stripped from GET and search"),
        Field("deploy", Rule.DEPLOY, "§2.8, §2.10",
              "compared with `model_state`; a connector update undeploys and redeploys its models"),
        Field("model_version", Rule.SERVER, "§2.3", "shown in plans and recorded in state"),
        Field("model_state, model_group_id, created_time, last_updated_time, last_registered_time, "
              "last_deployed_time, last_undeployed_time, planning_worker_node_count, current_worker_node_count, "
              "total_chunks, model_content_size_in_bytes", Rule.SERVER, "§2.5"),
    ),
    _IP: (
        Field("id", Rule.IDENTITY, f"{_CONSUMER_REF} §1.5", "chosen by the user; `*`, `,` and `_none` are refused"),
        Field("description", Rule.UPDATE, f"{_CONSUMER_REF} §1.2", "a PUT replaces the whole pipeline"),
        Field("version", Rule.UPDATE, f"{_CONSUMER_REF} §1.2", "stored as sent (a number or a numeric string)"),
        Field("processors", Rule.UPDATE, f"{_CONSUMER_REF} §1.2, §1.3",
              "stored as sent; `${model:...}` references resolve to ids"),
        Field("on_failure", Rule.UPDATE, f"{_CONSUMER_REF} §1.2"),
    ),
    _SP: (
        Field("id", Rule.IDENTITY, f"{_CONSUMER_REF} §2", "chosen by the user; `*`, `,` and `_none` are refused"),
        Field("description", Rule.UPDATE, f"{_CONSUMER_REF} §2", "a PUT replaces the whole pipeline"),
        Field("version", Rule.UPDATE, f"{_CONSUMER_REF} §2"),
        Field("request_processors", Rule.UPDATE, f"{_CONSUMER_REF} §2, §3"),
        Field("response_processors", Rule.UPDATE, f"{_CONSUMER_REF} §2, §3"),
        Field("phase_results_processors", Rule.UPDATE, f"{_CONSUMER_REF} §2"),
    ),
    _A: (
        Field("name", Rule.IDENTITY, f"{_CONSUMER_REF} §4.2, §6", "names are not unique on the server: mlsync keeps "
                                                                  "the id of its agent in the state"),
        Field("type", Rule.REPLACE, f"{_CONSUMER_REF} §4.1", "2.19 has no update API: every change is a replace "
                                                             "(a new agent id)"),
        Field("description", Rule.REPLACE, f"{_CONSUMER_REF} §4.1"),
        Field("llm", Rule.REPLACE, f"{_CONSUMER_REF} §4.2, §4.3", "parameter values are compared as the server "
                                                                  "stores them (strings)"),
        Field("tools", Rule.REPLACE, f"{_CONSUMER_REF} §4.2, §4.3",
              "`include_output_in_agent_response` defaults to false"),
        Field("parameters", Rule.REPLACE, f"{_CONSUMER_REF} §4.3", "values stored as strings"),
        Field("memory", Rule.REPLACE, f"{_CONSUMER_REF} §4.2"),
        Field("app_type", Rule.REPLACE, f"{_CONSUMER_REF} §4.2"),
        Field("created_time, last_updated_time, is_hidden, tenant_id", Rule.SERVER, f"{_CONSUMER_REF} §4.3"),
    ),
}

KINDS = tuple(TABLE)


def fields(kind: str, rule: Rule) -> tuple[str, ...]:
    """The comparable-form keys of `kind` with `rule` (rows naming several server fields are skipped)."""
    return tuple(f.name for f in TABLE[kind] if f.rule is rule and "," not in f.name and " " not in f.name)


def file_fields(kind: str) -> frozenset[str]:
    """The keys a desired-state file sets for `kind` and the server stores (identity, updatable, replace)."""
    return frozenset(f for rule in (Rule.IDENTITY, Rule.UPDATE, Rule.REPLACE) for f in fields(kind, rule))


def rule_of(kind: str, key: str) -> Rule:
    for f in TABLE[kind]:
        if key in (n.strip() for n in f.name.split(",")):
            return f.rule
    raise KeyError(f"{kind}.{key} has no rule in mlsync/field_rules.py")


def markdown() -> str:
    """The table as Markdown: docs/field-rules.md embeds exactly this (a test checks it)."""
    titles = {_C: "Connectors", _G: "Model groups", _M: "Model versions", _IP: "Ingest pipelines",
              _SP: "Search pipelines", _A: "Agents"}
    out = []
    for kind in KINDS:
        out += [f"### {titles[kind]}", "", "| field | rule | reference | note |", "|---|---|---|---|"]
        out += [f"| `{f.name}` | {f.rule.value} | {f.ref} | {f.note} |" for f in TABLE[kind]]
        out.append("")
    return "\n".join(out)
