"""plan -> apply -> plan against the real node: convergence, version bumps, deploy flips, deletes,
connector changes under deployed models, stale plans, the lock, and a SIGKILL mid-apply."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from opensearchpy.exceptions import TransportError

from mlsync import commands as app

from mlsync.commands import common as workflow
from mlsync.edge.cluster import STATE_INDEX, Cluster
from mlsync.core.errors import LockHeld, PlanError, StalePlan
from mlsync.edge.statestore import ClusterStateStore
from stack_helpers import destroy, skip_without_pipeline_modules, url_model_stack, remote_stack as _remote_stack, replan, run_apply, stack_file as _stack_file

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


@pytest.fixture
def served_examples(tmp_path, artifact_server) -> Path:
    """A copy of examples/ whose loopback URLs point at the test's artifact server."""
    dest = tmp_path / "examples"
    shutil.copytree(EXAMPLES, dest)
    for zip_path in (EXAMPLES / "models").glob("*.zip"):
        artifact_server.add_file(zip_path.name, zip_path.read_bytes())
    for y in dest.rglob("*.yaml"):
        y.write_text(y.read_text().replace("http://127.0.0.1:8089", artifact_server.base_url))
    return dest


@pytest.mark.parametrize("files", [
    ["quickstart.yaml"], ["url-model.yaml"], ["local-model.yaml"], ["overlay/base.yaml", "overlay/prod.yaml"],
    ["semantic-search.yaml"],
])
def test_every_example_applies_then_plans_empty(files, served_examples, opts, monkeypatch, os_client, tmp_path,
                                                capfd):
    if "semantic-search.yaml" in files:
        skip_without_pipeline_modules(os_client)
    secret = "sk-EXAMPLE-7c1e9b-never-printed"
    monkeypatch.setenv("EMBEDDINGS_API_KEY", secret)
    paths = [served_examples / f for f in files]
    plan_file = tmp_path / "saved.plan"
    assert app.plan([str(p) for p in paths], opts, io.StringIO(), plan_file=str(plan_file)) in (0, 2)
    code, text = run_apply(paths, opts)
    assert code == 0, text
    # The credential reaches the cluster, and nothing else: not the output, the saved plan or the state.
    stack = workflow.load_desired([str(p) for p in paths]).stack
    state_doc = os_client.get(index=STATE_INDEX, id=stack)
    drift_json = io.StringIO()
    app.drift([str(p) for p in paths], opts, drift_json, output="json")
    captured = capfd.readouterr()
    for where, blob in (("apply output", text), ("saved plan", plan_file.read_text()),
                        ("state document", json.dumps(state_doc)), ("drift json", drift_json.getvalue()),
                        ("stdout/stderr", captured.out + captured.err)):
        assert secret not in blob, f"the credential leaked into the {where}"
    planned = replan(paths, opts)
    assert not planned.plan.has_changes, [(str(c.address), c.actions, c.reason) for c in planned.plan.pending]
    # every managed object exists with the id the state recorded
    ids = {c.server_id for c in planned.plan.changes}
    assert None not in ids and len(ids) == len(planned.plan.changes)
    protected = [p for p in paths if "prevent_destroy: true" in p.read_text()]
    if protected:  # the example guards its group: destroy must refuse until the guard is lifted
        with pytest.raises(PlanError, match="prevent_destroy"):
            run_apply(paths, opts, destroy=True)
        for p in protected:
            p.write_text(p.read_text().replace("prevent_destroy: true", "prevent_destroy: false"))
    code, text = run_apply(paths, opts, destroy=True)
    assert code == 0, text
    gone = replan(paths, opts)
    assert all(c.server_id is None for c in gone.plan.changes), "destroy left objects behind"


def test_connector_change_under_a_loaded_model_whose_document_says_deploy_failed(
        tmp_path, opts, artifact_server, unique_name, os_client, sync_up_paused):
    # Seen in CI after a node restart: auto-redeploy had the model in memory while its document read
    # DEPLOY_FAILED, and the server refused the connector update ("models are still using this connector").
    u = unique_name("it")
    f = _stack_file(tmp_path, "s", _remote_stack(u, u, artifact_server.base_url))
    assert run_apply([f], opts)[0] == 0
    model_id = next(c for c in replan([f], opts).plan.changes if c.address.kind == "model").server_id
    os_client.update(index=".plugins-ml-model", id=model_id, body={"doc": {"model_state": "DEPLOY_FAILED"}},
                     refresh=True)
    f.write_text(_remote_stack(u, u, artifact_server.base_url, description="v2"))
    planned = replan([f], opts)
    model_change = next(c for c in planned.plan.pending if c.address.kind == "model")
    assert [a.value for a in model_change.actions] == ["undeploy", "deploy"], model_change.reason
    code, text = run_apply([f], opts)
    assert code == 0, text
    after = replan([f], opts)
    assert not after.plan.has_changes, [(str(c.address), c.actions, c.reason) for c in after.plan.pending]
    destroy([f], opts)


