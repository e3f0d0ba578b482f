"""Executor tests on the in-memory FakeCluster (tests/fakes.py): ordering, failures, resume, locking.

Time is a FakeClock whose sleep returns at once, so every test runs in milliseconds.
Request bodies come from `stub_body`, a stand-in with the signature of `normalize.request_body`,
so these tests pin the executor's behaviour independently of the normaliser.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import threading
from typing import Optional

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/ for `fakes`

from fakes import FakeClock, FakeCluster, SimulatedCrash  # noqa: E402

from mlsync.run import uploads  # noqa: E402
from mlsync.core.address import Address  # noqa: E402
from mlsync.core.errors import ClusterError, LockHeld, TaskFailed, TaskTimeout  # noqa: E402
from mlsync.run.driver import ApplyAborted, apply  # noqa: E402
from mlsync.run.tasks import TaskWaiter  # noqa: E402
from mlsync.core.plan import Action, Plan, ResourceChange  # noqa: E402
from mlsync.run.progress import NullReporter, PlainReporter  # noqa: E402
from mlsync.core.secrets import Secret, fingerprint  # noqa: E402
from mlsync.edge.statestore import DEFAULT_LOCK_TTL, ClusterStateStore  # noqa: E402

STACK = "test-stack"
SHA_A = "a" * 64
SHA_B = "b" * 64


# --------------------------------------------------------------------------- plan builders


def stub_body(change: ResourceChange, *, refs: dict, credential=None, inline_credential=None,
              update: bool = False) -> dict:
    """Stand-in for mlsync.core.normalize.request_body (same signature)."""
    after = dict(change.after or {})
    if change.kind == "connector":
        body = dict(after)
        if credential:
            body["credential"] = dict(credential)
        return body
    if change.kind == "model_group":
        return {k: v for k, v in after.items() if k in ("name", "description")}
    body = {k: v for k, v in after.items() if k != "connector"}
    body["name"] = change.address.name
    body["model_group_id"] = refs[str(Address("model_group", change.address.group))]
    conn = after.get("connector")
    if isinstance(conn, str):
        body["connector_id"] = refs[str(Address("connector", conn))]
    elif isinstance(conn, dict):
        body["connector"] = {**conn, **({"credential": dict(inline_credential)} if inline_credential else {})}
    if body.get("function_name") == "REMOTE":
        body["function_name"] = "remote"
    if not update:
        art = change.artifact or {}
        if art.get("url"):
            body["url"] = art["url"]
        if art.get("sha256"):
            body["model_content_hash_value"] = art["sha256"]
    return body


def connector(name: str, *actions: Action, server_id: Optional[str] = None, **extra) -> ResourceChange:
    after = {"name": name, "description": "test connector", "version": "1", "protocol": "http",
             "parameters": {"model": "m"},
             "actions": [{"action_type": "PREDICT", "method": "POST", "url": "http://127.0.0.1:9/v1"}], **extra}
    actions = actions or (Action.CREATE,)
    return ResourceChange(Address("connector", name), actions, "test", server_id=server_id,
                          after=None if Action.DELETE in actions else after)


def group(name: str, *actions: Action, server_id: Optional[str] = None) -> ResourceChange:
    actions = actions or (Action.CREATE,)
    return ResourceChange(Address("model_group", name), actions, "test", server_id=server_id,
                          after=None if Action.DELETE in actions else {"name": name, "description": f"group {name}"})


def url_model(grp: str, name: str, version: str, *actions: Action, sha: str = SHA_A, deploy: bool = False,
              server_id: Optional[str] = None, deployed: Optional[bool] = None, **extra) -> ResourceChange:
    actions = actions or ((Action.REGISTER, Action.DEPLOY) if deploy else (Action.REGISTER,))
    after = {"name": name, "function_name": "TEXT_EMBEDDING", "model_format": "TORCH_SCRIPT",
             "model_config": {"model_type": "bert", "embedding_dimension": 4, "framework_type": "SENTENCE_TRANSFORMERS"},
             "model_content_hash_value": sha, **extra}
    return ResourceChange(Address("model", name, grp, version), actions, "test", server_id=server_id,
                          after=None if Action.DELETE in actions else after, deploy=deploy, deployed=deployed,
                          artifact={"url": f"http://127.0.0.1:9/models/{name}-{version}.zip", "sha256": sha})


def remote_model(grp: str, name: str, conn, *actions: Action, deploy: bool = False,
                 server_id: Optional[str] = None, deployed: Optional[bool] = None, **extra) -> ResourceChange:
    actions = actions or ((Action.REGISTER, Action.DEPLOY) if deploy else (Action.REGISTER,))
    after = {"name": name, "function_name": "REMOTE", "connector": conn, **extra}
    return ResourceChange(Address("model", name, grp), actions, "test", server_id=server_id,
                          after=None if Action.DELETE in actions else after, deploy=deploy, deployed=deployed,
                          depends_on=(str(Address("connector", conn)),) if isinstance(conn, str) else ())


def local_model(grp: str, name: str, version: str, path: str, sha: Optional[str] = None, *actions: Action,
                deploy: bool = False, **extra) -> ResourceChange:
    data = open(path, "rb").read()
    sha = sha or hashlib.sha256(data).hexdigest()
    after = {"name": name, "function_name": "TEXT_EMBEDDING", "model_format": "TORCH_SCRIPT",
             "model_config": {"model_type": "bert", "embedding_dimension": 4, "framework_type": "SENTENCE_TRANSFORMERS"},
             "model_content_hash_value": sha, **extra}
    actions = actions or ((Action.REGISTER, Action.DEPLOY) if deploy else (Action.REGISTER,))
    return ResourceChange(Address("model", name, grp, version), actions, "test", after=after, deploy=deploy,
                          deployed=False, artifact={"path": path, "sha256": sha, "size": len(data)})


class Recorder(NullReporter):
    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.waits: list[list[str]] = []
        self._lock = threading.Lock()

    def on_start(self, change, step):
        with self._lock:
            self.events.append(("start", str(change.address), step))

    def on_done(self, change, step, elapsed, detail=None):
        with self._lock:
            self.events.append(("done", str(change.address), step))

    def on_error(self, change, step, error):
        with self._lock:
            self.events.append(("error", str(change.address), step, str(error)))

    def on_wait(self, task_ids, elapsed):
        with self._lock:
            self.waits.append(list(task_ids))


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(clock: FakeClock) -> FakeCluster:
    return FakeCluster(clock)


@pytest.fixture
def store(fake: FakeCluster, clock: FakeClock) -> ClusterStateStore:
    return ClusterStateStore(fake, clock=clock.time)


@pytest.fixture
def run(fake: FakeCluster, store: ClusterStateStore, clock: FakeClock):
    def _run(*changes: ResourceChange, store_=None, **kw):
        kw.setdefault("request_body", stub_body)
        return apply(Plan(STACK, tuple(changes)), fake, store_ or store, clock=clock.time, sleep=clock.sleep, **kw)
    return _run


CRED = {"api_key": Secret("sekret-value")}


def setup_basics(run, fake) -> None:
    """c1 + g1 with a deployed remote model r1 (using c1) + g2 with URL model m 1.0; log cleared."""
    res = run(connector("c1"), group("g1"), group("g2"),
              remote_model("g1", "r1", "c1", deploy=True), url_model("g2", "m", "1.0"),
              credentials={'connector["c1"]': CRED})
    assert res.ok, res.errors
    fake.log.clear()


def mutating(fake: FakeCluster) -> list[str]:
    return [c.method for c in fake.log if c.method not in
            ("read_state", "write_state", "search_tasks", "get_model", "find_models", "observe")]


# --------------------------------------------------------------------------- ordering


def test_creates_connectors_then_groups_then_versions_and_records_state(run, fake, store):
    res = run(connector("c1"), group("g1"), group("g2"),
              remote_model("g1", "r1", "c1", deploy=True),
              url_model("g2", "m", "1.0", sha=SHA_A), url_model("g2", "m", "1.1", sha=SHA_B),
              credentials={'connector["c1"]': CRED}, parallelism=4)
    assert res.ok, res.errors
    assert fake.last_index("create_connector") < fake.index("create_group")
    assert fake.last_index("create_group") < fake.index("register_model")
    # two URL versions of one group: the second is registered only after the first's task completed
    # (the fake FAILs a registration into a group whose previous URL task is still running)
    assert fake.max_group_concurrency == 1
    state = store.load(STACK)
    assert state.lock is None and state.journal == []
    m10, m11 = 'model["g2"]["m"]["1.0"]', 'model["g2"]["m"]["1.1"]'
    assert (state.resources[m10].server_version, state.resources[m11].server_version) == ("1", "2")
    assert res.resources[m11].server_version == "2" and res.resources[m11].id == state.resources[m11].id
    r1 = state.resources['model["g1"]["r1"]']
    assert fake.models[r1.id]["model_state"] == "DEPLOYED"
    assert fake.models[r1.id]["connector_id"] == state.resources['connector["c1"]'].id
    assert fake.models[r1.id]["model_group_id"] == state.resources['model_group["g1"]'].id
    # applied fingerprints are digests of the desired form
    from mlsync.core import normalize
    assert state.resources['model_group["g1"]'].applied_fingerprint == normalize.digest(group("g1").after)
    # the credential reached the server, the state keeps only a keyed fingerprint
    cid = state.resources['connector["c1"]'].id
    assert fake.credentials[cid] == {"api_key": "sekret-value"}
    assert state.resources['connector["c1"]'].credential_fingerprint == fingerprint(CRED, state.fingerprint_key)
    assert "sekret-value" not in json.dumps(fake.states[STACK].body)
    assert [r.status for r in res.resources.values()] == ["done"] * 6


def test_versions_of_one_group_are_serial_and_groups_run_in_parallel(clock, store):
    fake = FakeCluster(clock, register_delay=0.01)
    st = ClusterStateStore(fake, clock=clock.time)
    changes = [connector("c")] + [group(f"g{i}") for i in range(4)]
    for i in range(4):
        for v in range(3):
            changes.append(remote_model(f"g{i}", f"r{v}", "c"))
    res = apply(Plan(STACK, tuple(changes)), fake, st, clock=clock.time, sleep=clock.sleep,
                request_body=stub_body, parallelism=4, credentials={'connector["c"]': CRED})
    assert res.ok, res.errors
    assert fake.max_group_concurrency == 1            # never two registrations into one group at once
    assert fake.max_concurrency >= 2                   # but different groups overlapped
    state = st.load(STACK)
    for i in range(4):
        assert [state.resources[f'model["g{i}"]["r{v}"]'].server_version for v in range(3)] == ["1", "2", "3"]


def test_parallelism_one_is_fully_sequential(clock):
    fake = FakeCluster(clock, register_delay=0.002)
    st = ClusterStateStore(fake, clock=clock.time)
    changes = [connector("c"), group("g1"), group("g2"), remote_model("g1", "a", "c"), remote_model("g2", "b", "c")]
    res = apply(Plan(STACK, tuple(changes)), fake, st, clock=clock.time, sleep=clock.sleep,
                request_body=stub_body, parallelism=1, credentials={'connector["c"]': CRED})
    assert res.ok and fake.max_concurrency == 1


def test_deletes_run_in_reverse_dependency_order_with_undeploy_first(run, fake, store):
    setup_basics(run, fake)
    state = store.load(STACK)
    ids = {a: r.id for a, r in state.resources.items()}
    # given in forward order on purpose: the executor must still delete dependents first
    res = run(connector("c1", Action.DELETE, server_id=ids['connector["c1"]']),
              group("g1", Action.DELETE, server_id=ids['model_group["g1"]']),
              group("g2", Action.DELETE, server_id=ids['model_group["g2"]']),
              remote_model("g1", "r1", "c1", Action.UNDEPLOY, Action.DELETE, server_id=ids['model["g1"]["r1"]'],
                           deployed=True),
              url_model("g2", "m", "1.0", Action.DELETE, server_id=ids['model["g2"]["m"]["1.0"]'], deployed=False))
    assert res.ok, res.errors
    assert fake.index("undeploy_model", "r1") < fake.index("delete_model", "r1")
    assert fake.last_index("delete_model") < fake.index("delete_group")
    assert fake.last_index("delete_group") < fake.index("delete_connector")
    assert fake.calls("undeploy_model") and len(fake.calls("undeploy_model")) == 1   # m was not deployed
    assert not fake.models and not fake.groups and not fake.connectors
    state = store.load(STACK)
    assert state.resources == {} and state.lock is None


def test_undeploy_then_update_connector_then_redeploy(run, fake, store):
    setup_basics(run, fake)
    ids = {a: r.id for a, r in store.load(STACK).resources.items()}
    res = run(connector("c1", Action.UPDATE, server_id=ids['connector["c1"]'], description="new"),
              remote_model("g1", "r1", "c1", Action.UNDEPLOY, Action.DEPLOY, server_id=ids['model["g1"]["r1"]'],
                           deploy=True, deployed=True),
              credentials={'connector["c1"]': CRED})
    assert res.ok, res.errors
    assert fake.index("undeploy_model", "r1") < fake.index("update_connector", "c1") < fake.index("deploy_model", "r1")
    assert fake.connectors[ids['connector["c1"]']]["description"] == "new"
    assert fake.models[ids['model["g1"]["r1"]']]["model_state"] == "DEPLOYED"


def test_fake_refuses_connector_update_while_a_model_using_it_is_deployed(run, fake, store):
    setup_basics(run, fake)
    ids = {a: r.id for a, r in store.load(STACK).resources.items()}
    res = run(connector("c1", Action.UPDATE, server_id=ids['connector["c1"]'], description="new"))
    assert not res.ok
    assert "undeploy the models first" in res.resources['connector["c1"]'].error


# --------------------------------------------------------------------------- failures


def test_failed_register_task_stops_its_deploy_but_independent_groups_complete(run, fake, store):
    fake.fail_task("bad", "Model content hash can't match original hash value")
    res = run(group("g1"), group("g2"),
              url_model("g1", "bad", "1", deploy=True), url_model("g2", "good", "1", deploy=True))
    bad, good = 'model["g1"]["bad"]["1"]', 'model["g2"]["good"]["1"]'
    assert not res.ok
    assert res.resources[bad].status == "failed"
    assert "FAILED" in res.resources[bad].error and "hash can't match" in res.resources[bad].error
    assert res.errors == [f"{bad}: {res.resources[bad].error}"]      # the error names the address
    assert res.resources[good].status == "done"
    assert [c.key for c in fake.calls("deploy_model")] == ["good"]
    state = store.load(STACK)
    assert bad not in state.resources and good in state.resources
    assert state.journal == [] and state.lock is None
    assert fake.models[state.resources[good].id]["model_state"] == "DEPLOYED"


def test_state_keeps_the_applied_form_and_deploy_flag_for_drift(run, fake, store):
    res = run(connector("c1"), group("g1"), remote_model("g1", "r1", "c1", deploy=True),
              url_model("g1", "m", "1", deploy=False), credentials={'connector["c1"]': CRED})
    assert res.ok, res.errors
    state = store.load(STACK)
    assert state.resources['model_group["g1"]'].applied_form == group("g1").after
    assert state.resources['connector["c1"]'].applied_form == connector("c1").after
    r1, m = state.resources['model["g1"]["r1"]'], state.resources['model["g1"]["m"]["1"]']
    assert (r1.applied_deploy, m.applied_deploy) == (True, False)
    assert "sekret-value" not in json.dumps(fake.states[STACK].body)
    # a deploy-only change updates the recorded flag; an update keeps it
    res = run(url_model("g1", "m", "1", Action.DEPLOY, deploy=True, server_id=m.id, deployed=False))
    assert res.ok, res.errors
    assert store.load(STACK).resources['model["g1"]["m"]["1"]'].applied_deploy is True
    res = run(url_model("g1", "m", "1", Action.UPDATE, deploy=True, server_id=m.id, deployed=True,
                        description="new"))
    assert res.ok, res.errors
    after = store.load(STACK).resources['model["g1"]["m"]["1"]']
    assert after.applied_deploy is True and after.applied_form["description"] == "new"


def test_a_failed_deploy_does_not_record_the_deploy_flag(run, fake, store):
    fake.fail_deploy("m", '{"node-1":"no eligible node"}')
    res = run(group("g"), url_model("g", "m", "1", deploy=True))
    assert not res.ok
    assert store.load(STACK).resources['model["g"]["m"]["1"]'].applied_deploy is None


def test_failed_deploy_task_is_reported_with_the_servers_error(run, fake):
    fake.fail_deploy("m", '{"node-1":"no eligible node"}')
    res = run(group("g"), url_model("g", "m", "1", deploy=True))
    r = res.resources['model["g"]["m"]["1"]']
    assert r.status == "failed" and "no eligible node" in r.error and r.id is not None


def test_dependents_of_a_failed_create_are_skipped_and_the_rest_completes(run, fake, store):
    fake.fail("create_connector", ClusterError("create_connector", "c1", 400, "Connector URL is not matching the "
                                                                              "trusted connector endpoint regex"))
    res = run(connector("c1"), group("g1"), group("g2"),
              remote_model("g1", "r1", "c1"), url_model("g2", "m", "1"),
              credentials={'connector["c1"]': CRED})
    assert res.resources['connector["c1"]'].status == "failed"
    assert "trusted connector endpoint" in res.resources['connector["c1"]'].error
    skipped = res.resources['model["g1"]["r1"]']
    assert skipped.status == "skipped" and 'connector["c1"]' in skipped.error
    assert res.resources['model["g2"]["m"]["1"]'].status == "done"
    assert not fake.calls("register_model") or all(c.key != "r1" for c in fake.calls("register_model"))
    assert store.load(STACK).journal == []       # a clear 400 created nothing: the intent is dropped


def test_task_timeout_names_the_address_and_keeps_the_journal_for_resume(clock, store):
    fake = FakeCluster(clock, task_polls=10**6)
    st = ClusterStateStore(fake, clock=clock.time)
    res = apply(Plan(STACK, (group("g"), url_model("g", "m", "1"))), fake, st, clock=clock.time,
                sleep=clock.sleep, request_body=stub_body, timeout=30)
    r = res.resources['model["g"]["m"]["1"]']
    assert r.status == "failed" and "still" in r.error and "re-run apply" in r.error
    journal = st.load(STACK).journal
    assert len(journal) == 1 and journal[0].status == "sent" and journal[0].task_id


def test_a_replace_registers_deploys_the_new_version_then_retires_the_old(run, fake, store):
    res = run(group("g"), url_model("g", "m", "1", sha=SHA_A, deploy=True))
    assert res.ok
    old = store.load(STACK).resources['model["g"]["m"]["1"]'].id
    fake.log.clear()
    res = run(url_model("g", "m", "1", Action.UNDEPLOY, Action.REPLACE, Action.DEPLOY, sha=SHA_B, deploy=True,
                        server_id=old, deployed=True))
    assert res.ok, res.errors
    new = store.load(STACK).resources['model["g"]["m"]["1"]']
    assert new.id != old and new.server_version == "2"
    assert res.resources['model["g"]["m"]["1"]'].replaced_id == old
    seq = [(c.method, c.id) for c in fake.log if c.method in ("register_model", "deploy_model", "undeploy_model",
                                                             "delete_model")]
    assert [m for m, _ in seq] == ["register_model", "deploy_model", "undeploy_model", "delete_model"]
    assert seq[2][1] == old and seq[3][1] == old and seq[1][1] == new.id
    assert old not in fake.models and fake.models[new.id]["model_state"] == "DEPLOYED"
    assert store.load(STACK).journal == []


def test_adopt_records_the_id_without_calls_and_adopt_update_updates(run, fake, store):
    cid = fake.create_connector({"name": "c1", "version": "1", "protocol": "http", "credential": {"k": "v"},
                                 "actions": [{"action_type": "PREDICT", "method": "POST", "url": "http://x"}]})
    gid = fake.create_group({"name": "g1"})
    fake.log.clear()
    res = run(connector("c1", Action.ADOPT, server_id=cid), group("g1", Action.ADOPT, Action.UPDATE, server_id=gid))
    assert res.ok, res.errors
    assert mutating(fake) == ["update_group"]
    state = store.load(STACK)
    assert state.resources['connector["c1"]'].id == cid and state.resources['model_group["g1"]'].id == gid


def test_adopt_on_a_fresh_state_fingerprints_credentials_with_the_states_key(run, fake, store):
    # The plan was made before any state existed (its fingerprints used a throwaway key); what the
    # state records must be keyed with the state's own key, or the next plan sees a credential change.
    cid = fake.create_connector({"name": "c1", "version": "1", "protocol": "http", "credential": {"k": "v"},
                                 "actions": [{"action_type": "PREDICT", "method": "POST", "url": "http://x"}]})
    gid = fake.create_group({"name": "g1"})
    inline = {"protocol": "http", "actions": [{"action_type": "PREDICT", "method": "POST", "url": "http://x"}]}
    mid = fake.register_model({"name": "r", "function_name": "remote", "model_group_id": gid,
                               "connector": {**inline, "credential": {"k": "v"}}}).model_id
    throwaway = fingerprint(CRED, "another-key")
    res = run(dataclasses.replace(connector("c1", Action.ADOPT, server_id=cid), credential_fingerprint=throwaway),
              group("g1", Action.ADOPT, server_id=gid),
              dataclasses.replace(remote_model("g1", "r", inline, Action.ADOPT, server_id=mid),
                                  credential_fingerprint=throwaway),
              credentials={'connector["c1"]': CRED, 'model["g1"]["r"]': CRED})
    assert res.ok, res.errors
    state = store.load(STACK)
    expected = fingerprint(CRED, state.fingerprint_key)
    assert state.resources['connector["c1"]'].credential_fingerprint == expected
    assert state.resources['model["g1"]["r"]'].credential_fingerprint == expected


# --------------------------------------------------------------------------- crash safety


def replan(plan: tuple) -> tuple:
    """What a new plan after the crash looks like: what the crashed run recorded (here the group) is
    now managed and up to date; the model still shows as REGISTER (the worst case: the planner did
    not see the in-flight registration), so only the journal can prevent a duplicate."""
    return tuple(c for c in plan if c.kind == "model")


def test_resume_after_a_crash_between_register_and_wait_adopts_instead_of_registering_again(run, fake, clock):
    plan = (group("g"), url_model("g", "m", "1", deploy=True))
    fake.crash_before("search_tasks")            # dies as soon as it starts waiting for the task
    with pytest.raises(SimulatedCrash):
        run(*plan)
    fake.revive()
    store2 = ClusterStateStore(fake, clock=clock.time)    # a new process
    crashed = store2.load(STACK)
    assert crashed.lock is not None                        # the dead apply never released its lease
    [entry] = crashed.journal
    assert (entry.operation, entry.status, entry.address) == ("register_model", "sent", 'model["g"]["m"]["1"]')
    assert entry.task_id and entry.details["name"] == "m" and entry.details["hash"] == SHA_A
    clock.advance(DEFAULT_LOCK_TTL + 1)                    # its lease runs out
    res = run(*replan(plan), store_=store2)
    assert res.ok, res.errors
    assert len(fake.calls("register_model")) == 1          # no duplicate version
    assert len(fake.models_named("m")) == 1
    state = store2.load(STACK)
    mid = state.resources['model["g"]["m"]["1"]'].id
    assert fake.models[mid]["model_state"] == "DEPLOYED" and state.resources['model["g"]["m"]["1"]'].server_version == "1"
    assert state.journal == [] and state.lock is None
    assert any("took over the expired lock" in w for w in res.warnings)
    assert any("adopted" in n for n in res.notes)


def test_crash_right_after_register_leaves_an_intent_that_resume_resolves_by_natural_key(run, fake, clock):
    plan = (group("g"), url_model("g", "m", "1"))
    fake.crash_after("register_model")           # the call took effect, the task id was never recorded
    with pytest.raises(SimulatedCrash):
        run(*plan)
    fake.revive()
    store2 = ClusterStateStore(fake, clock=clock.time)
    [entry] = store2.load(STACK).journal
    assert (entry.operation, entry.status, entry.task_id, entry.object_id) == ("register_model", "intent", None, None)
    assert entry.details["group_id"] == fake.group_id("g") and entry.details["fingerprint"].startswith("sha256:")
    store2.unlock(STACK, force=True)
    res = run(*replan(plan), store_=store2)
    assert res.ok, res.errors
    assert len(fake.calls("register_model")) == 1 and len(fake.models_named("m")) == 1
    assert fake.calls("find_models")
    assert store2.load(STACK).journal == []


def test_crash_before_register_resolves_to_nothing_and_registers_once(run, fake, clock):
    inline = {"name": "inline", "protocol": "http",   # the server needs a predict action in an inline connector
              "actions": [{"action_type": "PREDICT", "method": "POST", "url": "http://127.0.0.1:9/v1"}]}
    plan = (group("g"), remote_model("g", "r", inline))
    fake.crash_before("register_model")
    with pytest.raises(SimulatedCrash):
        run(*plan)
    fake.revive()
    store2 = ClusterStateStore(fake, clock=clock.time)
    store2.unlock(STACK, force=True)
    res = run(*replan(plan), store_=store2)
    assert res.ok, res.errors
    assert len(fake.models_named("r")) == 1


def test_crash_after_create_connector_adopts_it_on_resume(run, fake, clock):
    plan = (connector("c1"),)
    fake.crash_after("create_connector")
    with pytest.raises(SimulatedCrash):
        run(*plan, credentials={'connector["c1"]': CRED})
    fake.revive()
    store2 = ClusterStateStore(fake, clock=clock.time)
    store2.unlock(STACK, force=True)
    res = run(*plan, store_=store2, credentials={'connector["c1"]': CRED})
    assert res.ok, res.errors
    assert len(fake.connectors) == 1 and len(fake.calls("create_connector")) == 1
    assert fake.calls("observe")


def test_crash_during_chunk_upload_restarts_the_upload_without_leaving_a_duplicate(run, fake, clock, tmp_path,
                                                                                 monkeypatch):
    monkeypatch.setattr(uploads, "CHUNK_SIZE", 10)
    path = tmp_path / "model.zip"
    path.write_bytes(bytes(range(35)))
    plan = (group("g"), local_model("g", "m", "1", str(path)))
    fake.crash_after("upload_chunk", nth=2)
    with pytest.raises(SimulatedCrash):
        run(*plan)
    fake.revive()
    store2 = ClusterStateStore(fake, clock=clock.time)
    [entry] = store2.load(STACK).journal
    assert (entry.operation, entry.status) == ("register_model_meta", "sent") and entry.object_id
    store2.unlock(STACK, force=True)
    res = run(*replan(plan), store_=store2)
    assert res.ok, res.errors
    [mid] = fake.models_named("m")
    assert mid != entry.object_id and entry.object_id not in fake.models
    assert b"".join(fake.chunks[mid][i] for i in range(4)) == path.read_bytes()


def test_crash_after_registering_a_replacement_deletes_the_old_version_on_resume(run, fake, store, clock):
    assert run(group("g"), url_model("g", "m", "1", sha=SHA_A)).ok
    old = store.load(STACK).resources['model["g"]["m"]["1"]'].id
    replace = url_model("g", "m", "1", Action.REPLACE, sha=SHA_B, server_id=old, deployed=False)
    fake.crash_before("search_tasks")
    with pytest.raises(SimulatedCrash):
        run(replace)
    fake.revive()
    store2 = ClusterStateStore(fake, clock=clock.time)
    store2.unlock(STACK, force=True)
    res = run(replace, store_=store2)
    assert res.ok, res.errors
    [mid] = fake.models_named("m")
    assert mid != old and store2.load(STACK).resources['model["g"]["m"]["1"]'].id == mid
    assert len(fake.calls("register_model")) == 2         # the first registration of v1 and one replacement
    assert store2.load(STACK).journal == []


def test_ambiguous_error_after_the_call_took_effect_reobserves_instead_of_resending(run, fake, store):
    fake.fail("register_model", ClusterError("register_model", "m", None, "connection reset by peer"), after=True)
    res = run(group("g"), url_model("g", "m", "1"))
    assert res.ok, res.errors
    assert len(fake.calls("register_model")) == 1
    assert fake.calls("find_models")
    assert len(fake.models_named("m")) == 1
    mid = next(iter(fake.models_named("m")))
    assert store.load(STACK).resources['model["g"]["m"]["1"]'].id == mid
    assert fake.models[mid]["model_state"] == "REGISTERED"


def test_ambiguous_error_before_the_call_took_effect_resends_after_reobserving(run, fake):
    fake.fail("register_model", ClusterError("register_model", "r", 502, "bad gateway"))
    res = run(connector("c"), group("g"), remote_model("g", "r", "c"), credentials={'connector["c"]': CRED})
    assert res.ok, res.errors
    assert len(fake.calls("register_model")) == 2 and fake.calls("find_models")
    assert len(fake.models_named("r")) == 1


def test_ambiguous_create_connector_failure_reobserves_and_adopts(run, fake):
    fake.fail("create_connector", ClusterError("create_connector", "c", 504, "gateway timeout"), after=True)
    res = run(connector("c"), credentials={'connector["c"]': CRED})
    assert res.ok, res.errors
    assert len(fake.connectors) == 1 and len(fake.calls("create_connector")) == 1 and fake.calls("observe")


def test_a_clear_refusal_is_not_retried(run, fake):
    fake.fail("register_model", ClusterError("register_model", "m", 400, "model format is null"), times=5)
    res = run(group("g"), url_model("g", "m", "1"))
    assert res.resources['model["g"]["m"]["1"]'].status == "failed"
    assert len(fake.calls("register_model")) == 1 and not fake.calls("find_models")


# --------------------------------------------------------------------------- local files, fix-ups


def test_chunks_are_uploaded_in_order_with_the_right_sizes(run, fake, store, tmp_path, monkeypatch):
    monkeypatch.setattr(uploads, "CHUNK_SIZE", 10)
    path = tmp_path / "model.zip"
    path.write_bytes(os.urandom(35))
    res = run(group("g"), local_model("g", "m", "1", str(path)), upload_concurrency=1)   # in order: one at a time
    assert res.ok, res.errors
    mid = store.load(STACK).resources['model["g"]["m"]["1"]'].id
    assert fake.chunk_log == [(mid, 0, 10), (mid, 1, 10), (mid, 2, 10), (mid, 3, 5)]
    assert b"".join(fake.chunks[mid][i] for i in range(4)) == path.read_bytes()
    [(_, meta)] = [(m, b) for m, b in fake.bodies if m == "register_model_meta"]
    assert meta["total_chunks"] == 4 and meta["model_content_size_in_bytes"] == 35
    assert meta["model_content_hash_value"] == hashlib.sha256(path.read_bytes()).hexdigest() and "url" not in meta
    assert fake.models[mid]["model_state"] == "REGISTERED"


def test_a_file_that_changed_since_the_plan_is_refused_before_registering(run, fake, tmp_path):
    path = tmp_path / "model.zip"
    path.write_bytes(b"hello world")
    res = run(group("g"), local_model("g", "m", "1", str(path), sha="0" * 64))
    r = res.resources['model["g"]["m"]["1"]']
    assert r.status == "failed" and "changed since the plan" in r.error
    assert not fake.calls("register_model_meta")


def test_metadata_dropped_by_the_last_chunk_is_reapplied(run, fake, store, tmp_path, monkeypatch):
    monkeypatch.setattr(uploads, "CHUNK_SIZE", 4)
    path = tmp_path / "model.zip"
    path.write_bytes(b"0123456789")
    change = local_model("g", "m", "1", str(path), description="sentence embeddings", is_enabled=False,
                         rate_limiter={"limit": "10", "unit": "MINUTES"})
    res = run(group("g"), change)
    assert res.ok, res.errors
    rs = store.load(STACK).resources['model["g"]["m"]["1"]']
    model = fake.models[rs.id]
    assert model["description"] == "sentence embeddings" and model["is_enabled"] is False
    assert model["rate_limiter"] == {"limit": "10", "unit": "MINUTES"}
    assert fake.index("update_model", "m") > fake.last_index("upload_chunk")
    from mlsync.core import normalize
    assert rs.applied_fingerprint == normalize.digest(change.after)


def test_is_enabled_dropped_by_remote_registration_is_reapplied(run, fake, store):
    res = run(connector("c"), group("g"), remote_model("g", "r", "c", is_enabled=False),
              credentials={'connector["c"]': CRED})
    assert res.ok, res.errors
    mid = store.load(STACK).resources['model["g"]["r"]'].id
    assert fake.models[mid]["is_enabled"] is False
    assert [list(b) for m, b in fake.bodies if m == "update_model"] == [["is_enabled"]]


def test_no_fixup_for_functions_update_model_refuses(run, fake):
    res = run(group("g"), url_model("g", "s", "1", function_name="SPARSE_ENCODING", is_enabled=False))
    assert res.ok, res.errors
    assert not fake.calls("update_model")
    assert any("SPARSE_ENCODING" in w for w in res.warnings)


# --------------------------------------------------------------------------- waiting


def test_task_waiter_polls_all_pending_tasks_in_one_search_with_backoff(clock):
    fake = FakeCluster(clock, task_polls=9)
    gids = [fake.create_group({"name": f"g{i}"}) for i in range(3)]
    tids = [fake.register_model({"name": f"m{i}", "model_group_id": gids[i], "model_format": "TORCH_SCRIPT",
                                 "url": "http://x/m.zip", "model_content_hash_value": SHA_A}).task_id for i in range(3)]
    fake.log.clear()
    sleeps: list[float] = []
    rec = Recorder()
    waiter = TaskWaiter(fake, clock=clock.time, sleep=lambda s: (sleeps.append(s), clock.sleep(s)), timeout=600,
                        reporter=rec)
    results: dict[str, dict] = {}
    threads = [threading.Thread(target=lambda t=t: results.__setitem__(t, waiter.wait(t, f"addr-{t}"))) for t in tids]
    for t in threads:
        t.start()
    while len(waiter._pending) < 3:   # all three are waiting before the poller starts
        threading.Event().wait(0.001)
    waiter.start()
    for t in threads:
        t.join(5)
    waiter.stop()
    assert all(results[t]["state"] == "COMPLETED" and results[t]["model_id"] for t in tids)
    polls = fake.calls("search_tasks")
    assert len(polls) == 9 and all(len(c.args[0]) == 3 for c in polls)   # one search per round, all ids
    assert sleeps[0] == pytest.approx(0.2) and sleeps == sorted(sleeps) and max(sleeps) == pytest.approx(2.0)
    assert rec.waits and len(rec.waits[0]) == 3


def test_task_waiter_reports_failed_and_timed_out_tasks(clock):
    fake = FakeCluster(clock, task_polls=10**6)
    gid = fake.create_group({"name": "g"})
    fake.fail_task("bad", "boom")
    bad = fake.register_model({"name": "bad", "model_group_id": gid, "model_format": "ONNX", "url": "http://x",
                               "model_content_hash_value": SHA_A}).task_id
    waiter = TaskWaiter(fake, clock=clock.time, sleep=clock.sleep, timeout=20, reporter=NullReporter()).start()
    try:
        with pytest.raises(TaskTimeout) as slow:
            waiter.wait(bad, "model[x]")   # the task never finishes within 20 s
        assert "model[x]" in str(slow.value)
    finally:
        waiter.stop()
    fake2 = FakeCluster(clock, task_polls=1)
    gid = fake2.create_group({"name": "g"})
    fake2.fail_task("bad", "boom")
    bad = fake2.register_model({"name": "bad", "model_group_id": gid, "model_format": "ONNX", "url": "http://x",
                                "model_content_hash_value": SHA_A}).task_id
    waiter = TaskWaiter(fake2, clock=clock.time, sleep=clock.sleep, timeout=20, reporter=NullReporter()).start()
    try:
        with pytest.raises(TaskFailed) as failed:
            waiter.wait(bad, "model[y]")
        assert "boom" in str(failed.value) and "model[y]" in str(failed.value)
    finally:
        waiter.stop()


# --------------------------------------------------------------------------- locking


def test_a_second_apply_is_refused_while_the_lease_is_held(run, fake, store):
    store.lock(STACK, "alice (pid 42)", 300, host="ci-runner-7")
    fake.log.clear()
    with pytest.raises(LockHeld) as err:
        run(group("g"))
    assert "alice (pid 42)" in str(err.value) and "ci-runner-7" in str(err.value)
    assert mutating(fake) == []


def test_a_stale_lease_is_taken_over(run, fake, store, clock):
    store.lock(STACK, "alice", 60, host="old-host")
    clock.advance(61)
    res = run(group("g"))
    assert res.ok
    assert any("alice" in w and "old-host" in w for w in res.warnings)
    assert store.load(STACK).lock is None


def test_the_lock_is_released_even_when_steps_fail(run, fake, store):
    fake.fail("create_group", ClusterError("create_group", "g", 400, "nope"))
    res = run(group("g"))
    assert not res.ok and store.load(STACK).lock is None


def test_losing_the_lease_mid_apply_aborts_with_the_partial_result(run, fake, store, clock):
    thief = ClusterStateStore(fake, clock=clock.time)
    fired = []

    def steal(method: str) -> None:
        if method == "register_model" and not fired:
            fired.append(1)
            thief.unlock(STACK, force=True)
            thief.lock(STACK, "bob", 300)
    fake.on_call = steal
    with pytest.raises(ApplyAborted) as err:
        run(connector("c"), group("g"), remote_model("g", "r", "c"), credentials={'connector["c"]': CRED})
    fake.on_call = None
    assert err.value.result.resources['connector["c"]'].status == "done"
    assert store.load(STACK).lock.holder == "bob"     # the thief's lease is left alone


def test_reporters_see_every_step_and_plain_lines_are_written(run, fake, clock):
    import io
    rec = Recorder()
    res = run(group("g"), url_model("g", "m", "1", deploy=True), reporter=rec)
    assert res.ok
    steps = [(e[0], e[2]) for e in rec.events if e[1] == 'model["g"]["m"]["1"]']
    assert steps == [("start", "register"), ("done", "register"), ("start", "wait"), ("done", "wait"),
                     ("start", "deploy"), ("done", "deploy")]
    assert rec.waits
    out = io.StringIO()
    assert run(group("g2"), url_model("g2", "m", "1"), reporter=PlainReporter(out, clock=clock.time)).ok
    text = out.getvalue()
    assert 'model["g2"]["m"]["1"]: register ...' in text and "wait done after" in text


# --------------------------------------------------------------------------- state write trouble, interrupts


def test_an_ambiguous_state_write_that_landed_is_recognised(run, fake, store):
    fake.fail("write_state", ClusterError("write_state", STACK, None, "read timed out"), after=True, times=2)
    res = run(group("g"), url_model("g", "m", "1"))
    assert res.ok, res.errors
    assert store.load(STACK).resources['model["g"]["m"]["1"]'].server_version == "1"


def test_a_state_write_failure_stops_the_apply_with_the_partial_result(run, fake, store):
    writes = []

    def third_write(*args) -> bool:
        writes.append(1)
        return len(writes) == 4     # 1: lock, 2: group intent, 3: group recorded, 4: the model's intent
    fake.fail("write_state", ClusterError("write_state", STACK, 403, "no permission on mlsync-state"),
              when=third_write)
    with pytest.raises(ApplyAborted) as err:
        run(group("g"), url_model("g", "m", "1"))
    assert "no permission on mlsync-state" in str(err.value)
    assert err.value.result.resources['model_group["g"]'].status == "done"
    assert not fake.calls("register_model")        # no call without its journal entry


def test_an_interrupt_in_one_worker_does_not_wait_for_other_workers_tasks(clock):
    import time as _time
    fake = FakeCluster(clock, task_polls=10**9)       # group a's task never finishes
    st = ClusterStateStore(fake, clock=clock.time)
    fake.fail("register_model", KeyboardInterrupt(), when=lambda body: body["name"] == "b")
    outcome: list = []

    def go() -> None:
        try:
            apply(Plan(STACK, (group("ga"), group("gb"), url_model("ga", "a", "1"), url_model("gb", "b", "1"))),
                  fake, st, clock=clock.time, sleep=lambda s: _time.sleep(0.005), request_body=stub_body,
                  parallelism=2, timeout=10**9)
        except BaseException as exc:  # noqa: BLE001
            outcome.append(exc)
    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "apply kept waiting for a task after an interrupt"
    assert outcome and isinstance(outcome[0], KeyboardInterrupt)
    state = st.load(STACK)
    assert state.lock is None                          # released on the way out
    journal = {j.details["name"]: j for j in state.journal}
    assert journal["a"].status == "sent" and journal["a"].task_id        # a's task is resumable
    assert journal["b"].status == "intent"                                # b's never took effect


def test_default_request_bodies_come_from_normalize(fake, store, clock):
    """No stand-in: the executor calls mlsync.core.normalize.request_body(change, refs=..., credential=...,
    inline_credential=..., update=...)."""
    res = apply(Plan(STACK, (connector("c"), group("g"), remote_model("g", "r", "c", deploy=True),
                             url_model("g", "m", "1.0"))),
                fake, store, clock=clock.time, sleep=clock.sleep, credentials={'connector["c"]': CRED})
    assert res.ok, res.errors
    ids = {a: r.id for a, r in store.load(STACK).resources.items()}
    remote = fake.models[ids['model["g"]["r"]']]
    assert remote["connector_id"] == ids['connector["c"]'] and remote["model_group_id"] == ids['model_group["g"]']
    assert fake.models[ids['model["g"]["m"]["1.0"]']]["model_content_hash_value"] == SHA_A
    assert fake.credentials[ids['connector["c"]']] == {"api_key": "sekret-value"}


def test_a_failed_lease_renewal_aborts_the_apply_instead_of_reporting_success(run, fake, store):
    """One refused renewal (a 429 on the state write) in the task poller, in the round that finished
    the last pending task, used to stop the poller silently: the next wait was swallowed and the apply
    reported ok with a version missing from the state. It must abort with a non-zero result instead."""
    polls = []

    def refuse_renewal(method: str) -> None:
        if method == "search_tasks":
            polls.append(1)
            if len(polls) == fake.task_polls:     # the poll that completes the first task
                fake.fail("write_state", ClusterError("write_state", STACK, 429, "rejected execution",
                                                      "es_rejected_execution_exception"), times=1)
    fake.on_call = refuse_renewal
    with pytest.raises(ApplyAborted) as err:
        run(group("g"), url_model("g", "m", "1"), url_model("g", "n", "1"), lock_ttl=0.3)
    fake.on_call = None
    assert "renew" in str(err.value) or "could not save" in str(err.value)
    assert not err.value.result.ok
    assert err.value.result.resources['model["g"]["n"]["1"]'].status != "done"


def test_a_replace_keeps_the_old_version_serving_when_the_new_one_fails_to_deploy(run, fake, store):
    res = run(group("g"), url_model("g", "m", "1", sha=SHA_A, deploy=True))
    assert res.ok
    old = store.load(STACK).resources['model["g"]["m"]["1"]'].id
    fake.fail_deploy("m")
    res = run(url_model("g", "m", "1", Action.REPLACE, Action.DEPLOY, sha=SHA_B, deploy=True,
                        server_id=old, deployed=True))
    assert not res.ok and "deploy" in res.resources['model["g"]["m"]["1"]'].error
    assert old in fake.models and fake.models[old]["model_state"] == "DEPLOYED"   # still serving
    assert not fake.calls("undeploy_model") and not fake.calls("delete_model")
    st = store.load(STACK)
    new = st.resources['model["g"]["m"]["1"]'].id
    assert new != old
    # the old version waits in the journal: once the successor deploys, the next apply retires it
    assert [j.object_id for j in st.journal if j.operation == "delete_replaced"] == [old]
    fake._failing_deploys.clear()
    res = run(url_model("g", "m", "1", Action.DEPLOY, sha=SHA_B, deploy=True, server_id=new, deployed=False))
    assert res.ok, res.errors
    assert old not in fake.models and fake.models[new]["model_state"] == "DEPLOYED"
    assert store.load(STACK).journal == []
