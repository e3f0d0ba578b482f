"""`mlsync graph` against the real node: a stack planned from the cluster draws its connector and
group before the model that uses them (Mermaid and DOT, and SVG through Graphviz); after an apply
only what changes is drawn. Planning never writes, so only the apply needs a cleanup."""

from __future__ import annotations

import io
import re
import shutil

import pytest

from mlsync import commands as app
from stack_helpers import destroy, remote_stack, run_apply, stack_file

pytestmark = pytest.mark.cluster


def graph(files, opts, fmt: str) -> str:
    out = io.StringIO()
    assert app.graph([str(f) for f in files], opts, out, fmt=fmt) == 0
    return out.getvalue()


def test_graph_of_a_real_plan(tmp_path, opts, unique_name, artifact_server) -> None:
    u = unique_name("graph")
    f = stack_file(tmp_path, u, remote_stack(u, u, artifact_server.base_url, deploy=False))
    mermaid = graph([f], opts, "mermaid")
    nodes = dict(re.findall(r'^    (n\d+)\["(.*?)<br/>', mermaid, re.M))
    by_name = {label.split(" ", 1)[1].replace("#quot;", '"'): n for n, label in nodes.items()}
    conn, group = by_name[f'connector["{u}-conn"]'], by_name[f'model_group["{u}-group"]']
    model = next(n for a, n in by_name.items() if a.startswith("model[") and not a.startswith("model_group"))
    assert set(re.findall(r"^  (n\d+) --> (n\d+)$", mermaid, re.M)) == {(conn, model), (group, model)}
    dot = graph([f], opts, "dot")
    assert f"  {conn} -> {model};" in dot and f"  {group} -> {model};" in dot
    if shutil.which("dot"):
        assert graph([f], opts, "svg").lstrip().startswith(("<?xml", "<svg"))
    try:
        code, text = run_apply([f], opts)
        assert code == 0, text
        f.write_text(f.read_text().replace("description: v1", "description: v2", 1))
        after = graph([f], opts, "mermaid")
        assert len(re.findall(r"^    n\d+\[", after, re.M)) == 1 and "<br/>update" in after
    finally:
        destroy([f], opts)
