"""Local models registered from a URL: the async task, server-assigned versions, group resolution,
failures, and delete (which needs delete-by-query, i.e. the reindex module, on this node)."""

from __future__ import annotations

import pytest
from opensearchpy.exceptions import NotFoundError, RequestError, TransportError

from helpers import (
    error_info,
    register_url_model,
    url_model_body,
    wait_for_task,
    wait_until,
)


@pytest.fixture
def group_id(os_client, janitor, unique_name):
    return janitor.group(os_client.plugins.ml.register_model_group(body={"name": unique_name("ct-url")})["model_group_id"])


def test_url_registration_is_an_async_task_that_completes_with_model_id(
    os_client, janitor, unique_name, artifact_server, make_model_zip, group_id
):
    ml = os_client.plugins.ml
    art = make_model_zip("torch", seed="url-1")
    name = unique_name("ct-url-model")

    resp = ml.register_model(body=url_model_body(name, art, group_id=group_id, version="7.7.7", description="from url"))
    # Asynchronous: only a task id, and status CREATED; the model id is not known yet.
    assert set(resp) == {"task_id", "status"}
    assert resp["status"] == "CREATED"
    janitor.task(resp["task_id"])

    task = wait_for_task(os_client, resp["task_id"], timeout=60, interval=0.2)
    if task.get("model_id"):
        janitor.model(task["model_id"])
    assert task["state"] == "COMPLETED", task
    assert task["task_type"] == "REGISTER_MODEL"
    assert task["function_name"] == "TEXT_EMBEDDING"
    assert task["is_async"] is True
    assert isinstance(task["worker_node"], list) and len(task["worker_node"]) == 1
    assert "error" not in task
    assert "task_id" not in task  # the id is never in the body
    assert task["create_time"] <= task["last_update_time"]
    mid = task["model_id"]

    model = ml.get_model(model_id=mid)
    assert model["model_state"] == "REGISTERED"
    assert model["name"] == name
    assert model["description"] == "from url"
    assert model["model_group_id"] == group_id
    assert model["model_version"] == "1"  # not "7.7.7": the server numbers versions itself
    assert model["algorithm"] == "TEXT_EMBEDDING"
    assert model["model_format"] == "TORCH_SCRIPT"
    assert model["model_content_hash_value"] == art.sha256
    assert model["model_content_size_in_bytes"] == art.size
    assert model["total_chunks"] == 1
    assert "model_content" not in model and "url" not in model  # the URL is not kept
    for key in ("created_time", "last_updated_time", "last_registered_time"):
        assert isinstance(model[key], int)

    # The node downloaded the zip from the loopback server.
    path = art.url.split(str(artifact_server.port), 1)[1]
    assert artifact_server.requests_for(path, "GET")

    group = ml.get_model_group(model_group_id=group_id)
    assert group["latest_version"] == 1


def test_model_version_is_server_assigned_whatever_version_is_sent(
    os_client, janitor, unique_name, make_model_zip, group_id
):
    ml = os_client.plugins.ml
    art = make_model_zip("torch", seed="url-2")
    name = unique_name("ct-url-model")
    versions = []
    for sent in ("9.9.9", "1", 42):  # a label, the next number's rival, a JSON number
        task = register_url_model(os_client, janitor, url_model_body(name, art, group_id=group_id, version=sent))
        assert task["state"] == "COMPLETED", task
        versions.append(ml.get_model(model_id=task["model_id"])["model_version"])
    assert versions == ["1", "2", "3"]
    assert ml.get_model_group(model_group_id=group_id)["latest_version"] == 3


def _zip_without_tokenizer(artifact_server):
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("model.pt", b"not a real model")
    return artifact_server.add_file("no-tokenizer.zip", buf.getvalue())


_FAILURES = {
    "wrong-hash": "model content changed",
    "upper-case-hash": "model content changed",  # compared case-sensitively with lower-case hex
    "no-hash": "Model content Hash code need to be provided when register via url. Please calculate sha 256 Hash code.",
    "wrong-format": "Model format is TORCH_SCRIPT, but find .onnx file",
    "no-tokenizer": "No tokenizer file",
    "download-404": "{url}",  # the error is just the URL that could not be fetched
}


