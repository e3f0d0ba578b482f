"""Fixtures of the real-node integration tests (helpers: tests/integration/stack_helpers.py)."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest

from mlsync import commands as app

from mlsync.commands import common as workflow
from mlsync.edge.cluster import Cluster, ConnectionOptions


@pytest.fixture
def opts(os_client) -> ConnectionOptions:
    return ConnectionOptions(url=os.environ.get("OPENSEARCH_URL", "http://127.0.0.1:9200"))


@pytest.fixture(autouse=True)
def destroy_leftovers(opts, monkeypatch):
    """Safety net: a test that fails half-way still takes its stacks off the shared node, so the next
    run (and the next test) starts clean. Tests destroy explicitly too; this only acts on leftovers."""
    applied: list[list[str]] = []
    real_apply = app.apply

    def recording_apply(files, *a, **kw):
        if files:
            applied.append(list(files))
        return real_apply(files, *a, **kw)
    monkeypatch.setattr(app, "apply", recording_apply)
    yield
    monkeypatch.setattr(app, "apply", real_apply)
    cluster = Cluster.connect(opts)
    for files in reversed(applied):
        try:
            stack = workflow.load_desired(files).stack
            if cluster.read_state(stack) is None:
                continue
            app.unlock(opts, io.StringIO(), stack=stack, force=True)
            for f in files:
                text = Path(f).read_text()
                Path(f).write_text(text.replace("prevent_destroy: true", "prevent_destroy: false"))
            real_apply(files, opts, io.StringIO(), auto_approve=True, destroy=True)
        except Exception as err:  # noqa: BLE001 - best effort; the test's own failure is what matters
            print(f"cleanup of {files} failed: {err}", file=sys.stderr)


@pytest.fixture
def sync_up_paused(os_client):
    """Stops ML Commons' sync-up job (it would rewrite model_state within seconds) for one test.

    The node is shared: when another run's pause is in flight, `before` reads "0". Restoring that
    would leave the job off for good once the other run has restored its own value (seen: the node
    sat at 0), so a paused value is restored as unset (the node's default) instead."""
    key = "plugins.ml_commons.sync_up_job_interval_in_seconds"
    before = os_client.cluster.get_settings(flat_settings=True)["persistent"].get(key)
    os_client.cluster.put_settings(body={"persistent": {key: 0}})
    yield
    os_client.cluster.put_settings(body={"persistent": {key: None if str(before) == "0" else before}})
