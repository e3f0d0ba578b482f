"""State stores: optimistic concurrency, atomic file writes, lease locks, and the `state` helpers."""

from __future__ import annotations

import json
import os
import sys
import threading

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/ for `fakes`

from fakes import FakeClock, FakeCluster  # noqa: E402

from mlsync.core.errors import LockHeld, MlsyncError, StateConflict  # noqa: E402
from mlsync.core.state import JournalEntry, ResourceState, StackState  # noqa: E402
from mlsync.edge import statestore  # noqa: E402
from mlsync.edge.statestore import (  # noqa: E402
    ClusterStateStore, FileStateStore, LockStillValid, state_list, state_list_text, state_rm, state_show,
    state_show_text,
)

STACK = "s1"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["file", "cluster"])
def make_store(request, tmp_path, clock):
    """A factory of independent stores (think: processes) sharing one backend."""
    fake = FakeCluster(clock)
    if request.param == "file":
        return lambda: FileStateStore(tmp_path / "state.json", clock=clock.time)
    return lambda: ClusterStateStore(fake, clock=clock.time)


def with_resource(state: StackState, address: str, oid: str) -> StackState:
    kind = address.split("[", 1)[0]
    state.resources[address] = ResourceState(address=address, kind=kind, id=oid)
    return state


# --------------------------------------------------------------------------- load / save


def test_round_trip_and_serial(make_store):
    a = make_store()
    assert a.load(STACK) is None
    st = with_resource(StackState(stack=STACK), 'connector["c"]', "c-1")
    a.save(st)
    assert st.serial == 1
    loaded = make_store().load(STACK)
    assert loaded.serial == 1 and loaded.resources['connector["c"]'].id == "c-1"
    assert loaded.fingerprint_key == st.fingerprint_key


def test_a_write_since_load_is_a_conflict(make_store):
    a, b = make_store(), make_store()
    a.save(StackState(stack=STACK))
    sa, sb = a.load(STACK), b.load(STACK)
    a.save(with_resource(sa, 'connector["c"]', "c-1"))
    with pytest.raises(StateConflict):
        b.save(with_resource(sb, 'connector["d"]', "d-1"))
    assert set(make_store().load(STACK).resources) == {'connector["c"]'}


def test_two_creators_of_a_new_stack_conflict(make_store):
    a, b = make_store(), make_store()
    assert a.load(STACK) is None and b.load(STACK) is None
    a.save(StackState(stack=STACK))
    with pytest.raises(StateConflict):
        b.save(StackState(stack=STACK))


def test_concurrent_writers_never_lose_an_update(tmp_path):
    path = tmp_path / "state.json"
    FileStateStore(path).save(StackState(stack=STACK))

    def worker(n: int) -> None:
        store = FileStateStore(path)
        for i in range(10):
            while True:
                st = store.load(STACK)
                with_resource(st, f'connector["w{n}-{i}"]', f"id-{n}-{i}")
                try:
                    store.save(st)
                    break
                except StateConflict:
                    continue
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = FileStateStore(path).load(STACK)
    assert len(final.resources) == 40 and final.serial == 41
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []   # no temp files left


def test_file_store_writes_atomically_and_keeps_other_stacks(tmp_path):
    path = tmp_path / "sub" / "state.json"
    store = FileStateStore(path)
    store.save(with_resource(StackState(stack="a"), 'connector["c"]', "1"))
    store.save(with_resource(StackState(stack="b"), 'connector["c"]', "2"))
    data = json.loads(path.read_text())
    assert set(data["stacks"]) == {"a", "b"} and data["mlsync_state_file"] == 1
    assert store.stacks() == ["a", "b"]
    assert (path.stat().st_mode & 0o077) == 0     # private: the fingerprint key is in there


def test_a_corrupt_or_newer_file_is_refused_with_a_clear_error(tmp_path):
    path = tmp_path / "state.json"
    path.write_text("{not json")
    with pytest.raises(MlsyncError, match="not a valid mlsync state file"):
        FileStateStore(path).load(STACK)
    path.write_text(json.dumps({"mlsync_state_file": 99, "stacks": {}}))
    with pytest.raises(MlsyncError, match="newer mlsync"):
        FileStateStore(path).load(STACK)


# --------------------------------------------------------------------------- leases


def test_lock_refuses_a_second_holder_and_names_the_first(make_store):
    a, b = make_store(), make_store()
    st = a.lock(STACK, "alice", 300, host="host-a")
    assert st.lock.holder == "alice" and st.lock.host == "host-a"
    with pytest.raises(LockHeld) as err:
        b.lock(STACK, "bob", 300)
    assert "alice" in str(err.value) and "host-a" in str(err.value) and "since" in str(err.value)


