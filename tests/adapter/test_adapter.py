"""mlsync.edge.cluster.Cluster against the real OpenSearch 2.19 + ML Commons node.

Every object is created with a unique name and removed by the janitor (the node is shared).
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid

import pytest

from helpers import build_model_zip_bytes, sha256_hex, split_chunks, stub_connector_body, unique_name
from mlsync.edge.cluster import Cluster, ConnectionOptions
from mlsync.core.errors import ClusterError, StateConflict
from mlsync.core.secrets import Secret

pytestmark = pytest.mark.cluster

TERMINAL = {"COMPLETED", "FAILED", "COMPLETED_WITH_ERROR", "CANCELLED"}
MODEL_CONFIG = {"model_type": "bert", "embedding_dimension": 4, "framework_type": "sentence_transformers"}


def _url() -> str:
    return os.environ.get("OPENSEARCH_URL") or "http://127.0.0.1:9200"


@pytest.fixture
def cluster(os_client):
    c = Cluster.connect(ConnectionOptions(url=_url(), timeout=60))
    yield c
    c.close()


def _wait_task(cluster: Cluster, task_id: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        doc = cluster.search_tasks([task_id]).get(task_id)
        if doc and doc.get("state") in TERMINAL:
            return doc
        assert time.monotonic() < deadline, f"task {task_id} not finished: {doc}"
        time.sleep(0.25)


def _connector(cluster, janitor, artifact_server, name=None, secret="not-a-real-key"):
    body = stub_connector_body(name or unique_name("ad-conn"), artifact_server.url(f"/v1/{uuid.uuid4().hex}/emb"))
    body["credential"] = {"api_key": Secret(secret)}
    return janitor.connector(cluster.create_connector(body)), body


def _remote_model(cluster, janitor, group_id, connector_id, name=None):
    res = cluster.register_model({"name": name or unique_name("ad-remote"), "function_name": "remote",
                                  "model_group_id": group_id, "connector_id": connector_id})
    janitor.task(res.task_id)
    return janitor.model(res.model_id), res


def _chunked_model(cluster, janitor, group_id, name, chunk_size=4000):
    data = build_model_zip_bytes("torch", seed=name, payload_size=9000)
    chunks = split_chunks(data, chunk_size)
    mid = janitor.model(cluster.register_model_meta({
        "name": name, "function_name": "TEXT_EMBEDDING", "model_group_id": group_id, "model_format": "TORCH_SCRIPT",
        "model_content_hash_value": sha256_hex(data), "model_content_size_in_bytes": len(data),
        "total_chunks": len(chunks), "model_config": MODEL_CONFIG}))
    for i, chunk in enumerate(chunks):
        cluster.upload_chunk(mid, i, chunk)
    return mid, data, chunks


def _wait_model_state(cluster, model_id, states, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        doc = cluster.get_model(model_id)
        if doc and doc.get("model_state") in states:
            return doc
        assert time.monotonic() < deadline, f"model {model_id} not in {states}: {doc}"
        time.sleep(0.2)


def _expected_requests(observed, page_size: int) -> int:
    pages = sum(len(kind) // page_size + 1
                for kind in (observed.groups, observed.connectors, observed.models, observed.agents))
    # 1 refresh of the ML indices + cluster info + settings + one GET per pipeline kind + the pages
    return 5 + pages + (1 if observed.model_access_control or observed.connector_access_control else 0)


# --------------------------------------------------------------------------- observe


def test_observe_returns_every_kind_without_chunks_or_content(cluster, janitor, artifact_server):
    gid = janitor.group(cluster.create_group({"name": unique_name("ad-obs"), "description": "observe me"}))
    cid, _ = _connector(cluster, janitor, artifact_server)
    remote_id, _ = _remote_model(cluster, janitor, gid, cid)
    # a URL model (chunk docs with base64 model_content) and an uploaded one (chunk docs with model_group_id)
    z = artifact_server.make_model_zip("torch", payload_size=3000)
    reg = cluster.register_model({"name": unique_name("ad-url"), "function_name": "TEXT_EMBEDDING",
                                  "model_group_id": gid, "model_format": "TORCH_SCRIPT",
                                  "model_content_hash_value": z.sha256, "url": z.url, "model_config": MODEL_CONFIG})
    assert reg.task_id and reg.model_id is None
    janitor.task(reg.task_id)
    task = _wait_task(cluster, reg.task_id)
    assert task["state"] == "COMPLETED", task
    url_id = janitor.model(task["model_id"])
    chunk_id, _, chunks = _chunked_model(cluster, janitor, gid, unique_name("ad-chunk"))
    assert len(chunks) == 3
    _wait_model_state(cluster, chunk_id, {"REGISTERED"})
    time.sleep(1.2)   # search is near-real-time: let the chunk docs and state updates become visible

    obs = cluster.observe()

    assert obs.cluster_version == "2.19.6"
    assert obs.model_access_control is False and obs.connector_access_control is False
    group = obs.groups[gid]
    assert group.kind == "model_group" and group.id == gid
    assert group.source["description"] == "observe me" and group.source["latest_version"] == 3
    assert group.seq_no is not None and group.primary_term is not None
    conn = obs.connectors[cid]
    assert conn.kind == "connector" and conn.source["parameters"] == {"model": "stub-embedder"}
    assert "credential" not in conn.source
    assert obs.models[remote_id].source["algorithm"] == "REMOTE"
    assert obs.models[remote_id].source["connector_id"] == cid
    assert obs.models[url_id].source["model_content_hash_value"] == z.sha256
    assert obs.models[chunk_id].source["total_chunks"] == 3
    # no chunk docs (ids "<model>_<n>"), no model_content anywhere
    assert not any("chunk_number" in m.source for m in obs.models.values())
    assert not any(mid.startswith((url_id + "_", chunk_id + "_")) for mid in obs.models)
    assert not any("model_content" in m.source or "content" in m.source for m in obs.models.values())
    # the raw source is what the server stores (server names, upper-case enums)
    assert obs.models[url_id].source["model_config"]["framework_type"] == "SENTENCE_TRANSFORMERS"
    assert obs.models[url_id].source["model_group_id"] == gid
    # request count: refresh, GET /, GET _cluster/settings, one GET per pipeline kind, one page per searched
    # kind (the cluster holds < 2000 of each: groups, connectors, models, agents)
    assert obs.requests == _expected_requests(obs, cluster.page_size)
    assert obs.requests == 9


def test_observe_pages_past_a_small_page_size(os_client, janitor):
    small = Cluster.connect(ConnectionOptions(url=_url()), page_size=3)
    prefix = unique_name("ad-page")
    ids = [janitor.group(small.create_group({"name": f"{prefix}-{i:02d}"})) for i in range(10)]
    before = small.requests_made
    obs = small.observe()
    assert small.requests_made - before == obs.requests
    mine = {gid: o.source["name"] for gid, o in obs.groups.items() if o.source["name"].startswith(prefix)}
    assert set(mine) == set(ids)
    assert sorted(mine.values()) == [f"{prefix}-{i:02d}" for i in range(10)]
    # 10 of ours (+ whatever else is on the shared node) in pages of 3: n // 3 + 1 pages per kind
    assert len(obs.groups) >= 10
    assert obs.requests == _expected_requests(obs, 3)
    assert obs.requests >= 2 + 4 + 1 + 1
    # the same objects as with one big page
    big = Cluster.connect(ConnectionOptions(url=_url())).observe()
    assert set(mine) <= set(big.groups)
    for gid in ids:
        assert big.groups[gid].source == obs.groups[gid].source
    small.close()


def test_observe_is_sequentially_equivalent(os_client, janitor):
    seq = Cluster.connect(ConnectionOptions(url=_url()), parallel_observe=False)
    gid = janitor.group(seq.create_group({"name": unique_name("ad-seq")}))
    obs = seq.observe()
    assert gid in obs.groups
    assert obs.requests == _expected_requests(obs, seq.page_size)


# --------------------------------------------------------------------------- writes


def test_connector_and_group_writes(cluster, janitor, artifact_server, os_client):
    ml = os_client.plugins.ml
    cid, body = _connector(cluster, janitor, artifact_server)
    cluster.update_connector(cid, {"description": "updated", "parameters": {"extra": 1},
                                   "credential": {"api_key": Secret("rotated")}})
    got = ml.get_connector(connector_id=cid)
    assert got["description"] == "updated"
    assert got["parameters"] == {"model": "stub-embedder", "extra": "1"}   # merged, stringified

    name = unique_name("ad-grp")
    gid = janitor.group(cluster.create_group({"name": name, "description": "one"}))
    cluster.update_group(gid, {"name": name + "-x", "description": "two"})
    got = ml.get_model_group(model_group_id=gid)
    assert (got["name"], got["description"]) == (name + "-x", "two")

    cluster.delete_group(gid)
    cluster.delete_group(gid)            # already gone: 200 result:not_found is fine
    cluster.delete_connector(cid)
    cluster.delete_connector(cid)        # likewise
    assert gid not in cluster.observe().groups


def test_model_writes_remote_and_chunked(cluster, janitor, artifact_server, os_client):
    gid = janitor.group(cluster.create_group({"name": unique_name("ad-models")}))
    cid, _ = _connector(cluster, janitor, artifact_server)
    name = unique_name("ad-remote")
    mid, res = _remote_model(cluster, janitor, gid, cid, name=name)
    assert res.model_id and res.task_id

    # update_model
    cluster.update_model(mid, {"description": "after", "rate_limiter": {"limit": "5", "unit": "MINUTES"}})
    got = cluster.get_model(mid)
    assert got["description"] == "after" and got["rate_limiter"] == {"limit": "5", "unit": "MINUTES"}

    # deploy (remote: synchronous → None), undeploy
    assert cluster.deploy_model(mid) is None
    assert cluster.get_model(mid)["model_state"] == "DEPLOYED"
    cluster.undeploy_model(mid)
    assert cluster.get_model(mid)["model_state"] == "UNDEPLOYED"
    cluster.undeploy_model(mid)                      # not deployed: still fine

    # register_model_meta + upload_chunk (raw bytes)
    cname = unique_name("ad-chunk")
    chunk_id, data, chunks = _chunked_model(cluster, janitor, gid, cname)
    doc = _wait_model_state(cluster, chunk_id, {"REGISTERED"})
    assert doc["total_chunks"] == len(chunks) and doc["model_content_hash_value"] == sha256_hex(data)
    stored = os_client.get(index=".plugins-ml-model", id=f"{chunk_id}_1")["_source"]
    import base64
    assert base64.b64decode(stored["model_content"]) == chunks[1]   # the bytes arrived untouched

    # find_models: meta docs by exact name within the group (chunk docs excluded)
    assert set(cluster.find_models(name, gid)) == {mid}
    assert set(cluster.find_models(cname, gid)) == {chunk_id}
    assert set(cluster.find_models(cname, None)) == {chunk_id}
    assert cluster.find_models(cname, "no-such-group") == {}
    assert cluster.find_models(cname[:-1], gid) == {}

    # search_tasks: several ids in ONE request
    t2 = cluster.register_model({"name": unique_name("ad-remote"), "function_name": "remote",
                                 "model_group_id": gid, "connector_id": cid})
    janitor.model(t2.model_id)
    janitor.task(t2.task_id)
    time.sleep(1.2)
    before = cluster.requests_made
    tasks = cluster.search_tasks([res.task_id, t2.task_id, "no-such-task"])
    assert cluster.requests_made - before == 1
    assert set(tasks) == {res.task_id, t2.task_id}
    assert tasks[res.task_id]["model_id"] == mid and tasks[res.task_id]["task_type"] == "REGISTER_MODEL"

    # delete: missing is not an error; a group whose model just went (chunk docs linger) is deleted
    cluster.delete_model(mid)
    cluster.delete_model(mid)
    assert cluster.get_model(mid) is None
    cluster.delete_model(t2.model_id)
    cluster.delete_model(chunk_id)
    cluster.delete_model(chunk_id)  # at once again: a 500 "not all cleaned up" (or 404) — both mean gone
    assert cluster.get_model(chunk_id) is None
    cluster.delete_group(gid)       # retries the transient 409 while chunk docs vanish
    assert os_client.plugins.ml.search_model_group(
        body={"query": {"ids": {"values": [gid]}}})["hits"]["hits"] == []


def test_local_deploy_returns_a_task_id(cluster, janitor, artifact_server):
    """Local deploy is asynchronous: a task id comes back (offline, the task itself may FAIL: no libtorch)."""
    gid = janitor.group(cluster.create_group({"name": unique_name("ad-ldep")}))
    z = artifact_server.make_model_zip("torch")
    reg = cluster.register_model({"name": unique_name("ad-url"), "function_name": "TEXT_EMBEDDING",
                                  "model_group_id": gid, "model_format": "TORCH_SCRIPT",
                                  "model_content_hash_value": z.sha256, "url": z.url, "model_config": MODEL_CONFIG})
    janitor.task(reg.task_id)
    mid = janitor.model(_wait_task(cluster, reg.task_id)["model_id"])
    task_id = cluster.deploy_model(mid)
    assert isinstance(task_id, str) and task_id
    janitor.task(task_id)
    done = _wait_task(cluster, task_id, timeout=120)
    assert done["task_type"] == "DEPLOY_MODEL"
    _wait_model_state(cluster, mid, {"DEPLOYED", "DEPLOY_FAILED", "PARTIALLY_DEPLOYED"}, timeout=60)
    cluster.undeploy_model(mid)


# --------------------------------------------------------------------------- errors


def test_error_translation(cluster, janitor, artifact_server):
    name = unique_name("ad-dup")
    gid = janitor.group(cluster.create_group({"name": name}))
    with pytest.raises(ClusterError) as exc:
        cluster.create_group({"name": name})
    err = exc.value
    assert err.status == 400 and err.error_type == "illegal_argument_exception"
    assert f"already being used by a model group with ID: {gid}" in err.reason
    assert not err.ambiguous
    assert str(err).startswith(f'create model group "{name}": HTTP 400: The name you provided')
    assert "Traceback" not in str(err) and err.__cause__ is None and err.__context__ is None

    assert cluster.get_model("no-such-model-" + uuid.uuid4().hex[:6]) is None

    cid, _ = _connector(cluster, janitor, artifact_server)
    _remote_model(cluster, janitor, gid, cid)
    with pytest.raises(ClusterError) as exc:
        cluster.delete_connector(cid)
    err = exc.value
    assert err.status == 409 and err.error_type == "status_exception"
    assert "models are still using this connector, please delete or update the models first" in err.reason

    with pytest.raises(ClusterError) as exc:      # access fields while access control is off
        cluster.create_group({"name": unique_name("ad-acl"), "access_mode": "public"})
    assert exc.value.status == 400 and "model access control" in exc.value.reason

    with pytest.raises(ClusterError) as exc:      # a missing explicit group on remote register: 500, not 404
        cluster.register_model({"name": unique_name("ad-x"), "function_name": "remote",
                                 "model_group_id": "no-such-group", "connector_id": cid})
    assert exc.value.status == 500 and exc.value.error_type == "m_l_resource_not_found_exception"

    with pytest.raises(ClusterError) as exc:
        cluster.update_model("no-such-model", {"description": "x"})
    assert exc.value.status == 404 and "Failed to find model to update" in exc.value.reason


# --------------------------------------------------------------------------- state


@pytest.fixture
def state_cluster(os_client):
    index = f"mlsync-state-test-{uuid.uuid4().hex[:8]}"
    c = Cluster.connect(ConnectionOptions(url=_url()), state_index=index)
    yield c, index
    c.close()
    os_client.indices.delete(index=index, ignore_unavailable=True, expand_wildcards="all")


def test_state_read_write_and_conflicts(state_cluster, os_client):
    cluster, index = state_cluster
    stack = "stack one/with:odd chars"
    assert cluster.read_state(stack) is None                       # no index yet
    body = {"stack": stack, "serial": 1, "resources": {'model["g.x"]["m"]["1.0"]': {"id": "abc"}, "a.b": {"c": 1}}}
    first = cluster.write_state(stack, body, None, None)
    assert first.body == body
    read = cluster.read_state(stack)
    assert read == first

    settings = os_client.indices.get_settings(index=index, expand_wildcards="all")[index]["settings"]["index"]
    assert settings["hidden"] == "true"
    assert (settings["number_of_shards"], settings["number_of_replicas"]) == ("1", "0")

    body2 = dict(body, serial=2)
    second = cluster.write_state(stack, body2, read.seq_no, read.primary_term)
    assert second.seq_no > read.seq_no
    assert cluster.read_state(stack).body == body2

    with pytest.raises(StateConflict):                             # stale: someone wrote since
        cluster.write_state(stack, dict(body, serial=3), read.seq_no, read.primary_term)
    with pytest.raises(StateConflict):                             # "create" but it exists
        cluster.write_state(stack, body, None, None)
    assert cluster.read_state(stack).body == body2

    other = Cluster.connect(ConnectionOptions(url=_url()), state_index=index)   # index already there
    assert other.write_state("stack two", {"stack": "stack two"}, None, None).seq_no >= 0
    assert other.read_state("stack two").body == {"stack": "stack two"}
    assert cluster.read_state("stack three") is None


# --------------------------------------------------------------------------- secrets


def test_secrets_reach_the_server_but_never_the_logs(cluster, janitor, artifact_server, os_client, caplog, capsys):
    secret = "s3cr3t-" + uuid.uuid4().hex
    rotated = "r0tated-" + uuid.uuid4().hex
    tracer = logging.getLogger("opensearchpy.trace")
    tracer.addHandler(caplog.handler)
    caplog.set_level(logging.DEBUG)
    try:
        gid = janitor.group(cluster.create_group({"name": unique_name("ad-sec")}))
        cid, body = _connector(cluster, janitor, artifact_server, secret=secret)
        cluster.update_connector(cid, {"credential": {"api_key": Secret(rotated)}})
        mid, _ = _remote_model(cluster, janitor, gid, cid)
        assert cluster.deploy_model(mid) is None
        with pytest.raises(ClusterError) as exc:     # a failing request whose body holds the secret
            bad = stub_connector_body(unique_name("ad-bad"), "https://not-trusted.example.com/v1")
            bad["credential"] = {"api_key": Secret(secret)}
            cluster.create_connector(bad)
        assert exc.value.status == 400 and "trusted connector endpoint" in exc.value.reason
        assert secret not in str(exc.value)
    finally:
        tracer.removeHandler(caplog.handler)

    # The credential was revealed into the request: the server decrypts it and calls the stub with it.
    path = body["actions"][0]["url"].split(str(artifact_server.port), 1)[1]
    out = os_client.transport.perform_request("POST", f"/_plugins/_ml/models/{mid}/_predict",
                                              body={"parameters": {"input": ["hello"]}})
    assert out["inference_results"]
    sent = artifact_server.requests_for(path, "POST")
    assert sent and sent[-1].headers.get("Authorization") == f"Bearer {rotated}"
    cluster.undeploy_model(mid)

    captured = capsys.readouterr()
    everything = caplog.text + captured.out + captured.err + json.dumps([r.getMessage() for r in caplog.records])
    assert "POST" in caplog.text               # requests were logged ...
    assert secret not in everything            # ... without the bodies
    assert rotated not in everything
    assert repr(Secret(secret)) == "Secret((sensitive))"
