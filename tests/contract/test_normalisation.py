"""What the server hands back differs from what was sent: the facts the normaliser relies on so that
an unchanged resource never shows a diff (field names, enum case, dropped defaults, stringified
values, filled-in defaults)."""

from __future__ import annotations

import pytest
from opensearchpy.exceptions import RequestError, TransportError

from helpers import (
    error_info,
    register_url_model,
    stub_connector_body,
    unique_name,
    url_model_body,
    wait_until,
)

ALL_CONFIG = '{"architectures": ["BertModel"], "hidden_size": 4}'  # sent with spaces on purpose


@pytest.fixture(scope="module")
def group(os_client, module_janitor):
    name = unique_name("ct-norm")
    gid = module_janitor.group(os_client.plugins.ml.register_model_group(body={"name": name, "description": "d"})["model_group_id"])
    return gid, name


@pytest.fixture(scope="module")
def url_models(os_client, module_janitor, artifact_server, group):
    """Two URL models: lower-case enums with normalize_result false, and with normalize_result true."""
    gid, _ = group
    art = artifact_server.make_model_zip("onnx", seed="normalise")
    name = unique_name("ct-norm-model")
    lower = url_model_body(
        name, art, kind="onnx", group_id=gid, model_format="onnx", function_name="text_embedding",
        model_config={"model_type": "bert", "embedding_dimension": 4, "framework_type": "sentence_transformers",
                      "pooling_mode": "mean_sqrt_len", "normalize_result": False, "all_config": ALL_CONFIG,
                      "model_max_length": 128, "query_prefix": "q: ", "passage_prefix": "p: "},
    )
    upper = url_model_body(
        name, art, kind="onnx", group_id=gid,
        model_config={"model_type": "bert", "embedding_dimension": 4, "framework_type": "HUGGINGFACE_TRANSFORMERS",
                      "pooling_mode": "CLS", "normalize_result": True},
    )
    ids = []
    for body in (lower, upper):
        task = register_url_model(os_client, module_janitor, body)
        assert task["state"] == "COMPLETED", task
        ids.append(task["model_id"])
    return ids


def test_model_response_uses_algorithm_and_model_version_not_request_names(os_client, url_models):
    model = os_client.plugins.ml.get_model(model_id=url_models[0])
    assert model["algorithm"] == "TEXT_EMBEDDING"  # sent as function_name "text_embedding"
    assert model["model_version"] == "1"  # sent as version "1.0.0"
    assert model["model_format"] == "ONNX"  # sent as "onnx"
    for request_only in ("function_name", "version", "url", "model_content"):
        assert request_only not in model


def test_model_config_enums_come_back_upper_case_and_normalize_result_false_is_omitted(os_client, url_models):
    ml = os_client.plugins.ml
    lower, upper = (ml.get_model(model_id=m)["model_config"] for m in url_models)
    assert lower == {
        "model_type": "bert",
        "embedding_dimension": 4,
        "framework_type": "SENTENCE_TRANSFORMERS",
        "pooling_mode": "MEAN_SQRT_LEN",
        "all_config": ALL_CONFIG,  # kept verbatim (not re-minified)
        "model_max_length": 128,
        "query_prefix": "q: ",
        "passage_prefix": "p: ",
    }  # no "normalize_result": false
    assert upper == {
        "model_type": "bert",
        "embedding_dimension": 4,
        "framework_type": "HUGGINGFACE_TRANSFORMERS",
        "pooling_mode": "CLS",
        "normalize_result": True,
    }


def test_search_hit_source_is_the_get_document(os_client, url_models):
    """Observing through _search gives the same document as GET (once the refresh caught up)."""
    ml = os_client.plugins.ml
    for mid in url_models:
        got = ml.get_model(model_id=mid)
        hit = wait_until(
            lambda: (lambda h: h if h and h[0]["_source"] == got else None)(
                ml.search_models(body={"query": {"ids": {"values": [mid]}}})["hits"]["hits"]
            ),
            timeout=5, interval=0.1, message="search to match GET",
        )
        assert hit[0]["_id"] == mid


