"""mlsync/export.py without a cluster: observed documents -> file text -> loader -> planner.

The central property: whatever the server returned, the exported file loads, validates and plans as
adopt-only (no field changes) against the very documents it came from. The other tests pin the
decisions: natural parameter types, escaping, credential placeholders, placeholders for artifacts,
what is left out and why, --group filtering, determinism, no secrets.
"""

from __future__ import annotations

import re

import pytest

from mlsync.input import load
from mlsync.input.schema import schema_errors
from mlsync.input.flatten import flatten
from mlsync.core.errors import ConfigError, MlsyncError
from mlsync.core.export import (
    PLACEHOLDER_HOST,
    ExportSource,
    credential_keys,
    env_name,
    escape,
    export_stack,
    parameter_value,
)
from mlsync.core.observed import Observed, ObservedObject
from mlsync.core.plan import Action
from mlsync.core.planner import plan
from mlsync.core.state import StackState

SOURCE = ExportSource(cluster="https://search.example.com:9200", cluster_version="2.19.6",
                      exported_at="2025-01-02T03:04:05Z", tool_version="0.1.0")
H1, H2, H3 = "1" * 64, "2" * 64, "3" * 64
SCRIPT = 'def text = params.text;\nif (text == null) {\n  return "${parameters.empty}";\n}\nreturn text;'


def action(**extra):
    return {"action_type": "PREDICT", "method": "POST", "url": "https://api.example.com/v1/embed", **extra}


CONNECTORS = {
    "C1": {"name": "openai: embeddings / prod", "description": "multi\nline description", "version": "1.5",
           "protocol": "http", "created_time": 1, "last_updated_time": 2,
           "parameters": {"model": "text-embedding-3", "dims": "1536", "temperature": "0.25", "flag": "false",
                          "nested": '{"a":[1,{"b":null}]}', "spaced": '{"a": 1}', "octal": "007", "exp": "1e5",
                          "null": "null", "unicode": "naïve ✓", "env": "${env:HOME}", "escaped": "$${x}",
                          "file": "${file:secret.txt}", "placeholder": "${parameters.model}", "yes": "yes",
                          "empty": "", "list": '["x",1,2.5,true]', "big": "12345678901234567890",
                          "neg": "-3", "tiny": "1e-07"},
           "actions": [action(headers={"Authorization": "Bearer ${credential.openai_key}", "X-Org": "${credential.org}"},
                              request_body='{"input": ${parameters.input}}',
                              pre_process_function="connector.pre_process.openai.embedding",
                              post_process_function=SCRIPT),
                       {"action_type": "EXECUTE", "method": "get", "url": "https://api.example.com/${parameters.path}",
                        "post_process_function": "trailing space \nand\ttab"}],
           "client_config": {"max_connection": 7, "connection_timeout": 30000, "read_timeout": 30000,
                             "retry_backoff_millis": 200, "retry_timeout_seconds": 30, "max_retry_times": -1,
                             "retry_backoff_policy": "EXPONENTIAL_EQUAL_JITTER"}},
    "C2": {"name": "bedrock", "version": "1", "protocol": "aws_sigv4", "created_time": 3,
           "parameters": {"region": "us-east-1", "service_name": "bedrock"},
           "actions": [action(request_body="${parameters.input}")]},
    "C3": {"name": "unused", "version": "1", "protocol": "http", "created_time": 4, "actions": [action()]},
}
GROUPS = {
    "G1": {"name": "remote: group", "description": "remote models", "latest_version": 3, "access": "public",
           "created_time": 1},
    "G2": {"name": "local", "latest_version": 11, "access": "public", "created_time": 2},
    "G3": {"name": "other", "latest_version": 0, "access": "public", "created_time": 3},
}


