"""The loader: YAML 1.2 scalars, positions, anchors, directories, the typed view it hands over."""

from __future__ import annotations

import json
import os

import pytest

from mlsync.input import load
from mlsync.input.loader import load_tree
from mlsync.core.errors import ConfigError
from mlsync.core.secrets import Secret

from .cases import HASH, y

CONNECTOR = y(
    "version: 1",
    "stack: s",
    "connectors:",
    "  - name: api",                                   # 4
    "    version: 1",
    "    protocol: HTTP",
    "    credential:",
    "      api_key: top-secret",                       # 8
    "    actions:",
    "      - action_type: PREDICT",                    # 10
    "        method: post",
    "        url: http://127.0.0.1:8089/v1/e",
)


def test_positions_of_keys_and_items(load_files) -> None:
    cfg = load_files({"stack.yaml": CONNECTOR})
    assert cfg.locate(("connectors",)) == ("stack.yaml", 3, 1)
    assert cfg.locate(("connectors", 0)) == ("stack.yaml", 4, 5)
    assert cfg.locate(("connectors", 0, "credential", "api_key")) == ("stack.yaml", 8, 7)
    assert cfg.locate(("connectors", 0, "actions", 0, "method")) == ("stack.yaml", 11, 9)
    # a path that is not in the file (a default) points at its nearest written ancestor
    assert cfg.locate(("connectors", 0, "lifecycle", "prevent_destroy")) == ("stack.yaml", 4, 5)
    assert cfg.locate(()) == ("stack.yaml", 1, 1)


def test_enums_are_normalised_and_versions_are_strings(load_files) -> None:
    conn = load_files({"stack.yaml": CONNECTOR}).stack.connectors[0]
    assert (conn.protocol, conn.actions[0].action_type, conn.actions[0].method) == ("http", "predict", "POST")
    assert conn.version == "1"


def test_secrets_mask_themselves(load_files) -> None:
    cfg = load_files({"stack.yaml": CONNECTOR})
    secret = cfg.stack.connectors[0].credential["api_key"]
    assert isinstance(secret, Secret) and secret.reveal() == "top-secret"
    for text in (repr(cfg), repr(cfg.stack), str(cfg.stack), repr(cfg.stack.connectors[0]),
                 json.dumps(cfg.stack.model_dump())):
        assert "top-secret" not in text


def test_yaml_1_2_scalars(load_files) -> None:
    text = y("version: 1", "stack: s", "model_groups:", "  - name: yes", "    description: 2024-01-01",
             "  - name: 'on'", "    description: ~")
    groups = load_files({"stack.yaml": text}).stack.model_groups
    assert [g.name for g in groups] == ["yes", "on"]           # YAML 1.2: not booleans
    assert groups[0].description == "2024-01-01"               # not a date
    assert groups[1].description is None


@pytest.mark.parametrize("label, expected", [("1.10", "1.10"), ("1.0", "1.0"), ("'1.10'", "1.10"), ("2", "2"),
                                             ("0o17", "0o17"), ("1e3", "1e3"), ("v1", "v1")])
def test_version_labels_keep_their_source_text(load_files, label: str, expected: str) -> None:
    text = y("version: 1", "stack: s", "model_groups: [{name: g}]", "models:", "  - name: m", "    model_group: g",
             "    model_format: ONNX",
             "    model_config: {model_type: bert, embedding_dimension: 4, framework_type: sentence_transformers}",
             "    versions:", f"      - version: {label}", "        url: http://h/m.zip",
             f"        model_content_hash_value: {HASH.upper()}")
    version = load_files({"stack.yaml": text}).stack.models[0].versions[0]
    assert version.version == expected
    assert version.model_content_hash_value == HASH                 # normalised to lower case


def test_all_duplicate_keys_are_reported(problems_of) -> None:
    problems = problems_of({"stack.yaml": y("version: 1", "stack: s", "version: 1", "models: []", "stack: t")})
    assert [(p.line, p.message.split(" (")[0]) for p in problems] == [
        (3, "duplicate key 'version'"), (5, "duplicate key 'stack'")]


def test_anchors_aliases_and_merge_keys(load_files) -> None:
    text = y(
        "version: 1",
        "stack: s",
        "model_groups:",
        "  - &group {name: a, description: shared, access_mode: private}",
        "  - <<: *group",
        "    name: b",
        "  - {<<: *group, name: c, description: own}",
    )
    groups = load_files({"stack.yaml": text}).stack.model_groups
    assert [(g.name, g.description, g.access_mode) for g in groups] == [
        ("a", "shared", "private"), ("b", "shared", "private"), ("c", "own", "private")]


def test_empty_file_is_an_empty_overlay(load_files) -> None:
    cfg = load_files({"a.yaml": y("version: 1", "stack: s"), "b.yaml": "# nothing here\n"})
    assert cfg.stack.stack == "s" and len(cfg.sources) == 2


def test_a_stack_with_no_resources_is_valid(load_files) -> None:
    stack = load_files({"stack.yaml": y("version: 1", "stack: empty")}).stack
    assert (stack.connectors, stack.model_groups, stack.models) == ([], [], [])


def test_names_may_hold_spaces_colons_and_slashes(load_files) -> None:
    text = y("version: 1", "stack: 'team/search: prod'", "model_groups:", "  - name: 'a b: c/d'")
    assert load_files({"stack.yaml": text}).stack.model_groups[0].name == "a b: c/d"


