"""examples/ci/mlsync.yml: its shape, and its steps run for real in the workflow's order.

The real run (`test_the_workflow_steps_run_for_real`) lays out a workspace holding a copy of
examples/quickstart.yaml with unique names, then plays the jobs: on a pull request validate, plan -o
and comment; on the merge find the reviewed plan, download it and apply it; on the schedule drift
(exit 0), an out-of-band edit, drift again (exit 2) and the drift issue; finally a second pull
request whose saved plan goes stale before its merge, which apply must refuse. Every `run:` step that
invokes mlsync runs against the real node. `${{ ... }}` expressions and the workflow's env are
replaced by test values (an expression the test does not know fails it); artifacts are copied the
way upload-/download-artifact's `with:` says; steps that call the GitHub CLI run against
tests/integration/fake_gh.py, which checks how they call gh and keeps what they write.

Not run: actions/checkout and actions/setup-python (the test lays out the workspace, and this
worktree's mlsync stands in for the `pip install` step), and `if:` conditions (each scenario picks
its steps; `test_workflow_shape` checks the conditions).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from action_runner import StepResult, run_action

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "examples" / "ci" / "mlsync.yml"
QUICKSTART = ROOT / "examples" / "quickstart.yaml"
FAKE_GH = Path(__file__).resolve().parent / "fake_gh.py"
VENV_BIN = Path(sys.executable).parent            # this worktree's mlsync stands in for `pip install`

REPO = "acme/ml-platform"
ALLOWED_ACTIONS = re.compile(r"actions/(checkout|setup-python|upload-artifact|download-artifact)@v\d+|mlsync/mlsync@v\d+")
MLSYNC_ACTION = re.compile(r"mlsync/mlsync@v\d+")      # action.yml at the repository root
# mlsync in a command position (line start, after ; && || | ( ! or $( ), not in a message's prose
MLSYNC_COMMAND = re.compile(r"(^|[;&|(!])\s*mlsync\s+(validate|plan|apply|destroy|drift|export|import|state|unlock)\b",
                            re.M)
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def load_workflow() -> dict:
    with open(WORKFLOW, encoding="utf-8") as f:
        return yaml.safe_load(f)


def triggers(workflow: dict) -> dict:
    return workflow.get("on", workflow.get(True))      # YAML 1.1 (PyYAML) reads a bare `on` as True


def step_key(step: dict) -> str:
    return step.get("id") or step.get("name") or step["uses"].split("@")[0]


def mlsync_steps(workflow: dict) -> set[tuple[str, str]]:
    return {(job, step_key(step)) for job, spec in workflow["jobs"].items() for step in spec["steps"]
            if MLSYNC_COMMAND.search(step.get("run", "")) or MLSYNC_ACTION.fullmatch(step.get("uses", ""))}


# --------------------------------------------------------------------------- shape (no cluster)


def test_workflow_shape() -> None:
    wf = load_workflow()
    on = triggers(wf)
    assert set(on) == {"pull_request", "push", "schedule", "workflow_dispatch"}
    assert on["push"]["branches"] == ["main"] and on["schedule"][0]["cron"]
    assert on["pull_request"]["paths"] == on["push"]["paths"] and wf["env"]["MLSYNC_FILE"] in on["push"]["paths"]
    assert wf["permissions"] == {"contents": "read"}
    assert wf["defaults"]["run"]["shell"] == "bash"
    jobs = wf["jobs"]
    assert set(jobs) == {"plan", "apply", "drift"}

    assert "pull_request" in jobs["plan"]["if"] and "workflow_dispatch" in jobs["plan"]["if"]
    assert jobs["plan"]["permissions"]["pull-requests"] == "write"
    assert jobs["apply"]["needs"] == "plan"
    assert "push" in jobs["apply"]["if"] and "needs.plan.result == 'success'" in jobs["apply"]["if"]
    assert jobs["apply"]["concurrency"] == {"group": "mlsync-apply", "cancel-in-progress": False}
    assert jobs["apply"]["permissions"]["actions"] == "read"
    assert jobs["drift"]["if"] == "github.event_name == 'schedule'"
    assert jobs["drift"]["permissions"]["issues"] == "write"
    commands = {(job, step_key(s)): s["with"]["command"] for job, spec in jobs.items() for s in spec["steps"]
                if MLSYNC_ACTION.fullmatch(s.get("uses", ""))}
    assert commands == {("plan", "plan"): "plan", ("apply", "apply"): "apply", ("drift", "drift"): "drift"}
    assert "plan-if-missing" not in jobs["apply"]["steps"][-2].get("with", {}), "apply only a reviewed plan"

    for name, job in jobs.items():
        for step in job["steps"]:
            if "uses" in step:
                assert ALLOWED_ACTIONS.fullmatch(step["uses"]), f"{name}: {step['uses']} is not an allowed, major-pinned action"
            else:
                assert set(step) <= {"name", "id", "if", "env", "run"}, step
    assert mlsync_steps(wf) == {("plan", "validate"), ("plan", "plan"), ("apply", "apply"), ("drift", "drift")}


def test_secrets_come_from_github_secrets_as_env_vars() -> None:
    wf = load_workflow()
    assert "secrets." not in json.dumps(wf["env"]), "secrets belong to the jobs that use them"
    wanted = {"OPENSEARCH_URL", "OPENSEARCH_USERNAME", "OPENSEARCH_PASSWORD"}
    wanted |= set(re.findall(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)", QUICKSTART.read_text()))
    assert "EMBEDDINGS_API_KEY" in wanted
    for job in {job for job, _ in mlsync_steps(wf)}:
        env = wf["jobs"][job]["env"]
        for var in wanted:
            assert env.get(var) == "${{ secrets.%s }}" % var, f"{job}: {var}"


# --------------------------------------------------------------------------- a small Actions runner


class Simulation:
    """One repository, its GitHub side (the fake gh's state) and an artifact store keyed by run id."""

    def __init__(self, root: Path, repo_files: dict[str, str], secrets: dict[str, str]) -> None:
        self.workflow = load_workflow()
        self.root = root
        self.repo = root / "repo"
        self.workspace = root / "work" / "ml-platform"   # one path for every job, like hosted runners
        self.artifacts = root / "artifacts"
        self.secrets = secrets
        for name, text in repo_files.items():
            (self.repo / name).parent.mkdir(parents=True, exist_ok=True)
            (self.repo / name).write_text(text)
        bin_dir = root / "bin"
        bin_dir.mkdir()
        gh = bin_dir / "gh"
        gh.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_GH}" "$@"\n')
        gh.chmod(0o755)
        self.path = os.pathsep.join([str(bin_dir), str(VENV_BIN), os.environ.get("PATH", "/usr/bin:/bin")])
        self.gh_state = root / "gh-state.json"
        self.write_gh({"calls": [], "comments": [], "issues": [], "labels": [], "commit_pulls": {}, "pulls": {},
                       "runs": []})
        self.ran: set[tuple[str, str]] = set()

    def gh(self) -> dict:
        return json.loads(self.gh_state.read_text())

    def write_gh(self, state: dict) -> None:
        self.gh_state.write_text(json.dumps(state))

    def job(self, name: str, *, event: str, run_id: int, sha: str, **context: str) -> "Job":
        return Job(self, name, event=event, run_id=run_id, sha=sha, context=context)


