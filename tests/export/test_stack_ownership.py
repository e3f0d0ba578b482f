"""One object, one stack (issue 10, defect 14), outside the planner: the state stores list which ids the
other stacks manage, `mlsync import` refuses them (a move is `state rm` there, then `import` here),
`mlsync export` leaves them out with a warning, and `plan` passes them to the planner. On the fake
cluster and a local state file."""

from __future__ import annotations

import io
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/ for `fakes`

from fakes import FakeCluster  # noqa: E402

from mlsync import commands as app  # noqa: E402
from mlsync.commands import common  # noqa: E402
from mlsync.core.errors import MlsyncError, PlanError  # noqa: E402
from mlsync.core.state import JournalEntry, Owner, ResourceState, StackState  # noqa: E402
from mlsync.edge.cluster import ConnectionOptions  # noqa: E402
from mlsync.edge.statestore import ClusterStateStore, FileStateStore, state_rm  # noqa: E402

OPTS = ConnectionOptions(url="http://localhost:9200")
GROUP = 'model_group["g"]'
CONN = 'connector["c"]'
REMOTE = 'model["g"]["r"]'

STACK_FILE = """
version: 1
stack: {stack}
connectors:
  - name: c
    protocol: http
    credential: {{api_key: k}}
    actions: [{{action_type: predict, method: POST, url: "http://127.0.0.1:1/v1"}}]
model_groups:
  - name: g
models:
  - name: r
    model_group: g
    function_name: remote
    connector: c
"""


@pytest.fixture
def fake(monkeypatch) -> FakeCluster:
    cluster = FakeCluster()
    monkeypatch.setattr(common, "connect", lambda options: cluster)
    return cluster


def applied(fake: FakeCluster, tmp_path, stack: str = "a") -> str:
    """Stack `stack` applied from STACK_FILE on the fake; returns the file's path."""
    path = tmp_path / f"{stack}.yaml"
    path.write_text(STACK_FILE.format(stack=stack))
    assert app.apply([str(path)], OPTS, io.StringIO(), auto_approve=True) == app.EXIT_OK
    return str(path)


def ids(fake: FakeCluster) -> dict[str, str]:
    body = fake.states["a"].body["resources"]
    return {a: r["id"] for a, r in body.items()}


def names(text: str) -> dict[str, list[str]]:
    from ruamel.yaml import YAML

    doc = YAML(typ="safe").load(text)
    return {k: sorted(e["name"] for e in doc.get(k) or []) for k in ("connectors", "model_groups", "models")}


# --- the stores ---------------------------------------------------------------------------------

def test_cluster_store_owners_come_from_one_search(fake, tmp_path):
    applied(fake, tmp_path)
    store = ClusterStateStore(fake)
    before = len(fake.calls())
    owners = store.owners("s")
    assert [c.method for c in fake.calls()[before:]] == ["search_states"]      # not a GET per stack
    assert owners == {i: Owner("a", a) for a, i in ids(fake).items()}
    assert store.owners("a") == {}


def test_file_store_owners_cover_every_other_stack_and_journal_ids(tmp_path):
    store = FileStateStore(tmp_path / "state.json")
    a = StackState("a")
    a.resources = {GROUP: ResourceState(GROUP, "model_group", "G1")}
    a.journal = [JournalEntry("1", CONN, "create_connector", 1.0, "sent", object_id="C1")]
    store.save(a)
    b = StackState("b")
    b.resources = {GROUP: ResourceState(GROUP, "model_group", "G2")}
    store.save(b)
    assert store.owners("b") == {"G1": Owner("a", GROUP), "C1": Owner("a", CONN, pending=True)}
    assert store.owners("a") == {"G2": Owner("b", GROUP)}
    assert store.owners("nobody") == {"G1": Owner("a", GROUP), "C1": Owner("a", CONN, pending=True),
                                      "G2": Owner("b", GROUP)}
    assert FileStateStore(tmp_path / "none.json").owners("a") == {}


# --- plan ---------------------------------------------------------------------------------------

