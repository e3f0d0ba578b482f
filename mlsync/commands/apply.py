"""`mlsync apply` and `mlsync destroy`: plan (or check a saved plan), confirm, carry it out, summarise."""

from __future__ import annotations

import sys
from typing import Callable, Optional, TextIO

from mlsync.commands.output import EXIT_ERROR, EXIT_OK, render_plan


def apply(paths: list[str], options, out: TextIO, *, plan_file: Optional[str] = None, auto_approve: bool = False,
          parallelism: int = 4, timeout: float = 600.0, state_file: Optional[str] = None, destroy: bool = False,
          confirm: Optional[Callable[[], bool]] = None) -> int:
    """`mlsync apply` / `mlsync destroy` (`destroy=True`): plan (or check a saved plan), confirm, execute,
    summarise. Exit 0 when every change succeeded (or there was none), 1 otherwise."""
    from mlsync.commands import common

    if plan_file:
        saved = common.read_plan(plan_file)
        paths = list(saved.sources)
        destroy = destroy or saved.destroy
    desired = common.load_desired(paths)
    cluster = common.connect(options)
    store = common.state_store(cluster, state_file)
    planned = common.plan_for(desired, cluster, store, destroy=destroy)
    if plan_file:
        common.check_fresh(saved, planned)
    the_plan = planned.plan
    if not plan_file:
        out.write(render_plan(the_plan, "text", out))
    if not the_plan.has_changes:
        if plan_file:
            print("No changes. The cluster matches the file.", file=out)
        return EXIT_OK
    if not auto_approve and not plan_file:
        if confirm is None or not confirm():
            print("Apply cancelled (use --auto-approve to skip the question).", file=out)
            return EXIT_ERROR
    return _execute(the_plan, cluster, store, common.credentials(desired), out,
                    parallelism=parallelism, timeout=timeout)


def _execute(the_plan, cluster, store, credentials, out: TextIO, *, parallelism: int, timeout: float) -> int:
    """Carry out the plan with progress on stderr; the per-address summary goes to `out`, also when
    the apply aborts (the error is then raised on)."""
    from mlsync.run import driver, progress

    try:
        with progress.make_reporter(sys.stderr) as reporter:
            result = driver.apply(the_plan, cluster, store, credentials=credentials,
                                  parallelism=parallelism, timeout=timeout, reporter=reporter)
    except driver.ApplyAborted as err:
        for line in progress.summary_lines(err.result):
            print(line, file=out)
        raise
    for line in progress.summary_lines(result):
        print(line, file=out)
    return EXIT_OK if result.ok else EXIT_ERROR
