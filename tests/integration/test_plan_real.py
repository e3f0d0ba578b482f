"""`mlsync plan` against objects on the real node that mlsync did not create.

a. Each example in examples/ is created by hand through the raw ML Commons API, in exactly the form the
   example describes (names made unique, loopback URLs pointed at the test's artifact server). A plan
   without state adopts every object with no field change; after the adoption is applied, a plan is
   all no-op. That is the proof, per kind (connector, model group, remote model, URL model,
   local-file model), that an unchanged resource shows no diff: the server's form and the file's form
   normalise to the same thing.
b. Each kind of field change plans as the right action: one set of objects (those of a), many mutated
   files planned against it. Planning never writes, so the objects stay as created.
c. A cluster with 2,000+ ML objects plans with a number of requests bounded by the page size.

The access-control example needs a node with the security plugin; without one, the test shows that
planning it is a clear error, and a copy without its access fields covers its inline connector.
"""

from __future__ import annotations

import copy
import io
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

import helpers
from helpers import Janitor, sha256_hex, split_chunks, wait_for_model_state, wait_for_task
from stack_helpers import managed_state
from mlsync import commands as app
from mlsync.commands import common as workflow
from mlsync.edge.cluster import Cluster, ConnectionOptions
from mlsync.core.address import Address
from mlsync.input.loader import load_tree
from mlsync.core.errors import PlanError
from mlsync.core.observed import Observed
from mlsync.core.plan import Action, Plan
from mlsync.core.planner import plan as make_plan
from mlsync.core.state import StackState
from mlsync.edge.statestore import FileStateStore

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
EXAMPLE_FILES = {
    "quickstart": ["quickstart.yaml"],
    "url-model": ["url-model.yaml"],
    "local-model": ["local-model.yaml"],
    "overlay": ["overlay/base.yaml", "overlay/prod.yaml"],
    "access-control": ["access-control.yaml"],
    # The same without its access fields, so that its inline connector is tested on any node.
    "access-control-stripped": ["access-control.yaml"],
}
_ACCESS_LINE = re.compile(r"^\s*(access_mode|backend_roles|add_all_backend_roles):.*\n", re.MULTILINE)
# The examples' credentials come from these variables (with dummy fallbacks); fixed for the module.
CREDENTIAL_ENV = {"EMBEDDINGS_API_KEY": "plan-real-key", "PROD_EMBEDDINGS_API_KEY": "plan-real-prod-key"}
# Version fields the server may drop at registration (remote/URL) or at the last chunk; a person
# creating the object by hand sets them again with Update Model (docs/ml-commons-notes.md §3, §4).
FIXUP_FIELDS = ("description", "is_enabled", "rate_limiter", "interface", "guardrails", "deploy_setting")
ACCESS_FIELDS = ("access_mode", "backend_roles", "add_all_backend_roles")


@pytest.fixture(scope="module")
def opts(os_client) -> ConnectionOptions:
    return ConnectionOptions(url=os.environ.get("OPENSEARCH_URL", "http://127.0.0.1:9200"))


@pytest.fixture(scope="module")
def credential_env():
    with pytest.MonkeyPatch.context() as mp:
        for key, value in CREDENTIAL_ENV.items():
            mp.setenv(key, value)
        yield


# --------------------------------------------------------------------------- the examples, by hand


def _rename(text: str, names: dict[str, str]) -> str:
    """Every whole-word occurrence of an example's name replaced by its unique name (longest first)."""
    pattern = re.compile(r"(?<![\w.-])(" + "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
                         + r")(?![\w.-])")
    return pattern.sub(lambda m: names[m.group(1)], text)


def _names(tree: dict) -> set[str]:
    names = {tree["stack"]}
    names |= {c["name"] for c in tree.get("connectors", [])}
    names |= {g["name"] for g in tree.get("model_groups", [])}
    for m in tree.get("models", []):
        names.add(m["name"])
        if isinstance(m.get("connector"), dict) and m["connector"].get("name"):
            names.add(m["connector"]["name"])
    return names


