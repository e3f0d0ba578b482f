"""Time the plan renderers on a 10,000-change plan (SPEC §8: measured here, not in timed tests).

    .venv/bin/python benchmarks/bench_render.py [N]

Two plans: "heavy" (every change carries several field diffs, multi-line scripts, whole objects
for creates; ~4.9 MB of text for 10,000 changes) and "typical" (deploys, one-field updates,
deletes). Prints the best of three runs per renderer, as wall time and as CPU time of the process
(`time.process_time`: what a loaded machine inflates least). Target (issue 12): text and Markdown
<= 0.5 s for 10,000 changes.

`--unique` gives every change of the heavy plan values of its own (a suffix on every string), so
that nothing a renderer caches by content is reused between changes: the worst case.
"""

from __future__ import annotations

import dataclasses
import os
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


def _suffixed(value, suffix: str):
    if isinstance(value, str) and value not in ("(sensitive)", "(known after apply)"):
        return value + suffix
    if isinstance(value, dict):
        return {k: _suffixed(v, suffix) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_suffixed(v, suffix) for v in value)
    return value


def unique_plan(n: int) -> Plan:
    """The heavy plan with a value of its own in every string of every change (no two changes alike)."""
    heavy = big_plan(n)
    changes = []
    for i, ch in enumerate(heavy.changes):
        sfx = f" #{i}"
        changes.append(dataclasses.replace(
            ch, reason=ch.reason + sfx, before=_suffixed(ch.before, sfx), after=_suffixed(ch.after, sfx),
            field_changes=tuple(dataclasses.replace(fc, before=_suffixed(fc.before, sfx), after=_suffixed(fc.after, sfx))
                                for fc in ch.field_changes)))
    return Plan(heavy.stack, tuple(changes), cluster_version=heavy.cluster_version, warnings=heavy.warnings)


def best_of(fn, runs: int = 3) -> tuple[float, float, int]:
    """(best wall seconds, best CPU seconds, size of the output)."""
    best, best_cpu, size = float("inf"), float("inf"), 0
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
        size = len(out)
    return best, best_cpu, size


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=10_000, help="changes per plan")
    parser.add_argument("--unique", action="store_true", help="also the heavy plan with values of its own per change")
    args = parser.parse_args()
    n = args.n
    plans = [("heavy", big_plan(n)), ("typical", typical_plan(n))]
    if args.unique:
        plans.append(("heavy, unique values", unique_plan(n)))
    print(f"load average {os.getloadavg()[0]:.1f}; target: text and markdown <= 500 ms")
    for label, plan in plans:
        print(f"{label} plan, {len(plan.changes):,} changes")
        for name, fn in (("text", lambda: render_text.render(plan)),
                         ("text (colour)", lambda: render_text.render(plan, color=True)),
                         ("markdown", lambda: render_markdown.render(plan)),
                         ("json", lambda: render_json.render(plan))):
            secs, cpu, size = best_of(fn)
            print(f"  {name:14s} {secs * 1000:8.1f} ms wall {cpu * 1000:8.1f} ms cpu  {size:>12,} chars")


if __name__ == "__main__":
    main()