def test_a_second_stack_with_the_same_names_cannot_plan_and_changes_nothing(fake, tmp_path):
    applied(fake, tmp_path, "a")
    second = tmp_path / "b.yaml"
    second.write_text(STACK_FILE.format(stack="b"))
    writes = len([c for c in fake.calls() if c.method not in ("observe", "read_state", "search_states")])
    with pytest.raises(PlanError) as err:
        app.plan([str(second)], OPTS, io.StringIO())
    assert f"{CONN}: the connector named 'c' on the cluster (id {ids(fake)[CONN]}) is managed by stack 'a'" \
        in str(err.value)
    with pytest.raises(PlanError):
        app.apply([str(second)], OPTS, io.StringIO(), auto_approve=True)
    # b manages nothing: its destroy deletes nothing (before the fix it had adopted, and deleted, a's objects)
    assert app.apply([str(second)], OPTS, io.StringIO(), auto_approve=True, destroy=True) == app.EXIT_OK
    assert not fake.states["b"].body["resources"]                     # b adopted nothing
    changed = [c.method for c in fake.calls() if c.method not in ("observe", "read_state", "search_states")]
    assert all(m == "write_state" for m in changed[writes:])           # only b's lease came and went
    assert len(fake.connectors) == 1 and len(fake.groups) == 1 and len(fake.models) == 1


# --- import -------------------------------------------------------------------------------------

def test_import_refuses_an_id_another_stack_manages_and_a_move_is_rm_then_import(fake, tmp_path):
    applied(fake, tmp_path, "a")
    gid = ids(fake)[GROUP]
    with pytest.raises(MlsyncError) as err:
        app.import_(GROUP, gid, OPTS, io.StringIO(), stack="b")
    text = str(err.value)
    assert f"{gid} is managed by stack 'a' (as {GROUP})" in text
    assert "mlsync state rm --stack a 'model_group[\"g\"]'" in text
    assert "b" not in fake.states                                      # nothing written
    state_rm(ClusterStateStore(fake), "a", [GROUP])                    # the explicit move: a lets go ...
    assert app.import_(GROUP, gid, OPTS, io.StringIO(), stack="b") == app.EXIT_OK   # ... and b takes it
    assert fake.states["b"].body["resources"][GROUP]["id"] == gid
    assert GROUP not in fake.states["a"].body["resources"]


def test_import_refuses_an_id_in_another_stacks_journal(fake):
    gid = fake.create_group({"name": "g"})
    a = StackState("a")
    a.journal = [JournalEntry("1", GROUP, "create_group", 1.0, "sent", object_id=gid)]
    ClusterStateStore(fake).save(a)
    with pytest.raises(MlsyncError, match="stack 'a' has an interrupted operation on it"):
        app.import_(GROUP, gid, OPTS, io.StringIO(), stack="b")


# --- export -------------------------------------------------------------------------------------

def test_export_leaves_out_what_other_stacks_manage_with_a_warning(fake, tmp_path):
    applied(fake, tmp_path, "a")
    fake.create_group({"name": "free"})
    out, err = io.StringIO(), io.StringIO()
    assert app.export_(OPTS, out, stack="b", err=err) == app.EXIT_OK
    warnings = err.getvalue()
    assert names(out.getvalue()) == {"connectors": [], "model_groups": ["free"], "models": []}
    own = ids(fake)
    assert f"connector {own[CONN]} ('c') left out: stack 'a' manages it as {CONN}" in warnings
    assert f"model group {own[GROUP]} ('g') left out with its models: stack 'a' manages it as {GROUP}" in warnings
    # exported as stack a itself, they are a's own: kept
    out = io.StringIO()
    assert app.export_(OPTS, out, stack="a", err=io.StringIO()) == app.EXIT_OK
    assert names(out.getvalue()) == {"connectors": ["c"], "model_groups": ["free", "g"], "models": ["r"]}


def test_export_of_a_group_another_stack_manages_is_an_error(fake, tmp_path):
    applied(fake, tmp_path, "a")
    with pytest.raises(MlsyncError, match="model group 'g' .* is managed by stack 'a'"):
        app.export_(OPTS, io.StringIO(), groups=["g"], err=io.StringIO())


def test_export_leaves_out_a_model_using_another_stacks_connector(fake, tmp_path):
    applied(fake, tmp_path, "a")
    gid = fake.create_group({"name": "mine"})
    cid = ids(fake)[CONN]
    fake.register_model({"name": "uses-a", "function_name": "remote", "model_group_id": gid, "connector_id": cid})
    out, err = io.StringIO(), io.StringIO()
    assert app.export_(OPTS, out, groups=["mine"], err=err) == app.EXIT_OK
    assert names(out.getvalue()) == {"connectors": [], "model_groups": ["mine"], "models": []}
    assert f"('uses-a') left out: it uses connector {cid}, which stack 'a' manages as {CONN}" in err.getvalue()


