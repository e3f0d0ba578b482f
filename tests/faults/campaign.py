"""The fault and SIGKILL campaign of issue 10, as a library: test_fault_campaign.py runs a short form in
CI, ``scripts/campaign`` the full form (``python tests/faults/campaign.py --seeds 20 --kills 20``).

Black box: every apply is the CLI (``python -m mlsync.cli apply``) in a subprocess, talking to the
real node through the loopback :class:`proxy.FaultProxy`; what is on the node is counted with a
client that bypasses the proxy (``census``). One *trial* walks a stack through three phases:

- ``A``: two connectors, two groups, two remote models (deployed), a tiny ONNX model registered by
  URL (deployed), a tiny ONNX model uploaded from ``path:`` (deployed), a torch URL model with two
  versions (registered only);
- ``B``: the first connector changes under its deployed model (undeploy, update, redeploy), the
  URL ONNX version gets a new build under the same label (a replace of a deployed version), a
  remote model is undeployed, a torch version is deleted and another registered, a third
  connector and a remote model using it are created;
- ``C``: destroy.

After each phase the apply is re-run until it exits 0 and a direct plan is empty (at most
``MAX_RUNS`` runs); then the census must show every desired object exactly once (0 duplicates)
and nothing carrying the trial's prefix that the state does not name (0 orphans); after ``C``,
nothing at all. Nothing here is imported by mlsync; it imports mlsync only to plan directly.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
REPO = TESTS.parent
for p in (str(TESTS), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

import helpers  # noqa: E402
from models import tiny_onnx  # noqa: E402
from proxy import FaultProxy  # noqa: E402

#: Runs of one phase (the first + re-runs) before the trial counts as "did not converge".
MAX_RUNS = 8
#: Bounds on the faults of one trial (the rate is per request).
MAX_FAULTS = 200
FAULT_WINDOW = 900.0
PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() else sys.executable
ML = "/_plugins/_ml"
STATE_INDEX = "mlsync-state"


# --------------------------------------------------------------------------- the stack


def stack_text(u: str, phase: str, art: dict, *, full: bool = True) -> str:
    """The trial's desired-state file for phase "A" or "B" (phase "C" is a destroy of B's file).

    ``full=False`` leaves the two ONNX models out (the CI short form: no local deploys)."""
    stub = art["stub"]
    c1_desc = "v1" if phase == "A" else "v2"

    def connector(name: str, desc: str) -> str:
        return helpers.connector_yaml(f"{u}-{name}", f"{stub}/v1/{u}/{name}", description=desc, key=f"k-{name}")

    connectors = connector("c1", c1_desc) + connector("c2", "v1")
    if phase == "B":
        connectors += connector("c3", "v1")

    def remote(name: str, group: str, conn: str, deploy: bool) -> str:
        return f"""  - name: {u}-{name}
    model_group: {u}-{group}
    function_name: remote
    connector: {u}-{conn}
    deploy: {str(deploy).lower()}
"""

    models = remote("r1", "g1", "c1", True) + remote("r2", "g2", "c2", phase == "A")
    if phase == "B":
        models += remote("r3", "g2", "c3", True)
    t_versions = [("1", art["t1"]), ("2", art["t2"])] if phase == "A" else [("1", art["t1"]), ("3", art["t3"])]
    models += f"""  - name: {u}-t
    model_group: {u}-g2
    model_format: TORCH_SCRIPT
    model_config: {{model_type: bert, embedding_dimension: 4, framework_type: sentence_transformers}}
    deploy: false
    versions:
""" + "".join(f"""      - version: "{label}"
        url: {z.url}
        model_content_hash_value: {z.sha256}
""" for label, z in t_versions)
    if full:
        e = art["onnx_a"] if phase == "A" else art["onnx_b"]

        def onnx(name: str, group: str, source: str, sha: str) -> str:
            return f"""  - name: {u}-{name}
    model_group: {u}-{group}
    function_name: TEXT_EMBEDDING
    model_format: ONNX
    model_config: {json.dumps(tiny_onnx.MODEL_CONFIG)}
    deploy: true
    versions:
      - version: "1"
        {source}
        model_content_hash_value: {sha}