def test_group_response_uses_access_not_access_mode(os_client, group, url_models):
    ml = os_client.plugins.ml
    gid, name = group
    got = ml.get_model_group(model_group_id=gid)
    assert got["access"] == "public"
    assert "access_mode" not in got and "owner" not in got and "backend_roles" not in got
    assert got["latest_version"] == 2  # an integer here, while model_version is a string
    hit = ml.search_model_group(body={"query": {"term": {"name.keyword": name}}})["hits"]["hits"][0]
    assert hit["_source"]["access"] == "public"


@pytest.mark.parametrize(
    "field, value, reason",
    [
        ("pooling_mode", "avg", "Wrong pooling method"),
        ("framework_type", "tensorflow", "Wrong framework type"),
        (None, None, "Wrong model format"),
    ],
    ids=["pooling_mode", "framework_type", "model_format"],
)
def test_bad_enum_values_are_400(os_client, artifact_server, group, field, value, reason):
    art = artifact_server.make_model_zip("torch", seed="normalise-bad")
    body = url_model_body(unique_name("ct-norm-model"), art, group_id=group[0])
    if field:
        body["model_config"][field] = value
    else:
        body["model_format"] = "PT"
    with pytest.raises(RequestError) as exc:
        os_client.plugins.ml.register_model(body=body)
    assert error_info(exc.value) == (400, "illegal_argument_exception", reason)


def test_all_config_must_be_a_string_an_object_is_500(os_client, artifact_server, group):
    art = artifact_server.make_model_zip("torch", seed="normalise-bad")
    body = url_model_body(unique_name("ct-norm-model"), art, group_id=group[0])
    body["model_config"]["all_config"] = {"architectures": ["BertModel"]}
    with pytest.raises(TransportError) as exc:
        os_client.plugins.ml.register_model(body=body)
    status, etype, reason = error_info(exc.value)
    assert (status, etype) == (500, "illegal_state_exception")
    assert reason.startswith("Can't get text on a START_OBJECT")


@pytest.fixture(scope="module")
def connectors(os_client, module_janitor, artifact_server):
    ml = os_client.plugins.ml
    url = artifact_server.url(f"/v1/{unique_name('ct-norm')}/embeddings")
    body = stub_connector_body(
        unique_name("ct-norm-conn"), url,
        parameters={"model": "m", "temperature": 0.5, "dims": 4, "flag": True, "nested": {"a": [1, 2]},
                    "list": ["x", 1], "none": None},
        client_config={"max_connection": 7},
    )
    body["version"] = 2
    body["actions"][0]["action_type"] = "predict"
    body["actions"][0]["method"] = "post"
    partial = module_janitor.connector(ml.create_connector(body=body)["connector_id"])
    empty_cc = module_janitor.connector(
        ml.create_connector(body=stub_connector_body(unique_name("ct-norm-conn"), url, client_config={}))["connector_id"]
    )
    return partial, empty_cc


def test_connector_parameters_are_stringified_and_version_is_a_string(os_client, connectors):
    got = os_client.plugins.ml.get_connector(connector_id=connectors[0])
    assert got["parameters"] == {
        "model": "m",
        "temperature": "0.5",
        "dims": "4",
        "flag": "true",
        "nested": '{"a":[1,2]}',  # minified JSON text
        "list": '["x",1]',
        "none": "null",  # JSON null becomes the string "null"
    }
    assert got["version"] == "2"


def test_connector_action_type_upper_case_method_verbatim(os_client, connectors):
    action = os_client.plugins.ml.get_connector(connector_id=connectors[0])["actions"][0]
    assert action["action_type"] == "PREDICT"  # sent "predict"
    assert action["method"] == "post"  # stored exactly as sent: normalise it client-side


def test_connector_client_config_defaults_are_filled_in(os_client, connectors):
    ml = os_client.plugins.ml
    defaults = {"max_connection": 30, "connection_timeout": 30000, "read_timeout": 30000, "retry_backoff_millis": 200,
                "retry_timeout_seconds": 30, "max_retry_times": 0, "retry_backoff_policy": "constant"}
    assert ml.get_connector(connector_id=connectors[0])["client_config"] == dict(defaults, max_connection=7)
    assert ml.get_connector(connector_id=connectors[1])["client_config"] == defaults  # even for {}
