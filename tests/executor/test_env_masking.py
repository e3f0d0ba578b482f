"""Values from the environment are masked in every output and never stored in clear (issue 10, defect 8),
through `mlsync.commands` on the in-memory FakeCluster (tests/fakes.py), state on the fake cluster:

- `description: ${env:X}` (outside `credential:`) never appears in the text, JSON or Markdown plan, the
  saved plan file, the apply's output or the stack's state; the cluster still gets the value;
- `${env-public:X}` opts out: that value is shown as written;
- a changed value plans an update (masked) and makes a saved plan stale; after an apply the plan is
  empty (the server's clear value compares equal to the file's masked one), and a hand edit on the
  cluster is drift.
"""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/ for `fakes`

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))                   # for test_apply_lock

from fakes import FakeCluster  # noqa: E402
from test_apply_lock import OPTS, apply, fake  # noqa: E402,F401 (the fake cluster fixture, shared)

from mlsync import commands as app  # noqa: E402
from mlsync.commands import common  # noqa: E402
from mlsync.core.errors import StalePlan  # noqa: E402

STACK = "env-mask"
SECRET = "zq-internal-project-7f3a9c"       # distinctive: found anywhere means it leaked
SECRET2 = "zq-internal-project-rotated-51b"
PUBLIC = "public-desc-4e1d"
URL_SECRET = "tenant-8d2c1b"

YAML = """
version: 1
stack: env-mask
connectors:
  - name: emb
    description: ${env:MLSYNC_TEST_SECRET_DESC}
    protocol: http
    parameters: {model: m, tenant: "${env:MLSYNC_TEST_SECRET_TENANT}"}
    credential: {api_key: "k-1"}
    actions:
      - action_type: predict
        method: POST
        url: https://api.example/v1/embeddings
        request_body: '{"input": ${parameters.input}}'
model_groups:
  - name: g
    description: "${env-public:MLSYNC_TEST_PUBLIC_DESC}"
models:
  - name: remote
    model_group: g
    function_name: remote
    description: "model of ${env:MLSYNC_TEST_SECRET_DESC}"
    connector: emb
    deploy: false
"""


@pytest.fixture
def stack(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("MLSYNC_TEST_SECRET_DESC", SECRET)
    monkeypatch.setenv("MLSYNC_TEST_SECRET_TENANT", URL_SECRET)
    monkeypatch.setenv("MLSYNC_TEST_PUBLIC_DESC", PUBLIC)
    f = tmp_path / "stack.yaml"
    f.write_text(YAML)
    return f


def run_plan(stack: Path, **kw) -> tuple[int, str]:
    out = io.StringIO()
    code = app.plan([str(stack)], OPTS, out, **kw)
    return code, out.getvalue()


def state_text(fake: FakeCluster) -> str:
    return json.dumps({k: v.body for k, v in fake.states.items()}, default=str)


def plans(stack: Path, tmp_path: Path) -> dict[str, str]:
    out = {fmt: run_plan(stack, output=fmt)[1] for fmt in ("text", "json", "markdown")}
    saved = tmp_path / "plan.json"
    run_plan(stack, plan_file=str(saved))
    out["saved plan"] = saved.read_text()
    return out


def assert_hidden(texts: dict[str, str], *secrets: str) -> None:
    for what, text in texts.items():
        for s in secrets:
            assert s not in text, f"{s!r} appears in clear in the {what}"


def test_env_values_appear_in_no_plan_output_saved_plan_or_state(fake, stack, tmp_path):
    assert_hidden(plans(stack, tmp_path), SECRET, URL_SECRET)             # create: nothing on the cluster yet
    code, text = apply([stack], auto_approve=True)
    assert code == app.EXIT_OK, text
    assert_hidden({"apply output": text, "state": state_text(fake)}, SECRET, URL_SECRET)
    # the cluster got the values
    (conn,) = fake.connectors.values()
    assert conn["description"] == SECRET and conn["parameters"]["tenant"] == URL_SECRET
    assert [m["description"] for m in fake.models_named("remote").values()] == [f"model of {SECRET}"]
    # ... and fingerprints stand in the state
    assert "(sensitive) scrypt1:" in state_text(fake)


def test_env_public_values_are_shown(fake, stack):
    code, text = run_plan(stack, output="markdown")
    assert PUBLIC in text
    assert PUBLIC in run_plan(stack, output="json")[1]


def test_no_perpetual_diff_after_apply(fake, stack):
    assert apply([stack], auto_approve=True)[0] == app.EXIT_OK
    planned = common.plan_for(common.load_desired([str(stack)]), fake, common.state_store(fake, None)).plan
    assert not planned.has_changes, [(str(c.address), c.reason) for c in planned.pending]
    out = io.StringIO()
    assert app.drift([str(stack)], OPTS, out) == 0, out.getvalue()


def test_a_changed_value_plans_a_masked_update_and_makes_a_saved_plan_stale(fake, stack, tmp_path, monkeypatch):
    assert apply([stack], auto_approve=True)[0] == app.EXIT_OK
    monkeypatch.setenv("MLSYNC_TEST_SECRET_DESC", SECRET2)
    texts = plans(stack, tmp_path)
    assert_hidden(texts, SECRET, SECRET2, URL_SECRET)
    doc = json.loads(texts["json"])
    changed = {rc["address"]: [f["path"] for f in rc["field_changes"]]
               for rc in doc["resource_changes"] if rc["actions"] != ["no-op"]}
    assert changed == {'connector["emb"]': ["description"], 'model["g"]["remote"]': ["description"]}
    assert "(sensitive)" in texts["text"] and "(sensitive)" in texts["markdown"]

    saved = tmp_path / "plan.json"
    assert run_plan(stack, plan_file=str(saved))[0] == app.EXIT_OK
    monkeypatch.setenv("MLSYNC_TEST_SECRET_DESC", SECRET + "-third")   # the value moved after review
    with pytest.raises(StalePlan, match="different values"):
        apply([saved], plan_file=str(saved), auto_approve=True)
    monkeypatch.setenv("MLSYNC_TEST_SECRET_DESC", SECRET2)            # reviewed again, unchanged: applies
    assert run_plan(stack, plan_file=str(saved))[0] == app.EXIT_OK
    code, text = apply([saved], plan_file=str(saved), auto_approve=True)
    assert code == app.EXIT_OK, text
    assert_hidden({"apply output": text, "state": state_text(fake)}, SECRET, SECRET2)
    (conn,) = fake.connectors.values()
    assert conn["description"] == SECRET2
    planned = common.plan_for(common.load_desired([str(stack)]), fake, common.state_store(fake, None)).plan
    assert not planned.has_changes


def test_a_hand_edit_of_a_sensitive_value_is_drift_and_stays_masked(fake, stack):
    assert apply([stack], auto_approve=True)[0] == app.EXIT_OK
    (conn,) = fake.connectors.values()
    conn["description"] = "edited-by-hand-93ab"
    out = io.StringIO()
    assert app.drift([str(stack)], OPTS, out) == 2
    assert_hidden({"drift": out.getvalue()}, SECRET, "edited-by-hand-93ab")
    out = io.StringIO()
    assert app.drift([str(stack)], OPTS, out, output="json") == 2
    assert_hidden({"drift json": out.getvalue()}, SECRET, "edited-by-hand-93ab")
    assert "description" in out.getvalue()
