"""Benchmark (issue 12, goal 6): how plan, apply and destroy cost grows with the stack, in one table.

    .venv/bin/python benchmarks/bench_scale.py --url $URL                      # 10, 100, 1,000 + plan at 10,000
    .venv/bin/python benchmarks/bench_scale.py --url $URL --sizes 10,100 --plan-at 0
    .venv/bin/python benchmarks/bench_scale.py --url $URL --sizes 0 --plan-at 10000 --repeat 5
    .venv/bin/python benchmarks/bench_scale.py --cleanup-prefix bscale-1a2b3c4d   # after an interrupted run

Every command is `mlsync` as a whole process (benchmarks/_counted.py: the real CLI, counting its
HTTP requests), so each figure includes start-up, loading the file, the state and observing.

Sizes (`--sizes`): N remote models (`deploy: true` unless `--no-deploy`) on one standalone connector
(pointing at http://127.0.0.1:9/, never called), in groups of `--per-group` (10), state on the
cluster. Per size, in order: `plan` (N to create), `apply --auto-approve`, `plan` again (nothing to
do, N managed), `destroy --auto-approve`. Printed per command: wall time, CPU time of the process
(user + sys: what the machine's load inflates least), requests, and per model.

Plan at scale (`--plan-at`, SPEC §8 / issue 12 goal 3): `--plan-at` remote model versions in
`--plan-at / 10` groups on `--plan-at / 50` connectors, made like tests/integration/test_plan_real.py
(one connector, one group and 10 versions through the API, the rest exact copies of their documents
bulk-indexed into the ML indices), all managed by the stack (a `--state-file` holds their ids),
then `mlsync plan` as a process `--repeat` times (median): target <= 2 s and <= 15 requests.

Apply's time per model at the largest size is compared with the one at the size before it
(target: within 1.3x). Everything made is removed afterwards unless `--keep`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from opensearchpy import OpenSearch  # noqa: E402  (populating and cleaning up drive the node directly)

from mlsync.core.state import StackState  # noqa: E402
from mlsync.edge.cluster import STATE_INDEX  # noqa: E402
from mlsync.edge.statestore import FileStateStore  # noqa: E402

from _cleanup import delete_named, search_ids  # noqa: E402

sys.path[:0] = [str(ROOT / "tests" / "integration"), str(ROOT / "tests")]   # stack_helpers imports helpers
from stack_helpers import managed_state  # noqa: E402  (the state test_plan_real.py builds)

PLAN_SECONDS, PLAN_REQUESTS = 2.0, 15     # goal 3
PER_MODEL_RATIO = 1.3                      # goal 6
CONNECTOR_URL = "http://127.0.0.1:9/v1/embeddings"   # trusted by the node's loopback regex, never called
API_KEY = "not-a-real-key"
COUNTED = Path(__file__).resolve().with_name("_counted.py")
INDICES = {"connector": ".plugins-ml-connector", "model_group": ".plugins-ml-model-group",
           "model": ".plugins-ml-model"}


def connector_body(name: str) -> dict:
    return {"name": name, "description": "mlsync scale benchmark", "version": "1", "protocol": "http",
            "parameters": {"model": "bench"}, "credential": {"api_key": API_KEY},
            "actions": [{"action_type": "predict", "method": "POST", "url": CONNECTOR_URL,
                         "request_body": '{"input": ${parameters.input}}'}]}


class Run:
    """One `mlsync` process: wall time, CPU time (user + sys), requests, exit code."""

    def __init__(self, url: str, workdir: str) -> None:
        self.url, self.workdir = url, workdir

    def __call__(self, *args: str, ok=(0,)) -> tuple[float, float, int, str]:
        count = os.path.join(self.workdir, "requests")
        env = dict(os.environ, OPENSEARCH_URL=self.url, MLSYNC_BENCH_COUNT=count, NO_COLOR="1")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, str(COUNTED), *args], env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if proc.returncode not in ok:
            raise RuntimeError(f"mlsync {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n"
                               f"{proc.stderr[-3000:]}")
        requests = int(Path(count).read_text()) if os.path.exists(count) else -1
        if os.path.exists(count):
            os.unlink(count)
        return wall, cpu, requests, proc.stdout


# --------------------------------------------------------------------------- plan, apply, destroy at N


def stack_file(prefix: str, models: int, per_group: int, deploy: bool) -> dict:
    groups = [f"{prefix}-g{i:04d}" for i in range(-(-models // per_group))]
    return {"version": 1, "stack": prefix,
            "connectors": [connector_body(f"{prefix}-c")],
            "model_groups": [{"name": g, "description": "mlsync scale benchmark"} for g in groups],
            "models": [{"name": f"{prefix}-m{i:05d}", "model_group": groups[i // per_group], "function_name": "remote",
                        "connector": f"{prefix}-c", "description": "remote embeddings", "deploy": deploy}
                       for i in range(models)]}


def state_size(client: OpenSearch, stack: str) -> str:
    """The stack's state on the cluster: its documents (one, or a head and its parts) and their bytes."""
    try:
        client.indices.refresh(index=STATE_INDEX)
        hits = client.search(index=STATE_INDEX, body={"size": 10_000, "query": {"bool": {"should": [
            {"ids": {"values": [stack]}}, {"term": {"stack": stack}}]}}})["hits"]["hits"]
        return f"state {sum(len(json.dumps(h['_source'])) for h in hits):,} bytes in {len(hits):,} document(s)"
    except Exception:   # noqa: BLE001 - only a figure
        return "state size unknown"


