"""Layout 2 of the cluster state (issue 12, goal 5): a head document per stack plus one document per
resource and per journal entry; a save sends the head and only the parts that changed. On the fake;
the real node: tests/integration/test_state_layout_real.py."""

from __future__ import annotations

import json
import logging
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/ for `fakes`

from fakes import FakeCluster, SimulatedCrash  # noqa: E402

from mlsync.core.errors import ClusterError, LockHeld, MlsyncError, StateConflict  # noqa: E402
from mlsync.core.state import (JournalEntry, ResourceState, StackState, StatePartsNotWritten, is_split, join,  # noqa: E402
                               split)
from mlsync.edge.statestore import ClusterStateStore  # noqa: E402

STACK = "s"


def resource(i: int) -> ResourceState:
    return ResourceState(address=f'model_group["g{i}"]', kind="model_group", id=f"id-{i}",
                         applied_fingerprint="f" * 64, applied_form={"name": f"g{i}", "description": "x" * 200})


@pytest.fixture
def fake() -> FakeCluster:
    return FakeCluster()


def store_of(fake: FakeCluster) -> ClusterStateStore:
    return ClusterStateStore(fake, clock=fake.clock.time)


def sent_parts(fake: FakeCluster) -> list[dict]:
    """Wraps fake.write_state: records the `parts` argument of every save."""
    seen: list[dict] = []
    real = fake.write_state

    def spy(stack, body, seq_no, primary_term, parts=None):
        seen.append(dict(parts or {}))
        return real(stack, body, seq_no, primary_term, parts=parts)
    fake.write_state = spy
    return seen


def stack_with(fake: FakeCluster, n: int) -> tuple[ClusterStateStore, StackState]:
    store = store_of(fake)
    state = store.lock(STACK, "apply", 300)
    for i in range(n):
        state.resources[resource(i).address] = resource(i)
    store.save(state)
    return store, state


@pytest.mark.parametrize("n", [10, 300])
def test_a_save_sends_the_head_and_what_changed_not_the_stack(fake, n):
    store, state = stack_with(fake, n)
    seen = sent_parts(fake)
    state.resources[resource(3).address].id = "id-new"                       # one record changes
    state.journal.append(JournalEntry("op1", 'model["g1"]["m"]', "register_model", 1.0))   # one intent
    del state.resources[resource(5).address]                                # one is forgotten
    store.save(state)
    (parts,) = seen
    assert sorted(v is None for v in parts.values()) == [False, False, True]
    head = fake.state_heads[STACK].body
    assert "resources" not in head and "journal" not in head and is_split(head)
    assert len(json.dumps(head)) < 1_000
    again = store_of(fake).load(STACK)
    assert again == state and again.resources[resource(3).address].id == "id-new"
    seen.clear()
    store.save(state)                                   # nothing changed: the head alone
    assert seen == [{}]


def test_load_returns_exactly_what_was_saved_journal_order_included(fake):
    store, state = stack_with(fake, 5)
    state.journal = [JournalEntry(f"op{i}", f'model_group["g{i}"]', "create_group", 1.0) for i in range(6)]
    store.save(state)
    state.journal = [j for j in state.journal if j.op_id not in ("op1", "op4")]       # dropped
    state.journal.append(JournalEntry("op9", "x", "delete_replaced", 1.0, status="sent", object_id="old"))
    store.save(state)
    state.journal = [state.journal[-1]] + state.journal[:-1]                          # reordered
    seen = sent_parts(fake)
    store.save(state)
    assert len(seen[0]) < len(state.journal)          # only the entries whose place changed are rewritten
    loaded = store_of(fake).load(STACK)
    assert [j.op_id for j in loaded.journal] == ["op9", "op0", "op2", "op3", "op5"]
    assert loaded == state and loaded.lock == state.lock


def test_split_and_join_are_inverse_and_parts_of_another_generation_are_ignored():
    state = StackState(STACK, resources={resource(1).address: resource(1)},
                       journal=[JournalEntry("a", "x", "create_group", 2.0)])
    head, parts = split(state.to_json())
    assert StackState.from_json(join(head, parts)) == state
    stale = {"s/r/" + "0" * 32: {**next(iter(parts.values())), "gen": "old", "address": 'model_group["gone"]'}}
    assert StackState.from_json(join(head, {**parts, **stale})) == state


def test_a_stack_named_like_a_part_id_is_refused():
    with pytest.raises(MlsyncError, match="ends like the id of a state part"):
        split(StackState("x/r/" + "a" * 32).to_json())


def test_a_head_deleted_by_hand_does_not_bring_its_parts_back(fake):
    store, state = stack_with(fake, 4)
    store.unlock(STACK, state.lock.lock_id)
    del fake.state_heads[STACK]                       # someone deleted the head document
    fresh = store_of(fake)
    new = fresh.lock(STACK, "apply", 300)
    assert new.resources == {}                        # a new stack: the old parts are not its state
    new.resources[resource(99).address] = resource(99)
    fresh.save(new)
    assert store_of(fake).load(STACK).resources == {resource(99).address: resource(99)}
    assert len(fake.state_parts) == 5
    fresh.unlock(STACK, new.lock.lock_id)
    later = store_of(fake)
    state = later.lock(STACK, "apply", 300)           # a store that read them deletes them with its next save
    assert len(fake.state_parts) == 1 and later.load(STACK) == state


