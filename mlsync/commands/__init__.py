"""One module per command; each command function takes plain arguments and output streams and returns
an exit code (0 success, 1 error, 2 changes present). No click here (`mlsync/cli.py` is the only module
that imports it).

    validate.py  validate, validate_each, schema_text      plan.py     plan
    apply.py     apply (and destroy: destroy=True)           drift.py    drift
    export.py    export_                                     import_.py  import_
    state.py     state                                       unlock.py   unlock
    graph.py     graph (the plan as Mermaid, DOT or SVG)
    output.py    exit codes, use_color, paint, plural, print_problems (what commands print with)
    common.py    the shared steps: load_desired, connect, state_store, plan_for, credentials,
                 save_plan/read_plan, check_fresh

This package re-exports the command functions under the names the CLI calls (`from mlsync import
commands as app; app.plan(...)`), so a test may replace one with `monkeypatch.setattr(app, "plan", ...)`.
A function shadows its module of the same name here: import a module as `from mlsync.commands.plan
import plan`, not `import mlsync.commands.plan`. The modules import only the standard library at the
top (heavy libraries inside the functions) so that importing this package stays cheap.
"""

from __future__ import annotations

from mlsync.commands.output import EXIT_CHANGES, EXIT_ERROR, EXIT_OK, paint, plural, print_problems, use_color
from mlsync.commands.validate import schema_text, validate, validate_each
from mlsync.commands.plan import plan
from mlsync.commands.apply import apply
from mlsync.commands.drift import drift
from mlsync.commands.export import export_
from mlsync.commands.import_ import import_
from mlsync.commands.state import state
from mlsync.commands.unlock import unlock
from mlsync.commands.graph import graph

__all__ = [
    "EXIT_OK", "EXIT_ERROR", "EXIT_CHANGES", "use_color", "paint", "plural", "print_problems",
    "validate", "validate_each", "schema_text", "plan", "apply", "drift", "export_", "import_", "state", "unlock",
    "graph",
]
