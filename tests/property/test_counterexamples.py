"""Counterexamples the apply-then-plan-empty property found, pinned as plain tests (fake adapter).

Each was a real bug: a file the server mangles or refuses, or a plan that never converged. The
node facts behind them are in docs/ml-commons-notes.md ("Found by the property tests").
"""

from __future__ import annotations

import json
import os
import tempfile

import pytest

from fakes import FakeClock, FakeCluster
from mlsync.commands import common as workflow
from mlsync.core.errors import ConfigError
from mlsync.core.plan import Action
from mlsync.edge.statestore import ClusterStateStore

from .test_apply_then_plan_empty import converge, write

ACTION = {"action_type": "predict", "method": "POST", "url": "http://127.0.0.1:9/v1/x"}
SHA = "a" * 64


def stack(*models, connectors=(), groups=()) -> dict:
    return {"version": 1, "stack": "s", "connectors": list(connectors), "model_groups": list(groups),
            "models": list(models)}


def remote(name="r", connector=None, **fields) -> dict:
    conn = connector if connector is not None else {"version": 1, "protocol": "http", "credential": {"k": "v"},
                                                      "actions": [ACTION]}
    return {"name": name, "function_name": "remote", "connector": conn, **fields}


@pytest.fixture
def world():
    clock = FakeClock()
    fake = FakeCluster(clock, task_polls=1, deploy_polls=1)
    with tempfile.TemporaryDirectory() as tmp:
        yield tmp, fake, ClusterStateStore(fake, clock=clock.time), clock


def plan(tmp, tree, store, fake):
    return workflow.plan_for(workflow.load_desired([write(tmp, tree, "plan")]), fake, store)


def invalid(tmp, tree) -> str:
    with pytest.raises(ConfigError) as err:
        workflow.load_desired([write(tmp, tree, "bad")])
    return "\n".join(str(p) for p in err.value.problems)


def test_a_remote_model_config_needs_the_three_text_embedding_keys(world):
    tmp = world[0]
    text = invalid(tmp, stack(remote(model_config={"model_type": "bert"})))
    assert "models[0].model_config: model_config needs embedding_dimension, framework_type when it is given" in text


def test_is_enabled_false_is_refused_for_functions_update_model_cannot_change(world):
    tmp = world[0]
    model = {"name": "sp", "function_name": "sparse_encoding", "model_format": "TORCH_SCRIPT", "is_enabled": False,
             "versions": [{"version": "1", "url": "http://127.0.0.1:9/a.zip", "model_content_hash_value": SHA}]}
    assert "models[0].is_enabled: is_enabled: false cannot be kept for function_name SPARSE_ENCODING" in invalid(
        tmp, stack(model))


def test_an_inline_connector_needs_a_predict_action(world):
    tmp = world[0]
    conn = {"version": 1, "protocol": "http", "credential": {"k": "v"}, "actions": [{**ACTION, "action_type": "execute"}]}
    assert "models[0].connector.actions: an inline connector needs a predict action" in invalid(
        tmp, stack(remote(connector=conn)))


def test_inline_connector_without_parameters_that_gains_some_is_replaced_not_updated(world):
    tmp, fake, store, clock = world
    converge(write(tmp, stack(remote()), "a"), fake, store, clock)
    conn = {"version": 1, "protocol": "http", "credential": {"k": "v"}, "actions": [ACTION], "parameters": {"m": 1}}
    change = plan(tmp, stack(remote(connector=conn)), store, fake).plan.pending[0]
    assert Action.REPLACE in change.actions      # Update Model would answer 500 (NullPointerException)
    converge(write(tmp, stack(remote(connector=conn)), "b"), fake, store, clock)


def test_inline_connector_fields_left_out_of_the_file_are_not_managed(world):
    tmp, fake, store, clock = world
    full = {"name": "i", "description": "d", "version": 2, "protocol": "http", "credential": {"k": "v"},
            "actions": [ACTION], "parameters": {"a": "1", "b": {"y": 1, "x": [None]}},
            "client_config": {"max_connection": 5}}
    converge(write(tmp, stack(remote(connector=full)), "a"), fake, store, clock)
    slim = {k: v for k, v in full.items() if k not in ("name", "description", "version", "client_config")}
    slim["parameters"] = {"a": "1"}
    planned = plan(tmp, stack(remote(connector={**slim, "version": 2})), store, fake)
    assert not planned.plan.has_changes
    assert any("inline connector parameters b are on the server" in w for w in planned.plan.warnings)


def test_model_config_of_a_remote_model_is_updated_in_place(world):
    tmp, fake, store, clock = world
    mc = {"model_type": "bert", "embedding_dimension": 3, "framework_type": "sentence_transformers"}
    converge(write(tmp, stack(remote(model_config=mc)), "a"), fake, store, clock)
    converge(write(tmp, stack(remote(model_config={**mc, "embedding_dimension": 4})), "b"), fake, store, clock)
    assert next(iter(fake.models.values()))["model_config"]["embedding_dimension"] == 4


def test_connector_update_while_a_deployed_model_using_it_moves_to_another_group(world):
    tmp, fake, store, clock = world
    conn = {"name": "c", "protocol": "http", "credential": {"k": "v"}, "actions": [ACTION]}
    groups = [{"name": "g1"}, {"name": "g2"}]
    converge(write(tmp, stack(remote(connector="c", model_group="g1", deploy=True), connectors=[conn], groups=groups),
                   "a"), fake, store, clock)
    moved = stack(remote(connector="c", model_group="g2", deploy=True), connectors=[{**conn, "description": "new"}],
                  groups=groups)
    converge(write(tmp, moved, "b"), fake, store, clock)
    assert fake.index("undeploy_model") < fake.index("update_connector")


def test_connector_update_while_a_deployed_model_using_it_is_replaced(world):
    tmp, fake, store, clock = world
    conn = {"name": "c", "protocol": "http", "credential": {"k": "v"}, "actions": [ACTION]}
    converge(write(tmp, stack(remote(connector="c", deploy=True), connectors=[conn]), "a"), fake, store, clock)
    inline = {"version": 1, "protocol": "http", "credential": {"k": "v"}, "actions": [ACTION]}
    converge(write(tmp, stack(remote(connector=inline, deploy=True), connectors=[{**conn, "description": "new"}]),
                   "b"), fake, store, clock)
    assert fake.index("undeploy_model") < fake.index("update_connector")
