"""The drift report (mlsync/drift.py) and its renderers, from plan + state + observed: no cluster."""

from __future__ import annotations

import json

import pytest

from mlsync.core import normalize
from mlsync.core.drift import DRIFT, PENDING, DriftItem, DriftReport, DriftType, FieldDrift, build
from mlsync.core.planner import plan
from mlsync.render import drift as render_drift
from mlsync.core.state import StackState
from test_planner import (ADDR_C, ADDR_G, ADDR_M, ADDR_R, CONNECTOR_SRC, GROUP_SRC, KEY, LOCAL_SRC, REMOTE_SRC,
                          desired, managed_state, observed)

GROUP_FORM = {"name": "g", "description": "group"}


def report(d=None, obs=None, st=None) -> tuple[DriftReport, object]:
    d, obs, st = d or desired(), obs or observed(), st or managed_state()
    p = plan(d, obs, st)
    return build(p, st, obs), p


def only(rep: DriftReport, address: str) -> list[DriftItem]:
    return [i for i in rep.items if i.address == address]


def applied(st, address, form, fingerprint_only=False):
    st.resources[address].applied_fingerprint = normalize.digest(form)
    st.resources[address].applied_form = None if fingerprint_only else form
    return st


def assert_plan_agrees(rep: DriftReport, p) -> None:
    """Every drift item is in the plan's "changed outside mlsync" section; no pending item is."""
    drifted = {str(c.address) for c in p.changes if c.drift}
    assert {i.address for i in rep.drift} <= drifted, (rep.drift, drifted)
    assert not {i.address for i in rep.pending} - {i.address for i in rep.drift} & drifted


def test_a_clean_stack_reports_nothing_and_exits_0():
    rep, p = report()
    assert rep.items == () and rep.exit_code == 0 and rep.managed == 4
    assert render_drift.render(rep, "text").rstrip().endswith("No drift. The cluster matches the file and the last apply.")
    assert json.loads(render_drift.render(rep, "json"))["clean"] is True


def test_cluster_edit_is_drift_field_by_field_against_the_last_applied_form():
    st = applied(managed_state(), ADDR_G, GROUP_FORM)
    rep, p = report(obs=observed(group=dict(GROUP_SRC, description="edited by hand")), st=st)
    [item] = rep.items
    assert (item.kind, item.category, item.address, item.server_id) == (DriftType.EDITED, DRIFT, ADDR_G, "G")
    assert item.fields == (FieldDrift("description", "group", "edited by hand"),)
    assert item.before_is == "last_applied" and item.actions == ("update",) and rep.exit_code == 2
    assert_plan_agrees(rep, p)


def test_file_edit_is_pending_not_drift_and_still_exits_2():
    st = applied(managed_state(), ADDR_G, GROUP_FORM)
    rep, p = report(d=desired(lambda d: d["model_groups"][0].update(description="new")), st=st)
    [item] = rep.items
    assert (item.kind, item.category) == (DriftType.FILE_EDITED, PENDING)
    assert item.fields == (FieldDrift("description", "group", "new"),)
    assert rep.drift == () and rep.exit_code == 2
    assert_plan_agrees(rep, p)


def test_cluster_and_file_edits_of_different_fields_are_told_apart():
    form = normalize.connector_form(dict(CONNECTOR_SRC), access_control=False)
    st = applied(managed_state(), ADDR_C, form)
    rep, p = report(d=desired(lambda d: d["connectors"][0]["parameters"].update(model="y")),
                    obs=observed(connector=dict(CONNECTOR_SRC, parameters={"model": "x", "temperature": "0.9"})),
                    st=st)
    kinds = {i.kind: i for i in only(rep, ADDR_C)}
    assert kinds[DriftType.EDITED].fields == (FieldDrift("parameters.temperature", "0.5", "0.9"),)
    assert kinds[DriftType.FILE_EDITED].fields == (FieldDrift("parameters.model", "x", "y"),)
    assert_plan_agrees(rep, p)


