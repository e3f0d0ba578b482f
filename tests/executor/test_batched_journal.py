"""The journal's batched writes (mlsync/run/journal.py, docs/performance.md): an apply writes the
state once per wave of calls instead of once per call, and still saves every intent before its
non-idempotent call; a crash at the points where the batching leaves less on disk than one write
per call did is still resolved on the re-run without a duplicate."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/ for `fakes`
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))                   # test_executor's builders

from fakes import FakeCluster, SimulatedCrash  # noqa: E402
from test_executor import (CRED, STACK, clock, connector, fake, group, remote_model, run, store,  # noqa: E402,F401
                           stub_body, url_model)

from mlsync.core.plan import Plan  # noqa: E402
from mlsync.edge.statestore import ClusterStateStore  # noqa: E402
from mlsync.run.driver import apply  # noqa: E402


def stack_of(n: int, deploy: bool = True) -> tuple:
    return (connector("c1"), *(group(f"g{i}") for i in range(n)),
            *(remote_model(f"g{i}", f"r{i}", "c1", deploy=deploy) for i in range(n)))


@pytest.mark.parametrize("parallelism", [1, 4])
def test_state_writes_grow_with_the_phases_not_with_the_resources(clock, parallelism):
    writes = {}
    for n in (5, 40):
        fake_ = FakeCluster(clock)
        res = apply(Plan(STACK, stack_of(n)), fake_, ClusterStateStore(fake_, clock=clock.time), clock=clock.time,
                    sleep=clock.sleep, request_body=stub_body, credentials={'connector["c1"]': CRED},
                    parallelism=parallelism)
        assert res.ok, res.errors
        assert len(fake_.calls("register_model")) == n and len(fake_.calls("deploy_model")) == n
        state = ClusterStateStore(fake_, clock=clock.time).load(STACK)
        assert state.journal == [] and state.lock is None
        assert len([a for a in state.resources if a.startswith("model[")]) == n
        assert all(rs.applied_deploy for a, rs in state.resources.items() if a.startswith("model["))
        writes[n] = len(fake_.calls("write_state"))
    # the lease, one intent wave and one flush per create phase, the deploy phase, the release:
    # a constant (one write per call made it 4 per model: 160 for 40)
    assert writes[40] == writes[5] <= 10, writes


def test_every_create_and_registration_finds_its_intent_already_saved(run, fake, clock):
    """The guarantee the batching keeps: when the call is sent, the saved state holds its intent."""
    reader = ClusterStateStore(fake, clock=clock.time)
    seen = []

    def check(method, address_of):
        original = getattr(fake, method)

        def wrapped(body, *a, **kw):
            journal = reader.load(STACK).journal
            addr = address_of(body)
            assert any(j.address == addr and j.operation == method for j in journal), (method, addr, journal)
            seen.append(addr)
            return original(body, *a, **kw)
        setattr(fake, method, wrapped)
    check("create_connector", lambda b: f'connector["{b["name"]}"]')
    check("create_group", lambda b: f'model_group["{b["name"]}"]')
    groups = {}
    check("register_model", lambda b: (f'model["{groups[b["model_group_id"]]}"]["{b["name"]}"]'
                                       + ('["1"]' if b.get("url") else "")))
    original_group = fake.create_group

    def remember(body, *a, **kw):
        gid = original_group(body, *a, **kw)
        groups[gid] = body["name"]
        return gid
    fake.create_group = remember
    plan = (*stack_of(6), url_model("g0", "u", "1"))
    res = run(*plan, credentials={'connector["c1"]': CRED}, parallelism=4)
    assert res.ok, res.errors
    assert len(seen) == 1 + 6 + 7


def test_a_crash_after_a_remote_registration_whose_record_was_not_saved_yet_adopts_on_resume(run, fake, clock):
    """Batching moved this crash point: the first model's id is not on disk (it would have been
    with a write per call); only the wave's intents are. The re-run finds it by natural key."""
    plan = stack_of(3, deploy=True)
    fake.crash_after("register_model", nth=2)
    with pytest.raises(SimulatedCrash):
        run(*plan, credentials={'connector["c1"]': CRED}, parallelism=1)
    fake.revive()
    store2 = ClusterStateStore(fake, clock=clock.time)
    crashed = store2.load(STACK)
    assert not [a for a in crashed.resources if a.startswith("model[")]     # no model recorded yet
    assert sorted(j.address for j in crashed.journal) == [f'model["g{i}"]["r{i}"]' for i in range(3)]
    assert all(j.operation == "register_model" for j in crashed.journal)
    store2.unlock(STACK, force=True)
    models = tuple(c for c in plan if c.kind == "model")    # the worst case: a plan that did not see them
    res = run(*models, store_=store2, parallelism=1)
    assert res.ok, res.errors
    assert len(fake.calls("register_model")) == 3                       # two before the crash, one after
    assert all(len(fake.models_named(f"r{i}")) == 1 for i in range(3))  # no duplicate
    state = store2.load(STACK)
    assert state.journal == [] and state.lock is None
    assert {state.resources[f'model["g{i}"]["r{i}"]'].id for i in range(3)} == set(fake.models)
    assert all(fake.models[m]["model_state"] == "DEPLOYED" for m in fake.models)


def test_a_crash_after_a_group_create_whose_record_was_not_saved_yet_adopts_on_resume(run, fake, clock):
    plan = (group("g0"), group("g1"), group("g2"))
    fake.crash_after("create_group", nth=2)
    with pytest.raises(SimulatedCrash):
        run(*plan, parallelism=1)
    fake.revive()
    store2 = ClusterStateStore(fake, clock=clock.time)
    crashed = store2.load(STACK)
    assert crashed.resources == {} and len(crashed.journal) == 3
    store2.unlock(STACK, force=True)
    res = run(*plan, store_=store2, parallelism=1)
    assert res.ok, res.errors
    assert len(fake.calls("create_group")) == 3 and len(fake.groups) == 3
    state = store2.load(STACK)
    assert state.journal == [] and set(state.resources) == {f'model_group["g{i}"]' for i in range(3)}


def test_intents_of_a_wave_whose_calls_were_never_sent_resolve_to_nothing(run, fake, clock):
    plan = stack_of(3, deploy=False)
    fake.crash_before("register_model")
    with pytest.raises(SimulatedCrash):
        run(*plan, credentials={'connector["c1"]': CRED}, parallelism=1)
    fake.revive()
    store2 = ClusterStateStore(fake, clock=clock.time)
    assert len(store2.load(STACK).journal) == 3          # saved ahead, none sent
    store2.unlock(STACK, force=True)
    res = run(*(c for c in plan if c.kind == "model"), store_=store2, parallelism=1)
    assert res.ok, res.errors
    assert len(fake.calls("register_model")) == 1 + 3 and len(fake.models) == 3   # the one that died unsent, then 3
    assert store2.load(STACK).journal == []
