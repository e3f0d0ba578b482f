"""Pipelines and agents that name models (docs/references.md), on the in-memory FakeCluster (the real
node: tests/integration/test_consumers.py): references resolve to the ids now serving, consumers move
before what they named is undeployed or deleted, nothing in use is deleted, agents (no update API) are
replaced, and every apply is followed by an empty plan."""

from __future__ import annotations

import copy
import json
import os

import pytest

from fakes import FakeClock, FakeCluster, server_agent
from mlsync import render
from mlsync.commands import common as workflow
from mlsync.core import normalize, references
from mlsync.core.errors import ConfigError, PlanError
from mlsync.core.planner import PlanOptions, plan
from mlsync.edge.statestore import ClusterStateStore
from mlsync.run import driver as executor

HASH1, HASH2 = "1" * 64, "2" * 64
CONNECTOR = {"name": "emb", "protocol": "http", "parameters": {"model": "x"}, "credential": {"api_key": "k"},
             "actions": [{"action_type": "predict", "method": "POST", "url": "http://127.0.0.1:9/x"}]}
INLINE = {"name": "emb-inline", "protocol": "http", "parameters": {"model": "y"}, "credential": {"api_key": "k"},
          "actions": [{"action_type": "predict", "method": "POST", "url": "http://127.0.0.1:9/y"}]}
ML_INFERENCE = {"input_map": [{"input": "body"}], "output_map": [{"vec": "$.x"}]}


def stack(model_ref: str = "${model:g/m}", **over) -> dict:
    tree = {
        "version": 1, "stack": "consumers",
        "connectors": [CONNECTOR],
        "model_groups": [{"name": "g"}],
        "models": [{"name": "m", "model_group": "g", "function_name": "remote", "connector": "emb", "deploy": True}],
        "ingest_pipelines": [{"id": "docs", "description": "embed", "processors": [
            {"set": {"field": "seen", "value": True}},
            {"ml_inference": dict(ML_INFERENCE, model_id=model_ref)}]}],
        "search_pipelines": [{"id": "docs-search", "request_processors": [
            {"ml_inference": {"model_id": model_ref, "input_map": [{"input": "q"}], "output_map": [{"q": "$.x"}]}}],
            "response_processors": [{"ml_inference": dict(ML_INFERENCE, model_id=model_ref)}]}],
        "agents": [
            {"name": "qa", "type": "flow", "tools": [{"type": "MLModelTool", "parameters": {
                "model_id": model_ref, "prompt": "Answer: ${parameters.question}", "temperature": 0.2,
                "stop": ["\n", "<end>"]}}]},
            {"name": "chat", "type": "conversational", "llm": {"model_id": model_ref, "parameters": {"max_iteration": 3}},
             "memory": {"type": "conversation_index"},
             "tools": [{"type": "AgentTool", "parameters": {"agent_id": "${agent:qa}"}}]},
        ],
    }
    tree.update(over)
    return tree


def versioned(*versions: tuple[str, str, bool]) -> dict:
    """The stack with `m` a URL model with these (label, hash, deploy) versions."""
    return stack(models=[{"name": "m", "model_group": "g", "model_format": "ONNX",
                          "model_config": {"model_type": "bert", "embedding_dimension": 8,
                                           "framework_type": "sentence_transformers"},
                          "versions": [{"version": label, "url": f"http://127.0.0.1:9/{label}.zip",
                                        "model_content_hash_value": h, "deploy": d} for label, h, d in versions]}])


class World:
    def __init__(self, tmp_path):
        self.tmp, self.n = tmp_path, 0
        self.clock = FakeClock()
        self.fake = FakeCluster(self.clock, task_polls=1, deploy_polls=1)
        self.store = ClusterStateStore(self.fake, clock=self.clock.time)

    def write(self, tree: dict) -> str:
        self.n += 1
        path = os.path.join(self.tmp, f"stack{self.n}.yaml")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(tree, f)
        return path

    def plan(self, tree: dict, **kw):
        return workflow.plan_for(workflow.load_desired([self.write(tree)]), self.fake, self.store, **kw).plan

    def apply(self, tree: dict, **kw):
        desired = workflow.load_desired([self.write(tree)])
        planned = workflow.plan_for(desired, self.fake, self.store, **kw)
        start = len(self.fake.log)
        result = executor.apply(planned.plan, self.fake, self.store, credentials=workflow.credentials(desired),
                                parallelism=2, clock=self.clock.time, sleep=self.clock.sleep)
        assert result.ok, result.errors + [render.render(planned.plan, "text")]
        again = workflow.plan_for(desired, self.fake, self.store).plan
        assert not again.has_changes, render.render(again, "text")
        return planned.plan, result, self.fake.log[start:]

    def model_ids(self) -> list[str]:
        return sorted(self.fake.models)


