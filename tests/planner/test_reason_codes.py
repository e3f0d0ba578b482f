"""Reason codes: every reason the planner gives comes with its code, in the order of the text's parts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlsync.core.observed import Observed
from mlsync.core.plan import FORMAT_VERSION, Plan, Reason, ResourceChange
from mlsync.core.planner import PlanOptions, plan
from mlsync.core.secrets import Secret, fingerprint
from mlsync.core.state import ResourceState, StackState
from test_planner import (ADDR_C, ADDR_G, ADDR_M, ADDR_R, HASH2, KEY, LOCAL_SRC, REMOTE_SRC, desired, managed_state,
                          observed)

R = Reason
INLINE = {"protocol": "http", "credential": {"api_key": "k1"}, "actions": [{"action_type": "predict", "method": "POST", "url": "http://127.0.0.1:1/v1"}]}
INLINE_SRC = {"protocol": "http", "actions": [{"action_type": "PREDICT", "method": "POST", "url": "http://127.0.0.1:1/v1"}]}
REMOTE_INLINE_SRC = {k: v for k, v in REMOTE_SRC.items() if k != "connector_id"} | {"connector": INLINE_SRC}
EXTRA = dict(LOCAL_SRC, name="someone-elses", model_content_hash_value=HASH2, model_version="3")
DATA = Path(__file__).resolve().parents[1] / "render" / "data"


def no_state() -> StackState:
    return StackState("s", fingerprint_key=KEY)


def inline_state() -> StackState:
    """Managed, with the inline connector's credential last applied (so it is not a rotated one)."""
    return managed_state(**{ADDR_R: ResourceState(ADDR_R, "model", "R", server_version="1",
                                                  credential_fingerprint=fingerprint({"api_key": Secret("k1")}, KEY))})


PIPELINE = {"id": "p", "processors": [{"ml_inference": {"model_id": "${model:g/r}"}}]}
AGENT = {"name": "a", "type": "flow", "description": "new"}
AGENT_SRC = {"name": "a", "type": "flow", "description": "old", "created_time": 1, "last_updated_time": 1}


def consumers_state() -> StackState:
    """inline_state, also managing the pipeline and the agent."""
    return managed_state(**{ADDR_R: inline_state().resources[ADDR_R],
                            'ingest_pipeline["p"]': ResourceState('ingest_pipeline["p"]', "ingest_pipeline", "p"),
                            'agent["a"]': ResourceState('agent["a"]', "agent", "A")})


def _consumers(mutate=None):
    def go(d):
        d["ingest_pipelines"], d["agents"] = [PIPELINE], [AGENT]
        if mutate:
            mutate(d)
    return go


def _set(path, **values):
    """A mutation of the desired-state file: update the mapping at `path` (keys and indexes)."""
    def mutate(d):
        node = d
        for p in path:
            node = node[p]
        node.update(values)
    return mutate


def _inline(parameters=None):
    def mutate(d):
        d["models"][0]["connector"] = dict(INLINE, **({"parameters": parameters} if parameters else {}))
    return mutate