class HandMade:
    """Creates a desired-state tree's objects the way a person would with the ML Commons API: the
    file's fields sent as they are written (no mlsync normalisation), names resolved to ids."""

    def __init__(self, client: Any, janitor: Janitor, base_dir: Path) -> None:
        self.client, self.ml, self.janitor, self.base_dir = client, client.plugins.ml, janitor, base_dir
        self.ids: dict[str, str] = {}   # mlsync address -> id of what was created

    def create(self, tree: dict) -> dict[str, str]:
        connectors = {c["name"]: self._connector(c) for c in tree.get("connectors", [])}
        groups = {g["name"]: self._group(g) for g in tree.get("model_groups", [])}
        for m in tree.get("models", []):
            self._model(m, groups, connectors)
        return self.ids

    def _connector(self, c: dict) -> str:
        body = {k: v for k, v in c.items() if k != "lifecycle"}
        body.setdefault("version", "1")   # the server requires one; "1" is mlsync's documented default
        cid = self.janitor.connector(self.ml.create_connector(body=body)["connector_id"])
        self.ids[str(Address("connector", c["name"]))] = cid
        return cid

    def _group(self, g: dict) -> str:
        body = {k: v for k, v in g.items() if k != "lifecycle"}
        gid = self.janitor.group(self.ml.register_model_group(body=body)["model_group_id"])
        self.ids[str(Address("model_group", g["name"]))] = gid
        return gid

    def _model(self, m: dict, groups: dict[str, str], connectors: dict[str, str]) -> None:
        group = m.get("model_group") or m["name"]   # no model_group: the server makes one named after it
        base = {k: v for k, v in m.items()
                if k not in ("model_group", "connector", "versions", "deploy", "lifecycle", *ACCESS_FIELDS)}
        if m.get("model_group"):
            base["model_group_id"] = groups[m["model_group"]]
        else:
            base.update({k: m[k] for k in ACCESS_FIELDS if k in m})
        if str(m.get("function_name", "")).lower() == "remote":
            connector = m["connector"]
            if isinstance(connector, str):
                base["connector_id"] = connectors[connector]
            else:
                base["connector"] = dict(connector)
            mid = self._register(base, group)
            self._fixup(mid, base)
            self._implicit_group(mid, base, group)
            self.ids[str(Address("model", m["name"], group=group))] = mid
            if m.get("deploy"):
                self.ml.deploy_model(model_id=mid)
                wait_for_model_state(self.client, mid, "DEPLOYED")
            return
        for v in m["versions"]:   # one at a time: the group numbers its versions
            fields = {**base, **{k: x for k, x in v.items() if k not in ("version", "deploy", "lifecycle")}}
            if isinstance((fields.get("model_config") or {}).get("all_config"), dict):
                # The server refuses an object here (500): a person writes the JSON text
                fields["model_config"] = {**fields["model_config"],
                                          "all_config": json.dumps(fields["model_config"]["all_config"])}
            fields["version"] = v["version"]
            if fields.get("path"):
                mid = self._upload(fields)
            else:
                mid = self._register(fields, group)
            self._fixup(mid, fields)
            self._implicit_group(mid, base, group)
            self.ids[str(Address("model", m["name"], group=group, version=v["version"]))] = mid
            if v.get("deploy", m.get("deploy")):   # local models deploy on the test node (issue 14)
                self.ml.deploy_model(model_id=mid)
                wait_for_model_state(self.client, mid, "DEPLOYED", timeout=120)

    def _implicit_group(self, model_id: str, base: dict, group: str) -> None:
        """The group the server made for a model registered without one: remember it, clean it up, and
        register the model's next versions into it."""
        if "model_group_id" not in base:
            base["model_group_id"] = self.ml.get_model(model_id=model_id)["model_group_id"]
            for key in ACCESS_FIELDS:
                base.pop(key, None)
            self.janitor.group(base["model_group_id"])
            self.ids[str(Address("model_group", group))] = base["model_group_id"]

    def _register(self, body: dict, group: str) -> str:
        resp = self.ml.register_model(body=body)
        self.janitor.task(resp["task_id"])
        if resp.get("model_id"):   # remote: synchronous
            return self.janitor.model(resp["model_id"])
        task = wait_for_task(self.client, resp["task_id"])
        assert task["state"] == "COMPLETED", task
        return self.janitor.model(task["model_id"])

    def _upload(self, fields: dict) -> str:
        data = (self.base_dir / fields.pop("path")).read_bytes()
        chunks = split_chunks(data, 10_000_000)
        body = {k: v for k, v in fields.items() if k != "version"}
        body.setdefault("model_content_hash_value", sha256_hex(data))
        body.update(model_content_size_in_bytes=len(data), total_chunks=len(chunks))
        mid = self.janitor.model(self.ml.register_model_meta(body=body)["model_id"])
        for n, chunk in enumerate(chunks):
            self.ml.upload_chunk(model_id=mid, chunk_number=n, body=chunk)
        wait_for_model_state(self.client, mid, "REGISTERED")
        return mid

    def _fixup(self, model_id: str, sent: dict) -> None:
        doc = self.ml.get_model(model_id=model_id)
        lost = {k: sent[k] for k in FIXUP_FIELDS if k in sent and doc.get(k) is None}
        if lost:
            self.ml.update_model(model_id=model_id, body=lost)


