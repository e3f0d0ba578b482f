"""What is applied is what was reviewed (SPEC §4; issue 10, defects 1 and 2), through `mlsync.commands`
on the in-memory FakeCluster (tests/fakes.py) with the state on the fake cluster (ClusterStateStore):

- `apply` takes the stack's lease before it reads the state and the cluster and holds it through the
  confirmation prompt: a second apply of the same file meanwhile is refused by the lock; a lease lost
  while waiting stops the apply; every way out before the apply starts releases the lease;
- a saved plan carries a digest of every planned value: a value changed in the file since `plan -o`
  (same addresses, actions and field paths) refuses `apply PLANFILE`, naming the address.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/ for `fakes`

from fakes import FakeCluster, connected  # noqa: E402
from helpers import connector_yaml  # noqa: E402

from mlsync import commands as app  # noqa: E402
from mlsync.commands import common  # noqa: E402
from mlsync.core.address import Address  # noqa: E402
from mlsync.core.errors import LeaseLost, LockHeld, StalePlan  # noqa: E402
from mlsync.core.plan import FORMAT_VERSION, Action, FieldChange, Plan, ResourceChange  # noqa: E402
from mlsync.edge.cluster import ConnectionOptions  # noqa: E402

OPTS = ConnectionOptions(url="http://localhost:9200")
STACK = "lock-stack"
CONN = 'connector["emb"]'
REVIEWED = "https://reviewed.example/v1/embeddings"
ATTACKER = "https://attacker.example/collect"


def stack_yaml(url: str = REVIEWED, *, description: str = "embeddings", key: str = "k-1") -> str:
    return f"""
version: 1
stack: {STACK}
connectors:
{connector_yaml("emb", url, description=description, key=key)}model_groups:
  - name: g
models:
  - name: remote
    model_group: g
    function_name: remote
    connector: emb
    deploy: false