# name: (file mutation, observed(**kw), state factory, plan options, address, expected codes)
CASES = {
    "create": (None, dict(connector=None), managed_state, None, ADDR_C, (R.DELETED_OUTSIDE,)),
    "create_new": (None, {}, no_state, "empty", ADDR_C, (R.NOT_ON_CLUSTER,)),
    "register_new": (None, {}, no_state, "empty", ADDR_R, (R.NOT_ON_CLUSTER,)),
    "group_new": (None, {}, no_state, "empty", ADDR_G, (R.NOT_ON_CLUSTER,)),
    "register_again": (None, dict(remote=None), managed_state, None, ADDR_R, (R.DELETED_OUTSIDE,)),
    "adopt_connector": (None, {}, no_state, None, ADDR_C, (R.UNMANAGED_MATCH,)),
    "adopt_group": (None, {}, no_state, None, ADDR_G, (R.UNMANAGED_MATCH,)),
    "adopt_version": (None, {}, no_state, None, ADDR_M, (R.UNMANAGED_MATCH,)),
    "adopt_and_update": (_set(["model_groups", 0], description="new"), {}, no_state, None, ADDR_G,
                         (R.UNMANAGED_MATCH, R.FIELDS_DIFFER)),
    "update_connector": (_set(["connectors", 0], description="new"), {}, managed_state, None, ADDR_C,
                         (R.FIELDS_DIFFER,)),
    "update_group": (_set(["model_groups", 0], description="new"), {}, managed_state, None, ADDR_G,
                     (R.FIELDS_DIFFER,)),
    "update_model": (_set(["models", 1], description="new"), {}, managed_state, None, ADDR_M, (R.FIELDS_DIFFER,)),
    "credential": (_set(["connectors", 0], credential={"api_key": "k2"}), {}, managed_state, None, ADDR_C,
                   (R.CREDENTIAL_CHANGED,)),
    "fields_and_credential": (_set(["connectors", 0], credential={"api_key": "k2"}, description="new"), {},
                              managed_state, None, ADDR_C, (R.FIELDS_DIFFER, R.CREDENTIAL_CHANGED)),
    "replace_artifact": (_set(["models", 1, "versions", 0], model_content_hash_value=HASH2), {}, managed_state, None,
                         ADDR_M, (R.FIELDS_FORCE_REPLACE,)),
    "replace_function": (lambda d: (d["models"][1].update(function_name="sparse_encoding", description="x"),
                                    d["models"][1].pop("model_config")),
                         dict(local=dict(LOCAL_SRC, algorithm="SPARSE_ENCODING", model_config=None)), managed_state,
                         None, ADDR_M, (R.FUNCTION_NOT_UPDATABLE,)),
    "replace_connector_kind": (_inline(), {}, inline_state, None, ADDR_R, (R.CONNECTOR_KIND_CHANGED,)),
    "replace_inline_parameters": (_inline({"model": "y"}), dict(remote=REMOTE_INLINE_SRC), inline_state, None,
                                  ADDR_R, (R.INLINE_PARAMETERS_ADDED,)),
    "replace_and_credential": (_inline(), {}, managed_state, None, ADDR_R,
                               (R.CONNECTOR_KIND_CHANGED, R.CREDENTIAL_CHANGED)),
    "deploy": (_set(["models", 1], deploy=True), {}, managed_state, None, ADDR_M, (R.NOT_DEPLOYED,)),
    "undeploy": (_set(["models", 0], deploy=False), {}, managed_state, None, ADDR_R, (R.DEPLOYED_UNWANTED,)),
    "update_and_deploy": (_set(["models", 1], deploy=True, description="new"), {}, managed_state, None, ADDR_M,
                          (R.FIELDS_DIFFER, R.NOT_DEPLOYED)),
    "redeploy": (_set(["connectors", 0], description="new"), {}, managed_state, None, ADDR_R,
                 (R.CONNECTOR_UPDATE_REDEPLOY,)),
    "deploy_then_redeploy": (_set(["connectors", 0], description="new"),
                             dict(remote=dict(REMOTE_SRC, model_state="DEPLOY_FAILED")), managed_state, None, ADDR_R,
                             (R.NOT_DEPLOYED, R.CONNECTOR_UPDATE_REDEPLOY)),
    "delete": (lambda d: d["models"].pop(0), {}, managed_state, None, ADDR_R, (R.NOT_IN_FILE,)),
    "forget": (lambda d: d["models"].pop(0), dict(remote=None), managed_state, None, ADDR_R, (R.ALREADY_GONE,)),
    "destroy": (None, {}, managed_state, PlanOptions(destroy=True), ADDR_G, (R.DESTROY_REQUESTED,)),
    "unmanaged_versions": (None, dict(extra_models=[EXTRA]), managed_state, None, ADDR_G, (R.UNMANAGED_VERSIONS,)),
    "update_and_unmanaged_versions": (_set(["model_groups", 0], description="new"), dict(extra_models=[EXTRA]),
                                      managed_state, None, ADDR_G, (R.FIELDS_DIFFER, R.UNMANAGED_VERSIONS)),
    "up_to_date": (None, {}, managed_state, None, ADDR_M, (R.UP_TO_DATE,)),
    "reference_moved": (_consumers(_inline()), dict(ingest_pipelines={"p": {"processors": [
        {"ml_inference": {"model_id": "R"}}]}}, agents={"A": dict(AGENT_SRC, description="new")}), consumers_state,
        None, 'ingest_pipeline["p"]', (R.REFERENCE_MOVED,)),
    "agent_no_update": (_consumers(), dict(ingest_pipelines={"p": {"processors": [
        {"ml_inference": {"model_id": "R"}}]}}, agents={"A": AGENT_SRC}), consumers_state, None, 'agent["a"]',
        (R.FIELDS_DIFFER, R.NO_UPDATE_API)),
}
APPLY_ONLY = {R.RESUME, R.SUPERSEDED}   # made up by the apply driver, never planned


