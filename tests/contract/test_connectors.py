"""Standalone connectors: create / get / search (never a credential) / update (parameters merge,
actions and client_config replaced) / delete, and the create-time validation statuses."""

from __future__ import annotations

import pytest
from opensearchpy.exceptions import NotFoundError, RequestError, TransportError

from helpers import error_info, stub_connector_body

# The one import of mlsync in the contract tests: these tests prove the defaults mlsync's normaliser
# fills in are the ones the node fills in.
from mlsync.core.normalize import CLIENT_CONFIG_DEFAULTS

CONNECTOR_ACCESS_OFF = (
    "You cannot specify connector access control parameters because the Security plugin or connector "
    "access control is disabled on your cluster."
)


@pytest.fixture
def endpoint(artifact_server, unique_name):
    return artifact_server.url(f"/v1/{unique_name('ct-conn')}/embeddings")


def test_create_get_search_never_return_the_credential(os_client, janitor, unique_name, endpoint):
    ml = os_client.plugins.ml
    name = unique_name("ct-conn")
    body = stub_connector_body(name, endpoint, parameters={"model": "m1"})
    resp = ml.create_connector(body=body)
    assert set(resp) == {"connector_id"}
    cid = janitor.connector(resp["connector_id"])

    got = ml.get_connector(connector_id=cid)
    # no id, no credential, and (access control off) no access / owner / backend_roles
    assert set(got) == {"name", "description", "version", "protocol", "parameters", "actions",
                        "created_time", "last_updated_time"}
    assert got["name"] == name
    assert got["protocol"] == "http"
    assert got["version"] == "1"
    assert got["parameters"] == {"model": "m1"}
    assert got["actions"] == [dict(body["actions"][0], action_type="PREDICT")]
    assert "client_config" not in got  # not sent, not invented

    hits = ml.search_connectors(body={"query": {"term": {"name.keyword": name}}})["hits"]["hits"]
    assert [h["_id"] for h in hits] == [cid]
    assert hits[0]["_source"] == got
    # Even asking for it explicitly does not bring the credential back.
    asked = ml.search_connectors(body={"_source": ["credential", "name"], "query": {"ids": {"values": [cid]}}})
    assert asked["hits"]["hits"][0]["_source"] == {"name": name}


def test_connector_names_are_not_unique(os_client, janitor, unique_name, endpoint):
    ml = os_client.plugins.ml
    name = unique_name("ct-conn")
    first = janitor.connector(ml.create_connector(body=stub_connector_body(name, endpoint))["connector_id"])
    second = janitor.connector(ml.create_connector(body=stub_connector_body(name, endpoint))["connector_id"])
    assert first != second
    hits = ml.search_connectors(body={"query": {"term": {"name.keyword": name}}})["hits"]["hits"]
    assert sorted(h["_id"] for h in hits) == sorted([first, second])


def test_update_merges_parameters_and_replaces_actions_and_client_config(os_client, janitor, unique_name, endpoint):
    ml = os_client.plugins.ml
    body = stub_connector_body(unique_name("ct-conn"), endpoint, parameters={"model": "m1", "dims": 4},
                               client_config={"max_connection": 7})
    cid = janitor.connector(ml.create_connector(body=body)["connector_id"])
    before = ml.get_connector(connector_id=cid)
    assert before["client_config"] == dict(CLIENT_CONFIG_DEFAULTS, max_connection=7)

    upd = ml.update_connector(connector_id=cid, body={"parameters": {"model": "m2", "extra": "x"}})
    assert upd["result"] == "updated" and upd["_id"] == cid
    after = ml.get_connector(connector_id=cid)
    # merged key by key: "dims" survives although the update did not mention it
    assert after["parameters"] == {"model": "m2", "dims": "4", "extra": "x"}
    assert after["last_updated_time"] >= before["last_updated_time"]

    # An empty parameters object is a no-op: a key can never be removed.
    ml.update_connector(connector_id=cid, body={"parameters": {}})
    assert ml.get_connector(connector_id=cid)["parameters"] == {"model": "m2", "dims": "4", "extra": "x"}

    new_action = {"action_type": "predict", "method": "POST", "url": endpoint, "headers": {"X-Test": "1"},
                  "request_body": '{"input": ${parameters.input}}'}
    ml.update_connector(connector_id=cid, body={"actions": [new_action], "description": "second"})
    after = ml.get_connector(connector_id=cid)
    assert after["actions"] == [dict(new_action, action_type="PREDICT")]  # replaced wholesale
    assert after["description"] == "second"
    assert after["client_config"]["max_connection"] == 7  # untouched when not sent

    # client_config is replaced, not merged: unspecified keys go back to their defaults.
    ml.update_connector(connector_id=cid, body={"client_config": {"read_timeout": 9}})
    assert ml.get_connector(connector_id=cid)["client_config"] == dict(CLIENT_CONFIG_DEFAULTS, read_timeout=9)


