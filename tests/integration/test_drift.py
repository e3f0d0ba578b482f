"""`mlsync drift` against the real node: every drift type is made out of band through the raw API,
reported with its address and exit 2, and (where the tool can) corrected by `mlsync apply`."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest

from helpers import wait_for_model_state
from mlsync import commands as app
from stack_helpers import destroy, remote_stack, replan, run_apply, stack_file

pytestmark = pytest.mark.cluster

AUTO_DEPLOY = "plugins.ml_commons.model_auto_deploy.enable"


def drift(files, opts, output: str = "json") -> tuple[int, str]:
    out = io.StringIO()
    code = app.drift([str(f) for f in files], opts, out, output=output)
    return code, out.getvalue()


def drift_doc(files, opts) -> tuple[int, dict]:
    code, text = drift(files, opts)
    return code, json.loads(text)


def items(doc: dict, kind: str) -> list[dict]:
    return [i for i in doc["drift"] + doc["pending"] if i["kind"] == kind]


def assert_clean(files, opts) -> None:
    code, doc = drift_doc(files, opts)
    assert code == 0 and doc["clean"] and not doc["drift"] and not doc["pending"], doc


def assert_plan_shows_drift(files, opts, address: str) -> None:
    """`mlsync plan` lists the same drift in its "Changed outside mlsync" section."""
    out = io.StringIO()
    app.plan([str(f) for f in files], opts, out)
    section = out.getvalue().split("Changed outside mlsync", 1)
    assert len(section) == 2 and f"! {address}:" in section[1], out.getvalue()


def apply_corrects(files, opts) -> None:
    """plan -> apply -> drift exit 0."""
    assert replan(files, opts).plan.has_changes
    code, text = run_apply(files, opts)
    assert code == 0, text
    assert_clean(files, opts)


@pytest.fixture
def stack(tmp_path, opts, artifact_server, unique_name):
    """make(**remote_stack options) -> (file, {kind: server id}, unique): applied and checked clean."""
    def make(**kw):
        u = unique_name("dr")
        f = stack_file(tmp_path, u, remote_stack(u, u, artifact_server.base_url, **kw))
        code, text = run_apply([f], opts)
        assert code == 0, text
        assert_clean([f], opts)
        ids = {c.address.kind: c.server_id for c in replan([f], opts).plan.changes}
        return f, ids, u
    return make


def address(u: str, kind: str) -> str:
    return {"connector": f'connector["{u}-conn"]', "model_group": f'model_group["{u}-group"]',
            "model": f'model["{u}-group"]["{u}-remote"]'}[kind]


def test_edited_out_of_band_is_drift_field_by_field_and_a_file_edit_is_pending(stack, opts, os_client,
                                                                              artifact_server):
    f, ids, u = stack(deploy=False)   # no deployed model: the server refuses connector updates under one
    os_client.plugins.ml.update_connector(connector_id=ids["connector"],
                                          body={"description": "edited by hand", "parameters": {"model": "other"}})
    code, doc = drift_doc([f], opts)
    assert code == 2 and not doc["pending"]
    [item] = doc["drift"]
    assert_plan_shows_drift([f], opts, item["address"])
    assert (item["kind"], item["address"], item["server_id"]) == ("edited", address(u, "connector"), ids["connector"])
    assert item["before_is"] == "last_applied" and item["apply_actions"] == ["update"]
    assert {(x["path"], x["before"], x["now"]) for x in item["fields"]} == {
        ("description", "v1", "edited by hand"), ("parameters.model", "m", "other")}
    code, text = drift([f], opts, "text")
    assert code == 2 and address(u, "connector") in text and '"v1" → "edited by hand"' in text
    code, text = drift([f], opts, "markdown")
    assert code == 2 and address(u, "connector") in text and "edited by hand" in text
    apply_corrects([f], opts)

    # the file moves on and nobody applies it: pending, not drift; still exit 2 (through the CLI once)
    f.write_text(remote_stack(u, u, artifact_server.base_url, description="v2", deploy=False))
    env = dict(os.environ, OPENSEARCH_URL=opts.url, NO_COLOR="1")
    proc = subprocess.run([sys.executable, "-m", "mlsync.cli", "drift", "-f", str(f), "--output", "json"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2, proc.stderr
    doc = json.loads(proc.stdout)
    assert not doc["drift"]
    [item] = doc["pending"]
    assert (item["kind"], item["address"]) == ("file_edited", address(u, "connector"))
    assert [(x["path"], x["before"], x["now"]) for x in item["fields"]] == [("description", "v1", "v2")]
    apply_corrects([f], opts)
    destroy([f], opts)


def test_deleted_out_of_band_is_drift_and_apply_registers_it_again(stack, opts, os_client):
    f, ids, u = stack(deploy=False)
    os_client.plugins.ml.delete_model(model_id=ids["model"])
    code, doc = drift_doc([f], opts)
    assert code == 2
    [item] = doc["drift"]
    assert_plan_shows_drift([f], opts, item["address"])
    assert (item["kind"], item["address"], item["server_id"]) == ("deleted", address(u, "model"), ids["model"])
    assert item["apply_actions"] == ["register"]
    apply_corrects([f], opts)
    assert {c.address.kind: c.server_id for c in replan([f], opts).plan.changes}["model"] != ids["model"]
    destroy([f], opts)


def test_undeployed_out_of_band_is_drift(stack, opts, os_client):
    f, ids, u = stack(deploy=True)
    os_client.plugins.ml.undeploy_model(model_id=ids["model"])
    code, doc = drift_doc([f], opts)
    assert code == 2
    [item] = doc["drift"]
    assert_plan_shows_drift([f], opts, item["address"])
    assert (item["kind"], item["address"], item["apply_actions"]) == ("undeployed", address(u, "model"), ["deploy"])
    assert item["details"]["model_state"] == "UNDEPLOYED"
    apply_corrects([f], opts)
    destroy([f], opts)


def test_deploy_failed_is_drift(stack, opts, os_client, sync_up_paused):
    f, ids, u = stack(deploy=True)
    os_client.update(index=".plugins-ml-model", id=ids["model"], body={"doc": {"model_state": "DEPLOY_FAILED"}},
                     refresh=True)
    code, doc = drift_doc([f], opts)
    assert code == 2
    [item] = doc["drift"]
    assert_plan_shows_drift([f], opts, item["address"])
    assert (item["kind"], item["address"], item["apply_actions"]) == ("deploy_failed", address(u, "model"), ["deploy"])
    apply_corrects([f], opts)   # deploying again writes DEPLOYED even with the sync-up job paused
    destroy([f], opts)


def _auto_deploy_by_predict(os_client, model_id: str) -> bool:
    """Deploy the model the way a client's Predict call does when auto-deploy is on. This node turns
    auto-deploy off; it is turned on (transiently, for the one call) and restored at once. Returns
    False when that is not possible here, and the caller deploys through the API instead."""
    settings = os_client.cluster.get_settings(flat_settings=True, include_defaults=True)
    was_on = any(str(settings[s].get(AUTO_DEPLOY, "")).lower() == "true" for s in ("transient", "persistent"))
    try:
        if not was_on:
            os_client.cluster.put_settings(body={"transient": {AUTO_DEPLOY: True}})
        os_client.transport.perform_request("POST", f"/_plugins/_ml/models/{model_id}/_predict",
                                            body={"parameters": {"input": ["hello"]}})
    except Exception as err:  # noqa: BLE001 - refused here: fall back to a deploy call
        print(f"auto-deploy through Predict not possible on this node ({err}); deploying through the API")
        return False
    finally:
        if not was_on:
            os_client.cluster.put_settings(body={"transient": {AUTO_DEPLOY: None}})
    return True


def _wait_for_no_running_task(os_client, model_id: str, timeout: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        os_client.indices.refresh(index=".plugins-ml-task", ignore_unavailable=True)
        hits = os_client.plugins.ml.search_tasks(body={"size": 10, "query": {"bool": {"filter": [
            {"term": {"model_id": model_id}}, {"terms": {"state": ["CREATED", "RUNNING"]}}]}}})["hits"]["hits"]
        if not hits:
            return
        time.sleep(0.2)
    raise AssertionError(f"model {model_id} still has a running task after {timeout:.0f}s")


@pytest.mark.parametrize("how", ["deploy call", "predict with auto-deploy"])
def test_deployed_although_the_file_says_deploy_false_is_drift(how, stack, opts, os_client):
    f, ids, u = stack(deploy=False)
    if how == "deploy call" or not _auto_deploy_by_predict(os_client, ids["model"]):
        os_client.plugins.ml.deploy_model(model_id=ids["model"])
    # the auto-deploy Predict triggers is asynchronous: the document follows within moments
    wait_for_model_state(os_client, ids["model"], "DEPLOYED", timeout=20)
    # ... and its deploy task may end after the document says DEPLOYED: an undeploy before that end
    # is overwritten by the task (DEPLOY_FAILED). Drift is about a settled cluster: wait for it.
    _wait_for_no_running_task(os_client, ids["model"])
    code, doc = drift_doc([f], opts)
    assert code == 2
    [item] = doc["drift"]
    assert_plan_shows_drift([f], opts, item["address"])
    assert (item["kind"], item["address"], item["apply_actions"]) == ("deployed", address(u, "model"), ["undeploy"])
    apply_corrects([f], opts)
    assert os_client.plugins.ml.get_model(model_id=ids["model"])["model_state"] == "UNDEPLOYED"
    destroy([f], opts)


def test_unmanaged_version_in_a_managed_group_is_drift_that_apply_leaves_alone(stack, opts, os_client, janitor):
    f, ids, u = stack(deploy=False)
    extra = os_client.plugins.ml.register_model(body={
        "name": f"{u}-by-hand", "function_name": "remote", "model_group_id": ids["model_group"],
        "connector_id": ids["connector"]})["model_id"]
    janitor.model(extra)
    code, doc = drift_doc([f], opts)
    assert code == 2
    [item] = doc["drift"]
    assert_plan_shows_drift([f], opts, item["address"])
    assert (item["kind"], item["address"], item["server_id"]) == ("unmanaged_version", address(u, "model_group"), extra)
    assert item["server_version"] == "2" and not item["fixed_by_apply"] and item["apply_actions"] == []
    planned = replan([f], opts)
    assert not planned.plan.has_changes   # apply never touches what the stack does not manage ...
    group = next(c for c in planned.plan.changes if c.address.kind == "model_group")
    assert group.drift and extra in group.reason   # ... but the plan's "changed outside mlsync" names it
    os_client.plugins.ml.delete_model(model_id=extra)
    assert_clean([f], opts)
    destroy([f], opts)


def test_rotated_credential_is_drift_and_never_printed(stack, opts, monkeypatch):
    var = "MLSYNC_DRIFT_TEST_KEY"
    monkeypatch.setenv(var, "first-secret-value")
    f, ids, u = stack(deploy=True, credential="${env:" + var + "}")
    monkeypatch.setenv(var, "rotated-secret-value")
    code, doc = drift_doc([f], opts)
    assert code == 2
    [item] = doc["drift"]
    assert_plan_shows_drift([f], opts, item["address"])
    assert (item["kind"], item["address"]) == ("credential", address(u, "connector"))
    assert item["fields"] == [{"path": "credential", "before": "(sensitive)", "now": "(sensitive)", "sensitive": True}]
    for fmt in ("text", "json", "markdown"):
        code, text = drift([f], opts, fmt)
        assert code == 2 and "secret-value" not in text
    apply_corrects([f], opts)   # undeploy, update the connector with the new key, redeploy
    destroy([f], opts)
