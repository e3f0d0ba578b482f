"""`mlsync.input.validator` and pydantic's own validation of the same classes agree (issue 12, goal 4).

mlsync validates with its own reading of the pydantic declarations (building pydantic's validators
cost ≈ 0.15 s of every start). Pydantic, built here on demand, is the oracle: for every example,
every bad input whose tree loads, and generated mutations of the examples, both must give the same
typed view (classes, values, which fields were set) or the same errors (type, location, input,
context), in the same order.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from pydantic import BaseModel, ValidationError

from mlsync.core.secrets import Secret
from mlsync.input import validator
from mlsync.input.loader import load_tree
from mlsync.input.model import ConnectorAction, Lifecycle, Model, ModelConfig, ModelGroup, StackFile

from .cases import CASES
from .conftest import example_id, example_sets, write_files
from .test_schema_agreement import mutated_trees


def shape(value: Any) -> Any:
    """A comparable picture of a typed view: class, set fields and values, recursively."""
    if isinstance(value, BaseModel):
        return (type(value).__name__, sorted(value.model_fields_set), value.__pydantic_private__,
                {k: shape(v) for k, v in value.__dict__.items()})
    if isinstance(value, Secret):
        return ("Secret", value.reveal())
    if isinstance(value, list):
        return [shape(v) for v in value]
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    return (type(value).__name__, value)


def error_shape(err: dict) -> tuple:
    ctx = {k: str(v) for k, v in (err.get("ctx") or {}).items()}
    return err["type"], tuple(err["loc"]), json.dumps(err["input"], default=repr, sort_keys=True), ctx


def by_pydantic(cls: type, tree: Any) -> tuple[Any, list]:
    try:
        return shape(cls.model_validate(tree, by_alias=True, by_name=False)), []
    except ValidationError as exc:
        return None, [error_shape(e) for e in exc.errors(include_url=False)]


def by_mlsync(cls: type, tree: Any) -> tuple[Any, list]:
    value, errors = validator.validate(cls, tree)
    return (shape(value) if value is not None else None), [error_shape(e) for e in errors]


def assert_agree(tree: Any, cls: type = StackFile) -> None:
    expected, got = by_pydantic(cls, tree), by_mlsync(cls, tree)
    assert got == expected, json.dumps(tree, default=str)[:2000]


@pytest.mark.parametrize("paths", example_sets(), ids=example_id)
def test_examples(paths: list[str]) -> None:
    tree = load_tree(paths, env={}).tree
    assert_agree(tree)
    assert validator.validate(StackFile, tree)[0] is not None


LOADABLE = [c for c in CASES if c.kind != "yaml"]


@pytest.mark.parametrize("case", LOADABLE, ids=[c.id for c in LOADABLE])
def test_bad_inputs(case, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_files(tmp_path, case.files)
    result = load_tree(case.args or list(case.files), env=case.env)
    assert_agree(result.tree)


@pytest.mark.parametrize("cls, tree", [
    (ModelConfig, {"embedding_dimension": 384.0, "all_config": {"a": [1, {"b": "é"}]}, "normalize_result": 1}),
    (ModelConfig, {"embedding_dimension": float("inf"), "model_max_length": 0, "query_prefix": 5}),
    (ModelConfig, {"embedding_dimension": 1e20, "model_max_length": -0.5, "pooling_mode": "MEAN_sqrt_LEN"}),
    (Model, {"name": "m", "connector": [1]}),
    (Model, {"name": "m", "connector": {"protocol": "http"}, "versions": [{"version": 1.10}, {"version": ""}]}),
    (Model, {"name": "m", "url": "u", "versions": [{"version": "a", "model_config": {"model_type": "bert"}}],
             "model_config": {"embedding_dimension": 3}, "access_mode": "Public"}),
    (ModelGroup, {"name": " ", "lifecycle": None}),
    (ModelGroup, {"name": "g", "lifecycle": {"prevent_destroy": "yes"}, "backend_roles": ["a", 1]}),
    (ConnectorAction, {"action_type": "PREDICT", "method": "post", "url": "", "headers": {"a": None}}),
    (Lifecycle, []),
    (StackFile, {"version": 1.0, "stack": "s", "zz": 1, "aa": {}}),
    (StackFile, {"version": True, "stack": None}),
    (StackFile, None),
])
def test_edges(cls: type, tree: Any) -> None:
    assert_agree(tree, cls)


@settings(max_examples=int(os.environ.get("MLSYNC_AGREEMENT_EXAMPLES", "400")), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated_trees())
def test_mutations(tree: Any) -> None:
    assert_agree(tree)


def test_defaults_are_not_built_by_pydantic() -> None:
    """The typed view comes without pydantic's validators: a fresh process validates the quickstart and
    never loads pydantic's plugin loader (what building a validator imports first)."""
    import subprocess
    import sys

    code = ("import sys; from mlsync.input import load; cfg = load(['examples/quickstart.yaml']);"
            "assert cfg.stack.models and cfg.stack.all_model_groups();"
            "print('pydantic.plugin._loader' in sys.modules, StackFileBuilt := "
            "type(cfg.stack).__pydantic_complete__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert out.stdout.split() == ["False", "False"], out
