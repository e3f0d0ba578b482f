"""A saved plan is applied exactly as reviewed, or refused; an interactive apply holds the stack's lock
through its prompt (issue 10, defects 1 and 2), on the real node through the command functions and
the `mlsync` executable.

The reviewed plan sets the connector's `actions[0].url`; the file then names another URL (same
addresses, actions and field paths, so only the values differ). `apply PLANFILE` must refuse, name
the connector, and change nothing on the node. The "attacker" URL is one the node's trusted-endpoint
setting accepts, so that a missing check shows up as a connector really pointing there.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from mlsync import commands as app

from mlsync.core.errors import LockHeld, StalePlan
from mlsync.edge.cluster import STATE_INDEX
from stack_helpers import destroy, remote_stack, replan, run_apply, stack_file

pytestmark = pytest.mark.cluster

VENV_BIN = Path(sys.executable).parent
ATTACKER = "http://localhost:9/attacker.example/collect"


def _stack(u: str, base_url: str) -> str:
    """A connector whose `actions[0].url` is `<base_url>/v1/<u>/embeddings`, a group, a remote model."""
    return remote_stack(u, u, base_url, deploy=False, credential="k-reviewed")


def _url(u: str, base_url: str) -> str:
    return f"{base_url}/v1/{u}/embeddings"


def _connectors_named(os_client, name: str) -> list[dict]:
    os_client.indices.refresh(index=".plugins-ml-connector")      # read what was just written
    hits = os_client.transport.perform_request("POST", "/_plugins/_ml/connectors/_search", body={
        "query": {"term": {"name.keyword": name}}, "size": 20})["hits"]["hits"]
    return [h["_source"] for h in hits]


def _lock(os_client, stack: str):
    os_client.indices.refresh(index=STATE_INDEX)
    return os_client.get(index=STATE_INDEX, id=stack)["_source"].get("lock")


@pytest.mark.parametrize("existing", [True, False], ids=["existing stack", "new stack"])
def test_a_saved_plan_whose_url_changed_is_refused(tmp_path, opts, artifact_server, unique_name, os_client,
                                                   existing):
    u = unique_name("sp")
    reviewed, old = f"{artifact_server.base_url}/reviewed", f"{artifact_server.base_url}/old"
    f = stack_file(tmp_path, "s", _stack(u, old))
    with _destroyed_after(f, opts):
        _refused_then_applied(f, opts, os_client, u, reviewed, old, existing)


@contextlib.contextmanager
def _destroyed_after(f: Path, opts) -> Iterator[None]:
    """Destroy the stack whatever happens (the conftest safety net only knows applies given files, and
    a saved plan's apply is given none)."""
    try:
        yield
    finally:
        destroy([f], opts)


def _refused_then_applied(f: Path, opts, os_client, u: str, reviewed: str, old: str, existing: bool) -> None:
    if existing:
        code, text = run_apply([f], opts)
        assert code == 0, text
    f.write_text(_stack(u, reviewed))
    plan_file = f.parent / "reviewed.plan"
    assert app.plan([str(f)], opts, io.StringIO(), plan_file=str(plan_file)) == 0
    f.write_text(_stack(u, ATTACKER))
    connector = f'connector["{u}-conn"]'

    with pytest.raises(StalePlan) as err:
        app.apply([], opts, io.StringIO(), plan_file=str(plan_file))
    message = str(err.value)
    assert "the saved plan is stale" in message and "different values for " + connector in message, message
    assert f'model_group["{u}-group"]' not in message
    sources = _connectors_named(os_client, f"{u}-conn")
    assert [s["actions"][0]["url"] for s in sources] == ([_url(u, old)] if existing else [])
    assert _lock(os_client, u) is None, "the refused apply must release the lock it took"

    # The executable says the same on stderr and exits 1 (what the CI job sees).
    env = dict(os.environ, OPENSEARCH_URL=opts.url, NO_COLOR="1")
    f.write_text(_stack(u, reviewed))
    assert app.plan([str(f)], opts, io.StringIO(), plan_file=str(plan_file)) == 0
    f.write_text(_stack(u, ATTACKER))
    proc = subprocess.run([str(VENV_BIN / "mlsync"), "apply", str(plan_file)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1, proc
    assert "the saved plan is stale" in proc.stderr and connector in proc.stderr, proc.stderr
    assert _url(u, ATTACKER) not in [s["actions"][0]["url"] for s in _connectors_named(os_client, f"{u}-conn")]

    # The reviewed file, planned again and applied: exactly the reviewed URL reaches the node.
    f.write_text(_stack(u, reviewed))
    assert app.plan([str(f)], opts, io.StringIO(), plan_file=str(plan_file)) == 0
    out = io.StringIO()
    assert app.apply([], opts, out, plan_file=str(plan_file)) == 0, out.getvalue()
    assert [s["actions"][0]["url"] for s in _connectors_named(os_client, f"{u}-conn")] == [_url(u, reviewed)]
    assert not replan([f], opts).plan.has_changes


def test_an_apply_waiting_at_its_prompt_holds_the_lock(tmp_path, opts, artifact_server, unique_name, os_client):
    """User A's apply waits for "yes" while CI applies the same file: CI is refused by the lock, and A
    then creates each object once."""
    u = unique_name("sp")
    f = stack_file(tmp_path, "s", _stack(u, artifact_server.base_url))
    refused: list[str] = []

    def a_answers_yes() -> bool:
        with pytest.raises(LockHeld) as err:
            run_apply([f], opts)
        refused.append(str(err.value))
        return True

    out = io.StringIO()
    assert app.apply([str(f)], opts, out, confirm=a_answers_yes) == 0, out.getvalue()
    assert refused and u in refused[0]
    assert len(_connectors_named(os_client, f"{u}-conn")) == 1
    assert not replan([f], opts).plan.has_changes
    assert _lock(os_client, u) is None
    destroy([f], opts)
