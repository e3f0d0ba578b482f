"""Found by the fault campaign: one HTTP 500 on the state read (or a lost answer to the state write) of
the lease release made a successful apply exit 0 with "warning: could not release the lock" and leave
its lease behind for up to its TTL (300 s), refusing every apply from another host meanwhile. Releasing
is idempotent (only this lease's id is cleared, after a fresh read), so it is tried again.

On the in-memory fake (tests/fakes.py); the real-node proof is the campaign (`lock_left` per phase).
"""

from __future__ import annotations

import io
import itertools

from fakes import FakeCluster

from mlsync import commands as app
from mlsync.commands import common
from mlsync.edge.statestore import ClusterStateStore

STACK = "release-stack"


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def time(self) -> float:
        return self.now


def locked_store():
    fake = FakeCluster(Clock())
    store = ClusterStateStore(fake)
    state = store.lock(STACK, "me", 300)
    return fake, store, state


def test_a_500_on_the_release_read_is_tried_again():
    fake, store, state = locked_store()
    fake.fail("read_state")                               # HTTP 500, once
    released = store.unlock(STACK, lock_id=state.lock.lock_id)
    assert released is not None and released.lock_id == state.lock.lock_id
    assert ClusterStateStore(fake).load(STACK).lock is None


def test_a_lost_answer_to_the_release_write_is_tried_again():
    fake, store, state = locked_store()
    fake.fail("write_state", after=True)                  # the lease is cleared, the answer lost
    store.unlock(STACK, lock_id=state.lock.lock_id)
    assert ClusterStateStore(fake).load(STACK).lock is None


def test_apply_releases_its_lease_despite_one_failed_read(tmp_path, monkeypatch):
    """Through `mlsync apply` on the fake: the 500 hits the read of the release (the last read_state)."""
    fake = FakeCluster(Clock())
    monkeypatch.setattr(common, "connect", lambda options: fake)
    f = tmp_path / "stack.yaml"
    f.write_text(f"version: 1\nstack: {STACK}\nmodel_groups:\n  - name: g\n")
    reads = itertools.count(1)
    count_reads = FakeCluster.read_state

    def read_state(self, stack):
        n = next(reads)
        if n == read_state.fail_at:
            fake.fail("read_state")
        return count_reads(self, stack)

    read_state.fail_at = -1
    monkeypatch.setattr(FakeCluster, "read_state", read_state)
    from mlsync.edge.cluster import ConnectionOptions

    opts = ConnectionOptions(url="http://127.0.0.1:9")
    assert app.apply([str(f)], opts, io.StringIO(), auto_approve=True) == 0
    total = next(reads) - 1                               # reads of one apply; the last is the release's
    f.write_text(f"version: 1\nstack: {STACK}\nmodel_groups:\n  - name: g\n  - name: h\n")
    reads = itertools.count(1)
    read_state.fail_at = total
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    assert app.apply([str(f)], opts, io.StringIO(), auto_approve=True) == 0
    assert "could not release the lock" not in err.getvalue()
    assert ClusterStateStore(fake).load(STACK).lock is None
