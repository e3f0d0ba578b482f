"""Steps for model versions: register (URL and remote; local files in `mlsync.run.uploads`),
replace, update, adopt, the metadata fix-up after registration, deploy and undeploy."""

from __future__ import annotations

from typing import Any, Optional

from mlsync.core.errors import MlsyncError, TaskFailed
from mlsync.core.normalize import DEPLOYED_STATES, MODEL_FIXUP_FIELDS, MODEL_UPDATE_FUNCTIONS, partially_deployed
from mlsync.core.plan import Action, ResourceChange
from mlsync.core.polling import SETTLE, Timeout, poll_until
from mlsync.core.state import JournalEntry
from mlsync.run.context import Run, StepFailed
from mlsync.run.steps.simple import delete, retire
from mlsync.run.tasks import wait_model_registered

DEPLOY_SETTLE_SECONDS = 10.0   # how long a remote model's doc may read DEPLOYING after a completed deploy


def actions() -> dict:
    return {Action.REGISTER: register, Action.REPLACE: register, Action.UPDATE: update, Action.ADOPT: update,
            Action.DEPLOY: deploy, Action.UNDEPLOY: undeploy, Action.DELETE: delete}


# ---------------------------------------------------------------------- register / replace

def register(run: Run, change: ResourceChange) -> None:
    """Register the version (a replace: and queue the old one for deletion once this one is done);
    an interrupted apply's registration of the same form is adopted, not registered twice."""
    from mlsync.run.uploads import register_local

    addr = str(change.address)
    after_fp = run.after_digest(change)
    old_id = change.server_id if Action.REPLACE in change.actions else None
    with run.mutex:
        recovered = run.recovered.get(addr)
    if recovered is not None and recovered[1] == after_fp:
        _adopt_recovered(run, change, recovered[0], old_id)
        return
    if recovered is not None:   # the interrupted apply registered an older form: supersede it
        if old_id is None:
            old_id = recovered[0]
        elif recovered[0] != old_id:
            with run.mutex:
                if run.journal.supersede(addr, recovered[0], None, "registered by an interrupted apply for an "
                                                                   "older form"):
                    run.journal.later()   # rides on the registration's intent
    body = run.body(change)
    if (change.artifact or {}).get("path"):
        model_id, fields = register_local(run, change, body, old_id)
    else:
        model_id, fields = _register(run, change, body, old_id)
    if fields is not None:
        queue_fixup(run, change, model_id, body, fields)


def _adopt_recovered(run: Run, change: ResourceChange, model_id: str, old_id: Optional[str]) -> None:
    """Registered by the interrupted apply for this very form: no second registration."""
    body = run.body(change)
    doc = run.step(change, "adopt", lambda: run.retry(lambda: run.cluster.get_model(model_id)) or {},
                   lambda d: f"model {model_id}, registered by the interrupted apply")
    with run.mutex:
        rs = run.state.resources.get(str(change.address))
    fields = fixup_fields(change, body, doc)
    run.journal.record(change, model_id, server_version=doc.get("model_version") or (rs.server_version if rs else None),
                       applied=None if fields else run.after_digest(change),
                       cred_fp=rs.credential_fingerprint if rs else None, replaced=old_id)
    queue_fixup(run, change, model_id, body, fields)


def registration_details(run: Run, change: ResourceChange, body: dict, old_id: Optional[str]) -> dict:
    """What the journal keeps about a registration: enough to find the model by natural key."""
    return {"name": body.get("name") or change.address.name, "group_id": body.get("model_group_id"),
            "hash": body.get("model_content_hash_value"), "fingerprint": run.after_digest(change),
            "credential_fingerprint": run.journal.credential_fingerprint(change, run.credentials.get(str(change.address))),
            "replaces": old_id}


def register_intent(run: Run, change: ResourceChange) -> Optional[tuple[str, dict]]:
    """The intent a URL / remote registration will journal (saved with its phase's wave), or None (a
    local file's intent needs its hash, taken in its own step)."""
    if (change.artifact or {}).get("path") or not ({Action.REGISTER, Action.REPLACE} & set(change.actions)):
        return None
    body = run.quiet_body(change)
    if body is None:
        return None
    old_id = change.server_id if Action.REPLACE in change.actions else None
    return "register_model", registration_details(run, change, body, old_id)