def test_an_expired_lease_is_taken_over_and_the_old_holder_learns_it_on_save(make_store, clock):
    a, b = make_store(), make_store()
    sa = a.lock(STACK, "alice", 60)
    clock.advance(61)
    taken = []
    sb = b.lock(STACK, "bob", 60, on_takeover=taken.append)
    assert sb.lock.holder == "bob" and [t.holder for t in taken] == ["alice"]
    with pytest.raises(StateConflict):
        a.save(sa)          # alice's stale copy cannot overwrite bob's lease


def test_renew_extends_and_unlock_releases_only_the_holders_lease(make_store, clock):
    a, b = make_store(), make_store()
    st = a.lock(STACK, "alice", 60)
    clock.advance(50)
    a.renew(st, 60)
    clock.advance(50)       # 100 s after locking, still valid thanks to the renewal
    with pytest.raises(LockHeld):
        b.lock(STACK, "bob", 60)
    with pytest.raises(LockHeld):
        b.unlock(STACK, lock_id="someone-else")
    released = a.unlock(STACK, lock_id=st.lock.lock_id)
    assert released.holder == "alice" and make_store().load(STACK).lock is None
    assert a.unlock(STACK) is None     # nothing to release


def test_unlock_without_force_only_releases_a_stale_lease(make_store, clock):
    a, b = make_store(), make_store()
    a.lock(STACK, "alice", 60)
    with pytest.raises(LockStillValid, match="--force"):
        b.unlock(STACK)
    assert b.unlock(STACK, force=True).holder == "alice"
    a.lock(STACK, "alice", 60)
    clock.advance(61)
    assert b.unlock(STACK).holder == "alice"


def test_cluster_store_saves_a_state_it_never_loaded_only_at_the_right_serial(clock):
    fake = FakeCluster(clock)
    ClusterStateStore(fake).save(StackState(stack=STACK))
    stale = StackState(stack=STACK)            # serial 0, but the stored one is at 1
    with pytest.raises(StateConflict):
        ClusterStateStore(fake).save(stale)
    fresh = ClusterStateStore(fake).load(STACK)
    ClusterStateStore(fake).save(fresh)         # a different store instance, right serial: fine
    assert ClusterStateStore(fake).load(STACK).serial == 2


# --------------------------------------------------------------------------- state list / show / rm


def test_state_helpers(make_store):
    store = make_store()
    st = StackState(stack=STACK)
    with_resource(st, 'connector["c"]', "c-1")
    with_resource(st, 'model_group["g"]', "g-1")
    st.resources['model["g"]["m"]["1.0"]'] = ResourceState('model["g"]["m"]["1.0"]', "model", "m-1", "3")
    st.journal.append(JournalEntry("op1", 'model["g"]["m"]["2.0"]', "register_model", 1_700_000_000.0,
                                   status="sent", task_id="t-9"))
    store.save(st)
    assert [r.address for r in state_list(store, STACK)] == [
        'connector["c"]', 'model["g"]["m"]["1.0"]', 'model_group["g"]']
    text = state_list_text(store, STACK)
    assert 'model["g"]["m"]["1.0"]  m-1  version 3' in text and "task t-9" in text
    shown = state_show(store, STACK, 'model["g"]["m"]["1.0"]')
    assert shown["id"] == "m-1" and shown["server_version"] == "3" and shown["managed"]
    assert "in flight: register_model" in state_show_text(store, STACK, 'model["g"]["m"]["2.0"]')
    with pytest.raises(MlsyncError, match=r'did you mean model_group\["g"\]'):
        state_show(store, STACK, 'model_group["h"]')
    with pytest.raises(MlsyncError, match="not a resource address"):
        state_show(store, STACK, "bogus")
    with pytest.raises(MlsyncError):   # all or nothing
        state_rm(store, STACK, ['connector["c"]', 'connector["nope"]'])
    assert len(state_list(store, STACK)) == 3
    removed = state_rm(store, STACK, ['connector["c"]'])
    assert [r.id for r in removed] == ["c-1"]
    after = store.load(STACK)
    assert 'connector["c"]' not in after.resources and after.lock is None
    assert state_list_text(make_store(), "other") == "stack 'other' has no state"


