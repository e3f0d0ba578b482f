"""Concurrent chunk upload of a local model file (run/uploads.py, `--upload-concurrency`), on the fake.

ML Commons registers a model when the chunk numbered total_chunks-1 is indexed, whatever else has
arrived (MLModelChunkUploader): chunks 0 … n-2 may go in parallel, the last only after every other
was acknowledged. The file is read at most `upload_concurrency` chunks ahead of the acknowledgements.
"""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/ for `fakes`

from fakes import SimulatedCrash  # noqa: E402
from test_executor import (STACK, clock, fake, group, local_model, replan, run, store,  # noqa: E402,F401
                           stub_body)

from mlsync.core.errors import ClusterError  # noqa: E402
from mlsync.edge.statestore import ClusterStateStore  # noqa: E402
from mlsync.run import uploads  # noqa: E402

CHUNK = 10
ADDR = 'model["g"]["m"]["1"]'


class Trace:
    """Wraps the fake's upload_chunk and the artifact's reads: what started, what was acknowledged,
    and how many chunks were read but not yet acknowledged at every read."""

    def __init__(self, fake, monkeypatch, *, slow: dict[int, float]) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[str, int]] = []
        self.in_flight = self.max_in_flight = 0
        self.read = self.acked = 0
        self.max_ahead = 0
        inner = fake.upload_chunk

        def upload_chunk(model_id: str, number: int, data: bytes) -> None:
            with self.lock:
                self.events.append(("start", number))
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                time.sleep(slow.get(number, 0.0))   # real time: the threads overlap
                inner(model_id, number, data)
            finally:
                with self.lock:
                    self.events.append(("ack", number))
                    self.in_flight -= 1
                    self.acked += 1
        monkeypatch.setattr(fake, "upload_chunk", upload_chunk)
        real_open = uploads.open_regular
        trace = self

        class Counted:
            def __init__(self, f) -> None:
                self.f = f

            def read(self, n: int) -> bytes:
                data = self.f.read(n)
                if data:
                    with trace.lock:
                        trace.read += 1
                        trace.max_ahead = max(trace.max_ahead, trace.read - trace.acked)
                return data

            def __enter__(self):
                return self

            def __exit__(self, *exc) -> None:
                self.f.close()
        monkeypatch.setattr(uploads, "open_regular", lambda path: Counted(real_open(path)))

    def index(self, kind: str, number: int) -> int:
        return self.events.index((kind, number))


@pytest.fixture
def artifact(tmp_path, monkeypatch):
    monkeypatch.setattr(uploads, "CHUNK_SIZE", CHUNK)
    path = tmp_path / "model.zip"
    path.write_bytes(os.urandom(CHUNK * 11 + 3))          # 12 chunks, the last one short
    return path


@pytest.mark.parametrize("concurrency", [1, 3, 4])
def test_the_last_chunk_is_sent_only_after_every_other_was_acknowledged(run, fake, store, artifact, monkeypatch,
                                                                         concurrency):
    # chunks 0 and 1 are slow: sent at once with the last, they would arrive after it
    trace = Trace(fake, monkeypatch, slow={0: 0.15, 1: 0.1, 5: 0.05})
    res = run(group("g"), local_model("g", "m", "1", str(artifact)), upload_concurrency=concurrency)
    assert res.ok, res.errors
    mid = store.load(STACK).resources[ADDR].id
    last = 11
    assert trace.events.count(("start", last)) == 1
    assert all(trace.index("ack", n) < trace.index("start", last) for n in range(last)), trace.events
    assert b"".join(fake.chunks[mid][i] for i in range(12)) == artifact.read_bytes()
    assert fake.models[mid]["model_state"] == "REGISTERED"
    # concurrency is used, and bounded: never more chunks in flight, nor read ahead, than asked for
    assert trace.max_in_flight == concurrency
    assert trace.max_ahead <= concurrency


def test_a_failed_chunk_stops_the_upload_before_the_last_and_waits_for_those_in_flight(run, fake, store, artifact,
                                                                                       monkeypatch):
    trace = Trace(fake, monkeypatch, slow={0: 0.15, 1: 0.1})
    fake.fail("upload_chunk", ClusterError("upload_chunk", "m", 400, "refused"), when=lambda mid, n, data: n == 2)
    fake.on_call = lambda method: trace.events.append(("delete", -1)) if method == "delete_model" else None
    res = run(group("g"), local_model("g", "m", "1", str(artifact)), upload_concurrency=4)
    r = res.resources[ADDR]
    assert r.status == "failed" and "refused" in r.error
    assert ("start", 11) not in trace.events                  # the model was never registered
    assert trace.max_ahead <= 4
    # the incomplete model is deleted once every chunk in flight has answered, not before
    started = [n for kind, n in trace.events if kind == "start"]
    assert 2 in started and all(trace.index("ack", n) < trace.index("delete", -1) for n in started), trace.events
    assert not fake.models_named("m")


def test_a_crash_mid_upload_with_concurrent_chunks_restarts_the_upload_on_the_next_apply(run, fake, clock, artifact):
    plan = (group("g"), local_model("g", "m", "1", str(artifact)))
    fake.crash_after("upload_chunk", nth=5)
    with pytest.raises(SimulatedCrash):
        run(*plan, upload_concurrency=4)
    fake.revive()
    store2 = ClusterStateStore(fake, clock=clock.time)
    [entry] = store2.load(STACK).journal
    assert entry.operation == "register_model_meta" and entry.object_id
    assert fake.models[entry.object_id]["model_state"] == "REGISTERING"   # the last chunk was not sent
    store2.unlock(STACK, force=True)
    res = run(*replan(plan), store_=store2, upload_concurrency=4)
    assert res.ok, res.errors
    [mid] = fake.models_named("m")
    assert mid != entry.object_id and entry.object_id not in fake.models
    assert b"".join(fake.chunks[mid][i] for i in range(12)) == artifact.read_bytes()


@pytest.mark.timeout(20)
def test_a_file_replaced_by_a_fifo_after_hashing_is_refused_not_waited_on(run, fake, artifact):
    def swap(method: str) -> None:      # between the hash and the upload: the path becomes a FIFO
        if method == "register_model_meta":
            artifact.unlink()
            os.mkfifo(artifact)
    data = artifact.read_bytes()
    change = local_model("g", "m", "1", str(artifact))
    assert len(data) > CHUNK
    fake.on_call = swap
    res = run(group("g"), change)
    r = res.resources[ADDR]
    assert r.status == "failed" and "not a regular file" in r.error
    assert not fake.models_named("m")


def test_uploads_running_in_parallel_share_the_bound(run, fake, store, tmp_path, monkeypatch):
    monkeypatch.setattr(uploads, "CHUNK_SIZE", CHUNK)
    paths = []
    for name in ("a", "b", "c"):
        paths.append(tmp_path / f"{name}.zip")
        paths[-1].write_bytes(os.urandom(CHUNK * 8 + 1))
    trace = Trace(fake, monkeypatch, slow={n: 0.02 for n in range(9)})
    changes = [c for i, p in enumerate(paths) for c in (group(f"g{i}"), local_model(f"g{i}", "m", "1", str(p)))]
    res = run(*changes, parallelism=3, upload_concurrency=2)      # three groups: three uploads at once
    assert res.ok, res.errors
    assert len(fake.models_named("m")) == 3
    assert trace.max_in_flight == 2 and trace.max_ahead <= 2