"""


@pytest.fixture
def fake(monkeypatch) -> FakeCluster:
    return connected(monkeypatch, FakeCluster(task_polls=0, deploy_polls=0))


@pytest.fixture
def stack(tmp_path) -> Path:
    f = tmp_path / "stack.yaml"
    f.write_text(stack_yaml())
    return f


def apply(files, **kw) -> tuple[int, str]:
    out = io.StringIO()
    code = app.apply([str(f) for f in files], OPTS, out, **kw)
    return code, out.getvalue()


def lock_of(fake: FakeCluster):
    doc = fake.states.get(STACK)
    return doc.body.get("lock") if doc else None


def connector_urls(fake: FakeCluster) -> list[str]:
    return [c["actions"][0]["url"] for c in fake.connectors.values()]


# --------------------------------------------------------------------------- defect 1: the lease


def test_a_second_apply_is_refused_while_the_first_waits_at_its_prompt(fake, stack):
    """Issue 10 defect 1: A waits for "yes" while B applies the same file. B must be refused by the
    lock (before it reads the cluster), and A then creates each object once."""
    refused: list[BaseException] = []
    observes_during_b: list[int] = []

    def a_confirms() -> bool:
        assert lock_of(fake) is not None, "the prompt must be answered under the stack's lease"
        before = len(fake.calls("observe"))
        with pytest.raises(LockHeld) as err:
            apply([stack], auto_approve=True)
        refused.append(err.value)
        observes_during_b.append(len(fake.calls("observe")) - before)
        return True

    code, text = apply([stack], confirm=a_confirms)
    assert code == app.EXIT_OK, text
    assert refused and STACK in str(refused[0])
    assert observes_during_b == [0], "the refused apply must not even read the cluster"
    assert len(fake.connectors) == 1 and len(fake.models_named("remote")) == 1
    assert len(fake.calls("create_connector")) == 1 and len(fake.calls("register_model")) == 1
    assert lock_of(fake) is None
    assert not common.plan_for(common.load_desired([str(stack)]), fake,
                               common.state_store(fake, None)).plan.has_changes     # and the next plan is empty


def test_the_lease_is_taken_before_the_state_and_the_cluster_are_read(fake, stack):
    assert apply([stack], auto_approve=True)[0] == app.EXIT_OK
    methods = [c.method for c in fake.log]
    first_write = methods.index("write_state")
    assert "observe" in methods and first_write < methods.index("observe")
    assert methods.count("observe") == 1, "one observation: the one made under the lease"


def test_a_lease_lost_while_waiting_at_the_prompt_stops_the_apply(fake, stack):
    """The prompt outlasted the lease and someone else took the stack (here: `unlock --force` and an
    apply of its own): answering yes must change nothing and say why."""
    def meanwhile() -> bool:
        assert app.unlock(OPTS, io.StringIO(), stack=STACK, force=True) == app.EXIT_OK
        assert apply([stack], auto_approve=True)[0] == app.EXIT_OK
        return True

    with pytest.raises(LeaseLost, match="lost while it waited for confirmation"):
        apply([stack], confirm=meanwhile)
    assert len(fake.connectors) == 1 and len(fake.models_named("remote")) == 1
    assert len(fake.calls("create_connector")) == 1
    assert lock_of(fake) is None


def test_a_lease_that_merely_expired_at_the_prompt_is_renewed(fake, stack, monkeypatch):
    """Nobody took the expired lease: the renewal succeeds and the apply goes on."""
    from mlsync.edge import statestore

    def expire() -> bool:
        body = fake.states[STACK].body
        assert body["lock"] is not None
        real = statestore.ClusterStateStore.renew

        def renew_after_expiry(self, state, ttl):
            state.lock.expires = 0.0          # what a long prompt does to the lease
            return real(self, state, ttl)
        monkeypatch.setattr(statestore.ClusterStateStore, "renew", renew_after_expiry)
        return True

    code, text = apply([stack], confirm=expire)
    assert code == app.EXIT_OK, text
    assert len(fake.connectors) == 1 and lock_of(fake) is None


@pytest.mark.parametrize("how", ["cancelled", "no changes", "no terminal"])
def test_every_way_out_before_the_apply_releases_the_lease(fake, stack, how):
    if how == "no changes":
        assert apply([stack], auto_approve=True)[0] == app.EXIT_OK
    seen: list = []

    def answer() -> bool:
        seen.append(lock_of(fake))
        return False
    code, text = apply([stack], confirm=None if how == "no terminal" else answer)
    if how == "no changes":
        assert code == app.EXIT_OK and not seen
    else:
        assert code == app.EXIT_ERROR and "Apply cancelled" in text
    if how == "cancelled":
        assert seen and seen[0] is not None
    assert lock_of(fake) is None
    assert apply([stack], auto_approve=True)[0] == app.EXIT_OK      # nothing left behind blocks the next


def test_a_plan_error_under_the_lease_releases_it(fake, stack, monkeypatch):
    from mlsync.core.errors import PlanError

    def boom(*a, **kw):
        raise PlanError(["no"])
    monkeypatch.setattr(common, "make_plan", boom)
    with pytest.raises(PlanError):
        apply([stack], auto_approve=True)
    assert lock_of(fake) is None


def test_destroy_holds_the_lease_through_its_prompt_too(fake, stack):
    assert apply([stack], auto_approve=True)[0] == app.EXIT_OK

    def b_meanwhile() -> bool:
        with pytest.raises(LockHeld):
            apply([stack], auto_approve=True, destroy=True)
        return True
    code, text = apply([stack], destroy=True, confirm=b_meanwhile)
    assert code == app.EXIT_OK, text
    assert not fake.connectors and not fake.models_named("remote") and lock_of(fake) is None


# --------------------------------------------------------------------------- defect 2: the digest


def save(files, plan_file: Path, **kw) -> None:
    assert app.plan([str(f) for f in files], OPTS, io.StringIO(), plan_file=str(plan_file), **kw) == app.EXIT_OK


@pytest.mark.parametrize("existing", [False, True], ids=["new stack", "existing stack"])
def test_a_saved_plan_whose_values_changed_is_refused_naming_the_address(fake, stack, tmp_path, existing):
    """Issue 10 defect 2: the reviewed plan sets actions[0].url to the reviewed URL; the file then says
    the attacker's. Same addresses, actions and field paths: apply PLANFILE must refuse, name the
    connector, and send nothing to the attacker's URL."""
    if existing:
        stack.write_text(stack_yaml("https://old.example/v1"))
        assert apply([stack], auto_approve=True)[0] == app.EXIT_OK
    stack.write_text(stack_yaml(REVIEWED))
    plan_file = tmp_path / "reviewed.plan"
    save([stack], plan_file)
    stack.write_text(stack_yaml(ATTACKER))
    writes = len(fake.bodies)

    with pytest.raises(StalePlan) as err:
        apply([], plan_file=str(plan_file))
    message = str(err.value)
    assert "the saved plan is stale" in message and CONN in message, message
    assert "different values" in message and "mlsync plan" in message
    assert 'model_group["g"]' not in message            # only what differs is named
    assert len(fake.bodies) == writes, "nothing may be sent"
    assert ATTACKER not in json.dumps(fake.bodies)
    assert lock_of(fake) is None

    stack.write_text(stack_yaml(REVIEWED))               # the reviewed file again, planned again: it applies
    save([stack], plan_file)
    code, text = apply([], plan_file=str(plan_file))
    assert code == app.EXIT_OK, text
    assert connector_urls(fake) == [REVIEWED]


