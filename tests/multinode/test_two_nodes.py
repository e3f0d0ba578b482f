"""Two nodes, one of them lost (issue 10, the campaign's multi-node item), on a real two-node cluster.

What ML Commons 2.19 does (docs/ml-commons-notes.md, "Two nodes"):
- a node that leaves takes its copy of a deployed model with it, and ML Commons shrinks the model's plan
  to the nodes that remain: the document reads DEPLOYED, 1 of 1 node. There is nothing to heal yet, and
  the plan is empty;
- when the node comes back with auto-redeploy off (or its retries spent), the sync-up job writes
  PARTIALLY_DEPLOYED, 1 of 2 nodes: the plan deploys the model again, and that loads it on the node
  that lacks it;
- a node that hangs (SIGSTOP) during a deploy leaves the deploy task RUNNING for as long as it hangs
  (even after the cluster dropped the node): only mlsync's --timeout ends the wait, with an error that
  names the address and the task.

The CLI runs as a subprocess against node 1; the cluster is the session's own (tests/multinode/conftest.py).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import pytest

from helpers import unique_name, wait_until
from models import tiny_onnx
from stack_helpers import remote_stack
from test_local_models import onnx_stack

pytestmark = [pytest.mark.cluster, pytest.mark.multinode]

MLSYNC = str(Path(sys.executable).parent / "mlsync")
AUTO_REDEPLOY = "plugins.ml_commons.model_auto_redeploy.enable"


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def client(two_nodes) -> Any:
    from opensearchpy import OpenSearch
    c = OpenSearch(two_nodes.url, timeout=60, max_retries=0)
    yield c
    c.close()


@pytest.fixture(scope="module")
def auto_redeploy_off(client) -> None:
    """ML Commons redeploys a model on a node that rejoins (default on, 3 tries): off, so that what the
    plan sees, and what apply heals, does not race the server's own healing."""
    client.cluster.put_settings(body={"persistent": {AUTO_REDEPLOY: False}})
    yield
    client.cluster.put_settings(body={"persistent": {AUTO_REDEPLOY: None}})


