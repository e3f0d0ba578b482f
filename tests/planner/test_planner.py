"""The pure planner, table by table: every action and ordering rule, no cluster."""

from __future__ import annotations

import copy

import pytest

from mlsync.core.address import Address
from mlsync.input.model import StackFile
from mlsync.input.flatten import flatten
from mlsync.core.errors import PlanError
from mlsync.core.observed import Observed, ObservedObject
from mlsync.core.plan import Action, Plan
from mlsync.core.planner import PlanOptions, diff_forms, plan
from mlsync.core.secrets import fingerprint, Secret
from mlsync.core.state import ResourceState, StackState
from mlsync.core import normalize

HASH = "a" * 64
HASH2 = "b" * 64
KEY = "test-key"

BASE = {
    "version": 1, "stack": "s",
    "connectors": [{"name": "c", "protocol": "http", "credential": {"api_key": "k1"},
                    "parameters": {"model": "x", "temperature": 0.5},
                    "actions": [{"action_type": "predict", "method": "POST", "url": "http://127.0.0.1:1/v1"}]}],
    "model_groups": [{"name": "g", "description": "group"}],
    "models": [
        {"name": "r", "model_group": "g", "function_name": "remote", "connector": "c", "deploy": True},
        {"name": "m", "model_group": "g", "model_format": "TORCH_SCRIPT",
         "model_config": {"model_type": "bert", "embedding_dimension": 3, "framework_type": "sentence_transformers",
                          "normalize_result": False},
         "versions": [{"version": "1.0", "url": "http://h/1.zip", "model_content_hash_value": HASH}]},
    ],
}

CONNECTOR_SRC = {"name": "c", "version": "1", "protocol": "http",
                 "parameters": {"model": "x", "temperature": "0.5"},
                 "actions": [{"action_type": "PREDICT", "method": "POST", "url": "http://127.0.0.1:1/v1"}]}
GROUP_SRC = {"name": "g", "description": "group", "latest_version": 2, "access": "public"}
REMOTE_SRC = {"name": "r", "algorithm": "REMOTE", "model_group_id": "G", "connector_id": "C",
              "model_state": "DEPLOYED", "model_version": "1"}
LOCAL_SRC = {"name": "m", "algorithm": "TEXT_EMBEDDING", "model_group_id": "G", "model_format": "TORCH_SCRIPT",
             "model_state": "REGISTERED", "model_version": "2", "model_content_hash_value": HASH,
             "model_config": {"model_type": "bert", "embedding_dimension": 3, "framework_type": "SENTENCE_TRANSFORMERS"}}

ADDR_C = 'connector["c"]'
ADDR_G = 'model_group["g"]'
ADDR_R = 'model["g"]["r"]'
ADDR_M = 'model["g"]["m"]["1.0"]'


def desired(mutate=None):
    d = copy.deepcopy(BASE)
    if mutate:
        mutate(d)
    return flatten(StackFile.model_validate(d))


def observed(connector=CONNECTOR_SRC, group=GROUP_SRC, remote=REMOTE_SRC, local=LOCAL_SRC, extra_models=(),
             ingest_pipelines=None, agents=None):
    models = {}
    if remote is not None:
        models["R"] = ObservedObject("model", "R", dict(remote), 1, 1)
    if local is not None:
        models["M"] = ObservedObject("model", "M", dict(local), 2, 1)
    for i, src in enumerate(extra_models):
        models[f"X{i}"] = ObservedObject("model", f"X{i}", dict(src), 9, 1)
    return Observed(
        connectors={"C": ObservedObject("connector", "C", dict(connector), 1, 1)} if connector is not None else {},
        groups={"G": ObservedObject("model_group", "G", dict(group), 1, 1)} if group is not None else {},
        models=models, cluster_version="2.19.6",
        ingest_pipelines={i: ObservedObject("ingest_pipeline", i, dict(b)) for i, b in (ingest_pipelines or {}).items()},
        agents={i: ObservedObject("agent", i, dict(b), 1, 1) for i, b in (agents or {}).items()})


def managed_state(cred="k1", **overrides):
    st = StackState("s", fingerprint_key=KEY)
    st.resources = {
        ADDR_C: ResourceState(ADDR_C, "connector", "C", credential_fingerprint=fingerprint({"api_key": Secret(cred)}, KEY)),
        ADDR_G: ResourceState(ADDR_G, "model_group", "G"),
        ADDR_R: ResourceState(ADDR_R, "model", "R", server_version="1"),
        ADDR_M: ResourceState(ADDR_M, "model", "M", server_version="2"),
    }
    st.resources.update(overrides)
    return st


