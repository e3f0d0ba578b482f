"""What one apply shares between its phases, and the few primitives every step uses.

`Run` holds the plan, the ports (cluster, state store), the stack's state, the result being built and
the bookkeeping that lets a failure stop exactly what depends on it. Its primitives: run one named
step of a change (`step`), record a failure (`fail`), skip what depends on a failure (`blocked`), run
items in parallel up to `parallelism` (`parallel`), re-send an idempotent call after an ambiguous
failure (`retry`). The journal (`mlsync.run.journal`) and the step functions (`mlsync.run.steps`)
build on these; the phase order is `mlsync.run.driver`'s.
"""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional

from mlsync.core import normalize
from mlsync.core.address import Address
from mlsync.core.errors import ClusterError, MlsyncError, StateConflict
from mlsync.core.observed import ClusterPort
from mlsync.core.plan import Action, Plan, Reason, ResourceChange
from mlsync.core.polling import RESEND
from mlsync.core.secrets import Secret
from mlsync.core.state import StackState, StateStore
from mlsync.run.progress import Reporter
from mlsync.run.results import ApplyAborted, ApplyResult, ResourceResult, describe_error
from mlsync.run.tasks import ApplyStopping, TaskWaiter

if TYPE_CHECKING:  # pragma: no cover
    from mlsync.run.journal import Journal
    from mlsync.run.recovery import Recovery

RETRIES = 3                      # re-sends after an ambiguous failure (each preceded by a re-observe)


class StateWriteFailed(MlsyncError):
    """The stack's state could not be saved: nothing non-idempotent may run without its journal."""


class StepFailed(Exception):
    """A step failed and was recorded; stop this resource's chain."""


# Failures that stop the whole apply, not one resource.
FATAL = (StateConflict, ApplyAborted, ApplyStopping, StateWriteFailed)


def dependencies(change: ResourceChange) -> set[str]:
    """Addresses a change needs to exist: the plan's depends_on plus what the address implies."""
    deps = set(change.depends_on)
    a = change.address
    if a.kind == "model" and a.group is not None:
        deps.add(str(Address("model_group", a.group)))
    for form in (change.after, change.before):
        if form and isinstance(form.get("connector"), str):
            deps.add(str(Address("connector", form["connector"])))
    deps.discard(str(a))
    return deps


