"""The apply's journal: the stack's state, written before every non-idempotent call.

Before create_connector / create_group / register_model / register_model_meta an intent
(`JournalEntry`) is saved, and the call is sent only once that save has landed; a URL registration's
task id is saved as soon as it is known. A crash at any point leaves enough in the state for the next
apply to find what the call created (`mlsync.run.recovery`) instead of creating it twice. Old
versions that a replace superseded wait in the journal as `delete_replaced` entries until the
delete phase removes them.

Writes are batched (each write costs a request and a lease check: docs/performance.md):
- a wave: before a create phase the driver saves the intents of every create / registration the
  phase will send in one write (`prepare`); the step then finds its intent already saved;
- group commit: intents written by concurrent workers while another save is in flight go out
  together in the next save;
- what is learnt after a call (the managed address and its id, a closed entry, a forgotten
  address, a fix-up, the deploy flags) is kept in memory and rides on the next write: the next
  intent, the end of the phase (`flush`) or the end of the apply. A crash before that leaves the
  intent in the journal, which recovery resolves by task id or natural key -- the same as a crash
  between the call and its answer.
"""

from __future__ import annotations

import copy
import threading
import uuid
from typing import Any, Callable, Optional

from mlsync.core import normalize
from mlsync.core.errors import ClusterError, MlsyncError, StateConflict
from mlsync.core.plan import Action, ResourceChange
from mlsync.core.secrets import fingerprint as keyed_fingerprint, has_secret, stored
from mlsync.core.state import DELETE_REPLACED, JournalEntry, ResourceState
from mlsync.run.context import RETRIES, Run, StateWriteFailed
from mlsync.core.polling import RESEND