def _register(run: Run, change: ResourceChange, body: dict, old_id: Optional[str]) -> tuple[str, Optional[dict]]:
    """register_model: remote models answer with the model id at once; URL models with a task.
    -> (model id, the fields its fix-up must set), or None for the fields of a remote model: it is
    recorded by `read_registered` at the end of the phase."""
    addr = str(change.address)
    details = registration_details(run, change, body, old_id)

    def send() -> tuple[Any, JournalEntry, bool]:
        return run.journal.nonidempotent(change, "register_model", details,
                                         lambda: run.cluster.register_model(body), run.recovery.find_model)
    res, entry, found = run.step(change, "register", send,
                                 lambda r: f"model {r[0]}" if r[2] else (
                                     f"model {r[0].model_id}" if r[0].model_id else f"task {r[0].task_id}"))
    doc: Optional[dict] = None
    if found:
        model_id = res
        run.journal.sent(entry, object_id=model_id)
        doc = run.step(change, "wait", lambda: wait_model_registered(run, model_id, addr))
        if doc is None:
            run.journal.drop(entry)
            raise run.give_up(change, "wait", f"model {model_id} disappeared: its registration failed")
    elif res.model_id:
        # remote: the model exists; its doc (version, dropped fields) is read with the phase's others
        run.journal.sent(entry, object_id=res.model_id)
        with run.mutex:
            run.unread.append((change, res.model_id, body, details, entry, old_id))
        return res.model_id, None
    else:
        run.journal.sent(entry, task_id=res.task_id)

        def wait() -> dict:
            try:
                return run.waiter.wait(res.task_id, addr)
            except TaskFailed:
                run.journal.drop(entry)   # the server rolled the registration back
                raise
        task = run.step(change, "wait", wait, lambda t: f"model {t.get('model_id')}")
        model_id = task.get("model_id")
        if not model_id:
            run.journal.drop(entry)
            raise run.give_up(change, "wait", f"task {res.task_id} COMPLETED without a model_id")
    if doc is None:
        doc = run.retry(lambda: run.cluster.get_model(model_id)) or {}
    return model_id, record_registered(run, change, model_id, body, doc, details, entry, old_id)


def read_registered(run: Run) -> None:
    """Record the remote models registered in this phase, from one batched read of their docs (the
    server's model_version, the fields registration dropped) instead of one GET each."""
    with run.mutex:
        pending, run.unread = run.unread, []
    if not pending:
        return
    try:
        docs = run.retry(lambda: run.cluster.get_models([p[1] for p in pending]))
    except MlsyncError:
        docs = {}          # each one is read on its own below, a failure failing only its resource
    for change, model_id, body, details, entry, old_id in pending:
        doc = docs.get(model_id)
        try:
            if doc is None:
                doc = run.step(change, "read", lambda: run.retry(lambda: run.cluster.get_model(model_id)) or {})
            fields = record_registered(run, change, model_id, body, doc, details, entry, old_id)
        except StepFailed:
            continue
        queue_fixup(run, change, model_id, body, fields)


def record_registered(run: Run, change: ResourceChange, model_id: str, body: dict, doc: dict, details: dict,
                      entry: JournalEntry, old_id: Optional[str]) -> dict:
    """Record a registered version (closing its journal entry); -> the fields its fix-up must set."""
    fields = fixup_fields(change, body, doc)
    run.journal.record(change, model_id, server_version=doc.get("model_version"),
                       applied=None if fields else run.after_digest(change),
                       cred_fp=details["credential_fingerprint"], drop=entry, replaced=old_id)
    return fields


# ---------------------------------------------------------------------- fix-ups

def fixup_fields(change: ResourceChange, body: dict, doc: dict) -> dict:
    """Desired metadata that the stored model lacks after registration (the last chunk re-indexes
    the document without description, is_enabled, rate_limiter, deploy_setting, interface,
    guardrails; 2.x URL and remote registration drop is_enabled). Values in request form."""
    after = change.after or {}
    out = {}
    for key in MODEL_FIXUP_FIELDS:
        if doc.get(key) is not None:
            continue
        if body.get(key) is not None:
            out[key] = body[key]
        elif after.get(key) is not None:
            out[key] = after[key]
    return out


def queue_fixup(run: Run, change: ResourceChange, model_id: str, body: dict, fields: dict) -> None:
    if not fields:
        return
    function = str((change.after or {}).get("function_name") or body.get("function_name") or "TEXT_EMBEDDING").upper()
    if function not in MODEL_UPDATE_FUNCTIONS:
        run.result.warnings.append(
            f"{change.address}: {', '.join(sorted(fields))} may have been dropped at registration and cannot be "
            f"set again: Update Model does not support function {function}")
        return
    with run.mutex:
        run.fixups.append((change, model_id, fields))


def fixup(run: Run, item: tuple[ResourceChange, str, dict]) -> None:
    change, model_id, fields = item
    run.step(change, "fixup", lambda: run.retry(lambda: run.cluster.update_model(model_id, fields)),
             lambda _: ", ".join(sorted(fields)))
    with run.mutex:
        rs = run.state.resources.get(str(change.address))
        if rs is not None and rs.id == model_id:
            rs.applied_fingerprint = run.after_digest(change)
            rs.applied_form = run.journal.applied_form(change, rs.applied_fingerprint)
            run.journal.later()


# ---------------------------------------------------------------------- update / adopt

