"""Carry out a Plan against a cluster (SPEC §4), journaling every non-idempotent call.

Order of one apply:

  0. take the stack's lease lock; resolve journal entries an interrupted apply left behind
  a. undeploys (models leaving deploy, and undeploy -> update connector -> redeploy: the server
     refuses a connector update while a model using it is deployed)
  b. connectors: create / update / adopt                         (parallel)
  c. model groups: create / update / adopt                       (parallel)
  d. model versions: register / replace / update / adopt: one group's versions strictly one at a
     time (the server's per-group version counter conflicts otherwise, and for URL registrations
     the bump happens inside the async task, so the next version waits for the previous task);
     different groups in parallel, up to `parallelism`
  e. waiting: every register/deploy task of the apply is polled by one poller, one
     `search_tasks(ids)` per poll for all of them, back-off 0.2 s -> 2 s, a deadline per task
  f. metadata fix-ups: fields the last chunk / URL registration drops, re-applied with Update Model
  g. deploys (and redeploys)
  h. deletes in reverse dependency order: undeploy if deployed, delete model versions (and the old
     versions that a replace superseded), then groups, then connectors

A failure stops what depends on it (a model whose connector could not be created, the deploy of a
model whose register task FAILED) and everything else still runs; the result lists per address
what was done, the ids and server version numbers, and the errors.

Crash safety: before create_connector / create_group / register_model / register_model_meta a
`JournalEntry` (intent) is saved in the stack's state; the task id / model id is saved as soon as
it is known. The next apply resolves leftover entries first (looks the task up, or finds the
object by natural key) and adopts what the interrupted call created instead of creating it twice.
An ambiguous failure (no response, 5xx) re-observes the same way before it re-sends.
"""

from __future__ import annotations

import copy
import getpass
import hashlib
import math
import os
import threading
import time
import uuid
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any, Callable, Iterable, Optional

from mlsync.core.address import Address
from mlsync.run.results import ApplyAborted, ApplyResult, ResourceResult, describe_error
from mlsync.core.errors import ClusterError, MlsyncError, StateConflict, TaskFailed, TaskTimeout
from mlsync.core.observed import ClusterPort
from mlsync.core.plan import Action, Plan, ResourceChange
from mlsync.run.progress import NullReporter, Reporter
from mlsync.core.secrets import Secret, fingerprint as keyed_fingerprint
from mlsync.run.tasks import POLL_FACTOR, POLL_INITIAL, POLL_MAX, TASK_FAILED_STATES, ApplyStopping, TaskWaiter
from mlsync.core.state import DEFAULT_LOCK_TTL, JournalEntry, ResourceState, StackState, StateStore, iso_time

CHUNK_SIZE = 10_000_000          # upload_chunk slice size (the server's maximum)
RETRIES = 3                      # re-sends after an ambiguous failure (each preceded by a re-observe)
CREATED_SKEW = 30.0              # seconds of clock skew tolerated when matching "created after the intent"
# One definition of these ML Commons facts, shared with the planner:
from mlsync.core.normalize import (  # noqa: E402
    DEPLOYED_STATES, MODEL_FIXUP_FIELDS as FIXUP_FIELDS, MODEL_UPDATE_FUNCTIONS as UPDATABLE_FUNCTIONS)

DELETE_REPLACED = "delete_replaced"   # journal operation: an old version a replace superseded, still to delete


class _StateWriteFailed(MlsyncError):
    """The stack's state could not be saved: nothing non-idempotent may run without its journal."""


class _StepFailed(Exception):
    """Internal: a step failed and was recorded; stop this resource's chain."""


_FATAL = (StateConflict, ApplyAborted, ApplyStopping, _StateWriteFailed)


def _deps(change: ResourceChange) -> set[str]:
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


def _connector_name(form: Optional[dict]) -> Optional[str]:
    """The standalone connector a model form uses (None for an inline one, or none)."""
    connector = (form or {}).get("connector")
    return connector if isinstance(connector, str) else None


def _default_holder() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        user = "unknown"
    return f"{user} (pid {os.getpid()})"


# --------------------------------------------------------------------------- the apply


def apply(plan: Plan, cluster: ClusterPort, store: StateStore, *,
          credentials: Optional[dict[str, dict[str, Secret]]] = None,
          parallelism: int = 4, timeout: float = 600.0, reporter: Optional[Reporter] = None,
          clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
          holder: Optional[str] = None, lock_ttl: float = DEFAULT_LOCK_TTL,
          request_body: Optional[Callable[..., dict]] = None) -> ApplyResult:
    """Carry out `plan` on `cluster`, keeping the stack's state in `store` (see the module docstring).

    credentials: address string -> credential mapping (connectors, and models with an inline connector).
    timeout:     seconds per operation (one task, one wait for a model state).
    Raises LockHeld when another apply holds the stack's lease, ApplyAborted when the lease is lost
    mid-way. Per-resource failures do not raise: they are in the returned ApplyResult.
    """
    if parallelism < 1:
        raise ValueError("parallelism must be at least 1")
    return _Run(plan, cluster, store, credentials or {}, parallelism, timeout, reporter or NullReporter(),
                clock, sleep, holder or _default_holder(), lock_ttl, request_body).execute()


