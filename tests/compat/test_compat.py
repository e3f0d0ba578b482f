"""3.x awareness without a 3.x node (mlsync/core/compat.py, docs/compatibility.md).

No ML Commons 3.x node can run here, so the responses below are recorded from the 3.x source, not
from a node: `GET /` as OpenSearch 3.1/3.2 answer it (the 2.19.6 node's answer, the version fields
changed) and the 400 body that 3.1's request validation (`StringUtils.validateFields` ->
`ActionRequestValidationException`) returns for a model group name outside SAFE_INPUT_PATTERN. The
cluster's version is read by the real edge code (`Reads._cluster_version`) from the recorded
`GET /`, and the plan is made by the real command step (`commands.common.plan_for`) on the fake
cluster, so the check runs where `mlsync plan`, `apply` and `drift` run it.
"""

from __future__ import annotations

import dataclasses
import re

import pytest

from fakes import FakeClock, FakeCluster
from mlsync.commands import common
from mlsync.core import compat
from mlsync.core.errors import PlanError
from mlsync.edge.reads import Reads
from mlsync.edge.statestore import ClusterStateStore


def info_response(number: str) -> dict:
    return {"name": "node-1", "cluster_name": "mlsync-test", "cluster_uuid": "Zk2n3x5WQy2y1nq9vXo1Ag",
            "version": {"distribution": "opensearch", "number": number, "build_type": "tar",
                        "build_hash": "0" * 40, "build_date": "2025-06-24T19:39:55.164432Z", "build_snapshot": False,
                        "lucene_version": "10.2.1", "minimum_wire_compatibility_version": "2.19.0",
                        "minimum_index_compatibility_version": "2.0.0"},
            "tagline": "The OpenSearch Project: https://opensearch.org/"}


# What 3.1 answers POST /_plugins/_ml/model_groups/_register {"name": "team#1"} with (from the source).
REFUSED_31 = {"error": {"root_cause": [{"type": "action_request_validation_exception",
                                        "reason": "Validation Failed: 1: Model group name can only contain letters, "
                                                  "numbers, spaces, and basic punctuation (.,!?():@-_'/\");"}],
                        "type": "action_request_validation_exception",
                        "reason": "Validation Failed: 1: Model group name can only contain letters, numbers, spaces, "
                                  "and basic punctuation (.,!?():@-_'/\");"},
              "status": 400}


def version_of(info: dict) -> str:
    stub = type("Stub", (), {"_call": lambda self, op, what, fn: fn(),
                             "_client": type("C", (), {"info": lambda self: info})()})()
    return Reads._cluster_version(stub)


STACK = """version: 1
stack: compat
connectors:
  - name: {conn}
    description: {desc}
    protocol: http
    parameters: {{host: {host}}}
    credential: {{api_key: k}}
    actions:
      - action_type: predict
        method: POST
        url: https://${{parameters.host}}/v1/embeddings
        request_body: '{{"input": ${{parameters.input}}}}'
model_groups:
  - name: {group}
models:
  - name: remote
    model_group: {group}
    function_name: remote
    connector: {conn}
"""


def plan_on(version: str, tmp_path, **names):
    values = {"conn": "api", "desc": "Embeddings (OpenAI-style)", "host": "api.example.com", "group": "team-1"} | names
    path = tmp_path / "stack.yaml"
    path.write_text(STACK.format(**values))
    clock = FakeClock()
    fake = FakeCluster(clock)
    observe = fake.observe
    fake.observe = lambda: dataclasses.replace(observe(), cluster_version=version_of(info_response(version)))
    desired = common.load_desired([str(path)])
    return common.plan_for(desired, fake, ClusterStateStore(fake, clock=clock.time)), fake, path


def test_the_recorded_version_is_read_by_the_edge() -> None:
    assert version_of(info_response("3.1.0")) == "3.1.0"
    assert compat.parse_version("3.1.0") == (3, 1) and compat.parse_version("opensearch 3.2.0") == (3, 2)
    assert compat.parse_version(None) is None and compat.parse_version("unknown") is None


@pytest.mark.parametrize("text, safe", [
    ("Embeddings from a local stub endpoint (OpenAI-style API)", True),
    ("team_1/prod: v2.0 'quoted' \"double\" ok? yes!", True),
    ("Überprüfung ٣ 模型", True),               # \p{L} and \p{N} are Unicode letters and numbers
    ("tab\tand\nnewline", True),                # Java's \s
    ("team#1", False), ("a+b", False), ("50%", False), ("x;y", False), ("<b>", False), ("a&b", False),
    ("emoji 🙂", False), ("non\u00a0breaking", False),   # U+00A0 is not in Java's ASCII \s
])
def test_safe_input_pattern(text, safe) -> None:
    assert compat.is_safe_text(text) is safe