@pytest.mark.parametrize("file_desc,cluster_desc,kind,before_is,field", [
    ("group", "hand", DriftType.EDITED, "last_applied", FieldDrift("description", "group", "hand")),
    ("new", "group", DriftType.FILE_EDITED, "last_applied", FieldDrift("description", "group", "new")),
    ("new", "hand", DriftType.EDITED, "file", FieldDrift("description", "new", "hand")),
])
def test_a_state_with_only_fingerprints_still_tells_cluster_from_file(file_desc, cluster_desc, kind, before_is, field):
    st = applied(managed_state(), ADDR_G, GROUP_FORM, fingerprint_only=True)
    rep, p = report(d=desired(lambda d: d["model_groups"][0].update(description=file_desc)),
                    obs=observed(group=dict(GROUP_SRC, description=cluster_desc)), st=st)
    [item] = rep.items
    assert (item.kind, item.before_is, item.fields) == (kind, before_is, (field,))
    assert_plan_agrees(rep, p)


def test_an_imported_object_never_applied_is_pending():
    rep, p = report(obs=observed(group=dict(GROUP_SRC, description="theirs")))   # no applied fingerprint
    [item] = rep.items
    assert item.kind is DriftType.FILE_EDITED and "never applied" in item.summary
    assert_plan_agrees(rep, p)


def test_deleted_out_of_band_is_drift_and_apply_recreates_it():
    rep, p = report(obs=observed(connector=None, remote=None))
    by = {i.address: i for i in rep.items}
    assert by[ADDR_C].kind is DriftType.DELETED and by[ADDR_C].actions == ("create",) and by[ADDR_C].server_id == "C"
    assert by[ADDR_R].kind is DriftType.DELETED and by[ADDR_R].actions == ("register", "deploy")
    assert "registers it again" in by[ADDR_R].summary
    assert_plan_agrees(rep, p)


def test_removed_from_the_file_is_pending_and_gone_too_is_drift():
    rep, _ = report(d=desired(lambda d: d["models"].pop(1)))
    [item] = rep.items
    assert (item.address, item.kind, item.actions) == (ADDR_M, DriftType.REMOVED, ("delete",))
    rep, _ = report(d=desired(lambda d: d["models"].pop(1)), obs=observed(local=None))
    [item] = rep.items
    assert item.kind is DriftType.DELETED and "forgets" in item.summary


def test_a_stack_never_applied_is_all_pending_additions():
    rep, _ = report(obs=observed(connector=None, group=None, remote=None, local=None),
                    st=StackState("s", fingerprint_key=KEY))
    assert {i.kind for i in rep.items} == {DriftType.ADDED} and len(rep.items) == 4 and rep.managed == 0
    rep, _ = report(st=StackState("s", fingerprint_key=KEY))   # everything exists: adoption
    assert all(i.kind is DriftType.ADDED and i.actions == ("adopt",) and "adopts" in i.summary for i in rep.items)


@pytest.mark.parametrize("state,deploy,applied_deploy,kind", [
    ("UNDEPLOYED", True, True, DriftType.UNDEPLOYED),
    ("REGISTERED", True, None, DriftType.UNDEPLOYED),
    ("DEPLOY_FAILED", True, True, DriftType.DEPLOY_FAILED),
    ("DEPLOYED", False, False, DriftType.DEPLOYED),
    ("REGISTERED", True, False, DriftType.DEPLOY_FLAG),
    ("DEPLOYED", False, True, DriftType.DEPLOY_FLAG),
])
def test_deploy_state_drift(state, deploy, applied_deploy, kind):
    st = managed_state()
    st.resources[ADDR_R].applied_deploy = applied_deploy
    rep, p = report(d=desired(lambda d: d["models"][0].update(deploy=deploy)),
                    obs=observed(remote=dict(REMOTE_SRC, model_state=state)), st=st)
    [item] = rep.items
    assert (item.address, item.kind, item.details["model_state"]) == (ADDR_R, kind, state)
    assert item.actions == (("deploy",) if deploy else ("undeploy",))
    assert_plan_agrees(rep, p)


def test_a_partially_deployed_version_is_worded_as_partial_not_undeployed():
    st = managed_state()
    st.resources[ADDR_R].applied_deploy = True
    src = dict(REMOTE_SRC, model_state="PARTIALLY_DEPLOYED", planning_worker_node_count=2, current_worker_node_count=1)
    rep, p = report(d=desired(lambda d: d["models"][0].update(deploy=True)), obs=observed(remote=src), st=st)
    [item] = rep.items
    assert item.kind is DriftType.UNDEPLOYED and item.actions == ("deploy",)
    assert "partially deployed (state PARTIALLY_DEPLOYED, 1 of 2 nodes)" in item.summary
    assert "undeployed outside mlsync" not in item.summary
    assert_plan_agrees(rep, p)