class Job:
    def __init__(self, sim: Simulation, name: str, *, event: str, run_id: int, sha: str, context: dict) -> None:
        self.sim, self.name, self.spec = sim, name, sim.workflow["jobs"][name]
        self.event, self.run_id, self.sha = event, run_id, sha
        self.context = {f"secrets.{k}": v for k, v in sim.secrets.items()}
        self.context["github.token"] = "ghs_fake-token"
        self.context.update(context)
        self.steps: dict[str, dict[str, Any]] = {}
        self.summary = sim.root / f"summary-{name}-{run_id}.md"
        self.summary.touch()

    # -- expressions and environment
    def resolve(self, expr: str, env: dict[str, str]) -> str:
        if expr in self.context:
            return self.context[expr]
        if m := re.fullmatch(r"steps\.([\w-]+)\.(?:outputs\.([\w-]+)|(outcome))", expr):
            record = self.steps.get(m.group(1), {"outputs": {}, "outcome": ""})
            return record["outcome"] if m.group(3) else record["outputs"].get(m.group(2), "")
        if m := re.fullmatch(r"env\.(\w+)", expr):
            return env[m.group(1)]
        raise KeyError(f"job {self.name}: the test has no value for ${{{{ {expr} }}}}")

    def substitute(self, text: str, env: dict[str, str]) -> str:
        return EXPRESSION.sub(lambda m: self.resolve(m.group(1), env), text)

    def environment(self, step: dict) -> dict[str, str]:
        env = {"PATH": self.sim.path, "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8",
               "CI": "true", "GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": self.event,
               "GITHUB_RUN_ID": str(self.run_id), "GITHUB_SHA": self.sha, "GITHUB_REPOSITORY": REPO,
               "GITHUB_SERVER_URL": "https://github.com", "GITHUB_WORKSPACE": str(self.sim.workspace),
               "GITHUB_WORKFLOW_REF": f"{REPO}/.github/workflows/mlsync.yml@refs/heads/main",
               "GITHUB_STEP_SUMMARY": str(self.summary), "FAKE_GH_STATE": str(self.sim.gh_state)}
        for layer in (self.sim.workflow.get("env", {}), self.spec.get("env", {}), step.get("env", {})):
            for key, value in layer.items():
                env[key] = self.substitute(str(value), env)
        return env

    # -- steps
    def find(self, key: str) -> dict:
        matches = [s for s in self.spec["steps"] if step_key(s) == key]
        assert len(matches) == 1, f"job {self.name}: {len(matches)} steps called {key!r}"
        return matches[0]

    def step(self, key: str) -> StepResult:
        spec = self.find(key)
        self.sim.ran.add((self.name, key))
        env = self.environment(spec)
        result = self.uses(spec, env) if "uses" in spec else self.run(spec, env)
        if "id" in spec:
            self.steps[spec["id"]] = {"outputs": result.outputs, "outcome": "success" if result.code == 0 else "failure"}
        return result

    def run(self, spec: dict, env: dict[str, str]) -> StepResult:
        script = self.sim.root / "step.sh"
        script.write_text(self.substitute(spec["run"], env))
        output = self.sim.root / "github-output"
        output.write_text("")
        env["GITHUB_OUTPUT"] = str(output)
        proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
                              cwd=self.sim.workspace, env=env, capture_output=True, text=True, timeout=300)
        outputs = dict(line.split("=", 1) for line in output.read_text().splitlines() if "=" in line)
        return StepResult(proc.returncode, proc.stdout, proc.stderr, outputs)

    def uses(self, spec: dict, env: dict[str, str]) -> StepResult:
        action = spec["uses"].split("@")[0]
        args = {k: self.substitute(str(v), env) for k, v in spec.get("with", {}).items()}
        ws = self.sim.workspace
        if action == "actions/checkout":
            shutil.rmtree(ws, ignore_errors=True)
            shutil.copytree(self.sim.repo, ws)
        elif action == "actions/setup-python":
            assert re.fullmatch(r"3\.\d+", args["python-version"]), args
        elif action == "actions/upload-artifact":
            store = self.sim.artifacts / str(self.run_id) / args["name"]
            store.mkdir(parents=True)
            for rel in args["path"].split():
                if not (ws / rel).is_file():
                    return StepResult(1, "", f"upload-artifact: no file {rel}", {})
                shutil.copy(ws / rel, store / Path(rel).name)
        elif MLSYNC_ACTION.fullmatch(spec["uses"]):
            return run_action(args, env, ws, self.sim.root)
        elif action == "actions/download-artifact":
            assert args["github-token"], "a download from another run needs a token"
            store = self.sim.artifacts / args["run-id"] / args["name"]
            if not store.is_dir():
                return StepResult(1, "", f"download-artifact: run {args['run-id']} has no artifact {args['name']}", {})
            shutil.copytree(store, ws / args["path"], dirs_exist_ok=True)
        else:
            raise AssertionError(f"the test does not know {action}")
        return StepResult(0, "", "", {})


