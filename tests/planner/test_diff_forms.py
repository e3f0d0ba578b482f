"""diff_forms walks mappings and lists itself, the way DeepDiff does (docs/performance.md §4): DeepDiff
costs about a millisecond a call and importing it loads numpy, so a plan only pays for it on a
differing list of plain values (which DeepDiff aligns with difflib). These pin the walk to DeepDiff's
answer on generated values, and keep numpy out of a plan that has no such change."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings, strategies as st

from mlsync.core.planner import _path, _walk, diff_forms
from mlsync.core.secrets import Secret

ROOT = Path(__file__).resolve().parents[2]

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2, 2), st.floats(-2, 2, allow_nan=False),
                     st.sampled_from(["a", "b", "", "x\ny"]), st.sampled_from([Secret("s1"), Secret("s2")]))
_keys = st.sampled_from(["k", "l", "m", "n"])
_values = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                          st.dictionaries(_keys, inner, max_size=4)), max_leaves=12)
_containers = st.one_of(st.lists(_values, max_size=4), st.dictionaries(_keys, _values, max_size=4))


def _deepdiff(before, after) -> list[tuple]:
    from mlsync.core.planner import _deepdiff as run
    out: list = []
    run(before, after, [], out)
    return sorted((_path(["x", *p]), b, a) for p, b, a in out)


def _walked(before, after) -> list[tuple]:
    out: list = []
    _walk(before, after, [], out)
    return sorted((_path(["x", *p]), b, a) for p, b, a in out)


@settings(max_examples=300, deadline=None)
@given(_containers, _containers)
def test_the_walk_reports_what_deepdiff_reports(before, after):
    assert _walked(before, after) == _deepdiff(before, after)


@settings(max_examples=150, deadline=None)
@given(_containers)
def test_the_walk_agrees_with_deepdiff_on_one_edit(before):
    # unrelated pairs mostly differ at the top; an edited copy differs deep inside
    import copy
    after = copy.deepcopy(before)
    node = after
    while True:
        if isinstance(node, dict) and node:
            k = sorted(node)[0]
            if isinstance(node[k], (dict, list)) and node[k]:
                node = node[k]
                continue
            node[k] = "edited"
        elif isinstance(node, list) and node:
            if isinstance(node[-1], (dict, list)) and node[-1]:
                node = node[-1]
                continue
            node.append({"k": 1})
        break
    assert _walked(before, after) == _deepdiff(before, after)


def test_a_connector_action_change_is_one_field_change():
    before = {"actions": [{"url": "u1", "method": "POST", "headers": {"a": "1"}}], "name": "c"}
    after = {"actions": [{"url": "u2", "method": "POST", "headers": {"a": "1", "b": "2"}}, {"url": "u3"}], "name": "c"}
    got = [(f.path, f.before, f.after) for f in diff_forms(before, after)]
    assert got == [("actions[0].headers.b", None, "2"), ("actions[0].url", "u1", "u2"), ("actions[1]", None, {"url": "u3"})]


def test_a_plan_without_a_changed_list_of_plain_values_loads_neither_deepdiff_nor_numpy():
    # before, core/planner.py imported deepdiff at the top (and deepdiff imports numpy: ~0.17 s a plan)
    code = ("import sys\n"
            "import mlsync.commands.plan, mlsync.commands.apply, mlsync.core.planner as p, mlsync.run.driver\n"
            "p.diff_forms({'a': {'b': [{'c': 1}]}, 'd': 1}, {'a': {'b': [{'c': 2}]}, 'd': 2})\n"
            "print(','.join(m for m in ('deepdiff', 'numpy') if m in sys.modules))\n"
            "p.diff_forms({'roles': ['a']}, {'roles': ['a', 'b']})\n"
            "print(','.join(m for m in ('deepdiff', 'numpy') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.splitlines() == ["", "deepdiff,numpy"]
