"""The field-rules table (mlsync/field_rules.py) covers every field mlsync compares, drives the
planner's and the request builder's field lists, and is what docs/field-rules.md shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlsync.core import field_rules

from mlsync.core import normalize
from mlsync.core.field_rules import Rule
from mlsync.commands.common import load_desired

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = [["quickstart.yaml"], ["url-model.yaml"], ["local-model.yaml"], ["access-control.yaml"],
            ["overlay/base.yaml", "overlay/prod.yaml"], ["semantic-search.yaml"]]
COMPARED = {Rule.IDENTITY, Rule.UPDATE, Rule.REPLACE}

# A server document of each kind with every field the reference lists (§1.2, §2.5, §4.2).
SERVER_DOCS = {
    "connector": {"name": "c", "version": "1", "description": "d", "protocol": "http", "parameters": {"a": "1"},
                  "actions": [{"action_type": "PREDICT", "method": "POST", "url": "http://x"}],
                  "client_config": {"max_connection": 5}, "access": "private", "backend_roles": ["r"],
                  "owner": {"name": "u"}, "created_time": 1, "last_updated_time": 2},
    "model_group": {"name": "g", "description": "d", "access": "restricted", "backend_roles": ["r"],
                    "latest_version": 3, "owner": {"name": "u"}, "created_time": 1, "last_updated_time": 2},
    "model": {"name": "m", "description": "d", "algorithm": "TEXT_EMBEDDING", "model_version": "2",
              "model_format": "ONNX", "model_state": "DEPLOYED", "model_group_id": "G",
              "model_config": {"model_type": "bert", "embedding_dimension": 3, "framework_type": "SENTENCE_TRANSFORMERS"},
              "model_content_hash_value": "a" * 64, "model_content_size_in_bytes": 10, "total_chunks": 1,
              "is_enabled": True, "rate_limiter": {"limit": "5", "unit": "SECONDS"},
              "interface": {"input": "{}", "output": "{}"}, "deploy_setting": {"is_auto_deploy_enabled": False},
              "guardrails": {"type": "local_regex"}, "created_time": 1, "last_updated_time": 2,
              "last_registered_time": 1, "last_deployed_time": 2, "planning_worker_node_count": 1,
              "current_worker_node_count": 1},
    # model-consumers.md §1.3, §2, §4.3 (a pipeline's id is the GET response's key, not in the body)
    "ingest_pipeline": {"description": "d", "version": 3, "processors": [{"set": {"field": "a", "value": 1}}],
                        "on_failure": [{"set": {"field": "e", "value": "x"}}]},
    "search_pipeline": {"description": "d", "version": 1, "request_processors": [{"filter_query": {}}],
                        "response_processors": [{"truncate_hits": {}}], "phase_results_processors": []},
    "agent": {"name": "a", "type": "flow", "description": "d", "llm": {"model_id": "M", "parameters": {"x": "1"}},
              "tools": [{"type": "MLModelTool", "parameters": {"model_id": "M"}, "include_output_in_agent_response": False}],
              "parameters": {"p": "1"}, "memory": {"type": "conversation_index"}, "app_type": "rag",
              "created_time": 1, "last_updated_time": 2, "is_hidden": False, "tenant_id": "t"},
}


def _server_form(kind: str) -> dict:
    doc = SERVER_DOCS[kind]
    if kind == "connector":
        return normalize.connector_form(doc, access_control=True)
    if kind == "model_group":
        return normalize.group_form(doc, access_control=True)
    if kind in ("ingest_pipeline", "search_pipeline", "agent"):
        return normalize.consumer_form(kind, doc)
    return normalize.model_form(doc)


@pytest.mark.parametrize("files", EXAMPLES, ids=lambda f: f[-1])
def test_every_field_the_examples_compare_has_a_rule(files, monkeypatch):
    monkeypatch.setenv("EMBEDDINGS_API_KEY", "k")
    desired = load_desired([str(ROOT / "examples" / f) for f in files])
    for res in desired.resources.values():
        for key in res.form:
            assert field_rules.rule_of(res.address.kind, key) in COMPARED, (res.address, key)


@pytest.mark.parametrize("kind", field_rules.KINDS)
def test_every_field_of_a_full_server_document_is_compared_or_server_managed(kind):
    form = _server_form(kind)
    for key in form:
        assert field_rules.rule_of(kind, key) in COMPARED, key
    # renamed into access_mode / function_name; an empty list the server keeps as sent
    dropped = set(SERVER_DOCS[kind]) - set(form) - {"access", "algorithm", "phase_results_processors"}
    for key in dropped:
        assert field_rules.rule_of(kind, key) is Rule.SERVER, key


def test_an_unknown_field_has_no_rule():
    with pytest.raises(KeyError, match="no rule"):
        field_rules.rule_of("model", "brand_new_field")


def test_the_planner_and_request_builder_read_their_lists_from_the_table():
    assert normalize.MODEL_REPLACE_FIELDS == ("function_name", "model_format", "model_content_hash_value")
    assert set(normalize.MODEL_UPDATABLE) == {f.name for f in field_rules.TABLE["model"] if f.rule is Rule.UPDATE}
    assert set(normalize.MODEL_FIXUP_FIELDS) <= set(normalize.MODEL_UPDATABLE)
    assert "credential" not in normalize.CONNECTOR_UPDATABLE
    assert field_rules.rule_of("connector", "credential") is Rule.WRITE_ONLY


def test_docs_show_exactly_this_table():
    doc = (ROOT / "docs" / "field-rules.md").read_text()
    assert field_rules.markdown() in doc, "docs/field-rules.md is out of date: paste field_rules.markdown() into it"