"""
        models += onnx("e", "g1", f"url: {e.url}", e.sha256)
        models += onnx("p", "g2", f"path: {art['onnx_path'].name}", art["onnx_path_sha"])
    return f"""version: 1
stack: {u}
connectors:
{connectors}model_groups:
  - name: {u}-g1
  - name: {u}-g2
models:
{models}"""


def artifacts(server: helpers.ArtifactServer, workdir: Path) -> dict:
    """The zips a trial needs, served by ``server`` (URL versions) or written into ``workdir`` (path)."""
    tag = uuid.uuid4().hex[:6]
    onnx_file = workdir / "tiny-onnx.zip"
    onnx_file.write_bytes(tiny_onnx.zip_bytes(tiny_onnx.SEED))
    return {
        "stub": server.base_url,
        "t1": server.make_model_zip("torch", seed=f"{tag}-1"),
        "t2": server.make_model_zip("torch", seed=f"{tag}-2"),
        "t3": server.make_model_zip("torch", seed=f"{tag}-3"),
        "onnx_a": server.add_file(f"onnx-{tiny_onnx.SEED}.zip", tiny_onnx.zip_bytes(tiny_onnx.SEED)),
        "onnx_b": server.add_file(f"onnx-{tiny_onnx.SEED_V2}.zip", tiny_onnx.zip_bytes(tiny_onnx.SEED_V2)),
        "onnx_path": onnx_file,
        "onnx_path_sha": helpers.sha256_hex(onnx_file.read_bytes()),
    }


def expected_objects(phase: str, full: bool) -> Counter:
    """How many objects of each kind the node must hold after `phase` (model = non-chunk model doc)."""
    if phase == "C":
        return Counter()
    connectors = 2 if phase == "A" else 3
    models = (2 if phase == "A" else 3) + 2 + (2 if full else 0)
    return Counter(connector=connectors, group=2, model=models)


# --------------------------------------------------------------------------- counting on the node


def census(client: Any, u: str) -> dict[str, list[dict]]:
    """Every connector, group and model (not chunk) on the node whose name starts with ``u`` — read
    directly, not through the proxy. {kind: [{"id", "name", ...}]}"""
    try:   # read-your-writes: a delete or create of the last second is visible to the count
        client.indices.refresh(index=".plugins-ml-model,.plugins-ml-connector,.plugins-ml-model-group",
                               ignore_unavailable=True)
    except Exception:  # noqa: BLE001 — an index that does not exist yet
        pass

    def wildcard(path: str) -> list[dict]:
        body = {"size": 1000, "query": {"prefix": {"name.keyword": f"{u}-"}}}
        resp = client.transport.perform_request("POST", f"{ML}/{path}/_search", body=body)
        hits = [dict(h["_source"], id=h["_id"]) for h in resp["hits"]["hits"]]
        return [h for h in hits if str(h.get("name", "")).startswith(f"{u}-")]

    models = [m for m in wildcard("models") if "chunk_number" not in m]
    return {"connector": wildcard("connectors"), "group": wildcard("model_groups"), "model": models}


def state_ids(client: Any, u: str) -> tuple[dict[str, str], Optional[dict], list]:
    """(address -> server id, lock, journal) of the stack's state document, read directly."""
    from opensearchpy.exceptions import NotFoundError

    from mlsync.core.state import is_split, join

    try:
        doc = client.get(index=STATE_INDEX, id=u)["_source"]
    except NotFoundError:
        return {}, None, []
    if is_split(doc):   # layout 2: a head and one document per resource / journal entry
        client.indices.refresh(index=STATE_INDEX)
        hits = client.search(index=STATE_INDEX, body={
            "size": 10_000, "query": {"bool": {"filter": [{"term": {"stack": u}}],
                                               "must_not": [{"ids": {"values": [u]}}]}}})["hits"]["hits"]
        doc = join(doc, {h["_id"]: h["_source"] for h in hits})
    ids = {addr: r.get("id") for addr, r in (doc.get("resources") or {}).items()}
    return ids, doc.get("lock"), list(doc.get("journal") or [])