def test_update_body_rules(os_client, janitor, unique_name, endpoint):
    ml = os_client.plugins.ml
    cid = janitor.connector(ml.create_connector(body=stub_connector_body(unique_name("ct-conn"), endpoint))["connector_id"])
    with pytest.raises(TransportError) as exc:
        os_client.transport.perform_request("PUT", f"/_plugins/_ml/connectors/{cid}")
    assert error_info(exc.value) == (400, "parse_exception", "Failed to update connector: Request body is empty")
    assert ml.update_connector(connector_id=cid, body={})["result"] == "updated"

    with pytest.raises(RequestError) as exc:  # the merged connector's URL is re-validated
        ml.update_connector(connector_id=cid, body={"actions": [
            {"action_type": "predict", "method": "POST", "url": "https://api.example.com/v1/embeddings"}]})
    assert error_info(exc.value)[0] == 400
    assert "not matching the trusted connector endpoint regex" in error_info(exc.value)[2]


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda b: b.update(access_mode="public"), CONNECTOR_ACCESS_OFF),
        (lambda b: b.update(add_all_backend_roles=False), CONNECTOR_ACCESS_OFF),
        (lambda b: b.update(backend_roles=["data-team"]), CONNECTOR_ACCESS_OFF),
        (lambda b: b.pop("credential"), "Connector credential is null or empty list"),
        (lambda b: b.update(protocol="HTTP"), "Can't find class for type HTTP"),
        (lambda b: b["actions"][0].update(action_type="predikt"),
         "No enum constant org.opensearch.ml.common.connector.ConnectorAction.ActionType.PREDIKT"),
        (lambda b: b["actions"][0].update(url="https://api.example.com/v1/embeddings"),
         "Connector URL is not matching the trusted connector endpoint regex, URL is: https://api.example.com/v1/embeddings"),
    ],
    ids=["access_mode", "add_all_backend_roles", "backend_roles", "no-credential", "protocol-upper-case",
         "bad-action-type", "untrusted-url"],
)
def test_create_validation_is_400(os_client, unique_name, endpoint, change, expected):
    body = stub_connector_body(unique_name("ct-conn"), endpoint)
    change(body)
    with pytest.raises(RequestError) as exc:
        os_client.plugins.ml.create_connector(body=body)
    assert error_info(exc.value) == (400, "illegal_argument_exception", expected)


def test_delete_connector_then_missing_is_200_not_found(os_client, janitor, unique_name, endpoint):
    ml = os_client.plugins.ml
    cid = janitor.connector(ml.create_connector(body=stub_connector_body(unique_name("ct-conn"), endpoint))["connector_id"])
    resp = ml.delete_connector(connector_id=cid)
    assert resp["result"] == "deleted" and resp["_id"] == cid

    with pytest.raises(NotFoundError) as exc:
        ml.get_connector(connector_id=cid)
    # (without a connector index at all the reason is just "Failed to find connector")
    assert error_info(exc.value) == (
        404, "status_exception", f"Failed to find connector with the provided connector id: {cid}"
    )

    # With the connector index present, deleting a missing id is a 200 whose result says not_found.
    again = ml.delete_connector(connector_id=cid)
    assert again["result"] == "not_found"
