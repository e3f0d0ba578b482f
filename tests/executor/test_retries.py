"""The retry policy (mlsync.core.polling) and the task waiter under transient faults (issue 10, defect 5)."""

from __future__ import annotations

import os
import random
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/ for `fakes`

from fakes import FakeClock, FakeCluster  # noqa: E402

from mlsync.core.errors import ClusterError  # noqa: E402
from mlsync.core.plan import Plan  # noqa: E402
from mlsync.core import polling  # noqa: E402
from mlsync.core.polling import Backoff  # noqa: E402
from mlsync.edge.statestore import ClusterStateStore  # noqa: E402
from mlsync.run.driver import apply  # noqa: E402
from mlsync.run.progress import NullReporter  # noqa: E402
from mlsync.run.tasks import TaskWaiter  # noqa: E402

from test_executor import STACK, group, stub_body, url_model  # noqa: E402


def _rejected(op: str = "search tasks", retry_after=None) -> ClusterError:
    extra = {"retry_after": retry_after} if retry_after is not None else {}
    return ClusterError(op, "2 task(s)", 429, "rejected execution of coordinating operation",
                        "es_rejected_execution_exception", **extra)


# --------------------------------------------------------------------------- the policy (pure)


def test_full_jitter_stays_under_the_exponential_ceiling():
    rng = random.Random(1234)
    policy = polling.RetryPolicy(Backoff(0.5, 2.0, 4.0), deadline=60)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0)]:
        delays = [policy.delay(attempt, rng.random) for _ in range(200)]
        assert all(0 <= d < ceiling for d in delays)
        assert max(delays) > ceiling * 0.8 and min(delays) < ceiling * 0.2     # spread over the range
    assert polling.full_jitter(2.0, lambda: 0.0) == 0.0 and polling.full_jitter(2.0, lambda: 0.5) == 1.0


def test_retry_after_is_honoured_and_capped():
    policy = polling.RetryPolicy(Backoff(0.5, 2.0, 4.0), deadline=60, max_retry_after=10)
    rng = random.Random(7)
    assert all(policy.delay(1, rng.random, retry_after=3.0) >= 3.0 for _ in range(50))
    assert policy.delay(1, lambda: 0.99, retry_after=0.1) == pytest.approx(0.495)   # jitter above it wins
    assert policy.delay(1, lambda: 0.0, retry_after=3600) == 10
    assert [polling.parse_retry_after(v) for v in ("3", " 1.5 ", "0", None, "-1", "Wed, 21 Oct 2015 07:28:00 GMT", "nan")] \
        == [3.0, 1.5, 0.0, None, None, None, None]
    assert [s for s in range(400, 600) if polling.retryable_status(s)] == [429, 502, 503, 504]


def test_retry_call_retries_transient_failures_until_success():
    clock = FakeClock()
    outcomes = [_rejected(retry_after=2.0), _rejected(), "ok"]

    def call():
        out = outcomes.pop(0)
        if isinstance(out, Exception):
            raise out
        return out
    transient = lambda exc: (exc.status == 429, exc.retry_after)  # noqa: E731
    assert polling.retry_call(call, transient=transient, policy=polling.RetryPolicy(deadline=60), clock=clock.time,
                      sleep=clock.sleep, random=random.Random(0).random) == "ok"
    assert clock.slept >= 2.0 and not outcomes


def test_the_deadline_stops_retries():
    clock = FakeClock()
    calls = []

    def call():
        calls.append(clock.time())
        raise _rejected()
    with pytest.raises(polling.RetriesExhausted) as info:
        polling.retry_call(call, transient=lambda exc: (True, None), policy=polling.RetryPolicy(Backoff(1, 2, 8), deadline=30),
                   clock=clock.time, sleep=clock.sleep, random=random.Random(3).random)
    out = info.value
    assert out.attempts == len(calls) > 2 and isinstance(out.last, ClusterError)
    assert calls[-1] - calls[0] < 30                      # no attempt starts after the deadline
    not_transient = ClusterError("read", "x", 403, "forbidden")

    def forbidden():
        raise not_transient
    with pytest.raises(ClusterError) as err:              # a refusal that will not change: at once
        polling.retry_call(forbidden, transient=lambda exc: (False, None), policy=polling.RetryPolicy(), clock=clock.time,
                   sleep=clock.sleep, random=random.random)
    assert err.value is not_transient


# --------------------------------------------------------------------------- the task waiter


def _apply(fake: FakeCluster, clock: FakeClock, *changes):
    store = ClusterStateStore(fake, clock=clock.time)
    return apply(Plan(STACK, changes), fake, store, clock=clock.time, sleep=clock.sleep, request_body=stub_body,
                 parallelism=2, timeout=600), store


def test_429_on_the_shared_task_poll_fails_no_pending_wait():
    clock = FakeClock()
    fake = FakeCluster(clock, task_polls=3)
    fake.fail("search_tasks", _rejected(), times=2)
    res, store = _apply(fake, clock, group("ga"), group("gb"), url_model("ga", "a", "1"), url_model("gb", "b", "1"))
    assert res.ok, res.errors
    assert len(fake.calls("register_model")) == 2
    assert {str(a) for a in store.load(STACK).resources} >= {'model["ga"]["a"]["1"]', 'model["gb"]["b"]["1"]'}


def test_a_poll_rejected_without_end_fails_the_waits_after_the_error_deadline():
    clock = FakeClock()
    fake = FakeCluster(clock, task_polls=3)
    fake.fail("search_tasks", _rejected(), times=10**6)
    res, _ = _apply(fake, clock, group("g"), url_model("g", "a", "1"))
    assert not res.ok
    error = res.resources['model["g"]["a"]["1"]'].error
    assert "429" in error and "rejected execution" in error


class _Polls:
    """A ClusterPort stand-in for TaskWaiter: search_tasks answers from a script."""

    def __init__(self, script) -> None:
        self.script, self.calls = list(script), 0

    def search_tasks(self, task_ids):
        self.calls += 1
        out = self.script.pop(0) if self.script else {t: {"state": "COMPLETED", "model_id": "m"} for t in task_ids}
        if isinstance(out, Exception):
            raise out
        return out


def test_the_task_waiter_honours_retry_after_and_still_fails_on_a_403():
    clock = FakeClock()
    sleeps: list[float] = []
    cluster = _Polls([_rejected(retry_after=7.0), _rejected(retry_after=7.0)])
    waiter = TaskWaiter(cluster, clock=clock.time, sleep=lambda s: (sleeps.append(s), clock.sleep(s)),
                        timeout=600, reporter=NullReporter()).start()
    try:
        assert waiter.wait("t1", "a")["state"] == "COMPLETED"
    finally:
        waiter.stop()
    assert sleeps[:2] == [7.0, 7.0] and cluster.calls == 3

    forbidden = ClusterError("search tasks", "1 task(s)", 403, "no permissions for [cluster:admin/opensearch/ml/tasks/search]")
    waiter = TaskWaiter(_Polls([forbidden]), clock=clock.time, sleep=clock.sleep, timeout=600,
                        reporter=NullReporter()).start()
    try:
        with pytest.raises(ClusterError) as info:
            waiter.wait("t2", "b")
    finally:
        waiter.stop()
    assert info.value.status == 403
