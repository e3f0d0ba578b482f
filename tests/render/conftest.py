"""Renderer tests: `--update-golden` (or MLSYNC_UPDATE_GOLDEN=1) rewrites tests/render/golden/*.

pytest only registers options from conftest files it loads at start-up, i.e. when `tests/render`
(or a path below it) is on the command line: `pytest tests/render --update-golden`. From anywhere
else use the environment variable: `MLSYNC_UPDATE_GOLDEN=1 pytest`.
"""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    try:
        parser.addoption("--update-golden", action="store_true", default=False,
                         help="rewrite the renderer golden files in tests/render/golden")
    except ValueError:  # already registered by another conftest or plugin
        pass


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    try:
        flag = bool(request.config.getoption("--update-golden"))
    except ValueError:
        flag = False
    return flag or os.environ.get("MLSYNC_UPDATE_GOLDEN", "") not in ("", "0")
