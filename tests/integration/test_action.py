"""action.yml (the composite GitHub Action) run step by step by tests/integration/action_runner.py:
plan, apply (a saved plan, or plan-if-missing), drift, its outputs and the step summary, against the
real node; and what it refuses without reaching any cluster."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from action_runner import load_action, run_action
from stack_helpers import destroy, remote_stack, stack_file

VENV_BIN = Path(sys.executable).parent
CLOSED = "http://127.0.0.1:9"          # nothing listens: a step that reached it would fail differently


def env_for(tmp_path: Path, summary: bool = True, **extra: str) -> dict[str, str]:
    env = {"PATH": os.pathsep.join([str(VENV_BIN), os.environ.get("PATH", "/usr/bin:/bin")]),
           "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8", "NO_COLOR": "1", **extra}
    if summary:
        env["GITHUB_STEP_SUMMARY"] = str(tmp_path / "summary.md")
        (tmp_path / "summary.md").touch()
    return env


def test_action_shape() -> None:
    action = load_action()
    assert action["runs"]["using"] == "composite"
    assert {"command", "files", "url", "username", "password", "ca-certs", "insecure", "plan-file"} <= set(action["inputs"])
    assert set(action["outputs"]) == {"exit-code", "has-changes", "plan-path", "markdown-path"}
    assert all(not spec.get("required") for spec in action["inputs"].values())


def test_bad_command_and_apply_without_a_saved_plan_change_nothing(tmp_path) -> None:
    env = env_for(tmp_path, OPENSEARCH_URL=CLOSED)
    bad = run_action({"command": "destroy", "install": "false"}, env, tmp_path, tmp_path)
    assert bad.code == 1 and "command must be plan, apply or drift, not 'destroy'" in bad.stdout
    missing = run_action({"command": "apply", "install": "false", "plan-file": "nope.mlsync"}, env, tmp_path, tmp_path)
    assert missing.code == 1 and "no saved plan at nope.mlsync; nothing was applied" in missing.stdout, missing
    assert missing.outputs["exit-code"] == "1" and not (tmp_path / "nope.mlsync").exists()


@pytest.mark.cluster
def test_plan_apply_drift_through_the_action(tmp_path, opts, unique_name, artifact_server) -> None:
    u = unique_name("action")
    base = stack_file(tmp_path, "base", remote_stack(u, u, artifact_server.base_url, deploy=False))
    overlay = stack_file(tmp_path, "overlay", f"version: 1\nstack: {u}\nmodel_groups:\n  - name: {u}-group\n"
                                              f"    description: from the overlay\n")
    files = f"  base.yaml\n\n  overlay.yaml  \n"
    password = "pw-" + u
    inputs = {"files": files, "url": opts.url, "username": "ci-user", "password": password, "install": "false"}
    env = env_for(tmp_path)
    try:
        planned = run_action({**inputs, "command": "plan"}, env, tmp_path, tmp_path)
        assert planned.code == 0, planned
        assert planned.outputs == {"exit-code": "2", "has-changes": "true", "plan-path": str(tmp_path / "plan.mlsync"),
                                   "markdown-path": str(tmp_path / "mlsync.md")}
        md = (tmp_path / "mlsync.md").read_text()
        assert md.startswith(f"## mlsync plan for `{u}`") and "```mermaid" in md and "from the overlay" in md
        assert md in (tmp_path / "summary.md").read_text()
        assert json.loads((tmp_path / "plan.mlsync").read_text())["has_changes"] is True

        applied = run_action({**inputs, "command": "apply"}, env, tmp_path, tmp_path)   # the saved plan
        assert applied.code == 0 and applied.outputs["has-changes"] == "true", applied
        assert "Apply complete: 3 done" in applied.stdout and "Apply complete" in (tmp_path / "summary.md").read_text()

        clean = run_action({**inputs, "command": "drift", "markdown-file": "drift.md"}, env, tmp_path, tmp_path)
        assert clean.code == 0 and clean.outputs == {"exit-code": "0", "has-changes": "false", "plan-path": "",
                                                     "markdown-path": str(tmp_path / "drift.md")}, clean
        base.write_text(base.read_text().replace("description: v1", "description: v2", 1))
        (tmp_path / "plan.mlsync").unlink()
        again = run_action({**inputs, "command": "apply", "plan-if-missing": "true"}, env_for(tmp_path, summary=False),
                           tmp_path, tmp_path)
        assert again.code == 0 and again.outputs["has-changes"] == "true" and "1 done" in again.stdout, again
        empty = run_action({**inputs, "command": "plan"}, env, tmp_path, tmp_path)
        assert empty.code == 0 and empty.outputs["exit-code"] == "0" and empty.outputs["has-changes"] == "false"
        everything = [planned, applied, clean, again, empty]
        texts = [r.stdout + r.stderr for r in everything] + [p.read_text() for p in tmp_path.glob("*.m*")]
        assert not [t for t in texts if password in t]
    finally:
        destroy([base, overlay], opts)