def actions(p: Plan) -> dict[str, list[str]]:
    return {str(c.address): [a.value for a in c.actions] for c in p.changes}


def test_empty_cluster_creates_everything_in_dependency_order():
    p = plan(desired(), Observed(), StackState("s", fingerprint_key=KEY))
    assert actions(p) == {ADDR_C: ["create"], ADDR_G: ["create"], ADDR_R: ["register", "deploy"], ADDR_M: ["register"]}
    assert [c.address.kind for c in p.changes] == ["connector", "model_group", "model", "model"]
    r = next(c for c in p.changes if str(c.address) == ADDR_R)
    assert r.server_id is None and r.depends_on == (ADDR_G, ADDR_C)
    m = next(c for c in p.changes if str(c.address) == ADDR_M)
    assert m.artifact == {"url": "http://h/1.zip", "sha256": HASH}


def test_unchanged_managed_cluster_is_all_noop():
    p = plan(desired(), observed(), managed_state())
    assert not p.has_changes, actions(p)
    assert {c.server_id for c in p.changes} == {"C", "G", "R", "M"}
    assert next(c for c in p.changes if str(c.address) == ADDR_M).server_version == "2"


def test_no_state_adopts_matching_objects():
    p = plan(desired(), observed(), StackState("s", fingerprint_key=KEY))
    assert actions(p) == {ADDR_C: ["adopt"], ADDR_G: ["adopt"], ADDR_R: ["adopt"], ADDR_M: ["adopt"]}
    assert any("cannot read back" in w for w in p.warnings)


@pytest.mark.parametrize("mutate,address,expected,path", [
    (lambda d: d["connectors"][0].update(description="new"), ADDR_C, ["update"], "description"),
    (lambda d: d["connectors"][0]["parameters"].update(model="y"), ADDR_C, ["update"], "parameters.model"),
    (lambda d: d["connectors"][0]["actions"][0].update(url="http://127.0.0.1:2/v1"), ADDR_C, ["update"], "actions[0].url"),
    (lambda d: d["model_groups"][0].update(description="other"), ADDR_G, ["update"], "description"),
    (lambda d: d["models"][1].update(description="sentence"), ADDR_M, ["update"], "description"),
    (lambda d: d["models"][1]["model_config"].update(pooling_mode="CLS"), ADDR_M, ["update"], "model_config.pooling_mode"),
    (lambda d: d["models"][0].update(rate_limiter={"limit": 5, "unit": "minutes"}), ADDR_R, ["update"], "rate_limiter"),
])
def test_field_change_updates_in_place(mutate, address, expected, path):
    p = plan(desired(mutate), observed(), managed_state())
    change = next(c for c in p.changes if str(c.address) == address)
    assert [a.value for a in change.actions][-len(expected):] == expected
    assert any(f.path == path or f.path.startswith(path) for f in change.field_changes), change.field_changes
    assert not any(f.forces_replace for f in change.field_changes)


def test_connector_update_while_model_deployed_plans_undeploy_update_redeploy():
    p = plan(desired(lambda d: d["connectors"][0].update(description="new")), observed(), managed_state())
    assert actions(p)[ADDR_C] == ["update"]
    assert actions(p)[ADDR_R] == ["undeploy", "deploy"]
    r = next(c for c in p.changes if str(c.address) == ADDR_R)
    assert ADDR_C in r.depends_on and "refuses" in r.reason


def test_credential_change_is_detected_by_fingerprint_and_masked():
    p = plan(desired(lambda d: d["connectors"][0].update(credential={"api_key": "k2"})), observed(), managed_state())
    c = next(c for c in p.changes if str(c.address) == ADDR_C)
    assert [a.value for a in c.actions] == ["update"]
    cred = [f for f in c.field_changes if f.path == "credential"]
    assert cred and cred[0].sensitive and cred[0].before == "(sensitive)" and cred[0].after == "(sensitive)"
    assert "k2" not in repr(p.to_json()) and "k1" not in repr(p.to_json())


def test_new_artifact_for_a_label_forces_replace():
    p = plan(desired(lambda d: d["models"][1]["versions"][0].update(model_content_hash_value=HASH2)), observed(),
             managed_state())
    m = next(c for c in p.changes if str(c.address) == ADDR_M)
    assert [a.value for a in m.actions] == ["replace"]
    assert any(f.path == "model_content_hash_value" and f.forces_replace for f in m.field_changes)