class _Run:
    def __init__(self, plan: Plan, cluster: ClusterPort, store: StateStore, credentials: dict,
                 parallelism: int, timeout: float, reporter: Reporter, clock: Callable[[], float],
                 sleep: Callable[[float], None], holder: str, lock_ttl: float,
                 request_body: Optional[Callable[..., dict]]) -> None:
        from mlsync.core import normalize  # lazily: keeps `import mlsync.run.driver` light

        self.plan, self.cluster, self.store, self.credentials = plan, cluster, store, credentials
        self.parallelism, self.timeout, self.reporter = parallelism, timeout, reporter
        self.clock, self.sleep, self.holder, self.lock_ttl = clock, sleep, holder, lock_ttl
        self.body_fn = request_body or normalize.request_body
        self.digest = normalize.digest
        self.result = ApplyResult(plan.stack)
        for c in plan.changes:
            if not c.is_noop:
                self.result.resources[str(c.address)] = ResourceResult(str(c.address), tuple(a.value for a in c.actions))
        self.changes = {str(c.address): c for c in plan.changes}
        self.failed: set[str] = set()
        self.abort = threading.Event()
        self.mutex = threading.RLock()          # guards state, refs, results
        self.state: StackState
        self.refs: dict[str, str] = {}
        self.model_ids: dict[str, str] = {}     # address -> model id to deploy / fix up
        self.recovered: dict[str, tuple[str, Optional[str]]] = {}   # address -> (id, form digest) from the journal
        self.fixups: list[tuple[ResourceChange, str, dict]] = []
        self.undeployed: set[str] = set()
        self.waiter = TaskWaiter(cluster, clock=clock, sleep=sleep, timeout=timeout, reporter=reporter,
                                 on_poll=self._renew_if_due)

    # ------------------------------------------------------------------ driver

    def execute(self) -> ApplyResult:
        started = self.clock()
        taken_over: list = []
        self.state = self.store.lock(self.plan.stack, self.holder, self.lock_ttl, on_takeover=taken_over.append)
        for old in taken_over:
            self.result.warnings.append(
                f"took over the {'expired' if old.expires <= self.clock() else 'dead'} lock of {old.holder} on "
                f"{old.host} (since {iso_time(old.started)}); "
                f"its interrupted operations are resolved first")
        lock_id = self.state.lock.lock_id if self.state.lock else None
        lease_lost = False
        self.waiter.start()
        try:
            self._resolve_journal()
            self._build_refs()
            self._phase_undeploys()
            self._phase_simple("connector")
            self._phase_simple("model_group")
            self._phase_models()
            self._phase_fixups()
            self._phase_deploys()
            self._phase_deletes()
            for r in self.result.resources.values():
                if r.status == "pending":
                    r.status = "done"
        except StateConflict as err:
            lease_lost = True
            self.abort.set()
            self.result.elapsed = self.clock() - started
            raise ApplyAborted(f"apply of stack {self.plan.stack!r} stopped: {err} (another mlsync took over "
                               f"the stack's lock?)", self.result) from err
        except MlsyncError as err:   # e.g. the state could not be written: stop, keep the partial result
            self.abort.set()
            self.result.elapsed = self.clock() - started
            raise ApplyAborted(f"apply of stack {self.plan.stack!r} stopped: {err}", self.result) from err
        except BaseException:
            self.abort.set()
            raise
        finally:
            self.waiter.stop()
            if not lease_lost:
                try:
                    self.store.unlock(self.plan.stack, lock_id=lock_id)
                except MlsyncError as err:
                    self.result.warnings.append(f"could not release the lock: {err}")
        self.result.elapsed = self.clock() - started
        return self.result

    # ------------------------------------------------------------------ state and journal

    def _save(self) -> None:
        """Save the state (caller holds the mutex), extending the lease on the way when it is due."""
        lock = self.state.lock
        if lock is not None and self.clock() > lock.expires - self.lock_ttl / 2:
            lock.expires = self.clock() + self.lock_ttl
        try:
            self.store.save(self.state)
        except StateConflict:
            raise
        except MlsyncError as err:
            raise _StateWriteFailed(f"could not save the state of stack {self.plan.stack!r}: {err}") from err

    def _renew_if_due(self) -> None:
        with self.mutex:
            lock = self.state.lock
            if lock is not None and self.clock() > lock.expires - self.lock_ttl / 2:
                try:
                    self.store.renew(self.state, self.lock_ttl)
                except StateConflict:
                    raise
                except MlsyncError as err:
                    raise _StateWriteFailed(f"could not renew the lock of stack {self.plan.stack!r}: {err}") from err

    def _intent(self, change: ResourceChange, operation: str, details: dict) -> JournalEntry:
        entry = JournalEntry(op_id=uuid.uuid4().hex, address=str(change.address), operation=operation,
                             started=self.clock(), details=details)
        with self.mutex:
            self.state.journal.append(entry)
            self._save()
        return entry

    def _sent(self, entry: JournalEntry, *, task_id: Optional[str] = None, object_id: Optional[str] = None) -> None:
        with self.mutex:
            entry.status = "sent"
            entry.task_id = task_id or entry.task_id
            entry.object_id = object_id or entry.object_id
            self._save()

    def _drop(self, entry: JournalEntry, save: bool = True) -> None:
        with self.mutex:
            self.state.journal = [j for j in self.state.journal if j.op_id != entry.op_id]
            if save:
                self._save()

    def _record(self, change: ResourceChange, object_id: str, *, server_version: Optional[str] = None,
                applied: Optional[str] = None, cred_fp: Optional[str] = None, drop: Optional[JournalEntry] = None,
                replaced: Optional[str] = None) -> None:
        """Record the address as managed (and close its journal entry) in one save."""
        addr = str(change.address)
        with self.mutex:
            prev = self.state.resources.get(addr)
            self.state.resources[addr] = ResourceState(
                address=addr, kind=change.address.kind, id=object_id, server_version=server_version,
                applied_fingerprint=applied, credential_fingerprint=cred_fp,
                applied_form=self._applied_form(change, applied),
                applied_deploy=prev.applied_deploy if prev is not None and prev.id == object_id else None)
            if drop is not None:
                self._drop(drop, save=False)
            if replaced and replaced != object_id and not any(
                    j.operation == DELETE_REPLACED and j.object_id == replaced for j in self.state.journal):
                self.state.journal.append(JournalEntry(
                    op_id=uuid.uuid4().hex, address=addr, operation=DELETE_REPLACED, started=self.clock(),
                    status="sent", object_id=replaced, details={"reason": "superseded by " + object_id}))
            self._save()
            rr = self.result.resources.get(addr)
            if rr is not None:
                rr.id, rr.server_version = object_id, server_version
                if replaced and replaced != object_id:
                    rr.replaced_id = replaced
            if change.address.kind in ("connector", "model_group"):
                self.refs[addr] = object_id
            else:
                self.model_ids[addr] = object_id

    def _applied_form(self, change: ResourceChange, applied: Optional[str]) -> Optional[dict]:
        """The form just applied, kept so that `mlsync drift` can tell cluster edits from file edits."""
        if applied is None or change.after is None or applied != self.digest(change.after):
            return None
        return copy.deepcopy(change.after)

    def _record_deploy_states(self) -> None:
        """After the deploy phase: the deploy state the file asked for is what each model that did not
        fail now has (what `mlsync drift` compares a changed deploy flag against)."""
        with self.mutex:
            dirty = False
            for c in self.plan.changes:
                rs = self.state.resources.get(str(c.address))
                if (c.kind != "model" or Action.DELETE in c.actions or str(c.address) in self.failed or rs is None
                        or rs.applied_deploy == bool(c.deploy)):
                    continue
                rs.applied_deploy = bool(c.deploy)
                dirty = True
            if dirty:
                self._save()

    def _forget(self, address: str) -> None:
        with self.mutex:
            if self.state.resources.pop(address, None) is not None:
                self._save()

    def _cred_fp(self, change: ResourceChange, cred: Optional[dict]) -> Optional[str]:
        """The keyed fingerprint of the credential just sent (keyed with this state's key); when none was
        sent, whatever the state already recorded."""
        if cred:
            return keyed_fingerprint(cred, self.state.fingerprint_key)
        with self.mutex:
            rs = self.state.resources.get(str(change.address))
        return rs.credential_fingerprint if rs else None

    # ------------------------------------------------------------------ steps and failures

    def _rr(self, change: ResourceChange) -> ResourceResult:
        addr = str(change.address)
        with self.mutex:
            rr = self.result.resources.get(addr)
            if rr is None:
                rr = self.result.resources[addr] = ResourceResult(addr, tuple(a.value for a in change.actions))
            return rr

    def _fail(self, change: ResourceChange, step: str, err: BaseException, status: str = "failed") -> None:
        rr = self._rr(change)
        text = describe_error(err) if status == "failed" else str(err)
        if status == "failed" and not isinstance(err, ClusterError):   # a ClusterError names its operation
            text = f"{step}: {text}"
        with self.mutex:
            self.failed.add(str(change.address))
            rr.status = status if rr.status != "failed" else "failed"
            rr.error = text if not rr.error else f"{rr.error}; {text}"

    def _step(self, change: ResourceChange, step: str, fn: Callable[[], Any],
              describe: Optional[Callable[[Any], Optional[str]]] = None) -> Any:
        if self.abort.is_set():
            raise ApplyStopping()
        rr = self._rr(change)
        t0 = self.clock()
        self.reporter.on_start(change, step)
        try:
            value = fn()
        except (*_FATAL, _StepFailed):
            raise
        except Exception as err:  # noqa: BLE001 - one resource's failure never stops the others
            with self.mutex:
                rr.elapsed += self.clock() - t0
            self._fail(change, step, err)
            self.reporter.on_error(change, step, err)
            raise _StepFailed() from err
        elapsed = self.clock() - t0
        with self.mutex:
            rr.elapsed += elapsed
            rr.steps.append(step)
        self.reporter.on_done(change, step, elapsed, describe(value) if describe else None)
        return value

    def _settle(self, changes: Iterable[ResourceChange]) -> None:
        """The last phase of these changes is over: what did not fail is done."""
        with self.mutex:
            for c in changes:
                rr = self.result.resources.get(str(c.address))
                if rr is not None and rr.status == "pending":
                    rr.status = "done"

    def _blocked(self, change: ResourceChange) -> bool:
        with self.mutex:
            if str(change.address) in self.failed:
                return True   # already reported (e.g. its interrupted operation could not be resolved)
            bad = sorted(_deps(change) & self.failed)
        if not bad:
            return False
        err = MlsyncError(f"not attempted: depends on {', '.join(bad)}, which failed")
        self._fail(change, "skip", err, status="skipped")
        self.reporter.on_error(change, "skip", err)
        return True

    def _parallel(self, items: list, fn: Callable[[Any], None]) -> None:
        if not items or self.abort.is_set():
            return

        def guarded(item: Any) -> None:
            if self.abort.is_set():
                return
            try:
                fn(item)
            except (_StepFailed, ApplyStopping):
                pass

        workers = min(self.parallelism, len(items))
        if workers == 1:
            for item in items:
                guarded(item)
            return
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mlsync-apply") as pool:
            futures = [pool.submit(guarded, item) for item in items]
            try:
                # the first failure that escapes a worker (a lost lease, an interrupt, a crash) stops
                # everything at once, whatever the other workers are waiting for
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

    def _retry(self, call: Callable[[], Any]) -> Any:
        """An idempotent call, re-sent after an ambiguous failure (no response, 5xx)."""
        attempt = 0
        while True:
            try:
                return call()
            except ClusterError as err:
                if not err.ambiguous or attempt >= RETRIES or self.abort.is_set():
                    raise
                attempt += 1
                self.sleep(min(POLL_INITIAL * (2 ** attempt), POLL_MAX))

    def _nonidempotent(self, change: ResourceChange, operation: str, details: dict, call: Callable[[], Any],
                       lookup: Callable[[JournalEntry], Optional[str]]) -> tuple[Any, JournalEntry, bool]:
        """Journal the intent, send, and after an ambiguous failure look for what the call may have
        created (`lookup`) before sending again. Returns (result, entry, found_by_lookup)."""
        entry = self._intent(change, operation, details)
        attempt = 0
        while True:
            try:
                return call(), entry, False
            except ClusterError as err:
                if not err.ambiguous:
                    self._drop(entry)   # a clear refusal: nothing was created
                    raise
                if attempt >= RETRIES or self.abort.is_set():
                    raise              # the intent stays in the journal: the next apply looks again
                attempt += 1
                self.sleep(min(POLL_INITIAL * (2 ** attempt), POLL_MAX))
                found = lookup(entry)
                if found is not None:
                    return found, entry, True

    def _body(self, change: ResourceChange, *, update: bool = False) -> dict:
        cred = self.credentials.get(str(change.address))
        with self.mutex:
            refs = dict(self.refs)
        if change.kind == "connector":
            return self.body_fn(change, refs=refs, credential=cred, update=update)
        if change.kind == "model":
            return self.body_fn(change, refs=refs, inline_credential=cred, update=update)
        return self.body_fn(change, refs=refs, update=update)

    def _current_id(self, change: ResourceChange) -> Optional[str]:
        addr = str(change.address)
        with self.mutex:
            if addr in self.model_ids:
                return self.model_ids[addr]
            rs = self.state.resources.get(addr)
        return change.server_id or (rs.id if rs else None)

    def _synthetic(self, address: str, reason: str) -> ResourceChange:
        return self.changes.get(address) or ResourceChange(Address.parse(address), (Action.NOOP,), reason)

    # ------------------------------------------------------------------ natural-key lookups

    def _find_model(self, entry: JournalEntry) -> Optional[str]:
        d = entry.details
        found = self.cluster.find_models(d.get("name") or Address.parse(entry.address).name, d.get("group_id"))
        with self.mutex:
            managed = set(self.state.by_id())
        since = (entry.started - CREATED_SKEW) * 1000
        want_hash = d.get("hash")
        candidates = sorted(
            mid for mid, doc in found.items()
            if mid not in managed and (doc.get("created_time") or 0) >= since
            and (not want_hash or doc.get("model_content_hash_value") in (None, want_hash)))
        if len(candidates) > 1:
            raise MlsyncError(
                f"{len(candidates)} models named {d.get('name')!r} were created in group {d.get('group_id')} since "
                f"the interrupted apply started ({', '.join(candidates)}); adopt the right one with "
                f"`mlsync import` and delete the others")
        return candidates[0] if candidates else None

    def _find_object(self, entry: JournalEntry) -> Optional[str]:
        kind = Address.parse(entry.address).kind
        observed = self.cluster.observe()
        pool = observed.connectors if kind == "connector" else observed.groups
        name = entry.details.get("name") or Address.parse(entry.address).name
        with self.mutex:
            managed = set(self.state.by_id())
        since = (entry.started - CREATED_SKEW) * 1000
        candidates = sorted(
            oid for oid, obj in pool.items()
            if obj.source.get("name") == name and oid not in managed
            and (obj.source.get("created_time") or 0) >= since)
        if len(candidates) > 1:
            raise MlsyncError(f"{len(candidates)} {kind}s named {name!r} were created since the interrupted apply "
                              f"started ({', '.join(candidates)}); adopt the right one with `mlsync import`")
        return candidates[0] if candidates else None

    def _wait_model_registered(self, model_id: str, address: str) -> Optional[dict]:
        """Poll the model until it leaves REGISTERING; None if it disappeared (its registration failed)."""
        delay, deadline = POLL_INITIAL, self.clock() + self.timeout
        while True:
            doc = self._retry(lambda: self.cluster.get_model(model_id))
            if doc is None or doc.get("model_state") not in ("REGISTERING", "UPLOADING"):
                return doc
            if self.clock() >= deadline:
                raise TaskTimeout(address, f"(model {model_id})", doc.get("model_state"), self.timeout)
            if self.abort.is_set():
                raise ApplyStopping()
            self.sleep(delay)
            delay = min(delay * POLL_FACTOR, POLL_MAX)
            self._renew_if_due()

    # ------------------------------------------------------------------ 0. resume

    def _resolve_journal(self) -> None:
        for entry in [j for j in self.state.journal if j.operation != DELETE_REPLACED]:
            change = self._synthetic(entry.address, "resume an interrupted apply")
            try:
                self._step(change, "resume", lambda e=entry: self._resolve_entry(e), describe=lambda note: note)
            except _StepFailed:
                pass   # the address stays failed: nothing is registered for it in this apply

    def _resolve_entry(self, e: JournalEntry) -> str:
        kind = Address.parse(e.address).kind
        if kind != "model":
            oid = e.object_id or self._find_object(e)
            if oid is None:
                self._drop(e)
                return f"the interrupted {e.operation} created nothing"
            self._adopt_recovered(e, oid, None)
            return f"adopted {oid}, created by the interrupted {e.operation}"
        model_id = e.object_id
        if model_id is None and e.task_id:
            doc = self.cluster.search_tasks([e.task_id]).get(e.task_id)
            if doc is not None and doc.get("state") not in TASK_FAILED_STATES and doc.get("state") != "COMPLETED":
                try:
                    doc = self.waiter.wait(e.task_id, e.address)
                except TaskFailed as err:
                    doc = {"state": "FAILED", "error": err.error}
            if doc is not None:
                if doc.get("state") in TASK_FAILED_STATES:
                    self._drop(e)
                    self.result.notes.append(f"{e.address}: the interrupted registration (task {e.task_id}) failed "
                                             f"on the server: {doc.get('error')}")
                    return f"task {e.task_id} had failed; nothing to adopt"
                model_id = doc.get("model_id")
        if model_id is None:
            model_id = self._find_model(e)
            if model_id is None:
                self._drop(e)
                return f"the interrupted {e.operation} created nothing"
        doc = self._retry(lambda: self.cluster.get_model(model_id))
        if doc is not None and doc.get("model_state") in ("REGISTERING", "UPLOADING"):
            if e.operation == "register_model_meta":   # an upload cut short: start it over
                self._retry(lambda: self.cluster.delete_model(model_id))
                self._drop(e)
                return f"deleted the incomplete upload {model_id}; registering again"
            doc = self._wait_model_registered(model_id, e.address)
        if doc is None:
            self._drop(e)
            return f"model {model_id} of the interrupted {e.operation} is gone"
        self._adopt_recovered(e, model_id, doc.get("model_version"))
        return f"adopted {model_id} (version {doc.get('model_version')}), registered by the interrupted apply"

    def _adopt_recovered(self, e: JournalEntry, object_id: str, server_version: Optional[str]) -> None:
        kind = Address.parse(e.address).kind
        with self.mutex:
            self.state.resources[e.address] = ResourceState(
                address=e.address, kind=kind, id=object_id, server_version=server_version,
                applied_fingerprint=None if kind == "model" else e.details.get("fingerprint"),
                credential_fingerprint=e.details.get("credential_fingerprint"))
            self.state.journal = [j for j in self.state.journal if j.op_id != e.op_id]
            replaces = e.details.get("replaces")
            if replaces and replaces != object_id:
                self.state.journal.append(JournalEntry(
                    op_id=uuid.uuid4().hex, address=e.address, operation=DELETE_REPLACED, started=self.clock(),
                    status="sent", object_id=replaces, details={"reason": "superseded by " + object_id}))
            self._save()
            self.recovered[e.address] = (object_id, e.details.get("fingerprint"))
        self.result.notes.append(f"{e.address}: adopted {object_id}, created by an interrupted apply ({e.operation})")

    def _build_refs(self) -> None:
        with self.mutex:
            for addr, rs in self.state.resources.items():
                if rs.kind in ("connector", "model_group"):
                    self.refs[addr] = rs.id
            for c in self.plan.changes:
                if c.kind in ("connector", "model_group") and c.server_id and Action.DELETE not in c.actions:
                    self.refs.setdefault(str(c.address), c.server_id)

    # ------------------------------------------------------------------ a. undeploys

    def _phase_undeploys(self) -> None:
        # Deleted versions are undeployed here too, before any connector update: the server refuses to
        # update a connector while a model using it is deployed, even one this apply deletes later.
        # A replaced version keeps serving until its successor is registered, unless it uses a connector
        # this apply updates: then it goes down first, for the same reason.
        updated = {c.address.name for c in self.plan.changes if c.kind == "connector" and Action.UPDATE in c.actions}
        items = [c for c in self.plan.changes if c.kind == "model" and Action.UNDEPLOY in c.actions
                 and (Action.REPLACE not in c.actions or _connector_name(c.before) in updated)]

        def undeploy(change: ResourceChange) -> None:
            model_id = self._current_id(change)
            if model_id is None:
                self._fail(change, "undeploy", MlsyncError("no server id to undeploy"))
                raise _StepFailed()
            self._rr(change).id = self._rr(change).id or model_id
            self._step(change, "undeploy", lambda: self._retry(lambda: self.cluster.undeploy_model(model_id)))
            with self.mutex:
                self.undeployed.add(str(change.address))
        self._parallel(items, undeploy)

    # ------------------------------------------------------------------ b./c. connectors, groups

    def _phase_simple(self, kind: str) -> None:
        items = [c for c in self.plan.changes if c.kind == kind and Action.DELETE not in c.actions
                 and any(a in c.actions for a in (Action.CREATE, Action.UPDATE, Action.ADOPT, Action.REPLACE))]
        self._parallel(items, self._apply_simple)
        if not self.abort.is_set():
            self._settle(items)

    def _apply_simple(self, change: ResourceChange) -> None:
        if self._blocked(change):
            return
        addr, acts = str(change.address), change.actions
        after_fp = self.digest(change.after) if change.after is not None else None
        if Action.REPLACE in acts:
            self._fail(change, "replace", MlsyncError(f"replacing a {change.kind} is not supported; delete it and "
                                                      f"create it again in two applies"))
            raise _StepFailed()
        cred = self.credentials.get(addr)
        update_call = self.cluster.update_connector if change.kind == "connector" else self.cluster.update_group
        with self.mutex:
            recovered = self.recovered.get(addr)
        if Action.CREATE in acts and recovered is None:
            body = self._body_or_fail(change)
            operation = "create_connector" if change.kind == "connector" else "create_group"
            create = self.cluster.create_connector if change.kind == "connector" else self.cluster.create_group
            details = {"name": body.get("name") or change.address.name, "fingerprint": after_fp,
                       "credential_fingerprint": self._cred_fp(change, cred)}

            def do_create() -> tuple[str, JournalEntry]:
                oid, entry, _ = self._nonidempotent(change, operation, details, lambda: create(body), self._find_object)
                return oid, entry
            oid, entry = self._step(change, "create", do_create, describe=lambda r: f"id {r[0]}")
            self._record(change, oid, applied=after_fp, cred_fp=self._cred_fp(change, cred), drop=entry)
            return
        if Action.CREATE in acts:   # created by the interrupted apply: bring it up to date if the file moved on
            oid, fp = recovered
            if fp != after_fp:
                body = self._body_or_fail(change, update=True)
                self._step(change, "update", lambda: self._retry(lambda: update_call(oid, body)), lambda _: f"id {oid}")
                self._record(change, oid, applied=after_fp, cred_fp=self._cred_fp(change, cred))
            else:
                self._step(change, "adopt", lambda: oid, lambda _: f"id {oid}, created by the interrupted apply")
                self._record(change, oid, applied=after_fp, cred_fp=self._cred_fp(change, None))
            return
        oid = change.server_id or self._current_id(change)
        if oid is None:
            self._fail(change, "update", MlsyncError("the plan has no server id for it"))
            raise _StepFailed()
        if Action.UPDATE in acts:
            body = self._body_or_fail(change, update=True)
            self._step(change, "update", lambda: self._retry(lambda: update_call(oid, body)), lambda _: f"id {oid}")
            self._record(change, oid, applied=after_fp, cred_fp=self._cred_fp(change, cred))
        else:
            self._step(change, "adopt", lambda: oid, lambda _: f"id {oid}")
            with self.mutex:
                rs = self.state.resources.get(addr)
            # The planner took an adopted connector's unreadable credential to be the file's. Fingerprint it
            # with this state's key: the plan's fingerprint was keyed with a throwaway key when no state existed.
            self._record(change, oid, applied=after_fp, cred_fp=rs.credential_fingerprint if rs else
                         self._cred_fp(change, cred) if cred else change.credential_fingerprint)

    def _body_or_fail(self, change: ResourceChange, *, update: bool = False) -> dict:
        try:
            return self._body(change, update=update)
        except Exception as err:  # noqa: BLE001
            self._fail(change, "prepare", MlsyncError(f"cannot build the request body: {describe_error(err)}"))
            self.reporter.on_error(change, "prepare", err)
            raise _StepFailed() from err

    # ------------------------------------------------------------------ d./e. model versions

    def _phase_models(self) -> None:
        by_group: dict[Optional[str], list[ResourceChange]] = {}
        for c in self.plan.changes:
            if c.kind == "model" and Action.DELETE not in c.actions and any(
                    a in c.actions for a in (Action.REGISTER, Action.REPLACE, Action.UPDATE, Action.ADOPT)):
                by_group.setdefault(c.address.group, []).append(c)

        def one_group(changes: list[ResourceChange]) -> None:
            for change in changes:   # strictly one at a time within a group
                if self.abort.is_set():
                    return
                if self._blocked(change):
                    continue
                try:
                    self._apply_model(change)
                except _StepFailed:
                    continue
        self._parallel(list(by_group.values()), one_group)

    def _apply_model(self, change: ResourceChange) -> None:
        addr, acts = str(change.address), change.actions
        after = change.after or {}
        after_fp = self.digest(change.after) if change.after is not None else None
        cred = self.credentials.get(addr)
        if Action.REGISTER in acts or Action.REPLACE in acts:
            old_id = change.server_id if Action.REPLACE in acts else None
            with self.mutex:
                recovered = self.recovered.get(addr)
            if recovered is not None and recovered[1] == after_fp:
                # registered by the interrupted apply for this very form: no second registration
                model_id = recovered[0]
                body = self._body_or_fail(change)
                doc = self._step(change, "adopt", lambda: self._retry(lambda: self.cluster.get_model(model_id)) or {},
                                 lambda d: f"model {model_id}, registered by the interrupted apply")
                with self.mutex:
                    rs = self.state.resources.get(addr)
                fields = self._fixup_fields(change, body, doc)
                self._record(change, model_id, server_version=doc.get("model_version") or (rs.server_version if rs else None),
                             applied=None if fields else after_fp, cred_fp=rs.credential_fingerprint if rs else None,
                             replaced=old_id)
                self._queue_fixup(change, model_id, body, fields)
                return
            if recovered is not None:   # the interrupted apply registered an older form: supersede it
                if old_id is None:
                    old_id = recovered[0]
                elif recovered[0] != old_id:
                    self._record_delete_later(change, recovered[0])
            body = self._body_or_fail(change)
            if (change.artifact or {}).get("path"):
                model_id, fields = self._register_local(change, body, old_id)
            else:
                model_id, fields = self._register(change, body, old_id)
            self._queue_fixup(change, model_id, body, fields)
            return
        model_id = change.server_id or self._current_id(change)
        if model_id is None:
            self._fail(change, "update", MlsyncError("the plan has no server id for it"))
            raise _StepFailed()
        version = change.server_version
        if Action.UPDATE in acts:
            body = self._body_or_fail(change, update=True)
            self._step(change, "update", lambda: self._retry(lambda: self.cluster.update_model(model_id, body)),
                       lambda _: f"id {model_id}")
        else:
            self._step(change, "adopt", lambda: model_id, lambda _: f"id {model_id}")
        if version is None:
            doc = self._retry(lambda: self.cluster.get_model(model_id)) or {}
            version = doc.get("model_version")
        sent_cred = cred if isinstance(after.get("connector"), dict) and Action.UPDATE in acts else None
        with self.mutex:
            rs = self.state.resources.get(addr)
        if sent_cred is None and Action.ADOPT in acts and not (rs and rs.credential_fingerprint):
            sent_cred = cred   # adopted: its inline credential is taken to be the file's, as for connectors
        self._record(change, model_id, server_version=version, applied=after_fp,
                     cred_fp=self._cred_fp(change, sent_cred))

    def _record_delete_later(self, change: ResourceChange, model_id: str) -> None:
        with self.mutex:
            if not any(j.operation == DELETE_REPLACED and j.object_id == model_id for j in self.state.journal):
                self.state.journal.append(JournalEntry(
                    op_id=uuid.uuid4().hex, address=str(change.address), operation=DELETE_REPLACED,
                    started=self.clock(), status="sent", object_id=model_id,
                    details={"reason": "registered by an interrupted apply for an older form"}))
                self._save()

    def _model_details(self, change: ResourceChange, body: dict, old_id: Optional[str]) -> dict:
        return {"name": body.get("name") or change.address.name, "group_id": body.get("model_group_id"),
                "hash": body.get("model_content_hash_value"),
                "fingerprint": self.digest(change.after) if change.after is not None else None,
                "credential_fingerprint": self._cred_fp(change, self.credentials.get(str(change.address))),
                "replaces": old_id}

    def _fixup_fields(self, change: ResourceChange, body: dict, doc: dict) -> dict:
        """Desired metadata that the stored model lacks after registration (the last chunk re-indexes
        the document without description, is_enabled, rate_limiter, deploy_setting, interface,
        guardrails; 2.x URL and remote registration drop is_enabled). Values in request form."""
        after = change.after or {}
        out = {}
        for key in FIXUP_FIELDS:
            if doc.get(key) is not None:
                continue
            if body.get(key) is not None:
                out[key] = body[key]
            elif after.get(key) is not None:
                out[key] = after[key]
        return out

    def _function(self, change: ResourceChange, body: dict) -> str:
        return str((change.after or {}).get("function_name") or body.get("function_name") or "TEXT_EMBEDDING").upper()

    def _register(self, change: ResourceChange, body: dict, old_id: Optional[str]) -> tuple[str, dict]:
        """register_model: remote models answer with the model id at once; URL models with a task."""
        addr = str(change.address)
        details = self._model_details(change, body, old_id)

        def send() -> tuple[Any, JournalEntry, bool]:
            return self._nonidempotent(change, "register_model", details,
                                       lambda: self.cluster.register_model(body), self._find_model)
        res, entry, found = self._step(change, "register", send,
                                       lambda r: f"model {r[0]}" if r[2] else (
                                           f"model {r[0].model_id}" if r[0].model_id else f"task {r[0].task_id}"))
        if found:
            model_id = res
            self._sent(entry, object_id=model_id)
            doc = self._step(change, "wait", lambda: self._wait_model_registered(model_id, addr))
            if doc is None:
                self._drop(entry)
                self._fail(change, "wait", MlsyncError(f"model {model_id} disappeared: its registration failed"))
                raise _StepFailed()
        elif res.model_id:
            model_id = res.model_id
            doc = None
        else:
            self._sent(entry, task_id=res.task_id)

            def wait() -> dict:
                try:
                    return self.waiter.wait(res.task_id, addr)
                except TaskFailed:
                    self._drop(entry)   # the server rolled the registration back
                    raise
            task = self._step(change, "wait", wait, lambda t: f"model {t.get('model_id')}")
            model_id = task.get("model_id")
            if not model_id:
                self._drop(entry)
                self._fail(change, "wait", MlsyncError(f"task {res.task_id} COMPLETED without a model_id"))
                raise _StepFailed()
            doc = None
        if doc is None:
            doc = self._retry(lambda: self.cluster.get_model(model_id)) or {}
        fields = self._fixup_fields(change, body, doc)
        self._record(change, model_id, server_version=doc.get("model_version"),
                     applied=None if fields else self.digest(change.after),
                     cred_fp=details["credential_fingerprint"], drop=entry, replaced=old_id)
        return model_id, fields

    def _register_local(self, change: ResourceChange, body: dict, old_id: Optional[str]) -> tuple[str, dict]:
        """register_model_meta + upload_chunk in CHUNK_SIZE slices, in order, from artifact["path"]."""
        addr = str(change.address)
        artifact = change.artifact or {}
        path = artifact["path"]
        expected = (artifact.get("sha256") or "").lower() or None

        def hash_file() -> tuple[str, int]:
            h, size = hashlib.sha256(), 0
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
                    size += len(block)
            digest = h.hexdigest()
            if expected and digest != expected:
                raise MlsyncError(f"{path} changed since the plan was made: its SHA-256 is {digest}, the plan "
                                  f"has {expected}; make a new plan")
            if size == 0:
                raise MlsyncError(f"{path} is empty")
            return digest, size
        sha, size = self._step(change, "hash", hash_file, lambda r: f"{r[1]} bytes")
        total = max(1, math.ceil(size / CHUNK_SIZE))
        body = dict(body)
        body.pop("url", None)
        body["model_content_hash_value"] = sha
        body["model_content_size_in_bytes"] = size
        body["total_chunks"] = total
        details = self._model_details(change, body, old_id)

        def send() -> tuple[Any, JournalEntry, bool]:
            return self._nonidempotent(change, "register_model_meta", details,
                                       lambda: self.cluster.register_model_meta(body), self._find_model)
        model_id, entry, _ = self._step(change, "register", send, lambda r: f"model {r[0]}")
        self._sent(entry, object_id=model_id)

        def upload() -> dict:
            running = hashlib.sha256()
            with open(path, "rb") as fh:
                for number in range(total):
                    data = fh.read(CHUNK_SIZE)
                    running.update(data)
                    if number == total - 1 and running.hexdigest() != sha:
                        raise MlsyncError(f"{path} changed during the upload; nothing was registered")
                    self._retry(lambda n=number, d=data: self.cluster.upload_chunk(model_id, n, d))
                    self.reporter.on_progress(change, "upload", f"chunk {number + 1}/{total}")
                    self._renew_if_due()
            # the last chunk re-indexes the model document after the response; wait for REGISTERED
            # so that the metadata fix-ups are not overwritten by that re-index
            doc = self._wait_model_registered(model_id, addr)
            if doc is None:
                raise MlsyncError(f"model {model_id} disappeared after its upload")
            return doc
        try:
            doc = self._step(change, "upload", upload, lambda d: f"{total} chunk(s), version {d.get('model_version')}")
        except _StepFailed:
            try:   # do not leave a half-uploaded model behind (the next apply would delete it anyway)
                self._retry(lambda: self.cluster.delete_model(model_id))
                self._drop(entry)
            except ClusterError as err:
                self.result.warnings.append(f"{addr}: could not delete the incomplete upload {model_id}: {err}")
            raise
        fields = self._fixup_fields(change, body, doc)
        self._record(change, model_id, server_version=doc.get("model_version"),
                     applied=None if fields else self.digest(change.after),
                     cred_fp=details["credential_fingerprint"], drop=entry, replaced=old_id)
        return model_id, fields

    def _queue_fixup(self, change: ResourceChange, model_id: str, body: dict, fields: dict) -> None:
        function = self._function(change, body)
        if not fields:
            return
        if function not in UPDATABLE_FUNCTIONS:
            self.result.warnings.append(
                f"{change.address}: {', '.join(sorted(fields))} may have been dropped at registration and cannot be "
                f"set again: Update Model does not support function {function}")
            return
        with self.mutex:
            self.fixups.append((change, model_id, fields))

    # ------------------------------------------------------------------ f. fix-ups

    def _phase_fixups(self) -> None:
        def fixup(item: tuple[ResourceChange, str, dict]) -> None:
            change, model_id, fields = item
            self._step(change, "fixup", lambda: self._retry(lambda: self.cluster.update_model(model_id, fields)),
                       lambda _: ", ".join(sorted(fields)))
            with self.mutex:
                rs = self.state.resources.get(str(change.address))
                if rs is not None and rs.id == model_id:
                    rs.applied_fingerprint = self.digest(change.after)
                    rs.applied_form = self._applied_form(change, rs.applied_fingerprint)
                    self._save()
        self._parallel(list(self.fixups), fixup)

    # ------------------------------------------------------------------ g. deploys

    def _phase_deploys(self) -> None:
        items = []
        for c in self.plan.changes:
            if c.kind != "model" or Action.DELETE in c.actions:
                continue
            if Action.DEPLOY in c.actions or (c.deploy and (Action.REGISTER in c.actions or Action.REPLACE in c.actions)):
                items.append(c)

        def deploy(change: ResourceChange) -> None:
            addr = str(change.address)
            with self.mutex:
                redeploy = addr in self.undeployed
                failed = addr in self.failed
            if failed and not redeploy:
                return   # its register / update failed or was skipped: nothing (new) to deploy
            if failed:
                self.result.warnings.append(f"{addr}: redeploying it although an earlier step failed, so that it "
                                            f"is not left undeployed")
            model_id = self._current_id(change)
            if model_id is None:
                self._fail(change, "deploy", MlsyncError("no server id to deploy"))
                raise _StepFailed()
            rr = self._rr(change)
            rr.id = rr.id or model_id

            def do_deploy() -> Optional[str]:
                task_id = self._retry(lambda: self.cluster.deploy_model(model_id))
                if task_id:
                    self.waiter.wait(task_id, addr)
                return task_id
            self._step(change, "deploy", do_deploy, lambda t: f"model {model_id}" + (f", task {t}" if t else ""))
        self._parallel(items, deploy)
        if not self.abort.is_set():
            self._settle(c for c in self.plan.changes if c.kind == "model" and Action.DELETE not in c.actions)
            self._record_deploy_states()

    # ------------------------------------------------------------------ h. deletes

    def _phase_deletes(self) -> None:
        deletes = [c for c in self.plan.changes if Action.DELETE in c.actions]
        for kind in ("model", "replaced", "model_group", "connector"):
            if self.abort.is_set():
                return
            if kind == "replaced":
                with self.mutex:
                    entries = [j for j in self.state.journal if j.operation == DELETE_REPLACED]
                self._parallel(entries, self._delete_replaced)
                continue
            items = [c for c in deletes if c.kind == kind]
            self._parallel(items, self._delete)
            if not self.abort.is_set():
                self._settle(items)

    def _delete_blocked(self, change: ResourceChange) -> bool:
        me = str(change.address)
        with self.mutex:
            blockers = sorted(addr for addr in self.failed
                              if addr in self.changes and Action.DELETE in self.changes[addr].actions
                              and me in _deps(self.changes[addr]))
        if not blockers:
            return False
        err = MlsyncError(f"not attempted: {', '.join(blockers)} still exist(s) and depend(s) on it")
        self._fail(change, "skip", err, status="skipped")
        self.reporter.on_error(change, "skip", err)
        return True

    def _delete(self, change: ResourceChange) -> None:
        if self._delete_blocked(change):
            return
        addr = str(change.address)
        with self.mutex:
            rs = self.state.resources.get(addr)
        oid = change.server_id or (rs.id if rs else None)
        rr = self._rr(change)
        rr.id, rr.server_version = oid, change.server_version
        if oid is None:
            self._forget(addr)
            return
        if change.kind == "model":
            with self.mutex:
                undeployed = addr in self.undeployed
            if (Action.UNDEPLOY in change.actions or change.deployed) and not undeployed:
                self._step(change, "undeploy", lambda: self._retry(lambda: self.cluster.undeploy_model(oid)))
            call = self.cluster.delete_model
        elif change.kind == "model_group":
            call = self.cluster.delete_group
        else:
            call = self.cluster.delete_connector
        self._step(change, "delete", lambda: self._retry(lambda: call(oid)), lambda _: f"id {oid}")
        with self.mutex:
            self.refs.pop(addr, None)
        self._forget(addr)

    def _delete_replaced(self, entry: JournalEntry) -> None:
        change = self._synthetic(entry.address, "delete a superseded version")
        model_id = entry.object_id
        if model_id is None:
            self._drop(entry)
            return

        def delete_old() -> None:
            doc = self._retry(lambda: self.cluster.get_model(model_id))
            if doc is not None and doc.get("model_state") in DEPLOYED_STATES:
                self._retry(lambda: self.cluster.undeploy_model(model_id))
            if doc is not None:
                self._retry(lambda: self.cluster.delete_model(model_id))
        self._step(change, "delete old version", delete_old, lambda _: f"id {model_id}")
        self._drop(entry)
