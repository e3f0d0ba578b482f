"""SPEC §7 property on the real node: for generated desired states, apply then plan is empty.

The strategy of tests/property/strategies.py in its `real` flavour (http connectors on the loopback
stub, built-in pre/post-process functions, TEXT_EMBEDDING URL models served by `artifact_server`,
never deployed: the node runs offline, so a local deploy fails). Each example is a stack of its own
with unique names: apply, assert that the next plan has nothing to do, destroy (also on failure).
Few examples: each one registers real models on the shared node.
"""

from __future__ import annotations

import os
import sys
import tempfile

import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

import helpers
from mlsync.run import driver as executor
from mlsync import render
from mlsync.commands import common as workflow
from mlsync.edge.cluster import Cluster, ConnectionOptions
from mlsync.edge.statestore import ClusterStateStore

from .strategies import Flavour, skeletons, stack_file
from .test_apply_then_plan_empty import write

pytestmark = pytest.mark.cluster


def apply_file(path: str, cluster: Cluster, store: ClusterStateStore, *, destroy: bool = False):
    desired = workflow.load_desired([path])
    planned = workflow.plan_for(desired, cluster, store, destroy=destroy)
    result = executor.apply(planned.plan, cluster, store, credentials=workflow.credentials(desired), parallelism=2,
                            timeout=60)
    assert result.ok, result.errors + [render.render(planned.plan, "text")]
    return desired


# No shrinking: each shrink step would apply and destroy a stack on the shared node; the failing
# example is printed as drawn (names and both files), which is enough to rebuild it as a unit test.
@settings(max_examples=8, deadline=None, derandomize=True, database=None, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(data=st.data())
def test_generated_stack_applies_then_plans_empty_on_the_node(data, os_client, artifact_server):
    prefix = helpers.unique_name("prop")

    def artifact(fmt: str, seed: int) -> tuple[str, str]:
        z = artifact_server.make_model_zip("torch" if fmt == "TORCH_SCRIPT" else "onnx", seed=f"{prefix}-{seed}")
        return z.url, z.sha256

    flavour = Flavour(real=True, endpoint=artifact_server.base_url, artifact=artifact)
    sk = data.draw(skeletons(prefix, max_connectors=1, max_groups=1, max_remote=2, max_local=1), label="names")
    tree = data.draw(stack_file(sk, flavour), label="file")
    cluster = Cluster.connect(ConnectionOptions(url=os.environ.get("OPENSEARCH_URL", "http://127.0.0.1:9200")))
    store = ClusterStateStore(cluster)
    with tempfile.TemporaryDirectory() as tmp:
        path = write(tmp, tree, "stack")
        try:
            desired = apply_file(path, cluster, store)
            again = workflow.plan_for(desired, cluster, store).plan
            assert not again.has_changes, render.render(again, "text")
        finally:
            try:
                if store.load(prefix) is not None:
                    apply_file(path, cluster, store, destroy=True)
            except Exception as err:  # noqa: BLE001 - the test's own failure is what matters
                print(f"cleanup of stack {prefix} failed: {err}", file=sys.stderr)