def test_an_unchanged_saved_plan_applies(fake, stack, tmp_path):
    plan_file = tmp_path / "p.plan"
    save([stack], plan_file)
    code, text = apply([], plan_file=str(plan_file))
    assert code == app.EXIT_OK, text
    assert len(fake.connectors) == 1 and lock_of(fake) is None
    stack.write_text(stack_yaml(description="v2"))
    save([stack], plan_file)
    code, text = apply([], plan_file=str(plan_file))
    assert code == app.EXIT_OK, text
    assert [c["description"] for c in fake.connectors.values()] == ["v2"]


def test_a_credential_changed_since_the_plan_refuses_it(fake, stack, tmp_path):
    assert apply([stack], auto_approve=True)[0] == app.EXIT_OK
    stack.write_text(stack_yaml(key="k-2"))
    plan_file = tmp_path / "p.plan"
    save([stack], plan_file)
    stack.write_text(stack_yaml(key="k-3"))
    with pytest.raises(StalePlan, match=r'different values for connector\["emb"\]'):
        apply([], plan_file=str(plan_file))
    assert not fake.calls("update_connector")


def test_a_state_moved_since_the_plan_refuses_it(fake, stack, tmp_path):
    assert apply([stack], auto_approve=True)[0] == app.EXIT_OK
    stack.write_text(stack_yaml(description="v2"))
    plan_file = tmp_path / "p.plan"
    save([stack], plan_file)
    from mlsync.edge.statestore import ClusterStateStore
    store = ClusterStateStore(fake)
    store.save(store.load(STACK))                                                      # any write moves the serial
    with pytest.raises(StalePlan, match="serial"):
        apply([], plan_file=str(plan_file))


def test_an_object_moved_since_the_plan_refuses_it(fake, stack, tmp_path):
    assert apply([stack], auto_approve=True)[0] == app.EXIT_OK
    stack.write_text(stack_yaml(description="v2"))
    plan_file = tmp_path / "p.plan"
    save([stack], plan_file)
    (cid,) = fake.connectors
    fake.update_connector(cid, {"description": "v2"})      # same value by hand: _seq_no moved all the same
    with pytest.raises(StalePlan, match=r'changed since the plan was made: connector\["emb"\]'):
        apply([], plan_file=str(plan_file))


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_a_plan_without_a_digest_is_refused_before_reaching_the_cluster(fake, stack, tmp_path, version):
    plan_file = tmp_path / "old.plan"
    save([stack], plan_file)
    doc = json.loads(plan_file.read_text())
    doc["format_version"] = version
    del doc["digest"]
    plan_file.write_text(json.dumps(doc))
    calls = len(fake.log)
    with pytest.raises(StalePlan, match=r"carries no digest.*mlsync plan -o"):
        apply([], plan_file=str(plan_file))
    assert len(fake.log) == calls and STACK not in fake.states


