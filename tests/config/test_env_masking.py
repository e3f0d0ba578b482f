"""`${env:…}`/`${file:…}` values outside `credential:` are sensitive; `${env-public:…}` is not (issue 10,
defect 8; docs/desired-state-file.md, "Interpolation"). Loader → flatten → planner → plan JSON/digest."""

from __future__ import annotations

import json

from mlsync.core.observed import Observed
from mlsync.core.planner import plan
from mlsync.core.secrets import Secret
from mlsync.core.state import StackState
from mlsync.input import load
from mlsync.input.flatten import flatten

KEY = "k" * 32


def write(tmp_path, text: str):
    f = tmp_path / "stack.yaml"
    f.write_text(text)
    return str(f)


STACK = """
version: 1
stack: ${env:STACK_NAME}
model_groups:
  - name: ${env:GROUP_NAME}
    description: "team ${env:DESC}"
  - name: pub
    description: ${env-public:PUB:-fallback}
  - name: filed
    description: ${file:desc.txt}
  - name: plain
    description: "costs $${env:NOT_A_VAR} literally"
"""

ENV = {"STACK_NAME": "s1", "GROUP_NAME": "grp", "DESC": "zz-secret-desc"}


def desired(tmp_path, env=ENV):
    (tmp_path / "desc.txt").write_text("zz-file-desc\n")
    loaded = load([write(tmp_path, STACK)], env=env)
    return loaded, flatten(loaded.stack, sensitive=loaded.source_map.sensitive)


def forms(d):
    return {str(a): r.form for a, r in d.resources.items()}


def test_env_and_file_values_are_secrets_public_and_names_are_not(tmp_path):
    loaded, d = desired(tmp_path)
    assert loaded.source_map.sensitive == {"team zz-secret-desc", "zz-file-desc"}
    f = forms(d)
    assert d.stack == "s1"                                          # stack names stay public
    assert f['model_group["grp"]']["name"] == "grp"                 # so do names (identity)
    assert isinstance(f['model_group["grp"]']["description"], Secret)
    assert f['model_group["grp"]']["description"].reveal() == "team zz-secret-desc"
    assert isinstance(f['model_group["filed"]']["description"], Secret)
    assert f['model_group["pub"]']["description"] == "fallback"
    assert f['model_group["plain"]']["description"] == "costs ${env:NOT_A_VAR} literally"


def test_env_public_takes_the_environment_value(tmp_path):
    _, d = desired(tmp_path, {**ENV, "PUB": "from-env"})
    assert forms(d)['model_group["pub"]']["description"] == "from-env"


def test_the_plan_json_holds_keyed_fingerprints_and_its_digest_follows_the_value(tmp_path):
    def planned(value):
        _, d = desired(tmp_path, {**ENV, "DESC": value})
        return plan(d, Observed(), StackState("s1", fingerprint_key=KEY, serial=3))

    p1, p2, p1b = planned("zz-secret-desc"), planned("zz-other"), planned("zz-secret-desc")
    text = json.dumps(p1.to_json())
    assert "zz-secret-desc" not in text and "zz-file-desc" not in text
    assert "(sensitive) scrypt1:" in text
    assert p1.digest() == p1b.digest() and p1.digest() != p2.digest()
    # a plan made before the stack had a state: its key was never stored, so only the mask is written
    p0 = plan(desired(tmp_path)[1], Observed(), StackState("s1", fingerprint_key=KEY))
    doc = p0.to_json()
    assert "scrypt1" not in json.dumps(doc) and "(sensitive)" in json.dumps(doc)
    from mlsync.core.plan import Plan
    assert Plan.from_json(json.loads(json.dumps(doc))).digest() == doc["digest"]
    assert Plan.from_json(json.loads(text)).digest() == p1.digest()