def test_connector_change_while_deployed_goes_undeploy_update_redeploy(tmp_path, opts, artifact_server, unique_name,
                                                                      os_client):
    u = unique_name("it")
    f = _stack_file(tmp_path, "s", _remote_stack(u, u, artifact_server.base_url))
    assert run_apply([f], opts)[0] == 0
    f.write_text(_remote_stack(u, u, artifact_server.base_url, description="v2"))
    planned = replan([f], opts)
    model_change = next(c for c in planned.plan.pending if c.address.kind == "model")
    assert [a.value for a in model_change.actions] == ["undeploy", "deploy"]
    code, text = run_apply([f], opts)
    assert code == 0, text
    assert text.index("undeploy") < text.rindex("deploy")
    after = replan([f], opts)
    assert not after.plan.has_changes
    model = next(c for c in after.plan.changes if c.address.kind == "model")
    state = os_client.plugins.ml.get_model(model_id=model.server_id)["model_state"]
    assert state in ("DEPLOYED", "DEPLOYING")
    destroy([f], opts)


def test_versions_added_removed_and_deploy_flipped(tmp_path, opts, artifact_server, unique_name, make_model_zip):
    u = unique_name("it")
    z1, z2 = make_model_zip(seed=u + "1"), make_model_zip(seed=u + "2")

    def body(versions):
        return url_model_stack(u, [(label, z.url, z.sha256) for label, z in versions], description="tiny")

    f = _stack_file(tmp_path, "v", body([("1.0", z1)]))
    assert run_apply([f], opts)[0] == 0
    first = replan([f], opts).plan.changes
    v1 = next(c for c in first if c.address.version == "1.0")
    f.write_text(body([("1.0", z1), ("2.0", z2)]))
    code, text = run_apply([f], opts)
    assert code == 0, text
    now = {c.address.version: c for c in replan([f], opts).plan.changes if c.address.kind == "model"}
    assert now["1.0"].server_id == v1.server_id                      # the old version is kept
    assert int(now["2.0"].server_version) == int(v1.server_version) + 1   # the server numbers the next one
    f.write_text(body([("2.0", z2)]))
    code, text = run_apply([f], opts)
    assert code == 0, text
    left = replan([f], opts)
    assert not left.plan.has_changes and {c.address.version for c in left.plan.changes if c.address.kind == "model"} == {"2.0"}
    destroy([f], opts)


def test_remote_deploy_flag_flips_both_ways(tmp_path, opts, artifact_server, unique_name, os_client):
    u = unique_name("it")
    f = _stack_file(tmp_path, "d", _remote_stack(u, u, artifact_server.base_url, deploy=False))
    assert run_apply([f], opts)[0] == 0
    model_id = next(c for c in replan([f], opts).plan.changes if c.address.kind == "model").server_id
    assert os_client.plugins.ml.get_model(model_id=model_id)["model_state"] == "REGISTERED"
    f.write_text(_remote_stack(u, u, artifact_server.base_url, deploy=True))
    assert run_apply([f], opts)[0] == 0
    assert os_client.plugins.ml.get_model(model_id=model_id)["model_state"] in ("DEPLOYED", "DEPLOYING")
    f.write_text(_remote_stack(u, u, artifact_server.base_url, deploy=False))
    assert run_apply([f], opts)[0] == 0
    state = os_client.plugins.ml.get_model(model_id=model_id)["model_state"]
    # UNDEPLOYED; once (CI, 2026-12-02) the doc read DEPLOY_FAILED after the undeploy, not diagnosed: the
    # deploy's own failure landing late on a just-started node is the likely cause. Either way: not serving.
    assert state in ("UNDEPLOYED", "DEPLOY_FAILED"), (state, _tasks_of(os_client, model_id))
    with pytest.raises(TransportError) as err:
        os_client.transport.perform_request("POST", f"/_plugins/_ml/models/{model_id}/_predict",
                                            body={"parameters": {"input": ["x"]}})
    assert err.value.status_code == 400 and "not ready" in str(err.value)
    assert not replan([f], opts).plan.has_changes
    destroy([f], opts)


def _tasks_of(os_client, model_id: str) -> list:
    hits = os_client.transport.perform_request("POST", "/_plugins/_ml/tasks/_search", body={
        "query": {"term": {"model_id": model_id}}, "size": 20})["hits"]["hits"]
    return [(h["_source"].get("task_type"), h["_source"].get("state"), h["_source"].get("error")) for h in hits]