def calls(log, *methods) -> list[tuple[str, tuple]]:
    return [(c.method, c.args) for c in log if c.method in methods]


def first(log, method, pred=lambda args: True) -> int:
    return next(i for i, c in enumerate(log) if c.method == method and pred(c.args))


def last(log, method, pred=lambda args: True) -> int:
    return max(i for i, c in enumerate(log) if c.method == method and pred(c.args))


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


# --------------------------------------------------------------------------- references resolve


def test_apply_resolves_every_reference_and_the_next_plan_is_empty(world):
    plan_, _, _ = world.apply(stack())
    (mid,) = world.model_ids()
    assert world.fake.ingest_pipelines["docs"]["processors"][1]["ml_inference"]["model_id"] == mid
    search = world.fake.search_pipelines["docs-search"]
    assert search["request_processors"][0]["ml_inference"]["model_id"] == mid
    assert search["response_processors"][0]["ml_inference"]["model_id"] == mid
    agents = {a["name"]: (i, a) for i, a in world.fake.agents.items()}
    assert agents["qa"][1]["tools"][0]["parameters"]["model_id"] == mid
    assert agents["chat"][1]["llm"]["model_id"] == mid
    assert agents["chat"][1]["tools"][0]["parameters"]["agent_id"] == agents["qa"][0]   # innermost first
    # the plan showed the ids it could not know yet
    change = next(c for c in plan_.changes if str(c.address) == 'ingest_pipeline["docs"]')
    assert change.after["processors"][1]["ml_inference"]["model_id"] == references.KNOWN_AFTER_APPLY
    assert change.template["processors"][1]["ml_inference"]["model_id"] == "${model:g/m}"


def test_a_plan_shows_resolved_ids_of_what_exists(world):
    world.apply(stack())
    (mid,) = world.model_ids()
    changed = copy.deepcopy(stack())
    changed["ingest_pipelines"][0]["description"] = "embed passages"
    p = world.plan(changed)
    c = next(c for c in p.changes if str(c.address) == 'ingest_pipeline["docs"]')
    assert [f.path for f in c.field_changes] == ["description"]
    assert c.after["processors"][1]["ml_inference"]["model_id"] == mid


# --------------------------------------------------------------------------- ids move


def test_a_replaced_model_moves_both_pipelines_and_the_agents_before_it_goes(world):
    world.apply(stack())
    (old,) = world.model_ids()
    old_agents = set(world.fake.agents)
    changed = stack(models=[{"name": "m", "model_group": "g", "function_name": "remote", "connector": INLINE,
                             "deploy": True}])
    p = world.plan(changed)
    text = render.render(p, "text")
    assert f'"{old}" (model["g"]["m"]) → "(known after apply)" (model["g"]["m"])' in text
    acts = {str(c.address): [a.value for a in c.actions] for c in p.changes}
    assert acts['ingest_pipeline["docs"]'] == ["update"] and acts['agent["qa"]'] == ["replace"]
    assert acts['agent["chat"]'] == ["replace"]      # it names qa, which gets a new id
    _, _, log = world.apply(changed)
    (new,) = world.model_ids()
    assert new != old and not (set(world.fake.agents) & old_agents)
    gone = min(first(log, "undeploy_model", lambda a: a[0] == old), first(log, "delete_model", lambda a: a[0] == old))
    assert last(log, "put_pipeline") < gone and last(log, "register_agent") < gone
    assert first(log, "deploy_model", lambda a: a[0] == new) < first(log, "put_pipeline")
    assert last(log, "register_agent") < first(log, "delete_agent")       # old agents go after the new exist
    assert world.fake.ingest_pipelines["docs"]["processors"][1]["ml_inference"]["model_id"] == new