@dataclass
class World:
    """One example, created by hand and then adopted into a stack state (a local state file)."""

    example: str
    directory: Path
    files: list[Path]
    tree: dict                     # the merged, interpolated file, names made unique
    renamed: dict[str, str]        # example name -> unique name
    ids: dict[str, str]            # address -> id of the object made by hand
    adopt_plan: Optional[Plan] = None
    adopt_error: Optional[str] = None     # why the first plan failed, if it did
    imported: list[str] = field(default_factory=list)   # addresses `mlsync import`ed as that error said
    observed: Optional[Observed] = None   # after the adoption

    @property
    def state_file(self) -> Path:
        return self.directory / "state.json"

    def address(self, kind: str, *names: Optional[str]) -> str:
        n = [self.renamed.get(x, x) if x is not None else None for x in names]
        if kind == "model":
            return str(Address("model", n[1], group=n[0], version=n[2] if len(n) > 2 else None))
        return str(Address(kind, n[0]))

    def plan_file(self, path: Path) -> Plan:
        """Plan `path` against the objects as observed after the adoption, with the stack's state."""
        desired = workflow.load_desired([str(path)])
        state = FileStateStore(self.state_file).load(desired.stack)
        assert state is not None
        return make_plan(desired, self.observed, state)


class Worlds:
    """The examples' objects, made on first use and removed when the module ends."""

    def __init__(self, client, janitor, tmp: Path, artifact_server, opts, unique: str) -> None:
        self.client, self.janitor, self.tmp = client, janitor, tmp
        self.artifact_server, self.opts, self.unique = artifact_server, opts, unique
        self.made: dict[str, World] = {}
        self.failed: dict[str, str] = {}   # example -> why making it failed (never made twice)
        for zip_path in (EXAMPLES / "models").glob("*.zip"):
            artifact_server.add_file(zip_path.name, zip_path.read_bytes())

    def access_control(self) -> bool:
        return Cluster.connect(self.opts).observe().model_access_control

    def get(self, example: str) -> World:
        if example in self.failed:
            pytest.fail(f"making the {example} example failed earlier: {self.failed[example]}", pytrace=False)
        if example not in self.made:
            try:
                self.made[example] = self._make(example)
            except Exception as err:
                self.failed[example] = f"{type(err).__name__}: {err}"
                raise
        return self.made[example]

    def _make(self, example: str) -> World:
        directory = self.tmp / example
        shutil.copytree(EXAMPLES, directory)
        files = [directory / f for f in EXAMPLE_FILES[example]]
        original = load_tree([str(f) for f in files])
        assert not original.problems, original.problems
        prefix = f"{self.unique}-{example}"
        renamed = {n: f"{prefix}-{n}" for n in _names(original.tree)}
        for f in files:
            text = f.read_text().replace("http://127.0.0.1:8089", self.artifact_server.base_url)
            if example.endswith("-stripped"):
                text = _ACCESS_LINE.sub("", text)
            f.write_text(_rename(text, renamed))
        loaded = load_tree([str(f) for f in files])
        assert not loaded.problems, loaded.problems
        world = World(example, directory, files, loaded.tree, renamed, {})
        if example == "access-control" and not self.access_control():
            return world   # the server would refuse the access fields (400): nothing to create
        world.ids = HandMade(self.client, self.janitor, files[0].parent).create(loaded.tree)
        cluster = Cluster.connect(self.opts)
        store = FileStateStore(world.state_file)
        desired = workflow.load_desired([str(f) for f in files])
        try:
            world.adopt_plan = workflow.plan_for(desired, cluster, store).plan
        except PlanError as err:
            # A model without model_group whose implicit group the server made: mlsync never joins an
            # unmanaged group silently (SPEC §1); the error names the import that resolves it. Run it.
            world.adopt_error = str(err)
            for address, oid in re.findall(r"`mlsync import '([^']+)' (\S+)`", str(err)):
                assert app.import_(address, oid, self.opts, io.StringIO(), stack=desired.stack,
                                   state_file=str(world.state_file)) == 0
                world.imported.append(address)
            world.adopt_plan = workflow.plan_for(desired, cluster, store).plan
        code = app.apply([str(f) for f in files], self.opts, io.StringIO(), auto_approve=True,
                         state_file=str(world.state_file))
        assert code == 0
        world.observed = cluster.observe()
        return world


@pytest.fixture(scope="module")
def worlds(os_client, module_janitor, tmp_path_factory, artifact_server, opts, credential_env) -> Worlds:
    return Worlds(os_client, module_janitor, tmp_path_factory.mktemp("plan-real"), artifact_server, opts,
                  helpers.unique_name("pr"))


def _pending(plan: Plan) -> list[tuple[str, list[str], str]]:
    return [(str(c.address), [a.value for a in c.actions], c.reason) for c in plan.pending]


