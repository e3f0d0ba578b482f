"""An apply that lands between a plan's two reads (the state, then the cluster) on the real node
(issue 12: `plan` now reads the cluster in a thread while it flattens the files; the order of the
reads must not change).

The race is run at the worst moment: right after the plan's first read returns and before its second
starts, another apply of the same file creates the connector, the group and the model and records
them in the stack's state. Read in mlsync's order (state, then cluster), the plan sees the objects on
the cluster but not in its older state: it creates nothing, and its saved plan, made at the old
serial, is refused as stale; nothing exists twice. Read the other way round, the plan would see the
new state but not the objects and plan to create all three again (checked by swapping the two reads
in `commands/common.plan_files`: this test then fails on the planned actions; the saved plan's apply
is still refused, by the re-plan it makes).
"""

from __future__ import annotations

import io
import json

import pytest

from mlsync import commands as app
from mlsync.core.errors import StalePlan
from mlsync.edge.cluster import Cluster
from mlsync.edge.statestore import ClusterStateStore
from stack_helpers import destroy, remote_stack, run_apply, stack_file

pytestmark = pytest.mark.cluster


def _count(os_client, index: str, name: str) -> int:
    os_client.indices.refresh(index=index)
    return os_client.count(index=index, body={"query": {"term": {"name.keyword": name}}})["count"]


def test_an_apply_between_the_plans_two_reads_creates_nothing_twice(tmp_path, opts, artifact_server, unique_name,
                                                                     os_client, monkeypatch):
    u = unique_name("race")
    f = stack_file(tmp_path, "s", remote_stack(u, u, artifact_server.base_url, deploy=False))
    reads: list[str] = []
    raced: list[int] = []

    def race_after_first_read(kind: str, real):
        def read(*args, **kwargs):
            if raced:                  # the racing apply's own reads, and the plan's second read
                reads.append(kind)
                return real(*args, **kwargs)
            reads.append(kind)
            got = real(*args, **kwargs)
            if len(reads) == 1:        # the plan's first read has returned: the other apply lands now
                raced.append(1)
                code, text = run_apply([f], opts)
                assert code == 0, text
            return got
        return read

    monkeypatch.setattr(ClusterStateStore, "load", race_after_first_read("state", ClusterStateStore.load))
    monkeypatch.setattr(Cluster, "observe", race_after_first_read("cluster", Cluster.observe))
    plan_file = tmp_path / "raced.plan"
    try:
        printed = io.StringIO()
        assert app.plan([str(f)], opts, printed, output="json", plan_file=str(plan_file)) == 0
        monkeypatch.undo()
        assert reads[0] == "state" and raced, reads
        actions = {c["address"]: c["actions"] for c in json.loads(printed.getvalue())["resource_changes"]}
        assert not any({"create", "register"} & set(a) for a in actions.values()), actions   # all exist
        out = io.StringIO()
        with pytest.raises(StalePlan):
            app.apply([], opts, out, plan_file=str(plan_file))
        assert _count(os_client, ".plugins-ml-connector", f"{u}-conn") == 1
        assert _count(os_client, ".plugins-ml-model-group", f"{u}-group") == 1
        assert _count(os_client, ".plugins-ml-model", f"{u}-remote") == 1
    finally:
        monkeypatch.undo()
        destroy([f], opts)