def test_unmanaged_version_in_a_managed_group_is_drift_apply_leaves_alone():
    extra = dict(LOCAL_SRC, name="someone-elses", model_content_hash_value="b" * 64, model_version="7")
    rep, p = report(obs=observed(extra_models=[extra]))
    [item] = rep.items
    assert (item.address, item.kind, item.server_id, item.server_version) == (ADDR_G, DriftType.UNMANAGED_VERSION, "X0", "7")
    assert not item.fixed_by_apply and rep.exit_code == 2
    assert """mlsync import --stack s 'model["g"]["someone-elses"]["LABEL"]' X0""" in item.summary
    assert_plan_agrees(rep, p)


def test_rotated_credential_is_drift_and_never_shown():
    secret = "super-secret-rotated-value"
    rep, p = report(d=desired(lambda d: d["connectors"][0].update(credential={"api_key": secret})))
    [item] = rep.items
    assert (item.kind, item.category, item.address) == (DriftType.CREDENTIAL, DRIFT, ADDR_C)
    assert item.fields == (FieldDrift("credential", "(sensitive)", "(sensitive)", True),)
    assert_plan_agrees(rep, p)
    for fmt in render_drift.FORMATS:
        text = render_drift.render(rep, fmt)
        assert secret not in text and "k1" not in text and "(sensitive)" in text


def every_kind_report() -> DriftReport:
    def item(kind, n=0, **kw):
        return DriftItem(f'model["g"]["m{n}"]["1"]', kind, f"{kind.value} summary", server_id=f"id{n}", **kw)
    items = [item(k, i, fields=(FieldDrift("description", "a\x1b[31m", "b"),), actions=("update",))
             for i, k in enumerate(DriftType)]
    return DriftReport("s", tuple(sorted(items, key=lambda i: i.category != DRIFT)), 12, "2.19.6", ("f.yaml",),
                       ("a warning",))


def test_renderers_show_every_item_with_its_address_and_the_json_is_versioned():
    rep = every_kind_report()
    text = render_drift.render(rep, "text")
    assert "Changed on the cluster since the last apply (drift):" in text
    assert "Changed in the file since the last apply (pending):" in text
    assert "\x1b" not in text   # control characters from the cluster are shown escaped
    for i in rep.items:
        assert i.address in text
    doc = json.loads(render_drift.render(rep, "json"))
    assert doc["format_version"] == "1.0" and doc["exit_code"] == 2 and not doc["clean"]
    assert [d["kind"] for d in doc["drift"]] == [k.value for k in DriftType if k.category == DRIFT]
    assert [d["kind"] for d in doc["pending"]] == [k.value for k in DriftType if k.category == PENDING]
    assert set(doc["drift"][0]) == {"address", "category", "kind", "summary", "server_id", "server_version",
                                    "fields", "before_is", "apply_actions", "fixed_by_apply", "details"}
    mdtext = render_drift.render(rep, "markdown")
    assert "### Changed on the cluster since the last apply (drift)" in mdtext and "<details>" in mdtext
    assert all(i.address.replace('"', '"') in mdtext for i in rep.items)


@pytest.mark.parametrize("n,max_chars", [(5_000, render_drift.MAX_MARKDOWN_CHARS), (40, 3_000), (300, 20_000)])
def test_markdown_stays_under_its_limit(n, max_chars):
    items = tuple(DriftItem(f'model["g"]["m{i}"]["1"]', DriftType.EDITED if i % 2 else DriftType.FILE_EDITED, "x" * 250,
                            fields=tuple(FieldDrift(f"f{j}", "a" * 300, "b" * 300) for j in range(5)),
                            actions=("update",)) for i in range(n))
    rep = DriftReport("s", tuple(sorted(items, key=lambda i: i.category != DRIFT)), n, "2.19.6")
    out = render_drift.render_markdown(rep, max_chars=max_chars)
    assert len(out) <= max_chars
    assert "not shown" in out
