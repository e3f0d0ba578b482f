"""The loader's JSON fast path (mlsync/input/loader.py, `_load_json`) against its located path.

A single JSON file is read with the json module and locates lazily; everything else (and every
problem) goes through the YAML composer with positions. Both must give the same tree, the same
secrets, the same positions and the same problems; the fast path must step aside wherever libyaml
would read the JSON text differently.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from mlsync.core.errors import ConfigError
from mlsync.input import load, loader

from .cases import CASES
from .conftest import EXAMPLES

ENV = {"BENCH_API_KEY": "k-123", "OPENAI_API_KEY": "sk-test", "X": "from-env", "EMPTY": ""}


def located(monkeypatch, paths, env=ENV):
    with monkeypatch.context() as m:
        m.setattr(loader, "_load_json", lambda *_a: None)
        return loader.load_tree(paths, env=env)


def problems(paths, env=ENV):
    try:
        load(paths, env=env)
    except ConfigError as exc:
        return [str(p) for p in exc.problems]
    return []


def as_json_texts(data) -> list[str]:
    """The same document written as JSON the ways people and tools write it."""
    return [json.dumps(data), json.dumps(data, indent=2), json.dumps(data, separators=(",", ":")),
            json.dumps(data, indent=1, ensure_ascii=False).replace("\n", "\r\n"),
            "\n\n  " + json.dumps(data, indent=4, ensure_ascii=False) + "\n"]


def source_of(text: str):
    """The document of a YAML text as written (strings before interpolation), or None."""
    try:
        data = YAML(typ="safe").load(text)
        json.dumps(data)
    except Exception:  # noqa: BLE001 - not every bad input is YAML or JSON-able
        return None
    return data if isinstance(data, dict) else None


def example_documents() -> list:
    out = []
    for path in sorted(EXAMPLES.rglob("*.yaml")):
        data = source_of(path.read_text(encoding="utf-8"))
        if data is not None:
            out.append(pytest.param(data, id=str(path.relative_to(EXAMPLES))))
    return out


def case_documents() -> list:
    out = []
    for case in CASES:
        # not the "yaml" cases: they have no tree (and a safe load would expand their alias bombs)
        if case.kind != "yaml" and case.args is None and len(case.files) == 1 and isinstance(
                case.files.get("stack.yaml"), str):
            data = source_of(case.files["stack.yaml"])
            if data is not None:
                out.append(pytest.param(data, case.env, id=case.id))
    return out


def assert_same(monkeypatch, path: Path, env=ENV) -> None:
    fast = loader._load_json(str(path), env)
    assert fast is not None, "the fast path declined a plain JSON file"
    slow = located(monkeypatch, [str(path)], env)
    assert not slow.problems and not slow.fatal
    assert json.dumps(fast.tree) == json.dumps(slow.tree)  # keys in order, 1 vs 1.0 vs "1"
    assert fast.source_map.sensitive == slow.source_map.sensitive
    smap = fast.source_map
    # what the fast path recorded, before anything builds the full map
    for p, pos in smap._keys.items():
        assert slow.source_map.keys.get(p) == pos, p
    for p, pos in smap._values.items():
        assert slow.source_map.values.get(p) == pos, p
    assert ("models", 0) not in slow.source_map.values or ("models", 0) in smap._values
    for p in [("nope",), ("models", 99999), ("models", 0, "versions", 9999), ("connectors", 0, "zz"), ()]:
        assert smap.locate(p) == slow.source_map.locate(p), p
        assert smap.has(p) == slow.source_map.has(p), p
    assert smap._full is None, "locating a recorded or absent path built the full map"
    # any other written path: from the located path, on demand
    for p in list(slow.source_map.values)[:200]:
        assert smap.locate(p) == slow.source_map.locate(p), p
        assert smap.locate_value(p) == slow.source_map.locate_value(p), p
        assert smap.has(p)
    assert smap.keys == slow.source_map.keys and smap.values == slow.source_map.values


@pytest.mark.parametrize("data", example_documents())
def test_examples_as_json_load_the_same_on_both_paths(data, tmp_path, monkeypatch) -> None:
    for n, text in enumerate(as_json_texts(data)):
        path = tmp_path / f"stack{n}.json"
        path.write_text(text, encoding="utf-8", newline="")
        assert_same(monkeypatch, path)
        with monkeypatch.context() as m:  # a local example's path: names a file next to the example
            m.setattr(loader, "_load_json", lambda *_a: None)
            slow = problems([str(path)])
        assert problems([str(path)]) == slow


@pytest.mark.parametrize("data, env", case_documents())
def test_bad_inputs_as_json_get_the_same_problems_on_both_paths(data, env, tmp_path, monkeypatch) -> None:
    for n, text in enumerate(as_json_texts(data)[:3]):
        path = tmp_path / f"stack{n}.json"
        path.write_text(text, encoding="utf-8")
        fast = problems([str(path)], env)
        with monkeypatch.context() as m:
            m.setattr(loader, "_load_json", lambda *_a: None)
            slow = problems([str(path)], env)
        assert fast == slow


def test_a_large_generated_file(tmp_path, monkeypatch) -> None:
    data = {"version": 1, "stack": "s",
            "connectors": [{"name": f"c{i}", "protocol": "http", "version": 1.10, "credential": {"k": "${env:X}"},
                            "actions": [{"action_type": "predict", "method": "POST", "url": "http://127.0.0.1:1/x"}]}
                           for i in range(20)],
            "model_groups": [{"name": f"g{i}"} for i in range(50)],
            "models": [{"name": f"m{i}", "model_group": f"g{i % 50}", "function_name": "remote",
                        "connector": f"c{i % 20}", "description": "é ${env:X} x"} for i in range(500)]
            + [{"name": "local", "model_group": "g0", "function_name": "TEXT_EMBEDDING", "model_format": "ONNX",
                "model_config": {"model_type": "bert", "embedding_dimension": 384,
                                 "framework_type": "sentence_transformers"},
                "versions": [{"version": 1.10, "path": "../m.zip"}, {"version": "2", "url": "http://127.0.0.1:1/m.zip"}]}]}
    for n, text in enumerate(as_json_texts(data)):
        path = tmp_path / f"big{n}.json"
        path.write_text(text, encoding="utf-8", newline="")
        assert_same(monkeypatch, path)


@pytest.mark.parametrize("text", [
    '{"a"\n: 1}',                         # libyaml: a simple key ends on its line (a syntax error in YAML)
    '{"a"\r\n  : 1}',
    '{"' + "k" * 1100 + '": 1}',          # libyaml: a simple key is at most 1,024 characters
    '{"a"' + " " * 300 + ': 1}',
    '{"a": "\\ud83d\\ude00"}',            # libyaml refuses surrogate escapes
    '{"a":\t1}',                          # tabs
    '{"a": "x\u0085y"}',                  # line breaks YAML counts and JSON does not
    '{"a": "x\u2028y"}',
    '{"a": "\x7f"}',                      # characters YAML does not allow in its stream
    '{"a": 1, "a": 2}',                   # duplicate keys: located by the YAML path
    '{"a": NaN}', '{"a": Infinity}',      # plain strings in YAML
    '{"a": 1e999}',                       # not a finite number
    '{"a": "${env:UNSET}"}',              # an interpolation problem
    '["a"]', '"a"', '', '# c\n{"a": 1}', '{"a": 1} x', "{'a': 1}",
    '{"version": 1}\n---\n{}',
])
def test_the_fast_path_steps_aside(text, tmp_path, monkeypatch) -> None:
    path = tmp_path / "s.json"
    path.write_text(text, encoding="utf-8", newline="")
    assert loader._load_json(str(path), {}) is None
    result = loader.load_tree([str(path)], env={})
    slow = located(monkeypatch, [str(path)], {})
    assert (result.tree, result.problems, result.fatal) == (slow.tree, slow.problems, slow.fatal)


def test_only_a_single_file_takes_the_fast_path(tmp_path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text('{"version": 1, "stack": "s"}')
    b.write_text('{"model_groups": [{"name": "g"}]}')
    assert isinstance(loader.load_tree([str(a)], env={}).source_map, loader._LazySourceMap)
    both = loader.load_tree([str(a), str(b)], env={})
    assert not isinstance(both.source_map, loader._LazySourceMap)
    assert both.tree == {"version": 1, "stack": "s", "model_groups": [{"name": "g"}]}


# --- the depth check made while building a document without anchors, aliases or merge keys ------

def deep_documents() -> list:
    from mlsync.input.loader import MAX_DEPTH

    d = MAX_DEPTH
    return [
        "x: " + "[" * (d + 3) + "]" * (d + 3),                       # flow lists
        "x: " + "[" * (d - 1) + "]" * (d - 1),                       # just deep enough
        "x: " + "[" * d + "]" * d,                                   # one too deep
        "x: " + "{a: " * (d - 1) + "1" + "}" * (d - 1),              # flow mappings: the key is one level down
        "x: " + "{a: " * d + "1" + "}" * d,
        "x: " + "{a: " * (d + 1) + "1" + "}" * (d + 1),
        "x: " + "[" * (d - 2) + "{? [[1]] : 2}" + "]" * (d - 2),     # a complex key, deep inside
        "x: " + "[" * (d - 3) + "{[1]: 2}" + "]" * (d - 3),
        "dup: 1\ndup: 2\nx: " + "[" * (d + 1) + "]" * (d + 1),       # a problem before the deep node
        "x:\n" + "".join("  " * i + "- \n" for i in range(d + 2)) + "  " * (d + 2) + "a",
        "a:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(d + 1)) + "  " * (d + 2) + "v",
        "a:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(d - 1)) + "  " * d + "v",
    ]


@pytest.mark.parametrize("body", deep_documents())
def test_depth_checked_while_building_as_the_graph_check_did(body, tmp_path, monkeypatch) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("version: 1\nstack: s\n" + body + "\n")
    now = loader.load_tree([str(path)], env={})
    with monkeypatch.context() as m:  # the graph check on every document, as before
        m.setattr(loader._Builder, "build", _build_with_graph_check)
        before = loader.load_tree([str(path)], env={})
    assert (now.problems, now.fatal, now.tree) == (before.problems, before.fatal, before.tree)


def _build_with_graph_check(self):
    text = self.text
    self.text = text + "\n# &"  # any anchor character sends the document through _check_graph first
    try:
        return _original_build(self)
    finally:
        self.text = text


_original_build = loader._Builder.build


# --- the resolver's memo of plain scalars (loader._yaml) ------------------------------------------

SCALARS = ["1", "yes", "on", "No", "y", "0o17", "017", "0x1F", "1_000", "+1", "1e3", "1.10", ".inf", "-.Inf", ".nan",
           "~", "null", "Null", "NULL", "", "true", "True", "TRUE", "2001-12-14", "12:30", "<<", "'yes'", '"1"']


@pytest.mark.parametrize("directive", ["", "%YAML 1.1\n---\n", "%YAML 1.2\n---\n"])
def test_scalars_resolve_as_without_the_memo(directive, tmp_path, monkeypatch) -> None:
    from ruamel.yaml.resolver import VersionedResolver

    items = "".join(f"  - {s}\n  - {s}\n" for s in SCALARS)  # each twice: the second from the memo
    keys = "".join(f"  k{i}: {s}\n" for i, s in enumerate(SCALARS) if s not in ("", "<<"))
    path = tmp_path / "s.yaml"
    path.write_text(f"{directive}version: 1\nstack: s\nx:\n{items}y:\n{keys}")
    now = loader.load_tree([str(path)], env={})
    loader._yaml()  # the resolver class exists
    with monkeypatch.context() as m:
        m.setattr(loader._YAML_CLASSES["resolver"], "resolve", VersionedResolver.resolve)
        before = loader.load_tree([str(path)], env={})
    assert json.dumps([now.tree, [str(p) for p in now.problems]], default=str) == json.dumps(
        [before.tree, [str(p) for p in before.problems]], default=str)


# --- no cyclic garbage collection while loading (mlsync.input.load) -------------------------------

@pytest.mark.parametrize("enabled", [True, False])
def test_load_runs_without_the_cyclic_collector_and_restores_it(enabled, tmp_path, monkeypatch) -> None:
    import gc

    path = tmp_path / "s.yaml"
    path.write_text("version: 1\nstack: s\n")
    seen = []
    real = loader.load_tree
    monkeypatch.setattr(loader, "load_tree", lambda *a, **k: seen.append(gc.isenabled()) or real(*a, **k))
    (gc.enable if enabled else gc.disable)()
    try:
        load([str(path)], env={})
        assert seen == [False]
        assert gc.isenabled() is enabled
        path.write_text("version: 1\nstack: s\nx: [")
        with pytest.raises(ConfigError):
            load([str(path)], env={})
        assert gc.isenabled() is enabled
    finally:
        gc.enable()