# --------------------------------------------------------------------------- a. adopt, then no-op

KINDS_OF = {   # what each example proves has no diff when unchanged
    "quickstart": {"connector", "model_group", "remote model"},
    "url-model": {"model_group", "URL model"},
    "local-model": {"model_group (implicit)", "local-file model"},
    "overlay": {"connector (client_config)", "model_group", "remote model (rate_limiter)", "URL model"},
    "access-control": {"connector (access)", "model_group (access)", "remote model (inline connector)"},
    "access-control-stripped": {"connector", "model_group", "model_group (implicit)",
                                "remote model (inline connector)"},
}


@pytest.mark.parametrize("example", sorted(KINDS_OF),
                         ids=[f"{e}: {', '.join(sorted(KINDS_OF[e]))}" for e in sorted(KINDS_OF)])
def test_example_made_by_hand_is_adopted_without_changes_then_plans_as_noop(example, worlds):
    if example == "access-control" and not worlds.access_control():
        pytest.skip("the node has no model access control (no security plugin): the server refuses the "
                    "example's access fields; see test_access_fields_without_access_control_fail_the_plan")
    world = worlds.get(example)
    # The implicit group of a model without model_group needs an explicit import (see World).
    implicit = sorted(str(Address("model_group", m["name"])) for m in world.tree["models"]
                      if not m.get("model_group"))
    assert sorted(world.imported) == implicit, world.adopt_error
    if implicit:
        assert "implicit group" in world.adopt_error
    adopt = world.adopt_plan
    assert {str(c.address) for c in adopt.changes} == set(world.ids), "the plan does not cover what was made"
    for change in adopt.changes:
        expected = (Action.NOOP,) if str(change.address) in world.imported else (Action.ADOPT,)
        assert change.actions == expected, (str(change.address), change.actions, change.reason, change.field_changes)
        assert change.field_changes == ()
        assert change.server_id == world.ids[str(change.address)]
    # After the adoption is applied, planning again finds nothing to do, with the same objects.
    desired = workflow.load_desired([str(f) for f in world.files])
    state = FileStateStore(world.state_file).load(desired.stack)
    again = make_plan(desired, world.observed, state)
    assert not again.has_changes, _pending(again)
    assert not any(c.drift for c in again.changes)
    assert {str(c.address): c.server_id for c in again.changes} == world.ids


def test_access_fields_without_access_control_fail_the_plan(worlds, opts):
    if worlds.access_control():
        pytest.skip("the node has model access control; the example is adopted above")
    world = worlds.get("access-control")
    desired = workflow.load_desired([str(f) for f in world.files])
    with pytest.raises(PlanError, match="access control"):
        workflow.plan_for(desired, Cluster.connect(opts), FileStateStore(world.state_file))
    assert not world.ids   # nothing was created, nothing written
    assert not world.state_file.exists()


# --------------------------------------------------------------------------- b. field changes


def C(name):
    return ("connector", name)


def G(name):
    return ("model_group", name)


def M(group, name, version=None):
    return ("model", group, name, version)


def at(tree: dict, path: str) -> tuple[Any, Any]:
    """(container, key) for a dotted path with list indexes: "connectors.0.description"."""
    parts = [int(p) if p.isdigit() else p for p in path.split(".")]
    node = tree
    for p in parts[:-1]:
        node = node[p]
    return node, parts[-1]


def put(path: str, value: Any) -> Callable:
    def mutate(tree, ctx):
        node, key = at(tree, path)
        node[key] = value
    return mutate


def drop(path: str) -> Callable:
    def mutate(tree, ctx):
        node, key = at(tree, path)
        del node[key]
    return mutate


def new_artifact(version_index: int) -> Callable:
    """The version's url and hash pointing at a different (new) zip."""
    def mutate(tree, ctx):
        z = ctx.artifact_server.make_model_zip(seed=f"{ctx.unique}-{version_index}")
        tree["models"][0]["versions"][version_index].update(url=z.url, model_content_hash_value=z.sha256)
    return mutate


def same_bytes_elsewhere(tree, ctx):
    """The first version's zip served under another name: the URL changes, the artifact does not."""
    v = tree["models"][0]["versions"][0]
    src = EXAMPLES / "models" / v["url"].rsplit("/", 1)[1]
    v["url"] = ctx.artifact_server.add_file(f"{ctx.unique}-copy-{src.name}", src.read_bytes()).url


def add_version(tree, ctx):
    z = ctx.artifact_server.make_model_zip(seed=f"{ctx.unique}-new")
    tree["models"][0]["versions"].append({"version": "1.2.0", "url": z.url, "model_content_hash_value": z.sha256})


