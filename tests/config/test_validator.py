"""`mlsync.input.validator` and the records of `mlsync.input.declare` (issue 12, goal 4).

mlsync validated with pydantic until importing it cost more than the rest of `mlsync validate`.
The errors below are what pydantic 2.14 reported for these trees with the former pydantic
declarations (recorded 2026-12-02, when the two were also compared on every example, every bad
input and 3,000 generated mutations: same values, same errors in the same order); `diagnostics`
words errors of this shape. `test_schema_agreement.py` keeps the validator and the JSON Schema
accepting the same documents.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from mlsync.core.secrets import Secret
from mlsync.input import validator
from mlsync.input.declare import Field, Record, RecordError
from mlsync.input.model import ConnectorAction, Lifecycle, Model, ModelConfig, ModelGroup, StackFile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PIPELINE_ID = ("invalid pipeline id 'A': lower-case letters, digits, '.', '_' and '-', starting with a letter or digit "
               "(the server reads '*' and ',' in ids as patterns)")
PROCESSOR = "a processor is a mapping with exactly one key, its type (e.g. `ml_inference: {...}`)"

# (class, tree, [(type, loc, ctx as strings)]) as pydantic reported them
GOLDEN = [
    (ModelConfig, {"embedding_dimension": 384.0, "all_config": {"a": [1, {"b": "é"}]}, "normalize_result": 1},
     [("bool_type", ("normalize_result",), {})]),
    (ModelConfig, {"embedding_dimension": float("inf"), "model_max_length": 0, "query_prefix": 5},
     [("finite_number", ("embedding_dimension",), {}), ("greater_than", ("model_max_length",), {"gt": "0"}),
      ("string_type", ("query_prefix",), {})]),
    (ModelConfig, {"embedding_dimension": 1e20, "model_max_length": -0.5, "pooling_mode": "MEAN_sqrt_LEN"},
     [("int_parsing_size", ("embedding_dimension",), {}), ("int_from_float", ("model_max_length",), {})]),
    (Model, {"name": "m", "connector": [1]},
     [("value_error", ("connector", "name"), {"error": "must be a string"})]),
    (Model, {"name": "m", "connector": {"protocol": "http"}, "versions": [{"version": 1.10}, {"version": ""}]},
     [("missing", ("connector", "inline", "credential"), {}), ("missing", ("connector", "inline", "actions"), {}),
      ("string_too_short", ("versions", 1, "version"), {"min_length": "1"})]),
    (ModelGroup, {"name": " ", "lifecycle": None},
     [("value_error", ("name",), {"error": "must not be empty"}),
      ("model_type", ("lifecycle",), {"class_name": "Lifecycle"})]),
    (ModelGroup, {"name": "g", "lifecycle": {"prevent_destroy": "yes"}, "backend_roles": ["a", 1]},
     [("string_type", ("backend_roles", 1), {}), ("bool_type", ("lifecycle", "prevent_destroy"), {})]),
    (ConnectorAction, {"action_type": "PREDICT", "method": "post", "url": "", "headers": {"a": None}},
     [("string_too_short", ("url",), {"min_length": "1"}), ("string_type", ("headers", "a"), {})]),
    (Lifecycle, [], [("model_type", (), {"class_name": "Lifecycle"})]),
    (StackFile, {"version": 1.0, "stack": "s", "zz": 1, "aa": {}},
     [("extra_forbidden", ("zz",), {}), ("extra_forbidden", ("aa",), {})]),
    (StackFile, {"version": True, "stack": None},
     [("value_error", ("version",), {"error": "unsupported format version true (allowed: 1)"}),
      ("value_error", ("stack",), {"error": "must be a string"})]),
    (StackFile, None, [("model_type", (), {"class_name": "StackFile"})]),
    (StackFile, {"version": 1, "stack": "s", "ingest_pipelines": [{"id": "A", "processors": [{}], "on_failure": []}],
                 "agents": [{"name": "a", "type": "FLOW", "tools": [{"type": "T", "parameters": {"x": 1}}],
                             "memory": {"type": "m", "window_size": 0}}]},
     [("value_error", ("ingest_pipelines", 0, "id"), {"error": PIPELINE_ID}),
      ("value_error", ("ingest_pipelines", 0, "processors", 0), {"error": PROCESSOR}),
      ("too_short", ("ingest_pipelines", 0, "on_failure"), {"field_type": "List", "min_length": "1", "actual_length": "0"}),
      ("greater_than", ("agents", 0, "memory", "window_size"), {"gt": "0"})]),
]


@pytest.mark.parametrize("cls, tree, expected", GOLDEN, ids=[f"{c.__name__}-{i}" for i, (c, _, _) in enumerate(GOLDEN)])
def test_errors_as_pydantic_reported_them(cls: type, tree: Any, expected: list) -> None:
    value, errors = validator.validate(cls, tree)
    assert value is None
    assert [(e["type"], tuple(e["loc"]), {k: str(v) for k, v in (e.get("ctx") or {}).items()}) for e in errors] == expected


def test_values_defaults_and_fields_set() -> None:
    config, _ = validator.validate(ModelConfig, {"embedding_dimension": 384.0, "all_config": {"a": [1, {"b": "é"}]}})
    assert config.embedding_dimension == 384 and type(config.embedding_dimension) is int
    assert config.all_config == '{"a":[1,{"b":"é"}]}'
    assert config.model_fields_set == {"embedding_dimension", "all_config"} and config.pooling_mode is None

    model, errors = validator.validate(Model, {
        "name": "m", "url": "u", "access_mode": "Public", "model_config": {"embedding_dimension": 3},
        "versions": [{"version": 1.10, "model_config": {"model_type": "bert"}}, {"version": "b", "url": "v"}]})
    assert errors == []
    assert model.function_name == "TEXT_EMBEDDING" and model.access_mode == "public"
    first, second = model.versions
    assert first.version == "1.1" and first.url == "u" and second.url == "v"   # the model's default, its own value
    assert (first.model_config_.model_type, first.model_config_.embedding_dimension) == ("bert", 3)   # merged
    assert "url" in first.model_fields_set and "model_config_" in first.model_fields_set
    assert model.lifecycle is None and first.lifecycle is None

    group, _ = validator.validate(ModelGroup, {"name": "g"})
    assert group.lifecycle == Lifecycle() and group.lifecycle.prevent_destroy is False and not group.implicit

    stack, _ = validator.validate(StackFile, {"version": 1, "stack": "s", "connectors": [{
        "name": "c", "protocol": "HTTP", "credential": {"k": "v"},
        "actions": [{"action_type": "predict", "method": "post", "url": "http://x"}]}], "models": [{"name": "solo"}]})
    assert stack.version == 1 and stack.agents == [] and stack.connectors[0].version == "1"
    assert isinstance(stack.connectors[0].credential["k"], Secret) and stack.connectors[0].protocol == "http"
    (implicit,) = [g for g in stack.all_model_groups() if g.implicit]
    assert implicit.name == "solo"


def test_records_are_frozen_and_built_like_pydantic_classes() -> None:
    group = ModelGroup(name="g", backend_roles=["a"])
    with pytest.raises(AttributeError):
        group.name = "h"   # type: ignore[misc]
    group._implicit_for = "m"   # a private attribute may be set
    assert group.implicit and group == ModelGroup(name="g", backend_roles=["a"])
    assert ModelGroup(name="g") != ModelGroup(name="h")
    assert "backend_roles=['a']" in repr(group)
    assert Model(name="m", model_config={"embedding_dimension": 2}).model_config_.embedding_dimension == 2   # by key
    assert Model(name="m", model_config_={"embedding_dimension": 2}).model_config_.embedding_dimension == 2  # by name
    with pytest.raises(RecordError) as err:
        StackFile.model_validate({"version": 1, "stack": "s", "zz": 1})
    assert err.value.errors()[0]["type"] == "extra_forbidden"
    copied = group.model_copy(update={"description": "d"})
    assert copied.description == "d" and "description" in copied.model_fields_set and group.description is None
    assert group.model_dump()["backend_roles"] == ["a"]


def test_an_unknown_kind_of_field_fails_when_compiled() -> None:
    # (this module's annotations are strings: the class is made with its annotations as objects)
    Odd = type("Odd", (Record,), {"__annotations__": {"ratio": float},
                                  "ratio": Field(1.0, description="no float check exists")})

    with pytest.raises(NotImplementedError, match="float"):
        validator.validate(Odd, {"ratio": 0.5})

    with pytest.raises(TypeError, match="from __future__ import annotations"):
        class Stringly(Record):
            __annotations__ = {"name": "str"}


def test_validate_starts_without_pydantic() -> None:
    """The typed view needs no pydantic: a fresh process validates the quickstart without importing it."""
    code = ("import sys; from mlsync.input import load; cfg = load(['examples/quickstart.yaml']);"
            "assert cfg.stack.models and cfg.stack.all_model_groups(); print('pydantic' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "False", out


def test_optional_fields_take_null_or_their_type() -> None:
    assert validator.validate(ModelGroup, {"name": "g", "description": None})[0].description is None
    assert validator.validate(ModelGroup, {"name": "g", "description": 3})[1][0]["type"] == "string_type"
