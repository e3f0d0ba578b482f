"""Remote models: synchronous registration, deploy / predict (against the loopback stub) / undeploy,
and the guards between models and connectors (409 delete in use, 400 update while deployed)."""

from __future__ import annotations

import threading
import time

import pytest
from opensearchpy.exceptions import NotFoundError, RequestError, TransportError

from helpers import error_info, stub_connector_body, text_embedding_config, wait_for_model_state, wait_for_task, wait_until


@pytest.fixture
def stub_path(unique_name):
    return f"/v1/{unique_name('ct-remote')}/embeddings"


@pytest.fixture
def connector_id(os_client, janitor, unique_name, artifact_server, stub_path):
    body = stub_connector_body(unique_name("ct-remote-conn"), artifact_server.url(stub_path))
    return janitor.connector(os_client.plugins.ml.create_connector(body=body)["connector_id"])


@pytest.fixture
def group_id(os_client, janitor, unique_name):
    return janitor.group(os_client.plugins.ml.register_model_group(body={"name": unique_name("ct-remote")})["model_group_id"])


def _register_remote(os_client, janitor, name, group_id, connector_id, **fields):
    body = {"name": name, "function_name": "remote", "model_group_id": group_id, "connector_id": connector_id, **fields}
    resp = os_client.plugins.ml.register_model(body=body)
    janitor.task(resp["task_id"])
    janitor.model(resp["model_id"])
    return resp


def test_remote_model_register_deploy_predict_undeploy(
    os_client, janitor, unique_name, artifact_server, stub_path, connector_id, group_id
):
    ml = os_client.plugins.ml
    name = unique_name("ct-remote-model")
    resp = _register_remote(os_client, janitor, name, group_id, connector_id, version="abc", description="remote one")
    # Synchronous: the model id comes back at once (status still says CREATED).
    assert set(resp) == {"task_id", "status", "model_id"}
    assert resp["status"] == "CREATED"
    mid = resp["model_id"]

    model = ml.get_model(model_id=mid)
    assert model["model_state"] == "REGISTERED"
    assert model["algorithm"] == "REMOTE"
    assert model["connector_id"] == connector_id
    assert model["model_version"] == "1"
    assert model["description"] == "remote one"
    assert "model_format" not in model and "total_chunks" not in model

    task = wait_for_task(os_client, resp["task_id"], timeout=10)
    assert task["state"] == "COMPLETED"
    assert (task["task_type"], task["function_name"], task["is_async"]) == ("REGISTER_MODEL", "REMOTE", False)
    assert task["model_id"] == mid

    # model_auto_deploy is off on this node: predicting an undeployed model is refused.
    with pytest.raises(RequestError) as exc:
        ml.predict_model(model_id=mid, body={"parameters": {"input": ["hello"]}})
    assert error_info(exc.value) == (400, "illegal_argument_exception", "Model not ready yet. Please deploy the model first.")

    deployed = ml.deploy_model(model_id=mid)
    assert set(deployed) == {"task_id", "task_type", "status"}
    assert (deployed["task_type"], deployed["status"]) == ("DEPLOY_MODEL", "COMPLETED")
    janitor.task(deployed["task_id"])
    # "COMPLETED" in the response does not mean the model doc already says DEPLOYED.
    assert ml.get_model(model_id=mid)["model_state"] in {"DEPLOYING", "DEPLOYED"}
    model = wait_for_model_state(os_client, mid, "DEPLOYED", timeout=10)
    assert model["current_worker_node_count"] == model["planning_worker_node_count"] == 1
    assert isinstance(model["last_deployed_time"], int)
    deploy_task = wait_for_task(os_client, deployed["task_id"], timeout=10)
    assert (deploy_task["state"], deploy_task["task_type"], deploy_task["model_id"]) == ("COMPLETED", "DEPLOY_MODEL", mid)

    # Deploying again is accepted.
    again = ml.deploy_model(model_id=mid)
    janitor.task(again["task_id"])
    assert again["status"] == "COMPLETED"

    result = ml.predict_model(model_id=mid, body={"parameters": {"input": ["hello", "world"]}})
    output = result["inference_results"][0]
    assert output["status_code"] == 200
    data = output["output"][0]["dataAsMap"]["data"]
    assert [d["embedding"] for d in data] == [[0.1, 0.2, 0.3, 0.4], [0.2, 0.4, 0.6, 0.8]]
    assert data[0]["index"] == 0.0  # numbers come back as floats
    calls = artifact_server.requests_for(stub_path, "POST")
    assert len(calls) == 1
    # The credential was decrypted and substituted; parameters filled the request body template.
    assert calls[0].headers["Authorization"] == "Bearer not-a-real-key"
    assert calls[0].json() == {"input": ["hello", "world"], "model": "stub-embedder"}

    undeployed = ml.undeploy_model(model_id=mid)
    assert len(undeployed) == 1
    (node_report,) = undeployed.values()
    assert node_report == {"stats": {mid: "undeployed"}}  # lower-case status strings
    model = wait_for_model_state(os_client, mid, "UNDEPLOYED", timeout=10)
    assert model["current_worker_node_count"] == 0

    (node_report,) = ml.undeploy_model(model_id=mid).values()
    assert node_report == {"stats": {mid: "not_found"}}