def local(version: str, hash_: str, **extra):
    return {"name": "minilm", "algorithm": "TEXT_EMBEDDING", "model_group_id": "G2", "model_version": version,
            "model_format": "TORCH_SCRIPT", "model_state": "REGISTERED", "model_content_hash_value": hash_,
            "model_content_size_in_bytes": 700, "total_chunks": 1, "is_hidden": False, "created_time": int(version),
            "last_registered_time": 5,
            "model_config": {"model_type": "bert", "embedding_dimension": 384, "framework_type": "SENTENCE_TRANSFORMERS",
                             "all_config": '{"architectures": ["BertModel"], "hidden_size": 384, "eps": 1e-12}',
                             "pooling_mode": "MEAN", "normalize_result": True}, **extra}


MODELS = {
    "R1": {"name": "remote one", "algorithm": "REMOTE", "model_group_id": "G1", "connector_id": "C1",
           "model_version": "1", "model_state": "DEPLOYED", "created_time": 1, "description": "deployed",
           "rate_limiter": {"limit": "100", "unit": "MINUTES"},
           "interface": {"input": '{"type":"object","properties":{"texts":{"type":"array"}}}', "output": '"a JSON string"'},
           "guardrails": {"type": "local_regex", "input_guardrail": {
               "stop_words": [{"index_name": "words", "source_fields": ["title", "body"]}], "regex": ["a.*b"]}},
           "deploy_setting": {"is_auto_deploy_enabled": True, "model_ttl_minutes": -1}, "is_enabled": True},
    "R2": {"name": "inline", "algorithm": "REMOTE", "model_group_id": "G1", "model_version": "2",
           "model_state": "DEPLOY_FAILED", "created_time": 2, "is_enabled": False,
           "connector": {"name": "inline conn", "version": "2", "protocol": "http", "parameters": {"k": "1"},
                         "actions": [action(headers={"k": "${credential.key}"})],
                         "client_config": {"max_connection": 30, "connection_timeout": 30000, "read_timeout": 5,
                                           "retry_backoff_millis": 200, "retry_timeout_seconds": 30,
                                           "max_retry_times": 0, "retry_backoff_policy": "constant"}}},
    "R3": {"name": "bedrock model", "algorithm": "REMOTE", "model_group_id": "G1", "connector_id": "C2",
           "model_version": "3", "model_state": "UNDEPLOYED", "created_time": 3,
           "guardrails": {"type": "model", "input_guardrail": {"model_id": "R1", "response_filter": "$.x",
                                                               "response_validation_regex": "^ok$"}},
           "deploy_setting": {"model_ttl_minutes": 10}},
    "L1": local("1", H1, description="first"),
    "L2": local("2", H2, description="first", model_format="ONNX"),
    "L10": local("10", H3, description="first", last_registered_time=None, model_state="DEPLOY_FAILED"),
    "O1": {"name": "o", "algorithm": "REMOTE", "model_group_id": "G3", "connector_id": "C3", "model_version": "1",
           "model_state": "REGISTERED", "created_time": 9},
}


def observed(connectors=None, groups=None, models=None, *, model_acl=False, connector_acl=False) -> Observed:
    def objs(kind, docs):
        return {i: ObservedObject(kind, i, dict(src), n, 1) for n, (i, src) in enumerate(docs.items())}
    return Observed(connectors=objs("connector", CONNECTORS if connectors is None else connectors),
                    groups=objs("model_group", GROUPS if groups is None else groups),
                    models=objs("model", MODELS if models is None else models), cluster_version="2.19.6",
                    model_access_control=model_acl, connector_access_control=connector_acl)


def load_text(text: str, tmp_path, env=None):
    path = tmp_path / "exported.yaml"
    path.write_text(text)
    if env is None:
        env = {name: f"value of {name}" for name in re.findall(r"\$\{env:(MLSYNC_CRED_\w+)\}", text)}
    return load([str(path)], env=env)


def plan_against(obs: Observed, text: str, tmp_path):
    loaded = load_text(text, tmp_path)
    return plan(flatten(loaded.stack), obs, StackState(loaded.stack.stack))


def odd_changes(p):
    return [(str(c.address), [a.value for a in c.actions], [(f.path, f.before, f.after) for f in c.field_changes])
            for c in p.changes if c.actions != (Action.ADOPT,) or c.field_changes]


