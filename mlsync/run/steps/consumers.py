"""Steps for the consumers of models (docs/references.md): ingest and search pipelines, PUT whole under
their own id (create or replace, idempotent), and agents, which 2.19 cannot update: a changed agent is
registered again (journaled, like every call that creates something) and the old one is deleted at the
end of the apply, after everything that named it moved on.

A consumer's `${model:...}` / `${connector:...}` / `${agent:...}` references are resolved here, from
the ids this apply registered or the state holds, right before the body is sent: the plan may only
know them as "(known after apply)".
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

from mlsync.core import normalize, references
from mlsync.core.address import Address
from mlsync.core.errors import MlsyncError
from mlsync.core.plan import Action, ResourceChange
from mlsync.core.state import JournalEntry
from mlsync.run.context import Run, StepFailed
from mlsync.run.steps.simple import retire


def pipeline_actions() -> dict:
    return {Action.CREATE: put, Action.UPDATE: put, Action.ADOPT: adopt, Action.DELETE: delete_pipeline}


def agent_actions() -> dict:
    from mlsync.run.steps.simple import delete
    return {Action.CREATE: register, Action.REPLACE: register, Action.ADOPT: adopt, Action.DELETE: delete}


def _id_of(run: Run, address: Address) -> Optional[str]:
    """The id `address` has now: registered by this apply, else the state's, else the plan's."""
    addr = str(address)
    with run.mutex:
        found = run.model_ids.get(addr) or run.refs.get(addr)
        rs = run.state.resources.get(addr)
    if found:
        return found
    if rs is not None:
        return rs.id
    change = run.changes.get(addr)
    return change.server_id if change is not None else None


def resolved(run: Run, change: ResourceChange) -> ResourceChange:
    """`change` with `after` rebuilt from its template with the ids as they are now; a reference whose
    target has no id fails the change (nothing is sent with a placeholder in it)."""
    if change.template is None:
        return change
    missing: list[str] = []

    def lookup(address: Address) -> Optional[str]:
        found = _id_of(run, address)
        if found is None:
            missing.append(str(address))
        return found
    after = references.resolve(change.template, lookup)
    if missing:
        raise run.give_up(change, "prepare", f"no id for {', '.join(sorted(set(missing)))}, which it names")
    return replace(change, after=after)


def _body(run: Run, change: ResourceChange) -> dict:
    try:
        return normalize.request_body(change, refs={})
    except Exception as err:  # noqa: BLE001
        run.fail(change, "prepare", MlsyncError(f"cannot build the request body: {err}"))
        raise StepFailed() from err


def put(run: Run, change: ResourceChange) -> None:
    """PUT the pipeline (create, or replace the whole body) with its references resolved."""
    change = resolved(run, change)
    body = _body(run, change)
    pid = change.address.name
    run.step(change, "put", lambda: run.retry(lambda: run.cluster.put_pipeline(change.kind, pid, body)),
             lambda _: f"id {pid}")
    run.journal.record(change, pid, applied=run.after_digest(change))


def adopt(run: Run, change: ResourceChange) -> None:
    oid = run.server_id(change, "adopt")
    run.step(change, "adopt", lambda: oid, lambda _: f"id {oid}")
    run.journal.record(change, oid, applied=run.after_digest(change))


def delete_pipeline(run: Run, change: ResourceChange) -> None:
    pid = change.server_id or change.address.name
    run.result_of(change).id = pid
    run.step(change, "delete", lambda: run.retry(lambda: run.cluster.delete_pipeline(change.kind, pid)),
             lambda _: f"id {pid}")
    run.journal.forget(str(change.address))


def register(run: Run, change: ResourceChange) -> None:
    """Register the agent (create, or replace: the old agent is queued for deletion at the end of the
    apply); an agent an interrupted apply registered for this very form is taken instead."""
    addr = str(change.address)
    change = resolved(run, change)
    after_fp = run.after_digest(change)
    old_id = change.server_id if Action.REPLACE in change.actions else None
    with run.mutex:
        recovered = run.recovered.get(addr)
    if recovered is not None and recovered[1] == after_fp:
        oid = recovered[0]
        run.step(change, "adopt", lambda: oid, lambda _: f"id {oid}, registered by the interrupted apply")
        run.journal.record(change, oid, applied=after_fp, replaced=old_id)
        return
    if recovered is not None and old_id is None:
        old_id = recovered[0]     # registered by the interrupted apply for an older form: retire it too
    body = _body(run, change)
    details = {"name": body.get("name") or change.address.name, "fingerprint": after_fp,
               "credential_fingerprint": None, "replaces": old_id}

    def send() -> tuple[str, JournalEntry]:
        oid, entry, _ = run.journal.nonidempotent(change, "register_agent", details,
                                                  lambda: run.cluster.register_agent(body), run.recovery.find_object)
        return oid, entry
    oid, entry = run.step(change, "register", send, describe=lambda r: f"id {r[0]}")
    run.journal.record(change, oid, applied=after_fp, drop=entry, replaced=old_id)


def retire_superseded(run: Run, entry: JournalEntry) -> None:
    """Delete an agent a replace superseded (after everything that named it moved on); close its entry."""
    retire(run, entry, "agent", lambda oid: run.retry(lambda: run.cluster.delete_agent(oid)))