def test_a_versioned_model_gaining_v2_and_losing_v1_moves_consumers_first(world):
    world.apply(versioned(("1.0", HASH1, True)))
    (v1,) = world.model_ids()
    p = world.plan(versioned(("2.0", HASH2, True)))
    acts = {str(c.address): [a.value for a in c.actions] for c in p.changes}
    assert acts['model["g"]["m"]["1.0"]'] == ["undeploy", "delete"]
    _, _, log = world.apply(versioned(("2.0", HASH2, True)))
    (v2,) = world.model_ids()
    assert world.fake.ingest_pipelines["docs"]["processors"][1]["ml_inference"]["model_id"] == v2
    gone = first(log, "undeploy_model", lambda a: a[0] == v1)
    assert first(log, "deploy_model", lambda a: a[0] == v2) < last(log, "put_pipeline") < gone
    assert last(log, "register_agent") < gone


def test_a_reference_without_label_names_the_newest_deployed_version(world):
    world.apply(versioned(("1.0", HASH1, True), ("2.0", HASH2, False)))
    ids = {d["model_content_hash_value"]: i for i, d in world.fake.models.items()}
    assert world.fake.ingest_pipelines["docs"]["processors"][1]["ml_inference"]["model_id"] == ids[HASH1]
    pinned = versioned(("1.0", HASH1, True), ("2.0", HASH2, False))
    pinned["search_pipelines"][0]["request_processors"][0]["ml_inference"]["model_id"] = "${model:g/m@2.0}"
    p = world.plan(pinned)
    assert any('names model["g"]["m"]["2.0"], which the file does not deploy' in w for w in p.warnings)


# --------------------------------------------------------------------------- nothing in use is deleted


def test_an_unmanaged_pipeline_naming_a_version_blocks_its_delete(world):
    world.apply(versioned(("1.0", HASH1, True)))
    (v1,) = world.model_ids()
    world.fake.ingest_pipelines["someone-elses"] = {"processors": [{"ml_inference": {"model_id": v1}}]}
    world.fake.agents["X"] = {"name": "theirs", "type": "flow", "llm": {"model_id": v1}}
    with pytest.raises(PlanError) as err:
        world.plan(versioned(("2.0", HASH2, True)))
    text = str(err.value)
    assert f'model["g"]["m"]["1.0"] (id {v1}, deleted) is still named by 2 pipeline(s)/agent(s)' in text
    assert 'ingest_pipeline["someone-elses"]' in text and "agent 'theirs' (id X)" in text
    assert "--allow-in-use" in text
    p = world.plan(versioned(("2.0", HASH2, True)), allow_in_use=True)
    assert any("someone-elses" in w and "--allow-in-use" in w for w in p.warnings)


def test_an_id_inside_a_prompt_counts_as_in_use_and_destroy_checks_too(world):
    world.apply(stack())
    (mid,) = world.model_ids()
    world.fake.search_pipelines["theirs"] = {"response_processors": [{"ml_inference": {
        "model_id": "other", "model_input": '{"model": "' + mid + '"}'}}]}
    with pytest.raises(PlanError, match=r'search_pipeline\["theirs"\]'):
        world.plan(stack(), destroy=True)


def test_the_managed_consumers_of_a_destroyed_stack_go_first(world):
    world.apply(stack())
    p = world.plan(stack(), destroy=True)
    order = [str(c.address) for c in p.changes]
    assert order.index('agent["qa"]') < order.index('ingest_pipeline["docs"]') < order.index('model["g"]["m"]')
    desired = workflow.load_desired([world.write(stack())])
    result = executor.apply(p, world.fake, world.store, credentials=workflow.credentials(desired),
                            clock=world.clock.time, sleep=world.clock.sleep)
    assert result.ok, result.errors
    assert not (world.fake.agents or world.fake.ingest_pipelines or world.fake.search_pipelines or world.fake.models)


# --------------------------------------------------------------------------- agents, drift


