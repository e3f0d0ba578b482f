"""Issue 10 defect 6: finding what an interrupted register/create made never compares the client's
clock with the server's `created_time`. The fake's `created_time` comes from its own clock; the
executor (and its state store) get a clock that is 10 minutes off."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/ for `fakes`

from fakes import FakeClock, FakeCluster, SimulatedCrash  # noqa: E402
from executor.test_executor import CRED, STACK, connector, group, remote_model, stub_body, url_model  # noqa: E402

from mlsync.core.errors import ClusterError  # noqa: E402
from mlsync.core.plan import Plan  # noqa: E402
from mlsync.edge.statestore import ClusterStateStore  # noqa: E402
from mlsync.run.driver import apply  # noqa: E402

SKEWS = pytest.mark.parametrize("skew", [600.0, -600.0], ids=["client+10min", "client-10min"])


def _setup(skew: float):
    server = FakeClock()
    fake = FakeCluster(server)
    client = lambda: server.time() + skew   # noqa: E731 - the client's clock, `skew` seconds off

    def run(*changes, store=None, **kw):
        st = store or ClusterStateStore(fake, clock=client)
        kw.setdefault("request_body", stub_body)
        return apply(Plan(STACK, tuple(changes)), fake, st, clock=client, sleep=server.sleep, **kw), st
    return server, fake, client, run


def _adopted_once(fake: FakeCluster, store: ClusterStateStore, name: str, address: str) -> None:
    models = fake.models_named(name)
    assert len(models) == 1, f"expected one model {name!r}, found {sorted(models)}"
    [mid] = models
    state = store.load(STACK)
    assert state.resources[address].id == mid and state.journal == []


@SKEWS
def test_crash_right_after_register_adopts_the_model_whatever_the_clock_skew(skew):
    server, fake, client, run = _setup(skew)
    plan = (group("g"), url_model("g", "m", "1"))
    fake.crash_after("register_model")          # the model exists, the task id was never recorded
    with pytest.raises(SimulatedCrash):
        run(*plan)
    fake.revive()
    server.advance(5)
    store2 = ClusterStateStore(fake, clock=client)
    store2.unlock(STACK, force=True)
    res, _ = run(plan[1], store=store2)          # the worst case: the new plan registers it again
    assert res.ok, res.errors
    assert len(fake.calls("register_model")) == 1
    _adopted_once(fake, store2, "m", 'model["g"]["m"]["1"]')
    assert any("adopted" in n for n in res.notes)


@SKEWS
def test_lost_register_response_adopts_instead_of_registering_again_whatever_the_clock_skew(skew):
    _, fake, _, run = _setup(skew)
    fake.fail("register_model", ClusterError("register_model", "r", None, "connection reset by peer"), after=True)
    res, store = run(connector("c"), group("g"), remote_model("g", "r", "c"), credentials={'connector["c"]': CRED})
    assert res.ok, res.errors
    assert len(fake.calls("register_model")) == 1
    _adopted_once(fake, store, "r", 'model["g"]["r"]')


@SKEWS
def test_lost_create_connector_response_adopts_whatever_the_clock_skew(skew):
    _, fake, _, run = _setup(skew)
    fake.fail("create_connector", ClusterError("create_connector", "c", 504, "gateway timeout"), after=True)
    res, store = run(connector("c"), credentials={'connector["c"]': CRED})
    assert res.ok, res.errors
    assert len(fake.connectors) == 1 and len(fake.calls("create_connector")) == 1
    assert store.load(STACK).resources['connector["c"]'].id == next(iter(fake.connectors))


@SKEWS
def test_crash_after_create_group_adopts_it_whatever_the_clock_skew(skew):
    server, fake, client, run = _setup(skew)
    fake.crash_after("create_group")
    with pytest.raises(SimulatedCrash):
        run(group("g"))
    fake.revive()
    server.advance(5)
    store2 = ClusterStateStore(fake, clock=client)
    store2.unlock(STACK, force=True)
    res, _ = run(group("g"), store=store2)
    assert res.ok, res.errors
    assert len(fake.groups) == 1 and len(fake.calls("create_group")) == 1
    assert store2.load(STACK).resources['model_group["g"]'].id == next(iter(fake.groups))


def test_a_model_queued_for_deletion_is_never_taken_for_the_interrupted_registration():
    """The lookup ignores versions the stack still manages or has queued for deletion (a replace)."""
    server, fake, client, run = _setup(0.0)
    res, store = run(connector("c"), group("g"), remote_model("g", "r", "c"), credentials={'connector["c"]': CRED})
    assert res.ok, res.errors
    old = store.load(STACK).resources['model["g"]["r"]'].id
    from mlsync.core.plan import Action
    replace = remote_model("g", "r", "c", Action.REPLACE, server_id=old, deployed=False, description="v2")
    fake.fail("register_model", ClusterError("register_model", "r", None, "connection reset by peer"), after=True)
    res, _ = run(replace, store=store)
    assert res.ok, res.errors
    [new] = fake.models_named("r")
    assert new != old and store.load(STACK).resources['model["g"]["r"]'].id == new
    assert len(fake.calls("register_model")) == 2