def test_function_without_update_api_replaces_instead_of_updating():
    src = dict(LOCAL_SRC, algorithm="SPARSE_ENCODING", model_config=None)
    def mutate(d):
        d["models"][1].update(function_name="sparse_encoding", description="x")
        del d["models"][1]["model_config"]
    p = plan(desired(mutate), observed(local=src), managed_state())
    assert actions(p)[ADDR_M] == ["replace"]


def test_added_version_registers_and_keeps_the_old_one():
    def mutate(d):
        d["models"][1]["versions"].append({"version": "1.1", "url": "http://h/2.zip", "model_content_hash_value": HASH2,
                                           "deploy": True})
    p = plan(desired(mutate), observed(), managed_state())
    assert actions(p)['model["g"]["m"]["1.1"]'] == ["register", "deploy"]
    assert actions(p)[ADDR_M] == ["no-op"]


def test_removed_version_is_deleted_and_undeployed_first_if_deployed():
    st = managed_state()
    p = plan(desired(lambda d: d["models"].pop(0)), observed(), st)
    assert actions(p)[ADDR_R] == ["undeploy", "delete"]
    assert p.changes[-1].address == Address.parse(ADDR_R)


def test_deletes_run_last_in_reverse_dependency_order():
    p = plan(desired(), observed(), managed_state(), PlanOptions(destroy=True))
    kinds = [c.address.kind for c in p.changes]
    assert kinds == ["model", "model", "model_group", "connector"]
    assert all(Action.DELETE in c.actions for c in p.changes)


def test_prevent_destroy_makes_the_plan_fail():
    d = desired(lambda d: d["model_groups"][0].update(lifecycle={"prevent_destroy": True}))
    with pytest.raises(PlanError, match="prevent_destroy"):
        plan(d, observed(), managed_state(), PlanOptions(destroy=True))


def test_deploy_and_undeploy_follow_the_file():
    p = plan(desired(lambda d: d["models"][1].update(deploy=True)), observed(), managed_state())
    assert actions(p)[ADDR_M] == ["deploy"]
    p = plan(desired(lambda d: d["models"][0].update(deploy=False)), observed(), managed_state())
    assert actions(p)[ADDR_R] == ["undeploy"]


def test_out_of_band_undeploy_is_drift():
    p = plan(desired(), observed(remote=dict(REMOTE_SRC, model_state="UNDEPLOYED")), managed_state())
    r = next(c for c in p.changes if str(c.address) == ADDR_R)
    assert [a.value for a in r.actions] == ["deploy"] and r.drift


def test_deleted_out_of_band_is_recreated_and_marked_drift():
    p = plan(desired(), observed(remote=None), managed_state())
    r = next(c for c in p.changes if str(c.address) == ADDR_R)
    assert [a.value for a in r.actions] == ["register", "deploy"] and r.drift and "deleted outside" in r.reason


def test_edited_out_of_band_is_drift_against_last_applied():
    st = managed_state()
    st.resources[ADDR_G].applied_fingerprint = normalize.digest({"name": "g", "description": "group"})
    p = plan(desired(), observed(group=dict(GROUP_SRC, description="edited")), st)
    g = next(c for c in p.changes if str(c.address) == ADDR_G)
    assert g.drift and [a.value for a in g.actions] == ["update"]


def test_ambiguous_adoption_is_an_error_naming_import():
    dup = dict(CONNECTOR_SRC)
    obs = observed()
    obs.connectors["C2"] = ObservedObject("connector", "C2", dup, 1, 1)
    with pytest.raises(PlanError, match=r"mlsync import"):
        plan(desired(), obs, StackState("s", fingerprint_key=KEY))


def test_implicit_group_must_not_join_an_unmanaged_group():
    def mutate(d):
        d["models"][1].pop("model_group")
        d["models"][1]["name"] = "g"
    with pytest.raises(PlanError, match="implicit group"):
        plan(desired(mutate), observed(), StackState("s", fingerprint_key=KEY))


def test_unmanaged_objects_are_never_deleted():
    extra = dict(LOCAL_SRC, name="someone-elses", model_content_hash_value=HASH2)
    p = plan(desired(), observed(extra_models=[extra]), managed_state())
    assert not any(Action.DELETE in c.actions for c in p.changes)
    assert not p.has_changes


