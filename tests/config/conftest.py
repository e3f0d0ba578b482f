"""Fixtures for the desired-state file tests: write files into a temp dir, load them, collect problems.

These are unit tests: nothing here contacts a cluster.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional

import pytest

from mlsync.input import LoadedConfig, load
from mlsync.core.errors import ConfigError, Problem

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "examples"


def write_files(root: Path, files: dict) -> list[str]:
    """Write {relative name: str or bytes} under root; return the absolute paths in order."""
    paths = []
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        paths.append(str(path))
    return paths


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in a temp dir, so that problems name files relative to it (stack.yaml:3:5: ...)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def load_files(in_tmp: Path) -> Callable[..., LoadedConfig]:
    """load_files({"stack.yaml": text, ...}, args=None, env=None) -> LoadedConfig (raises ConfigError)."""

    def run(files: dict, args: Optional[list[str]] = None, env: Optional[dict] = None) -> LoadedConfig:
        write_files(in_tmp, files)
        return load(args if args is not None else list(files), env=env or {})

    return run


@pytest.fixture
def problems_of(load_files: Callable[..., LoadedConfig]) -> Callable[..., list[Problem]]:
    """problems_of({...}) -> the problems a load reports ([] when the files are valid)."""

    def run(files: dict, args: Optional[list[str]] = None, env: Optional[dict] = None) -> list[Problem]:
        try:
            load_files(files, args=args, env=env)
        except ConfigError as exc:
            return exc.problems
        return []

    return run


def example_sets() -> list[list[str]]:
    """Every example as the -f arguments that validate it (overlay pairs together)."""
    sets = [[str(p)] for p in sorted(EXAMPLES.glob("*.yaml"))]
    sets.append([str(EXAMPLES / "overlay" / "base.yaml")])
    sets.append([str(EXAMPLES / "overlay" / "base.yaml"), str(EXAMPLES / "overlay" / "prod.yaml")])
    return sets


def example_id(paths: list[str]) -> str:
    return "+".join(os.path.relpath(p, EXAMPLES) for p in paths)
