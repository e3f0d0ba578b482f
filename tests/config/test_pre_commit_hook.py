""".pre-commit-hooks.yaml: the mlsync-validate hook parses, picks the right files, and its entry, run the
way pre-commit runs it (entry + args + the staged file names, in a subprocess), passes good files and
fails a broken one."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .cases import y
from .conftest import EXAMPLES, REPO_ROOT

HOOKS = REPO_ROOT / ".pre-commit-hooks.yaml"


@pytest.fixture(scope="module")
def hook() -> dict:
    hooks = yaml.safe_load(HOOKS.read_text())
    assert [h["id"] for h in hooks] == ["mlsync-validate"]
    return hooks[0]


def run_hook(hook: dict, files: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """What pre-commit does for a `language: python` hook: entry and args, then the file names."""
    argv = shlex.split(hook["entry"]) + list(hook.get("args", [])) + (files if hook["pass_filenames"] else [])
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
           "NO_COLOR": "1"}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def test_the_hook_definition(hook: dict) -> None:
    assert hook["language"] == "python" and hook["entry"] == "mlsync validate"
    assert hook["pass_filenames"] is True
    files = re.compile(hook["files"])
    for name in ("mlsync.yaml", "mlsync.yml", "deploy/mlsync.prod.yaml", "infra/search/mlsync-embeddings.yml"):
        assert files.search(name), name
    for name in ("examples/quickstart.yaml", "notmlsync.yaml", "mlsync/README.md", "mlsync.yaml.bak",
                 ".github/workflows/mlsync.json"):
        assert not files.search(name), name


def test_the_entry_passes_example_files(hook: dict) -> None:
    examples = [str(EXAMPLES / "quickstart.yaml"), str(EXAMPLES / "url-model.yaml")]
    done = run_hook(hook, examples, REPO_ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"{examples[0]}: valid: 1 connector, 1 model group, 1 model version in 1 file (stack quickstart)",
        f"{examples[1]}: valid: 0 connectors, 1 model group, 2 model versions in 1 file (stack url-model)",
    ]


def test_the_entry_fails_a_broken_file(hook: dict, tmp_path: Path) -> None:
    (tmp_path / "mlsync.yaml").write_text((EXAMPLES / "quickstart.yaml").read_text())
    (tmp_path / "mlsync.broken.yaml").write_text(
        y("version: 1", "stack: broken", "models:", "  - name: m", "    model_group: nowhere",
          "    function_name: remote", "    connector: c"))
    done = run_hook(hook, ["mlsync.yaml", "mlsync.broken.yaml"], tmp_path)
    assert done.returncode == 1
    assert done.stdout.startswith("mlsync.yaml: valid: ")
    assert done.stderr.startswith("mlsync.broken.yaml:5:5: models[0].model_group: model group 'nowhere' "
                                  "is not declared in model_groups")