def test_connector_guards_409_delete_in_use_400_update_while_deployed(
    os_client, janitor, unique_name, connector_id, group_id
):
    ml = os_client.plugins.ml
    mid = _register_remote(os_client, janitor, unique_name("ct-remote-model"), group_id, connector_id)["model_id"]

    with pytest.raises(TransportError) as exc:  # any model (deployed or not) referencing it
        ml.delete_connector(connector_id=connector_id)
    assert error_info(exc.value) == (
        409, "status_exception",
        f"1 models are still using this connector, please delete or update the models first: [{mid}]",
    )

    # Not deployed: the connector can be updated.
    assert ml.update_connector(connector_id=connector_id, body={"description": "while registered"})["result"] == "updated"

    janitor.task(ml.deploy_model(model_id=mid)["task_id"])
    wait_for_model_state(os_client, mid, "DEPLOYED", timeout=10)
    with pytest.raises(TransportError) as exc:
        ml.update_connector(connector_id=connector_id, body={"description": "while deployed"})
    assert error_info(exc.value) == (
        400, "status_exception",
        f"1 models are still using this connector, please undeploy the models first: [{mid}]",
    )
    with pytest.raises(TransportError) as exc:
        ml.delete_model(model_id=mid)
    assert error_info(exc.value) == (
        400, "status_exception", "Model cannot be deleted in deploying or deployed state. Try undeploy model first then delete"
    )

    ml.undeploy_model(model_id=mid)
    wait_for_model_state(os_client, mid, "UNDEPLOYED", timeout=10)
    assert ml.update_connector(connector_id=connector_id, body={"description": "after undeploy"})["result"] == "updated"
    assert ml.delete_model(model_id=mid)["result"] == "deleted"
    assert ml.delete_connector(connector_id=connector_id)["result"] == "deleted"


def test_undeploying_a_never_deployed_model_marks_it_undeployed(os_client, janitor, unique_name, connector_id, group_id):
    ml = os_client.plugins.ml
    mid = _register_remote(os_client, janitor, unique_name("ct-remote-model"), group_id, connector_id)["model_id"]
    (node_report,) = ml.undeploy_model(model_id=mid).values()
    assert node_report == {"stats": {mid: "not_found"}}
    assert ml.get_model(model_id=mid)["model_state"] == "UNDEPLOYED"

    ml.delete_model(model_id=mid)
    for call in (ml.undeploy_model, ml.deploy_model):
        with pytest.raises(NotFoundError) as exc:
            call(model_id=mid)
        assert error_info(exc.value) == (404, "status_exception", "Failed to find model")


