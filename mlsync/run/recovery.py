"""Resolving what an interrupted apply left in the journal, and finding by natural key what an
ambiguous call may have created.

An intent whose call may have run (a crash, a timeout, a 5xx) is resolved before anything else:
its task is looked up, or the object is searched by name (and group and content hash) among the
objects this stack does not manage, and adopted. Never a silent join: two candidates are an error
that says how to choose.

No clock is compared: the client's may be minutes off the server's `created_time` (a window on
"created since the intent" in client time missed the model with the client 45 s ahead, and
registered a duplicate). None is needed: the planner adopts an unmanaged object whose natural key
(name; group + name (+ content hash) for a model) is the address's instead of creating one, and
fails on two, so an unmanaged match that exists after the call was not there when the plan was
made — it is the call's (or, at worst, one the plan would have adopted anyway). Lookups read the
server's current documents (`find_models` and `observe` refresh the ML indices first), so what the
call just wrote is seen.
"""

from __future__ import annotations

from typing import Optional

from mlsync.core import kinds
from mlsync.core.address import Address
from mlsync.core.errors import MlsyncError, TaskFailed
from mlsync.core.plan import Reason
from mlsync.core.state import DELETE_REPLACED, JournalEntry, ResourceState
from mlsync.run.context import Run, StepFailed
from mlsync.run.journal import Journal
from mlsync.run.tasks import TASK_FAILED_STATES, wait_model_registered

_IN_PROGRESS = ("REGISTERING", "UPLOADING")


class Recovery:
    def __init__(self, run: Run, journal: Journal) -> None:
        self.run, self.journal = run, journal

    # ------------------------------------------------------------------ natural-key lookups

    def _managed_ids(self) -> set[str]:
        """Ids this stack manages or has queued for deletion: never what an interrupted call created."""
        with self.run.mutex:
            return set(self.run.state.by_id()) | {
                j.object_id for j in self.run.state.journal if j.operation == DELETE_REPLACED and j.object_id}

    def find_model(self, entry: JournalEntry) -> Optional[str]:
        d = entry.details
        name, group_id, want_hash = d.get("name") or Address.parse(entry.address).name, d.get("group_id"), d.get("hash")
        found = self.run.cluster.find_models(name, group_id)     # refreshed: reads what was just written
        managed = self._managed_ids()
        candidates = sorted(
            mid for mid, doc in found.items()
            if mid not in managed and (not want_hash or doc.get("model_content_hash_value") in (None, want_hash)))
        if len(candidates) > 1:
            raise MlsyncError(
                f"{len(candidates)} models named {name!r} in group {group_id} that this stack does not manage could "
                f"be the interrupted registration's ({', '.join(candidates)}); adopt the right one with "
                f"`mlsync import` and delete the others")
        return candidates[0] if candidates else None

    def find_object(self, entry: JournalEntry) -> Optional[str]:
        kind = Address.parse(entry.address).kind
        pool = kinds.kind(kind).observed(self.run.cluster.observe())     # observe() refreshes first
        name = entry.details.get("name") or Address.parse(entry.address).name
        managed = self._managed_ids()
        candidates = sorted(oid for oid, obj in pool.items() if obj.source.get("name") == name and oid not in managed)
        if len(candidates) > 1:
            raise MlsyncError(f"{len(candidates)} {kind}s named {name!r} that this stack does not manage could be the "
                              f"interrupted create's ({', '.join(candidates)}); adopt the right one with "
                              f"`mlsync import` and delete the others")
        return candidates[0] if candidates else None

    def wait_registered(self, model_id: str, address: str) -> Optional[dict]:
        return wait_model_registered(self.run, model_id, address)

    # ------------------------------------------------------------------ resume

    def resolve_all(self) -> None:
        run = self.run
        for entry in [j for j in run.state.journal if j.operation != DELETE_REPLACED]:
            change = run.change_at(entry.address, "resume an interrupted apply", Reason.RESUME)
            try:
                run.step(change, "resume", lambda e=entry: self._resolve(e), describe=lambda note: note)
            except StepFailed:
                pass   # the address stays failed: nothing is registered for it in this apply

    def _resolve(self, e: JournalEntry) -> str:
        run = self.run
        if Address.parse(e.address).kind != "model":
            oid = e.object_id or self.find_object(e)
            if oid is None:
                self.journal.drop(e)
                return f"the interrupted {e.operation} created nothing"
            self._adopt(e, oid, None)
            return f"adopted {oid}, created by the interrupted {e.operation}"
        model_id = e.object_id
        if model_id is None and e.task_id:
            doc = run.cluster.search_tasks([e.task_id]).get(e.task_id)
            if doc is not None and doc.get("state") not in TASK_FAILED_STATES and doc.get("state") != "COMPLETED":
                try:
                    doc = run.waiter.wait(e.task_id, e.address)
                except TaskFailed as err:
                    doc = {"state": "FAILED", "error": err.error}
            if doc is not None:
                if doc.get("state") in TASK_FAILED_STATES:
                    self.journal.drop(e)
                    run.result.notes.append(f"{e.address}: the interrupted registration (task {e.task_id}) failed "
                                            f"on the server: {doc.get('error')}")
                    return f"task {e.task_id} had failed; nothing to adopt"
                model_id = doc.get("model_id")
        if model_id is None:
            model_id = self.find_model(e)
            if model_id is None:
                self.journal.drop(e)
                return f"the interrupted {e.operation} created nothing"
        doc = run.retry(lambda: run.cluster.get_model(model_id))
        if doc is not None and doc.get("model_state") in _IN_PROGRESS:
            if e.operation == "register_model_meta":   # an upload cut short: start it over
                run.retry(lambda: run.cluster.delete_model(model_id))
                self.journal.drop(e)
                return f"deleted the incomplete upload {model_id}; registering again"
            doc = self.wait_registered(model_id, e.address)
        if doc is None:
            self.journal.drop(e)
            return f"model {model_id} of the interrupted {e.operation} is gone"
        self._adopt(e, model_id, doc.get("model_version"))
        return f"adopted {model_id} (version {doc.get('model_version')}), registered by the interrupted apply"

    def _adopt(self, e: JournalEntry, object_id: str, server_version: Optional[str]) -> None:
        run = self.run
        kind = Address.parse(e.address).kind
        with run.mutex:
            run.state.resources[e.address] = ResourceState(
                address=e.address, kind=kind, id=object_id, server_version=server_version,
                applied_fingerprint=None if kind == "model" else e.details.get("fingerprint"),
                credential_fingerprint=e.details.get("credential_fingerprint"))
            run.state.journal = [j for j in run.state.journal if j.op_id != e.op_id]
            self.journal.supersede(e.address, e.details.get("replaces"), object_id, "superseded by " + object_id)
            self.journal.save()
            run.recovered[e.address] = (object_id, e.details.get("fingerprint"))
        run.result.notes.append(f"{e.address}: adopted {object_id}, created by an interrupted apply ({e.operation})")
