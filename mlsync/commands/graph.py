"""`mlsync graph`: the plan as a picture (Mermaid, DOT, or SVG through Graphviz's `dot`)."""

from __future__ import annotations

import shutil
from typing import Optional, TextIO

from mlsync.commands.output import EXIT_CHANGES, EXIT_OK

FORMATS = ("mermaid", "dot", "svg")
_DOT_TIMEOUT = 60.0


def graph(paths: list[str], options, out: TextIO, *, fmt: str = "mermaid", plan_file: Optional[str] = None,
          state_file: Optional[str] = None, destroy: bool = False, include_unchanged: bool = False,
          detailed_exitcode: bool = False) -> int:
    """`mlsync graph`: plan (or read a saved PLANFILE, without reaching the cluster) and print the order
    of the changes as Mermaid, DOT or SVG; exit 2 on changes with --detailed-exitcode."""
    from mlsync.commands import common
    from mlsync.core.errors import MlsyncError
    from mlsync.render import graph as render_graph

    if fmt not in FORMATS:
        raise MlsyncError(f"unknown graph format {fmt!r} (allowed: {', '.join(FORMATS)})")
    dot_bin = _dot_binary() if fmt == "svg" else None    # before reaching the cluster: fail fast
    if plan_file:
        the_plan = common.read_plan(plan_file)
        common.check_saved(the_plan, plan_file)
    else:
        the_plan = common.plan_files(paths, options, state_file, destroy=destroy).plan
    if fmt == "mermaid":
        out.write(render_graph.mermaid(the_plan, include_unchanged=include_unchanged))
    else:
        text = render_graph.dot(the_plan, include_unchanged=include_unchanged)
        out.write(text if dot_bin is None else svg(text, dot_bin))
    return EXIT_CHANGES if detailed_exitcode and the_plan.has_changes else EXIT_OK


def _dot_binary() -> str:
    from mlsync.core.errors import MlsyncError

    found = shutil.which("dot")
    if not found:
        raise MlsyncError("--format svg needs Graphviz's `dot` on PATH (Debian/Ubuntu: apt-get install graphviz; "
                          "macOS: brew install graphviz); or print --format dot and render it elsewhere")
    return found


def svg(dot_text: str, dot_bin: str) -> str:
    """`dot_text` rendered to SVG by Graphviz."""
    import subprocess

    from mlsync.core.errors import MlsyncError

    try:
        proc = subprocess.run([dot_bin, "-Tsvg"], input=dot_text, capture_output=True, text=True,
                              timeout=_DOT_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise MlsyncError(f"Graphviz `dot` failed: {err}") from None
    if proc.returncode != 0:
        detail = " ".join(proc.stderr.split())[:500] or f"exit {proc.returncode}"
        raise MlsyncError(f"Graphviz `dot` could not render the graph: {detail}")
    return proc.stdout