def test_a_changed_agent_is_replaced_and_its_old_id_deleted_after(world):
    world.apply(stack())
    old = {a["name"]: i for i, a in world.fake.agents.items()}
    changed = stack()
    changed["agents"][0]["description"] = "answers questions"
    p = world.plan(changed)
    acts = {str(c.address): [a.value for a in c.actions] for c in p.changes if not c.is_noop}
    assert acts == {'agent["qa"]': ["replace"], 'agent["chat"]': ["replace"]}
    _, _, log = world.apply(changed)
    new = {a["name"]: i for i, a in world.fake.agents.items()}
    assert new["qa"] != old["qa"] and set(world.fake.agents) == set(new.values())
    assert [a[0] for _, a in calls(log, "delete_agent")] == sorted([old["qa"], old["chat"]], key=[
        a[0] for _, a in calls(log, "delete_agent")].index)


def test_pipelines_and_agents_edited_or_deleted_by_hand_are_drift(world):
    world.apply(stack())
    world.fake.ingest_pipelines["docs"]["description"] = "edited"
    del world.fake.search_pipelines["docs-search"]
    p = world.plan(stack())
    by = {str(c.address): c for c in p.changes}
    assert by['ingest_pipeline["docs"]'].drift and [a.value for a in by['ingest_pipeline["docs"]'].actions] == ["update"]
    assert by['search_pipeline["docs-search"]'].drift and by['search_pipeline["docs-search"]'].reason_codes[0].value == \
        "deleted_outside"
    world.apply(stack())


def test_an_unmanaged_pipeline_with_the_file_id_is_adopted(world):
    world.fake.ingest_pipelines["docs"] = {"description": "old", "processors": []}
    p = world.plan(stack())
    c = next(c for c in p.changes if str(c.address) == 'ingest_pipeline["docs"]')
    assert [a.value for a in c.actions] == ["adopt", "update"]


# --------------------------------------------------------------------------- normal forms


def test_agent_forms_from_the_file_and_from_the_server_are_equal():
    body = {"name": "a", "type": "Conversational", "description": "d",
            "llm": {"model_id": "M", "parameters": {"max_iteration": 3, "stop": ["<a>", "b=c"], "t": 1e7}},
            "tools": [{"type": "MLModelTool", "parameters": {"model_id": "M", "cfg": {"b": 1, "a": [True, None]}},
                       "config": {"x": 0.5}}, {"type": "CatIndexTool", "parameters": {}}],
            "parameters": {"p": "0.20"}, "memory": {"type": "conversation_index"}, "app_type": "rag"}
    server = server_agent(body, 1)
    assert "\\u003c" in server["llm"]["parameters"]["stop"]          # Gson's HTML escapes
    assert normalize.agent_form(body) == normalize.agent_form(server)


NEURAL = [  # recorded server forms (model-consumers.md §3.5): neural-search is not on the test node
    ("ingest_pipeline", {"processors": [{"text_embedding": {"model_id": "M1", "field_map": {"passage": "vec"}}},
                                        {"sparse_encoding": {"model_id": "M2", "field_map": {"p": "s"},
                                                             "prune_type": "max_ratio", "prune_ratio": 0.1}},
                                        {"text_image_embedding": {"model_id": "M3", "embedding": "vec",
                                                                  "field_map": {"text": "caption", "image": "img"}}}]},
     {"M1", "M2", "M3"}),
    ("search_pipeline", {"request_processors": [{"neural_query_enricher": {
        "default_model_id": "M1", "neural_field_default_id": {"title_vec": "M4"}}}],
        "response_processors": [{"rerank": {"ml_opensearch": {"model_id": "M5"},
                                            "context": {"document_fields": ["passage"]}}}]},
     {"M1", "M4", "M5"}),
]


@pytest.mark.parametrize("kind,body,ids", NEURAL, ids=["ingest", "search"])
def test_neural_search_forms_compare_unchanged_and_their_ids_are_found(kind, body, ids):
    assert normalize.pipeline_form(body, kind) == body
    assert references.ids_used(body, {"M1", "M2", "M3", "M4", "M5", "M9"}) == ids


