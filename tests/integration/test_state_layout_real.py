"""Layout 2 of the cluster state on the real node (issue 12, goal 5): a save's request size follows
what changed, a fresh reader sees every acknowledged save at once (parts are written without a
refresh), a layout-1 document written the old way is migrated by the first lock, and the ownership
search reads both layouts. Each test uses its own state index."""

from __future__ import annotations

import json
import uuid

import pytest

from mlsync.core.state import JournalEntry, ResourceState, StackState, is_split
from mlsync.edge.cluster import Cluster
from mlsync.edge.statestore import ClusterStateStore

pytestmark = pytest.mark.cluster


@pytest.fixture
def index(os_client):
    name = f"mlsync-state-test-{uuid.uuid4().hex[:8]}"
    yield name
    os_client.indices.delete(index=name, ignore_unavailable=True, expand_wildcards="all")


def cluster_of(opts, index: str) -> Cluster:
    return Cluster.connect(opts, state_index=index)


def resource(i: int) -> ResourceState:
    return ResourceState(address=f'model_group["g{i}"]', kind="model_group", id=f"id-{i}",
                         applied_fingerprint="f" * 64, applied_form={"name": f"g{i}", "description": "x" * 300})


def bytes_sent(cluster: Cluster, fn) -> int:
    """Request body bytes `fn()` sends through `cluster`."""
    conn = cluster._transport.client.transport.get_connection()
    real = conn.perform_request
    total = [0]

    def counting(method, url, params=None, body=None, *a, **kw):
        total[0] += len(body or b"")
        return real(method, url, params, body, *a, **kw)
    conn.perform_request = counting
    try:
        fn()
    finally:
        conn.perform_request = real
    return total[0]


def test_save_size_follows_the_change_and_a_fresh_reader_sees_it(opts, index):
    sizes = {}
    for n in (10, 400):
        cluster = cluster_of(opts, index)
        stack = f"s{n}"
        store = ClusterStateStore(cluster)
        state = store.lock(stack, "apply", 300)
        state.resources.update({resource(i).address: resource(i) for i in range(n)})
        store.save(state)
        state.resources[resource(1).address].id = "changed"
        state.journal.append(JournalEntry(uuid.uuid4().hex, 'model["g1"]["m"]', "register_model", 1.0))
        sizes[n] = bytes_sent(cluster, lambda: store.save(state))
        reader = ClusterStateStore(cluster_of(opts, index)).load(stack)       # no wait, no refresh by hand
        assert reader == state
        head = cluster.read_state(stack)
        assert is_split(head.body) and len(head.parts) == n + 1
    assert sizes[400] == pytest.approx(sizes[10], abs=16), sizes              # not O(stack)
    assert sizes[400] < 3_000, sizes


def test_a_layout1_document_is_migrated_by_the_first_lock(opts, index, os_client):
    stack = f"old-{uuid.uuid4().hex[:6]}"
    old = StackState(stack, serial=4, resources={resource(i).address: resource(i) for i in range(30)},
                     journal=[JournalEntry("j1", resource(0).address, "create_group", 5.0, object_id="pending-id")])
    cluster = cluster_of(opts, index)
    cluster.write_state(stack, old.to_json(), None, None)                   # as an older mlsync wrote it
    other = ClusterStateStore(cluster_of(opts, index))
    other.lock("new-stack", "apply", 300)                                    # a layout-2 stack beside it
    owners_before = other.owners(exclude_stack="new-stack")
    assert owners_before["pending-id"].pending and owners_before["id-7"].address == resource(7).address

    store = ClusterStateStore(cluster)
    state = store.lock(stack, "apply", 300)
    stored = os_client.get(index=index, id=stack)["_source"]
    assert stored["layout"] == 2 and "resources" not in stored and "journal" not in stored
    loaded = ClusterStateStore(cluster_of(opts, index)).load(stack)
    assert loaded.resources == old.resources and loaded.journal == old.journal and loaded.lock == state.lock
    assert other.owners(exclude_stack="new-stack") == owners_before
    assert json.dumps(old.fingerprint_key) not in json.dumps(cluster.search_states())