class Run:
    def __init__(self, plan: Plan, cluster: ClusterPort, store: StateStore, credentials: dict[str, dict[str, Secret]],
                 *, parallelism: int, timeout: float, reporter: Reporter, clock: Callable[[], float],
                 sleep: Callable[[float], None], holder: str, lock_ttl: float,
                 request_body: Optional[Callable[..., dict]], upload_concurrency: int = 1) -> None:
        self.plan, self.cluster, self.store, self.credentials = plan, cluster, store, credentials
        self.parallelism, self.timeout, self.reporter = parallelism, timeout, reporter
        self.upload_concurrency = upload_concurrency   # chunks in flight (run/uploads.py) ...
        self.chunk_slots = threading.Semaphore(upload_concurrency)   # ... and in memory, for the whole apply
        self.clock, self.sleep, self.holder, self.lock_ttl = clock, sleep, holder, lock_ttl
        self.body_fn = request_body or normalize.request_body
        self.result = ApplyResult(plan.stack)
        for c in plan.changes:
            if not c.is_noop:
                self.result.resources[str(c.address)] = ResourceResult(str(c.address), tuple(a.value for a in c.actions))
        self.changes = {str(c.address): c for c in plan.changes}
        self.failed: set[str] = set()
        self.abort = threading.Event()
        self.mutex = threading.RLock()          # guards state, refs, ids, results
        self.state: StackState = StackState(plan.stack)   # replaced by the locked state when the apply starts
        self.refs: dict[str, str] = {}          # connector / group address -> id, for request bodies
        self.model_ids: dict[str, str] = {}     # model address -> the id to deploy / fix up
        self.recovered: dict[str, tuple[str, Optional[str]]] = {}   # address -> (id, form digest) from the journal
        self.fixups: list[tuple[ResourceChange, str, dict]] = []
        # remote registrations answered with their id, read back together after their phase (model.read_registered)
        self.unread: list[tuple] = []
        self.settling: list[tuple] = []   # (change, model id) of remote models deployed, whose docs may still read DEPLOYING (model.settle_deploys)
        self.undeployed: set[str] = set()
        self.waiter = TaskWaiter(cluster, clock=clock, sleep=sleep, timeout=timeout, reporter=reporter,
                                 on_poll=self.renew_if_due)
        self.journal: "Journal"                 # set by the driver (they need the run themselves)
        self.recovery: "Recovery"

    # ------------------------------------------------------------------ results and failures

    def result_of(self, change: ResourceChange) -> ResourceResult:
        addr = str(change.address)
        with self.mutex:
            rr = self.result.resources.get(addr)
            if rr is None:
                rr = self.result.resources[addr] = ResourceResult(addr, tuple(a.value for a in change.actions))
            return rr

    def change_at(self, address: str, reason: str, code: Reason) -> ResourceChange:
        """The plan's change for `address`, or a no-op standing in for work the plan does not list
        (resuming an interrupted operation, deleting a superseded version)."""
        return self.changes.get(address) or ResourceChange(Address.parse(address), (Action.NOOP,), reason,
                                                           reason_codes=(code,))

    def fail(self, change: ResourceChange, step: str, err: BaseException, status: str = "failed") -> None:
        rr = self.result_of(change)
        text = describe_error(err) if status == "failed" else str(err)
        if status == "failed" and not isinstance(err, ClusterError):   # a ClusterError names its operation
            text = f"{step}: {text}"
        with self.mutex:
            self.failed.add(str(change.address))
            rr.status = status if rr.status != "failed" else "failed"
            rr.error = text if not rr.error else f"{rr.error}; {text}"

    def give_up(self, change: ResourceChange, step: str, message: str) -> StepFailed:
        """Record a failure that has no exception behind it; raise what this returns."""
        self.fail(change, step, MlsyncError(message))
        return StepFailed()

    def server_id(self, change: ResourceChange, step: str) -> str:
        """The id this change acts on (see current_id); a change without one fails this step."""
        found = self.current_id(change)
        if found is None:
            raise self.give_up(change, step, f"no server id to {step}")
        return found

    def skip(self, change: ResourceChange, why: str) -> None:
        err = MlsyncError(f"not attempted: {why}")
        self.fail(change, "skip", err, status="skipped")
        self.reporter.on_error(change, "skip", err)

    def blocked(self, change: ResourceChange) -> bool:
        """True (and recorded as skipped) when something this change needs failed."""
        with self.mutex:
            if str(change.address) in self.failed:
                return True   # already reported (e.g. its interrupted operation could not be resolved)
            bad = sorted(dependencies(change) & self.failed)
        if bad:
            self.skip(change, f"depends on {', '.join(bad)}, which failed")
        return bool(bad)

    def settle(self, changes: Optional[Iterable[ResourceChange]] = None) -> None:
        """The last phase of these changes (None: of every result) is over: what did not fail is done."""
        with self.mutex:
            results = (self.result.resources.values() if changes is None else
                       [self.result.resources.get(str(c.address)) for c in changes])
            for rr in results:
                if rr is not None and rr.status == "pending":
                    rr.status = "done"

    # ------------------------------------------------------------------ running steps

    def step(self, change: ResourceChange, step: str, fn: Callable[[], Any],
             describe: Optional[Callable[[Any], Optional[str]]] = None) -> Any:
        """Run one named step of a change: timed, reported, and on failure recorded (StepFailed)."""
        self.check_alive()
        rr = self.result_of(change)
        t0 = self.clock()
        self.reporter.on_start(change, step)
        try:
            value = fn()
        except (*FATAL, StepFailed):
            raise
        except Exception as err:  # noqa: BLE001 - one resource's failure never stops the others
            with self.mutex:
                rr.elapsed += self.clock() - t0
            self.fail(change, step, err)
            self.reporter.on_error(change, step, err)
            raise StepFailed() from err
        elapsed = self.clock() - t0
        with self.mutex:
            rr.elapsed += elapsed
            rr.steps.append(step)
        self.reporter.on_done(change, step, elapsed, describe(value) if describe else None)
        return value

    def parallel(self, items: list, fn: Callable[[Any], None]) -> None:
        """fn(item) for every item, up to `parallelism` at once; a step failure stays with its item,
        anything else (a lost lease, an interrupt) stops every worker at once."""
        if not items or self.abort.is_set():
            return

        def guarded(item: Any) -> None:
            if self.abort.is_set():
                return
            try:
                fn(item)
            except StepFailed:
                pass
            except ApplyStopping:
                self.check_alive()      # a stop with a cause behind it is that cause

        workers = min(self.parallelism, len(items))
        if workers == 1:
            for item in items:
                guarded(item)
            return
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mlsync-apply") as pool:
            futures = [pool.submit(guarded, item) for item in items]
            try:
                done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                for f in done:
                    if f.exception() is not None:
                        raise f.exception()
                for f in futures:
                    f.result()
            except BaseException:
                self.abort.set()
                self.waiter.stop()    # wake workers blocked on tasks, or the pool would wait for them
                raise

    def retry(self, call: Callable[[], Any]) -> Any:
        """An idempotent call, re-sent after an ambiguous failure (no response, 5xx)."""
        attempt = 0
        while True:
            try:
                return call()
            except ClusterError as err:
                # err.attempts > 1: the transport already re-sent it until its own deadline
                if not err.ambiguous or err.attempts > 1 or attempt >= RETRIES or self.abort.is_set():
                    raise
                attempt += 1
                self.sleep(RESEND.delay(attempt))

    def check_alive(self) -> None:
        """Raise what stopped the apply: the poller's fatal error (a failed lease renewal) or a stop."""
        if self.waiter.fatal is not None:
            raise self.waiter.fatal
        if self.abort.is_set():
            raise ApplyStopping()

    def renew_if_due(self) -> None:
        """Extend the lease when half of it has run out (called between polls and chunks)."""
        with self.mutex:
            lock = self.state.lock
            if lock is not None and self.clock() > lock.expires - self.lock_ttl / 2:
                try:
                    self.store.renew(self.state, self.lock_ttl)
                except StateConflict:
                    raise
                except MlsyncError as err:
                    raise StateWriteFailed(f"could not renew the lock of stack {self.plan.stack!r}: {err}") from err

    # ------------------------------------------------------------------ request bodies and ids

    def body(self, change: ResourceChange, *, update: bool = False) -> dict:
        """The request body for a change (refs resolved, credential attached); a failure is the change's."""
        try:
            return self._build_body(change, update)
        except Exception as err:  # noqa: BLE001
            self.fail(change, "prepare", MlsyncError(f"cannot build the request body: {describe_error(err)}"))
            self.reporter.on_error(change, "prepare", err)
            raise StepFailed() from err

    def quiet_body(self, change: ResourceChange) -> Optional[dict]:
        """The request body, or None when it cannot be built (the step itself then reports why)."""
        try:
            return self._build_body(change, False)
        except Exception:  # noqa: BLE001
            return None

    def _build_body(self, change: ResourceChange, update: bool) -> dict:
        cred = self.credentials.get(str(change.address))
        with self.mutex:
            refs = dict(self.refs)
        if change.kind == "connector":
            return self.body_fn(change, refs=refs, credential=cred, update=update)
        if change.kind == "model":
            return self.body_fn(change, refs=refs, inline_credential=cred, update=update)
        return self.body_fn(change, refs=refs, update=update)

    @staticmethod
    def after_digest(change: ResourceChange) -> Optional[str]:
        """The fingerprint of the form this change applies (what the state records as applied)."""
        return normalize.digest(change.after) if change.after is not None else None

    def current_id(self, change: ResourceChange) -> Optional[str]:
        """The id this apply registered for the address, else the plan's, else the state's."""
        addr = str(change.address)
        with self.mutex:
            if addr in self.model_ids:
                return self.model_ids[addr]
            rs = self.state.resources.get(addr)
        return change.server_id or (rs.id if rs else None)
