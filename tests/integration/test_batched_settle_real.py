"""On the real node: the apply settles its remote deploys together (one batched read per poll,
mlsync/run/steps/model.py `settle_deploys`) instead of one GET loop per model, and still returns only
when every model answers a Predict: a Predict sent the moment `apply` returns must not get 400
"Model not ready yet" (what 2.19 answers while the doc still reads DEPLOYING after the COMPLETED
answer). Issue 12, goal 1."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from mlsync.commands import common
from mlsync.edge.cluster import Cluster
from mlsync.edge.statestore import ClusterStateStore
from mlsync.run import driver
from stack_helpers import destroy, remote_stack, stack_file

pytestmark = pytest.mark.cluster


def extra_models(u: str, n: int) -> str:
    return "".join(f"""  - name: {u}-remote-{i}
    model_group: {u}-group
    function_name: remote
    connector: {u}-conn
    deploy: true
""" for i in range(n))


def test_every_remote_model_answers_a_predict_the_moment_apply_returns(tmp_path, opts, artifact_server,
                                                                      unique_name, os_client):
    u = unique_name("settle")
    f = stack_file(tmp_path, "s", remote_stack(u, u, artifact_server.base_url, extra_models=extra_models(u, 5)))
    try:
        # the driver itself, so that the Predicts follow its return with nothing in between
        cluster = Cluster.connect(opts)
        desired = common.load_desired([str(f)])
        store = ClusterStateStore(cluster)
        result = driver.apply(common.plan_for(desired, cluster, store).plan, cluster, store,
                              credentials=common.credentials(desired), parallelism=4)
        ids = [rr.id for a, rr in result.resources.items() if a.startswith("model[")]
        assert result.ok and len(ids) == 6, result.errors

        def predict(model_id: str) -> dict:
            return os_client.transport.perform_request(
                "POST", f"/_plugins/_ml/models/{model_id}/_predict", body={"parameters": {"input": ["hi"]}})
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(predict, ids))
        assert all(a.get("inference_results") for a in answers), answers
        states = {os_client.plugins.ml.get_model(model_id=i)["model_state"] for i in ids}
        assert states == {"DEPLOYED"}
    finally:
        destroy([f], opts)
