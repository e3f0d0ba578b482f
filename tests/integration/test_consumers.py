"""Pipelines and agents that name models, against the real node (docs/references.md): a replaced model
re-points both pipelines and the agents in one apply before the old model goes; a versioned model
gaining version 2 and losing version 1 moves its consumers first; an unmanaged pipeline naming a
managed version blocks its deletion; each apply is followed by an empty plan."""

from __future__ import annotations

import re

import pytest

from mlsync.core.errors import PlanError
from stack_helpers import (destroy, remote_stack, replan, run_apply, skip_without_pipeline_modules, stack_file,
                           url_model_stack)

pytestmark = pytest.mark.cluster


@pytest.fixture
def pipeline_modules(os_client) -> None:
    skip_without_pipeline_modules(os_client)


def ml_inference(model: str, source: str, target: str) -> str:
    """An `ml_inference` processor (a list item at the pipeline's processor indent) naming `${model:model}`."""
    return f"""      - ml_inference:
          model_id: "${{model:{model}}}"
          input_map: [{{input: "{source}"}}]
          output_map: [{{"{target}": "$.data[0].embedding"}}]
"""


def connector_yaml(name: str, url: str, indent: str) -> str:
    """A connector body (name first) as YAML lines at `indent`, with model parameter m2."""
    return "".join(indent + line + "\n" for line in (
        f"name: {name}", "protocol: http", "parameters: {model: m2}", "credential: {api_key: k}", "actions:",
        "  - action_type: predict", "    method: POST", f"    url: {url}",
        "    request_body: '{\"input\": ${parameters.input}}'"))


def consumers(u: str, model: str) -> str:
    """Both pipelines (ML Commons' ml_inference around core processors) and two 2.19 agents naming `model`."""
    return f"""
ingest_pipelines:
  - id: {u}-ingest
    description: embed the body
    processors:
      - set: {{field: pipeline, value: {u}}}
{ml_inference(model, "body", "body_vec")}      - remove: {{field: pipeline, ignore_missing: true}}
search_pipelines:
  - id: {u}-search
    request_processors:
      - filter_query: {{query: {{term: {{visible: true}}}}}}
{ml_inference(model, "query.term.body.value", "query.term.body.value")}    response_processors:
{ml_inference(model, "body", "answer")}agents:
  - name: {u}-tool
    type: flow
    description: answers with the model
    tools:
      - type: MLModelTool
        name: answer
        parameters: {{model_id: "${{model:{model}}}", prompt: "Answer ${{parameters.question}} <briefly> & well",
                      temperature: 0.2, stop: ["\\n"]}}
  - name: {u}-chat
    type: conversational
    llm: {{model_id: "${{model:{model}}}", parameters: {{max_iteration: 3}}}}
    memory: {{type: conversation_index}}
    tools:
      - type: AgentTool
        parameters: {{agent_id: "${{agent:{u}-tool}}"}}
"""


def assert_plan_empty(files, opts) -> None:
    again = replan(files, opts).plan
    assert not again.has_changes, [(str(c.address), c.reason) for c in again.changes if not c.is_noop]


def consumer_ids(os_client, u) -> dict:
    ingest = os_client.ingest.get_pipeline(id=f"{u}-ingest")[f"{u}-ingest"]
    search = os_client.search_pipeline.get(id=f"{u}-search")[f"{u}-search"]
    hits = os_client.plugins.ml.search_agents(body={"query": {"prefix": {"name.keyword": u}}, "size": 10})
    agents = {h["_source"]["name"]: (h["_id"], h["_source"]) for h in hits["hits"]["hits"]}
    return {"ingest": ingest["processors"][1]["ml_inference"]["model_id"],
            "request": search["request_processors"][1]["ml_inference"]["model_id"],
            "response": search["response_processors"][0]["ml_inference"]["model_id"],
            "tool": agents[f"{u}-tool"][1]["tools"][0]["parameters"]["model_id"],
            "llm": agents[f"{u}-chat"][1]["llm"]["model_id"],
            "agent_tool": agents[f"{u}-chat"][1]["tools"][0]["parameters"]["agent_id"],
            "agents": {name: i for name, (i, _) in agents.items()}}


