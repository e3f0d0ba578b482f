"""The JSON Schema and the validator (mlsync.input.validator) accept and reject the same documents (issue 3).

Checked on every example, every bad-input case whose tree loads, and on generated mutations of the
examples (hypothesis). Also: the committed schema file is the generated one, and it describes
every field (editors show the description on hover).
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlsync.input import schema as schema_mod
from mlsync.input import validator
from mlsync.input.loader import load_tree
from mlsync.input.model import StackFile

from .cases import CASES, Case
from .conftest import REPO_ROOT, example_id, example_sets, write_files


def model_accepts(tree: Any) -> bool:
    return validator.validate(StackFile, tree)[0] is not None


def schema_accepts(tree: Any) -> bool:
    return schema_mod.is_valid(tree)


# --- the schema file ---------------------------------------------------------------------------------


def test_committed_schema_is_the_generated_one() -> None:
    committed = (REPO_ROOT / "schemas" / "mlsync.schema.json").read_text(encoding="utf-8")
    assert committed == schema_mod.schema_text(), (
        "schemas/mlsync.schema.json is stale: run `mlsync schema > schemas/mlsync.schema.json`")


def test_schema_is_draft_2020_12_and_valid() -> None:
    import jsonschema

    schema = schema_mod.generate()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def _objects(schema: dict) -> list[tuple[str, dict]]:
    out = [("(root)", schema)]
    out += [(name, d) for name, d in schema.get("$defs", {}).items()]
    return out


def test_every_field_is_described_and_every_mapping_closed() -> None:
    schema = schema_mod.generate()
    for name, obj in _objects(schema):
        assert obj.get("additionalProperties") is False, f"{name} must reject unknown keys"
        assert obj.get("description"), f"{name} has no description"
        for prop, spec in obj["properties"].items():
            assert spec.get("description"), f"{name}.{prop} has no description"


def _enums(node: Any) -> list[list]:
    if isinstance(node, dict):
        found = [node["enum"]] if "enum" in node else []
        return found + [e for v in node.values() for e in _enums(v)]
    if isinstance(node, list):
        return [e for v in node for e in _enums(v)]
    return []


def test_enums_are_listed() -> None:
    enums = _enums(schema_mod.generate())
    for values in (["TEXT_EMBEDDING", "SPARSE_ENCODING", "SPARSE_TOKENIZE", "TEXT_SIMILARITY",
                    "QUESTION_ANSWERING", "REMOTE"], ["TORCH_SCRIPT", "ONNX"], ["http", "aws_sigv4"],
                   ["public", "private", "restricted"],
                   ["sentence_transformers", "huggingface_transformers", "huggingface_transformers_neuron"],
                   ["mean", "mean_sqrt_len", "max", "weightedmean", "cls", "lasttoken"],
                   ["predict", "execute", "batch_predict", "cancel_batch_predict", "batch_predict_status"],
                   ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"],
                   ["NANOSECONDS", "MICROSECONDS", "MILLISECONDS", "SECONDS", "MINUTES", "HOURS", "DAYS"],
                   ["constant", "exponential_equal_jitter", "exponential_full_jitter"], ["local_regex", "model"]):
        assert values in enums, values


def test_enums_accept_any_letter_case_in_both() -> None:
    tree = {"version": 1, "stack": "s", "model_groups": [{"name": "g", "access_mode": "PrIvAtE"}]}
    assert schema_accepts(tree) and model_accepts(tree)
    tree["model_groups"][0]["access_mode"] = "private\n"
    assert not schema_accepts(tree) and not model_accepts(tree)


# --- agreement ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("paths", example_sets(), ids=example_id)
def test_examples_pass_schema_and_model(paths: list[str]) -> None:
    result = load_tree(paths, env={})
    assert not result.problems, result.problems
    assert schema_accepts(result.tree), [e.message for e in schema_mod.schema_errors(result.tree)]
    assert model_accepts(result.tree)


LOADABLE = [c for c in CASES if c.kind != "yaml"]


@pytest.mark.parametrize("case", LOADABLE, ids=[c.id for c in LOADABLE])
def test_schema_and_model_agree_on_bad_input(case: Case, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_files(tmp_path, case.files)
    result = load_tree(case.args or list(case.files), env=case.env)
    assert not result.fatal and result.tree is not None
    by_schema, by_model = schema_accepts(result.tree), model_accepts(result.tree)
    assert by_schema == by_model, (
        f"{case.id}: schema {'accepts' if by_schema else 'rejects'}, model {'accepts' if by_model else 'rejects'}")
    if case.kind == "schema":
        assert not by_model, f"{case.id}: a schema case must be rejected by schema and model"
    if case.kind == "semantic":
        assert by_model, f"{case.id}: a semantic case must pass schema and model"


# --- generated mutations -------------------------------------------------------------------------------

_EXAMPLE_TREES = [load_tree(paths, env={}).tree for paths in example_sets()]


def _property_names() -> list[str]:
    names = set()
    for _, obj in _objects(schema_mod.generate()):
        names.update(obj["properties"])
    return sorted(names)


_KEYS = _property_names()
_STRINGS = ["", " ", "x", "1", "0", "-1", "1.5", "01", "1e3", "http://h/", "a" * 64, "A" * 64, "g" * 64,
            "remote", "REMOTE", "Remote", "torch_script", "onnx", "sentence_transformers", "MEAN", "Minutes",
            "http", "AWS_SIGV4", "predict", "post", "constant", "local_regex", "private", "{}", "{\"a\": 1}",
            "MINUTES\n", "  name  ", "ſparse_encoding"]

_scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-3, max_value=400), st.integers(),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from([0.0, 1.0, 384.0, 384.5, -1.0, 1e20]),
    st.sampled_from(_STRINGS), st.text(max_size=6),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=4), inner, max_size=3),
    ),
    max_leaves=6,
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, prefix + (i,))
    return out


def _get(node: Any, path: tuple) -> Any:
    for part in path:
        node = node[part]
    return node


@st.composite
def mutated_trees(draw: Any) -> Any:
    tree = copy.deepcopy(draw(st.sampled_from(_EXAMPLE_TREES)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = _paths(tree)
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if not path:
            if action == "add":
                tree[draw(st.sampled_from(_KEYS))] = draw(_values)
            continue
        parent = _get(tree, path[:-1])
        if action == "replace":
            parent[path[-1]] = draw(_values)
        elif action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == "add":
            target = _get(tree, path)
            if isinstance(target, dict):
                target[draw(st.sampled_from(_KEYS) | st.text(max_size=4))] = draw(_values)
            elif isinstance(target, list):
                target.append(draw(_values))
    return tree


@settings(max_examples=int(os.environ.get("MLSYNC_AGREEMENT_EXAMPLES", "400")), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated_trees())
def test_schema_and_model_agree_on_mutations(tree: Any) -> None:
    assert schema_accepts(tree) == model_accepts(tree), json.dumps(tree, default=str)[:2000]
