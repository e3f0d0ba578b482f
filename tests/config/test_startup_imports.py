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


def test_validate_does_not_load_subprocess() -> None:
    # subprocess is for `graph --format svg` only
    assert _loaded_after(f"['validate', '-f', {str(QUICKSTART)!r}]", ("subprocess", "traceback")) == []
