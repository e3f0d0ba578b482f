"""Local file upload: _register_meta + upload_chunk, what the last chunk drops, chunk documents in
model search (and how to exclude them), and the chunk-related error statuses."""

from __future__ import annotations

import pytest
from opensearchpy.exceptions import TransportError

from helpers import (
    NOT_A_CHUNK,
    build_model_zip_bytes,
    error_info,
    sha256_hex,
    split_chunks,
    text_embedding_config,
    wait_for_model_state,
    wait_until,
)

CHUNK = 1000  # tiny chunks so a ~3.5 kB zip makes several (the real limit is 10,000,000 bytes)

#: What the meta doc holds after the last chunk re-indexes it from scratch.
KEPT_AFTER_LAST_CHUNK = {
    "name", "algorithm", "model_version", "model_group_id", "model_format", "model_config", "model_state",
    "total_chunks", "model_content_hash_value", "model_content_size_in_bytes", "created_time", "is_hidden",
}
#: Sent in _register_meta, stored at first, and gone after the last chunk.
DROPPED_BY_LAST_CHUNK = {"description", "is_enabled", "rate_limiter", "interface", "deploy_setting", "last_updated_time"}


def _meta_body(name, group_id, data, chunks, **extra):
    body = {
        "name": name,
        "version": "5.0",
        "model_group_id": group_id,
        "model_format": "ONNX",
        "model_content_hash_value": sha256_hex(data),
        "model_content_size_in_bytes": len(data),
        "total_chunks": len(chunks),
        "model_config": text_embedding_config(8, framework_type="huggingface_transformers", pooling_mode="cls",
                                              normalize_result=True),
    }
    body.update(extra)
    return body


@pytest.fixture
def group_id(os_client, janitor, unique_name):
    return janitor.group(os_client.plugins.ml.register_model_group(body={"name": unique_name("ct-chunk")})["model_group_id"])


def test_register_meta_then_chunks_registers_and_the_last_chunk_drops_metadata(os_client, janitor, unique_name, group_id):
    ml = os_client.plugins.ml
    data = build_model_zip_bytes("onnx", seed="chunk-1", payload_size=3000)
    chunks = split_chunks(data, CHUNK)
    assert len(chunks) >= 3
    extra = {
        "description": "uploaded in chunks",
        "is_enabled": False,
        "rate_limiter": {"limit": 5, "unit": "SECONDS"},
        "deploy_setting": {"is_auto_deploy_enabled": True, "model_ttl_minutes": 10},
        "interface": {"input": {"type": "object"}, "output": {"type": "object"}},
    }
    resp = ml.register_model_meta(body=_meta_body(unique_name("ct-chunk-model"), group_id, data, chunks, **extra))
    assert set(resp) == {"model_id", "status"}  # synchronous, no task
    assert resp["status"] == "CREATED"
    mid = janitor.model(resp["model_id"])

    meta = ml.get_model(model_id=mid)
    assert meta["model_state"] == "REGISTERING"
    assert meta["model_version"] == "1"  # "5.0" was ignored
    assert meta["description"] == "uploaded in chunks"
    assert meta["is_enabled"] is False
    assert meta["rate_limiter"] == {"limit": "5", "unit": "SECONDS"}  # limit comes back as a string
    assert meta["deploy_setting"] == {"is_auto_deploy_enabled": True, "model_ttl_minutes": 10}
    assert meta["interface"] == {"input": '{"type":"object"}', "output": '{"type":"object"}'}  # JSON strings
    assert DROPPED_BY_LAST_CHUNK <= set(meta)

    for number, chunk in enumerate(chunks):
        # raw bytes; opensearch-py sends them with its default Content-Type: application/json
        assert ml.upload_chunk(model_id=mid, chunk_number=number, body=chunk) == {"status": "Uploaded"}

    done = wait_for_model_state(os_client, mid, "REGISTERED", timeout=10)
    assert set(done) == KEPT_AFTER_LAST_CHUNK
    assert not (DROPPED_BY_LAST_CHUNK & set(done))
    assert done["total_chunks"] == len(chunks)
    assert done["model_content_hash_value"] == sha256_hex(data)
    assert done["model_content_size_in_bytes"] == len(data)
    assert done["model_config"]["framework_type"] == "HUGGINGFACE_TRANSFORMERS"

    # Update Model puts the dropped fields back (and writes the model's own id into the doc).
    upd = ml.update_model(model_id=mid, body=extra)
    assert upd["result"] == "updated" and upd["_id"] == mid
    fixed = ml.get_model(model_id=mid)
    assert fixed["description"] == "uploaded in chunks"
    assert fixed["is_enabled"] is False
    assert fixed["rate_limiter"] == {"limit": "5", "unit": "SECONDS"}
    assert fixed["deploy_setting"] == {"is_auto_deploy_enabled": True, "model_ttl_minutes": 10}
    assert fixed["interface"] == {"input": '{"type":"object"}', "output": '{"type":"object"}'}
    assert fixed["model_id"] == mid
    assert isinstance(fixed["last_updated_time"], int)
    assert fixed["model_state"] == "REGISTERED"


