"""`mlsync graph PLANFILE`: draws a saved plan without a cluster, in each format; `--format svg`
without Graphviz is a clear error; a saved plan edited after it was written is refused."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from click.testing import CliRunner

from mlsync.cli import main
from mlsync.commands.common import save_plan

from .plans import SCENARIOS
from .test_graph import parse_mermaid


@pytest.fixture
def plan_file(tmp_path):
    path = tmp_path / "plan.mlsync"
    save_plan(SCENARIOS["full"](), str(path))
    return path


def test_graph_of_a_saved_plan_in_each_format(plan_file) -> None:
    runner = CliRunner()
    mermaid = runner.invoke(main, ["graph", str(plan_file)])
    assert mermaid.exit_code == 0, mermaid.output
    assert len(parse_mermaid(mermaid.output).nodes) == 7
    dot = runner.invoke(main, ["graph", str(plan_file), "--format", "dot", "--detailed-exitcode"])
    assert dot.exit_code == 2 and dot.output.startswith('digraph "mlsync plan search-prod" {')
    if not shutil.which("dot"):
        if os.environ.get("CI"):
            pytest.fail("Graphviz `dot` is missing: .ci/run installs the graphviz package")
        pytest.skip("Graphviz `dot` is not installed")
    svg = runner.invoke(main, ["graph", str(plan_file), "--format", "svg"])
    assert svg.exit_code == 0 and "<svg" in svg.output and "model_group[" in svg.output


def test_svg_without_graphviz_is_a_clear_error(plan_file, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = CliRunner().invoke(main, ["graph", str(plan_file), "--format", "svg"])
    assert result.exit_code == 1
    assert "error: --format svg needs Graphviz's `dot` on PATH" in result.output


def test_an_edited_plan_file_is_refused(plan_file) -> None:
    doc = json.loads(plan_file.read_text())
    doc["resource_changes"][0]["actions"] = ["delete"]
    plan_file.write_text(json.dumps(doc))
    result = CliRunner().invoke(main, ["graph", str(plan_file)])
    assert result.exit_code == 1 and "the saved plan is stale" in result.output


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_shell_completion_scripts(shell) -> None:
    result = CliRunner().invoke(main, ["completion", shell])
    assert result.exit_code == 0 and "_MLSYNC_COMPLETE" in result.output
    assert f"{shell}_complete" in result.output or f"{shell}_source" in result.output
