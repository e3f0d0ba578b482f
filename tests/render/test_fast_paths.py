"""What keeps `render/json.py` fast at 10,000 changes (benchmarks/bench_render.py; docs/performance.md
§3) without changing a byte: each change is made plain once (its JSON and the plan's digest share it),
and the indented text is written by `_indented`, not by the standard library's pure-Python encoder;
and the escaping shortcut of `render/text.py`'s plain lines.
Checked against the previous way of doing each step, on generated and hand-built plans."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from hypothesis import given, settings, strategies as st

from mlsync.core import plan as plan_module
from mlsync.core.address import Address
from mlsync.core.plan import FieldChange, Plan, ResourceChange, _planned_from_json
from mlsync.core.secrets import MASK, Secret
from mlsync.render import json as render_json
from mlsync.render._common import _json_default, mask_secrets
from render.plans import SCENARIOS, big_plan, long_values, update_connector_credential


def _previous_document(plan: Plan) -> dict:
    """render/json.document as it was: every field value masked, the whole document walked."""
    def masked(ch: ResourceChange) -> ResourceChange:
        if not ch.field_changes:
            return ch
        return dataclasses.replace(ch, field_changes=tuple(
            FieldChange(f.path, mask_secrets(f.before), mask_secrets(f.after), f.sensitive, f.forces_replace)
            for f in ch.field_changes))
    doc = mask_secrets(dataclasses.replace(plan, changes=tuple(masked(c) for c in plan.changes)).to_json())
    doc = {"format_version": doc.pop("format_version"), **doc}
    for rc in doc["resource_changes"]:
        for fc in rc["field_changes"]:
            if fc["sensitive"]:
                for side in ("before", "after"):
                    if fc[side] is not None:
                        fc[side] = MASK
    return doc


def _previous_render(plan: Plan) -> str:
    return json.dumps(_previous_document(plan), indent=2, ensure_ascii=False, default=_json_default) + "\n"


def _with_secrets(serial) -> Plan:
    """Secrets in field values, in before/after (a keyed one), in a key; a set; stored-looking strings."""
    secret = Secret("s3cr3t", "scrypt1:" + "a" * 64)
    ch = dataclasses.replace(
        long_values(),
        before={"token": secret, "roles": {"b", "a"}, "note": "(sensitive) scrypt1:bbbb", "n": 1.5},
        after={"token": Secret("other"), "nested": [{"k": secret}], "t": (1, 2)},
        field_changes=(FieldChange("token", secret, Secret("other")), FieldChange("roles", {"b", "a"}, ["a"]),
                       FieldChange("m", {secret: 1}, None), FieldChange("credential", MASK, MASK, sensitive=True),
                       FieldChange("plain", "x", "(sensitive) scrypt1:cccc")),
        credential_fingerprint="scrypt1:" + "d" * 64)
    changes = (ch, update_connector_credential(), dataclasses.replace(long_values(), address=Address("connector", "z")))
    return Plan("s", changes, state_serial=serial, warnings=("w",))


@pytest.mark.parametrize("serial", [None, 0, 3])
def test_the_json_plan_is_what_the_previous_renderer_wrote(serial) -> None:
    plans = [_with_secrets(serial), big_plan(40)] + [dataclasses.replace(build(), state_serial=serial)
                                                     for build in SCENARIOS.values()]
    for p in plans:
        assert render_json.render(p) == _previous_render(p)
        assert "s3cr3t" not in render_json.render(p)


@pytest.mark.parametrize("serial", [None, 3])
def test_planned_values_from_the_json_are_planned_values(serial) -> None:
    p = _with_secrets(serial)
    creds = p.digest_covers_credentials
    for ch in p.changes:
        assert _planned_from_json(ch.to_json(fingerprints=creds), creds) == ch.planned_values(credentials=creds)
    assert p.to_json()["digest"] == p.digest()


def test_writing_a_plan_makes_each_change_plain_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # before: to_json walked every change, then the digest walked it again (planned_values) and once
    # more (_canonical), and render/json walked the whole document a fourth time (mask_secrets)
    p = big_plan(20)
    planned, walked_again, masked = [], [], []
    monkeypatch.setattr(ResourceChange, "planned_values", lambda self, **kw: planned.append(self))
    real_sha, real_mask = plan_module._sha256, render_json.mask_secrets
    monkeypatch.setattr(plan_module, "_sha256", lambda v, plain=False: walked_again.append(plain) or real_sha(v, plain=plain))
    monkeypatch.setattr(render_json, "mask_secrets", lambda v: masked.append(v) or real_mask(v))
    render_json.render(p)
    assert planned == []
    assert walked_again == [True] * len(p.pending) + [False]   # only the plan's own small digest value is walked
    assert not any(isinstance(v, (dict, list)) and "resource_changes" in v or
                   isinstance(v, list) and v and isinstance(v[0], dict) and "address" in v[0] for v in masked)


_keys = st.one_of(st.text(max_size=4), st.integers(-3, 3), st.booleans(), st.none(),
                  st.floats(allow_nan=True, allow_infinity=True))
_leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(alphabet=st.characters(), max_size=8), st.just(Secret("x")), st.just(Address("connector", "c")))
_values = st.recursive(_leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.tuples(inner, inner), st.dictionaries(_keys, inner, max_size=4),
    st.frozensets(st.integers(), max_size=3)), max_leaves=20)


@settings(max_examples=400, deadline=None)
@given(_values)
def test_indented_is_the_standard_librarys_indented_text(value) -> None:
    assert render_json._indented(value, _json_default) == json.dumps(value, indent=2, ensure_ascii=False,
                                                                     default=_json_default)


def test_indented_refuses_keys_json_refuses() -> None:
    with pytest.raises(TypeError):
        json.dumps({(1, 2): 1}, indent=2)
    with pytest.raises(TypeError):
        render_json._indented({(1, 2): 1}, _json_default)
    assert render_json._indented([math.inf, -math.inf, 1e300], _json_default) == json.dumps(
        [math.inf, -math.inf, 1e300], indent=2)


def test_every_character_text_escapes_is_one_isprintable_refuses() -> None:
    # render/text.py skips the escaping search for a line str.isprintable() accepts
    from mlsync.render import _common, text
    escaped = [chr(i) for i in range(0x30000) if _common.UNSAFE_SEARCH(chr(i))]
    assert "\x1b" in escaped and "\u202e" in escaped
    assert not any(ch.isprintable() for ch in escaped)
    assert text._is_safe("a\tb → c") and not text._is_safe("a\x1b[31m")