def update(run: Run, change: ResourceChange) -> None:
    """Update in place (Action.UPDATE) or take into the state as it is (Action.ADOPT alone)."""
    addr, acts = str(change.address), change.actions
    model_id = run.server_id(change, "update" if Action.UPDATE in acts else "adopt")
    version = change.server_version
    if Action.UPDATE in acts:
        body = run.body(change, update=True)
        run.step(change, "update", lambda: run.retry(lambda: run.cluster.update_model(model_id, body)),
                 lambda _: f"id {model_id}")
    else:
        run.step(change, "adopt", lambda: model_id, lambda _: f"id {model_id}")
    if version is None:
        doc = run.retry(lambda: run.cluster.get_model(model_id)) or {}
        version = doc.get("model_version")
    cred = run.credentials.get(addr)
    sent_cred = cred if isinstance((change.after or {}).get("connector"), dict) and Action.UPDATE in acts else None
    with run.mutex:
        rs = run.state.resources.get(addr)
    if sent_cred is None and Action.ADOPT in acts and not (rs and rs.credential_fingerprint):
        sent_cred = cred   # adopted: its inline credential is taken to be the file's, as for connectors
    run.journal.record(change, model_id, server_version=version, applied=run.after_digest(change),
                       cred_fp=run.journal.credential_fingerprint(change, sent_cred))


# ---------------------------------------------------------------------- deploy state

def undeploy(run: Run, change: ResourceChange) -> None:
    model_id = run.server_id(change, "undeploy")
    rr = run.result_of(change)
    rr.id = rr.id or model_id
    run.step(change, "undeploy", lambda: run.retry(lambda: run.cluster.undeploy_model(model_id)))
    with run.mutex:
        run.undeployed.add(str(change.address))


def deploy(run: Run, change: ResourceChange) -> None:
    addr = str(change.address)
    with run.mutex:
        redeploy = addr in run.undeployed
        failed = addr in run.failed
    if failed and not redeploy:
        return   # its register / update failed or was skipped: nothing (new) to deploy
    if failed:
        run.result.warnings.append(f"{addr}: redeploying it although an earlier step failed, so that it "
                                   f"is not left undeployed")
    model_id = run.server_id(change, "deploy")
    rr = run.result_of(change)
    rr.id = rr.id or model_id

    def send() -> Optional[str]:
        task_id = run.retry(lambda: run.cluster.deploy_model(model_id, settle=False))
        if task_id:
            run.waiter.wait(task_id, addr)
        else:
            with run.mutex:
                run.settling.append((change, model_id))
        return task_id
    run.step(change, "deploy", send, lambda t: f"model {model_id}" + (f", task {t}" if t else ""))


def settle_deploys(run: Run) -> None:
    """The server answers a remote deploy COMPLETED a few ms before the model doc leaves DEPLOYING (a
    predict, or Update Model, in between is refused): wait for the phase's remote deploys together,
    one batched read per poll, before the apply reports them done."""
    with run.mutex:
        pending, run.settling = run.settling, []
    if not pending:
        return
    ids = [model_id for _, model_id in pending]

    def unsettled(docs: dict) -> list[str]:     # not seen yet, or still on their way
        return [i for i in ids if (docs.get(i) or {}).get("model_state") in (None, "DEPLOYING", "LOADING")]
    try:
        docs = poll_until(lambda: run.retry(lambda: run.cluster.get_models(ids)), lambda d: not unsettled(d),
                          policy=SETTLE, deadline=run.clock() + DEPLOY_SETTLE_SECONDS, clock=run.clock,
                          sleep=run.sleep)
    except Timeout as out:
        docs = out.last
        run.result.warnings.append(f"{len(unsettled(docs))} remote model(s) still read DEPLOYING "
                                   f"{DEPLOY_SETTLE_SECONDS:.0f}s after their deploy completed")
    # COMPLETED is the answer of the node that took the request: a node where the deploy failed shows
    # only in the doc (DEPLOY_FAILED, or fewer serving nodes than planned)
    for change, model_id in pending:
        doc = docs.get(model_id) or {}
        if doc.get("model_state") == "DEPLOY_FAILED":
            run.fail(change, "deploy", MlsyncError(f"model {model_id}: the deploy answered COMPLETED but the "
                                                   f"model reads DEPLOY_FAILED"))
        elif partially_deployed(doc):
            run.result.warnings.append(f"{change.address}: model {model_id} serves on fewer nodes than planned "
                                       f"({partially_deployed(doc)}); the next apply deploys it again")


def delete_superseded(run: Run, entry: JournalEntry) -> None:
    """Undeploy (if loaded) and delete an old version a replace superseded, once its successor is
    registered and deployed as the file asks; the old version keeps serving until then."""
    def delete_old(model_id: str) -> None:
        doc = run.retry(lambda: run.cluster.get_model(model_id))
        if doc is not None and doc.get("model_state") in DEPLOYED_STATES:
            run.retry(lambda: run.cluster.undeploy_model(model_id))
        if doc is not None:
            run.retry(lambda: run.cluster.delete_model(model_id))
    retire(run, entry, "version", delete_old)

