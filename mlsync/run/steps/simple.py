"""Steps for kinds that are one object each with create / update / delete calls: connectors and
model groups. Which calls a kind uses is its row in `mlsync.run.steps.STEPS`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from mlsync.core.plan import Action, Reason, ResourceChange
from mlsync.core.state import JournalEntry
from mlsync.run.context import Run


@dataclass(frozen=True)
class SimpleSteps:
    create_call: str        # ClusterPort method names
    update_call: str
    operation: str          # the journal's name for the create

    def actions(self) -> dict:
        return {Action.CREATE: self.create, Action.UPDATE: self.update, Action.ADOPT: self.adopt,
                Action.REPLACE: self.replace, Action.DELETE: delete}

    def create(self, run: Run, change: ResourceChange) -> None:
        addr = str(change.address)
        after_fp = run.after_digest(change)
        cred = run.credentials.get(addr)
        with run.mutex:
            recovered = run.recovered.get(addr)
        if recovered is not None:   # created by the interrupted apply: bring it up to date if the file moved on
            oid, fp = recovered
            if fp != after_fp:
                self._send_update(run, change, oid)
                run.journal.record(change, oid, applied=after_fp,
                                   cred_fp=run.journal.credential_fingerprint(change, cred))
            else:
                run.step(change, "adopt", lambda: oid, lambda _: f"id {oid}, created by the interrupted apply")
                run.journal.record(change, oid, applied=after_fp,
                                   cred_fp=run.journal.credential_fingerprint(change, None))
            return
        body = run.body(change)
        create = getattr(run.cluster, self.create_call)
        details = self._details(run, change, body)
        cred_fp = details["credential_fingerprint"]

        def send() -> tuple[str, JournalEntry]:
            oid, entry, _ = run.journal.nonidempotent(change, self.operation, details, lambda: create(body),
                                                      run.recovery.find_object)
            return oid, entry
        oid, entry = run.step(change, "create", send, describe=lambda r: f"id {r[0]}")
        run.journal.record(change, oid, applied=after_fp, cred_fp=cred_fp, drop=entry)

    @staticmethod
    def _details(run: Run, change: ResourceChange, body: dict) -> dict:
        """What the journal keeps about a create: enough to find the object by name."""
        return {"name": body.get("name") or change.address.name, "fingerprint": run.after_digest(change),
                "credential_fingerprint": run.journal.credential_fingerprint(change,
                                                                              run.credentials.get(str(change.address)))}

    def intent(self, run: Run, change: ResourceChange) -> Optional[tuple[str, dict]]:
        """The intent a create will journal (saved with its phase's wave), or None."""
        if Action.CREATE not in change.actions or Action.REPLACE in change.actions:
            return None
        body = run.quiet_body(change)
        return None if body is None else (self.operation, self._details(run, change, body))

    def _send_update(self, run: Run, change: ResourceChange, oid: str) -> None:
        body = run.body(change, update=True)
        update = getattr(run.cluster, self.update_call)
        run.step(change, "update", lambda: run.retry(lambda: update(oid, body)), lambda _: f"id {oid}")

    def update(self, run: Run, change: ResourceChange) -> None:
        oid = run.server_id(change, "update")
        self._send_update(run, change, oid)
        cred = run.credentials.get(str(change.address))
        run.journal.record(change, oid, applied=run.after_digest(change),
                           cred_fp=run.journal.credential_fingerprint(change, cred))

    def adopt(self, run: Run, change: ResourceChange) -> None:
        oid = run.server_id(change, "adopt")
        run.step(change, "adopt", lambda: oid, lambda _: f"id {oid}")
        cred = run.credentials.get(str(change.address))
        with run.mutex:
            rs = run.state.resources.get(str(change.address))
        # The planner took an adopted connector's unreadable credential to be the file's. Fingerprint it
        # with this state's key: the plan's fingerprint was keyed with a throwaway key when no state existed.
        cred_fp = (rs.credential_fingerprint if rs else
                   run.journal.credential_fingerprint(change, cred) if cred else change.credential_fingerprint)
        run.journal.record(change, oid, applied=run.after_digest(change), cred_fp=cred_fp)

    def replace(self, run: Run, change: ResourceChange) -> None:
        raise run.give_up(change, "replace", f"replacing a {change.kind} is not supported; delete it and create it "
                                             f"again in two applies")


def delete(run: Run, change: ResourceChange) -> None:
    """Delete a managed object (a model is undeployed first when it may be loaded) and forget it."""
    from mlsync.run.steps import STEPS   # the kind's delete call (imported here: STEPS is built from this module)

    addr = str(change.address)
    with run.mutex:
        rs = run.state.resources.get(addr)
    oid = change.server_id or (rs.id if rs else None)
    rr = run.result_of(change)
    rr.id, rr.server_version = oid, change.server_version
    if oid is None:
        run.journal.forget(addr)
        return
    if change.kind == "model":
        with run.mutex:
            undeployed = addr in run.undeployed
        if (Action.UNDEPLOY in change.actions or change.deployed) and not undeployed:
            run.step(change, "undeploy", lambda: run.retry(lambda: run.cluster.undeploy_model(oid)))
    call = getattr(run.cluster, STEPS[change.kind].delete_call)
    run.step(change, "delete", lambda: run.retry(lambda: call(oid)), lambda _: f"id {oid}")
    with run.mutex:
        run.refs.pop(addr, None)
    run.journal.forget(addr)


def retire(run: Run, entry: JournalEntry, what: str, delete_old: Callable[[str], None]) -> None:
    """Delete an object a replace superseded (queued in the journal as delete_replaced), then close
    its entry; while its successor has failed, keep it (still serving) queued for a later apply."""
    change = run.change_at(entry.address, f"delete a superseded {what}", Reason.SUPERSEDED)
    old_id = entry.object_id
    if old_id is None:
        run.journal.drop(entry)
        return
    with run.mutex:
        successor_failed = entry.address in run.failed
    if successor_failed:
        run.result.warnings.append(f"{entry.address}: kept the old {what} {old_id} because its successor did not "
                                   f"reach the state the file asks for; it is retired by the apply that completes "
                                   f"the successor")
        return
    run.step(change, f"delete old {what}", lambda: delete_old(old_id), lambda _: f"id {old_id}")
    run.journal.drop(entry)