def cli(two_nodes, cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([MLSYNC, *args], cwd=cwd, env={**two_nodes.env, "NO_COLOR": "1"}, capture_output=True,
                          text=True, timeout=timeout)


def ok(done: subprocess.CompletedProcess, code: int = 0) -> str:
    assert done.returncode == code, f"exit {done.returncode} (wanted {code}):\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}"
    return done.stdout


def model_by_name(client, name: str) -> dict:
    hits = client.transport.perform_request("POST", "/_plugins/_ml/models/_search", body={
        "query": {"term": {"name.keyword": name}}, "size": 5})["hits"]["hits"]
    hits = [h for h in hits if "chunk_number" not in h["_source"]]
    assert len(hits) == 1, f"{len(hits)} models named {name}"
    return {"id": hits[0]["_id"], **hits[0]["_source"]}


def workers(client, model_id: str) -> tuple[Optional[str], Optional[int], Optional[int]]:
    doc = client.plugins.ml.get_model(model_id=model_id)
    return doc.get("model_state"), doc.get("current_worker_node_count"), doc.get("planning_worker_node_count")


def wait_workers(client, model_id: str, want: tuple, timeout: float = 60) -> None:
    wait_until(lambda: workers(client, model_id) == want, timeout=timeout, interval=0.5,
               message=f"model {model_id} to read {want} (state, current, planned nodes); "
                       f"it reads {workers(client, model_id)}")


def node_count(client) -> int:
    return int(client.cluster.health(request_timeout=20)["number_of_nodes"])


def deployed_everywhere(two_nodes, client, cwd: Path, stack: Path, model_id: str) -> None:
    """DEPLOYED on both nodes. Under load a remote deploy can fail on one node ("Fetching master key timed
    out", task COMPLETED_WITH_ERROR): the model then reads PARTIALLY_DEPLOYED, and one more apply (the
    very healing this file tests) completes it."""
    try:
        wait_workers(client, model_id, ("DEPLOYED", 2, 2), timeout=45)
    except TimeoutError:
        assert workers(client, model_id)[0] == "PARTIALLY_DEPLOYED", workers(client, model_id)
        ok(cli(two_nodes, cwd, "apply", "-f", str(stack), "--auto-approve"))
        wait_workers(client, model_id, ("DEPLOYED", 2, 2), timeout=60)


# --------------------------------------------------------------------------- tests


def test_a_node_that_comes_back_partially_deployed_is_planned_and_healed(two_nodes, client, auto_redeploy_off,
                                                                          tmp_path):
    u = unique_name("mn")
    stack = tmp_path / "stack.yaml"
    stack.write_text(remote_stack(u, u, "http://127.0.0.1:9"))    # deploying never calls the endpoint
    addr = f'model["{u}-group"]["{u}-remote"]'
    ok(cli(two_nodes, tmp_path, "apply", "-f", str(stack), "--auto-approve"))
    model_id = model_by_name(client, f"{u}-remote")["id"]
    try:
        # not waiting for 2 of 2 here: on a loaded machine node 2's copy can fail ("Fetching master key timed
        # out"), after which node 2 refuses that model's deploys ("Duplicate deploy model task") until it
        # restarts -- which the loss below does
        wait_until(lambda: (workers(client, model_id)[1] or 0) >= 1, timeout=60, interval=0.5,
                   message=f"model {model_id} to serve on a node")

        # node 2 is lost: ML Commons shrinks the model's plan to node 1, so there is nothing to do
        two_nodes.stop_node(2, "--kill")
        wait_until(lambda: node_count(client) == 1, timeout=60, message="node 2 to leave the cluster")
        wait_workers(client, model_id, ("DEPLOYED", 1, 1))
        ok(cli(two_nodes, tmp_path, "plan", "-f", str(stack), "--detailed-exitcode"), 0)

        # node 2 is back without the model: PARTIALLY_DEPLOYED, 1 of 2 nodes -> the plan deploys it again
        two_nodes.start_node(2)
        wait_workers(client, model_id, ("PARTIALLY_DEPLOYED", 1, 2))
        # its shard copies recovered first: a remote deploy on a node still recovering fails more often
        client.cluster.health(wait_for_status="green", timeout="60s", request_timeout=70)
        out = ok(cli(two_nodes, tmp_path, "plan", "-f", str(stack), "--detailed-exitcode"), 2)
        assert f"{addr} will be deployed" in out
        assert "partially deployed (state PARTIALLY_DEPLOYED, 1 of 2 nodes)" in out
        plan_json = json.loads(ok(cli(two_nodes, tmp_path, "plan", "-f", str(stack), "--output", "json",
                                      "--detailed-exitcode"), 2))
        change = next(c for c in plan_json["resource_changes"] if c["address"] == addr)
        assert change["actions"] == ["deploy"] and change["drift"] is True
        ok(cli(two_nodes, tmp_path, "drift", "-f", str(stack)), 2)

        # apply heals it: deployed on both nodes again, and the next plan is empty
        ok(cli(two_nodes, tmp_path, "apply", "-f", str(stack), "--auto-approve"))
        # a remote deploy answers COMPLETED at once and loads on the other node in the background; on a
        # node just back that can still fail ("Fetching master key timed out"): the model stays
        # PARTIALLY_DEPLOYED, the next plan shows it again and one more apply completes it
        deployed_everywhere(two_nodes, client, tmp_path, stack, model_id)
        ok(cli(two_nodes, tmp_path, "plan", "-f", str(stack), "--detailed-exitcode"), 0)
    finally:
        if node_count(client) < 2:
            two_nodes.start_node(2)
        ok(cli(two_nodes, tmp_path, "destroy", "-f", str(stack), "--auto-approve"))


def test_a_deploy_task_on_a_hung_node_times_out_naming_task_and_address(two_nodes, client, auto_redeploy_off,
                                                                         tmp_path):
    u = unique_name("mn")
    zip_bytes = tiny_onnx.zip_bytes(tiny_onnx.SEED)
    (tmp_path / "tiny-onnx.zip").write_bytes(zip_bytes)
    stack = tmp_path / "stack.yaml"
    stack.write_text(onnx_stack(u, "path", {tiny_onnx.SEED: (None, hashlib.sha256(zip_bytes).hexdigest(),
                                                             "tiny-onnx.zip")}))
    addr = f'model["{u}-g"]["{u}-m"]["1"]'
    proc = subprocess.Popen([MLSYNC, "apply", "-f", str(stack), "--auto-approve", "--timeout", "15s"], cwd=tmp_path,
                            env={**two_nodes.env, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    paused = False
    try:
        lines = []
        assert proc.stdout is not None
        for line in proc.stdout:           # the deploy task exists once apply waits for it: hang node 2 now
            lines.append(line)
            if line.startswith("waiting for") and not paused:
                two_nodes.stop_node(2, "--pause")
                paused = True
        proc.wait(timeout=120)
        out = "".join(lines)
        assert paused, f"apply never waited for a task:\n{out}"
        assert proc.returncode == 1, out
        found = re.search(re.escape(addr) + r": task (\S+) still (\w+) after 15s \(re-run apply to resume\)", out)
        assert found, out
        task_id = found.group(1)
        assert client.plugins.ml.get_task(task_id=task_id)["state"] in ("CREATED", "RUNNING")

        # node 2 resumes: its deploy finishes, the task completes, and apply leaves nothing to do
        two_nodes.start_node(2)
        paused = False
        wait_until(lambda: client.plugins.ml.get_task(task_id=task_id)["state"] != "RUNNING", timeout=90,
                   interval=1, message=f"task {task_id} to end")
        ok(cli(two_nodes, tmp_path, "apply", "-f", str(stack), "--auto-approve"))
        model_id = model_by_name(client, f"{u}-m")["id"]
        wait_workers(client, model_id, ("DEPLOYED", 2, 2), timeout=90)
        ok(cli(two_nodes, tmp_path, "plan", "-f", str(stack), "--detailed-exitcode"), 0)
    finally:
        if proc.poll() is None:
            proc.kill()
        if paused or node_count(client) < 2:
            two_nodes.start_node(2)
        ok(cli(two_nodes, tmp_path, "destroy", "-f", str(stack), "--auto-approve"))