def test_register_with_deploy_true_deploys_but_returns_no_deploy_task(
    os_client, janitor, unique_name, connector_id, group_id
):
    ml = os_client.plugins.ml
    body = {"name": unique_name("ct-remote-model"), "function_name": "remote", "model_group_id": group_id,
            "connector_id": connector_id}
    resp = ml.register_model(body=body, params={"deploy": "true"})
    janitor.task(resp["task_id"])
    mid = janitor.model(resp["model_id"])
    assert set(resp) == {"task_id", "status", "model_id"}
    wait_for_model_state(os_client, mid, "DEPLOYED", timeout=15)
    # The deploy task exists but its id was never returned; find it by model id.
    deploy_tasks = wait_until(
        lambda: ml.search_tasks(body={"query": {"bool": {"filter": [
            {"term": {"model_id": mid}}, {"term": {"task_type": "DEPLOY_MODEL"}}]}}})["hits"]["hits"],
        timeout=10, message="the hidden deploy task to be searchable",
    )
    assert len(deploy_tasks) == 1 and deploy_tasks[0]["_id"] != resp["task_id"]
    janitor.task(deploy_tasks[0]["_id"])


def test_inline_connector_is_stored_in_the_model_without_credential(
    os_client, janitor, unique_name, artifact_server, stub_path, group_id
):
    ml = os_client.plugins.ml
    inline = stub_connector_body("inline", artifact_server.url(stub_path))
    resp = ml.register_model(body={"name": unique_name("ct-remote-model"), "function_name": "REMOTE",
                                   "model_group_id": group_id, "connector": inline})
    janitor.task(resp["task_id"])
    mid = janitor.model(resp["model_id"])
    model = ml.get_model(model_id=mid)
    assert "connector_id" not in model
    assert "credential" not in model["connector"]
    assert model["connector"]["actions"][0]["action_type"] == "PREDICT"
    assert model["connector"]["parameters"] == {"model": "stub-embedder"}
    hit = ml.search_models(body={"query": {"ids": {"values": [mid]}}})["hits"]["hits"][0]
    assert "credential" not in hit["_source"]["connector"]


def test_models_by_connector_id_need_the_keyword_subfield(os_client, janitor, unique_name, connector_id, group_id):
    """`connector_id` is a text field in the model index: a term query on it misses mixed-case ids."""
    ml = os_client.plugins.ml
    mid = _register_remote(os_client, janitor, unique_name("ct-remote-model"), group_id, connector_id)["model_id"]
    assert connector_id != connector_id.lower()  # ids are mixed case
    by_keyword = ml.search_models(body={"query": {"term": {"connector_id.keyword": connector_id}}})["hits"]["hits"]
    assert [h["_id"] for h in by_keyword] == [mid]
    by_text_term = ml.search_models(body={"query": {"term": {"connector_id": connector_id}}})["hits"]["total"]["value"]
    assert by_text_term == 0


def test_remote_model_config_and_interface_and_missing_function_name(os_client, janitor, unique_name, connector_id, group_id):
    ml = os_client.plugins.ml
    resp = _register_remote(
        os_client, janitor, unique_name("ct-remote-model"), group_id, connector_id,
        model_config=text_embedding_config(4, pooling_mode="mean", normalize_result=False),
        interface={"input": {"type": "object"}, "output": {"type": "object", "properties": {}}},
        is_enabled=False,
        rate_limiter={"limit": 3, "unit": "MINUTES"},
    )
    model = ml.get_model(model_id=resp["model_id"])
    # 2.19 parses a remote model's model_config as a text-embedding config (enums upper-cased).
    assert model["model_config"] == {"model_type": "bert", "embedding_dimension": 4,
                                     "framework_type": "SENTENCE_TRANSFORMERS", "pooling_mode": "MEAN"}
    assert model["interface"] == {"input": '{"type":"object"}', "output": '{"type":"object","properties":{}}'}
    assert model["rate_limiter"] == {"limit": "3", "unit": "MINUTES"}
    assert "is_enabled" not in model  # dropped at registration in 2.x

    with pytest.raises(RequestError) as exc:  # function_name defaults to TEXT_EMBEDDING
        ml.register_model(body={"name": unique_name("ct-remote-model"), "model_group_id": group_id,
                                "connector_id": connector_id})
    assert error_info(exc.value) == (400, "illegal_argument_exception", "model format is null")