def other_local_file(tree, ctx):
    v = tree["models"][0]["versions"][0]
    v["path"] = "models/tiny-onnx-v2.zip"
    v["model_content_hash_value"] = sha256_hex((EXAMPLES / "models" / "tiny-onnx-v2.zip").read_bytes())


QC, QG, QR = C("quickstart-embeddings-api"), G("quickstart-embeddings"), M("quickstart-embeddings",
                                                                            "quickstart-remote-embedder")
UG, U1, U2 = (G("tiny-url-models"), M("tiny-url-models", "tiny-url-model", "1.0.0"),
              M("tiny-url-models", "tiny-url-model", "1.1.0"))
LG, L1 = G("tiny-local-model"), M("tiny-local-model", "tiny-local-model", "1")
OC, OR = C("overlay-embeddings-api"), M("overlay-embeddings", "overlay-remote-embedder")
AI = M("acl-solo-embedder", "acl-solo-embedder")   # a remote model with an inline connector
# The quickstart model is deployed, and the server refuses to update a connector while a model using
# it is loaded: every connector update also cycles the model.
REDEPLOY = (["undeploy", "deploy"], set())
INTERFACE = {"input": {"type": "object", "properties": {"parameters": {"type": "object"}}}}
GUARDRAILS = {"type": "local_regex", "input_guardrail": {"regex": ["forbidden.*"]}}

# (example, what changes, mutation, {resource: (actions, changed field paths)}); everything else: no-op.
FIELD_CASES = [
    ("quickstart", "connector description", put("connectors.0.description", "changed"),
     {QC: (["update"], {"description"}), QR: REDEPLOY}),
    ("quickstart", "connector parameter value", put("connectors.0.parameters.model", "other-model"),
     {QC: (["update"], {"parameters.model"}), QR: REDEPLOY}),
    ("quickstart", "connector parameter added", put("connectors.0.parameters.dimensions", 384),
     {QC: (["update"], {"parameters.dimensions"}), QR: REDEPLOY}),
    ("quickstart", "connector action url", put("connectors.0.actions.0.url", "http://127.0.0.1:1/v2/embeddings"),
     {QC: (["update"], {"actions[0].url"}), QR: REDEPLOY}),
    ("quickstart", "connector action header", put("connectors.0.actions.0.headers.Content-Type", "text/plain"),
     {QC: (["update"], {"actions[0].headers.Content-Type"}), QR: REDEPLOY}),
    ("quickstart", "connector client_config added", put("connectors.0.client_config", {"read_timeout": 60}),
     {QC: (["update"], {"client_config"}), QR: REDEPLOY}),
    ("quickstart", "connector credential", put("connectors.0.credential.api_key", "another-key"),
     {QC: (["update"], {"credential"}), QR: REDEPLOY}),
    ("quickstart", "group description", put("model_groups.0.description", "changed"),
     {QG: (["update"], {"description"})}),
    ("quickstart", "remote model description", put("models.0.description", "changed"),
     {QR: (["update"], {"description"})}),
    ("quickstart", "remote model disabled", put("models.0.is_enabled", False), {QR: (["update"], {"is_enabled"})}),
    ("quickstart", "remote model rate_limiter", put("models.0.rate_limiter", {"limit": 10, "unit": "SECONDS"}),
     {QR: (["update"], {"rate_limiter"})}),
    ("quickstart", "remote model interface", put("models.0.interface", INTERFACE), {QR: (["update"], {"interface"})}),
    ("quickstart", "remote model guardrails", put("models.0.guardrails", GUARDRAILS),
     {QR: (["update"], {"guardrails"})}),
    ("quickstart", "remote model undeployed", put("models.0.deploy", False), {QR: (["undeploy"], set())}),
    ("url-model", "group description", put("model_groups.0.description", "changed"),
     {UG: (["update"], {"description"})}),
    ("url-model", "model description (1.1.0 overrides it)", put("models.0.description", "changed"),
     {U1: (["update"], {"description"})}),
    ("url-model", "model_config", put("models.0.model_config.pooling_mode", "cls"),
     {U1: (["update"], {"model_config.pooling_mode"}), U2: (["update"], {"model_config.pooling_mode"})}),
    ("url-model", "artifact (url and hash)", new_artifact(0), {U1: (["replace"], {"model_content_hash_value"})}),
    ("url-model", "url only, same bytes", same_bytes_elsewhere, {}),
    ("url-model", "model_format", put("models.0.model_format", "TORCH_SCRIPT"),
     {U1: (["replace"], {"model_format"}), U2: (["undeploy", "replace", "deploy"], {"model_format"})}),
    ("url-model", "function_name", put("models.0.function_name", "TEXT_SIMILARITY"),
     {U1: (["replace"], {"function_name"}), U2: (["undeploy", "replace", "deploy"], {"function_name"})}),
    ("url-model", "new version label", add_version,
     {M("tiny-url-models", "tiny-url-model", "1.2.0"): (["register"], set())}),
    ("url-model", "version removed", drop("models.0.versions.1"), {U2: (["undeploy", "delete"], set())}),
    ("url-model", "version deployed", put("models.0.versions.0.deploy", True), {U1: (["deploy"], set())}),
    ("url-model", "version undeployed", put("models.0.versions.1.deploy", False), {U2: (["undeploy"], set())}),
    ("local-model", "local file", other_local_file,
     {L1: (["undeploy", "replace", "deploy"], {"model_content_hash_value"})}),
    ("local-model", "description", put("models.0.description", "changed"), {L1: (["update"], {"description"})}),
    ("local-model", "disabled", put("models.0.is_enabled", False), {L1: (["update"], {"is_enabled"})}),
    ("overlay", "connector client_config key", put("connectors.0.client_config.read_timeout", 60),
     {OC: (["update"], {"client_config.read_timeout"}), OR: REDEPLOY}),
    ("overlay", "rate_limiter limit", put("models.0.rate_limiter.limit", 200),
     {OR: (["update"], {"rate_limiter.limit"})}),
    ("overlay", "remote model undeployed", put("models.0.deploy", False), {OR: (["undeploy"], set())}),
    ("access-control-stripped", "inline connector parameter", put("models.1.connector.parameters.model", "x"),
     {AI: (["update"], {"connector.parameters.model"})}),
    ("access-control-stripped", "inline connector credential", put("models.1.connector.credential.api_key", "x"),
     {AI: (["update"], {"connector.credential"})}),
]