def test_a_plan_file_edited_after_it_was_saved_is_refused(fake, stack, tmp_path):
    plan_file = tmp_path / "p.plan"
    save([stack], plan_file)
    stack.write_text(stack_yaml(ATTACKER))
    doc = json.loads(plan_file.read_text())
    for rc in doc["resource_changes"]:
        if rc["address"] == CONN:
            rc["after"]["actions"][0]["url"] = ATTACKER       # made to match the file, digest kept
    plan_file.write_text(json.dumps(doc))
    with pytest.raises(StalePlan, match="changed after it was saved"):
        apply([], plan_file=str(plan_file))
    assert not fake.connectors


# --------------------------------------------------------------------------- Plan.digest (pure)


def _change(**kw) -> ResourceChange:
    base = dict(address=Address("connector", "c"), actions=(Action.UPDATE,), reason="fields differ: url",
                server_id="c1", before={"url": "a"}, after={"url": "b"},
                field_changes=(FieldChange("url", "a", "b"),), credential_fingerprint="hmac-sha256:" + "1" * 64)
    base.update(kw)
    return ResourceChange(**base)


def _plan(*changes, serial=3, **kw) -> Plan:
    return Plan(stack="s", changes=tuple(changes), state_serial=serial, **kw)


def test_the_digest_survives_the_plan_file_and_is_recorded_in_it():
    p = _plan(_change(), _change(address=Address("model_group", "g"), actions=(Action.NOOP,)))
    doc = json.loads(json.dumps(p.to_json()))
    assert doc["format_version"] == FORMAT_VERSION and doc["digest"].startswith("sha256:")
    back = Plan.from_json(doc)
    assert back == p and back.recorded_digest == doc["digest"] == back.digest() == p.digest()
    assert p.recorded_digest is None


@pytest.mark.parametrize("edit", [
    dict(after={"url": "c"}), dict(before={"url": "z"}), dict(field_changes=(FieldChange("url", "a", "c"),)),
    dict(actions=(Action.UPDATE, Action.DEPLOY)), dict(server_id="c2"), dict(deploy=True), dict(deployed=True),
    dict(artifact={"sha256": "b" * 64, "size": 1}), dict(credential_fingerprint="hmac-sha256:" + "2" * 64),
    dict(field_changes=(FieldChange("url", "a", "b"), FieldChange("credential", "x", "y", sensitive=True))),
])
def test_every_planned_value_is_in_the_digest(edit):
    p = _plan(_change())
    q = _plan(_change(**edit))
    assert p.digest() != q.digest()
    assert list(q.change_digests()) == ['connector["c"]']
    assert p.change_digests()['connector["c"]'] != q.change_digests()['connector["c"]']


def test_words_no_ops_and_recorded_checks_are_not_in_the_digest():
    p = _plan(_change())
    assert p.digest() == _plan(_change(reason="other words", drift=True)).digest()
    assert p.digest() == _plan(_change(), _change(address=Address("model_group", "g"), actions=(Action.NOOP,))).digest()
    assert p.digest() == dataclasses.replace(p, observed_fingerprints={"c1": "seq:1:1"}, warnings=("w",)).digest()
    assert p.digest() != dataclasses.replace(p, destroy=True).digest()


def test_without_a_state_credential_fingerprints_are_left_out():
    """A plan made before the stack had a state fingerprinted credentials with a key nobody kept."""
    one = _change(credential_fingerprint="hmac-sha256:" + "1" * 64)
    two = _change(credential_fingerprint="hmac-sha256:" + "2" * 64)
    assert _plan(one, serial=0).digest() == _plan(two, serial=0).digest()
    assert _plan(one, serial=0).digest() != _plan(_change(after={"url": "evil"}), serial=0).digest()
    assert _plan(one, serial=0).digest() != _plan(_change(credential_fingerprint=None), serial=0).digest()
    assert _plan(one, serial=1).digest() != _plan(two, serial=1).digest()
