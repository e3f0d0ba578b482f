"""Issue 10 defect 7: a lease's holder is "dead" only when that is certain — same host, boot and pid
namespace, and its pid gone, a zombie or a process with another start time. /proc is monkeypatched."""

from __future__ import annotations

import pytest

from mlsync.core.state import Lock, StackState
from mlsync.edge import statestore
from mlsync.edge.statestore import holder_is_dead

HOST, BOOT, NS = "ci-host", "boot-1", "pid:[4026531836]"


@pytest.fixture
def proc(monkeypatch):
    """A fake /proc: `procs` maps pid -> (state letter, start time)."""
    world = {"ns": NS, "boot": BOOT, "procs": {}}
    monkeypatch.setattr(statestore.socket, "gethostname", lambda: HOST)
    monkeypatch.setattr(statestore, "boot_id", lambda: world["boot"])
    monkeypatch.setattr(statestore, "pid_namespace", lambda: world["ns"])
    monkeypatch.setattr(statestore, "pid_exists", lambda pid: pid in world["procs"])
    monkeypatch.setattr(statestore, "proc_stat", lambda pid: world["procs"].get(pid))
    return world


def lease(**kw) -> Lock:
    fields = dict(holder="apply", host=HOST, started=0.0, expires=1e12, lock_id="x", pid=4242, boot_id=BOOT,
                  pid_ns=NS, start_time=1000)
    fields.update(kw)
    return Lock(**fields)


def test_the_holder_is_dead_when_its_pid_is_gone(proc):
    assert holder_is_dead(lease())


def test_the_holder_is_dead_when_its_pid_was_reused_by_a_later_process(proc):
    proc["procs"][4242] = ("S", 99999)
    assert holder_is_dead(lease())


def test_the_holder_is_dead_when_it_is_a_zombie(proc):
    proc["procs"][4242] = ("Z", 1000)
    assert holder_is_dead(lease())


def test_the_holder_is_alive_while_its_process_runs(proc):
    proc["procs"][4242] = ("S", 1000)
    assert not holder_is_dead(lease())


def test_another_container_on_the_same_host_is_never_judged(proc):
    """Host networking shares hostname and boot id; the pid 4242 of another pid namespace says nothing
    about this one's (which has no such process here)."""
    assert not holder_is_dead(lease(pid_ns="pid:[4026532999]"))
    proc["procs"][4242] = ("S", 5)          # a different process with the same pid here
    assert not holder_is_dead(lease(pid_ns="pid:[4026532999]"))


@pytest.mark.parametrize("changes", [{"host": "elsewhere"}, {"boot_id": "boot-0"}, {"boot_id": None},
                                     {"pid_ns": None}, {"pid": None}],
                         ids=["other-host", "other-boot", "no-boot-id", "no-pid-namespace", "no-pid"])
def test_a_holder_that_cannot_be_identified_counts_as_alive(proc, changes):
    assert not holder_is_dead(lease(**changes))


def test_our_namespace_unreadable_counts_as_alive(proc):
    proc["ns"] = None
    assert not holder_is_dead(lease())


def test_without_a_recorded_start_time_only_a_gone_pid_is_certain(proc):
    assert holder_is_dead(lease(start_time=None))
    proc["procs"][4242] = ("S", 77)
    assert not holder_is_dead(lease(start_time=None))


def test_pid_existence_that_cannot_be_told_counts_as_alive(proc, monkeypatch):
    monkeypatch.setattr(statestore, "pid_exists", lambda pid: None)
    assert not holder_is_dead(lease())


def test_a_lease_records_the_process_identity_and_old_leases_still_load(tmp_path):
    store = statestore.FileStateStore(tmp_path / "state.json")
    st = store.lock("s", "apply", 300)
    ident = statestore.process_identity()
    assert (st.lock.pid, st.lock.pid_ns, st.lock.start_time) == (ident["pid"], ident["pid_ns"], ident["start_time"])
    body = st.to_json()
    for key in ("pid_ns", "start_time", "pid", "boot_id"):
        body["lock"].pop(key)
    old = StackState.from_json(body)
    assert old.lock.pid_ns is None and old.lock.start_time is None and not holder_is_dead(old.lock)


def test_the_real_proc_readers_see_this_process():
    import os
    if not os.path.exists("/proc/self/stat"):
        pytest.skip("needs Linux /proc")
    state, start = statestore.proc_stat(os.getpid())
    assert state in "RS" and start > 0
    assert statestore.pid_namespace().startswith("pid:[")
    assert statestore.pid_exists(os.getpid()) is True