LIMIT_EXCEEDED = (500, "m_l_limit_exceeded_exception", "exceed max running task limit")


def _orphan_created_tasks(ml, since_ms, until_ms, expected):
    """Register tasks a limit-exceeded registration left behind: REMOTE, still CREATED, no model id.

    A legitimate remote registration updates its task to COMPLETED (with a model id) within
    milliseconds, so any such task from the burst window that is still CREATED is an orphan.
    """
    query = {"size": 100, "query": {"bool": {
        "filter": [{"term": {"state": "CREATED"}}, {"term": {"function_name": "REMOTE"}},
                   {"term": {"task_type": "REGISTER_MODEL"}},
                   {"range": {"create_time": {"gte": since_ms, "lte": until_ms}}}],
        "must_not": [{"exists": {"field": "model_id"}}]}}}
    if not expected:
        return []
    return wait_until(lambda: (lambda h: h if len(h) >= expected else None)(ml.search_tasks(body=query)["hits"]["hits"]),
                      timeout=10, message=f"{expected} orphaned CREATED register tasks to be searchable")


def _register_in_parallel(os_client, janitor, unique_name, connector_id, group_ids):
    """Fire one remote registration per entry of ``group_ids`` at the same moment.

    Returns (successful responses, error triples). Orphaned tasks of limit-exceeded registrations
    are found and handed to the janitor.
    """
    barrier = threading.Barrier(len(group_ids))
    outcomes: list = []
    since = int(time.time() * 1000) - 1000

    def register(gid):
        barrier.wait()
        try:
            outcomes.append(("ok", _register_remote(os_client, janitor, unique_name("ct-par"), gid, connector_id)))
        except TransportError as err:
            outcomes.append(("err", error_info(err)))

    threads = [threading.Thread(target=register, args=(gid,)) for gid in group_ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wins = [o[1] for o in outcomes if o[0] == "ok"]
    losses = [o[1] for o in outcomes if o[0] == "err"]
    time.sleep(0.5)  # let every legitimate task of the burst reach COMPLETED
    orphans = _orphan_created_tasks(os_client.plugins.ml, since, int(time.time() * 1000),
                                    sum(1 for e in losses if e == LIMIT_EXCEEDED))
    for hit in orphans:
        janitor.task(hit["_id"])
    return wins, losses, orphans


def _is_version_conflict(error, group_id):
    # Two wordings, depending on where the optimistic-concurrency check on the group trips.
    status, etype, reason = error
    return error == (409, "status_exception",
                     f"Document version conflict updating {group_id} in index .plugins-ml-model-group") or (
        (status, etype) == (409, "version_conflict_engine_exception") and reason.startswith(f"[{group_id}]: version conflict"))


def test_parallel_registrations_into_one_group_conflict(os_client, janitor, unique_name, connector_id, group_id):
    ml = os_client.plugins.ml
    conflicts: list = []
    for _attempt in range(3):  # other users of the node may fill the running-task limit; try again then
        wins, losses, _ = _register_in_parallel(os_client, janitor, unique_name, connector_id, [group_id] * 5)
        assert all(_is_version_conflict(e, group_id) or e == LIMIT_EXCEEDED for e in losses), losses
        conflicts += [e for e in losses if e != LIMIT_EXCEEDED]
        if conflicts:
            break
    try:
        assert conflicts, "expected at least one version conflict among parallel registrations into one group"
        versions = [ml.get_model(model_id=m)["model_version"] for m in janitor.models]
        assert len(set(versions)) == len(versions)  # the winners got distinct numbers
    finally:
        # Each conflict left a FAILED register task whose id was never returned; its error names the group.
        query = {"size": 100, "query": {"bool": {
            "filter": [{"term": {"state": "FAILED"}}, {"term": {"function_name": "REMOTE"}}],
            "must": [{"match_phrase": {"error": group_id}}]}}}
        leaked = wait_until(
            lambda: (lambda h: h if len(h) >= len(conflicts) else None)(ml.search_tasks(body=query)["hits"]["hits"]),
            timeout=10, message="the failed register tasks to be searchable",
        ) if conflicts else []
        for hit in leaked:
            janitor.task(hit["_id"])
    assert len(leaked) == len(conflicts)
    assert all("model_id" not in h["_source"] for h in leaked)


def test_more_than_ten_concurrent_registrations_hit_the_running_task_limit(
    os_client, janitor, unique_name, connector_id
):
    """max_register_model_tasks_per_node (10) applies to remote registrations too; overflow is a 500
    that registers nothing (so it is safe to retry) but leaves an orphan task doc in state CREATED."""
    ml = os_client.plugins.ml
    group_ids = [janitor.group(ml.register_model_group(body={"name": unique_name("ct-limit")})["model_group_id"])
                 for _ in range(20)]
    wins, losses, orphans = _register_in_parallel(os_client, janitor, unique_name, connector_id, group_ids)
    assert losses, "20 simultaneous registrations all fitted under the running-task limit"
    assert all(e == LIMIT_EXCEEDED for e in losses), losses
    assert len(wins) + len(losses) == 20
    # One orphan per refused registration, forever CREATED, with no model id (wait_until checked >=).
    assert len(orphans) >= len(losses)
    assert all(o["_source"]["state"] == "CREATED" and "model_id" not in o["_source"] for o in orphans)
    # The refused registrations bumped no group's version counter.
    latest = sorted(ml.get_model_group(model_group_id=g)["latest_version"] for g in group_ids)
    assert latest == [0] * len(losses) + [1] * len(wins)


def test_remote_register_into_a_missing_group_is_500_and_leaves_a_failed_task(
    os_client, janitor, unique_name, connector_id
):
    ml = os_client.plugins.ml
    missing = unique_name("ct-no-group")
    t0 = int(time.time() * 1000) - 1000
    with pytest.raises(TransportError) as exc:
        ml.register_model(body={"name": unique_name("ct-remote-model"), "function_name": "remote",
                                "model_group_id": missing, "connector_id": connector_id})
    t1 = int(time.time() * 1000) + 1000
    assert error_info(exc.value) == (500, "m_l_resource_not_found_exception", f"Model Group Response is empty for {missing}")
    # The FAILED task's error does not name the group; find it by time window and error text.
    query = {"size": 10, "query": {"bool": {
        "filter": [{"term": {"state": "FAILED"}}, {"term": {"function_name": "REMOTE"}},
                   {"term": {"task_type": "REGISTER_MODEL"}}, {"range": {"create_time": {"gte": t0, "lte": t1}}}],
        "must": [{"match_phrase": {"error": "Model group not found"}}]}}}
    leaked = wait_until(lambda: ml.search_tasks(body=query)["hits"]["hits"], timeout=10,
                        message="the failed register task to be searchable")
    for hit in leaked:
        janitor.task(hit["_id"])
    assert leaked[0]["_source"]["error"] == "Model group not found"
    assert "model_id" not in leaked[0]["_source"]


def test_predict_passes_the_remote_error_status_through(os_client, janitor, unique_name, artifact_server, stub_path,
                                                connector_id, group_id):
    ml = os_client.plugins.ml
    artifact_server.respond(stub_path, 503, {"error": "overloaded"})
    mid = _register_remote(os_client, janitor, unique_name("ct-remote-model"), group_id, connector_id)["model_id"]
    janitor.task(ml.deploy_model(model_id=mid)["task_id"])
    wait_for_model_state(os_client, mid, "DEPLOYED", timeout=10)
    with pytest.raises(TransportError) as exc:
        ml.predict_model(model_id=mid, body={"parameters": {"input": ["hello"]}})
    # the remote status is passed through, with the remote body quoted in the reason
    assert error_info(exc.value) == (503, "status_exception", 'Error from remote service: {"error": "overloaded"}')
    assert len(artifact_server.requests_for(stub_path, "POST")) == 1  # max_retry_times defaults to 0