# --- the round trip ------------------------------------------------------------------------------

def test_everything_exported_loads_and_plans_as_adopt_only(tmp_path):
    obs = observed()
    result = export_stack(obs, source=SOURCE)
    p = plan_against(obs, result.text(), tmp_path)
    assert not odd_changes(p), odd_changes(p)
    assert {c.server_id for c in p.changes} == set(CONNECTORS) | set(GROUPS) | set(MODELS)
    assert result.counts == {"connectors": 3, "model_groups": 3, "models": 5, "versions": 7}


def test_the_file_is_schema_valid_before_interpolation(tmp_path):
    from ruamel.yaml import YAML

    tree = YAML(typ="safe").load(export_stack(observed(), source=SOURCE).text())
    assert not schema_errors(tree)


def test_round_trip_with_access_control_on(tmp_path):
    groups = {"G1": {**GROUPS["G1"], "access": "restricted", "backend_roles": ["ml", "admin"]}}
    connectors = {"C1": {**CONNECTORS["C1"], "access": "private", "owner": {"name": "bob"}}}
    models = {k: v for k, v in MODELS.items() if k in ("R1",)}
    obs = observed(connectors, groups, models, model_acl=True, connector_acl=True)
    text = export_stack(obs, source=SOURCE).text()
    assert "access_mode: restricted" in text and "access_mode: private" in text
    p = plan_against(obs, text, tmp_path)
    assert not odd_changes(p), odd_changes(p)


# --- values --------------------------------------------------------------------------------------

@pytest.mark.parametrize("stored, natural", [
    ("4", 4), ("0.5", 0.5), ("true", True), ("false", False), ('{"a":[1,2]}', {"a": [1, 2]}), ('["x",1]', ["x", 1]),
    ("-3", -3), ("12345678901234567890", 12345678901234567890), ("1e-07", 1e-07),
    # ambiguous or not what the server would store for the natural value: stay strings
    ('{"a": 1}', '{"a": 1}'), ("007", "007"), ("1e5", "1e5"), ("null", "null"), ('"quoted"', '"quoted"'),
    ("True", "True"), ("1.50", "1.50"), ("", ""), ("NaN", "NaN"), ("1e400", "1e400"), ("x", "x"),
])
def test_parameter_values_get_their_natural_type_only_when_unambiguous(stored, natural):
    assert parameter_value(stored) == natural
    assert type(parameter_value(stored)) is type(natural)