def test_unmanaged_version_in_a_managed_group_is_drift_on_the_group():
    extra = dict(LOCAL_SRC, name="someone-elses", model_content_hash_value=HASH2, model_version="3")
    p = plan(desired(), observed(extra_models=[extra]), managed_state())
    g = next(c for c in p.changes if str(c.address) == ADDR_G)
    assert g.is_noop and g.drift
    assert "X0 ('someone-elses', version 3)" in g.reason and "does not manage" in g.reason
    assert not any("X0" in w for w in p.warnings)
    assert [str(c.address) for c in p.changes if c.drift] == [ADDR_G]


def test_unmanaged_version_in_a_group_being_adopted_is_a_warning():
    extra = dict(LOCAL_SRC, name="someone-elses", model_content_hash_value=HASH2)
    p = plan(desired(), observed(extra_models=[extra]), StackState("s", fingerprint_key=KEY))
    assert any("X0" in w and "does not manage" in w for w in p.warnings)
    assert not any(c.drift for c in p.changes)


def _applied(st, address, form, deploy=None):
    st.resources[address].applied_form = form
    st.resources[address].applied_fingerprint = normalize.digest(form)
    st.resources[address].applied_deploy = deploy
    return st


def test_edit_in_the_file_since_the_last_apply_is_not_drift():
    st = _applied(managed_state(), ADDR_G, {"name": "g", "description": "group"})
    p = plan(desired(lambda d: d["model_groups"][0].update(description="new")), observed(), st)
    g = next(c for c in p.changes if str(c.address) == ADDR_G)
    assert [a.value for a in g.actions] == ["update"] and not g.drift


def test_edit_on_the_cluster_is_drift_against_the_applied_form_even_when_the_file_changed_too():
    st = _applied(managed_state(), ADDR_G, {"name": "g", "description": "group"})
    p = plan(desired(lambda d: d["model_groups"][0].update(description="new")),
             observed(group=dict(GROUP_SRC, description="edited")), st)
    g = next(c for c in p.changes if str(c.address) == ADDR_G)
    assert [a.value for a in g.actions] == ["update"] and g.drift


def test_a_field_the_file_stops_managing_is_not_drift():
    st = _applied(managed_state(), ADDR_G, {"name": "g", "description": "group"})
    p = plan(desired(lambda d: d["model_groups"][0].pop("description")), observed(), st)
    g = next(c for c in p.changes if str(c.address) == ADDR_G)
    assert g.is_noop and not g.drift


def test_cluster_already_matching_a_changed_file_is_neither_change_nor_drift():
    st = _applied(managed_state(), ADDR_G, {"name": "g", "description": "group"})
    p = plan(desired(lambda d: d["model_groups"][0].update(description="edited")),
             observed(group=dict(GROUP_SRC, description="edited")), st)
    g = next(c for c in p.changes if str(c.address) == ADDR_G)
    assert g.is_noop and not g.drift


def test_credential_rotated_since_the_last_apply_is_drift():
    p = plan(desired(lambda d: d["connectors"][0].update(credential={"api_key": "k2"})), observed(), managed_state())
    c = next(c for c in p.changes if str(c.address) == ADDR_C)
    assert c.drift and "last applied" in c.reason and "fields differ" not in c.reason


@pytest.mark.parametrize("state,deploy,applied,expected,drift", [
    ("UNDEPLOYED", True, True, ["deploy"], True),
    ("DEPLOY_FAILED", True, True, ["deploy"], True),
    ("DEPLOY_FAILED", True, None, ["deploy"], True),      # a state from before applied_deploy: drift
    ("REGISTERED", True, False, ["deploy"], False),       # the file asked for deploy since the last apply
    ("DEPLOYED", False, False, ["undeploy"], True),       # deployed outside mlsync (a Predict's auto-deploy)
    ("DEPLOYED", False, True, ["undeploy"], False),       # the file said deploy: false since the last apply
])
def test_deploy_state_drift_is_told_from_a_changed_deploy_flag(state, deploy, applied, expected, drift):
    st = managed_state()
    st.resources[ADDR_R].applied_deploy = applied
    p = plan(desired(lambda d: d["models"][0].update(deploy=deploy)), observed(remote=dict(REMOTE_SRC, model_state=state)), st)
    r = next(c for c in p.changes if str(c.address) == ADDR_R)
    assert [a.value for a in r.actions] == expected and r.drift is drift
    assert state in r.reason


