"""Benchmark: how many requests and how long `Cluster.observe()` takes, against "one GET per resource".

Populates the node with connectors, model groups and remote model versions (remote registration is
synchronous and cheap: no artifact), times `observe()` several times, optionally times the naive
alternative (one GET per object), and removes everything it created.

    .venv/bin/python benchmarks/bench_observe.py                       # small: 10 groups, 5 connectors, 50 versions
    .venv/bin/python benchmarks/bench_observe.py --scale               # SPEC §8: 100 groups, 50 connectors, 1,000 versions
    .venv/bin/python benchmarks/bench_observe.py --groups 20 --versions 300 --page-size 100

The node must allow loopback connector URLs (scripts/cluster up configures that). The connectors
point at 127.0.0.1:9 and are never called.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opensearchpy import OpenSearch  # noqa: E402  (the benchmark drives the node directly to populate it)
from opensearchpy.exceptions import TransportError  # noqa: E402

from mlsync.edge.cluster import DEFAULT_PAGE_SIZE, Cluster, ConnectionOptions  # noqa: E402

from _cleanup import delete_named  # noqa: E402


def connector_body(name: str) -> dict:
    return {
        "name": name, "description": "mlsync observe benchmark", "version": "1", "protocol": "http",
        "parameters": {"model": "bench"}, "credential": {"api_key": "not-a-real-key"},
        "actions": [{"action_type": "predict", "method": "POST", "url": "http://127.0.0.1:9/v1/embeddings",
                     "headers": {"Authorization": "Bearer ${credential.api_key}"},
                     "request_body": '{"input": ${parameters.input}}'}],
    }


class Population:
    def __init__(self, client: OpenSearch, prefix: str) -> None:
        self.client, self.prefix = client, prefix
        self.connectors: list[str] = []
        self.groups: list[str] = []
        self.models: list[str] = []
        self.tasks: list[str] = []

    def _retrying(self, fn):
        """The node caps concurrent register tasks (max_register_model_tasks_per_node, shared with
        whoever else uses it): back off and retry on "exceed max running task limit"."""
        delay = 0.2
        for _ in range(40):
            try:
                return fn()
            except TransportError as exc:
                if "max running task limit" not in str(exc.info) and "max running task limit" not in str(exc):
                    raise
                time.sleep(delay)
                delay = min(delay * 1.5, 2.0)
        return fn()

    def create(self, groups: int, connectors: int, versions: int, workers: int) -> float:
        ml = self.client.plugins.ml
        start = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            def new_connector(i: int) -> None:
                self.connectors.append(ml.create_connector(body=connector_body(f"{self.prefix}-c{i:03d}"))["connector_id"])

            def new_group(i: int) -> None:
                gid = ml.register_model_group(body={"name": f"{self.prefix}-g{i:03d}"})["model_group_id"]
                self.groups.append(gid)
                group_ids[i] = gid

            group_ids: dict[int, str] = {}
            list(pool.map(new_connector, range(connectors)))
            list(pool.map(new_group, range(groups)))

            # versions of one group one at a time (the server's version counter conflicts otherwise),
            # groups in parallel; ids are recorded as they come so a failure still cleans up everything
            def register_group(g: int) -> None:
                for n in range(g, versions, groups):
                    resp = self._retrying(lambda: ml.register_model(body={
                        "name": f"{self.prefix}-m{n % 10}", "function_name": "remote",
                        "description": f"version {n}", "model_group_id": group_ids[g],
                        "connector_id": self.connectors[n % connectors]}))
                    self.models.append(resp["model_id"])
                    self.tasks.append(resp["task_id"])

            list(pool.map(register_group, range(groups)))
        return time.perf_counter() - start


def get_per_resource(client: OpenSearch, observed) -> tuple[int, float]:
    """The naive way: one GET per object (what mlsync must never do). Returns (requests, seconds)."""
    ml = client.plugins.ml
    start = time.perf_counter()
    n = 0
    for gid in observed.groups:
        ml.get_model_group(model_group_id=gid)
        n += 1
    for cid in observed.connectors:
        ml.get_connector(connector_id=cid)
        n += 1
    for mid in observed.models:
        ml.get_model(model_id=mid)
        n += 1
    return n, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default=os.environ.get("OPENSEARCH_URL") or "http://127.0.0.1:9200")
    ap.add_argument("--groups", type=int, default=10)
    ap.add_argument("--connectors", type=int, default=5)
    ap.add_argument("--versions", type=int, default=50, help="remote model versions, spread over the groups")
    ap.add_argument("--scale", action="store_true", help="SPEC §8 size: 100 groups, 50 connectors, 1,000 versions")
    ap.add_argument("--page-size", type=int, default=DEFAULT_PAGE_SIZE)
    ap.add_argument("--repeat", type=int, default=5, help="observe() runs to time")
    ap.add_argument("--workers", type=int, default=4, help="parallel requests while populating/cleaning up")
    ap.add_argument("--no-gets", action="store_true", help="skip timing the one-GET-per-resource baseline")
    ap.add_argument("--keep", action="store_true", help="leave the objects on the node")
    ap.add_argument("--cleanup-prefix", metavar="PREFIX",
                    help="only delete every object whose name starts with PREFIX (left by an interrupted run)")
    args = ap.parse_args(argv)
    if args.scale:
        args.groups, args.connectors, args.versions = 100, 50, 1000
    if min(args.groups, args.connectors) < 1 or args.versions < 0:
        ap.error("need at least one group and one connector")

    client = OpenSearch(args.url, timeout=120, max_retries=0)
    if args.cleanup_prefix:
        print("deleted " + delete_named(client, args.cleanup_prefix, workers=args.workers))
        return 0
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    pop = Population(client, prefix)
    print(f"populating {args.url}: {args.groups} groups, {args.connectors} connectors, "
          f"{args.versions} remote model versions (prefix {prefix}) ...")
    try:
        took = pop.create(args.groups, args.connectors, args.versions, args.workers)
        print(f"  created in {took:.1f}s")
        time.sleep(1.5)   # search is near-real-time: let the last writes become visible

        cluster = Cluster.connect(ConnectionOptions(url=args.url, timeout=120), page_size=args.page_size)
        cluster.observe()   # warm-up (connection pool, server caches)
        runs = []
        observed = None
        for _ in range(args.repeat):
            start = time.perf_counter()
            observed = cluster.observe()
            runs.append(time.perf_counter() - start)
        assert observed is not None
        mine = (sum(1 for g in observed.groups.values() if g.source.get("name", "").startswith(prefix)),
                sum(1 for c in observed.connectors.values() if c.source.get("name", "").startswith(prefix)),
                sum(1 for m in observed.models.values() if m.source.get("name", "").startswith(prefix)))
        if mine != (args.groups, args.connectors, args.versions):
            print(f"  WARNING: observed {mine} of ours, expected "
                  f"{(args.groups, args.connectors, args.versions)}", file=sys.stderr)
        total = len(observed.groups) + len(observed.connectors) + len(observed.models)
        print(f"\nobserved on the node: {len(observed.groups)} groups, {len(observed.connectors)} connectors, "
              f"{len(observed.models)} models ({total} objects; ours {mine})")
        print(f"observe(): {observed.requests} requests (page size {args.page_size}); "
              f"time min {min(runs):.3f}s, median {statistics.median(runs):.3f}s over {len(runs)} runs")
        print(f"one GET per resource would be {total} requests: "
              f"{total / observed.requests:.0f}x more than observe()")
        if not args.no_gets:
            n, secs = get_per_resource(client, observed)
            print(f"  measured: {n} GETs in {secs:.3f}s ({secs / min(runs):.1f}x slower than observe())")
        cluster.close()
    finally:
        if args.keep:
            print(f"kept the objects (prefix {prefix})")
        else:
            print("cleaning up ...")
            # by name, so objects of an interrupted population go too
            print("  deleted " + delete_named(client, prefix, workers=args.workers))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
