"""`mlsync apply` and `mlsync destroy`: take the stack's lease, plan (or check a saved plan) under it,
confirm, carry it out under the same lease, summarise."""

from __future__ import annotations

import sys
from typing import Callable, Optional, TextIO

from mlsync.commands.output import EXIT_ERROR, EXIT_OK, render_plan


def apply(paths: list[str], options, out: TextIO, *, plan_file: Optional[str] = None, auto_approve: bool = False,
          parallelism: int = 4, timeout: float = 600.0, state_file: Optional[str] = None, destroy: bool = False,
          confirm: Optional[Callable[[], bool]] = None, allow_in_use: bool = False, upload_concurrency: int = 1) -> int:
    """`mlsync apply` / `mlsync destroy` (`destroy=True`): plan (or check a saved plan), confirm, execute,
    summarise. Exit 0 when every change succeeded (or there was none), 1 otherwise.

    What is applied is what was reviewed (SPEC §4), the Terraform way: the stack's lease is taken
    before the state and the cluster are read and held through the prompt, so no other apply can run
    between the plan shown and its execution; it is renewed after the prompt (a lease lost meanwhile
    stops the apply: LeaseLost), and the apply runs under it. A saved plan is checked under the lease
    (`common.check_fresh`). Whatever ends the command before the apply starts (no changes, cancelled,
    a stale plan, an error) releases the lease."""
    from mlsync.commands import common
    from mlsync.core.errors import LeaseLost
    from mlsync.run import driver

    if plan_file:
        saved = common.read_plan(plan_file)
        common.check_saved(saved, plan_file)
        paths = list(saved.sources)
        destroy = destroy or saved.destroy
    desired = common.load_desired(paths)
    cluster = common.connect(options)
    store = common.state_store(cluster, state_file)
    locked, took_over = driver.take_lease(store, desired.stack)
    handed_over = False
    try:
        for warning in took_over:
            print(f"warning: {warning}", file=out)
        planned = common.plan_for(desired, cluster, store, destroy=destroy, locked=locked, allow_in_use=allow_in_use)
        if plan_file:
            common.check_fresh(saved, planned)
        the_plan = planned.plan
        if not plan_file:
            out.write(render_plan(the_plan, "text", out))
        if not the_plan.has_changes:
            if locked.carried_over:     # fingerprints re-keyed (a new scheme or key): keep them
                store.save(locked)
            if plan_file:
                print("No changes. The cluster matches the file.", file=out)
            return EXIT_OK
        if not auto_approve and not plan_file:
            if confirm is None or not confirm():
                print("Apply cancelled (use --auto-approve to skip the question).", file=out)
                return EXIT_ERROR
            try:
                common.renew_lease(store, locked)  # the prompt may have outlasted the lease
            except LeaseLost:
                handed_over = True                 # someone else's lease now: nothing of ours to release
                raise
        handed_over = True
        return _execute(the_plan, cluster, store, common.credentials(desired), out,
                        parallelism=parallelism, timeout=timeout, locked=locked,
                        upload_concurrency=upload_concurrency)
    finally:
        if not handed_over:
            problem = driver.release_lease(store, locked)
            if problem:
                print(f"warning: {problem}", file=sys.stderr)


def _execute(the_plan, cluster, store, credentials, out: TextIO, *, parallelism: int, timeout: float,
             locked=None, upload_concurrency: int = 1) -> int:
    """Carry out the plan with progress on stderr, under the lease in `locked` (the driver releases it);
    the per-address summary goes to `out`, also when the apply aborts (the error is then raised on)."""
    from mlsync.run import driver, progress

    try:
        with progress.make_reporter(sys.stderr) as reporter:
            result = driver.apply(the_plan, cluster, store, credentials=credentials,
                                  parallelism=parallelism, timeout=timeout, reporter=reporter, locked=locked,
                                  upload_concurrency=upload_concurrency)
    except driver.ApplyAborted as err:
        for line in progress.summary_lines(err.result):
            print(line, file=out)
        raise
    for line in progress.summary_lines(result):
        print(line, file=out)
    return EXIT_OK if result.ok else EXIT_ERROR
