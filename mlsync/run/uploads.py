"""Registering a local model file (`path:`): hash, register_meta, upload_chunk in order, wait.

The file is hashed again at apply time and refused if it differs from what the plan showed; the
chunks are hashed as they are sent, so a file changed during the upload is caught before its last
chunk (whose arrival makes the server register the model).
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Optional

from mlsync.core.errors import ClusterError, MlsyncError
from mlsync.core.plan import ResourceChange
from mlsync.core.state import JournalEntry
from mlsync.input.flatten import sha256_file
from mlsync.run.context import Run, StepFailed
from mlsync.run.steps.model import record_registered, registration_details
from mlsync.run.tasks import wait_model_registered

CHUNK_SIZE = 10_000_000          # upload_chunk slice size (the server's maximum)


def register_local(run: Run, change: ResourceChange, body: dict, old_id: Optional[str]) -> tuple[str, dict]:
    """register_model_meta + upload_chunk in CHUNK_SIZE slices, in order, from artifact["path"];
    -> (model id, fields the fix-up must set)."""
    addr = str(change.address)
    artifact = change.artifact or {}
    path = artifact["path"]
    expected = (artifact.get("sha256") or "").lower() or None

    def hash_file() -> tuple[str, int]:
        digest, size = sha256_file(path)
        if expected and digest != expected:
            raise MlsyncError(f"{path} changed since the plan was made: its SHA-256 is {digest}, the plan "
                              f"has {expected}; make a new plan")
        if size == 0:
            raise MlsyncError(f"{path} is empty")
        return digest, size
    sha, size = run.step(change, "hash", hash_file, lambda r: f"{r[1]} bytes")
    total = max(1, math.ceil(size / CHUNK_SIZE))
    body = dict(body)
    body.pop("url", None)
    body.update(model_content_hash_value=sha, model_content_size_in_bytes=size, total_chunks=total)
    details = registration_details(run, change, body, old_id)

    def send() -> tuple[Any, JournalEntry, bool]:
        return run.journal.nonidempotent(change, "register_model_meta", details,
                                         lambda: run.cluster.register_model_meta(body), run.recovery.find_model)
    model_id, entry, _ = run.step(change, "register", send, lambda r: f"model {r[0]}")
    run.journal.sent(entry, object_id=model_id, now=True)   # one write per upload: the chunks take longer

    def upload() -> dict:
        running = hashlib.sha256()
        with open(path, "rb") as fh:
            for number in range(total):
                data = fh.read(CHUNK_SIZE)
                running.update(data)
                if number == total - 1 and running.hexdigest() != sha:
                    raise MlsyncError(f"{path} changed during the upload; nothing was registered")
                run.retry(lambda n=number, d=data: run.cluster.upload_chunk(model_id, n, d))
                run.reporter.on_progress(change, "upload", f"chunk {number + 1}/{total}")
                run.renew_if_due()
        # the last chunk re-indexes the model document after the response; wait for REGISTERED
        # so that the metadata fix-ups are not overwritten by that re-index
        doc = wait_model_registered(run, model_id, addr)
        if doc is None:
            raise MlsyncError(f"model {model_id} disappeared after its upload")
        return doc
    try:
        doc = run.step(change, "upload", upload, lambda d: f"{total} chunk(s), version {d.get('model_version')}")
    except StepFailed:
        try:   # do not leave a half-uploaded model behind (the next apply would delete it anyway)
            run.retry(lambda: run.cluster.delete_model(model_id))
            run.journal.drop(entry)
        except ClusterError as err:
            run.result.warnings.append(f"{addr}: could not delete the incomplete upload {model_id}: {err}")
        raise
    return model_id, record_registered(run, change, model_id, body, doc, details, entry, old_id)
