"""Concurrent chunk upload of a local model file on the real node (run/uploads.py, `--upload-concurrency`).

The tiny ONNX model of tests/models/tiny_onnx.py, padded with a stored entry of random bytes into a
multi-chunk zip, is registered by `path:` with chunks sent 4 at a time (the chunk size lowered
through `uploads.CHUNK_SIZE`: the same code path, more chunks for less data; the server takes any
chunk size up to 10 MB), then deployed and asked for a vector. The deploy reassembles the chunks in
their numbers and checks the whole against `model_content_hash_value`, and the vector must be the one
the graph computes: a chunk missing, misnumbered or registered early fails it.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import zipfile

import pytest

from helpers import wait_for_model_state, wait_until
from mlsync.edge.ml import MLCalls
from mlsync.run import uploads
from models import tiny_onnx
from stack_helpers import destroy, run_apply, stack_file
from test_local_models import FIRST_DEPLOY_TIMEOUT, assert_answers, model_gone, onnx_stack, only_model_id

pytestmark = pytest.mark.cluster

CHUNK = 256 * 1024
PADDING = 11 * CHUNK + 1234         # with the model: 12 chunks and a short last one


def padded_zip() -> bytes:
    buf = io.BytesIO(tiny_onnx.zip_bytes(tiny_onnx.SEED))
    with zipfile.ZipFile(buf, "a", zipfile.ZIP_STORED) as zf:
        zf.writestr(zipfile.ZipInfo("padding.bin", tiny_onnx.ZIP_DATE), os.urandom(PADDING), zipfile.ZIP_STORED)
    return buf.getvalue()


def test_chunks_sent_concurrently_register_a_model_that_deploys_and_answers(tmp_path, opts, unique_name, os_client,
                                                                            monkeypatch):
    data = padded_zip()
    total = -(-len(data) // CHUNK)
    assert total >= 12
    name, sha = "padded.zip", hashlib.sha256(data).hexdigest()
    (tmp_path / name).write_bytes(data)
    u = unique_name("upc")
    f = stack_file(tmp_path, u, onnx_stack(u, "path", {tiny_onnx.SEED: (None, sha, name)}))

    lock = threading.Lock()
    events: list[tuple[str, int]] = []
    flight = {"now": 0, "max": 0}
    real = MLCalls.upload_chunk

    def traced(self, model_id: str, number: int, chunk: bytes) -> None:
        with lock:
            events.append(("start", number))
            flight["now"] += 1
            flight["max"] = max(flight["max"], flight["now"])
        try:
            real(self, model_id, number, chunk)
        finally:
            with lock:
                events.append(("ack", number))
                flight["now"] -= 1
    monkeypatch.setattr(MLCalls, "upload_chunk", traced)
    monkeypatch.setattr(uploads, "CHUNK_SIZE", CHUNK)

    code, text = run_apply([f], opts, upload_concurrency=4)
    assert code == 0, text
    assert flight["max"] > 1, events                          # the chunks did go out concurrently
    last = events.index(("start", total - 1))
    assert all(events.index(("ack", n)) < last for n in range(total - 1)), events
    assert sorted(n for kind, n in events if kind == "start") == list(range(total))

    mid = only_model_id(f, opts)
    doc = wait_for_model_state(os_client, mid, "DEPLOYED", timeout=FIRST_DEPLOY_TIMEOUT)
    assert (doc["total_chunks"], doc["model_content_size_in_bytes"], doc["model_content_hash_value"]) == \
        (total, len(data), sha)
    chunks = os_client.plugins.ml.search_models(body={"size": 100, "_source": ["chunk_number"], "query": {"bool": {
        "filter": [{"term": {"model_id": mid}}, {"exists": {"field": "chunk_number"}}]}}})["hits"]["hits"]
    assert sorted(h["_source"]["chunk_number"] for h in chunks) == list(range(total))
    assert_answers(os_client, mid)                            # the node reassembled the exact file
    destroy([f], opts)
    assert wait_until(lambda: model_gone(os_client, mid), timeout=30, message=f"model {mid} deleted")
