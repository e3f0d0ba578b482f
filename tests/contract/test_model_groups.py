"""Model groups: register / get / search / update / delete, name uniqueness, access fields, misses."""

from __future__ import annotations

import pytest
from opensearchpy.exceptions import NotFoundError, RequestError, TransportError

from helpers import error_info

ACCESS_CONTROL_OFF = (
    "You cannot specify model access control parameters because the Security plugin or model access "
    "control is disabled on your cluster."
)


def test_group_lifecycle_register_get_search_update_delete(os_client, janitor, unique_name):
    ml = os_client.plugins.ml
    name = unique_name("ct-grp")

    created = ml.register_model_group(body={"name": name, "description": "first"})
    assert set(created) == {"model_group_id", "status"}
    assert created["status"] == "CREATED"
    gid = janitor.group(created["model_group_id"])

    got = ml.get_model_group(model_group_id=gid)
    # No id in the body; `access` (not `access_mode`) is "public" with access control off; no owner/roles.
    assert set(got) == {"name", "description", "latest_version", "access", "created_time", "last_updated_time"}
    assert got["name"] == name
    assert got["description"] == "first"
    assert got["latest_version"] == 0
    assert got["access"] == "public"
    # set from two clock reads at creation: equal, or a millisecond or two apart (seen: 1 ms, CI 2026-12-02)
    assert 0 <= got["last_updated_time"] - got["created_time"] <= 50
    assert got["created_time"] > 1_000_000_000_000  # epoch milliseconds

    # Register indexes with an immediate refresh: the group is searchable at once, by name.keyword.
    hits = ml.search_model_group(body={"query": {"term": {"name.keyword": name}}})["hits"]["hits"]
    assert [h["_id"] for h in hits] == [gid]
    assert hits[0]["_source"] == got
    assert {"_seq_no", "_primary_term", "_version"} <= set(hits[0])

    assert ml.update_model_group(model_group_id=gid, body={"description": "second"}) == {"status": "Updated"}
    after = ml.get_model_group(model_group_id=gid)
    assert after["description"] == "second"
    # Updating a group does not touch last_updated_time (only registering a version does).
    assert after["last_updated_time"] == got["last_updated_time"]

    # A blank description is ignored: a group's description cannot be cleared.
    assert ml.update_model_group(model_group_id=gid, body={"description": ""}) == {"status": "Updated"}
    assert ml.get_model_group(model_group_id=gid)["description"] == "second"

    renamed = name + "-renamed"
    ml.update_model_group(model_group_id=gid, body={"name": renamed})
    assert ml.get_model_group(model_group_id=gid)["name"] == renamed

    deleted = ml.delete_model_group(model_group_id=gid)
    assert deleted["result"] == "deleted"
    assert deleted["_id"] == gid
    with pytest.raises(NotFoundError) as exc:
        ml.get_model_group(model_group_id=gid)
    status, etype, reason = error_info(exc.value)
    assert (status, etype) == (404, "status_exception")
    assert reason == f"Failed to find model group with the provided model group id: {gid}"


def test_duplicate_group_name_is_400_naming_the_existing_id(os_client, janitor, unique_name):
    ml = os_client.plugins.ml
    name = unique_name("ct-grp")
    gid = janitor.group(ml.register_model_group(body={"name": name})["model_group_id"])

    with pytest.raises(RequestError) as exc:
        ml.register_model_group(body={"name": name, "description": "again"})
    status, etype, reason = error_info(exc.value)
    assert (status, etype) == (400, "illegal_argument_exception")
    assert reason == f"The name you provided is already being used by a model group with ID: {gid}."

    # The check is an exact, case-sensitive name.keyword term lookup.
    upper = janitor.group(ml.register_model_group(body={"name": name.upper()})["model_group_id"])
    assert upper != gid

    # Renaming onto a taken name is refused too, with a differently worded message.
    with pytest.raises(RequestError) as exc:
        ml.update_model_group(model_group_id=upper, body={"name": name})
    assert error_info(exc.value) == (
        400,
        "illegal_argument_exception",
        f"The name you provided is already being used by another model with ID: {gid}. "
        "Please provide a different name",
    )


@pytest.mark.parametrize(
    "fields",
    [{"access_mode": "public"}, {"add_all_backend_roles": False}, {"backend_roles": ["data-team"]}],
    ids=["access_mode", "add_all_backend_roles-false", "backend_roles"],
)
def test_access_fields_are_400_when_access_control_is_off(os_client, unique_name, fields):
    ml = os_client.plugins.ml
    with pytest.raises(RequestError) as exc:
        ml.register_model_group(body={"name": unique_name("ct-grp"), **fields})
    assert error_info(exc.value) == (400, "illegal_argument_exception", ACCESS_CONTROL_OFF)


def test_empty_backend_roles_is_accepted_and_access_update_is_400(os_client, janitor, unique_name):
    ml = os_client.plugins.ml
    # An *empty* backend_roles list counts as "not given".
    gid = janitor.group(ml.register_model_group(body={"name": unique_name("ct-grp"), "backend_roles": []})["model_group_id"])
    assert "backend_roles" not in ml.get_model_group(model_group_id=gid)

    with pytest.raises(RequestError) as exc:
        ml.update_model_group(model_group_id=gid, body={"access_mode": "private"})
    assert error_info(exc.value) == (400, "illegal_argument_exception", ACCESS_CONTROL_OFF)


def test_delete_missing_group_is_200_not_found_and_get_missing_is_404(os_client, janitor, unique_name):
    ml = os_client.plugins.ml
    # make sure the group index exists (a brand-new cluster has none)
    janitor.group(ml.register_model_group(body={"name": unique_name("ct-grp")})["model_group_id"])
    missing = unique_name("ct-missing")

    resp = ml.delete_model_group(model_group_id=missing)
    assert resp["result"] == "not_found"
    assert resp["_id"] == missing

    with pytest.raises(NotFoundError) as exc:
        ml.get_model_group(model_group_id=missing)
    assert error_info(exc.value)[:2] == (404, "status_exception")


def test_update_group_body_rules(os_client, janitor, unique_name):
    ml = os_client.plugins.ml
    name = unique_name("ct-grp")
    gid = janitor.group(ml.register_model_group(body={"name": name, "description": "kept"})["model_group_id"])

    # No body at all: an IOException rendered as 500.
    with pytest.raises(TransportError) as exc:
        os_client.transport.perform_request("PUT", f"/_plugins/_ml/model_groups/{gid}")
    assert error_info(exc.value) == (500, "i_o_exception", "Model group request has empty body")

    # An empty JSON object is a successful no-op.
    assert ml.update_model_group(model_group_id=gid, body={}) == {"status": "Updated"}
    got = ml.get_model_group(model_group_id=gid)
    assert (got["name"], got["description"]) == (name, "kept")

    # Updating a missing group is a 404.
    with pytest.raises(NotFoundError):
        ml.update_model_group(model_group_id=unique_name("ct-missing"), body={"description": "x"})