# --------------------------------------------------------------------------- the real run


def cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "mlsync"), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def ml_search(client: Any, kind: str, name: str) -> list[dict]:
    body = {"size": 20, "query": {"term": {"name.keyword": name}}}
    return client.transport.perform_request("POST", f"/_plugins/_ml/{kind}/_search", body=body)["hits"]["hits"]


@pytest.fixture
def ci_stack(tmp_path, unique_name, artifact_server, os_client):
    """The quickstart example under unique names; destroyed afterwards however the test ended."""
    u = unique_name("ci")
    text = QUICKSTART.read_text().replace("quickstart", u).replace("http://127.0.0.1:8089", artifact_server.base_url)
    names = {"stack": u, "connector": f"{u}-embeddings-api", "group": f"{u}-embeddings",
             "model": f"{u}-remote-embedder"}
    assert all(n in text for n in names.values())
    secrets = {"OPENSEARCH_URL": os.environ.get("OPENSEARCH_URL", "http://127.0.0.1:9200"),
               "OPENSEARCH_USERNAME": os.environ.get("OPENSEARCH_USERNAME", ""),
               "OPENSEARCH_PASSWORD": os.environ.get("OPENSEARCH_PASSWORD", ""),
               "EMBEDDINGS_API_KEY": f"sk-ci-{uuid.uuid4().hex}"}
    sim = Simulation(tmp_path, {"mlsync.yaml": text}, secrets)
    yield sim, names
    env = {"PATH": sim.path, "HOME": os.environ.get("HOME", "/root"), "NO_COLOR": "1", **secrets}
    problems = []
    unlock = cli(["unlock", "--stack", u, "--force"], env, sim.repo)
    destroy = cli(["destroy", "--auto-approve", "-f", "mlsync.yaml"], env, sim.repo)
    if unlock.returncode or destroy.returncode:
        problems.append(f"destroy exited {destroy.returncode}: {destroy.stdout}{destroy.stderr}{unlock.stderr}")
    import helpers
    janitor = helpers.Janitor(os_client)
    for kind, name in (("models", names["model"]), ("model_groups", names["group"]),
                       ("connectors", names["connector"])):
        for hit in ml_search(os_client, kind, name):
            getattr(janitor, {"models": "model", "model_groups": "group", "connectors": "connector"}[kind])(hit["_id"])
            problems.append(f"destroy left {kind} {name} ({hit['_id']})")
    problems += janitor.cleanup()
    os_client.delete(index="mlsync-state", id=u, refresh=True, ignore=[404])
    if problems:
        pytest.fail("cleanup: " + "; ".join(problems), pytrace=False)


