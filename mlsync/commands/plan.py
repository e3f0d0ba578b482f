"""`mlsync plan`: observe, diff and print what apply would change; optionally save the plan."""

from __future__ import annotations

import sys
from typing import Optional, TextIO

from mlsync.commands.output import EXIT_CHANGES, EXIT_OK, render_plan


def plan(paths: list[str], options, out: TextIO, *, output: str = "text", plan_file: Optional[str] = None,
         detailed_exitcode: bool = False, state_file: Optional[str] = None, destroy: bool = False,
         allow_in_use: bool = False) -> int:
    """`mlsync plan`: observe, diff and print; `-o` saves the plan; exit 2 on changes with --detailed-exitcode."""
    from mlsync.commands import common

    planned = common.plan_files(paths, options, state_file, destroy=destroy, allow_in_use=allow_in_use)
    out.write(render_plan(planned.plan, output, out))
    if plan_file:
        common.save_plan(planned.plan, plan_file)
        print(f"Saved the plan to {plan_file}; apply it with: mlsync apply {plan_file}", file=sys.stderr)
    return EXIT_CHANGES if detailed_exitcode and planned.plan.has_changes else EXIT_OK
