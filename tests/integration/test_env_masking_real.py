"""On the real node: a value from the environment outside `credential:` (here a connector description)
appears in no output, no saved plan and not in the `mlsync-state` documents; the node stores it and
returns it in clear, which still plans as no change; a changed value plans a masked update (issue 10,
defect 8; docs/desired-state-file.md, "Interpolation")."""

from __future__ import annotations

import io
import json

import pytest

from mlsync import commands as app
from mlsync.edge.cluster import STATE_INDEX
from stack_helpers import destroy, remote_stack, replan, run_apply, stack_file

pytestmark = pytest.mark.cluster

VALUE = "zq-env-desc-31c7e0"
VALUE2 = "zq-env-desc-rotated-9a44"


def outputs(f, opts, tmp_path) -> dict[str, str]:
    out = {}
    for fmt in ("text", "json", "markdown"):
        buf = io.StringIO()
        app.plan([str(f)], opts, buf, output=fmt)
        out[fmt] = buf.getvalue()
    saved = tmp_path / "p.plan"
    app.plan([str(f)], opts, io.StringIO(), plan_file=str(saved))
    out["saved plan"] = saved.read_text()
    return out


def state_docs(os_client, stack: str) -> str:
    os_client.indices.refresh(index=STATE_INDEX)
    hits = os_client.search(index=STATE_INDEX, body={"query": {"term": {"stack": stack}}, "size": 1000})
    return json.dumps([h["_source"] for h in hits["hits"]["hits"]])


def test_env_description_appears_in_no_output_or_state_on_the_real_node(tmp_path, opts, artifact_server,
                                                                        unique_name, os_client, monkeypatch):
    u = unique_name("envm")
    monkeypatch.setenv("MLSYNC_IT_SECRET_DESC", VALUE)
    f = stack_file(tmp_path, "s", remote_stack(u, u, artifact_server.base_url,
                                               description="${env:MLSYNC_IT_SECRET_DESC}", deploy=False))
    for what, text in outputs(f, opts, tmp_path).items():
        assert VALUE not in text, what
    code, text = run_apply([f], opts)
    assert code == 0, text
    assert VALUE not in text
    planned = replan([f], opts)
    assert not planned.plan.has_changes, [c.reason for c in planned.plan.pending]   # no perpetual diff
    conn_id = next(c.server_id for c in planned.plan.changes if c.address.kind == "connector")
    assert os_client.plugins.ml.get_connector(connector_id=conn_id)["description"] == VALUE
    docs = state_docs(os_client, u)
    assert VALUE not in docs and "(sensitive) scrypt1:" in docs
    assert app.drift([str(f)], opts, io.StringIO()) == 0

    monkeypatch.setenv("MLSYNC_IT_SECRET_DESC", VALUE2)
    texts = outputs(f, opts, tmp_path)
    for what, text in texts.items():
        assert VALUE not in text and VALUE2 not in text, what
    assert "description" in texts["text"] and "(sensitive)" in texts["text"]
    code, text = run_apply([f], opts)
    assert code == 0, text
    assert os_client.plugins.ml.get_connector(connector_id=conn_id)["description"] == VALUE2
    assert VALUE2 not in state_docs(os_client, u)
    assert not replan([f], opts).plan.has_changes
    destroy([f], opts)
