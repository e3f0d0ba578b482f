"""Helpers shared by the real-node integration tests: small stacks, apply, plan again, destroy.

Imported as `from stack_helpers import ...` (pytest puts tests/integration on sys.path); the fixtures
(`opts`, the autouse `destroy_leftovers`, `sync_up_paused`) are in tests/integration/conftest.py.
"""

from __future__ import annotations

import io
from pathlib import Path

from mlsync import commands as app

from helpers import connector_yaml
from mlsync.commands import common as workflow
from mlsync.edge.cluster import Cluster
from mlsync.edge.statestore import ClusterStateStore


def stack_file(tmp_path, name, body: str) -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(body)
    return p


def remote_stack(stack, unique, base_url, *, description="v1", deploy=True, extra_models="", credential="k"):
    """A connector, a group and a remote model using it, all named after `unique`."""
    return f"""
version: 1
stack: {stack}
connectors:
{connector_yaml(f"{unique}-conn", f"{base_url}/v1/{unique}/embeddings", description=description, key=credential)}model_groups:
  - name: {unique}-group
models:
  - name: {unique}-remote
    model_group: {unique}-group
    function_name: remote
    connector: {unique}-conn
    deploy: {str(deploy).lower()}
{extra_models}
"""


def run_apply(files, opts, **kw) -> tuple[int, str]:
    out = io.StringIO()
    code = app.apply([str(f) for f in files], opts, out, auto_approve=True, **kw)
    return code, out.getvalue()


def replan(files, opts):
    cluster = Cluster.connect(opts)
    desired = workflow.load_desired([str(f) for f in files])
    return workflow.plan_for(desired, cluster, ClusterStateStore(cluster))


def destroy(files, opts) -> None:
    code, text = run_apply(files, opts, destroy=True)
    assert code == 0, text


def url_model_stack(u: str, versions: list[tuple[str, str, str]], *, description: str = "") -> str:
    """One group and one URL-registered local model with `versions` as (label, url, sha256)."""
    vs = "\n".join(f"""      - version: "{label}"
        url: {url}
        model_content_hash_value: {sha}""" for label, url, sha in versions)
    return f"""
version: 1
stack: {u}
model_groups:
  - name: {u}-g
models:
  - name: {u}-m
    model_group: {u}-g
    model_format: TORCH_SCRIPT
    {f"description: {description}" if description else ""}
    model_config: {{model_type: bert, embedding_dimension: 4, framework_type: sentence_transformers}}
    versions:
{vs}
"""


def skip_without_pipeline_modules(os_client) -> None:
    """Skip unless the node has `set` (ingest-common) and `filter_query` (search-pipeline-common): scripts/cluster
    installs both, but a node started before it did lacks them until it is restarted."""
    import pytest

    ingest = {p["type"] for n in os_client.nodes.info(metric="ingest")["nodes"].values()
              for p in n.get("ingest", {}).get("processors", [])}
    search = {p["type"] for n in os_client.nodes.info(metric="search_pipelines")["nodes"].values()
              for p in n.get("search_pipelines", {}).get("request_processors", [])}
    if "set" not in ingest or "filter_query" not in search:
        pytest.skip("the node lacks the ingest-common / search-pipeline-common modules (started before "
                    "scripts/cluster installed them: restart it with `scripts/cluster down && scripts/cluster up`)")


def managed_state(stack: str, key: str, api_key: str, connectors: dict, groups: dict, models: dict):
    """A state in which the stack manages the given objects: connectors and groups by name -> id, remote
    models by (group, name) -> id; every connector's credential is {"api_key": api_key}. For plans at
    scale over objects made without mlsync (test_plan_real.py, benchmarks/bench_scale.py)."""
    from mlsync.core.address import Address
    from mlsync.core.secrets import Secret, fingerprint
    from mlsync.core.state import ResourceState, StackState

    st = StackState(stack, fingerprint_key=key)
    cred = fingerprint({"api_key": Secret(api_key)}, key)
    for n, i in connectors.items():
        a = str(Address("connector", n))
        st.resources[a] = ResourceState(a, "connector", i, credential_fingerprint=cred)
    for n, i in groups.items():
        a = str(Address("model_group", n))
        st.resources[a] = ResourceState(a, "model_group", i)
    for (g, m), i in models.items():
        a = str(Address("model", m, group=g))
        st.resources[a] = ResourceState(a, "model", i, server_version="1")
    return st