def test_neural_search_references_resolve_under_any_key(world):
    tree = stack(search_pipelines=[{"id": "neural", "request_processors": [{"neural_query_enricher": {
        "default_model_id": "${model:g/m}", "neural_field_default_id": {"title_vec": "${model:g/m}"}}}]}])
    desired = workflow.load_desired([world.write(tree)])
    from mlsync.core.address import Address
    r = desired.resources[Address("search_pipeline", "neural")]
    assert r.depends_on == ('model["g"]["m"]',)
    resolved = references.resolve(r.form, lambda a: "ID")
    assert resolved["request_processors"][0]["neural_query_enricher"] == {
        "default_model_id": "ID", "neural_field_default_id": {"title_vec": "ID"}}


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("mutate,message", [
    (lambda t: t["ingest_pipelines"][0]["processors"][1]["ml_inference"].update(model_id="${model:g/nope}"),
     "ingest_pipelines[0].processors[1].ml_inference.model_id: ${model:g/nope}: model 'g/nope' is not declared"),
    (lambda t: t["agents"][0]["tools"][0]["parameters"].update(model_id="${model:g/m@1.0}"),
     "model 'g/m' has no versions; name it without @LABEL"),
    (lambda t: t["agents"][1]["tools"][0]["parameters"].update(agent_id="${agent:q}"),
     "${agent:q}: agent 'q' is not declared in agents; did you mean 'qa'?"),
    (lambda t: t["agents"][0].update(tools=[{"type": "AgentTool", "parameters": {"agent_id": "${agent:chat}"}}]),
     "agent 'chat' names itself through ${agent:...} references"),
    (lambda t: t["ingest_pipelines"][0].update(id="docs*"), "invalid pipeline id 'docs*'"),
    (lambda t: t["ingest_pipelines"][0]["processors"].append({"set": {}, "remove": {}}),
     "a processor is a mapping with exactly one key"),
    (lambda t: t["search_pipelines"].append(copy.deepcopy(t["search_pipelines"][0])),
     "duplicate pipeline id 'docs-search'"),
    (lambda t: t["ingest_pipelines"][0]["processors"][1]["ml_inference"].update(model_id="${connector:nope}"),
     "${connector:nope}: connector 'nope' is not declared in connectors"),
])
def test_bad_references_and_consumers_are_located_errors(world, mutate, message):
    tree = stack()
    mutate(tree)
    path = world.write(tree)
    with pytest.raises(ConfigError) as err:
        workflow.load_desired([path])
    text = str(err.value)
    assert message in text, text
    assert f"{path}:" in text


def test_a_versioned_label_must_exist():
    tree = versioned(("1.0", HASH1, True))
    tree["agents"][0]["tools"][0]["parameters"]["model_id"] = "${model:g/m@1.1}"
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        json.dump(tree, f)
    try:
        with pytest.raises(ConfigError, match=r"model 'g/m' has no version '1.1'; did you mean '1.0'\?"):
            workflow.load_desired([f.name])
    finally:
        os.unlink(f.name)


def test_the_planner_is_pure_about_consumers():
    """The same inputs give the same plan (references resolved from the plan itself)."""
    from mlsync.input.flatten import flatten
    from mlsync.input.model import StackFile
    from mlsync.core.observed import Observed
    from mlsync.core.state import StackState
    desired = flatten(StackFile.model_validate(stack()))
    a = plan(desired, Observed(), StackState("consumers"), PlanOptions())
    b = plan(desired, Observed(), StackState("consumers"), PlanOptions())
    def view(p):   # a credential's fingerprint is keyed with a throwaway key when there is no state yet
        return [(str(c.address), c.actions, c.after, c.template, c.depends_on) for c in p.changes]
    assert view(a) == view(b)


def test_a_model_deleted_by_hand_is_registered_again_and_its_consumers_follow(world):
    world.apply(stack())
    (old,) = world.model_ids()
    world.fake.models.clear()
    p = world.plan(stack())
    by = {str(c.address): c for c in p.changes}
    assert by['ingest_pipeline["docs"]'].drift
    assert any(f"names model {old}, which no longer exist(s)" in w for w in p.warnings)
    assert any("documents already indexed keep the embeddings of the old model" in w for w in p.warnings)
    world.apply(stack())
    (new,) = world.model_ids()
    assert world.fake.ingest_pipelines["docs"]["processors"][1]["ml_inference"]["model_id"] == new != old


# --------------------------------------------------------------------------- export


