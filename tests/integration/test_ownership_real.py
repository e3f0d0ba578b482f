"""One object, one stack, on the real node (issue 10, defect 14).

Reproduces the issue with examples/quickstart.yaml under two stack names: before the fix the second
stack planned the first stack's connector, group and model as "unmanaged ... with the same name",
adopted them, and its destroy deleted what the first stack still managed. Now the second stack's
plan fails naming the first stack, nothing on the node changes, `import` refuses the ids, `export`
leaves them out, and the explicit move (`state rm` in the first stack, `import` in the second) works.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from stack_helpers import replan, run_apply

from mlsync import commands as app
from mlsync.core.errors import MlsyncError, PlanError
from mlsync.edge.cluster import Cluster
from mlsync.edge.statestore import ClusterStateStore

pytestmark = pytest.mark.cluster

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart.yaml"


def ml_objects(os_client, names: dict[str, str]) -> dict[str, list[tuple[str, int, str]]]:
    """kind -> (id, seq_no, model_state) of the objects named after the stack, read from the node directly."""
    os_client.indices.refresh(index=".plugins-ml-model,.plugins-ml-connector,.plugins-ml-model-group",
                              ignore_unavailable=True)
    out = {}
    for kind, path in (("connector", "connectors"), ("group", "model_groups"), ("model", "models")):
        body = {"size": 20, "seq_no_primary_term": True, "query": {"term": {"name.keyword": names[kind]}}}
        hits = os_client.transport.perform_request("POST", f"/_plugins/_ml/{path}/_search", body=body)["hits"]["hits"]
        out[kind] = sorted((h["_id"], h["_seq_no"], h["_source"].get("model_state", "")) for h in hits)
    return out


def quickstart_twice(tmp_path, u: str, artifact_server):
    """examples/quickstart.yaml as stack `u` and as stack `u`-second (same object names): the two
    files, the objects' names by kind and their addresses (connector, group, model)."""
    text = QUICKSTART.read_text().replace("quickstart", u).replace("http://127.0.0.1:8089", artifact_server.base_url)
    first, second = tmp_path / "first.yaml", tmp_path / "second.yaml"
    first.write_text(text)
    second.write_text(text.replace(f"stack: {u}", f"stack: {u}-second"))
    names = {"connector": f"{u}-embeddings-api", "group": f"{u}-embeddings", "model": f"{u}-remote-embedder"}
    addresses = (f'connector["{names["connector"]}"]', f'model_group["{names["group"]}"]',
                 f'model["{names["group"]}"]["{names["model"]}"]')
    return first, second, names, addresses