def _plan(case: str) -> Plan:
    mutate, obs, state, options, _, _ = CASES[case]
    o = Observed() if options == "empty" else observed(**obs)
    return plan(desired(mutate), o, state(), options if isinstance(options, PlanOptions) else PlanOptions())


def _change(p: Plan, address: str) -> ResourceChange:
    return next(c for c in p.changes if str(c.address) == address)


@pytest.mark.parametrize("case", sorted(CASES))
def test_planner_gives_each_reason_its_code(case):
    p = _plan(case)
    ch = _change(p, CASES[case][4])
    assert ch.reason_codes == CASES[case][5], ch.reason


@pytest.mark.parametrize("case", sorted(CASES))
def test_one_code_per_part_of_the_text_in_every_change(case):
    for ch in _plan(case).changes:
        assert ch.reason_codes and all(isinstance(r, Reason) for r in ch.reason_codes), ch
        # One part of the text holds "; " itself, which is why nothing may split the text to classify it.
        parts = ch.reason.replace("already gone from the cluster; forget it", "already gone").split("; ")
        assert len(ch.reason_codes) == len(parts), (ch.reason, ch.reason_codes)
        assert (ch.reason_codes == (R.UP_TO_DATE,)) is (ch.reason == "up to date")


def test_every_code_the_planner_can_give_is_covered():
    assert {r for case in CASES.values() for r in case[5]} == set(Reason) - APPLY_ONLY


def test_codes_are_snake_case_and_documented():
    documented = (Path(__file__).resolve().parents[2] / "docs" / "plan-format.md").read_text(encoding="utf-8")
    for r in Reason:
        assert r.value == r.name.lower() and f"`{r.value}`" in documented, r


def test_codes_round_trip_through_json():
    p = _plan("deploy_then_redeploy")
    doc = json.loads(json.dumps(p.to_json()))
    assert doc["format_version"] == FORMAT_VERSION == "1.3"
    rc = next(c for c in doc["resource_changes"] if c["address"] == ADDR_R)
    assert rc["reason_codes"] == ["not_deployed", "connector_update_redeploy"]
    assert Plan.from_json(doc) == p


def test_a_1_0_plan_file_still_loads_without_codes():
    doc = json.loads((DATA / "plan-1.0.json").read_text(encoding="utf-8"))
    assert doc["format_version"] == "1.0" and not any("reason_codes" in c for c in doc["resource_changes"])
    p = Plan.from_json(doc)
    assert p.changes and all(c.reason_codes == () for c in p.changes)
    assert p.changes[0].reason == "not on the cluster"
    assert p.to_json()["format_version"] == FORMAT_VERSION


def test_another_major_version_is_still_refused():
    doc = json.loads((DATA / "plan-1.0.json").read_text(encoding="utf-8"))
    with pytest.raises(ValueError, match="not supported"):
        Plan.from_json(dict(doc, format_version="2.0"))