def test_access_fields_without_access_control_are_an_error():
    with pytest.raises(PlanError, match="access control"):
        plan(desired(lambda d: d["model_groups"][0].update(access_mode="restricted", backend_roles=["ml"])),
             Observed(), StackState("s", fingerprint_key=KEY))


def test_plan_is_deterministic_and_round_trips_through_json():
    a = plan(desired(), observed(), StackState("s", fingerprint_key=KEY))
    b = plan(desired(), observed(), StackState("s", fingerprint_key=KEY))
    assert a.to_json() == b.to_json()
    assert Plan.from_json(a.to_json()).to_json() == a.to_json()
    assert a.observed_fingerprints == {"C": "seq:1:1", "G": "seq:1:1", "M": "seq:2:1", "R": "seq:1:1"}


@pytest.mark.parametrize("state", ["DEPLOY_FAILED", "DEPLOYING", "PARTIALLY_DEPLOYED"])
def test_connector_update_undeploys_a_model_that_may_still_be_loaded(state):
    # After a restart, auto-redeploy loads a model into memory while its document still reads
    # DEPLOY_FAILED; the server then refuses the connector update (seen in CI).
    p = plan(desired(lambda d: d["connectors"][0].update(description="new")),
             observed(remote=dict(REMOTE_SRC, model_state=state)), managed_state())
    assert actions(p)[ADDR_C] == ["update"]
    assert actions(p)[ADDR_R] == ["undeploy", "deploy"]


def test_connector_update_leaves_a_registered_model_alone():
    p = plan(desired(lambda d: (d["connectors"][0].update(description="new"), d["models"][0].update(deploy=False))),
             observed(remote=dict(REMOTE_SRC, model_state="REGISTERED")), managed_state())
    assert actions(p)[ADDR_C] == ["update"]
    assert actions(p)[ADDR_R] == ["no-op"]


def test_unmanaged_failed_model_on_an_updated_connector_is_a_warning_not_an_error():
    extra = dict(REMOTE_SRC, name="other", model_state="DEPLOY_FAILED")
    p = plan(desired(lambda d: d["connectors"][0].update(description="new")), observed(extra_models=[extra]),
             managed_state())
    assert actions(p)[ADDR_C] == ["update"]
    assert any("X0" in w and "DEPLOY_FAILED" in w for w in p.warnings)



def test_prevent_destroy_on_a_model_without_group_also_guards_its_implicit_group():
    def mutate(d):
        d["models"][0].update(lifecycle={"prevent_destroy": True})
        d["models"][0].pop("model_group")
    res = {str(r.address): r for r in desired(mutate).resources.values()}
    assert res['model_group["r"]'].implicit and res['model_group["r"]'].prevent_destroy


@pytest.mark.parametrize("file_setting, server_setting, changed", [
    ({"is_auto_deploy_enabled": False}, {"is_auto_deploy_enabled": False, "model_ttl_minutes": -1}, False),
    ({"is_auto_deploy_enabled": True}, {"is_auto_deploy_enabled": False, "model_ttl_minutes": -1}, True),
    ({"model_ttl_minutes": 5}, {"model_ttl_minutes": 5}, False),
    ({"model_ttl_minutes": 5}, {"model_ttl_minutes": -1}, True),
])
def test_deploy_setting_without_a_ttl_matches_the_servers_minus_one(file_setting, server_setting, changed):
    # The server fills model_ttl_minutes: -1 ("no TTL") when none is sent; found by the export round trip.
    p = plan(desired(lambda d: d["models"][0].update(deploy_setting=file_setting)),
             observed(remote={**REMOTE_SRC, "deploy_setting": server_setting}), managed_state())
    change = next(c for c in p.changes if str(c.address) == ADDR_R)
    assert bool(change.field_changes) is changed, change.field_changes


def _whole_deepdiff(before: dict, after: dict, replace_fields=()) -> list[tuple]:
    """What diff_forms gave when it ran DeepDiff on the whole forms (its key-by-key shortcut must agree)."""
    from deepdiff import DeepDiff
    from mlsync.core.planner import _path

    out = []
    for items in DeepDiff(before, after, view="tree", verbose_level=2).values():
        for item in items:
            parts = item.path(output_format="list")
            b = None if type(item.t1).__name__ == "NotPresent" else item.t1
            a = None if type(item.t2).__name__ == "NotPresent" else item.t2
            out.append((_path(parts), b, a, bool(parts) and parts[0] in replace_fields))
    return sorted(out, key=lambda t: t[0])


