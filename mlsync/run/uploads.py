"""Registering a local model file (`path:`): hash, register_meta, upload_chunk, wait.

The file is hashed again at apply time and refused if it differs from what the plan showed; the
chunks are hashed as they are read, so a file changed during the upload is caught before its last
chunk (whose arrival makes the server register the model).

Chunks 0 … n-2 go out `Run.upload_concurrency` at a time (`--upload-concurrency`); the last one only
after every other was acknowledged. ML Commons 2.19 (`MLModelChunkUploader`) indexes each chunk as
its own document `<model id>_<chunk number>` without looking at the others, and re-indexes the model
as REGISTERED when the chunk numbered `total_chunks - 1` is indexed, whatever else has arrived: sent
early, it would register a model with chunks missing. The file is read in order by one thread, at
most `upload_concurrency` chunks ahead of the acknowledgements, so no more than that many chunks are
in memory at once (10 MB each).
"""

from __future__ import annotations

import hashlib
import math
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, BinaryIO, Optional

from mlsync.core.errors import ClusterError, MlsyncError
from mlsync.core.plan import ResourceChange
from mlsync.core.state import JournalEntry
from mlsync.input.flatten import open_regular, sha256_file
from mlsync.run.context import Run, StepFailed
from mlsync.run.steps.model import record_registered, registration_details
from mlsync.run.tasks import wait_model_registered

CHUNK_SIZE = 10_000_000          # upload_chunk slice size (the server's maximum)
DEFAULT_UPLOAD_CONCURRENCY = 1   # chunks in flight (`--upload-concurrency`): no gain measured on a
                                 # CPU-bound node (docs/performance.md §2)


def register_local(run: Run, change: ResourceChange, body: dict, old_id: Optional[str]) -> tuple[str, dict]:
    """register_model_meta + upload_chunk in CHUNK_SIZE slices (`send_chunks`) from artifact["path"];
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
        with open_regular(path) as fh:
            send_chunks(run, change, model_id, fh, total, sha, path)
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


def send_chunks(run: Run, change: ResourceChange, model_id: str, fh: BinaryIO, total: int, sha: str,
                path: str) -> None:
    """upload_chunk of `total` CHUNK_SIZE slices of `fh` (read in order, hashed as read): 0 … total-2 by
    up to `run.upload_concurrency` threads; then, once every one of them was acknowledged and only if
    the file still hashes to `sha`, the last. A chunk is read only once it holds one of the apply's
    `run.chunk_slots` (as many as `upload_concurrency`, shared by the uploads that run in parallel)
    and gives it back once acknowledged: never more chunks in memory than that, whatever the
    `--parallelism`.

    A failed chunk (after `run.retry`) stops the reading; the chunks in flight are waited for before
    the error is raised, so nothing reaches the model after the caller deletes it, and the last chunk
    is never sent: the model stays REGISTERING, which recovery deletes and uploads again."""
    workers = max(1, min(run.upload_concurrency, total - 1))
    slots = run.chunk_slots                      # one per chunk read and not yet acknowledged
    lock = threading.Lock()
    acked = [0]

    def put(number: int, data: bytes) -> None:
        run.retry(lambda: run.cluster.upload_chunk(model_id, number, data))
        with lock:
            acked[0] += 1
            done = acked[0]
        run.reporter.on_progress(change, "upload", f"chunk {done}/{total}")

    def work(number: int, box: list) -> None:
        try:
            put(number, box.pop())               # the chunk's only reference is put's frame
        finally:
            slots.release()                      # ... which is gone here: the reader may read another

    def first_error(futures: list[Future]) -> Optional[BaseException]:
        return next((f.exception() for f in futures if f.done() and f.exception() is not None), None)

    running = hashlib.sha256()
    futures: list[Future] = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mlsync-upload") as pool:
        for number in range(total - 1):
            slots.acquire()
            try:
                futures = [f for f in futures if not f.done() or f.exception() is not None]
                err = first_error(futures)
                if err is not None:
                    raise err                    # leaving the pool waits for the chunks in flight
                run.check_alive()
                run.renew_if_due()
                data = fh.read(CHUNK_SIZE)
                running.update(data)
                futures.append(pool.submit(work, number, [data]))   # work() gives the slot back
            except BaseException:
                slots.release()
                raise
            del data
        wait(futures)
    err = first_error(futures)
    if err is not None:
        raise err
    with slots:
        data = fh.read(CHUNK_SIZE)
        running.update(data)
        if running.hexdigest() != sha:
            raise MlsyncError(f"{path} changed during the upload; nothing was registered")
        run.check_alive()
        put(total - 1, data)
        del data
    run.renew_if_due()