def duplicates_and_orphans(client: Any, u: str) -> tuple[int, int, list[str]]:
    """(duplicates, orphans, details). A duplicate: a second object with the same natural key
    (connector name; group name; model name + group + artifact hash). An orphan: an object with the
    trial's prefix that the stack's state does not name."""
    found = census(client, u)
    ids, _, _ = state_ids(client, u)
    managed = {i for i in ids.values() if i}
    details: list[str] = []
    dups = 0
    for kind, objs in found.items():
        if kind == "model":
            keys = Counter((o.get("model_group_id"), o.get("name"), o.get("model_content_hash_value")) for o in objs)
        else:
            keys = Counter(o.get("name") for o in objs)
        for key, n in keys.items():
            if n > 1:
                dups += n - 1
                details.append(f"duplicate {kind} {key} x{n}")
    orphans = 0
    for kind, objs in found.items():
        for o in objs:
            if o["id"] not in managed:
                orphans += 1
                details.append(f"orphan {kind} {o.get('name')} {o['id']} state={o.get('model_state', '')}")
    return dups, orphans, details


# --------------------------------------------------------------------------- running the CLI


@dataclass
class RunResult:
    code: int
    output: str
    seconds: float


def cli(args: list[str], url: str, cwd: Path, *, timeout: float = 900,
        started: Optional[Callable[[subprocess.Popen], None]] = None) -> RunResult:
    """Run ``mlsync <args>`` as a subprocess against ``url``."""
    env = dict(os.environ, OPENSEARCH_URL=url, NO_COLOR="1", CI="1")
    t0 = time.monotonic()
    proc = subprocess.Popen([PYTHON, "-m", "mlsync.cli", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if started is not None:
        started(proc)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        out += f"\n[campaign] killed after {timeout}s"
    return RunResult(proc.returncode, out, time.monotonic() - t0)


def plan_is_empty(direct_url: str, f: Path, cwd: Path, *, destroy: bool = False) -> tuple[bool, str]:
    """Whether a plan made directly (no proxy, in this process) is empty; an error is tried again."""
    from mlsync.commands import common  # noqa: PLC0415 — the campaign runs mlsync as a black box otherwise
    from mlsync.edge.cluster import Cluster, ConnectionOptions  # noqa: PLC0415
    from mlsync.edge.statestore import ClusterStateStore  # noqa: PLC0415

    text = ""
    for _ in range(3):
        try:
            cluster = Cluster.connect(ConnectionOptions(url=direct_url))
            planned = common.plan_for(common.load_desired([str(f)]), cluster, ClusterStateStore(cluster),
                                      destroy=destroy)
            pending = [f"{c.address}: {[a.value for a in c.actions]}" for c in planned.plan.pending]
            return not pending, "; ".join(pending)
        except Exception as err:  # noqa: BLE001 — report it, try again
            text = f"plan failed: {type(err).__name__}: {err}"
            time.sleep(1)
    return False, text


# --------------------------------------------------------------------------- one trial


@dataclass
class PhaseOutcome:
    phase: str
    runs: int
    converged: bool
    duplicates: int
    orphans: int
    details: list = field(default_factory=list)
    failures: list = field(default_factory=list)      # last lines of failed runs
    lock_left: bool = False
    journal_left: int = 0
    seconds: list = field(default_factory=list)       # wall time of each run


@dataclass
class Trial:
    kind: str                 # "faults" or "sigkill"
    seed: int
    stack: str
    phases: list = field(default_factory=list)
    requests: int = 0
    faults: dict = field(default_factory=dict)
    killed: Optional[str] = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        if self.kind == "sigkill" and not self.killed:
            return False              # the apply ended before the kill point: the trial proved nothing
        return all(p.converged and p.duplicates == 0 and p.orphans == 0 and not p.lock_left and not p.journal_left
                   for p in self.phases)

    @property
    def reruns(self) -> int:
        return sum(p.runs - 1 for p in self.phases)

    def summary(self) -> dict:
        return {"kind": self.kind, "seed": self.seed, "stack": self.stack, "ok": self.ok, "killed": self.killed,
                "requests": self.requests, "faults": self.faults, "seconds": round(self.seconds, 1),
                "phases": [{"phase": p.phase, "runs": p.runs, "converged": p.converged, "duplicates": p.duplicates,
                            "orphans": p.orphans, "seconds": p.seconds, "lock_left": p.lock_left, "journal_left": p.journal_left,
                            "details": p.details, "failures": p.failures} for p in self.phases]}


def _tail(text: str, n: int = 3) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(lines[-n:])


def run_phase(phase: str, f: Path, workdir: Path, proxy_url: str, direct_url: str, client: Any, u: str,
              full: bool, *, first: Optional[Callable[[], RunResult]] = None, max_runs: int = MAX_RUNS,
              log: Callable[[str], None] = lambda s: None) -> PhaseOutcome:
    """Apply (phase C: destroy) through the proxy until it exits 0 and a direct plan is empty."""
    args = ["destroy" if phase == "C" else "apply", "-f", str(f), "--auto-approve"]
    out = PhaseOutcome(phase, 0, False, 0, 0)
    for attempt in range(max_runs):
        r = first() if (attempt == 0 and first is not None) else cli(args, proxy_url, workdir)
        out.runs += 1
        out.seconds.append(round(r.seconds, 1))
        if r.code != 0:
            failed = [ln.strip() for ln in r.output.splitlines() if " failed" in ln and "Apply finished" not in ln]
            out.failures.append(f"run {out.runs} exit {r.code}: {_tail(r.output)}" + "".join(f" | {ln}" for ln in failed[:3]))
            log(f"    {phase} run {out.runs}: exit {r.code}: {_tail(r.output, 2)}")
            continue
        empty, text = plan_is_empty(direct_url, f, workdir, destroy=(phase == "C"))
        if empty:
            out.converged = True
            break
        out.failures.append(f"run {out.runs} exit 0 but the next plan is not empty: {_tail(text, 6)}")
        log(f"    {phase} run {out.runs}: exit 0, plan not empty")
    dups, orphans, details = duplicates_and_orphans(client, u)
    if out.converged:
        # converged: exactly what the file asks for is on the node
        got = Counter({k: len(v) for k, v in census(client, u).items() if v})
        want = expected_objects(phase, full)
        if got != want:
            details.append(f"objects on the node {dict(got)} != expected {dict(want)}")
            orphans += max(0, sum((got - want).values()))
    out.duplicates, out.orphans, out.details = dups, orphans, details
    _, lock, journal = state_ids(client, u)
    out.lock_left = lock is not None
    out.journal_left = len(journal)
    return out


def fault_trial(seed: int, server: helpers.ArtifactServer, client: Any, direct_url: str, *, rate: float = 0.10,
                full: bool = True, script: Optional[list] = None, log: Callable[[str], None] = print) -> Trial:
    """One seed at ``rate`` faults (plus the proxy's forced ``script``): phases A, B, C, each re-run
    until converged."""
    u = f"fc{seed}-{uuid.uuid4().hex[:6]}"
    trial = Trial("faults", seed, u)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mlsync-campaign-") as tmp:
        workdir = Path(tmp)
        art = artifacts(server, workdir)
        f = workdir / "stack.yaml"
        proxy = FaultProxy(upstream=direct_url, rate=rate, seed=seed, max_faults=MAX_FAULTS,
                           until=time.monotonic() + FAULT_WINDOW, script=list(script or [])).start()
        try:
            for phase in ("A", "B", "C"):
                if phase != "C":
                    f.write_text(stack_text(u, phase, art, full=full))
                outcome = run_phase(phase, f, workdir, proxy.url, direct_url, client, u, full, log=log)
                trial.phases.append(outcome)
                log(f"  seed {seed} phase {phase}: runs {outcome.runs} ({outcome.seconds} s) converged {outcome.converged} "
                    f"dup {outcome.duplicates} orphans {outcome.orphans} {outcome.details or ''}")
                if not outcome.converged:
                    break
        finally:
            snap = proxy.snapshot()
            proxy.stop()
            trial.requests, trial.faults = snap["requests"], snap["faults"]
            cleanup(client, u, f, workdir, direct_url)
    trial.seconds = time.monotonic() - t0
    return trial


# --------------------------------------------------------------------------- SIGKILL


@dataclass(frozen=True)
class KillPoint:
    """Kill ``mlsync apply`` at the ``nth`` request matching ``method`` + ``path`` (+ ``body``) of
    ``phase``: ``before`` it reaches the node (the proxy never forwards it) or ``after`` the node
    answered (the answer is lost with the process)."""

    name: str
    phase: str
    method: str                     # a regex on the method
    path: str                       # a regex on the request path
    body: str = ""                  # a regex the body must contain (case-insensitive)
    nth: int = 1
    full: bool = False              # needs the ONNX models (phase A/B with full=True)

    def matches(self, method: str, path: str, body: bytes) -> bool:
        return (re.fullmatch(self.method, method) is not None and re.search(self.path, path.split("?")[0]) is not None
                and (not self.body or re.search(self.body, body.decode("utf-8", "replace"), re.I) is not None))


#: An object id in a path. Auto ids are URL-safe base64 and may hold (or start with) "_", so "_" is
#: not excluded; no PUT or DELETE of these paths is an "_endpoint".
ID = r"[^/]+"

#: Every operation kind of the issue, with the request that carries it.
KILL_POINTS = [
    KillPoint("create connector", "A", "POST", r"/connectors/_create$"),
    KillPoint("create connector (2nd)", "A", "POST", r"/connectors/_create$", nth=2),
    KillPoint("group create", "A", "POST", r"/model_groups/_register$"),
    KillPoint("remote register", "A", "POST", r"/models/_register$", body=r'"function_name":\s*"remote"'),
    KillPoint("URL register", "A", "POST", r"/models/_register$", body=r'"url":'),
    KillPoint("local register (register_meta)", "A", "POST", r"/models/_register_meta$", full=True),
    KillPoint("upload chunk", "A", "POST", r"/models/[^/]+/upload_chunk/\d+$", full=True),
    KillPoint("deploy", "A", "POST", r"/models/[^/]+/_deploy$"),
    KillPoint("deploy (local ONNX)", "A", "POST", r"/models/[^/]+/_deploy$", nth=3, full=True),
    KillPoint("update connector with a deployed model", "B", "PUT", fr"/connectors/{ID}$"),
    KillPoint("undeploy", "B", "POST", r"/models/[^/]+/_undeploy$"),
    KillPoint("replace: register the successor", "B", "POST", r"/models/_register$", body=fr"onnx-{tiny_onnx.SEED_V2}\.zip",
              full=True),
    KillPoint("replace/delete: delete a version", "B", "DELETE", fr"/models/{ID}$"),
    KillPoint("create connector (phase B)", "B", "POST", r"/connectors/_create$"),
    KillPoint("delete model (destroy)", "C", "DELETE", fr"/models/{ID}$"),
    KillPoint("delete group (destroy)", "C", "DELETE", fr"/model_groups/{ID}$"),
    KillPoint("delete connector (destroy)", "C", "DELETE", fr"/connectors/{ID}$"),
    KillPoint("state write", "A", "POST|PUT", r"/mlsync-state/_(doc|create|update|bulk)\b"),
]


def kill_trial(seed: int, server: helpers.ArtifactServer, client: Any, direct_url: str, *,
               point: Optional[KillPoint] = None, full: bool = True, log: Callable[[str], None] = print) -> Trial:
    """Phases A, B, C; in the phase of ``point`` the first run is SIGKILLed at that request, then the
    phase is re-run (no `unlock --force`) until converged. Seeded: which point, nth, before/after."""
    rng = random.Random(seed)
    point = point or rng.choice([p for p in KILL_POINTS if full or not p.full])
    stage = rng.choice(["before", "after"])
    if point.full and not full:
        raise ValueError(f"kill point {point.name!r} needs the ONNX models (full=True)")
    u = f"fk{seed}-{uuid.uuid4().hex[:6]}"
    trial = Trial("sigkill", seed, u, killed=None)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mlsync-campaign-") as tmp:
        workdir = Path(tmp)
        art = artifacts(server, workdir)
        f = workdir / "stack.yaml"
        proc_box: dict = {}
        seen = {"n": 0, "armed": False}
        lock = threading.Lock()
        mine = threading.local()          # per proxy thread (one per request): is this the nth request?

        def hook(method: str, path: str, body: bytes, when: str) -> Optional[str]:
            with lock:
                if not seen["armed"] or not point.matches(method, path, body):
                    return None
                if when == "before":       # requests run in parallel: the proxy thread remembers its own
                    seen["n"] += 1
                    mine.target = seen["n"] == point.nth
                    if not mine.target or stage != "before":
                        return None
                elif not getattr(mine, "target", False) or stage != "after":
                    return None
                seen["armed"] = False
                proc = proc_box.get("proc")
                if proc is not None and proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)
                    trial.killed = f"{point.name} #{point.nth} {stage}"
                return "block" if when == "before" else None

        proxy = FaultProxy(upstream=direct_url, rate=0.0, seed=seed, on_request=hook).start()
        try:
            for phase in ("A", "B", "C"):
                if phase != "C":
                    f.write_text(stack_text(u, phase, art, full=full))
                first = None
                if phase == point.phase:
                    seen["armed"] = True
                    args = ["destroy" if phase == "C" else "apply", "-f", str(f), "--auto-approve"]

                    def first(args=args) -> RunResult:
                        return cli(args, proxy.url, workdir, started=lambda p: proc_box.__setitem__("proc", p))
                outcome = run_phase(phase, f, workdir, proxy.url, direct_url, client, u, full, first=first, log=log)
                seen["armed"] = False
                trial.phases.append(outcome)
                if phase == point.phase:
                    if outcome.runs and outcome.failures and "exit -9" not in outcome.failures[0] and trial.killed:
                        outcome.details.append("the killed run did not exit -9")
                log(f"  kill seed {seed} [{point.name} #{point.nth} {stage}] phase {phase}: killed={trial.killed} "
                    f"runs {outcome.runs} converged {outcome.converged} dup {outcome.duplicates} "
                    f"orphans {outcome.orphans} {outcome.details or ''}")
                if not outcome.converged:
                    break
                if phase == point.phase and trial.killed:
                    first_fail = outcome.failures[0] if outcome.failures else ""
                    if "exit -9" not in first_fail:
                        outcome.details.append(f"killed run: {first_fail or 'exited 0'}")
        finally:
            trial.requests = proxy.snapshot()["requests"]
            proxy.stop()
            cleanup(client, u, f, workdir, direct_url)
    trial.seconds = time.monotonic() - t0
    return trial


# --------------------------------------------------------------------------- cleanup


def cleanup(client: Any, u: str, f: Path, workdir: Path, direct_url: str) -> None:
    """Best effort: a trial that failed still leaves the shared node clean (destroy, then by name)."""
    ids, lock, _ = state_ids(client, u)
    if ids or lock:
        if lock:
            cli(["unlock", "--stack", u, "--force"], direct_url, workdir, timeout=120)
        if f.exists():
            cli(["destroy", "-f", str(f), "--auto-approve"], direct_url, workdir, timeout=600)
    left = census(client, u)
    if any(left.values()):
        jan = helpers.Janitor(client)
        for m in left["model"]:
            jan.model(m["id"])
        for g in left["group"]:
            jan.group(g["id"])
        for c in left["connector"]:
            jan.connector(c["id"])
        jan.cleanup()
    try:
        client.delete(index=STATE_INDEX, id=u, refresh=True)
    except Exception:  # noqa: BLE001 — gone already
        pass


# --------------------------------------------------------------------------- the full form


def figures(trials: list[Trial]) -> dict:
    def agg(kind: str) -> dict:
        ts = [t for t in trials if t.kind == kind]
        runs = [p.runs for t in ts for p in t.phases]
        return {
            "trials": len(ts),
            "seeds": [t.seed for t in ts],
            "converged": sum(1 for t in ts if all(p.converged for p in t.phases) and len(t.phases) == 3),
            "ok": sum(1 for t in ts if t.ok and len(t.phases) == 3),
            "duplicates": sum(p.duplicates for t in ts for p in t.phases),
            "orphans": sum(p.orphans for t in ts for p in t.phases),
            "applies": sum(runs),
            "reruns": sum(r - 1 for r in runs),
            "max_runs_of_a_phase": max(runs, default=0),
            "requests": sum(t.requests for t in ts),
            "faults": dict(sum((Counter(t.faults) for t in ts), Counter())),
            "killed": [t.killed for t in ts],
            "seconds": round(sum(t.seconds for t in ts), 1),
        }
    return {"faults": agg("faults"), "sigkill": agg("sigkill")}


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=20, help="fault trials (seeds 1..N)")
    ap.add_argument("--kills", type=int, default=20, help="SIGKILL trials")
    ap.add_argument("--rate", type=float, default=0.10)
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=2, help="trials run side by side (each its own stack and proxy)")
    ap.add_argument("--json", help="also write every trial's summary to this file")
    ap.add_argument("--url", default=os.environ.get("OPENSEARCH_URL", "http://127.0.0.1:9200"))
    args = ap.parse_args(argv)

    sys.path.insert(0, str(TESTS))
    from conftest import make_client  # noqa: PLC0415

    client = make_client(args.url)
    server = helpers.start_artifact_server()
    trials: list[Trial] = []

    def one_fault(seed: int) -> Trial:
        t = fault_trial(seed, server, client, args.url, rate=args.rate)
        print(f"fault seed {seed}: ok={t.ok} reruns={t.reruns} requests={t.requests} faults={t.faults} "
              f"{t.seconds:.0f}s", flush=True)
        return t

    def one_kill(i: int) -> Trial:
        # every kill point once, then random ones, so that every operation kind is covered
        seed = args.first_seed + i
        t = kill_trial(seed, server, client, args.url, point=KILL_POINTS[i] if i < len(KILL_POINTS) else None)
        print(f"kill seed {seed}: ok={t.ok} killed={t.killed} reruns={t.reruns} {t.seconds:.0f}s", flush=True)
        return t

    started = time.monotonic()
    try:
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            trials += list(pool.map(one_fault, range(args.first_seed, args.first_seed + args.seeds)))
            trials += list(pool.map(one_kill, range(args.kills)))
    finally:
        helpers.stop_artifact_server(server)
    print(f"campaign: {len(trials)} trials in {time.monotonic() - started:.0f}s", flush=True)
    figs = figures(trials)
    if args.json:
        Path(args.json).write_text(json.dumps({"figures": figs, "trials": [t.summary() for t in trials]}, indent=2))
    print(json.dumps(figs, indent=2))
    bad = [t.summary() for t in trials if not t.ok]
    for b in bad:
        print("NOT OK:", json.dumps(b), file=sys.stderr)
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