def one_size(run: Run, client: OpenSearch, prefix: str, n: int, args) -> list[tuple]:
    path = os.path.join(run.workdir, f"{prefix}.json")
    Path(path).write_text(json.dumps(stack_file(prefix, n, args.per_group, args.deploy)))
    rows = []
    par = f"--parallelism={args.parallelism}"
    for label, cmd, ok in (("plan (all new)", ["plan", "-f", path, "--detailed-exitcode"], (2,)),
                           ("apply", ["apply", "-f", path, "--auto-approve", par], (0,)),
                           ("plan (no change)", ["plan", "-f", path, "--detailed-exitcode"], (0,)),
                           ("destroy", ["destroy", "-f", path, "--auto-approve", par], (0,))):
        wall, cpu, requests, _ = run(*cmd, ok=ok)
        extra = state_size(client, prefix) if label == "apply" else ""
        rows.append((n, label, wall, cpu, requests, extra))
        print(f"  {n:>6,} {label:17s} {wall:8.2f}s wall {cpu:7.2f}s cpu {requests:6d} requests "
              f"{wall / n * 1000:8.1f} ms/model  {extra}  (load {os.getloadavg()[0]:.1f})", flush=True)
    return rows


# --------------------------------------------------------------------------- plan at 10,000


class Copies:
    """`versions` remote model versions in groups of 10 on `versions / 50` connectors: one connector, one
    group and 10 versions made through the API, the rest copies of their documents (bulk-indexed)."""

    def __init__(self, client: OpenSearch, prefix: str) -> None:
        self.client, self.ml, self.prefix = client, client.plugins.ml, prefix
        self.connectors: dict[str, str] = {}
        self.groups: dict[str, str] = {}
        self.models: dict[tuple[str, str], tuple[str, str]] = {}   # (group, model) -> (id, connector name)

    def make(self, versions: int) -> None:
        per_group = 10
        n_groups, n_connectors = max(1, versions // per_group), max(1, versions // 50)
        c_name, g_name = f"{self.prefix}-c0000", f"{self.prefix}-g0000"
        cid = self.ml.create_connector(body=connector_body(c_name))["connector_id"]
        gid = self.ml.register_model_group(body={"name": g_name})["model_group_id"]
        self.connectors[c_name], self.groups[g_name] = cid, gid
        for j in range(per_group):
            resp = self.ml.register_model(body={"name": f"m{j}", "function_name": "remote", "model_group_id": gid,
                                                "connector_id": cid})
            self.models[(g_name, f"m{j}")] = (resp["model_id"], c_name)
        self.client.indices.refresh(index=".plugins-ml-*")
        template = {kind: self.client.get(index=INDICES[kind], id=oid)["_source"] for kind, oid in (
            ("connector", cid), ("model_group", gid), ("model", self.models[(g_name, "m0")][0]))}
        names = [f"{self.prefix}-c{i:04d}" for i in range(1, n_connectors)]
        self.connectors.update(zip(names, self._bulk("connector", [
            dict(template["connector"], name=n, created_time=template["connector"]["created_time"] + i + 1)
            for i, n in enumerate(names)])))
        names = [f"{self.prefix}-g{i:04d}" for i in range(1, n_groups)]
        self.groups.update(zip(names, self._bulk("model_group", [
            dict(template["model_group"], name=n, created_time=template["model_group"]["created_time"] + i + 1)
            for i, n in enumerate(names)])))
        connectors = list(self.connectors.items())
        copies, keys = [], []
        for i, (g, g_id) in enumerate(list(self.groups.items())[1:], start=1):
            c_name, c_id = connectors[i % len(connectors)]
            for j in range(per_group):
                keys.append((g, f"m{j}", c_name))
                copies.append(dict(template["model"], name=f"m{j}", model_group_id=g_id, connector_id=c_id,
                                   created_time=template["model"]["created_time"] + len(copies) + 1))
        for start in range(0, len(copies), 2000):   # bulk requests of a few MB
            ids = self._bulk("model", copies[start:start + 2000])
            for (g, m, c), mid in zip(keys[start:start + 2000], ids):
                self.models[(g, m)] = (mid, c)

    def _bulk(self, kind: str, docs: list[dict]) -> list[str]:
        if not docs:
            return []
        lines = []
        for doc in docs:
            lines += [json.dumps({"index": {"_index": INDICES[kind]}}), json.dumps(doc)]
        resp = self.client.bulk(body="\n".join(lines) + "\n", refresh="true", request_timeout=300)
        assert not resp["errors"], [i for i in resp["items"] if i["index"].get("error")][:3]
        return [item["index"]["_id"] for item in resp["items"]]

    def stack_file(self) -> dict:
        return {"version": 1, "stack": self.prefix,
                "connectors": [connector_body(n) for n in self.connectors],
                "model_groups": [{"name": g} for g in self.groups],
                "models": [{"name": m, "model_group": g, "function_name": "remote", "connector": c}
                           for (g, m), (_, c) in self.models.items()]}

    def state(self) -> StackState:
        return managed_state(self.prefix, "bench-scale-key", API_KEY, self.connectors, self.groups,
                             {key: mid for key, (mid, _) in self.models.items()})

    def remove(self) -> None:
        """Delete-by-query on the name prefix (models by their groups: they are named m0..m9)."""
        for kind in ("model", "model_group", "connector"):
            query = ({"terms": {"model_group_id": list(self.groups.values())}} if kind == "model" else
                     {"prefix": {"name.keyword": self.prefix}})
            self.client.delete_by_query(index=INDICES[kind], body={"query": query}, refresh=True,
                                        conflicts="proceed", request_timeout=300)


def plan_at_scale(run: Run, client: OpenSearch, prefix: str, versions: int, repeat: int, keep: bool) -> list[tuple]:
    copies = Copies(client, prefix)
    rows = []
    try:
        start = time.perf_counter()
        copies.make(versions)
        print(f"  populated {len(copies.connectors)} connectors, {len(copies.groups)} groups, "
              f"{len(copies.models)} remote versions in {time.perf_counter() - start:.1f}s", flush=True)
        path = os.path.join(run.workdir, f"{prefix}.json")
        Path(path).write_text(json.dumps(copies.stack_file()))
        state_file = os.path.join(run.workdir, f"{prefix}-state.json")
        FileStateStore(state_file).save(copies.state())
        runs = []
        for _ in range(repeat):
            wall, cpu, requests, out = run("plan", "-f", path, "--state-file", state_file, "--detailed-exitcode")
            runs.append((wall, cpu, requests))
            print(f"  {len(copies.models):>6,} plan (no change)  {wall:8.2f}s wall {cpu:7.2f}s cpu {requests:6d} "
                  f"requests  (load {os.getloadavg()[0]:.1f})", flush=True)
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        requests = max(r[2] for r in runs)
        verdict = (f"target <= {PLAN_SECONDS} s: {'meets' if wall <= PLAN_SECONDS else 'MISSES'} (wall), "
                   f"{'meets' if cpu <= PLAN_SECONDS else 'MISSES'} (cpu); <= {PLAN_REQUESTS} requests: "
                   f"{'meets' if requests <= PLAN_REQUESTS else 'MISSES'}")
        rows.append((len(copies.models), f"plan (no change, {len(copies.groups)} groups, {len(copies.connectors)} "
                     f"connectors, state file)", wall, cpu, requests, verdict))
    finally:
        if keep:
            print(f"  kept the copies (prefix {prefix})")
        else:
            copies.remove()
            delete_named(client, prefix)
    return rows


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default=os.environ.get("OPENSEARCH_URL") or "http://127.0.0.1:9200")
    ap.add_argument("--sizes", default="10,100,1000", help="remote models per apply (default 10,100,1000; 0: none)")
    ap.add_argument("--per-group", type=int, default=10, help="models per group (default 10)")
    ap.add_argument("--no-deploy", dest="deploy", action="store_false", help="deploy: false")
    ap.add_argument("--parallelism", type=int, default=4)
    ap.add_argument("--plan-at", type=int, default=10_000, help="versions for the plan-at-scale row (0: skip)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of the plan at scale (median)")
    ap.add_argument("--keep", action="store_true", help="leave the objects on the node")
    ap.add_argument("--cleanup-prefix", metavar="PREFIX", help="only delete what a run named PREFIX... left")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip() and int(s) > 0]

    warnings.filterwarnings("ignore", message=".*system indices.*")
    client = OpenSearch(args.url, timeout=300, max_retries=0)
    if args.cleanup_prefix:
        stacks = search_ids(client, lambda body: client.search(index=STATE_INDEX, body=body),
                            {"prefix": {"stack": args.cleanup_prefix}}) if client.indices.exists(index=STATE_INDEX) else []
        named = {"prefix": {"name.keyword": args.cleanup_prefix}}
        groups = search_ids(client, lambda body: client.search(index=INDICES["model_group"], body=body), named)
        for kind, query in (("model", {"terms": {"model_group_id": groups}}), ("model_group", named),
                            ("connector", named)):   # copied models are named m0..m9: found by their group
            client.delete_by_query(index=INDICES[kind], body={"query": query}, refresh=True, conflicts="proceed",
                                   request_timeout=300)
        print("deleted " + delete_named(client, args.cleanup_prefix, stacks))
        return 0

    prefix = f"bscale-{uuid.uuid4().hex[:8]}"
    print(f"{args.url}: sizes {sizes} (remote models, deploy: {str(args.deploy).lower()}, groups of {args.per_group}, "
          f"one connector, parallelism {args.parallelism}); plan at {args.plan_at:,}; prefix {prefix}; "
          f"load {os.getloadavg()}", flush=True)
    workdir = tempfile.mkdtemp(prefix="mlsync-bench-scale-")
    run = Run(args.url, workdir)
    rows: list[tuple] = []
    stacks: list[str] = []
    try:
        for n in sizes:
            stacks.append(f"{prefix}-n{n}")
            rows += one_size(run, client, stacks[-1], n, args)
        if args.plan_at:
            rows += plan_at_scale(run, client, f"{prefix}-p", args.plan_at, args.repeat, args.keep)
    finally:
        if not args.keep:
            print("clean-up: deleted " + delete_named(client, prefix, stacks))

    print("\n| models | command | wall | CPU (user+sys) | requests | wall per model | note |")
    print("|---:|---|---:|---:|---:|---:|---|")
    for n, label, wall, cpu, requests, extra in rows:
        print(f"| {n:,} | {label} | {wall:.2f} s | {cpu:.2f} s | {requests} | {wall / n * 1000:.1f} ms | {extra} |")
    applies = [(n, wall / n) for n, label, wall, *_ in rows if label == "apply"]
    if len(applies) >= 2:
        (n0, t0), (n1, t1) = applies[-2], applies[-1]
        ratio = t1 / t0
        print(f"\napply per model at {n1:,} / at {n0:,}: {ratio:.2f}x "
              f"({'meets' if ratio <= PER_MODEL_RATIO else 'MISSES'} {PER_MODEL_RATIO}x)")
    print(f"load average at the end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