@dataclass
class MutationContext:
    artifact_server: Any
    unique: str


@pytest.mark.parametrize("example,what,mutate,expected", FIELD_CASES,
                         ids=[f"{e}: {w}" for e, w, _, _ in FIELD_CASES])
def test_field_change_plans_as_the_right_action(example, what, mutate, expected, worlds, artifact_server):
    world = worlds.get(example)
    tree = copy.deepcopy(world.tree)
    mutate(tree, MutationContext(artifact_server, f"{worlds.unique}-{re.sub(r'[^a-z0-9]+', '-', what)}"))
    path = world.directory / "mutated.yaml"
    path.write_text(json.dumps(tree))   # JSON is YAML; next to the example, so relative paths resolve
    plan = world.plan_file(path)
    want = {world.address(*key): value for key, value in expected.items()}
    got = {str(c.address): ([a.value for a in c.actions], {f.path for f in c.field_changes})
           for c in plan.pending}
    assert got == want, _pending(plan)
    for change in plan.pending:
        replacing = Action.REPLACE in change.actions
        assert all(f.forces_replace == replacing for f in change.field_changes), change.field_changes
        if "credential" in got.get(str(change.address), ([], set()))[1]:
            assert all(f.before == f.after == "(sensitive)" for f in change.field_changes if f.sensitive)


def test_group_access_change_needs_access_control(worlds):
    world = worlds.get("quickstart")
    tree = copy.deepcopy(world.tree)
    tree["model_groups"][0]["access_mode"] = "restricted"
    tree["model_groups"][0]["backend_roles"] = ["ml-team"]
    path = world.directory / "mutated-access.yaml"
    path.write_text(json.dumps(tree))
    if world.observed.model_access_control:
        plan = world.plan_file(path)
        change = next(c for c in plan.pending if str(c.address) == world.address(*QG))
        assert [a.value for a in change.actions] == ["update"]
        assert {f.path for f in change.field_changes} >= {"access_mode"}
    else:
        with pytest.raises(PlanError, match="access control"):
            world.plan_file(path)


# --------------------------------------------------------------------------- c. 2,000 objects

CONNECTORS, GROUPS, MODELS_PER_GROUP = 500, 500, 2   # 500 + 500 + 1,000 = 2,000 objects


def _connector_body(name: str, base_url: str) -> dict:
    return {"name": name, "version": "1", "protocol": "http", "parameters": {"model": "bench"},
            "credential": {"api_key": "plan-real-scale"},
            "actions": [{"action_type": "predict", "method": "POST", "url": f"{base_url}/v1/scale/embeddings",
                         "request_body": '{"input": ${parameters.input}}'}]}


