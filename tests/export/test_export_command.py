"""`mlsync export` (app.export_ and the click command) on a stand-in cluster: output, messages, errors."""

from __future__ import annotations

import datetime
import io
import os
import sys

import pytest
from click.testing import CliRunner

from mlsync import commands as app

from mlsync import cli

from mlsync.commands import common as workflow
from mlsync.edge.cluster import ConnectionOptions
from mlsync.core.errors import MlsyncError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_exporter import observed  # noqa: E402

NOW = datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)


class StandIn:
    def observe(self):
        return observed()

    def search_states(self):   # no stack manages anything here (ownership: tests/export/test_stack_ownership.py)
        return {}


@pytest.fixture(autouse=True)
def no_cluster(monkeypatch):
    monkeypatch.setattr(workflow, "connect", lambda options: StandIn())


def test_writes_the_file_and_reports_on_stderr(tmp_path):
    path, out, err = tmp_path / "x.yaml", io.StringIO(), io.StringIO()
    opts = ConnectionOptions(url="https://admin:hunter2@search.example.com:9200/?token=abc")
    assert app.export_(opts, out, groups=["local"], output_file=str(path), err=err, now=NOW) == 0
    text = path.read_text()
    assert out.getvalue() == ""
    assert text.startswith("# Exported by mlsync ") and "from https://search.example.com:9200/ (OpenSearch 2.19.6) " \
        "at 2025-01-02T03:04:05Z." in text
    assert "hunter2" not in text and "admin" not in text and "token" not in text
    assert "Exported 0 connectors, 1 model group, 1 model (3 versions) as stack 'local' to " in err.getvalue()
    assert [p.name for p in tmp_path.iterdir()] == ["x.yaml"]   # no temporary file left behind


def test_stdout_by_default_and_the_same_text_as_the_file(tmp_path):
    out, path = io.StringIO(), tmp_path / "x.yaml"
    opts = ConnectionOptions(url="http://localhost:9200")
    app.export_(opts, out, err=io.StringIO(), now=NOW)
    app.export_(opts, io.StringIO(), output_file=str(path), err=io.StringIO(), now=NOW)
    assert out.getvalue() == path.read_text()


def test_an_unknown_group_leaves_an_existing_output_file_alone(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("keep me\n")
    with pytest.raises(MlsyncError, match="no model group named 'nope'"):
        app.export_(ConnectionOptions(url="http://localhost:9200"), io.StringIO(), groups=["nope"],
                    output_file=str(path), err=io.StringIO())
    assert path.read_text() == "keep me\n"


def test_cli_prints_warnings_and_the_variables_to_set(tmp_path):
    result = CliRunner().invoke(cli.main, ["export", "--group", "remote: group", "--stack", "s",
                                           "--url", "http://localhost:9200"])
    assert result.exit_code == 0, result.output
    assert "stack: s\n" in result.stdout
    assert "Set the credential variables before planning: MLSYNC_CRED_BEDROCK_ACCESS_KEY" in result.stderr


def test_cli_error_is_one_line_and_exit_1():
    result = CliRunner().invoke(cli.main, ["export", "--group", "nope", "--url", "http://localhost:9200"])
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: no model group named 'nope' on the cluster"
    assert result.stdout == ""