@pytest.mark.parametrize("case, expected_error", [pytest.param(k, v, id=k) for k, v in _FAILURES.items()])
def test_url_registration_failures_fail_the_task_and_roll_the_version_back(
    os_client, janitor, unique_name, artifact_server, group_id, case, expected_error
):
    ml = os_client.plugins.ml
    torch_zip = artifact_server.make_model_zip("torch", seed="url-fail")
    body = url_model_body(unique_name("ct-url-model"), torch_zip, group_id=group_id)
    if case == "wrong-hash":
        body["model_content_hash_value"] = "0" * 64
    elif case == "upper-case-hash":
        body["model_content_hash_value"] = torch_zip.sha256.upper()
    elif case == "no-hash":
        del body["model_content_hash_value"]  # accepted by the call, refused by the task
    elif case == "wrong-format":
        onnx_zip = artifact_server.make_model_zip("onnx", seed="url-fail")
        body.update(url=onnx_zip.url, model_content_hash_value=onnx_zip.sha256)  # model_format stays TORCH_SCRIPT
    elif case == "no-tokenizer":
        bad = _zip_without_tokenizer(artifact_server)
        body.update(url=bad.url, model_content_hash_value=bad.sha256)
    elif case == "download-404":
        body["url"] = artifact_server.url(f"/models/{unique_name('missing')}.zip")

    task = register_url_model(os_client, janitor, body)
    assert task["state"] == "FAILED"
    assert task["error"] == expected_error.format(url=body["url"])
    assert "model_id" not in task  # the half-registered model was removed
    # The URL path rolls latest_version back after a failure: no gap, nothing left in the group.
    assert ml.get_model_group(model_group_id=group_id)["latest_version"] == 0
    hits = ml.search_models(body={"query": {"term": {"model_group_id": group_id}}})["hits"]["hits"]
    assert hits == []


def test_url_registration_into_a_missing_group_fails_the_task_not_the_call(
    os_client, janitor, unique_name, make_model_zip
):
    art = make_model_zip("torch", seed="url-4")
    task = register_url_model(
        os_client, janitor, url_model_body(unique_name("ct-url-model"), art, group_id=unique_name("ct-no-group"))
    )
    assert task["state"] == "FAILED"
    assert task["error"] == "Model group not found"


def test_model_without_group_creates_or_silently_joins_the_group_named_after_it(
    os_client, janitor, unique_name, make_model_zip
):
    ml = os_client.plugins.ml
    art = make_model_zip("torch", seed="url-5")
    name = unique_name("ct-url-auto")

    first = register_url_model(os_client, janitor, url_model_body(name, art, description="auto description"))
    assert first["state"] == "COMPLETED", first
    m1 = ml.get_model(model_id=first["model_id"])
    gid = janitor.group(m1["model_group_id"])
    group = ml.get_model_group(model_group_id=gid)
    assert group["name"] == name  # the implicit group is named after the model
    assert group["description"] == "auto description"  # ... and gets the model's description
    assert group["access"] == "public"
    assert m1["model_version"] == "1"

    # A second registration with the same name and no model_group_id joins that group as version 2.
    second = register_url_model(os_client, janitor, url_model_body(name, art))
    m2 = ml.get_model(model_id=second["model_id"])
    assert m2["model_group_id"] == gid
    assert m2["model_version"] == "2"


def test_access_fields_on_register_400_for_implicit_group_ignored_for_explicit_group(
    os_client, janitor, unique_name, make_model_zip, group_id
):
    ml = os_client.plugins.ml
    art = make_model_zip("torch", seed="url-6")
    with pytest.raises(RequestError) as exc:
        ml.register_model(body=url_model_body(unique_name("ct-url-auto"), art, access_mode="public"))
    status, _, reason = error_info(exc.value)
    assert status == 400 and reason.startswith("You cannot specify model access control parameters")

    task = register_url_model(
        os_client, janitor, url_model_body(unique_name("ct-url-model"), art, group_id=group_id, access_mode="private")
    )
    assert task["state"] == "COMPLETED"
    assert ml.get_model_group(model_group_id=group_id)["access"] == "public"