@pytest.mark.parametrize("text", [
    "plain", "${parameters.x}", "${credential.k}", "${env:HOME}", "a${file:x}b", "$${", "$$${", "$", "$$", "${",
    "${env:", "pre $${env:X} post", "$${parameters.x}",
])
def test_escaped_strings_load_back_unchanged(text, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(f"version: 1\nstack: {_yaml_quote(escape(text))}\n")
    assert load([str(path)], env={"HOME": "/root", "X": "x"}).stack.stack == text


def _yaml_quote(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def test_readable_strings_stay_readable():
    assert escape("Bearer ${credential.api_key}") == "Bearer ${credential.api_key}"
    assert escape("${env:HOME}") == "$${env:HOME}"


def test_multi_line_scripts_are_literal_blocks_and_awkward_ones_still_load(tmp_path):
    text = export_stack(observed(), source=SOURCE).text()
    assert "post_process_function: |" in text
    stack = load_text(text, tmp_path).stack
    conn = next(c for c in stack.connectors if c.name.startswith("openai"))
    assert conn.actions[0].post_process_function == SCRIPT
    assert conn.actions[1].post_process_function == "trailing space \nand\ttab"
    assert conn.description == "multi\nline description"


def test_server_text_becomes_the_files_natural_form(tmp_path):
    stack = load_text(export_stack(observed(), source=SOURCE).text(), tmp_path).stack
    conn = next(c for c in stack.connectors if c.name.startswith("openai"))
    assert conn.parameters["dims"] == 1536 and conn.parameters["flag"] is False
    assert conn.parameters["nested"] == {"a": [1, {"b": None}]} and conn.parameters["spaced"] == '{"a": 1}'
    assert conn.parameters["env"] == "${env:HOME}" and conn.parameters["escaped"] == "$${x}"
    assert conn.actions[1].method == "GET" and conn.actions[1].action_type == "execute"
    assert conn.client_config.retry_backoff_policy == "exponential_equal_jitter"
    remote = next(m for m in stack.models if m.name == "remote one")
    assert remote.function_name == "REMOTE" and remote.connector == conn.name
    assert remote.rate_limiter.limit == "100" and remote.deploy is True
    assert remote.deploy_setting.model_ttl_minutes is None   # -1 is the server's "no TTL"
    assert remote.interface.output == '"a JSON string"'       # JSON, but not a mapping: kept as text
    minilm = next(m for m in stack.models if m.name == "minilm")
    assert minilm.model_config_.framework_type == "sentence_transformers" and minilm.model_config_.pooling_mode == "mean"


# --- credentials ---------------------------------------------------------------------------------

def test_credentials_are_env_placeholders_named_after_the_connector(tmp_path):
    result = export_stack(observed(), source=SOURCE)
    text = result.text()
    assert "credential:  # the server never returns credentials" in text
    assert result.env_vars == [
        "MLSYNC_CRED_BEDROCK_ACCESS_KEY", "MLSYNC_CRED_BEDROCK_SECRET_KEY",
        "MLSYNC_CRED_OPENAI_EMBEDDINGS_PROD_OPENAI_KEY", "MLSYNC_CRED_OPENAI_EMBEDDINGS_PROD_ORG",
        "MLSYNC_CRED_UNUSED_API_KEY", "MLSYNC_CRED_INLINE_KEY"]
    for name in result.env_vars:
        assert f"${{env:{name}}}" in text and f"#   {name}" in text   # and listed in the header
    with pytest.raises(ConfigError, match="MLSYNC_CRED_BEDROCK_ACCESS_KEY is not set"):
        load_text(text, tmp_path, env={})


@pytest.mark.parametrize("connector, keys, inferred", [
    ({"protocol": "http", "actions": [action(headers={"a": "${credential.x}"}, url="https://h/${credential.y}")]},
     ["x", "y"], True),
    ({"protocol": "aws_sigv4", "actions": [action()]}, ["access_key", "secret_key"], True),
    ({"protocol": "aws_sigv4", "actions": [action(request_body="${credential.session_token}")]},
     ["access_key", "secret_key", "session_token"], True),
    ({"protocol": "http", "actions": [action()]}, ["api_key"], False),
    ({"protocol": "http", "parameters": {"p": "${credential.z}"}, "actions": [action()]}, ["z"], True),
])
def test_credential_keys_are_the_ones_the_connector_references(connector, keys, inferred):
    assert credential_keys(connector) == (keys, inferred)


def test_env_names_are_sanitised_and_never_collide():
    assert env_name("my-conn: prod", "api.key") == "MLSYNC_CRED_MY_CONN_PROD_API_KEY"
    connectors = {"A": {**CONNECTORS["C3"], "name": "a-b"}, "B": {**CONNECTORS["C3"], "name": "a_b", "created_time": 9}}
    result = export_stack(observed(connectors, {}, {}), source=SOURCE)
    assert result.env_vars == ["MLSYNC_CRED_A_B_API_KEY", "MLSYNC_CRED_A_B_API_KEY_2"]


def test_no_secret_ever_reaches_the_file():
    # The server strips credentials; should a proxy or a future version return one, it still stays out.
    connectors = {"C": {**CONNECTORS["C3"], "credential": {"api_key": "sk-very-secret"}}}
    models = {"R": {**MODELS["R2"], "model_group_id": "G", "connector": {**MODELS["R2"]["connector"],
                                                                           "credential": {"key": "sk-inline-secret"}}}}
    result = export_stack(observed(connectors, {"G": GROUPS["G1"]}, models), source=SOURCE)
    assert "secret" not in result.text()


# --- local versions -----------------------------------------------------------------------------

def test_versions_sit_under_their_model_labelled_with_server_numbers_in_numeric_order(tmp_path):
    stack = load_text(export_stack(observed(), source=SOURCE).text(), tmp_path).stack
    minilm = next(m for m in stack.models if m.name == "minilm")
    assert [v.version for v in minilm.versions] == ["1", "2", "10"]
    assert [v.model_content_hash_value for v in minilm.versions] == [H1, H2, H3]
    assert all(v.url == f"https://{PLACEHOLDER_HOST}/{v.model_content_hash_value}.zip" for v in minilm.versions)
    assert [v.model_format for v in minilm.versions] == ["TORCH_SCRIPT", "ONNX", "TORCH_SCRIPT"]


def test_fields_shared_by_every_version_move_to_the_model():
    text = export_stack(observed(models={k: MODELS[k] for k in ("L1", "L2", "L10")}, groups={"G2": GROUPS["G2"]}),
                        source=SOURCE).text()
    model_part, versions_part = text.split("\n    versions:\n")
    assert "description: first" in model_part and "description" not in versions_part
    assert "model_config:" in model_part and versions_part.count("model_format:") == 3
    assert "deploy: false" in model_part


def test_artifact_placeholders_say_how_the_version_was_registered():
    text = export_stack(observed(), source=SOURCE).text()
    assert text.count("placeholder: registered from a URL the server does not keep") == 2
    assert text.count("placeholder: uploaded from a local file whose bytes cannot be read back") == 1
    assert "- version: '10'  # id L10, model_state DEPLOY_FAILED at export" in text
    assert "- name: inline  # id R2, server version 2, model_state DEPLOY_FAILED at export" in text


def test_deploy_follows_the_model_state():
    result = export_stack(observed(), source=SOURCE)
    models = {m["name"]: m for m in result.document["models"]}
    assert models["remote one"]["deploy"] is True          # DEPLOYED
    assert models["inline"]["deploy"] is False             # DEPLOY_FAILED: not deployed
    assert models["bedrock model"]["deploy"] is False      # UNDEPLOYED


# --- selection and what is left out ----------------------------------------------------------------

def test_group_filter_takes_the_groups_and_only_the_connectors_their_models_use(tmp_path):
    obs = observed()
    result = export_stack(obs, source=SOURCE, groups=["remote: group"])
    doc = result.document
    assert [g["name"] for g in doc["model_groups"]] == ["remote: group"]
    assert sorted(c["name"] for c in doc["connectors"]) == ["bedrock", "openai: embeddings / prod"]
    assert result.stack == "remote: group"     # one group: the stack is named after it
    assert export_stack(obs, source=SOURCE, groups=["local", "other"]).stack == "exported"
    assert export_stack(obs, source=SOURCE, groups=["local"], stack="mine").stack == "mine"
    p = plan_against(obs, result.text(), tmp_path)
    assert not odd_changes(p)


def test_an_unknown_group_is_an_error():
    with pytest.raises(MlsyncError, match="no model group named 'nope' on the cluster"):
        export_stack(observed(), source=SOURCE, groups=["local", "nope"])


def test_duplicate_connector_names_export_the_oldest_and_say_how_to_choose():
    connectors = {"B": {**CONNECTORS["C3"], "created_time": 9}, "A": {**CONNECTORS["C3"], "created_time": 1}}
    result = export_stack(observed(connectors, {}, {}), source=SOURCE)
    assert [c["name"] for c in result.document["connectors"]] == ["unused"]
    assert "# id A" in result.text()
    assert any("2 connectors share this name" in w and "mlsync import 'connector[\"unused\"]' ID" in w
               for w in result.warnings)
    assert "Left out (the file cannot express it):" in result.text()


def test_name_clashes_inside_a_group_are_left_out_with_a_warning(tmp_path):
    models = {
        "A": {**MODELS["R3"], "name": "same", "created_time": 1, "model_version": "1"},
        "B": {**MODELS["R3"], "name": "same", "created_time": 2, "model_version": "2"},
        "L": local("1", H1, name="mixed", model_group_id="G1"),
        "M": {**MODELS["R3"], "name": "mixed"},
    }
    obs = observed(models=models)
    result = export_stack(obs, source=SOURCE, groups=["remote: group"])
    assert not any("remote models share this name" in w for w in result.warnings)
    assert any("a remote model and local versions share this name" in w for w in result.warnings)
    assert sorted(m["name"] for m in result.document["models"]) == ["mixed", "same"]
    same = next(m for m in result.document["models"] if m["name"] == "same")
    assert [v["version"] for v in same["versions"]] == ["1", "2"]     # a remote family: one version each
    load_text(result.text(), tmp_path)     # still a valid file


def test_a_family_of_ten_same_name_remote_models_round_trips_as_versions(tmp_path):
    """Measured before: export kept "the oldest" and the plan failed with "10 unmanaged objects match it"."""
    models = {f"F{n}": {**MODELS["R3"], "name": "family", "model_version": str(n), "created_time": n,
                        "model_state": "DEPLOYED" if n % 2 else "REGISTERED",
                        **({"connector_id": "C3"} if n > 5 else {}), **({"description": "new"} if n == 10 else {})}
              for n in range(1, 11)}
    obs = observed(models=models)
    result = export_stack(obs, source=SOURCE, groups=["remote: group"])
    family = next(m for m in result.document["models"] if m["name"] == "family")
    assert [v["version"] for v in family["versions"]] == [str(n) for n in range(1, 11)]
    assert "connector" not in family and family["versions"][0]["connector"] != family["versions"][9]["connector"]
    p = plan_against(obs, result.text(), tmp_path)
    assert odd_changes(p) == []
    adopted = {str(c.address): c.server_id for c in p.changes if c.address.name == "family"}
    assert adopted == {f'model["remote: group"]["family"]["{n}"]': f"F{n}" for n in range(1, 11)}


def test_hidden_models_and_unexpressible_fields_are_reported_not_exported():
    models = {"H": {**MODELS["O1"], "is_hidden": True}, "O": {**MODELS["O1"], "future_field": 1}}
    result = export_stack(observed(models=models), source=SOURCE, groups=["other"])
    assert [m["name"] for m in result.document["models"]] == ["o"]
    assert any("future_field cannot be written in the file" in w for w in result.warnings)
    assert "1 hidden (system) model(s) skipped" in result.warnings


def test_an_interface_that_is_not_json_is_left_out_whole_so_it_stays_unmanaged(tmp_path):
    # The server stores any text here (seen on 2.19.6: "not json", ""); the file takes only JSON.
    models = {"O": {**MODELS["O1"], "interface": {"input": '{"type":"object"}', "output": "not json"}}}
    obs = observed(models=models)
    result = export_stack(obs, source=SOURCE, groups=["other"])
    assert "interface" not in result.document["models"][0]
    assert any("interface.output is not JSON" in w for w in result.warnings)
    assert not odd_changes(plan_against(obs, result.text(), tmp_path))


# --- the document ----------------------------------------------------------------------------------

def test_header_names_the_cluster_version_and_time():
    text = export_stack(observed(), source=SOURCE, groups=["local"]).text()
    assert text.startswith("# Exported by mlsync 0.1.0 from https://search.example.com:9200 (OpenSearch 2.19.6) "
                           "at 2025-01-02T03:04:05Z.\n# Model groups: local.\n")


def test_export_is_deterministic_whatever_order_the_server_answers_in():
    def reversed_observed():
        obs = observed()
        rev = lambda d: dict(reversed(list(d.items())))  # noqa: E731
        return Observed(connectors=rev(obs.connectors), groups=rev(obs.groups), models=rev(obs.models),
                        cluster_version=obs.cluster_version)
    assert export_stack(observed(), source=SOURCE).text() == export_stack(reversed_observed(), source=SOURCE).text()


def test_an_empty_cluster_is_a_valid_empty_stack(tmp_path):
    text = export_stack(Observed(), source=SOURCE).text()
    assert load_text(text, tmp_path).stack.stack == "exported"