def test_a_second_stack_never_takes_over_the_first_stacks_objects(tmp_path, opts, os_client, unique_name,
                                                                  artifact_server):
    u = unique_name("own")
    first, second, names, (conn, group, model) = quickstart_twice(tmp_path, u, artifact_server)

    code, out = run_apply([first], opts)
    assert code == 0, out
    before = ml_objects(os_client, names)
    assert [len(v) for v in before.values()] == [1, 1, 1] and before["model"][0][2] == "DEPLOYED"
    ids = {k: v[0][0] for k, v in before.items()}

    # the edge reads every stack's ownership in one search (after one refresh), ids only: no key, no forms
    cluster = Cluster.connect(opts)
    states = cluster.search_states()
    assert cluster.requests_made == 2
    assert states[u] == {"stack": u, "resources": {conn: {"id": ids["connector"]}, group: {"id": ids["group"]},
                                                   model: {"id": ids["model"]}}}

    # plan, apply and destroy of the second stack: refused or empty, naming the first stack
    with pytest.raises(PlanError) as err:
        app.plan([str(second)], opts, io.StringIO())
    message = str(err.value)
    assert (f"{conn}: the connector named {names['connector']!r} on the cluster (id {ids['connector']}) is managed "
            f"by stack {u!r}") in message
    assert f"{group}: the model group named {names['group']!r} on the cluster (id {ids['group']}) is managed" in message
    assert f"mlsync state rm --stack {u} '{conn}'" in message
    with pytest.raises(PlanError, match=f"is managed by stack {u!r}"):
        run_apply([second], opts)
    code, out = run_apply([second], opts, destroy=True)    # it manages nothing: it deletes nothing
    assert code == 0 and "No changes" in out, out
    with pytest.raises(MlsyncError, match=f"{ids['group']} is managed by stack {u!r}"):
        app.import_(group, ids["group"], opts, io.StringIO(), stack=f"{u}-second")
    err_out = io.StringIO()
    assert app.export_(opts, io.StringIO(), stack=f"{u}-second", err=err_out) == 0
    assert f"model group {ids['group']} ({names['group']!r}) left out with its models: stack {u!r}" in err_out.getvalue()

    assert ml_objects(os_client, names) == before                  # nothing on the node changed (seq_no too)
    store = ClusterStateStore(Cluster.connect(opts))
    assert not store.load(f"{u}-second").resources
    assert not replan([first], opts).plan.has_changes             # the first stack still has it all

    # the explicit move: the first stack lets go of the group, the second imports it
    assert app.state("rm", [group], opts, io.StringIO(), stack=u) == 0
    assert app.import_(group, ids["group"], opts, io.StringIO(), stack=f"{u}-second") == 0
    with pytest.raises(PlanError) as err:                         # the first stack no longer owns the group
        app.plan([str(first)], opts, io.StringIO())
    assert f"{group}: the model group named {names['group']!r} on the cluster (id {ids['group']}) is managed by " \
           f"stack '{u}-second'" in str(err.value)
    for address, object_id in ((conn, ids["connector"]), (model, ids["model"])):
        assert app.state("rm", [address], opts, io.StringIO(), stack=u) == 0
        assert app.import_(address, object_id, opts, io.StringIO(), stack=f"{u}-second") == 0
    # an imported connector has no credential fingerprint (they are keyed per stack): the receiving stack's
    # next apply pushes the file's credential once (docs/export-import.md); nothing is adopted or created
    moved = replan([second], opts).plan
    assert {str(c.address): [a.value for a in c.actions] for c in moved.pending} == {
        conn: ["update"], model: ["undeploy", "deploy"]}
    assert [f.path for f in moved.pending[0].field_changes] == ["credential"]
    assert ml_objects(os_client, names) == before
    code, out = run_apply([second], opts)
    assert code == 0, out
    assert not replan([second], opts).plan.has_changes
    after = ml_objects(os_client, names)
    assert {k: [i for i, _, _ in v] for k, v in after.items()} == {k: [i] for k, i in ids.items()}
    assert after["model"][0][2] == "DEPLOYED"
    code, out = run_apply([first], opts, destroy=True)          # the first stack has nothing left to delete
    assert code == 0 and "No changes" in out, out
    assert ml_objects(os_client, names) == after
    code, out = run_apply([second], opts, destroy=True)
    assert code == 0, out
    assert ml_objects(os_client, names) == {"connector": [], "group": [], "model": []}
    os_client.delete(index="mlsync-state", id=u, refresh=True, ignore=[404])
    os_client.delete(index="mlsync-state", id=f"{u}-second", refresh=True, ignore=[404])


def test_state_mv_moves_a_deployed_stack_without_touching_the_node(tmp_path, opts, os_client, unique_name,
                                                                    artifact_server):
    """`state mv` instead of `state rm` + `import`: the receiving stack's fingerprints are verified with
    the giving stack's salt and re-keyed, so nothing is re-sent: no credential push, no redeploy."""
    u = unique_name("mv")
    first, second, names, addresses = quickstart_twice(tmp_path, u, artifact_server)
    try:
        code, out = run_apply([first], opts)
        assert code == 0, out
        before = ml_objects(os_client, names)
        assert app.state("mv", list(addresses), opts, io.StringIO(), stack=u, to_stack=f"{u}-second") == 0
        assert not replan([second], opts).plan.has_changes          # no credential push, no redeploy
        with pytest.raises(PlanError, match=f"is managed by stack '{u}-second'"):
            app.plan([str(first)], opts, io.StringIO())
        code, out = run_apply([second], opts)                        # saves the re-keyed fingerprints
        assert code == 0 and "No changes" in out, out
        assert ml_objects(os_client, names) == before                # seq_no unchanged: nothing was sent
        store = ClusterStateStore(Cluster.connect(opts))
        assert all(rs.fingerprint_salt is None for rs in store.load(f"{u}-second").resources.values())
        code, out = run_apply([second], opts, destroy=True)
        assert code == 0, out
        assert ml_objects(os_client, names) == {"connector": [], "group": [], "model": []}
    finally:
        for stack in (u, f"{u}-second"):
            run_apply([first if stack == u else second], opts, destroy=True)
            os_client.delete(index="mlsync-state", id=stack, refresh=True, ignore=[404])