def test_delete_url_model_removes_its_chunks_then_group_delete_succeeds(
    os_client, janitor, unique_name, make_model_zip, group_id
):
    """Deleting a URL model runs delete-by-query on its chunk docs: this proves that works here."""
    ml = os_client.plugins.ml
    art = make_model_zip("torch", seed="url-7")
    task = register_url_model(os_client, janitor, url_model_body(unique_name("ct-url-model"), art, group_id=group_id))
    mid = task["model_id"]

    chunk_query = {"query": {"bool": {"filter": [{"term": {"model_id": mid}}, {"exists": {"field": "chunk_number"}}]}}}
    chunk = wait_until(lambda: ml.search_models(body=chunk_query)["hits"]["hits"], timeout=10,
                       message="the URL model's chunk doc to be searchable")
    assert [h["_id"] for h in chunk] == [f"{mid}_0"]
    # URL-made chunk docs carry the model's name but NOT model_group_id (upload_chunk ones do the opposite).
    assert set(chunk[0]["_source"]) == {"algorithm", "chunk_number", "created_time", "is_hidden", "last_updated_time",
                                        "model_format", "model_id", "model_version", "name", "total_chunks"}
    assert chunk[0]["_source"]["name"] == ml.get_model(model_id=mid)["name"]

    with pytest.raises(TransportError) as exc:
        ml.delete_model_group(model_group_id=group_id)
    assert error_info(exc.value) == (
        409, "status_exception", "Cannot delete the model group when it has associated model versions"
    )

    resp = ml.delete_model(model_id=mid)
    assert resp["result"] == "deleted"
    assert resp["_id"] == mid

    wait_until(lambda: ml.search_models(body=chunk_query)["hits"]["total"]["value"] == 0, timeout=10,
               message="delete-by-query to remove the chunk docs")
    with pytest.raises(NotFoundError):
        ml.get_model(model_id=mid)

    deleted = wait_until(lambda: _delete_group(ml, group_id), timeout=10, message="group delete")
    assert deleted["result"] == "deleted"


def _delete_group(ml, gid):
    try:
        return ml.delete_model_group(model_group_id=gid)
    except TransportError as exc:
        if exc.status_code == 409:
            return None
        raise


def test_delete_missing_model_is_404_and_a_repeated_delete_may_be_500_for_a_moment(
    os_client, janitor, unique_name, make_model_zip, group_id
):
    ml = os_client.plugins.ml
    art = make_model_zip("torch", seed="url-8")
    mid = register_url_model(os_client, janitor, url_model_body(unique_name("ct-url-model"), art, group_id=group_id))["model_id"]

    # (with the model index present; a cluster without it answers GET with "Fail to find model")
    missing = unique_name("ct-missing")
    with pytest.raises(NotFoundError) as exc:
        ml.delete_model(model_id=missing)
    assert error_info(exc.value) == (404, "status_exception", "Failed to find model")
    with pytest.raises(NotFoundError) as exc:
        ml.get_model(model_id=missing)
    assert error_info(exc.value) == (
        404, "status_exception", f"Failed to find model with the provided model id: {missing}"
    )

    assert ml.delete_model(model_id=mid)["result"] == "deleted"

    # Right after a delete, the chunk docs are gone but not yet refreshed away: a second delete's
    # chunk clean-up hits them and fails with a 500 until the next refresh; then it is a plain 404.
    seen = []

    def second_delete():
        try:
            ml.delete_model(model_id=mid)
        except TransportError as err:
            seen.append(error_info(err))
            return err.status_code == 404
        raise AssertionError("a deleted model was deleted again")

    wait_until(second_delete, timeout=10, interval=0.2, message="the repeated delete to become a 404")
    assert seen[-1] == (404, "status_exception", "Failed to find model")
    for status, etype, reason in seen[:-1]:
        assert (status, etype) == (500, "illegal_state_exception")
        assert reason == f"Model is not all cleaned up, please try again. Model ID: {mid}"


def test_search_sees_url_model_state_after_get_does(os_client, janitor, unique_name, make_model_zip, group_id):
    """GET is real-time; _search converges to it within about a refresh interval."""
    ml = os_client.plugins.ml
    art = make_model_zip("torch", seed="url-9")
    mid = register_url_model(os_client, janitor, url_model_body(unique_name("ct-url-model"), art, group_id=group_id))["model_id"]
    assert ml.get_model(model_id=mid)["model_state"] == "REGISTERED"
    query = {"query": {"bool": {"filter": [{"ids": {"values": [mid]}}]}}}
    hit = wait_until(
        lambda: (lambda h: h if h and h[0]["_source"]["model_state"] == "REGISTERED" else None)(
            ml.search_models(body=query)["hits"]["hits"]
        ),
        timeout=5,
        interval=0.1,
        message="search to show REGISTERED",
    )[0]
    assert hit["_source"]["model_content_hash_value"] == art.sha256
    assert "model_content" not in hit["_source"]