@pytest.mark.parametrize("before,after", [
    ({"a": 1}, {"a": 1}),
    ({"a": 1, "b": "x"}, {"a": 2, "b": "x"}),
    ({"a": 1}, {"a": 1, "b": {"c": [1, 2]}}),
    ({"a": 1, "b": {"c": 1}}, {"a": 1}),
    ({"m": {"x": 1, "y": {"z": "1"}}}, {"m": {"x": 1, "y": {"z": "2", "w": 3}}}),
    ({"actions": [{"url": "u1", "method": "POST"}]}, {"actions": [{"url": "u2", "method": "POST"}]}),
    ({"actions": [{"url": "u1"}]}, {"actions": [{"url": "u1"}, {"url": "u2"}]}),
    ({"rate_limiter": {"limit": "5"}}, {"rate_limiter": {"limit": 5}}),
    ({"p": {"k": "v"}}, {"p": ["k"]}),
    ({"model_content_hash_value": "a" * 64, "model_format": "ONNX"}, {"model_content_hash_value": "b" * 64,
                                                                      "model_format": "TORCH_SCRIPT"}),
    ({"model_config": {"pooling_mode": "MEAN"}}, {"model_config": {"pooling_mode": "CLS"}}),
])
def test_diff_forms_key_by_key_agrees_with_deepdiff_on_the_whole_form(before, after):
    replace = ("model_content_hash_value", "model_format", "model_config")
    got = [(f.path, f.before, f.after, f.forces_replace) for f in diff_forms(before, after, replace_fields=replace)]
    assert got == _whole_deepdiff(before, after, replace)


def test_planning_is_linear_not_quadratic_in_the_number_of_objects():
    """The planner once rebuilt the connector-name map for every model and scanned every observed
    object for every adoption; count the work instead of timing it (timing is in benchmarks/)."""
    from mlsync.core import planner as planner_module

    calls = {"n": 0}
    real = planner_module._connector_names

    def counting(ctx):
        calls["n"] += 1
        return real(ctx)
    d = copy.deepcopy(BASE)
    d["models"] += [{"name": f"r{i}", "model_group": "g", "function_name": "remote", "connector": "c"}
                    for i in range(50)]
    extra = [dict(REMOTE_SRC, name=f"r{i}", model_state="REGISTERED") for i in range(50)]
    import unittest.mock as mock
    with mock.patch.object(planner_module, "_connector_names", counting):
        p = plan(flatten(StackFile.model_validate(d)), observed(extra_models=extra), StackState("s", fingerprint_key=KEY))
    assert calls["n"] == 1
    assert sum(Action.ADOPT in c.actions for c in p.changes) == 2 + 2 + 50


# A model that serves on fewer nodes than ML Commons planned (a node came back without it, or a deploy
# failed on one node) is deployed again: that loads it on the nodes that lack it (tests/multinode/).
@pytest.mark.parametrize("src,deploy,expected,drift,why", [
    (dict(model_state="PARTIALLY_DEPLOYED", planning_worker_node_count=2, current_worker_node_count=1), True,
     ["deploy"], True, "partially deployed (state PARTIALLY_DEPLOYED, 1 of 2 nodes)"),
    (dict(model_state="PARTIALLY_DEPLOYED"), True, ["deploy"], True, "partially deployed (state PARTIALLY_DEPLOYED)"),
    (dict(model_state="DEPLOYED", planning_worker_node_count=2, current_worker_node_count=1), True,
     ["deploy"], True, "state DEPLOYED but on 1 of 2 planned nodes"),
    # a lost node: ML Commons shrinks the plan to the nodes that remain -> fully deployed, nothing to do
    (dict(model_state="DEPLOYED", planning_worker_node_count=1, current_worker_node_count=1), True,
     ["no-op"], False, "up to date"),
    (dict(model_state="PARTIALLY_DEPLOYED", planning_worker_node_count=2, current_worker_node_count=1), False,
     ["undeploy"], False, "deploy: false"),    # the file turned deploy off since the last apply
])
def test_a_partially_deployed_model_is_deployed_again(src, deploy, expected, drift, why):
    st = managed_state()
    st.resources[ADDR_R].applied_deploy = True
    p = plan(desired(lambda d: d["models"][0].update(deploy=deploy)), observed(remote=dict(REMOTE_SRC, **src)), st)
    r = next(c for c in p.changes if str(c.address) == ADDR_R)
    assert [a.value for a in r.actions] == expected and r.drift is drift and r.deployed
    assert why in r.reason
