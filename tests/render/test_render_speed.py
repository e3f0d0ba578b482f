"""What keeps rendering a 10,000-change plan fast (benchmarks/bench_render.py; docs/performance.md §3),
checked by counting work, not by timing: the same block diff or reason on many resources is computed once,
and the output stays what it was (the goldens in test_render.py)."""

from __future__ import annotations

import dataclasses

import pytest

from mlsync.core.address import Address
from mlsync.core.plan import Plan
from mlsync.render import _common as c
from mlsync.render import markdown, text
from render.plans import long_values


def _repeated(n: int) -> Plan:
    base = long_values()
    changes = tuple(dataclasses.replace(base, address=Address("connector", f"c{i:03d}")) for i in range(n))
    return Plan("speed", changes, cluster_version="2.19.6")


@pytest.mark.parametrize("render", [text.render, markdown.render], ids=["text", "markdown"])
def test_a_block_diff_repeated_on_many_resources_is_computed_once(render, monkeypatch: pytest.MonkeyPatch) -> None:
    if hasattr(c, "_block_diff"):
        c._block_diff.cache_clear()
    calls = []
    real = c.line_diff
    monkeypatch.setattr(c, "line_diff", lambda b, a, **kw: calls.append(1) or real(b, a, **kw))
    single = render(_repeated(1))
    assert len(calls) == 3   # the script, client_config and the multi-line prompt
    calls.clear()
    many = render(_repeated(60))
    assert calls == []       # all 60 x 3 blocks were diffed already
    assert "normalize()" in single and 'connector["c059"]' in many


def test_plain_text_escapes_control_characters_on_the_fast_path() -> None:
    change = dataclasses.replace(long_values(), address=Address("connector", "evil\x1b[31m\u202e"))
    out = text.render(Plan("speed", (change,), cluster_version="2.19.6"))
    assert "\x1b" not in out and "\u202e" not in out
    assert 'connector["evil\\u001b[31m\\u202e"] will be updated in place' in out   # bidi override escaped
