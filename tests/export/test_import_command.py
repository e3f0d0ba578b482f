"""`mlsync import` (app.import_ and the click command) on the fake cluster: adopting, and failing when
the state cannot be saved."""

from __future__ import annotations

import io
import os
import re
import sys

import pytest
from click.testing import CliRunner

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/ for `fakes`

from fakes import FakeCluster  # noqa: E402

from mlsync import cli  # noqa: E402
from mlsync import commands as app  # noqa: E402
from mlsync.commands import common  # noqa: E402
from mlsync.commands.import_ import SAVE_ATTEMPTS  # noqa: E402
from mlsync.core.errors import MlsyncError, StateConflict  # noqa: E402
from mlsync.edge.cluster import ConnectionOptions  # noqa: E402

OPTS = ConnectionOptions(url="http://localhost:9200")
ADDRESS = 'model_group["g"]'


@pytest.fixture
def fake(monkeypatch) -> FakeCluster:
    cluster = FakeCluster()
    cluster.create_group({"name": "g"})
    monkeypatch.setattr(common, "connect", lambda options: cluster)
    return cluster


def test_imports_into_the_state(fake):
    out = io.StringIO()
    gid = fake.group_id("g")
    assert app.import_(ADDRESS, gid, OPTS, out, stack="s") == app.EXIT_OK
    assert out.getvalue() == f"Imported {gid} as {ADDRESS}.\n"
    assert fake.states["s"].body["resources"][ADDRESS]["id"] == gid


def test_retries_when_somebody_else_saved_the_state_meanwhile(fake):
    fake.fail("write_state", StateConflict("changed (seq_no)"), times=SAVE_ATTEMPTS - 1)
    gid = fake.group_id("g")
    assert app.import_(ADDRESS, gid, OPTS, io.StringIO(), stack="s") == app.EXIT_OK
    assert len(fake.calls("write_state")) == SAVE_ATTEMPTS
    assert ADDRESS in fake.states["s"].body["resources"]


def test_a_state_that_cannot_be_saved_is_an_error_naming_the_stack(fake):
    fake.fail("write_state", StateConflict("changed (seq_no)"), times=100)
    out, gid = io.StringIO(), fake.group_id("g")
    with pytest.raises(MlsyncError, match=re.escape(f"stack 's': {gid} was not imported as {ADDRESS}")):
        app.import_(ADDRESS, gid, OPTS, out, stack="s")
    assert out.getvalue() == ""                                  # no "Imported ..."
    assert len(fake.calls("write_state")) == SAVE_ATTEMPTS
    assert "s" not in fake.states


def test_the_command_exits_1_when_the_state_cannot_be_saved(fake):
    fake.fail("write_state", StateConflict("changed (seq_no)"), times=100)
    result = CliRunner().invoke(cli.main, ["import", ADDRESS, fake.group_id("g"), "--stack", "s"])
    assert result.exit_code == 1
    assert "Imported" not in result.stdout
    assert result.stderr.startswith("error: stack 's': ") and "the state kept changing" in result.stderr


def test_an_id_of_another_kind_says_which_kind_it_is(fake):
    with pytest.raises(MlsyncError, match=re.escape(f"{fake.group_id('g')} is a model_group, not a connector")):
        app.import_('connector["g"]', fake.group_id("g"), OPTS, io.StringIO(), stack="s")
    assert "s" not in fake.states


def test_imports_pipelines_by_id_and_remote_family_members_by_any_label(fake):
    fake.put_pipeline("ingest_pipeline", "docs", {"processors": []})
    fake.put_pipeline("search_pipeline", "docs", {})
    fake.register_model({"name": "r", "function_name": "remote", "model_group_id": fake.group_id("g"),
                         "connector": {"protocol": "http", "actions": [
                             {"action_type": "PREDICT", "method": "POST", "url": "http://127.0.0.1:9/x"}]}})
    rid = next(iter(fake.models_named("r")))
    for address, oid in (('search_pipeline["docs"]', "docs"), ('ingest_pipeline["docs"]', "docs"),
                         ('model["g"]["r"]["v2"]', rid)):
        assert app.import_(address, oid, OPTS, io.StringIO(), stack="s") == app.EXIT_OK
        assert fake.states["s"].body["resources"][address]["id"] == oid
    with pytest.raises(MlsyncError, match=re.escape("a pipeline's address is its id: ingest_pipeline[\"docs\"]")):
        app.import_('ingest_pipeline["other"]', "docs", OPTS, io.StringIO(), stack="t")
