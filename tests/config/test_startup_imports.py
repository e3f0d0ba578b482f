"""Start-up: what `mlsync --help` and `mlsync validate` load (docs/performance.md §4).

Every process pays for what it imports; these pin the modules a command needs only on a rare path
(a traceback with --debug, Graphviz for `graph --format svg`) to that path.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart.yaml"


def _loaded_after(call: str, modules: tuple[str, ...]) -> list[str]:
    code = (f"import sys\nfrom mlsync.cli import main\ntry:\n    main({call})\nexcept SystemExit:\n    pass\n"
            f"print(','.join(m for m in {modules!r} if m in sys.modules), file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [m for m in out.stderr.strip().splitlines()[-1].split(",") if m] if out.stderr.strip() else []


def test_help_does_not_load_traceback() -> None:
    # traceback (and what it pulls in) is for --debug only: ~9 % of `mlsync --help`'s instructions
    assert _loaded_after("['--help']", ("traceback",)) == []


def _stdlib_loads_subprocess() -> bool:
    """Python 3.10's `platform` (which `uuid` imports, and click and pydantic import `uuid`) imports
    subprocess itself; 3.11 made that lazy. Only then can mlsync keep it off the path."""
    code = "import sys, uuid; print('subprocess' in sys.modules)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "True"


def test_validate_does_not_load_subprocess() -> None:
    # subprocess is for `graph --format svg` only
    unwanted = ("traceback",) if _stdlib_loads_subprocess() else ("subprocess", "traceback")
    unwanted += ("pydantic",)   # mlsync's own records (input/declare.py): pydantic cost ~0.15 s of every start
    assert _loaded_after(f"['validate', '-f', {str(QUICKSTART)!r}]", unwanted) == []