def test_chunk_docs_show_up_in_model_search_and_must_not_exists_chunk_number_removes_them(
    os_client, janitor, unique_name, group_id
):
    ml = os_client.plugins.ml
    data = build_model_zip_bytes("onnx", seed="chunk-2", payload_size=2000)
    chunks = split_chunks(data, CHUNK)
    mid = janitor.model(ml.register_model_meta(body=_meta_body(unique_name("ct-chunk-model"), group_id, data, chunks))["model_id"])
    for number, chunk in enumerate(chunks):
        ml.upload_chunk(model_id=mid, chunk_number=number, body=chunk)
    wait_for_model_state(os_client, mid, "REGISTERED", timeout=10)

    in_group = {"size": 100, "query": {"term": {"model_group_id": group_id}}}
    expected_ids = {mid} | {f"{mid}_{n}" for n in range(len(chunks))}
    hits = wait_until(
        lambda: (lambda h: h if {x["_id"] for x in h} == expected_ids else None)(
            ml.search_models(body=in_group)["hits"]["hits"]
        ),
        timeout=10,
        message="meta doc and chunk docs to be searchable",
    )
    chunk_hits = sorted((h for h in hits if h["_id"] != mid), key=lambda h: h["_source"]["chunk_number"])
    # upload_chunk chunk docs carry the group id (URL-registered chunk docs do not; see test_model_search).
    assert [h["_source"]["chunk_number"] for h in chunk_hits] == list(range(len(chunks)))
    for h in chunk_hits:
        assert set(h["_source"]) == {"algorithm", "chunk_number", "model_format", "model_group_id", "model_id",
                                     "model_version", "total_chunks"}
        assert h["_source"]["model_id"] == mid
        assert h["_source"]["model_group_id"] == group_id
        assert h["_source"]["total_chunks"] == len(chunks)

    only_meta = ml.search_models(
        body={"size": 100, "query": {"bool": {"filter": [{"term": {"model_group_id": group_id}}], **NOT_A_CHUNK["bool"]}}}
    )["hits"]["hits"]
    assert [h["_id"] for h in only_meta] == [mid]
    assert "model_content" not in only_meta[0]["_source"]

    # A caller-supplied _source loses the server's default exclusion of model_content.
    own_source = ml.search_models(
        body={"size": 100, "_source": {"includes": ["name", "model_content"]}, "query": {"term": {"model_id": mid}}}
    )["hits"]["hits"]
    contents = [h["_source"].get("model_content") for h in own_source if h["_id"] != mid]
    assert len(contents) == len(chunks) and all(isinstance(c, str) and c for c in contents)  # base64 text
    excluded = ml.search_models(
        body={"size": 100, "_source": {"includes": ["name", "model_content"], "excludes": ["model_content"]},
              "query": {"term": {"model_id": mid}}}
    )["hits"]["hits"]
    assert all("model_content" not in h["_source"] for h in excluded)


def test_the_last_chunk_alone_flips_the_model_to_registered(os_client, janitor, unique_name, group_id):
    ml = os_client.plugins.ml
    body = _meta_body(unique_name("ct-chunk-model"), group_id, b"never-uploaded", [b"a", b"b", b"c"])
    mid = janitor.model(ml.register_model_meta(body=body)["model_id"])
    assert ml.upload_chunk(model_id=mid, chunk_number=2, body=b"xyz") == {"status": "Uploaded"}
    assert wait_for_model_state(os_client, mid, "REGISTERED", timeout=10)["total_chunks"] == 3

    with pytest.raises(TransportError) as exc:
        ml.upload_chunk(model_id=mid, chunk_number=3, body=b"xyz")  # 0-based: 3 of 3 is out of range
    assert error_info(exc.value) == (500, "exception", "Chunk number exceeds total chunks")

    with pytest.raises(TransportError) as exc:
        os_client.transport.perform_request(
            "POST", f"/_plugins/_ml/models/{mid}/upload_chunk/0", body=b"xyz",
            headers={"content-type": "application/octet-stream"},  # lower-case: replaces the client default
        )
    assert error_info(exc.value) == (406, "", "Content-Type header [application/octet-stream] is not supported")


def test_register_meta_errors(os_client, unique_name):
    ml = os_client.plugins.ml
    with pytest.raises(TransportError) as exc:
        os_client.transport.perform_request("POST", "/_plugins/_ml/models/_register_meta")
    assert error_info(exc.value) == (500, "i_o_exception", "Model meta request has empty body")

    body = _meta_body(unique_name("ct-chunk-model"), unique_name("ct-no-group"), b"x", [b"x"])
    with pytest.raises(TransportError) as exc:
        ml.register_model_meta(body=body)
    assert error_info(exc.value) == (500, "m_l_resource_not_found_exception", "Fail to find model group")


def test_group_delete_right_after_deleting_a_chunked_model_may_409_briefly(os_client, janitor, unique_name, group_id):
    """upload_chunk chunk docs carry model_group_id and vanish by a non-refreshing delete-by-query."""
    ml = os_client.plugins.ml
    data = build_model_zip_bytes("onnx", seed="chunk-3", payload_size=2000)
    chunks = split_chunks(data, CHUNK)
    mid = janitor.model(ml.register_model_meta(body=_meta_body(unique_name("ct-chunk-model"), group_id, data, chunks))["model_id"])
    for number, chunk in enumerate(chunks):
        ml.upload_chunk(model_id=mid, chunk_number=number, body=chunk)
    wait_for_model_state(os_client, mid, "REGISTERED", timeout=10)
    assert ml.delete_model(model_id=mid)["result"] == "deleted"

    refusals = []

    def delete_group():
        try:
            return ml.delete_model_group(model_group_id=group_id)
        except TransportError as err:
            refusals.append(error_info(err))
            if err.status_code == 409:
                return None
            raise

    result = wait_until(delete_group, timeout=10, interval=0.1, message="group delete after model delete")
    assert result["result"] == "deleted"
    assert all(r == (409, "status_exception", "Cannot delete the model group when it has associated model versions")
               for r in refusals)