def models_named(os_client, name) -> dict:
    os_client.indices.refresh(index=".plugins-ml-model", ignore_unavailable=True)
    hits = os_client.plugins.ml.search_models(body={"query": {"term": {"name.keyword": name}}, "size": 20})
    return {h["_id"]: h["_source"].get("model_state") for h in hits["hits"]["hits"]
            if "chunk_number" not in h["_source"]}


def order(text: str, *patterns: str) -> list[int]:
    return [next(i for i, line in enumerate(text.splitlines()) if re.search(p, line)) for p in patterns]


def test_a_replaced_model_repoints_both_pipelines_and_the_agents_in_one_apply(
        tmp_path, opts, os_client, artifact_server, unique_name, pipeline_modules, capfd):
    u = unique_name("cons")
    base = remote_stack(u, u, artifact_server.base_url)
    f = stack_file(tmp_path, "a", base + consumers(u, f"{u}-group/{u}-remote"))
    code, text = run_apply([f], opts)
    assert code == 0, text
    assert_plan_empty([f], opts)
    (old,) = models_named(os_client, f"{u}-remote")
    before = consumer_ids(os_client, u)
    assert {before[k] for k in ("ingest", "request", "response", "tool", "llm")} == {old}
    assert before["agent_tool"] == before["agents"][f"{u}-tool"]

    # an inline connector instead of the standalone one: the server cannot switch it, the model is replaced
    inline = base.replace(f"    connector: {u}-conn\n", "    connector:\n" + connector_yaml(
        f"{u}-inline", f"{artifact_server.base_url}/v1/{u}/embeddings", "      "))
    f2 = stack_file(tmp_path, "a2", inline + consumers(u, f"{u}-group/{u}-remote"))
    planned = replan([f2], opts).plan
    acts = {str(c.address): [a.value for a in c.actions] for c in planned.changes}
    assert acts[f'ingest_pipeline["{u}-ingest"]'] == ["update"] and acts[f'agent["{u}-chat"]'] == ["replace"]
    capfd.readouterr()
    code, text = run_apply([f2], opts)
    assert code == 0, text
    text = capfd.readouterr().err     # the progress lines, in the order the steps ran
    (new,) = models_named(os_client, f"{u}-remote")
    after = consumer_ids(os_client, u)
    assert new != old and {after[k] for k in ("ingest", "request", "response", "tool", "llm")} == {new}
    assert after["agent_tool"] == after["agents"][f"{u}-tool"]
    assert not set(after["agents"].values()) & set(before["agents"].values())   # old agents deleted
    # the old model is undeployed and deleted only after every consumer moved
    put_i, put_s, reg, old_gone = order(text, rf'ingest_pipeline\["{u}-ingest"\]: put done',
                                        rf'search_pipeline\["{u}-search"\]: put done',
                                        rf'agent\["{u}-chat"\]: register done', f"delete old version done.*{old}")
    assert max(put_i, put_s, reg) < old_gone, text
    assert_plan_empty([f2], opts)
    destroy([f2], opts)
    assert not models_named(os_client, f"{u}-remote")