def assert_no_secret(secret: str, *texts: str) -> None:
    for text in texts:
        assert secret not in text


@pytest.mark.cluster
def test_the_workflow_steps_run_for_real(ci_stack, os_client) -> None:
    sim, names = ci_stack
    stack, group = names["stack"], names["group"]
    secret = sim.secrets["EMBEDDINGS_API_KEY"]
    ws = sim.workspace

    # -- pull request #7: validate, plan -o, save the plan, one sticky comment
    pr = sim.job("plan", event="pull_request", run_id=4242, sha="d00d" * 10, **{
        "github.event.pull_request.number": "7", "github.event.pull_request.head.sha": "a1" * 20})
    pr.step("actions/checkout")
    pr.step("actions/setup-python")
    validated = pr.step("validate")
    assert validated.code == 0, validated
    assert validated.stdout == f"valid: 1 connector, 1 model group, 1 model version in 1 file (stack {stack})\n"
    planned = pr.step("plan")
    assert planned.code == 0, planned
    assert planned.outputs == {"exit-code": "2", "has-changes": "true", "plan-path": str(ws / "plan.mlsync"),
                               "markdown-path": str(ws / "plan.md")}, planned
    plan_md = (ws / "plan.md").read_text()
    assert plan_md.startswith(f"## mlsync plan for `{stack}`\n") and "3 changes" in plan_md
    for address in (f'connector["{names["connector"]}"]', f'model_group["{group}"]',
                    f'model["{group}"]["{names["model"]}"]'):
        assert f"`{address}`" in plan_md
    assert plan_md in pr.summary.read_text()
    saved = json.loads((ws / "plan.mlsync").read_text())
    assert saved["stack"] == stack and saved["sources"] == [str(ws / "mlsync.yaml")]
    assert pr.step("Save the plan").code == 0
    commented = pr.step("Comment the plan on the pull request")
    assert commented.code == 0, commented
    comments = [c for c in sim.gh()["comments"] if c["issue"] == 7]
    assert len(comments) == 1
    assert comments[0]["body"].startswith("<!-- mlsync-plan -->\n" + plan_md)
    assert "Plan of a1a1a1a" in comments[0]["body"]
    assert_no_secret(secret, plan_md, (ws / "plan.mlsync").read_text(), comments[0]["body"])

    # -- merge of #7: find the run that planned the pull request's head, apply exactly its plan
    state = sim.gh()
    state["commit_pulls"]["e1" * 20] = [{"number": 7, "merged_at": "2025-01-01T00:00:00Z"}]
    state["pulls"]["7"] = {"number": 7, "head": {"sha": "a1" * 20}}
    state["runs"] = [
        {"databaseId": 4241, "headSha": "a1" * 20, "event": "pull_request", "conclusion": "failure", "workflow": "mlsync.yml"},
        {"databaseId": 4242, "headSha": "a1" * 20, "event": "pull_request", "conclusion": "success", "workflow": "mlsync.yml"},
        {"databaseId": 4250, "headSha": "b2" * 20, "event": "pull_request", "conclusion": "success", "workflow": "mlsync.yml"},
    ]
    sim.write_gh(state)
    merge = sim.job("apply", event="push", run_id=5000, sha="e1" * 20)
    merge.step("actions/checkout")
    assert not (ws / "plan.mlsync").exists()
    merge.step("actions/setup-python")
    found = merge.step("saved")
    assert found.code == 0 and found.outputs == {"pr": "7", "run_id": "4242"}, found
    assert merge.step("actions/download-artifact").code == 0
    applied = merge.step("apply")
    assert applied.code == 0, applied
    assert "Apply complete: 3 done" in applied.stdout
    assert applied.outputs["exit-code"] == "0" and applied.outputs["has-changes"] == "true", applied
    assert "Apply complete: 3 done" in merge.summary.read_text()
    hits = ml_search(os_client, "model_groups", group)
    assert len(hits) == 1
    group_id = hits[0]["_id"]

    # -- schedule: no drift, then an out-of-band edit is drift (exit 2) and opens one issue
    nightly = sim.job("drift", event="schedule", run_id=6000, sha="e1" * 20)
    nightly.step("actions/checkout")
    nightly.step("actions/setup-python")
    clean = nightly.step("drift")
    assert clean.code == 0 and clean.outputs["exit-code"] == "0" and clean.outputs["has-changes"] == "false", clean
    assert "**No drift." in (ws / "drift.md").read_text()
    assert nightly.step("Close the drift issue").code == 0
    assert sim.gh()["issues"] == []

    os_client.transport.perform_request("PUT", f"/_plugins/_ml/model_groups/{group_id}",
                                        body={"description": "edited by hand"})
    drifted = nightly.step("drift")
    assert drifted.code == 0 and drifted.outputs["exit-code"] == "2" and drifted.outputs["has-changes"] == "true", drifted
    drift_md = (ws / "drift.md").read_text()
    assert f'`model_group["{group}"]`' in drift_md and "Changed on the cluster since the last apply" in drift_md
    assert "edited by hand" in drift_md
    assert drift_md in nightly.summary.read_text()
    for _ in range(2):                                    # the second run updates the same issue
        opened = nightly.step("Open or update the drift issue")
        assert opened.code == 0, opened
    issues = sim.gh()["issues"]
    assert len(issues) == 1 and issues[0]["labels"] == ["mlsync-drift"] and issues[0]["state"] == "open"
    assert issues[0]["body"].startswith("<!-- mlsync-drift -->\n") and drift_md in issues[0]["body"]
    assert_no_secret(secret, drift_md, issues[0]["body"])

    # -- pull request #8 plans the fix; the cluster changes again before the merge: the plan is stale
    pr8 = sim.job("plan", event="pull_request", run_id=4250, sha="d11d" * 10, **{
        "github.event.pull_request.number": "8", "github.event.pull_request.head.sha": "b2" * 20})
    pr8.step("actions/checkout")
    assert pr8.step("validate").code == 0
    assert pr8.step("plan").code == 0
    assert "*drift:*" in (ws / "plan.md").read_text()
    assert pr8.step("Save the plan").code == 0
    for _ in range(2):                                    # a new push to #8: the same comment is updated
        assert pr8.step("Comment the plan on the pull request").code == 0
    assert len([c for c in sim.gh()["comments"] if c["issue"] == 8]) == 1
    assert [c[:3] for c in sim.gh()["calls"] if c[:3] == ["api", "--method", "PATCH"]]

    os_client.transport.perform_request("PUT", f"/_plugins/_ml/model_groups/{group_id}",
                                        body={"description": "edited again"})
    state = sim.gh()
    state["commit_pulls"]["e2" * 20] = [{"number": 8, "merged_at": "2025-01-02T00:00:00Z"}]
    state["pulls"]["8"] = {"number": 8, "head": {"sha": "b2" * 20}}
    sim.write_gh(state)
    merge8 = sim.job("apply", event="push", run_id=5100, sha="e2" * 20)
    merge8.step("actions/checkout")
    assert merge8.step("saved").outputs == {"pr": "8", "run_id": "4250"}
    assert merge8.step("actions/download-artifact").code == 0
    refused = merge8.step("apply")
    assert refused.code == 1, refused
    assert "the saved plan is stale" in refused.stderr and f'model_group["{group}"]' in refused.stderr
    source = os_client.transport.perform_request("GET", f"/_plugins/_ml/model_groups/{group_id}")
    assert source["description"] == "edited again", "a stale plan must change nothing"
    told = merge8.step("Tell the pull request that its plan was not applied")
    assert told.code == 0, told
    assert "**not applied**" in [c for c in sim.gh()["comments"] if c["issue"] == 8][-1]["body"]

    # -- a failed plan replaces the sticky comment with a failure note (no stale plan stays up)
    retry8 = sim.job("plan", event="pull_request", run_id=4260, sha="d22d" * 10, **{
        "github.event.pull_request.number": "8", "github.event.pull_request.head.sha": "c3" * 20})
    retry8.steps["plan"] = {"outputs": {}, "outcome": "failure"}
    assert retry8.step("Comment the plan on the pull request").code == 0
    pr8_comments = [c for c in sim.gh()["comments"] if c["issue"] == 8 and c["body"].startswith("<!-- mlsync-plan")]
    assert len(pr8_comments) == 1 and "mlsync could not make a plan" in pr8_comments[0]["body"]

    # every mlsync step of the workflow ran, and so did every other step but `pip install`
    assert mlsync_steps(sim.workflow) <= sim.ran
    every = {(job, step_key(s)) for job, spec in sim.workflow["jobs"].items() for s in spec["steps"]}
    assert every - sim.ran == {(job, "Install mlsync") for job in sim.workflow["jobs"]}


def test_apply_after_a_direct_push_finds_no_reviewed_plan(tmp_path) -> None:
    # No cluster needed: the step stops before anything reaches mlsync.
    sim = Simulation(tmp_path, {"mlsync.yaml": QUICKSTART.read_text()},
                     {k: "" for k in ("OPENSEARCH_URL", "OPENSEARCH_USERNAME", "OPENSEARCH_PASSWORD",
                                      "EMBEDDINGS_API_KEY")})
    push = sim.job("apply", event="push", run_id=7000, sha="f0" * 20)
    push.step("actions/checkout")
    found = push.step("saved")
    assert found.code == 1 and "no reviewed plan exists" in found.stdout, found
    assert "run_id" not in found.outputs
    assert sim.gh()["calls"] == [["api", f"repos/{REPO}/commits/{'f0' * 20}/pulls",
                                  "--jq", "[.[] | select(.merged_at != null)][0].number // empty"]]
