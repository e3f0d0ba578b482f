"""`mlsync --help` without click (mlsync/launch.py; docs/performance.md §4): the kept texts are exactly
what click prints, at each width kept, and every other call still goes through click.

When a command or an option changes, the kept texts go stale and test_the_kept_help_is_clicks_help
fails; rewrite them with `.venv/bin/python tests/config/test_fast_help.py`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mlsync import launch

ROOT = Path(__file__).resolve().parents[2]
WIDTHS = (78, 98)     # click's width: min(columns, 100) - 2


def _run(code: str, columns: int, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "_MLSYNC_COMPLETE"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**environ, "COLUMNS": str(columns), **env})


def clicks_help(columns: int, args: tuple[str, ...] = ("--help",)) -> subprocess.CompletedProcess:
    """What click itself prints for `mlsync ARGS` at `columns`."""
    return _run(f"from mlsync.cli import main\nmain({list(args)!r}, prog_name='mlsync')", columns)


def launched(columns: int, args: tuple[str, ...] = ("--help",), **env: str) -> subprocess.CompletedProcess:
    """`mlsync ARGS` through the executable's entry point; prints which of click/mlsync.cli it loaded."""
    code = (f"import sys\nsys.argv = ['/usr/bin/mlsync', *{list(args)!r}]\nfrom mlsync.launch import main\n"
            "try:\n    code = main()\nexcept SystemExit as e:\n    code = e.code\n"
            "print('loaded:' + ','.join(m for m in ('click', 'mlsync.cli') if m in sys.modules), file=sys.stderr)\n"
            "sys.exit(code)")
    return _run(code, columns, **env)


def _loaded(p: subprocess.CompletedProcess) -> tuple[str, str]:
    err, _, loaded = p.stderr.rpartition("loaded:")
    return err, loaded.strip()


@pytest.mark.parametrize("width", WIDTHS)
def test_the_kept_help_is_clicks_help(width: int) -> None:
    click = clicks_help(width + 2)
    assert click.returncode == 0 and click.stdout.startswith("Usage: mlsync [OPTIONS] COMMAND")
    assert launch.HELP.get(width) == click.stdout, (
        "mlsync/launch.py keeps a stale `mlsync --help`: run `.venv/bin/python tests/config/test_fast_help.py`")


@pytest.mark.parametrize("args", [("--help",), ("-h",), ()], ids=["--help", "-h", "none"])
@pytest.mark.parametrize("columns", [80, 100, 140])
def test_help_is_printed_without_click(args: tuple[str, ...], columns: int) -> None:
    click, fast = clicks_help(columns, args), launched(columns, args)
    err, loaded = _loaded(fast)
    assert (fast.stdout, err, fast.returncode) == (click.stdout, click.stderr, click.returncode)
    assert loaded == ""          # before mlsync/launch.py: click and all of mlsync.cli, ~0.07 s


@pytest.mark.parametrize("columns, args, env", [
    (60, ("--help",), {}),                        # a width not kept
    (80, ("--version",), {}),
    (80, ("plan", "--help"), {}),
    (80, ("--help",), {"_MLSYNC_COMPLETE": "bash_source"}),   # shell completion is click's
])
def test_everything_else_goes_to_click(columns: int, args: tuple[str, ...], env: dict) -> None:
    fast = launched(columns, args, **env)
    err, loaded = _loaded(fast)
    assert loaded == "click,mlsync.cli"
    if not env:
        click = clicks_help(columns, args)
        assert (fast.stdout, err, fast.returncode) == (click.stdout, click.stderr, click.returncode)


def test_the_executable_is_the_launcher() -> None:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^mlsync = "mlsync\.launch:main"$', text, re.M)


def regenerate() -> None:
    """Rewrite the kept texts in mlsync/launch.py from what click prints now."""
    path = ROOT / "mlsync" / "launch.py"
    source = path.read_text(encoding="utf-8")
    texts = {w: clicks_help(w + 2).stdout for w in WIDTHS}
    block = "HELP = {\n" + "".join(
        f"    {w}: (\n" + "".join(f"        {line!r}\n" for line in t.splitlines(keepends=True)) + "    ),\n"
        for w, t in texts.items()) + "}\n"
    start = source.index("HELP = {\n")
    end = source.index("# --- end of generated texts ---")
    path.write_text(source[:start] + block + source[end:], encoding="utf-8")
    print(f"rewrote the help texts in {path} ({', '.join(str(w) for w in WIDTHS)} columns)")


if __name__ == "__main__":
    regenerate()