def test_export_writes_consumers_with_references_and_the_round_trip_adopts_only(world, tmp_path):
    from mlsync.core.export import ExportSource, export_stack
    from mlsync.core.plan import Action
    from mlsync.core.state import StackState
    from mlsync.input import load
    from mlsync.input.flatten import flatten

    world.apply(versioned(("1.0", HASH1, True), ("2.0", HASH2, True)))
    world.fake.ingest_pipelines["unrelated"] = {"processors": [{"set": {"field": "a", "value": "${env:X}"}}]}
    world.fake.ingest_pipelines["docs"]["description"] = "literal ${env:HOME} and $${x}"
    observed = world.fake.observe()
    result = export_stack(observed, source=ExportSource("http://127.0.0.1:9", "2.19.6", "now", "test"),
                          groups=["g"], stack="exported")
    text = result.text()
    assert "${model:g/m@2}" in text and "${agent:qa}" in text and "unrelated" not in text
    assert result.counts["ingest_pipelines"] == 1 and result.counts["agents"] == 2
    path = tmp_path / "exported.yaml"
    path.write_text(text)
    env = {n: "k" for n in __import__("re").findall(r"\$\{env:(MLSYNC_CRED_\w+)\}", text)}
    loaded = load([str(path)], env=env)
    p = plan(flatten(loaded.stack), observed, StackState("exported"))
    odd = [(str(c.address), c.actions, [(f.path, f.before, f.after) for f in c.field_changes]) for c in p.changes
           if c.actions != (Action.ADOPT,) or c.field_changes]
    assert not odd, odd
    assert {c.address.kind for c in p.changes} >= {"ingest_pipeline", "search_pipeline", "agent"}


def test_undeploying_a_model_the_files_own_consumers_name_is_a_warning_not_an_error(world):
    """Found by the property test: deploy: false on a model a managed pipeline names."""
    world.apply(stack())
    down = stack()
    down["models"][0]["deploy"] = False
    p = world.plan(down)
    assert any('names model["g"]["m"], which the file does not deploy' in w for w in p.warnings)
    world.fake.ingest_pipelines["theirs"] = {"processors": [{"ml_inference": {"model_id": world.model_ids()[0]}}]}
    with pytest.raises(PlanError, match=r'undeployed\) is still named by 1 .*ingest_pipeline\["theirs"\]'):
        world.plan(down)


@pytest.mark.parametrize("replace", [False, True], ids=["create", "replace"])
def test_a_crash_after_an_agent_registration_adopts_it_instead_of_registering_twice(world, replace):
    from fakes import SimulatedCrash
    tree = stack()
    if replace:   # the old agent is managed: only the journal can tell which "qa" the crashed apply made
        world.apply(stack())
        tree["agents"][0]["description"] = "changed"
    world.fake.crash_after("register_agent", 1)
    desired = workflow.load_desired([world.write(tree)])
    planned = workflow.plan_for(desired, world.fake, world.store)
    with pytest.raises(SimulatedCrash):
        executor.apply(planned.plan, world.fake, world.store, credentials=workflow.credentials(desired),
                       clock=world.clock.time, sleep=world.clock.sleep)
    world.fake.revive()
    world.clock.advance(3600)          # the crashed apply's lease expires
    world.apply(tree)
    names = sorted(a["name"] for a in world.fake.agents.values())
    assert names == ["chat", "qa"]     # no second "qa"
    assert len(world.fake.calls("register_agent")) == (4 if replace else 2)


def test_the_allow_in_use_option_of_plan_on_the_command_line(world, monkeypatch):
    from click.testing import CliRunner

    from mlsync import cli

    world.apply(versioned(("1.0", HASH1, True)))
    (v1,) = world.model_ids()
    world.fake.ingest_pipelines["theirs"] = {"processors": [{"ml_inference": {"model_id": v1}}]}
    monkeypatch.setattr(workflow, "connect", lambda options: world.fake)
    path = world.write(versioned(("2.0", HASH2, True)))
    runner = CliRunner()
    refused = runner.invoke(cli.main, ["plan", "-f", path, "--url", "http://127.0.0.1:9"])
    assert refused.exit_code == 1 and 'ingest_pipeline["theirs"]' in refused.output, refused.output
    allowed = runner.invoke(cli.main, ["plan", "-f", path, "--url", "http://127.0.0.1:9", "--allow-in-use",
                                       "--detailed-exitcode"])
    assert allowed.exit_code == 2, allowed.output
    assert "(--allow-in-use: they will name an id that no longer serves)" in " ".join(allowed.output.split())
    assert world.fake.ingest_pipelines["theirs"]["processors"][0]["ml_inference"]["model_id"] == v1
