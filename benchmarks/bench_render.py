"""Time the plan renderers on a 10,000-change plan (SPEC §8: measured here, not in timed tests).

    .venv/bin/python benchmarks/bench_render.py [N]

Two plans: "heavy" (every change carries several field diffs, multi-line scripts, whole objects
for creates; ~4.9 MB of text for 10,000 changes) and "typical" (deploys, one-field updates,
deletes). Prints the best of three runs per renderer. Goal: text and Markdown well under 1 s.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from mlsync.core.plan import Plan  # noqa: E402
from mlsync.render import json as render_json  # noqa: E402
from mlsync.render import markdown as render_markdown  # noqa: E402
from mlsync.render import text as render_text  # noqa: E402
from render.plans import big_plan, delete_group, deploy_version, update_group  # noqa: E402


def typical_plan(n: int) -> Plan:
    heavy = big_plan(n)
    makers = (deploy_version, update_group, delete_group)
    changes = tuple(dataclasses.replace(makers[i % 3](), address=ch.address) for i, ch in enumerate(heavy.changes))
    return Plan(heavy.stack, changes, cluster_version=heavy.cluster_version)


def best_of(fn, runs: int = 3) -> tuple[float, int]:
    best, size = float("inf"), 0
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
        size = len(out)
    return best, size


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    for label, plan in (("heavy", big_plan(n)), ("typical", typical_plan(n))):
        print(f"{label} plan, {len(plan.changes):,} changes")
        for name, fn in (("text", lambda: render_text.render(plan)),
                         ("text (colour)", lambda: render_text.render(plan, color=True)),
                         ("markdown", lambda: render_markdown.render(plan)),
                         ("json", lambda: render_json.render(plan))):
            secs, size = best_of(fn)
            print(f"  {name:14s} {secs * 1000:8.1f} ms  {size:>12,} chars")


if __name__ == "__main__":
    main()