class Population:
    """2,000 ML objects: a few made through the API, the rest exact copies of their documents.

    Through the API the shared 2-core node makes about 35-80 objects a second (measured: 12-30 ms a
    connector or group, ~50 ms a remote model at 4 in parallel), so 2,000 objects would take 30-60 s
    to make and as long to delete, and slow everyone else's tests meanwhile. So one connector, one group
    and two remote models are made through the API, and the other 1,996 objects are copies of those
    documents (the connector's encrypted credential included) bulk-indexed into the ML indices with
    only name, ids and times changed: to the ML search API that `observe()` pages through they are
    the same as API-made objects. Copies are removed with delete-by-query on their own name prefix,
    the API-made ones through the API.
    """

    INDICES = {"connector": ".plugins-ml-connector", "model_group": ".plugins-ml-model-group",
               "model": ".plugins-ml-model"}

    def __init__(self, client, janitor: Janitor, prefix: str) -> None:
        self.client, self.ml, self.janitor = client, client.plugins.ml, janitor
        self.prefix = prefix                      # API-made: <prefix>-t..., copies: <prefix>-k...
        self.copy_prefix = f"{prefix}-k"
        self.connectors: dict[str, str] = {}      # name -> id
        self.groups: dict[str, str] = {}
        self.models: dict[tuple[str, str], str] = {}   # (group name, model name) -> id
        self.model_connector: dict[tuple[str, str], str] = {}   # (group name, model name) -> connector name
        self.copies = 0                           # documents bulk-indexed

    def make(self, base_url: str) -> None:
        ml = self.ml
        c_name, g_name = f"{self.prefix}-t-c", f"{self.prefix}-t-g"
        cid = self.janitor.connector(ml.create_connector(body=_connector_body(c_name, base_url))["connector_id"])
        gid = self.janitor.group(ml.register_model_group(body={"name": g_name})["model_group_id"])
        self.connectors[c_name], self.groups[g_name] = cid, gid
        for i in range(MODELS_PER_GROUP):
            resp = ml.register_model(body={"name": f"m{i}", "function_name": "remote", "model_group_id": gid,
                                           "connector_id": cid})
            self.janitor.task(resp["task_id"])
            self.models[(g_name, f"m{i}")] = self.janitor.model(resp["model_id"])
            self.model_connector[(g_name, f"m{i}")] = c_name
        template = {kind: self.client.get(index=index, id=oid)["_source"] for kind, index, oid in (
            ("connector", self.INDICES["connector"], cid), ("model_group", self.INDICES["model_group"], gid),
            ("model", self.INDICES["model"], self.models[(g_name, "m0")]))}
        names = [f"{self.copy_prefix}-c{i:04d}" for i in range(CONNECTORS - 1)]
        self.connectors.update(zip(names, self._bulk("connector", [
            dict(template["connector"], name=n, created_time=template["connector"]["created_time"] + i + 1)
            for i, n in enumerate(names)])))
        names = [f"{self.copy_prefix}-g{i:04d}" for i in range(GROUPS - 1)]
        self.groups.update(zip(names, self._bulk("model_group", [
            dict(template["model_group"], name=n, created_time=template["model_group"]["created_time"] + i + 1)
            for i, n in enumerate(names)])))
        copies, keys = [], []
        connectors = list(self.connectors.items())
        for i, (g_name, g_id) in enumerate((g, x) for g, x in self.groups.items() if g.startswith(self.copy_prefix)):
            c_name, c_id = connectors[i % len(connectors)]
            for j in range(MODELS_PER_GROUP):
                keys.append((g_name, f"m{j}"))
                self.model_connector[(g_name, f"m{j}")] = c_name
                copies.append(dict(template["model"], name=f"m{j}", model_group_id=g_id, connector_id=c_id,
                                   created_time=template["model"]["created_time"] + len(copies) + 1))
        self.models.update(zip(keys, self._bulk("model", copies)))

    def _bulk(self, kind: str, docs: list[dict]) -> list[str]:
        lines = []
        for doc in docs:
            lines += [json.dumps({"index": {"_index": self.INDICES[kind]}}), json.dumps(doc)]
        resp = self.client.bulk(body="\n".join(lines) + "\n", refresh="true", request_timeout=120)
        self.copies += sum(1 for item in resp["items"] if item["index"].get("result") == "created")
        assert not resp["errors"], [i for i in resp["items"] if i["index"].get("error")][:3]
        return [item["index"]["_id"] for item in resp["items"]]

    def remove_copies(self) -> int:
        """Delete-by-query on the copies' name prefix, dependents first (the API-made ones: janitor)."""
        deleted = 0
        copy_groups = [g for n, g in self.groups.items() if n.startswith(self.copy_prefix)]
        for kind in ("model", "model_group", "connector"):
            # copied models are named m0, m1: they are found by their (copied) group instead
            query = ({"terms": {"model_group_id": copy_groups}} if kind == "model" else
                     {"prefix": {"name.keyword": self.copy_prefix}})
            resp = self.client.delete_by_query(index=self.INDICES[kind], body={"query": query}, refresh=True,
                                               conflicts="proceed", request_timeout=120)
            deleted += resp["deleted"]
        return deleted

    def stack_file(self, path: Path, base_url: str) -> None:
        """A desired-state file that manages every object (JSON, which is YAML)."""
        doc = {"version": 1, "stack": self.prefix,
               "connectors": [_connector_body(n, base_url) for n in self.connectors],
               "model_groups": [{"name": g} for g in self.groups],
               "models": [{"name": m, "model_group": g, "function_name": "remote",
                           "connector": self.model_connector[(g, m)]} for g, m in self.models]}
        path.write_text(json.dumps(doc))

    def state(self, key: str) -> StackState:
        return managed_state(self.prefix, key, "plan-real-scale", self.connectors, self.groups, self.models)


