"""Benchmark (SPEC §8, issue 12): `mlsync apply` registering and deploying N remote models, against the
sequential register-then-poll loop a naive client writes and against an ideal client at the same
parallelism, side by side in one run.

    .venv/bin/python benchmarks/bench_apply.py                          # 100 models, parallelism 1, 4, 8
    .venv/bin/python benchmarks/bench_apply.py --no-baseline --repeat 3 # mlsync vs the ideal client only
    .venv/bin/python benchmarks/bench_apply.py --models 20 --parallelism 4 --repeat 3
    .venv/bin/python benchmarks/bench_apply.py --breakdown              # where mlsync's time goes
    .venv/bin/python benchmarks/bench_apply.py --cleanup-prefix bencha-1a2b3c4d   # after an interrupted run

Scenario: N remote models (`function_name: remote`, `deploy: true`), each in a model group of its own
(`--models-per-group` spreads them: fewer, larger groups), all using `--connectors` standalone
connectors that point at http://127.0.0.1:9/ (never called: no predict is made). Every run creates
the same objects under fresh unique names (`bencha-<hex>-...`):

  baseline  one opensearch-py client, strictly sequential: create the connector(s); then per model:
            create its group (when new), register, GET the register task until COMPLETED, deploy,
            GET the model until DEPLOYED. Each poll loop asks at once and then every
            `--poll-interval` (0.25 s) while the answer is not final -- the most favourable naive loop.
  ideal     the limit (issue 12): no state, no journal, the fewest requests: create the connector(s);
            per model in `--parallelism` threads: create its group, register, deploy; then wait on all
            deploy tasks with one task search per poll. Targets: mlsync <= 1.25x its wall time and
            <= 1.5x its requests at the same parallelism.
  mlsync    the equivalent desired-state YAML, applied through the real path (`mlsync.commands.apply`,
            auto-approve, state in the cluster's mlsync-state index): load + plan (observe) + apply,
            timed from the start of the plan to the end, once per `--parallelism` value.

Prints the wall time of each, the ratio, the HTTP requests made (counted per attempt: the Cluster's
`requests_made` for mlsync, our own count for the baseline) and whether the 5x target is met. With
`--repeat` the rounds alternate (baseline, then per parallelism the ideal client and mlsync) and
medians are reported.
Everything created is removed afterwards (models, groups, connectors, their task docs, the stack's
state document) unless `--keep` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml  # noqa: E402
from opensearchpy import OpenSearch  # noqa: E402  (the baseline, and the clean-up, drive the node directly)
from opensearchpy.exceptions import TransportError  # noqa: E402

from mlsync import commands as app

from mlsync.commands import common as workflow  # noqa: E402
from mlsync.edge.cluster import STATE_INDEX, Cluster, ConnectionOptions  # noqa: E402

from _cleanup import delete_named, search_ids  # noqa: E402

TARGET = 5.0            # x faster than the sequential baseline (SPEC §8)
IDEAL_TIME = 1.25       # at most x the ideal client's wall time (issue 12)
IDEAL_REQUESTS = 1.5    # at most x the ideal client's requests
CONNECTOR_URL = "http://127.0.0.1:9/v1/embeddings"   # trusted by the node's loopback regex, never called


def connector_body(name: str) -> dict:
    return {
        "name": name, "description": "mlsync apply benchmark", "version": "1", "protocol": "http",
        "parameters": {"model": "bench"}, "credential": {"api_key": "not-a-real-key"},
        "actions": [{"action_type": "predict", "method": "POST", "url": CONNECTOR_URL,
                     "headers": {"Authorization": "Bearer ${credential.api_key}"},
                     "request_body": '{"input": ${parameters.input}}'}],
    }


class Names:
    """The objects of one run: connectors, groups, models (model i is in group i // per_group)."""

    def __init__(self, prefix: str, models: int, per_group: int, connectors: int) -> None:
        self.prefix = prefix
        self.connectors = [f"{prefix}-c{i}" for i in range(connectors)]
        self.groups = [f"{prefix}-g{i:03d}" for i in range(-(-models // per_group))]
        self.models = [(f"{prefix}-m{i:03d}", self.groups[i // per_group], self.connectors[i % connectors])
                       for i in range(models)]


# --------------------------------------------------------------------------- the naive baseline


class Baseline:
    """What a client without mlsync writes: one call after the other, polling each task."""

    def __init__(self, client: OpenSearch, interval: float) -> None:
        self.ml = client.plugins.ml
        self.interval = interval
        self.requests = 0
        self.lock = threading.Lock()

    def _send(self, fn):
        """One request (counted); a refusal for the node's running-task limit is retried with back-off."""
        delay = 0.2
        while True:
            with self.lock:
                self.requests += 1
            try:
                return fn()
            except TransportError as exc:
                if "max running task limit" not in str(exc) or delay > 5:
                    raise
            time.sleep(delay)
            delay *= 1.5

    def _poll(self, fn, done) -> dict:
        deadline = time.monotonic() + 120
        while True:
            doc = self._send(fn)
            if done(doc):
                return doc
            if time.monotonic() > deadline:
                raise RuntimeError(f"gave up polling: {doc}")
            time.sleep(self.interval)

    def run(self, names: Names) -> None:
        """Everything it makes is named with the run's prefix: clean-up finds it by name."""
        connector_ids = {}
        for name in names.connectors:
            connector_ids[name] = self._send(lambda: self.ml.create_connector(body=connector_body(name)))["connector_id"]
        group_ids: dict[str, str] = {}
        for model, group, connector in names.models:
            if group not in group_ids:
                group_ids[group] = self._send(lambda: self.ml.register_model_group(
                    body={"name": group, "description": "mlsync apply benchmark"}))["model_group_id"]
            resp = self._send(lambda: self.ml.register_model(body={
                "name": model, "function_name": "remote", "description": "remote embeddings",
                "model_group_id": group_ids[group], "connector_id": connector_ids[connector]}))

            def task_final(doc: dict) -> bool:
                if doc.get("state") in ("FAILED", "CANCELLED", "COMPLETED_WITH_ERROR"):
                    raise RuntimeError(f"register {model}: {doc.get('error')}")
                return doc.get("state") == "COMPLETED"
            task = self._poll(lambda: self.ml.get_task(task_id=resp["task_id"]), task_final)
            model_id = task["model_id"]
            self._send(lambda: self.ml.deploy_model(model_id=model_id))
            self._poll(lambda: self.ml.get_model(model_id=model_id), lambda d: d.get("model_state") == "DEPLOYED")


# --------------------------------------------------------------------------- the ideal client


class Ideal(Baseline):
    """The limit: no state, no journal, the fewest requests. Create the connector(s); then per model, in
    `parallelism` threads: create its group (when new), register, deploy; then wait on every deploy
    task with one task search per poll (remote deploys answer COMPLETED with a task that completes
    within ~0.1 s)."""

    def __init__(self, client: OpenSearch, interval: float, parallelism: int) -> None:
        super().__init__(client, interval)
        self.parallelism = parallelism

    def run(self, names: Names) -> None:
        from concurrent.futures import ThreadPoolExecutor
        connector_ids = {name: self._send(lambda n=name: self.ml.create_connector(body=connector_body(n)))["connector_id"]
                         for name in names.connectors}
        by_group: dict[str, list] = defaultdict(list)
        for model, group, connector in names.models:
            by_group[group].append((model, connector))
        tasks: list[str] = []

        def one_group(item) -> None:
            group, models = item
            gid = self._send(lambda: self.ml.register_model_group(
                body={"name": group, "description": "mlsync apply benchmark"}))["model_group_id"]
            for model, connector in models:
                resp = self._send(lambda: self.ml.register_model(body={
                    "name": model, "function_name": "remote", "description": "remote embeddings",
                    "model_group_id": gid, "connector_id": connector_ids[connector]}))
                dep = self._send(lambda: self.ml.deploy_model(model_id=resp["model_id"]))
                if dep.get("status") != "COMPLETED":   # a remote deploy's COMPLETED answer is final (its
                    with self.lock:                    # task doc can stay RUNNING: docs/performance.md)
                        tasks.append(dep["task_id"])
        with ThreadPoolExecutor(self.parallelism) as pool:
            list(pool.map(one_group, by_group.items()))
        pending, deadline = set(tasks), time.monotonic() + 120
        while pending:
            resp = self._send(lambda: self.ml.search_tasks(body={
                "size": len(pending), "query": {"ids": {"values": sorted(pending)}}, "_source": ["state", "error"]}))
            for hit in resp["hits"]["hits"]:
                state = hit["_source"].get("state")
                if state in ("FAILED", "CANCELLED", "COMPLETED_WITH_ERROR"):
                    raise RuntimeError(f"deploy task {hit['_id']}: {hit['_source'].get('error')}")
                if state == "COMPLETED":
                    pending.discard(hit["_id"])
            if pending:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"gave up waiting on {len(pending)} deploy tasks")
                time.sleep(self.interval)


# --------------------------------------------------------------------------- mlsync


def desired_file(names: Names) -> dict:
    return {
        "version": 1, "stack": names.prefix,
        "connectors": [connector_body(name) for name in names.connectors],
        "model_groups": [{"name": g, "description": "mlsync apply benchmark"} for g in names.groups],
        "models": [{"name": m, "model_group": g, "function_name": "remote", "connector": c,
                    "description": "remote embeddings", "deploy": True} for m, g, c in names.models],
    }


class Timings:
    """Count and total seconds per Cluster method (summed over threads): where mlsync's time goes."""

    METHODS = ("observe", "read_state", "write_state", "create_connector", "create_group", "register_model",
               "deploy_model", "get_model", "search_tasks")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: dict[str, list] = defaultdict(lambda: [0, 0.0])

    def wrap(self, cluster: Cluster) -> None:
        for name in self.METHODS:
            original = getattr(cluster, name)

            def timed(*args, __original=original, __name=name, **kwargs):
                start = time.perf_counter()
                try:
                    return __original(*args, **kwargs)
                finally:
                    with self.lock:
                        entry = self.calls[__name]
                        entry[0] += 1
                        entry[1] += time.perf_counter() - start
            setattr(cluster, name, timed)


def run_mlsync(url: str, names: Names, parallelism: int, workdir: str, timings: Timings | None) -> tuple[float, int, str]:
    """Apply the file; (seconds from plan to end, requests, output)."""
    path = os.path.join(workdir, f"{names.prefix}.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(desired_file(names), f, sort_keys=False)
    clusters: list[Cluster] = []
    real_connect = workflow.connect

    def connect(options):
        cluster = real_connect(options)
        if timings is not None:
            timings.wrap(cluster)
        clusters.append(cluster)
        return cluster
    out, progress = io.StringIO(), io.StringIO()
    workflow.connect = connect
    try:
        with contextlib.redirect_stderr(progress):
            start = time.perf_counter()
            code = app.apply([path], ConnectionOptions(url=url, timeout=120), out, auto_approve=True,
                             parallelism=parallelism)
            took = time.perf_counter() - start
    finally:
        workflow.connect = real_connect
        for c in clusters:
            c.close()
    if code != 0:
        raise RuntimeError(f"mlsync apply exited {code}:\n{out.getvalue()[-3000:]}\n{progress.getvalue()[-3000:]}")
    return took, sum(c.requests_made for c in clusters), out.getvalue()


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default=os.environ.get("OPENSEARCH_URL") or "http://127.0.0.1:9200")
    ap.add_argument("--models", type=int, default=100, help="remote models to register and deploy (default 100)")
    ap.add_argument("--models-per-group", type=int, default=1, help="models sharing one group (default 1)")
    ap.add_argument("--connectors", type=int, default=1, help="standalone connectors the models use (default 1)")
    ap.add_argument("--parallelism", default="1,4,8",
                    help="comma-separated --parallelism values for mlsync and the ideal client (default 1,4,8; "
                         "4 is mlsync's default)")
    ap.add_argument("--poll-interval", type=float, default=0.25, help="the baseline's poll interval (default 0.25 s)")
    ap.add_argument("--repeat", type=int, default=1, help="rounds; medians are reported (default 1)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the sequential baseline")
    ap.add_argument("--no-ideal", action="store_true", help="skip the ideal client")
    ap.add_argument("--breakdown", action="store_true",
                    help="time every Cluster call mlsync makes and print where the time goes")
    ap.add_argument("--keep", action="store_true", help="leave the objects on the node")
    ap.add_argument("--cleanup-prefix", metavar="PREFIX",
                    help="only delete every object (and state doc) whose name starts with PREFIX")
    args = ap.parse_args(argv)
    parallelisms = [int(p) for p in args.parallelism.split(",") if p.strip()]
    if args.models < 1 or args.models_per_group < 1 or args.connectors < 1 or min(parallelisms, default=0) < 1:
        ap.error("--models, --models-per-group, --connectors and --parallelism must be at least 1")

    warnings.filterwarnings("ignore", message=".*system indices.*")   # the clean-up searches .plugins-ml-*
    client = OpenSearch(args.url, timeout=120, max_retries=0)
    if args.cleanup_prefix:
        search_state = lambda body: client.search(index=STATE_INDEX, body=body)  # noqa: E731
        stacks = search_ids(client, search_state, {"prefix": {"stack": args.cleanup_prefix}}) \
            if client.indices.exists(index=STATE_INDEX) else []
        print("deleted " + delete_named(client, args.cleanup_prefix, stacks))
        return 0

    prefix = f"bencha-{uuid.uuid4().hex[:8]}"
    groups = -(-args.models // args.models_per_group)
    print(f"{args.url}: {args.models} remote models (deploy: true) in {groups} groups, {args.connectors} "
          f"connector(s) -> {CONNECTOR_URL}; prefix {prefix}; {args.repeat} round(s)")
    results: dict[str, list[tuple[float, int]]] = defaultdict(list)
    timings = {p: Timings() for p in parallelisms} if args.breakdown else {}
    stacks: list[str] = []
    workdir = tempfile.mkdtemp(prefix="mlsync-bench-apply-")
    try:
        for rnd in range(args.repeat):
            if not args.no_baseline:
                names = Names(f"{prefix}-r{rnd}-base", args.models, args.models_per_group, args.connectors)
                baseline = Baseline(client, args.poll_interval)
                start = time.perf_counter()
                baseline.run(names)
                took = time.perf_counter() - start
                results["baseline"].append((took, baseline.requests))
                print(f"  round {rnd + 1}: baseline      {took:7.2f}s  {baseline.requests:5d} requests")
            for p in parallelisms:
                if not args.no_ideal:
                    names = Names(f"{prefix}-r{rnd}-i{p}", args.models, args.models_per_group, args.connectors)
                    ideal = Ideal(client, args.poll_interval, p)
                    start = time.perf_counter()
                    ideal.run(names)
                    took = time.perf_counter() - start
                    results[f"ideal -p {p}"].append((took, ideal.requests))
                    print(f"  round {rnd + 1}: ideal -p {p:<4d} {took:7.2f}s  {ideal.requests:5d} requests")
                names = Names(f"{prefix}-r{rnd}-p{p}", args.models, args.models_per_group, args.connectors)
                stacks.append(names.prefix)
                took, requests, _ = run_mlsync(args.url, names, p, workdir, timings.get(p))
                results[f"mlsync -p {p}"].append((took, requests))
                print(f"  round {rnd + 1}: mlsync -p {p:<3d} {took:7.2f}s  {requests:5d} requests")
            if not args.keep:   # keep the node small between rounds
                delete_named(client, f"{prefix}-r{rnd}-", stacks[-len(parallelisms):])

        print(f"\nmedians over {args.repeat} round(s), {args.models} models:")
        base = statistics.median(t for t, _ in results["baseline"]) if results.get("baseline") else None
        med = {label: (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
               for label, runs in results.items()}
        for label, (t, n) in med.items():
            line = f"  {label:14s} {t:7.2f}s  {n:7.0f} requests  {t / args.models * 1000:6.0f} ms/model"
            if base is not None and label.startswith("mlsync"):
                ratio = base / t
                line += f"  {ratio:4.1f}x the baseline ({'meets' if ratio >= TARGET else 'MISSES'} {TARGET:.0f}x)"
            ideal = med.get(label.replace("mlsync", "ideal"))
            if ideal is not None and label.startswith("mlsync"):
                tr, nr = t / ideal[0], n / ideal[1]
                line += (f"  {tr:4.2f}x the ideal's time ({'meets' if tr <= IDEAL_TIME else 'MISSES'} "
                         f"{IDEAL_TIME}x), {nr:4.2f}x its requests ({'meets' if nr <= IDEAL_REQUESTS else 'MISSES'} "
                         f"{IDEAL_REQUESTS}x)")
            print(line)
        for p, tm in timings.items():
            print(f"\nmlsync -p {p}: time inside Cluster calls (summed over threads, all rounds):")
            for name, (count, secs) in sorted(tm.calls.items(), key=lambda kv: -kv[1][1]):
                print(f"  {name:16s} {count:6d} calls  {secs:8.2f}s  {secs / count * 1000:7.1f} ms/call")
    finally:
        if not args.keep:
            print("\nclean-up: deleted " + delete_named(client, prefix, stacks))
        else:
            print(f"\nkept; remove with: {sys.argv[0]} --cleanup-prefix {prefix}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