def test_state_rm_refuses_while_an_apply_holds_the_lock(make_store):
    store = make_store()
    store.save(with_resource(StackState(stack=STACK), 'connector["c"]', "c-1"))
    make_store().lock(STACK, "apply in CI", 300)
    with pytest.raises(LockHeld):
        state_rm(store, STACK, ['connector["c"]'])


def _lease_of_process(store, pid: int, **changes):
    """A lease as a process `pid` on this machine would have left it."""
    st = store.lock(STACK, "killed apply", 300)
    st.lock.pid = pid
    st.lock.start_time = (statestore.proc_stat(pid) or (None, None))[1]   # the parent's own start time
    for k, v in changes.items():
        setattr(st.lock, k, v)
    store.save(st)


def _dead_pid(reap: bool = True) -> int:
    import subprocess
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    if reap:
        proc.wait()
    else:
        import time
        while not os.path.exists(f"/proc/{proc.pid}/stat") or ") Z" not in open(f"/proc/{proc.pid}/stat").read():
            time.sleep(0.01)
    return proc.pid


@pytest.mark.skipif(not os.path.exists("/proc/sys/kernel/random/boot_id"), reason="needs Linux boot_id")
@pytest.mark.parametrize("reap", [True, False], ids=["exited", "zombie"])
def test_an_unexpired_lease_of_a_dead_process_on_this_machine_is_taken_over(make_store, reap):
    a, b = make_store(), make_store()
    _lease_of_process(a, _dead_pid(reap))
    taken = []
    sb = b.lock(STACK, "re-run", 300, on_takeover=taken.append)
    assert sb.lock.holder == "re-run" and sb.lock.pid == os.getpid() and [t.holder for t in taken] == ["killed apply"]


@pytest.mark.parametrize("changes", [{"host": "elsewhere"}, {"boot_id": "another-boot"}, {"boot_id": None}],
                         ids=["other-host", "other-boot", "no-boot-id"])
def test_a_lease_whose_holder_cannot_be_checked_is_respected(make_store, changes):
    a, b = make_store(), make_store()
    _lease_of_process(a, _dead_pid(), **changes)
    with pytest.raises(LockHeld, match="killed apply"):
        b.lock(STACK, "re-run", 300)


def test_a_lease_of_a_live_process_is_respected(make_store):
    a, b = make_store(), make_store()
    _lease_of_process(a, os.getppid())
    with pytest.raises(LockHeld):
        b.lock(STACK, "re-run", 300)


# --- reading resources without the field-by-field checks (core/state._as_stored) -----------------

_STORED = {"address": 'model_group["g"]', "kind": "model_group", "id": "G1"}
_RESOURCE_CASES = [
    _STORED,
    {**_STORED, "server_version": "3", "applied_fingerprint": "f", "credential_fingerprint": "c",
     "applied_form": {"name": "g"}, "applied_deploy": True, "fingerprint_salt": "s"},
    {**_STORED, "server_version": 3},              # an int version: made a string
    {"kind": "model_group", "id": "G1"},           # no address: the key
    {**_STORED, "applied_deploy": 1},              # wrong type: an error naming the field
    {**_STORED, "id": None},                       # missing id: an error
    {**_STORED, "newer_field": 1},                 # unknown: ignored and listed
    {**_STORED, "applied_form": ["x"]},
    ["not", "an", "object"],
]


def _read(resource, monkeypatch=None):
    doc = {"format": 1, "stack": "s", "serial": 2, "fingerprint_key": "k",
           "resources": {'model_group["g"]': resource}, "journal": []}
    try:
        state = StackState.from_json(json.loads(json.dumps(doc)))
    except MlsyncError as err:
        return ("error", str(err))
    return ("ok", state.resources, state.ignored)


@pytest.mark.parametrize("resource", _RESOURCE_CASES, ids=range(len(_RESOURCE_CASES)))
def test_resources_read_as_stored_equal_the_checked_reading(resource, monkeypatch):
    fast = _read(resource)
    import mlsync.core.state as state_module

    monkeypatch.setattr(state_module, "_as_stored", lambda r: None)   # every resource through the checks
    assert fast == _read(resource)


def test_a_resource_as_this_mlsync_writes_it_is_read_directly():
    import mlsync.core.state as state_module

    written = StackState("s", resources={'model_group["g"]': ResourceState('model_group["g"]', "model_group", "G1",
                                                                         applied_form={"name": "g"})}).to_json()
    (resource,) = written["resources"].values()
    assert state_module._as_stored(resource) == ResourceState('model_group["g"]', "model_group", "G1",
                                                              applied_form={"name": "g"})
    assert state_module._as_stored({**resource, "server_version": 3}) is None   # the checks convert it
