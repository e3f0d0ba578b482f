"""Export round trip and import on the real node.

A module fixture populates the node through the raw API with every kind of object and many field
combinations; `mlsync export --group ...` must write a file that validates and that, planned against
the same cluster, only adopts (no field changes, no deploy flips); after the adopting apply the next
plan is empty. `mlsync import` must refuse ids of the wrong kind and change nothing.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from helpers import (
    build_model_zip_bytes,
    sha256_hex,
    split_chunks,
    text_embedding_config,
    url_model_body,
    wait_for_model_state,
    wait_for_task,
)
from mlsync import commands as app
from mlsync.commands import common as workflow
from mlsync.edge.cluster import Cluster, ConnectionOptions
from mlsync.input.schema import schema_errors
from mlsync.core.errors import ConfigError, MlsyncError
from mlsync.core.plan import Action
from mlsync.edge.statestore import FileStateStore

pytestmark = pytest.mark.cluster

PAINLESS = """def out = params.response;
return out;"""


@pytest.fixture(scope="module")
def opts(os_client) -> ConnectionOptions:
    return ConnectionOptions(url=os.environ.get("OPENSEARCH_URL", "http://127.0.0.1:9200"))


@dataclass
class Populated:
    prefix: str
    groups: dict[str, str] = field(default_factory=dict)       # name -> id
    connectors: dict[str, str] = field(default_factory=dict)   # name -> id
    models: dict[str, str] = field(default_factory=dict)       # key -> id
    deployed: set[str] = field(default_factory=set)            # keys


def _register_remote(ml, jan, body) -> str:
    resp = ml.register_model(body=body)
    jan.task(resp["task_id"])
    return jan.model(resp["model_id"])


def _register_url(os_client, jan, body) -> str:
    resp = os_client.plugins.ml.register_model(body=body)
    jan.task(resp["task_id"])
    task = wait_for_task(os_client, resp["task_id"], timeout=60)
    assert task["state"] == "COMPLETED", task
    return jan.model(task["model_id"])


@pytest.fixture(scope="module")
def populated(os_client, module_janitor, artifact_server) -> Populated:
    """Everything created through the raw API, never through mlsync."""
    import uuid

    ml, jan = os_client.plugins.ml, module_janitor
    u = f"ex-{uuid.uuid4().hex[:8]}"
    p = Populated(u)
    stub = artifact_server.url(f"/v1/{u}/embeddings")

    def connector(name, body):
        p.connectors[name] = jan.connector(ml.create_connector(body={"name": name, **body})["connector_id"])

    connector(f"{u}-conn-typed", {
        "description": "every parameter type", "version": "2", "protocol": "http",
        "parameters": {"model": "m", "dims": 4, "ratio": 0.5, "flag": True, "obj": {"a": [1, 2]}, "list": ["x", 1],
                       "spaced": '{"a": 1}', "nul": None, "zero": "007", "dollar": "${env:NOT_MINE}"},
        "credential": {"api_key": "secret-one", "other": "secret-two"},
        "client_config": {"max_connection": 7, "retry_backoff_policy": "exponential_full_jitter"},
        "actions": [
            {"action_type": "predict", "method": "POST", "url": stub,
             "headers": {"Authorization": "Bearer ${credential.api_key}", "Content-Type": "application/json"},
             "request_body": '{"input": ${parameters.input}, "model": "${parameters.model}"}',
             "pre_process_function": "connector.pre_process.openai.embedding",
             "post_process_function": "connector.post_process.openai.embedding"},
            {"action_type": "execute", "method": "get", "url": artifact_server.url(f"/v1/{u}/exec"),
             "headers": {"x-key": "${credential.other}"}, "post_process_function": PAINLESS},
        ]})
    connector(f"{u}-conn-plain", {
        "version": "1", "protocol": "http", "credential": {"token": "secret-three"},
        "actions": [{"action_type": "predict", "method": "POST", "url": stub, "request_body": "{}"}]})
    connector(f"{u}-conn-aws", {
        "version": "1", "protocol": "aws_sigv4", "parameters": {"region": "us-east-1", "service_name": "sagemaker"},
        "credential": {"access_key": "AKIAEXAMPLE", "secret_key": "secret-four"},
        "actions": [{"action_type": "predict", "method": "POST", "url": stub, "request_body": "${parameters.input}"}]})
    # used by no exported group: must stay out of a --group export
    connector(f"{u}-conn-unused", {
        "version": "1", "protocol": "http", "credential": {"k": "v"},
        "actions": [{"action_type": "predict", "method": "POST", "url": stub}]})

    for name, desc in ((f"{u}-remote", "remote models"), (f"{u}-local", None), (f"{u}-other", "not exported")):
        body = {"name": name, **({"description": desc} if desc else {})}
        p.groups[name] = jan.group(ml.register_model_group(body=body)["model_group_id"])

    g_remote, g_local = p.groups[f"{u}-remote"], p.groups[f"{u}-local"]
    p.models["full"] = _register_remote(ml, jan, {
        "name": f"{u}-full", "function_name": "remote", "model_group_id": g_remote,
        "connector_id": p.connectors[f"{u}-conn-typed"], "description": "every optional field",
        "rate_limiter": {"limit": 5, "unit": "SECONDS"},
        "interface": {"input": {"type": "object", "properties": {"text": {"type": "string"}}},
                      "output": {"type": "object"}},
        "deploy_setting": {"is_auto_deploy_enabled": False},
        "guardrails": {"type": "local_regex",
                       "input_guardrail": {"regex": ["forbidden.*"],
                                           "stop_words": [{"index_name": f"{u}-words", "source_fields": ["w"]}]},
                       "output_guardrail": {"regex": ["bad"]}}})
    p.models["disabled"] = _register_remote(ml, jan, {
        "name": f"{u}-disabled", "function_name": "remote", "model_group_id": g_remote,
        "connector_id": p.connectors[f"{u}-conn-plain"],
        "model_config": text_embedding_config(4, pooling_mode="mean", normalize_result=True),
        "guardrails": {"type": "model", "input_guardrail": {"model_id": p.models["full"], "response_filter": "$.ok",
                                                            "response_validation_regex": "^accept$"}}})
    ml.update_model(model_id=p.models["disabled"], body={"is_enabled": False, "deploy_setting": {"model_ttl_minutes": 5}})
    p.models["inline"] = _register_remote(ml, jan, {
        "name": f"{u}-inline", "function_name": "remote", "model_group_id": g_remote, "description": "inline",
        "connector": {"name": "inline-conn", "version": 3, "protocol": "http", "parameters": {"k": 1, "s": "x"},
                      "credential": {"key": "secret-five"}, "client_config": {"read_timeout": 5},
                      "actions": [{"action_type": "predict", "method": "post", "url": stub,
                                   "headers": {"k": "${credential.key}"}, "request_body": "{}"}]}})
    p.models["aws"] = _register_remote(ml, jan, {
        "name": f"{u}-aws", "function_name": "remote", "model_group_id": g_remote,
        "connector_id": p.connectors[f"{u}-conn-aws"], "interface": {"output": "not json"}})   # the node takes it
    for key in ("full", "inline"):
        ml.deploy_model(model_id=p.models[key])
        wait_for_model_state(os_client, p.models[key], "DEPLOYED")
        p.deployed.add(key)

    # URL models: three versions of one model (per-version description and format), one more model.
    all_config = json.dumps({"architectures": ["BertModel"], "hidden_size": 4, "ratio": 1.5}, indent=1)
    config = text_embedding_config(4, pooling_mode="mean_sqrt_len", normalize_result=True, all_config=all_config,
                                   model_max_length=128, query_prefix="q: ", passage_prefix="p: ")
    for n, kind in ((1, "torch"), (2, "torch"), (3, "onnx")):
        z = artifact_server.make_model_zip(kind, seed=f"{u}-{n}")
        extra = {"description": "second" if n == 2 else "the url model"}
        p.models[f"url{n}"] = _register_url(os_client, jan, url_model_body(
            f"{u}-url", z, kind=kind, group_id=g_local, model_config=config, **extra))
    z = artifact_server.make_model_zip("torch", seed=f"{u}-single")
    p.models["single"] = _register_url(os_client, jan, url_model_body(f"{u}-single", z, group_id=g_local))
    ml.update_model(model_id=p.models["single"], body={"is_enabled": False, "rate_limiter": {"limit": 2.5, "unit": "MINUTES"}})
    # a local file uploaded in chunks
    data = build_model_zip_bytes("onnx", seed=f"{u}-upload", payload_size=1500)
    chunks = split_chunks(data, 1000)
    meta = ml.register_model_meta(body={
        "name": f"{u}-uploaded", "version": "1", "model_group_id": g_local, "model_format": "ONNX",
        "model_content_hash_value": sha256_hex(data), "model_content_size_in_bytes": len(data),
        "total_chunks": len(chunks), "model_config": text_embedding_config(8, framework_type="huggingface_transformers")})
    p.models["uploaded"] = jan.model(meta["model_id"])
    for number, chunk in enumerate(chunks):
        ml.upload_chunk(model_id=p.models["uploaded"], chunk_number=number, body=chunk)
    wait_for_model_state(os_client, p.models["uploaded"], "REGISTERED")
    # a model in the group that is not exported, using the unused connector
    p.models["other"] = _register_remote(ml, jan, {
        "name": f"{u}-x", "function_name": "remote", "model_group_id": p.groups[f"{u}-other"],
        "connector_id": p.connectors[f"{u}-conn-unused"]})
    return p


def _export(opts, groups, stack, path) -> str:
    err = io.StringIO()
    assert app.export_(opts, io.StringIO(), groups=groups, stack=stack, output_file=str(path), err=err) == 0
    return err.getvalue()


def _credential_env(text: str) -> dict[str, str]:
    import re

    return {name: f"value-of-{name}" for name in re.findall(r"\$\{env:(MLSYNC_CRED_[A-Z0-9_]+)\}", text)}


def _plan(path, opts, state_file):
    cluster = Cluster.connect(opts)
    return workflow.plan_for(workflow.load_desired([str(path)]), cluster, FileStateStore(str(state_file)))


def test_export_round_trips_to_adopt_only_then_no_changes(populated, opts, tmp_path, monkeypatch):
    p, u = populated, populated.prefix
    path, state = tmp_path / "exported.yaml", tmp_path / "state.json"
    exported_groups = [f"{u}-remote", f"{u}-local"]
    messages = _export(opts, exported_groups, u, path)
    text = path.read_text()

    # the file: every exported object, none of the others, no secret
    for secret in ("secret-one", "secret-two", "secret-three", "secret-four", "secret-five", "AKIAEXAMPLE"):
        assert secret not in text and secret not in messages
    assert f"{u}-conn-unused" not in text and f"{u}-other" not in text and f"{u}-x" not in text
    doc = YAML(typ="safe").load(text)
    assert not schema_errors(doc)                      # valid before interpolation too
    assert doc["stack"] == u
    assert [c["name"] for c in doc["connectors"]] == sorted(f"{u}-conn-{n}" for n in ("typed", "plain", "aws"))
    typed = doc["connectors"][[c["name"] for c in doc["connectors"]].index(f"{u}-conn-typed")]
    assert typed["parameters"] == {"model": "m", "dims": 4, "ratio": 0.5, "flag": True, "obj": {"a": [1, 2]},
                                   "list": ["x", 1], "spaced": '{"a": 1}', "nul": "null", "zero": "007",
                                   "dollar": "$${env:NOT_MINE}"}
    assert typed["credential"] == {"api_key": f"${{env:MLSYNC_CRED_{u.upper().replace('-', '_')}_CONN_TYPED_API_KEY}}",
                                   "other": f"${{env:MLSYNC_CRED_{u.upper().replace('-', '_')}_CONN_TYPED_OTHER}}"}
    assert typed["actions"][1]["method"] == "GET" and typed["actions"][1]["post_process_function"] == PAINLESS
    assert "the server never returns credentials" in text
    models = {m["name"]: m for m in doc["models"]}
    assert [v["version"] for v in models[f"{u}-url"]["versions"]] == ["1", "2", "3"]
    assert models[f"{u}-full"]["deploy"] is True and models[f"{u}-aws"]["deploy"] is False
    assert models[f"{u}-disabled"]["is_enabled"] is False
    assert models[f"{u}-full"]["interface"]["input"]["properties"] == {"text": {"type": "string"}}
    assert "interface" not in models[f"{u}-aws"] and "interface.output is not JSON" in messages
    assert "registered from a URL the server does not keep" in text
    assert "uploaded from a local file whose bytes cannot be read back" in text

    # validates with the credential variables set, and says which one is missing without them
    with pytest.raises(ConfigError, match="MLSYNC_CRED_"):
        workflow.load_desired([str(path)])
    for name, value in _credential_env(text).items():
        monkeypatch.setenv(name, value)
    assert app.validate([str(path)], io.StringIO(), io.StringIO()) == 0

    # plan: adopt every created object, nothing else
    planned = _plan(path, opts, state)
    expected_ids = ({p.groups[g] for g in exported_groups}
                    | {p.connectors[f"{u}-conn-{n}"] for n in ("typed", "plain", "aws")}
                    | {mid for key, mid in p.models.items() if key != "other"})
    assert {c.server_id for c in planned.plan.changes} == expected_ids
    odd = [(str(c.address), [a.value for a in c.actions], c.reason, [(f.path, f.before, f.after) for f in c.field_changes])
           for c in planned.plan.changes if c.actions != (Action.ADOPT,) or c.field_changes]
    assert not odd, odd

    code = app.apply([str(path)], opts, io.StringIO(), auto_approve=True, state_file=str(state))
    assert code == 0
    again = _plan(path, opts, state)
    assert not again.plan.has_changes, [(str(c.address), c.actions, c.reason) for c in again.plan.pending]
    assert {c.server_id for c in again.plan.changes} == expected_ids


def test_export_is_deterministic_and_a_bad_group_writes_nothing(populated, opts, tmp_path):
    u = populated.prefix
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    _export(opts, [f"{u}-local"], None, a)
    _export(opts, [f"{u}-local"], None, b)
    strip = lambda t: "\n".join(line for line in t.splitlines() if not line.startswith("# Exported by"))  # noqa: E731
    assert strip(a.read_text()) == strip(b.read_text())
    assert YAML(typ="safe").load(a.read_text())["stack"] == f"{u}-local"   # one group: the stack is named after it
    before = a.read_text()
    with pytest.raises(MlsyncError, match=f"no model group named '{u}-nope'"):
        app.export_(opts, io.StringIO(), groups=[f"{u}-local", f"{u}-nope"], output_file=str(a), err=io.StringIO())
    assert a.read_text() == before


# --- import -------------------------------------------------------------------------------------

def _import(opts, address, object_id, state_file, stack="imp") -> str:
    out = io.StringIO()
    assert app.import_(address, object_id, opts, out, stack=stack, state_file=str(state_file)) == 0
    return out.getvalue()


def test_import_adopts_one_object_of_the_right_kind(populated, opts, tmp_path):
    p, u = populated, populated.prefix
    state = tmp_path / "state.json"
    cases = [
        (f'connector["{u}-conn-plain"]', p.connectors[f"{u}-conn-plain"]),
        (f'model_group["{u}-local"]', p.groups[f"{u}-local"]),
        (f'model["{u}-local"]["{u}-url"]["v2"]', p.models["url2"]),
        (f'model["{u}-remote"]["{u}-full"]', p.models["full"]),
    ]
    for address, object_id in cases:
        assert f"Imported {object_id}" in _import(opts, address, object_id, state)
    resources = FileStateStore(str(state)).load("imp").resources
    assert {a: r.id for a, r in resources.items()} == dict(cases)
    assert resources[f'model["{u}-local"]["{u}-url"]["v2"]'].server_version == "2"


@pytest.mark.parametrize("case, message", [
    ("connector id for a model", "is a connector"),
    ("model id for a connector", "is a model"),
    ("group id for a model", "is a model_group"),
    ("connector id for a group", "is a connector"),
    ("local version for a remote address", "is a version of a local model"),
    ("wrong name", "is named"),
    ("wrong group", "is not in group"),
    ("unknown id", "no model with id"),
])
def test_import_refuses_the_wrong_kind_and_changes_nothing(populated, opts, tmp_path, case, message):
    p, u = populated, populated.prefix
    address, object_id = {
        "connector id for a model": (f'model["{u}-remote"]["{u}-full"]', p.connectors[f"{u}-conn-typed"]),
        "model id for a connector": (f'connector["{u}-conn-typed"]', p.models["full"]),
        "group id for a model": (f'model["{u}-local"]["{u}-url"]["1"]', p.groups[f"{u}-local"]),
        "connector id for a group": (f'model_group["{u}-local"]', p.connectors[f"{u}-conn-plain"]),
        "local version for a remote address": (f'model["{u}-local"]["{u}-url"]', p.models["url1"]),
        "wrong name": (f'model["{u}-local"]["{u}-single"]["1"]', p.models["url1"]),
        "wrong group": (f'model["{u}-remote"]["{u}-url"]["1"]', p.models["url1"]),
        "unknown id": (f'model["{u}-local"]["{u}-url"]["1"]', "no-such-id"),
    }[case]
    state = tmp_path / "state.json"
    _import(opts, f'model_group["{u}-remote"]', p.groups[f"{u}-remote"], state)   # something already there
    before = state.read_bytes()
    with pytest.raises(MlsyncError, match=message):
        app.import_(address, object_id, opts, io.StringIO(), stack="imp", state_file=str(state))
    assert state.read_bytes() == before


def test_import_refuses_to_repoint_a_managed_address(populated, opts, tmp_path):
    p, u = populated, populated.prefix
    state = tmp_path / "state.json"
    _import(opts, f'model["{u}-local"]["{u}-url"]["a"]', p.models["url1"], state)
    before = state.read_bytes()
    with pytest.raises(MlsyncError, match="already manages"):
        app.import_(f'model["{u}-local"]["{u}-url"]["a"]', p.models["url2"], opts, io.StringIO(), stack="imp",
                    state_file=str(state))
    with pytest.raises(MlsyncError, match="already managed as"):
        app.import_(f'model["{u}-local"]["{u}-url"]["b"]', p.models["url1"], opts, io.StringIO(), stack="imp",
                    state_file=str(state))
    assert state.read_bytes() == before
