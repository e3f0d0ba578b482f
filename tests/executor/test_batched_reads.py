"""Reads that grow with the phases, not the resources (issue 12, goal 1; docs/performance.md §1): the
remote models registered in a phase are read back in one batched read (their server version, the
fields registration dropped), and the remote deploys of the deploy phase settle together (one
batched read per poll until no doc reads DEPLOYING) instead of a GET per model and per poll."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/ for `fakes`
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))                   # test_executor's builders

from fakes import FakeCluster  # noqa: E402
from test_batched_journal import stack_of  # noqa: E402
from test_executor import CRED, STACK, clock, stub_body  # noqa: E402,F401

from mlsync.core.plan import Plan  # noqa: E402
from mlsync.edge.statestore import ClusterStateStore  # noqa: E402
from mlsync.run.driver import apply  # noqa: E402


def applied(clock, n: int, parallelism: int, settle_reads: int = 0, fake=None):
    fake = fake or FakeCluster(clock)
    fake.remote_settle_reads = settle_reads
    res = apply(Plan(STACK, stack_of(n)), fake, ClusterStateStore(fake, clock=clock.time), clock=clock.time,
                sleep=clock.sleep, request_body=stub_body, credentials={'connector["c1"]': CRED},
                parallelism=parallelism)
    assert res.ok, res.errors
    return fake, res


@pytest.mark.parametrize("parallelism", [1, 4])
def test_model_reads_are_a_constant_per_apply(clock, parallelism):
    reads = {}
    for n in (5, 40):
        fake, _ = applied(clock, n, parallelism, settle_reads=2)
        assert fake.calls("get_model") == []          # no GET per model
        reads[n] = len(fake.calls("get_models"))
        state = ClusterStateStore(fake, clock=clock.time).load(STACK)
        versions = {rs.server_version for a, rs in state.resources.items() if a.startswith("model[")}
        assert versions == {"1"}                      # the server's numbers came from the batched read
    # one read after the registrations, then the settle's polls: constant in the number of models
    assert reads[40] == reads[5] <= 4, reads


def test_the_apply_ends_only_once_no_remote_model_reads_deploying(clock):
    fake, res = applied(clock, 6, 4, settle_reads=3)
    states = {m["name"]: m["model_state"] for m in fake.models.values()}
    assert set(states.values()) == {"DEPLOYED"}, states
    assert all(rr.status == "done" for rr in res.resources.values())


def test_a_model_the_batched_read_does_not_see_is_read_on_its_own(clock):
    fake = FakeCluster(clock)
    original = fake.get_models

    def blind(ids):
        got = original(ids)
        got.pop(sorted(got)[0], None) if got else None
        return got
    fake.get_models = blind
    fake, _ = applied(clock, 3, 1, fake=fake)
    assert len(fake.calls("get_model")) >= 1
    state = ClusterStateStore(fake, clock=clock.time).load(STACK)
    assert all(rs.server_version == "1" for a, rs in state.resources.items() if a.startswith("model["))


def docs_after_deploy(fake: FakeCluster, by_name: dict) -> FakeCluster:
    """`fake` whose deploy answers as before, then sets the model doc's fields `by_name[its name]`
    (what another node, or a deploy still running, leaves in the doc)."""
    original = fake.deploy_model

    def deploy(model_id, settle=True):
        got = original(model_id, settle)
        fake.models[model_id].update(by_name.get(fake.models[model_id]["name"], {}))
        return got
    fake.deploy_model = deploy
    return fake


def test_a_remote_deploy_answered_completed_whose_doc_reads_failed_is_not_reported_done(clock):
    """On several nodes COMPLETED is the answer of the node that took the request; the doc tells."""
    fake = docs_after_deploy(FakeCluster(clock), {
        "r1": {"model_state": "DEPLOY_FAILED"},
        "r2": {"model_state": "PARTIALLY_DEPLOYED", "planning_worker_node_count": 2, "current_worker_node_count": 1}})
    res = apply(Plan(STACK, stack_of(3)), fake, ClusterStateStore(fake, clock=clock.time), clock=clock.time,
                sleep=clock.sleep, request_body=stub_body, credentials={'connector["c1"]': CRED}, parallelism=2)
    assert not res.ok
    failed = {a: rr.error for a, rr in res.resources.items() if rr.status == "failed"}
    assert list(failed) == ['model["g1"]["r1"]'] and "DEPLOY_FAILED" in failed['model["g1"]["r1"]']
    assert any('model["g2"]["r2"]' in w and "1 of 2 nodes" in w for w in res.warnings), res.warnings
    state = ClusterStateStore(fake, clock=clock.time).load(STACK)
    assert not state.resources['model["g1"]["r1"]'].applied_deploy


def test_the_settle_warning_counts_only_the_models_still_deploying(clock):
    fake = docs_after_deploy(FakeCluster(clock), {"r0": {"model_state": "DEPLOYING"}})   # never leaves it
    _, res = applied(clock, 3, 1, fake=fake)
    assert any(w.startswith("1 remote model(s) still read DEPLOYING") for w in res.warnings), res.warnings