def test_version_2_takes_over_the_consumers_before_version_1_goes(tmp_path, opts, os_client, unique_name,
                                                                 artifact_server, capfd):
    """A remote model with `versions:`: version 2 (its own connector) is registered and deployed, the
    consumers move to it, and only then version 1 is undeployed and deleted; server numbers are tracked."""
    u = unique_name("cons")
    base = remote_stack(u, u, artifact_server.base_url)
    second = connector_yaml(f"{u}-conn2", f"{artifact_server.base_url}/v1/{u}/embeddings", "    ")
    base = base.replace("model_groups:\n", "  - " + second[4:] + "model_groups:\n", 1)
    pipes = f"""
ingest_pipelines:
  - id: {u}-ingest
    processors:
{ml_inference(f"{u}-group/{u}-remote", "body", "vec")}agents:
  - name: {u}-agent
    type: flow
    tools:
      - {{type: MLModelTool, parameters: {{model_id: "${{model:{u}-group/{u}-remote}}"}}}}
"""

    def versions(*labels: str) -> str:
        return "    versions:\n" + "".join(f'      - version: "{label}"\n' + (
            f"        connector: {u}-conn2\n" if label == "2" else "") for label in labels)
    f1 = stack_file(tmp_path, "v1", base + versions("1") + pipes)
    code, text = run_apply([f1], opts)
    assert code == 0, text
    assert_plan_empty([f1], opts)
    (v1,) = models_named(os_client, f"{u}-remote")

    f2 = stack_file(tmp_path, "v2", base + versions("2") + pipes)
    planned = replan([f2], opts).plan
    acts = {str(c.address): [a.value for a in c.actions] for c in planned.changes}
    assert acts[f'model["{u}-group"]["{u}-remote"]["1"]'] == ["undeploy", "delete"]
    assert acts[f'model["{u}-group"]["{u}-remote"]["2"]'] == ["register", "deploy"]
    capfd.readouterr()
    code, text = run_apply([f2], opts)
    assert code == 0, text
    text = capfd.readouterr().err
    (v2,) = models_named(os_client, f"{u}-remote")
    assert v2 != v1 and models_named(os_client, f"{u}-remote")[v2] == "DEPLOYED"
    pipeline = os_client.ingest.get_pipeline(id=f"{u}-ingest")[f"{u}-ingest"]
    assert pipeline["processors"][0]["ml_inference"]["model_id"] == v2
    deployed, put, reg, down, gone = order(
        text, r'\["2"\]: deploy done', rf'ingest_pipeline\["{u}-ingest"\]: put done',
        rf'agent\["{u}-agent"\]: register done', r'\["1"\]: undeploy done', r'\["1"\]: delete done')
    assert deployed < put < down < gone and reg < down, text
    again = replan([f2], opts).plan
    assert not again.has_changes
    assert next(c for c in again.changes if c.address.version == "2").server_version == "2"   # the server's number
    destroy([f2], opts)


def test_an_unmanaged_pipeline_naming_a_managed_version_blocks_its_deletion(tmp_path, opts, os_client, unique_name,
                                                                           make_model_zip):
    u = unique_name("cons")
    z1 = make_model_zip(seed=u + "1")
    f1 = stack_file(tmp_path, "v1", url_model_stack(u, [("1", z1.url, z1.sha256)]))
    code, text = run_apply([f1], opts)
    assert code == 0, text
    (v1,) = models_named(os_client, f"{u}-m")
    theirs = f"{u}-theirs"
    os_client.ingest.put_pipeline(id=theirs, body={"processors": [{"ml_inference": {
        "model_id": v1, "function_name": "text_embedding", "model_input": '{"text_docs": ${input_map.text_docs}}',
        "input_map": [{"text_docs": "body"}], "output_map": [{"vec": "$.inference_results"}]}}]})
    try:
        with pytest.raises(PlanError) as err:
            _destroy_plan(f1, opts)
        message = str(err.value)
        assert f'model["{u}-g"]["{u}-m"]["1"] (id {v1}, deleted) is still named by 1 pipeline(s)/agent(s)' in message
        assert f'ingest_pipeline["{theirs}"]' in message and "--allow-in-use" in message
        assert set(models_named(os_client, f"{u}-m")) == {v1}      # nothing changed on the cluster
    finally:
        os_client.ingest.delete_pipeline(id=theirs)
    destroy([f1], opts)


def _destroy_plan(f, opts):
    from mlsync.commands import common as workflow
    from mlsync.edge.cluster import Cluster
    from mlsync.edge.statestore import ClusterStateStore
    cluster = Cluster.connect(opts)
    return workflow.plan_for(workflow.load_desired([str(f)]), cluster, ClusterStateStore(cluster), destroy=True)


