"""Carry out a Plan against a cluster (SPEC §4): the phases of one apply, in order.

  0. take the stack's lease (or run under the one the caller took and planned under: `locked`);
     resolve what an interrupted apply left in the journal (run/recovery.py)
  1. undeploys: models leaving deploy, deleted versions, and models whose connector is updated (the
     server refuses a connector update while a model using it is deployed)
  2. create / update / adopt / register, kind by kind in `kinds.APPLY_ORDER` (connectors, groups,
     model versions), in parallel up to `parallelism`; model versions of one group one at a time
     (the server's per-group version counter); waiting on their tasks happens inside (run/tasks.py)
  3. metadata fix-ups (fields the last chunk / URL registration drops)
  4. deploys and redeploys
  4b. consumers of models (pipelines PUT, agents registered or replaced, innermost first), their
     `${model:...}` references resolved to the ids now serving (docs/references.md)
  5. deletes, kind by kind in `kinds.DELETE_ORDER`; superseded versions right after the versions
     the file dropped, before their groups

A failure stops what depends on it and everything else still runs; the result lists per address
what was done. Each step is `mlsync.run.steps.STEPS[kind].actions[action]`; every non-idempotent
call is journaled first (run/journal.py), so a re-run after a crash adopts instead of duplicating.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import time
from functools import partial
from typing import Callable, Iterator, Optional

from mlsync.core import kinds, references
from mlsync.core.address import Address
from mlsync.core.errors import MlsyncError, StateConflict
from mlsync.core.kinds import Kind
from mlsync.core.observed import ClusterPort
from mlsync.core.plan import Action, Plan, ResourceChange
from mlsync.core.secrets import Secret
from mlsync.core.state import DEFAULT_LOCK_TTL, DELETE_REPLACED, StackState, StateStore, iso_time
from mlsync.run.context import Run, StepFailed, dependencies
from mlsync.run.journal import Journal
from mlsync.run.progress import NullReporter, Reporter
from mlsync.run.recovery import Recovery
from mlsync.run.results import ApplyAborted, ApplyResult
from mlsync.run.steps import STEPS, consumers, main_action, model, step_for
from mlsync.run.uploads import DEFAULT_UPLOAD_CONCURRENCY


def apply(plan: Plan, cluster: ClusterPort, store: StateStore, *,
          credentials: Optional[dict[str, dict[str, Secret]]] = None,
          parallelism: int = 4, timeout: float = 600.0, reporter: Optional[Reporter] = None,
          clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
          holder: Optional[str] = None, lock_ttl: float = DEFAULT_LOCK_TTL,
          request_body: Optional[Callable[..., dict]] = None, locked: Optional[StackState] = None,
          upload_concurrency: int = DEFAULT_UPLOAD_CONCURRENCY) -> ApplyResult:
    """Carry out `plan` on `cluster`, keeping the stack's state in `store` (see the module docstring).

    credentials: address string -> credential mapping (connectors, and models with an inline connector).
    timeout:     seconds per operation (one task, one wait for a model state).
    upload_concurrency: chunks of local model files in flight (and in memory) at once; a file's last
                 chunk always goes after all its others (mlsync.run.uploads).
    locked:      the state returned by `take_lease` when the caller already holds the stack's lease
                 (it planned under it): the apply runs under that lease instead of taking one, and
                 releases it at the end like its own (also when it raises before starting).
    Raises LockHeld when another apply holds the stack's lease, ApplyAborted when the lease is lost
    mid-way. Per-resource failures do not raise: they are in the returned ApplyResult.
    """
    try:
        if parallelism < 1:
            raise ValueError("parallelism must be at least 1")
        if upload_concurrency < 1:
            raise ValueError("upload_concurrency must be at least 1")
        if locked is not None and (locked.lock is None or locked.stack != plan.stack):
            raise ValueError(f"apply of stack {plan.stack!r} was handed a state that does not hold its lease")
        run = Run(plan, cluster, store, credentials or {}, parallelism=parallelism, timeout=timeout,
                  reporter=reporter or NullReporter(), clock=clock, sleep=sleep,
                  holder=holder or (locked.lock.holder if locked is not None and locked.lock else default_holder()),
                  lock_ttl=lock_ttl, request_body=request_body, upload_concurrency=upload_concurrency)
        run.journal = Journal(run)
        run.recovery = Recovery(run, run.journal)
    except BaseException:
        if locked is not None and locked.lock is not None:
            release_lease(store, locked)
        raise
    started = clock()
    with _holding_lease(run, started, locked):
        if run.state.carried_over:   # fingerprints re-keyed while planning: saved with the first write
            run.journal.later()
        run.recovery.resolve_all()
        _known_ids(run)
        _undeploys(run)
        for kind in kinds.APPLY_ORDER:
            if not kind.consumer:
                _create_or_update(run, kind)
        run.parallel(list(run.fixups), partial(model.fixup, run))
        _deploys(run)
        for kind in kinds.CONSUMERS:   # pipelines and agents move to the versions now serving
            _create_or_update(run, kind)
        run.journal.flush()
        for kind in kinds.DELETE_ORDER:
            _deletes(run, kind)
            run.journal.flush()
        run.check_alive()      # nothing is reported done after the lease or the poller was lost
        run.settle()
    run.result.elapsed = clock() - started
    return run.result


# ---------------------------------------------------------------------- phases

def _undeploys(run: Run) -> None:
    # Deleted versions go down here too, before any connector update: the server refuses to update a
    # connector while a model using it is deployed, even one this apply deletes later. A replaced
    # version keeps serving until its successor is registered, unless it uses a connector this apply
    # updates: then it goes down first, for the same reason.
    updated = {c.address.name for c in run.plan.changes if c.kind == "connector" and Action.UPDATE in c.actions}
    # A deleted version that no connector update forces down early is undeployed by its delete, after
    # the consumers that named it moved on (docs/references.md).
    run.parallel([c for c in run.plan.changes if Action.UNDEPLOY in c.actions and kinds.kind(c.kind).deployable
                  and ((Action.REPLACE not in c.actions and Action.DELETE not in c.actions)
                       or _connector_name(c.before) in updated)],
                 partial(model.undeploy, run))


def _create_or_update(run: Run, kind: Kind) -> None:
    items = [c for c in run.plan.changes
             if c.kind == kind.name and Action.DELETE not in c.actions and main_action(c) is not None]

    def one(change: ResourceChange) -> None:
        if not run.blocked(change):
            step_for(change, main_action(change))(run, change)

    _prepare_wave(run, items)
    if kind.name == "agent":
        _one_by_one(run, items, one)   # planned innermost first: an agent's id exists before agents naming it
    elif kind.one_at_a_time_per_group:
        by_group: dict[Optional[str], list[ResourceChange]] = {}
        for c in items:
            by_group.setdefault(c.address.group, []).append(c)
        run.parallel(list(by_group.values()), lambda changes: _one_by_one(run, changes, one))
    else:
        run.parallel(items, one)
    if kind.deployable:
        model.read_registered(run)   # the remote registrations' docs, in one read
    run.journal.unprepare()
    if not run.abort.is_set():
        run.journal.flush()
    if not kind.deployable and not run.abort.is_set():
        run.settle(items)      # deployable kinds are done after the deploy phase


def _prepare_wave(run: Run, items: list[ResourceChange]) -> None:
    """Save the intents of every non-idempotent call this phase will send in one write (run/journal.py)."""
    intents = []
    for change in items:
        intent_for = STEPS[change.kind].intent
        if intent_for is None:
            continue
        with run.mutex:
            known = str(change.address) in run.recovered or str(change.address) in run.failed
        found = None if known or dependencies(change) & run.failed else intent_for(run, change)
        if found is not None:
            intents.append((change, *found))
    run.journal.prepare(intents)


def _one_by_one(run: Run, changes: list[ResourceChange], fn: Callable[[ResourceChange], None]) -> None:
    for change in changes:
        if run.abort.is_set():
            return
        try:
            fn(change)
        except StepFailed:
            continue           # the next one does not depend on it


def _deploys(run: Run) -> None:
    def wants_deploy(c: ResourceChange) -> bool:
        return Action.DEPLOY in c.actions or bool(c.deploy and (Action.REGISTER in c.actions
                                                                 or Action.REPLACE in c.actions))
    deployable = [c for c in run.plan.changes if kinds.kind(c.kind).deployable and Action.DELETE not in c.actions]
    run.parallel([c for c in deployable if wants_deploy(c)], partial(model.deploy, run))
    model.settle_deploys(run)
    if not run.abort.is_set():
        run.settle(deployable)
        run.journal.record_deploy_states()


def _deletes(run: Run, kind: Kind) -> None:
    if run.abort.is_set():
        return
    items = [c for c in run.plan.changes if c.kind == kind.name and Action.DELETE in c.actions]
    run.parallel(items, partial(_delete_unless_needed, run))
    if not run.abort.is_set():
        run.settle(items)
    if (kind.deployable or kind.name == "agent") and not run.abort.is_set():
        with run.mutex:
            superseded = [j for j in run.state.journal if j.operation == DELETE_REPLACED
                          and Address.parse(j.address).kind == kind.name]
        kept = [j for j in superseded if _still_named(run, j.object_id)]
        for j in kept:
            run.result.warnings.append(f"{j.address}: kept the old {kind.name} {j.object_id}: "
                                       f"{', '.join(_still_named(run, j.object_id))} failed to move off it")
        superseded = [j for j in superseded if j not in kept]
        run.parallel(superseded, partial(consumers.retire_superseded if kind.name == "agent"
                                         else model.delete_superseded, run))


def _delete_unless_needed(run: Run, change: ResourceChange) -> None:
    """Delete, unless a delete that failed left something that still depends on it."""
    me = str(change.address)
    with run.mutex:
        blockers = sorted(addr for addr in run.failed
                          if addr in run.changes and Action.DELETE in run.changes[addr].actions
                          and me in dependencies(run.changes[addr]))
    if blockers:
        run.skip(change, f"{', '.join(blockers)} still exist(s) and depend(s) on it")
        return
    users = _still_named(run, change.server_id)
    if users:
        run.skip(change, f"{', '.join(users)} failed to move off it and still name(s) it")
        return
    step_for(change, Action.DELETE)(run, change)


# ---------------------------------------------------------------------- around the phases

def take_lease(store: StateStore, stack: str, *, holder: Optional[str] = None, lock_ttl: float = DEFAULT_LOCK_TTL,
               clock: Callable[[], float] = time.time) -> tuple[StackState, list[str]]:
    """Take the stack's lease (taking over a dead or expired one): the locked state, and a warning per
    lease taken over. For a caller that must plan under the lease and then `apply(..., locked=state)`."""
    taken_over: list = []
    state = store.lock(stack, holder or default_holder(), lock_ttl, on_takeover=taken_over.append)
    return state, [f"took over the {'expired' if old.expires <= clock() else 'dead'} lock of {old.holder} on "
                   f"{old.host} (since {iso_time(old.started)}); its interrupted operations are resolved first"
                   for old in taken_over]


def release_lease(store: StateStore, locked: StackState) -> Optional[str]:
    """Release the lease held in `locked` (only that one); a warning when it could not be released."""
    try:
        store.unlock(locked.stack, lock_id=locked.lock.lock_id if locked.lock else None)
    except MlsyncError as err:
        return f"could not release the lock: {err}"
    return None


@contextlib.contextmanager
def _holding_lease(run: Run, started: float, locked: Optional[StackState] = None) -> Iterator[None]:
    """Take the stack's lease (or use the one the caller took: `locked`), keep the task poller running,
    and release both however the apply ends; errors that stop the apply become ApplyAborted."""
    if locked is not None:
        run.state = locked
    else:
        run.state, warnings = take_lease(run.store, run.plan.stack, holder=run.holder, lock_ttl=run.lock_ttl,
                                         clock=run.clock)
        run.result.warnings.extend(warnings)
    lock_id = run.state.lock.lock_id if run.state.lock else None
    lease_lost = False
    died = False         # stopped by something that is not an error or an interrupt (a simulated kill)
    run.waiter.start()
    try:
        yield
    except StateConflict as err:
        lease_lost = True
        raise _aborted(run, started, f"{err} (another mlsync took over the stack's lock?)") from err
    except MlsyncError as err:   # e.g. the state could not be written: stop, keep the partial result
        raise _aborted(run, started, str(err)) from err
    except BaseException as err:
        died = not isinstance(err, (Exception, KeyboardInterrupt))
        run.abort.set()
        raise
    finally:
        run.waiter.stop()
        if not lease_lost and not died:
            with contextlib.suppress(MlsyncError):
                run.journal.flush()     # what the last phase learnt; on failure its intents stay to resolve
            try:
                run.store.unlock(run.plan.stack, lock_id=lock_id)
            except MlsyncError as err:
                run.result.warnings.append(f"could not release the lock: {err}")


def _aborted(run: Run, started: float, why: str) -> ApplyAborted:
    run.abort.set()
    run.result.elapsed = run.clock() - started
    return ApplyAborted(f"apply of stack {run.plan.stack!r} stopped: {why}", run.result)


def _known_ids(run: Run) -> None:
    """Ids of connectors and groups that model request bodies name (state first, then the plan)."""
    referenced = ("connector", "model_group")
    with run.mutex:
        for addr, rs in run.state.resources.items():
            if rs.kind in referenced:
                run.refs[addr] = rs.id
        for c in run.plan.changes:
            if c.kind in referenced and c.server_id and Action.DELETE not in c.actions:
                run.refs.setdefault(str(c.address), c.server_id)


def _still_named(run: Run, object_id: Optional[str]) -> list[str]:
    """Consumers whose change failed and whose body on the cluster still names `object_id`."""
    if not object_id:
        return []
    with run.mutex:
        failed = [run.changes[a] for a in sorted(run.failed) if a in run.changes]
    return [str(c.address) for c in failed if kinds.kind(c.kind).consumer and Action.DELETE not in c.actions
            and references.ids_used(c.before or {}, {object_id})]


def _connector_name(form: Optional[dict]) -> Optional[str]:
    """The standalone connector a model form uses (None for an inline one, or none)."""
    connector = (form or {}).get("connector")
    return connector if isinstance(connector, str) else None


def default_holder() -> str:
    """Who holds the lease: the user and the process."""
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        user = "unknown"
    return f"{user} (pid {os.getpid()})"


__all__ = ["apply", "take_lease", "release_lease", "default_holder", "ApplyAborted", "ApplyResult"]
