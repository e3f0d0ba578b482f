"""One object, one stack (issue 10, defect 14): the planner never adopts, changes or deletes an object
another stack manages (`PlanOptions.owners`); the plan fails naming the object, the owner and the way out."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from test_planner import (  # noqa: E402
    ADDR_C, ADDR_G, ADDR_M, ADDR_R, KEY, REMOTE_SRC, actions, desired, managed_state, observed,
)

from mlsync.core.errors import MalformedDocument, PlanError  # noqa: E402
from mlsync.core.observed import ObservedObject  # noqa: E402
from mlsync.core.planner import PlanOptions, plan  # noqa: E402
from mlsync.core.state import JournalEntry, Owner, StackState, owners_of  # noqa: E402

ALL_OF_A = {"C": Owner("a", ADDR_C), "G": Owner("a", ADDR_G), "R": Owner("a", ADDR_R), "M": Owner("a", ADDR_M)}


def test_without_owners_a_new_stack_adopts_by_name():   # what a second stack did before: the defect
    p = plan(desired(), observed(), StackState("s", fingerprint_key=KEY))
    assert all(a == ["adopt"] for a in actions(p).values())


def test_a_new_stack_never_adopts_what_another_stack_manages():
    with pytest.raises(PlanError) as err:
        plan(desired(), observed(), StackState("s", fingerprint_key=KEY), PlanOptions(owners=ALL_OF_A))
    text = str(err.value)
    # the connector and the group are named with their ids, the owner and the commands that move them
    assert f"{ADDR_C}: the connector named 'c' on the cluster (id C) is managed by stack 'a' (as {ADDR_C})" in text
    assert f"{ADDR_G}: the model group named 'g' on the cluster (id G) is managed by stack 'a'" in text
    assert "mlsync state rm --stack a 'connector[\"c\"]'" in text
    assert "mlsync import --stack s 'connector[\"c\"]' C" in text
    assert len(err.value.messages) == 2     # the models are not matched: their group is not this stack's


def test_a_model_in_a_group_of_this_stack_is_not_adopted_when_another_stack_manages_it():
    st = StackState("s", fingerprint_key=KEY)
    st.resources = {a: r for a, r in managed_state().resources.items() if a in (ADDR_C, ADDR_G, ADDR_M)}
    with pytest.raises(PlanError) as err:
        plan(desired(), observed(), st, PlanOptions(owners={"R": Owner("b", ADDR_R)}))
    assert f"{ADDR_R}: the model named 'r' on the cluster (id R) is managed by stack 'b'" in str(err.value)


def test_an_unowned_match_is_still_adopted_beside_an_owned_one():
    """Server names are not unique: with an owned and an unowned remote model of one name in the group,
    the unowned one is this stack's to adopt (no error, the owned one is left alone)."""
    twin = dict(REMOTE_SRC)
    st = managed_state()
    del st.resources[ADDR_R]
    p = plan(desired(), observed(extra_models=(twin,)), st, PlanOptions(owners={"R": Owner("b", ADDR_R)}))
    r = next(c for c in p.changes if str(c.address) == ADDR_R)
    assert r.server_id == "X0" and [a.value for a in r.actions] == ["adopt"]


def test_an_object_two_stacks_manage_is_neither_changed_nor_deleted():
    """States written before ownership was checked (the defect's aftermath): the second stack's destroy
    must not delete what the first still manages."""
    owners = {"C": Owner("a", ADDR_C)}
    for options in (PlanOptions(owners=owners), PlanOptions(destroy=True, owners=owners)):
        with pytest.raises(PlanError) as err:
            plan(desired(), observed(), managed_state(), options)
        text = str(err.value)
        assert f"{ADDR_C}: id C is managed by this stack and by stack 'a' (as {ADDR_C})" in text
        assert "mlsync state rm --stack s 'connector[\"c\"]'" in text and "--stack a" in text


def test_an_id_in_another_stacks_journal_is_owned():
    """An interrupted create of stack a: its object is a's although its state does not list it yet."""
    a = {"stack": "a", "resources": {}, "journal": [
        {"op_id": "1", "address": ADDR_G, "operation": "create_group", "started": 1.0, "status": "sent",
         "object_id": "G"}]}
    owners = owners_of({"a": a, "s": {"stack": "s", "resources": {ADDR_C: {"id": "C"}}}}, exclude_stack="s")
    assert owners == {"G": Owner("a", ADDR_G, pending=True)}
    with pytest.raises(PlanError) as err:
        plan(desired(), observed(), StackState("s", fingerprint_key=KEY), PlanOptions(owners=owners))
    assert "stack 'a' has an interrupted operation on it" in str(err.value)


def test_owners_of_reads_resources_and_journal_and_names_a_malformed_document():
    a = StackState("a", fingerprint_key=KEY)
    a.resources = {ADDR_C: managed_state().resources[ADDR_C]}
    a.journal = [JournalEntry("1", ADDR_M, "register_model", 1.0, "sent", object_id="M"),
                 JournalEntry("2", ADDR_R, "register_model", 1.0, "intent")]          # no id yet: nothing
    owners = owners_of({"a": a.to_json(), "b": {"stack": "b", "resources": {ADDR_G: {"id": "G"}}}})
    assert owners == {"C": Owner("a", ADDR_C), "M": Owner("a", ADDR_M, pending=True), "G": Owner("b", ADDR_G)}
    assert owners_of({"a": a.to_json()}, exclude_stack="a") == {}
    with pytest.raises(MalformedDocument, match=r"state of stack 'b'.*resources\.x\.id"):
        owners_of({"b": {"resources": {"x": {"id": 7}}}})


def test_the_observed_object_is_untouched_and_plan_is_pure():
    obs = observed()
    before = {i: ObservedObject(o.kind, o.id, dict(o.source), o.seq_no, o.primary_term) for i, o in obs.models.items()}
    with pytest.raises(PlanError):
        plan(desired(), obs, StackState("s", fingerprint_key=KEY), PlanOptions(owners=ALL_OF_A))
    assert obs.models == before