def test_export_round_trip_holds_for_a_family_of_ten_same_name_remote_models(tmp_path, opts, os_client, janitor,
                                                                             artifact_server, unique_name, monkeypatch):
    """Measured before: export kept "the oldest" and the plan of the exported file failed with "10 unmanaged
    objects match it". A family of remote models of one name in one group exports as versions, and their
    hand-made consumers with ${model:...} references."""
    u = unique_name("fam")
    ml = os_client.plugins.ml
    stub = artifact_server.url(f"/v1/{u}/embeddings")
    conns = [janitor.connector(ml.create_connector(body={
        "name": f"{u}-conn{i}", "version": "1", "protocol": "http", "parameters": {"model": f"m{i}"},
        "credential": {"api_key": "secret-family"},
        "actions": [{"action_type": "predict", "method": "POST", "url": stub, "request_body": "{}"}]})["connector_id"])
        for i in range(2)]
    gid = janitor.group(ml.register_model_group(body={"name": f"{u}-g"})["model_group_id"])
    ids = []
    for n in range(10):
        resp = ml.register_model(body={"name": f"{u}-m", "function_name": "remote", "model_group_id": gid,
                                       "connector_id": conns[n // 5],
                                       **({"description": f"re-registered {n}"} if n % 3 == 0 else {})})
        janitor.task(resp["task_id"])
        ids.append(janitor.model(resp["model_id"]))
    for mid in ids[7:]:
        ml.deploy_model(model_id=mid)
    # hand-made consumers of two members: exported with ${model:...} references
    os_client.ingest.put_pipeline(id=f"{u}-ingest", body={"description": "by hand", "processors": [
        {"ml_inference": {"model_id": ids[9], "input_map": [{"input": "body"}], "output_map": [{"v": "$.x"}]}}]})
    agent_id = ml.register_agents(body={"name": f"{u}-agent", "type": "flow", "tools": [
        {"type": "MLModelTool", "parameters": {"model_id": ids[8], "prompt": "Use ${parameters.q}", "k": 3}}]})["agent_id"]
    try:
        _family_round_trip(tmp_path, opts, u, ids, monkeypatch)
    finally:
        os_client.ingest.delete_pipeline(id=f"{u}-ingest")
        ml.delete_agent(agent_id=agent_id, ignore=[404])


def _family_round_trip(tmp_path, opts, u, ids, monkeypatch):
    import io

    from mlsync import commands as app
    from mlsync.commands import common as workflow
    from mlsync.core.plan import Action
    from mlsync.edge.cluster import Cluster
    from mlsync.edge.statestore import FileStateStore

    path, state = tmp_path / "family.yaml", tmp_path / "state.json"
    err = io.StringIO()
    assert app.export_(opts, io.StringIO(), groups=[f"{u}-g"], stack=u, output_file=str(path), err=err) == 0
    assert "share this name" not in err.getvalue()
    text = path.read_text()
    assert f"${{model:{u}-g/{u}-m@10}}" in text and f"${{model:{u}-g/{u}-m@9}}" in text, text
    for name in set(re.findall(r"\$\{env:(MLSYNC_CRED_[A-Z0-9_]+)\}", path.read_text())):
        monkeypatch.setenv(name, "secret-family")
    cluster = Cluster.connect(opts)

    def plan_():
        return workflow.plan_for(workflow.load_desired([str(path)]), cluster, FileStateStore(str(state))).plan
    planned = plan_()
    models = {c.server_id: str(c.address) for c in planned.changes if c.kind == "model"}
    assert set(models) == set(ids) and len(set(models.values())) == 10
    assert {str(c.address) for c in planned.changes if c.kind in ("ingest_pipeline", "agent")} == {
        f'ingest_pipeline["{u}-ingest"]', f'agent["{u}-agent"]'}
    odd = [(str(c.address), c.actions, c.reason) for c in planned.changes
           if c.actions != (Action.ADOPT,) or c.field_changes]
    assert not odd, odd
    assert app.apply([str(path)], opts, io.StringIO(), auto_approve=True, state_file=str(state)) == 0
    again = plan_()
    assert not again.has_changes, [(str(c.address), c.reason) for c in again.pending]
