"""`mlsync drift`: what changed on the cluster (drift) and in the files (pending) since the last apply."""

from __future__ import annotations

from typing import Optional, TextIO

from mlsync.commands.output import use_color


def drift(paths: list[str], options, out: TextIO, *, output: str = "text", state_file: Optional[str] = None) -> int:
    """`mlsync drift`: report what changed on the cluster (drift) and in the file (pending) since the last
    apply; exit 2 when anything did, 0 when clean (docs/drift.md)."""
    from mlsync.commands import common
    from mlsync.core import drift as drift_report
    from mlsync.render import drift as render_drift

    planned = common.plan_files(paths, options, state_file)
    report = drift_report.build(planned.plan, planned.state, planned.observed)
    out.write(render_drift.render(report, output, color=output == "text" and use_color(out)))
    return report.exit_code
