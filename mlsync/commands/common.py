"""The steps every command shares: load the files, reach the cluster and the state, make a plan,
and check that a saved plan still describes the cluster. No printing, no click."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, replace
from typing import Optional

from mlsync.core.desired import DesiredState
from mlsync.input.flatten import flatten, hash_local_files
from mlsync.core.errors import LeaseLost, MlsyncError, PlanError, StalePlan, StateConflict
from mlsync.core.observed import ClusterPort, Observed
from mlsync.core.plan import Plan
from mlsync.core.planner import PlanOptions, plan as make_plan
from mlsync.core.secrets import Secret
from mlsync.core.state import DEFAULT_LOCK_TTL, StackState


def load_desired(paths: list[str]) -> DesiredState:
    """Load, merge and validate the files (raises ConfigError with every problem), then flatten."""
    return _checked(paths).flatten()


@dataclass
class _Checked:
    """The files loaded and validated, their local model files hashed, the fingerprint keys checked:
    everything that can refuse the input has run. What is left (`flatten`) is pure and cannot."""
    loaded: object          # mlsync.input.LoadedConfig
    hashes: dict

    @property
    def stack(self) -> str:
        return self.loaded.stack.stack

    def flatten(self) -> DesiredState:
        loaded = self.loaded
        return flatten(loaded.stack, sources=tuple(loaded.sources), locate=_locator(loaded),
                       sensitive=loaded.source_map.sensitive, hashes=self.hashes)


def _checked(paths: list[str]) -> _Checked:
    """Every check of the input, before anything is sent (a bad input sends no request): load, merge
    and validate the files (ConfigError with every problem), hash their local model files (a file
    that cannot be read is a ConfigError too) and check the fingerprint keys in the environment."""
    from mlsync.input import load

    loaded = load(list(paths))
    hashes = hash_local_files(loaded.stack, locate=_locator(loaded))
    fingerprint_keys()
    return _Checked(loaded, hashes)


def _locator(loaded):
    def locate(path: tuple):
        try:
            pos = loaded.locate(path)
        except (KeyError, LookupError, AttributeError):
            return None
        if pos is None:
            return None
        if isinstance(pos, tuple):
            return pos
        return (getattr(pos, "file"), getattr(pos, "line"), getattr(pos, "column", getattr(pos, "col", 1)))
    return locate


def connect(options) -> ClusterPort:
    from mlsync.edge.cluster import Cluster

    return Cluster.connect(options)


def state_store(cluster: Optional[ClusterPort], state_file: Optional[str]):
    from mlsync.edge.statestore import ClusterStateStore, FileStateStore

    if state_file:
        return FileStateStore(state_file)
    if cluster is None:
        raise MlsyncError("no cluster connection and no --state-file")
    return ClusterStateStore(cluster)


@dataclass
class Planned:
    plan: Plan
    desired: DesiredState
    observed: Observed
    state: StackState


def plan_files(paths: list[str], options, state_file: Optional[str] = None, *, destroy: bool = False,
               allow_in_use: bool = False) -> Planned:
    """`load_desired`, `connect` and `plan_for` (plan, drift, graph), with the cluster's reads overlapped
    with `flatten`. Once every check of the input has run (`_checked`: nothing has been sent yet), the
    state is read here, then the cluster and the other stacks' objects are read in a thread (`_Reads`)
    while this thread flattens the files and carries the state's fingerprints over to this run's keys;
    then the plan is made as `plan_for` makes it. The order of
    the reads is `plan_for`'s: the state before the cluster (read the other way round, an apply that
    ended in between would leave an object in the state that the observation lacks, and the plan, at
    the newer serial, would create it again), the owners after it. The state is read before the
    thread starts, not in it: reading a state file is Python work that would only share the
    interpreter with `flatten` and hold back the cluster's reads (docs/performance.md §3).

    An error in the reads is raised here as `plan_for` raises it; an error or an interrupt meanwhile
    lets the read in flight end, starts no other, and waits for it: no thread outlives the command."""
    checked = _checked(paths)
    cluster = connect(options)
    store = state_store(cluster, state_file)
    loaded_state = store.load(checked.stack)
    reads = _Reads(checked.stack, cluster, store)
    try:
        desired = checked.flatten()
        state = with_fingerprint_keys(loaded_state or StackState(desired.stack), desired, destroy=destroy)
    except BaseException:
        reads.stop()
        raise
    observed, owners = reads.result()
    return _planned(desired, observed, state, owners, destroy=destroy, allow_in_use=allow_in_use)


class _Reads:
    """`cluster.observe()`, then `store.owners(stack)`, in a thread of their own (started here).
    `stop()` lets the read in flight end, starts no other and waits for it; `result()` waits and returns
    (observed, owners), or raises what a read raised."""

    def __init__(self, stack: str, cluster: ClusterPort, store) -> None:
        self._stopping = threading.Event()
        self._result: Optional[tuple] = None
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, args=(stack, cluster, store), name="mlsync-reads")
        self._thread.start()

    def _run(self, stack: str, cluster: ClusterPort, store) -> None:
        try:
            observed = cluster.observe()
            if not self._stopping.is_set():
                self._result = (observed, store.owners(stack))
        except BaseException as err:  # noqa: BLE001 — handed to the main thread by result()
            self._error = err

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()

    def result(self) -> tuple:
        try:
            self._thread.join()
        except BaseException:   # interrupted while waiting: start no further read
            self._stopping.set()
            raise
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        assert self._result is not None
        return self._result


def plan_for(desired: DesiredState, cluster: ClusterPort, store, *, destroy: bool = False,
             locked: Optional[StackState] = None, allow_in_use: bool = False) -> Planned:
    """Read the state and the cluster, and plan. `locked`: the state as this command's lease took it
    (`run.driver.take_lease`); it is planned from as it is, not read again. Its serial counts the
    lease's own write, so the plan's `state_serial` is the one before it: the serial a plan made
    without the lease (`plan -o`) would have recorded.

    The other stacks' objects (`store.owners`) are read after the cluster, so that an object another
    stack created before the observation is known as theirs: the plan fails rather than adopt it."""
    if locked is not None:
        state = with_fingerprint_keys(locked, desired, destroy=destroy)
        observed = cluster.observe()
        return _planned(desired, observed, state, store.owners(desired.stack), destroy=destroy,
                        allow_in_use=allow_in_use, serial=state.serial - 1)
    state = with_fingerprint_keys(store.load(desired.stack) or StackState(desired.stack), desired, destroy=destroy)
    observed = cluster.observe()
    return _planned(desired, observed, state, store.owners(desired.stack), destroy=destroy, allow_in_use=allow_in_use)


def _planned(desired: DesiredState, observed: Observed, state: StackState, owners, *, destroy: bool,
             allow_in_use: bool, serial: Optional[int] = None) -> Planned:
    options = PlanOptions(destroy=destroy, owners=owners, allow_in_use=allow_in_use)
    the_plan = make_plan(desired, observed, state, options)
    if serial is not None:
        the_plan = replace(the_plan, state_serial=serial)
    check_compatible(the_plan, desired)
    return Planned(the_plan, desired, observed, state)


FINGERPRINT_KEY_VARS = ("MLSYNC_FINGERPRINT_KEY", "MLSYNC_FINGERPRINT_KEY_PREVIOUS")


def with_fingerprint_keys(state: StackState, desired: DesiredState, *, destroy: bool = False) -> StackState:
    """`state` (changed in place) with this process's fingerprint keys (MLSYNC_FINGERPRINT_KEY and
    MLSYNC_FINGERPRINT_KEY_PREVIOUS, docs/security.md) and its stored fingerprints carried over to
    them where the file's values still match (`core.fingerprints`): a key or scheme change never
    looks like a changed credential. An apply saves the carried-over fingerprints."""
    from mlsync.core.fingerprints import carried_over

    state.external_key, state.previous_key = fingerprint_keys()
    try:
        keying = state.keying()
    except ValueError as err:
        raise MlsyncError(str(err)) from None
    if destroy:        # a destroy compares no fingerprint (and must not need the key)
        return state
    updated = carried_over(state, desired, keying)
    if updated:
        state.resources.update(updated)
        state.carried_over = frozenset(updated)
    return state


def fingerprint_keys() -> tuple[Optional[Secret], Optional[Secret]]:
    """(MLSYNC_FINGERPRINT_KEY, MLSYNC_FINGERPRINT_KEY_PREVIOUS) from the environment; MlsyncError when
    one is too short to be a key (checked with the input, before anything is sent)."""
    from mlsync.core.secrets import Keying

    key, previous = (Secret(value) if value else None
                     for value in (os.environ.get(name) for name in FINGERPRINT_KEY_VARS))
    try:
        Keying("", key, previous)
    except ValueError as err:
        raise MlsyncError(str(err)) from None
    return key, previous


def check_compatible(the_plan: Plan, desired: DesiredState) -> None:
    """Refuse, before anything is sent, what the cluster's ML Commons version would refuse (3.1+ safe
    names and descriptions, 3.2+ connector endpoints: mlsync/core/compat.py, docs/compatibility.md)."""
    from mlsync.core.compat import check

    problems = check(the_plan, desired)
    if problems:
        raise PlanError(problems)


def renew_lease(store, locked: StackState) -> None:
    """Renew the lease held in `locked` (after a confirmation prompt, however long it took). When the
    lease expired and someone else took it meanwhile, or the stack's state was written by anyone else,
    the renewal fails: raise LeaseLost, so that nothing planned under the old lease is carried out."""
    try:
        store.renew(locked, DEFAULT_LOCK_TTL)
    except StateConflict as err:
        raise LeaseLost(
            f"stack {locked.stack!r}: the lock this apply took before planning was lost while it waited for "
            f"confirmation (the lease expired and another mlsync took it, or it was force-unlocked); nothing "
            f"was changed; run the command again ({err})") from err


def credentials(desired: DesiredState) -> dict[str, dict[str, Secret]]:
    """address -> credential mapping, for the executor (connectors and inline connectors)."""
    return {str(r.address): r.credential for r in desired.resources.values() if r.credential}


def save_plan(plan: Plan, path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(plan.to_json(), f, indent=1, sort_keys=False)
        f.write("\n")


def read_plan(path: str) -> Plan:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return Plan.from_json(data)
    except (OSError, ValueError, KeyError) as err:
        raise MlsyncError(f"{path}: not a readable mlsync plan file ({err})") from None


def check_saved(saved: Plan, path: str) -> None:
    """Refuse, before reaching the cluster, a saved plan that cannot be checked: one without a digest
    (written by an mlsync older than plan format 1.2) or whose digest does not match its own values
    (the file was edited after `plan -o` wrote it)."""
    if saved.recorded_digest is None:
        raise StalePlan(f"the saved plan is stale ({path} carries no digest of its planned values: it was "
                        f"saved by an older mlsync, plan format 1.0 or 1.1, so what it would apply cannot be "
                        f"checked); run `mlsync plan -o {path}` again and review the new plan")
    if saved.recorded_digest != saved.digest():
        raise StalePlan(f"the saved plan is stale ({path} was changed after it was saved: its digest does not "
                        f"match its planned values); run `mlsync plan -o {path}` again and review the new plan")


def _differing(saved: Plan, now: Plan) -> list[str]:
    """Addresses whose planned values differ between the saved plan and the plan made now, in plan order."""
    before, after = saved.change_digests(), now.change_digests()
    order = [str(c.address) for c in saved.pending] + [str(c.address) for c in now.pending]
    return list(dict.fromkeys(a for a in order if before.get(a) != after.get(a)))


def check_fresh(saved: Plan, now: Planned) -> None:
    """Refuse a saved plan when anything it read changed, or when planning again would do otherwise.

    Run under the stack's lease (`now` planned under it): the touched objects' fingerprints
    (`_seq_no`/`_primary_term`), the state serial before the lease was taken, and the digest of every
    planned value must all be what the saved plan recorded."""
    current = now.observed.fingerprints()
    moved = sorted(i for i, fp in saved.observed_fingerprints.items() if current.get(i) != fp)
    problems = []
    if moved:
        by_id = {c.server_id: str(c.address) for c in saved.changes if c.server_id}
        problems.append("changed since the plan was made: " + ", ".join(by_id.get(i, i) for i in moved))
    if saved.state_serial is not None and saved.state_serial != now.plan.state_serial:
        problems.append(f"the stack's state moved from serial {saved.state_serial} to {now.plan.state_serial} "
                        "(an apply, import or state rm ran since)")
    if saved.recorded_digest is None:
        problems.append("the plan carries no digest of its planned values (saved by an older mlsync)")
    elif saved.recorded_digest != now.plan.digest():
        differ = _differing(saved, now.plan)
        problems.append("planning again now gives different values for " + ", ".join(differ) if differ
                        else "planning again now gives a different plan")
    if problems:
        raise StalePlan("the saved plan is stale (" + "; ".join(problems) + "); run `mlsync plan` again")