# --- state mv -----------------------------------------------------------------------------------

def test_state_mv_hands_objects_over_and_the_credential_is_not_sent_again(fake, tmp_path):
    """The one-command move: b's plan of the same objects is empty (its fingerprints, made with a's
    salt, are verified and re-keyed, not taken for a changed credential), a's plan is refused."""
    path_a = applied(fake, tmp_path, "a")
    before = {i: dict(c) for i, c in fake.connectors.items()}
    out = io.StringIO()
    app.state("mv", [CONN, GROUP, REMOTE], OPTS, out, stack="a", to_stack="b")
    assert "Moved 3 addresses from stack 'a' to stack 'b'" in out.getvalue()
    assert ClusterStateStore(fake).load("a").resources == {}
    path_b = tmp_path / "b.yaml"
    path_b.write_text(STACK_FILE.format(stack="b"))
    planned = common.plan_for(common.load_desired([str(path_b)]), fake, ClusterStateStore(fake))
    assert not planned.plan.has_changes, [c.reason for c in planned.plan.pending]
    assert planned.state.carried_over                                  # re-keyed with b's salt ...
    assert app.apply([str(path_b)], OPTS, io.StringIO(), auto_approve=True) == app.EXIT_OK
    stored = ClusterStateStore(fake).load("b")
    assert all(rs.fingerprint_salt is None for rs in stored.resources.values())   # ... and saved
    assert fake.connectors == before                                   # nothing was sent again
    with pytest.raises(PlanError, match="managed by stack 'b'"):
        common.plan_for(common.load_desired([path_a]), fake, ClusterStateStore(fake))


def test_state_mv_refuses_what_it_cannot_move_and_changes_nothing(fake, tmp_path):
    applied(fake, tmp_path, "a")
    store = ClusterStateStore(fake)
    with pytest.raises(MlsyncError, match='connector\\["nope"\\]'):
        app.state("mv", [GROUP, 'connector["nope"]'], OPTS, io.StringIO(), stack="a", to_stack="b")
    assert store.load("b") is None                 # refused before the target was touched
    b = StackState("b")
    b.resources[GROUP] = ResourceState(GROUP, "model_group", "another-id")
    store.save(b)
    with pytest.raises(MlsyncError, match="already manages"):
        app.state("mv", [GROUP], OPTS, io.StringIO(), stack="a", to_stack="b")
    a = store.load("a")
    a.journal = [JournalEntry("1", REMOTE, "register_model", 1.0, "sent")]
    store.save(a)
    with pytest.raises(MlsyncError, match="in flight"):
        app.state("mv", [REMOTE], OPTS, io.StringIO(), stack="a", to_stack="c")
    assert set(store.load("a").resources) == {CONN, GROUP, REMOTE}    # all or nothing, each time
    assert set(store.load("b").resources) == {GROUP} and store.load("c") is None
    assert store.load("a").lock is None and store.load("b").lock is None


def test_file_store_owners_reuse_what_load_parsed_only_while_the_file_is_the_same(tmp_path, monkeypatch):
    """The owners' read right after `load` does not parse the file again; once another writer has
    replaced the file (another stack saved meanwhile), it does, and sees that stack's objects."""
    import mlsync.edge.statestore as statestore

    path = tmp_path / "state.json"
    a = StackState("a")
    a.resources = {GROUP: ResourceState(GROUP, "model_group", "G1")}
    FileStateStore(path).save(a)
    parsed: list[int] = []
    real_loads = statestore.json.loads
    monkeypatch.setattr(statestore.json, "loads", lambda text: parsed.append(len(text)) or real_loads(text))
    store = FileStateStore(path)
    assert store.load("b") is None and len(parsed) == 1
    assert store.owners("b") == {"G1": Owner("a", GROUP)} and len(parsed) == 1   # reused
    other = StackState("c")
    other.resources = {CONN: ResourceState(CONN, "connector", "C9")}
    FileStateStore(path).save(other)   # another process's write: a new file
    assert store.owners("b") == {"G1": Owner("a", GROUP), "C9": Owner("c", CONN)}
    assert len(parsed) == 3   # the other writer's read (under its lock) and this one