def test_31_refuses_unsafe_names_and_descriptions_located(tmp_path) -> None:
    with pytest.raises(PlanError) as err:
        plan_on("3.1.0", tmp_path, group="team#1", desc="Embeddings; 50% off")
    messages = err.value.messages
    assert len(messages) == 2, messages     # the group's name, the connector's description (a model's group is
    path = str(tmp_path / "stack.yaml")     # part of its address, not of its name: not refused there)
    group = next(m for m in messages if 'model_group["team#1"]' in m and "model group name" in m)
    assert re.match(re.escape(path) + r":\d+:\d+: model_group\[\"team#1\"\]: ML Commons 3\.1\.0 \(3\.1 and later\) "
                    r"refuses this model group name: it has '#'; names and descriptions can only contain letters, "
                    r"numbers, spaces, and basic punctuation", group), group
    # the same rule the server states in its (recorded) refusal
    assert "letters, numbers, spaces, and basic punctuation (.,!?():@-_'/\")" in REFUSED_31["error"]["reason"]
    assert "letters, numbers, spaces, and basic punctuation (.,!?():@-_'/\")" in group
    assert any("connector description: it has ';', '%'" in m for m in messages)


@pytest.mark.parametrize("version", ["2.19.6", "3.0.0"])
def test_older_versions_accept_what_31_refuses(tmp_path, version) -> None:
    planned, _, _ = plan_on(version, tmp_path, group="team#1", desc="Embeddings; 50% off", host="my_host")
    assert planned.plan.has_changes and planned.plan.cluster_version == version


def test_32_refuses_an_endpoint_without_a_host(tmp_path) -> None:
    planned, _, _ = plan_on("3.1.0", tmp_path, host="my_host")          # 3.1: not checked yet
    assert planned.plan.has_changes
    with pytest.raises(PlanError) as err:
        plan_on("3.2.0", tmp_path, host="my_host")
    (message,) = err.value.messages
    assert 'connector["api"]: ML Commons 3.2.0 (3.2 and later) refuses action 0 (PREDICT) at predict time: the ' \
           "endpoint 'https://my_host/v1/embeddings' has no host" in message
    assert plan_on("3.4.0", tmp_path)[0].plan.has_changes                 # a good host passes


def test_only_what_is_sent_is_checked() -> None:
    # an object created on 2.19 with '#' in its name, unchanged after an upgrade to 3.1: not refused;
    # the same name in an update or a deletion-only change is checked / not checked accordingly
    from mlsync.core.address import Address
    from mlsync.core.plan import Action, Plan, Reason, ResourceChange

    def change(*actions):
        return ResourceChange(Address("model_group", "team#1"), actions, "why", (Reason.UP_TO_DATE,),
                              before={"name": "team#1"}, after={"name": "team#1", "description": "x"})
    for actions, refused in (((Action.NOOP,), False), ((Action.DELETE,), False), ((Action.DEPLOY,), False),
                             ((Action.UPDATE,), True), ((Action.ADOPT, Action.UPDATE), True),
                             ((Action.CREATE,), True)):
        problems = compat.check(Plan("s", (change(*actions),), cluster_version="3.1.0"))
        assert bool(problems) is refused, actions
        assert not compat.check(Plan("s", (change(*actions),), cluster_version="2.19.6"))
        assert not compat.check(Plan("s", (change(*actions),), cluster_version=None))


@pytest.mark.parametrize("url, params, problem", [
    ("http://127.0.0.1:8089/v1/embeddings", {}, None),
    ("https://${parameters.endpoint}/model/${parameters.model}/invoke", {"endpoint": "bedrock-runtime.us-east-1.amazonaws.com"}, None),
    ("https://${parameters.endpoint}/v1", {}, None),                       # filled by the predict request
    ("http://[::1]:9200/x", {}, None),
    ("https://my_host/v1", {}, "no host"),
    ("https://api.example.com/v1/a b", {}, "' '"),
    ("https://api.example.com/v1?q={x}", {}, "'{'"),
    ("/v1/embeddings", {}, "no scheme and host"),
])
def test_endpoint_problems(url, params, problem) -> None:
    found = compat.endpoint_problem(url, params)
    assert (found is None) if problem is None else (problem in found), found


def test_values_from_the_environment_are_checked_and_never_quoted(tmp_path, monkeypatch) -> None:
    """`${env:…}` values are Secrets in the plan: the 3.x checks used to skip them (issue 10's note)."""
    monkeypatch.setenv("MLSYNC_T_DESC", "zq secret; 50%")
    monkeypatch.setenv("MLSYNC_T_HOST", "zq_secret_host")
    with pytest.raises(PlanError) as err:
        plan_on("3.2.0", tmp_path, desc="${env:MLSYNC_T_DESC}", host="\"${env:MLSYNC_T_HOST}\"")
    messages = err.value.messages
    assert any("connector description: it has characters outside that set (not shown" in m for m in messages)
    assert any("refuses action 0 (PREDICT) at predict time: the endpoint (not shown" in m for m in messages)
    assert "zq" not in " ".join(messages)
    monkeypatch.setenv("MLSYNC_T_DESC", "fine text")
    monkeypatch.setenv("MLSYNC_T_HOST", "api.example.com")
    assert plan_on("3.2.0", tmp_path, desc="${env:MLSYNC_T_DESC}", host="\"${env:MLSYNC_T_HOST}\"")[0].plan.has_changes