class Journal:
    def __init__(self, run: Run) -> None:
        self.run = run
        self.dirty = False                      # the state holds changes not saved yet (guarded by run.mutex)
        self.writes = 0                         # state writes made (for the benchmarks)
        self._queued: list[JournalEntry] = []   # intents waiting for the next save (group commit)
        self._queue_lock = threading.Lock()
        self._saved_ops: set[str] = set()       # intents a landed save holds
        self.prepared: dict[tuple[str, str], JournalEntry] = {}   # (address, operation) -> saved intent

    def save(self) -> None:
        """Save the state now (caller holds the mutex), extending the lease on the way when it is due."""
        run = self.run
        lock = run.state.lock
        if lock is not None and run.clock() > lock.expires - run.lock_ttl / 2:
            lock.expires = run.clock() + run.lock_ttl
        with self._queue_lock:
            queued, self._queued = self._queued, []
        run.state.journal.extend(queued)
        try:
            self.writes += 1
            run.store.save(run.state)
        except StateConflict:
            raise
        except MlsyncError as err:
            raise StateWriteFailed(f"could not save the state of stack {run.plan.stack!r}: {err}") from err
        self.dirty = False
        self._saved_ops.update(j.op_id for j in run.state.journal)

    def later(self) -> None:
        """The state changed, but nothing depends on the change being on disk before the next call:
        it is saved with the next write (caller holds the mutex)."""
        self.dirty = True

    def flush(self) -> None:
        """Save what is waiting, if anything (the end of a phase, the end of the apply)."""
        with self.run.mutex:
            if self.dirty or self._queued:
                self.save()

    # ------------------------------------------------------------------ intents

    def prepare(self, intents: list[tuple[ResourceChange, str, dict]]) -> None:
        """Save the intents of a wave of calls in one write: (change, operation, details) each. A step
        whose `intent()` asks for the same operation and details uses the saved entry."""
        if not intents:
            return
        with self.run.mutex:
            for change, operation, details in intents:
                entry = self._entry(change, operation, details)
                self.run.state.journal.append(entry)
                self.prepared[(entry.address, operation)] = entry
            self.save()

    def unprepare(self) -> None:
        """After a phase: drop the prepared intents no step used (their change failed or was skipped
        before its call); saved with the next write."""
        with self.run.mutex:
            unused = {e.op_id for e in self.prepared.values()}
            self.prepared.clear()
            if unused:
                self.run.state.journal = [j for j in self.run.state.journal if j.op_id not in unused]
                self.later()

    def _entry(self, change: ResourceChange, operation: str, details: dict) -> JournalEntry:
        return JournalEntry(op_id=uuid.uuid4().hex, address=str(change.address), operation=operation,
                            started=self.run.clock(), details=details)

    def intent(self, change: ResourceChange, operation: str, details: dict) -> JournalEntry:
        """An intent that is saved when this returns: the one the wave saved, or a new one saved
        together with whatever other workers queued meanwhile."""
        run = self.run
        with run.mutex:
            prepared = self.prepared.pop((str(change.address), operation), None)
            if prepared is not None and prepared.details == details:
                return prepared
            if prepared is not None:    # the step's details differ: its own intent replaces the wave's
                run.state.journal = [j for j in run.state.journal if j.op_id != prepared.op_id]
        entry = self._entry(change, operation, details)
        with self._queue_lock:
            self._queued.append(entry)
        with run.mutex:
            if entry.op_id not in self._saved_ops:   # else another worker's save took it along
                self.save()
        return entry

    def sent(self, entry: JournalEntry, *, task_id: Optional[str] = None, object_id: Optional[str] = None,
             now: bool = False) -> None:
        """The call was answered. A task id is saved at once (the model it makes may not be findable by
        name until the task has run), and so is anything with `now` (an upload's model id, before its
        chunks); an object id otherwise rides on the next write (the object exists, so recovery finds
        it by natural key)."""
        with self.run.mutex:
            entry.status = "sent"
            entry.task_id = task_id or entry.task_id
            entry.object_id = object_id or entry.object_id
            if task_id or now:
                self.save()
            else:
                self.later()

    def drop(self, entry: JournalEntry, save: bool = True) -> None:
        with self.run.mutex:
            self.run.state.journal = [j for j in self.run.state.journal if j.op_id != entry.op_id]
            if save:
                self.later()

    def supersede(self, address: str, old_id: Optional[str], new_id: Optional[str], reason: str) -> bool:
        """Queue `old_id` for deletion once the apply's other work is done (caller saves, holds the
        mutex). False when there is nothing to queue (no old id, the same id, already queued)."""
        journal = self.run.state.journal
        if not old_id or old_id == new_id or any(
                j.operation == DELETE_REPLACED and j.object_id == old_id for j in journal):
            return False
        journal.append(JournalEntry(op_id=uuid.uuid4().hex, address=address, operation=DELETE_REPLACED,
                                    started=self.run.clock(), status="sent", object_id=old_id,
                                    details={"reason": reason}))
        return True

    def nonidempotent(self, change: ResourceChange, operation: str, details: dict, call: Callable[[], Any],
                      lookup: Callable[[JournalEntry], Optional[str]]) -> tuple[Any, JournalEntry, bool]:
        """Journal the intent, send, and after an ambiguous failure look for what the call may have
        created (`lookup`) before sending again. Returns (result, entry, found_by_lookup)."""
        run = self.run
        entry = self.intent(change, operation, details)
        attempt = 0
        while True:
            try:
                return call(), entry, False
            except ClusterError as err:
                if not err.ambiguous:
                    self.drop(entry)   # a clear refusal: nothing was created
                    raise
                if attempt >= RETRIES or run.abort.is_set():
                    raise              # the intent stays in the journal: the next apply looks again
                attempt += 1
                run.sleep(RESEND.delay(attempt))
                found = lookup(entry)
                if found is not None:
                    return found, entry, True

    # ------------------------------------------------------------------ managed addresses

    def record(self, change: ResourceChange, object_id: str, *, server_version: Optional[str] = None,
               applied: Optional[str] = None, cred_fp: Optional[str] = None, drop: Optional[JournalEntry] = None,
               replaced: Optional[str] = None) -> None:
        """Record the address as managed (and close its journal entry); saved with the next write."""
        run, addr = self.run, str(change.address)
        with run.mutex:
            prev = run.state.resources.get(addr)
            run.state.resources[addr] = ResourceState(
                address=addr, kind=change.address.kind, id=object_id, server_version=server_version,
                applied_fingerprint=applied, credential_fingerprint=cred_fp,
                applied_form=self.applied_form(change, applied),
                applied_deploy=prev.applied_deploy if prev is not None and prev.id == object_id else None)
            if drop is not None:
                self.drop(drop, save=False)
            self.supersede(addr, replaced, object_id, "superseded by " + object_id)
            self.later()
            rr = run.result.resources.get(addr)
            if rr is not None:
                rr.id, rr.server_version = object_id, server_version
                if replaced and replaced != object_id:
                    rr.replaced_id = replaced
            if change.address.kind in ("connector", "model_group"):
                run.refs[addr] = object_id
            else:
                run.model_ids[addr] = object_id

    @staticmethod
    def applied_form(change: ResourceChange, applied: Optional[str]) -> Optional[dict]:
        """The form just applied, kept so that `mlsync drift` can tell cluster edits from file edits."""
        if applied is None or change.after is None or applied != normalize.digest(change.after):
            return None
        # a sensitive value (`${env:…}`) is kept as its keyed fingerprint, never in clear
        return stored(change.after) if has_secret(change.after) else copy.deepcopy(change.after)

    def record_deploy_states(self) -> None:
        """After the deploy phase: the deploy state the file asked for is what each model that did not
        fail now has (what `mlsync drift` compares a changed deploy flag against)."""
        run = self.run
        with run.mutex:
            dirty = False
            for c in run.plan.changes:
                rs = run.state.resources.get(str(c.address))
                if (c.kind != "model" or Action.DELETE in c.actions or str(c.address) in run.failed or rs is None
                        or rs.applied_deploy == bool(c.deploy)):
                    continue
                rs.applied_deploy = bool(c.deploy)
                dirty = True
            if dirty:
                self.later()

    def forget(self, address: str) -> None:
        with self.run.mutex:
            if self.run.state.resources.pop(address, None) is not None:
                self.later()

    def credential_fingerprint(self, change: ResourceChange, cred: Optional[dict]) -> Optional[str]:
        """The fingerprint of the credential just sent (this state's keying); when none was
        sent, whatever the state already recorded."""
        if cred:
            return keyed_fingerprint(cred, self.run.state.keying())
        with self.run.mutex:
            rs = self.run.state.resources.get(str(change.address))
        return rs.credential_fingerprint if rs else None