def _saved_plan_of_a_description_change(tmp_path, opts, base_url, u) -> tuple[Path, Path]:
    """Apply a small stack, edit its connector's description, save `mlsync plan -o`; returns (file, plan)."""
    f = _stack_file(tmp_path, "p", _remote_stack(u, u, base_url, deploy=False))
    assert run_apply([f], opts)[0] == 0
    f.write_text(_remote_stack(u, u, base_url, description="v2", deploy=False))
    plan_file = tmp_path / "p.plan"
    assert app.plan([str(f)], opts, io.StringIO(), plan_file=str(plan_file)) == 0
    return f, plan_file


def test_out_of_band_change_makes_a_saved_plan_stale(tmp_path, opts, artifact_server, unique_name, os_client):
    u = unique_name("it")
    f, plan_file = _saved_plan_of_a_description_change(tmp_path, opts, artifact_server.base_url, u)
    conn_id = next(c for c in replan([f], opts).plan.changes if c.address.kind == "connector").server_id
    os_client.plugins.ml.update_connector(connector_id=conn_id, body={"description": "edited by hand"})
    with pytest.raises(StalePlan, match="stale"):
        app.apply([], opts, io.StringIO(), plan_file=str(plan_file))
    destroy([f], opts)


def test_saved_plan_is_stale_once_the_state_moved(tmp_path, opts, artifact_server, unique_name):
    # Terraform's rule: a saved plan applies only to the state serial it was made from. Here the state
    # goes through `state rm` + `import` (same objects, same plan, newer serial) between plan and apply.
    u = unique_name("it")
    f, plan_file = _saved_plan_of_a_description_change(tmp_path, opts, artifact_server.base_url, u)
    group = next(c for c in replan([f], opts).plan.changes if c.address.kind == "model_group")
    assert app.state("rm", [str(group.address)], opts, io.StringIO(), stack=u) == 0
    assert app.import_(str(group.address), group.server_id, opts, io.StringIO(), stack=u) == 0
    with pytest.raises(StalePlan, match="serial"):
        app.apply([], opts, io.StringIO(), plan_file=str(plan_file))
    code, text = run_apply([f], opts)     # a fresh plan applies
    assert code == 0, text
    destroy([f], opts)


def test_second_apply_on_a_locked_stack_is_refused(tmp_path, opts, artifact_server, unique_name):
    u = unique_name("it")
    f = _stack_file(tmp_path, "l", _remote_stack(u, u, artifact_server.base_url, deploy=False))
    store = ClusterStateStore(Cluster.connect(opts))
    store.lock(u, "someone-else", 300)
    with pytest.raises(LockHeld, match="someone-else"):
        run_apply([f], opts)
    out = io.StringIO()
    assert app.unlock(opts, out, stack=u, force=True) == 0
    assert run_apply([f], opts)[0] == 0
    destroy([f], opts)


def test_sigkill_between_register_and_wait_then_rerun_has_no_duplicate(tmp_path, opts, artifact_server, unique_name,
                                                                       os_client):
    """A URL registration whose download is slow: kill the apply while it waits on the task, re-run."""
    u = unique_name("it")
    big = artifact_server.make_model_zip(seed=u, payload_size=30_000_000)   # ~30 MB keeps the task busy a while
    f = _stack_file(tmp_path, "k", url_model_stack(u, [("1", big.url, big.sha256)]))

    env = dict(os.environ, OPENSEARCH_URL=opts.url, CI="1")
    proc = subprocess.Popen([sys.executable, "-m", "mlsync.cli", "apply", "-f", str(f), "--auto-approve"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    # Wait until the register call went out (its task id is journalled), then kill -9.
    cluster = Cluster.connect(opts)
    deadline = time.time() + 60
    journalled = False
    while time.time() < deadline and proc.poll() is None:
        doc = cluster.read_state(u)
        if doc and any(j.get("task_id") for j in doc.body.get("journal", [])):
            journalled = True
            break
        time.sleep(0.05)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    output = proc.communicate()[0]
    assert journalled, "the apply finished or failed before its register call was journalled:\n" + output
    # The killed apply's lease has not expired, but its process is gone from this machine: the re-run
    # takes the lease over (no `unlock --force` needed) and resumes from the journal.
    code, text = run_apply([f], opts)
    assert code == 0, text
    assert "took over the dead lock" in text, text
    group_id = next(c for c in replan([f], opts).plan.changes if c.address.kind == "model_group").server_id
    hits = os_client.plugins.ml.search_models(body={"query": {"bool": {
        "filter": [{"term": {"model_group_id": group_id}}],
        "must_not": [{"exists": {"field": "chunk_number"}}]}}, "size": 50})["hits"]["hits"]
    assert len(hits) == 1, f"expected one registered version, found {len(hits)}"
    assert not replan([f], opts).plan.has_changes
    destroy([f], opts)
