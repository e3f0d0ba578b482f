"""The campaign of issue 10 on the real node, short form (the full form: `scripts/campaign`).

- faults: a stack with several connectors, groups, remote and URL versions, deploys, a connector change
  under a deployed model, a replace and a destroy, applied by the CLI through the fault proxy at 10 %
  (500/502/503/429, resets, answers lost after the node acted, 1-2 s latency), converges within
  `campaign.MAX_RUNS` runs per phase with 0 duplicates and 0 orphans counted on the node directly;
- SIGKILL: `mlsync apply` killed at a request, then re-run without `unlock --force`: converges, 0
  duplicates, 0 orphans;
- concurrency: two `mlsync apply` of the same new stack started together: one is refused by the lock,
  the other applies, no duplicates.

`MLSYNC_CAMPAIGN_SEEDS` (e.g. "1,2,3") overrides the seeds of the short form.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

import campaign

pytestmark = pytest.mark.cluster

URL = os.environ.get("OPENSEARCH_URL", "http://127.0.0.1:9200")
SEEDS = [int(s) for s in os.environ.get("MLSYNC_CAMPAIGN_SEEDS", "1,2").split(",") if s.strip()]


def _assert_ok(trial: campaign.Trial) -> None:
    summary = trial.summary()
    assert len(trial.phases) == 3 and trial.ok, json.dumps(summary, indent=1)
    print(f"\n{trial.kind} seed {trial.seed}: {trial.requests} requests, faults {trial.faults}, "
          f"re-runs {trial.reruns}, {trial.seconds:.0f}s, killed {trial.killed}")


def test_ten_percent_faults_converge_without_duplicates_or_orphans(artifact_server, os_client):
    """The seeds run side by side (each its own stack and proxy), so the short form stays short."""
    with ThreadPoolExecutor(len(SEEDS)) as pool:
        trials = list(pool.map(lambda seed: campaign.fault_trial(seed, artifact_server, os_client, URL, rate=0.10,
                                                                 full=False), SEEDS))
    assert sum(sum(t.faults.values()) for t in trials) > 0, "the proxy injected nothing: the trial proves nothing"
    for trial in trials:
        _assert_ok(trial)


#: The answer to the first call of every kind that creates something is lost after the node acted.
LOST_CREATES = [("POST", r"/connectors/_create$", "drop"), ("POST", r"/model_groups/_register$", "drop"),
                ("POST", r"/models/_register$", "drop"), ("POST", r"/models/_register$", "drop"),
                ("PUT", fr"/connectors/{campaign.ID}$", "drop"), ("POST", r"/_deploy$", "drop"),
                ("DELETE", fr"/models/{campaign.ID}$", "drop"), ("DELETE", fr"/model_groups/{campaign.ID}$", "drop"),
                ("DELETE", fr"/connectors/{campaign.ID}$", "drop")]


def test_lost_answers_after_the_node_acted_make_no_duplicate(artifact_server, os_client):
    """Deterministic: no random faults, the answers of the first create, register, update, deploy and
    delete calls are lost after the node did the work."""
    trial = campaign.fault_trial(0, artifact_server, os_client, URL, rate=0.0, full=False, script=LOST_CREATES)
    assert trial.faults.get("drop", 0) >= 7, trial.faults
    _assert_ok(trial)


def test_sigkill_at_a_connector_update_under_a_deployed_model(artifact_server, os_client):
    point = next(p for p in campaign.KILL_POINTS if p.name == "update connector with a deployed model")
    trial = campaign.kill_trial(3, artifact_server, os_client, URL, point=point, full=False)
    assert trial.killed, "the apply ended before the kill point"
    _assert_ok(trial)


def test_two_applies_of_a_new_stack_started_together(artifact_server, os_client, tmp_path):
    """Started within a few ms of each other: one holds the lease, the other is refused by it; the
    stack is created once."""
    u = f"cc-{uuid.uuid4().hex[:6]}"
    art = campaign.artifacts(artifact_server, tmp_path)
    f = tmp_path / "stack.yaml"
    f.write_text(campaign.stack_text(u, "A", art, full=False))
    env = dict(os.environ, OPENSEARCH_URL=URL, NO_COLOR="1", CI="1")
    cmd = [campaign.PYTHON, "-m", "mlsync.cli", "apply", "-f", str(f), "--auto-approve"]
    try:
        procs = [subprocess.Popen(cmd, cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT) for _ in range(2)]
        outs = [p.communicate(timeout=600)[0] for p in procs]
        codes = sorted(p.returncode for p in procs)
        assert codes == [0, 1], outs
        refused = outs[[p.returncode for p in procs].index(1)]
        assert "lock" in refused.lower(), refused
        dups, orphans, details = campaign.duplicates_and_orphans(os_client, u)
        assert (dups, orphans) == (0, 0), details
        empty, text = campaign.plan_is_empty(URL, f, tmp_path)
        assert empty, text
    finally:
        campaign.cleanup(os_client, u, f, tmp_path, URL)
    assert not any(campaign.census(os_client, u).values())