def observe_bound(observed: Observed, page_size: int) -> tuple[int, int]:
    """(least, most) requests `observe()` makes: refresh, cluster info, cluster settings, one GET each for
    the ingest and the search pipelines, per searched kind one page per `page_size` hits plus the last,
    short one, and at most the security-plugin probe (made only when an access-control setting is on).
    Derived from the objects actually observed, so other people's objects on the shared node do not
    break it."""
    pages = sum(len(objs) // page_size + 1
                for objs in (observed.connectors, observed.groups, observed.models, observed.agents))
    return 5 + pages, 6 + pages


def test_two_thousand_objects_plan_with_a_bounded_number_of_requests(os_client, janitor, tmp_path, opts,
                                                                     artifact_server, unique_name):
    started = time.perf_counter()
    population = Population(os_client, janitor, unique_name("pr"))
    try:
        population.make(artifact_server.base_url)
        made = time.perf_counter() - started
        ours = len(population.connectors) + len(population.groups) + len(population.models)
        assert ours >= 2000

        stack = tmp_path / "scale.yaml"
        population.stack_file(stack, artifact_server.base_url)
        store = FileStateStore(tmp_path / "state.json")
        store.save(population.state(key="scale-test-key"))   # the stack manages them all

        cluster = Cluster.connect(opts)
        t0 = time.perf_counter()
        desired = workflow.load_desired([str(stack)])
        loaded = time.perf_counter() - t0
        before = cluster.requests_made
        t0 = time.perf_counter()
        planned = workflow.plan_for(desired, cluster, store)
        plan_seconds = time.perf_counter() - t0
        plan_requests = cluster.requests_made - before
        observed = planned.observed
        least, bound = observe_bound(observed, cluster.page_size)
        total = len(observed.connectors) + len(observed.groups) + len(observed.models)

        assert len(desired.resources) == ours
        assert not planned.plan.has_changes, _pending(planned.plan)[:5]
        assert {c.server_id for c in planned.plan.changes} == (
            set(population.connectors.values()) | set(population.groups.values()) | set(population.models.values()))
        assert least <= observed.requests <= bound, (observed.requests, least, bound)
        assert plan_requests == observed.requests   # a file state: observing is all the plan asks of the cluster
        assert total >= ours and observed.requests * 100 < total   # nowhere near one GET per object

        # A smaller page makes every kind take several pages; the bound still holds.
        paged = Cluster.connect(opts, page_size=300).observe()
        least_paged, bound_paged = observe_bound(paged, 300)
        assert least_paged <= paged.requests <= bound_paged, (paged.requests, least_paged, bound_paged)
        assert least_paged >= 3 + 2 + 2 + 4   # 500 connectors, 500 groups, 1,000 models of ours at least

        t0 = time.perf_counter()
        again = make_plan(desired, observed, store.load(population.prefix))
        planner_seconds = time.perf_counter() - t0
        assert not again.has_changes
        # Without state every object is adopted by its natural key: still one observation.
        adopt = make_plan(desired, observed, StackState(population.prefix, fingerprint_key="k"))
        assert {a for c in adopt.changes for a in c.actions} == {Action.ADOPT}

        print(f"\n2,000-object plan: {total} objects observed ({ours} ours: {len(population.connectors)} connectors, "
              f"{len(population.groups)} groups, {len(population.models)} remote model versions); "
              f"observe {observed.requests} requests (bound {bound}, page size {cluster.page_size}); "
              f"plan (state + observe + diff) {plan_seconds:.2f}s, of which the planner {planner_seconds:.2f}s; "
              f"file load {loaded:.2f}s; "
              f"page size 300: {paged.requests} requests; populated in {made:.1f}s")
    finally:
        deleted = population.remove_copies()   # the API-made ones: the janitor, after the test
    assert deleted == population.copies
    left = os_client.plugins.ml.search_connectors(body={"query": {"prefix": {"name.keyword": population.copy_prefix}},
                                                        "size": 0, "track_total_hits": True})
    assert left["hits"]["total"]["value"] == 0
    print(f"total {time.perf_counter() - started:.1f}s")