# --------------------------------------------------------------------------- fencing and failures


def test_a_writer_whose_lease_was_taken_over_writes_no_part(fake):
    a, state = stack_with(fake, 3)
    fake.clock.advance(1_000)                         # A's lease expires; B takes the stack
    b = store_of(fake)
    b.lock(STACK, "other apply", 300)
    before = dict(fake.state_parts)
    state.resources[resource(1).address].id = "from-a"
    state.journal.append(JournalEntry("late", "x", "create_group", 1.0))
    with pytest.raises(StateConflict):
        a.save(state)
    assert fake.state_parts == before


def test_parts_that_did_not_land_are_written_by_the_next_save(fake):
    store, state = stack_with(fake, 3)
    real = fake.write_state

    def head_only(stack, body, seq_no, primary_term, parts=None):
        doc = real(stack, body, seq_no, primary_term)
        raise StatePartsNotWritten(stack, doc.seq_no, doc.primary_term,
                                   ClusterError("write state parts", stack, 503, "unavailable"))
    fake.write_state = head_only
    state.resources[resource(1).address].id = "changed"
    with pytest.raises(MlsyncError, match="saved only in part"):
        store.save(state)
    fake.write_state = real
    assert store_of(fake).load(STACK).resources[resource(1).address].id == "id-1"   # the head alone landed
    store.save(state)                                                # the serial followed the head
    assert store_of(fake).load(STACK) == state


def test_an_ambiguous_head_write_that_landed_still_sends_its_parts(fake):
    store, state = stack_with(fake, 3)
    real = fake.write_state

    def lost_answer(stack, body, seq_no, primary_term, parts=None):
        real(stack, body, seq_no, primary_term)          # the head landed, the parts never went out
        raise ClusterError("write state", stack, None, "read timed out")
    fake.write_state = lost_answer
    state.resources[resource(2).address].id = "changed"
    store.save(state)
    fake.write_state = real
    assert store_of(fake).load(STACK) == state


# --------------------------------------------------------------------------- migration from layout 1


def layout1(fake: FakeCluster, n: int, **lock) -> StackState:
    state = StackState(STACK, serial=7, resources={resource(i).address: resource(i) for i in range(n)},
                       journal=[JournalEntry("j1", resource(0).address, "create_group", 5.0, object_id="id-0")])
    fake.write_state(STACK, state.to_json(), None, None)     # as an older mlsync wrote it
    return state


def test_the_first_lock_moves_a_layout1_document_to_layout2(fake):
    old = layout1(fake, 20)
    owners_before = store_of(fake).owners()
    store = store_of(fake)
    state = store.lock(STACK, "apply", 300)
    head = fake.state_heads[STACK].body
    assert is_split(head) and "resources" not in head and len(fake.state_parts) == 21
    loaded = store_of(fake).load(STACK)
    assert loaded.resources == old.resources and loaded.journal == old.journal
    assert loaded.fingerprint_key == old.fingerprint_key and loaded.lock == state.lock
    assert store_of(fake).owners() == owners_before
    seen = sent_parts(fake)
    state.resources[resource(1).address].id = "after"
    store.save(state)
    assert len(seen[0]) == 1                         # from now on, a save sends what changed


def test_a_migration_cut_short_leaves_layout1_readable_and_the_next_lock_finishes_it(fake):
    old = layout1(fake, 5)
    fake.crash_before("write_state", nth=2)          # 1: the lease (layout 1), 2: the switch to layout 2
    with pytest.raises(SimulatedCrash):
        store_of(fake).lock(STACK, "apply", 300)
    fake.revive()
    assert not is_split(fake.state_heads[STACK].body) and fake.state_parts   # parts written, head not switched
    stray = {"s/r/" + "f" * 32: {**next(iter(fake.state_parts.values())), "address": 'model_group["stray"]'}}
    fake.state_parts.update(stray)                   # e.g. a resource the old document no longer has
    reader = store_of(fake).load(STACK)
    assert reader.resources == old.resources         # the head says layout 1: parts are not read
    with pytest.raises(LockHeld):
        store_of(fake).lock(STACK, "apply", 300)
    fake.clock.advance(1_000)
    store_of(fake).lock(STACK, "apply", 300)
    assert is_split(fake.state_heads[STACK].body)
    assert store_of(fake).load(STACK).resources == old.resources
    assert not set(stray) & set(fake.state_parts)    # the stray part was deleted


def test_a_failed_migration_keeps_layout1_and_the_apply_goes_on(fake, caplog):
    old = layout1(fake, 3)
    fake.fail("write_state_parts", ClusterError("write state parts", STACK, 403, "no permission"))
    store = store_of(fake)
    with caplog.at_level(logging.WARNING):
        state = store.lock(STACK, "apply", 300)
    assert "stays one document" in caplog.text
    assert not is_split(fake.state_heads[STACK].body)
    state.resources[resource(0).address].id = "changed"
    store.save(state)                                 # layout 1, as before
    assert store_of(fake).load(STACK).resources[resource(0).address].id == "changed"
    assert len(store_of(fake).load(STACK).resources) == len(old.resources)