def test_directory_means_its_yaml_files_in_name_order(in_tmp) -> None:
    os.makedirs("conf")
    with open("conf/b.yml", "w") as fh:
        fh.write(y("stack: from-b"))
    with open("conf/a.yaml", "w") as fh:
        fh.write(y("version: 1", "stack: from-a"))
    with open("conf/notes.txt", "w") as fh:
        fh.write("not yaml")
    cfg = load(["conf"], env={})
    assert cfg.stack.stack == "from-b"
    assert [os.path.basename(s) for s in cfg.sources] == ["a.yaml", "b.yml"]
    assert all(os.path.isabs(s) for s in cfg.sources)


def test_local_path_is_relative_to_the_file_that_says_it(in_tmp) -> None:
    os.makedirs("env/models")
    with open("env/models/m.zip", "wb") as fh:
        fh.write(b"zip")
    with open("base.yaml", "w") as fh:
        fh.write(y("version: 1", "stack: s", "models:", "  - name: m", "    model_format: ONNX",
                   "    model_config: {model_type: bert, embedding_dimension: 4, framework_type: sentence_transformers}",
                   "    versions:", "      - {version: '1', url: 'http://h/m.zip', model_content_hash_value: " + HASH + "}"))
    with open("env/prod.yaml", "w") as fh:
        fh.write(y("models:", "  - name: m", "    versions:", "      - {version: '2', path: models/m.zip}"))
    cfg = load(["base.yaml", "env/prod.yaml"], env={})
    assert cfg.stack.models[0].versions[1].path == os.path.join(str(in_tmp), "env", "models", "m.zip")


def test_version_defaults_and_implicit_groups(load_files) -> None:
    text = y(
        "version: 1",
        "stack: s",
        "models:",
        "  - name: m",
        "    access_mode: private",
        "    model_format: TORCH_SCRIPT",
        "    deploy: true",
        "    lifecycle: {prevent_destroy: true}",
        "    model_config: {model_type: bert, embedding_dimension: 4, framework_type: sentence_transformers,",
        "                   pooling_mode: mean}",
        "    versions:",
        f"      - {{version: '1', url: 'http://h/1.zip', model_content_hash_value: {HASH}}}",
        f"      - {{version: '2', url: 'http://h/2.zip', model_content_hash_value: {HASH}, deploy: false,",
        "          model_config: {embedding_dimension: 8}}",
    )
    stack = load_files({"stack.yaml": text}).stack
    model = stack.models[0]
    first, second = model.versions
    assert (first.deploy, second.deploy) == (True, False)
    assert first.model_format == second.model_format == "TORCH_SCRIPT"
    assert first.model_config_.embedding_dimension == 4
    assert second.model_config_.embedding_dimension == 8               # override, key by key
    assert second.model_config_.pooling_mode == "mean"                 # the rest from the model
    assert model.group_name == "m" and model.model_group is None
    (group,) = stack.all_model_groups()
    assert (group.name, group.access_mode, group.implicit, group.lifecycle.prevent_destroy) == ("m", "private", True, True)


def test_all_config_mapping_is_minified(load_files) -> None:
    text = y("version: 1", "stack: s", "models:", "  - name: m", "    model_format: ONNX",
             "    model_config:", "      model_type: bert", "      embedding_dimension: 4",
             "      framework_type: sentence_transformers",
             "      all_config: {architectures: [BertModel], hidden_size: 4, name: \"é\"}",
             "    versions:", f"      - {{version: '1', url: 'http://h/1.zip', model_content_hash_value: {HASH}}}")
    config = load_files({"stack.yaml": text}).stack.models[0].versions[0].model_config_
    assert config.all_config == '{"architectures":["BertModel"],"hidden_size":4,"name":"é"}'


def test_load_tree_does_not_validate(in_tmp) -> None:
    with open("partial.yaml", "w") as fh:
        fh.write(y("models:", "  - name: m"))
    result = load_tree(["partial.yaml"], env={})
    assert result.problems == [] and result.tree == {"models": [{"name": "m"}]}
    with pytest.raises(ConfigError):
        load(["partial.yaml"], env={})


def test_config_error_carries_every_problem(problems_of) -> None:
    problems = problems_of({"a.yaml": y("version: 1", "stack: s", "bogus: 1"),
                            "b.yaml": y("models: [{name: m, function_name: nope}]")})
    assert {p.file for p in problems} == {"a.yaml", "b.yaml"}


def test_only_version_labels_keep_source_text(load_files) -> None:
    text = y("version: 1", "stack: s", "connectors:", "  - name: c", "    version: 2.10", "    protocol: http",
             "    parameters: {version: 1.10, n: 0o17}", "    credential: {k: v}",
             "    actions: [{action_type: predict, method: POST, url: 'http://h/'}]",
             "models:", "  - name: m", "    model_format: ONNX",
             "    model_config:", "      model_type: bert", "      embedding_dimension: 4",
             "      framework_type: sentence_transformers", "      all_config: {version: 1.0, layers: 0x10}",
             "    versions:", f"      - {{version: 3.0, url: 'http://h/1.zip', model_content_hash_value: {HASH}}}")
    stack = load_files({"stack.yaml": text}).stack
    conn = stack.connectors[0]
    assert conn.version == "2.10"
    assert conn.parameters == {"version": 1.1, "n": 15}            # values as YAML reads them
    assert stack.models[0].versions[0].version == "3.0"
    assert stack.models[0].model_config_.all_config == '{"version":1.0,"layers":16}'
