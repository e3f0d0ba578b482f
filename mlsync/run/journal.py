"""The apply's journal: the stack's state, written before and after every non-idempotent call.

Before create_connector / create_group / register_model / register_model_meta an intent
(`JournalEntry`) is saved; the task id or object id as soon as it is known; the managed address
with its id when the call is done. A crash at any point leaves enough in the state for the next
apply to find what the call created (`mlsync.run.recovery`) instead of creating it twice. Old
versions that a replace superseded wait in the journal as `delete_replaced` entries until the
delete phase removes them.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any, Callable, Optional

from mlsync.core import normalize
from mlsync.core.errors import ClusterError, MlsyncError, StateConflict
from mlsync.core.plan import Action, ResourceChange
from mlsync.core.secrets import fingerprint as keyed_fingerprint
from mlsync.core.state import DELETE_REPLACED, JournalEntry, ResourceState
from mlsync.run.context import RETRIES, Run, StateWriteFailed
from mlsync.core.polling import RESEND



class Journal:
    def __init__(self, run: Run) -> None:
        self.run = run

    def save(self) -> None:
        """Save the state (caller holds the mutex), extending the lease on the way when it is due."""
        run = self.run
        lock = run.state.lock
        if lock is not None and run.clock() > lock.expires - run.lock_ttl / 2:
            lock.expires = run.clock() + run.lock_ttl
        try:
            run.store.save(run.state)
        except StateConflict:
            raise
        except MlsyncError as err:
            raise StateWriteFailed(f"could not save the state of stack {run.plan.stack!r}: {err}") from err

    # ------------------------------------------------------------------ intents

    def intent(self, change: ResourceChange, operation: str, details: dict) -> JournalEntry:
        entry = JournalEntry(op_id=uuid.uuid4().hex, address=str(change.address), operation=operation,
                             started=self.run.clock(), details=details)
        with self.run.mutex:
            self.run.state.journal.append(entry)
            self.save()
        return entry

    def sent(self, entry: JournalEntry, *, task_id: Optional[str] = None, object_id: Optional[str] = None) -> None:
        with self.run.mutex:
            entry.status = "sent"
            entry.task_id = task_id or entry.task_id
            entry.object_id = object_id or entry.object_id
            self.save()

    def drop(self, entry: JournalEntry, save: bool = True) -> None:
        with self.run.mutex:
            self.run.state.journal = [j for j in self.run.state.journal if j.op_id != entry.op_id]
            if save:
                self.save()

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
        """Record the address as managed (and close its journal entry) in one save."""
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
            self.save()
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
        return copy.deepcopy(change.after)

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
                self.save()

    def forget(self, address: str) -> None:
        with self.run.mutex:
            if self.run.state.resources.pop(address, None) is not None:
                self.save()

    def credential_fingerprint(self, change: ResourceChange, cred: Optional[dict]) -> Optional[str]:
        """The keyed fingerprint of the credential just sent (keyed with this state's key); when none was
        sent, whatever the state already recorded."""
        if cred:
            return keyed_fingerprint(cred, self.run.state.fingerprint_key)
        with self.run.mutex:
            rs = self.run.state.resources.get(str(change.address))
        return rs.credential_fingerprint if rs else None
