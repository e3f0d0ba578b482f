"""Benchmark (issue 12, goal 5): bytes a state save sends, by stack size, before and after layout 2.

    .venv/bin/python benchmarks/bench_state.py --url $URL                     # 10, 100, 1,000 resources
    .venv/bin/python benchmarks/bench_state.py --url $URL --sizes 10,100,1000,10000 --repeat 5

Per size N, a stack of N managed model versions (each with an applied form of about the size real
remote models have: the 1,000-model apply of issue 12 left 427 KB, ~420 bytes a resource) in its own
throwaway state index, then one typical save of an apply: one intent added to the journal and one
resource recorded (what `Journal.prepare` / `record` + `flush` send).

- before: layout 1, the whole state as one document (a layout-1 document read with `load`, which
  keeps the layout; only `lock` migrates).
- after: layout 2, the head plus the changed parts in one `_bulk`.

Printed per size: request body bytes of the save (sum over its requests), its requests, the median
wall time of `--repeat` such saves, and the cost of a fresh read (`load`: GET + refresh + search).
Target: the bytes of a save do not grow with N (after / at 10 within 1.1x at every size).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mlsync.core.state import JournalEntry, ResourceState, StackState  # noqa: E402
from mlsync.edge.cluster import Cluster  # noqa: E402
from mlsync.edge.statestore import ClusterStateStore  # noqa: E402
from mlsync.edge.transport import ConnectionOptions  # noqa: E402


def resource(i: int) -> ResourceState:
    address = f'model["group-{i // 10}"]["remote-model-{i}"]'
    return ResourceState(address=address, kind="model", id=uuid.uuid4().hex[:20], server_version="1",
                         applied_fingerprint=uuid.uuid4().hex * 2, applied_deploy=True,
                         applied_form={"name": f"remote-model-{i}", "description": "a remote embedding model",
                                       "function_name": "REMOTE", "connector": "embeddings", "is_enabled": True,
                                       "model_config": {"embedding_dimension": 8, "model_type": "remote",
                                                        "framework_type": "SENTENCE_TRANSFORMERS"}})


class Meter:
    """Counts request bodies and requests sent through one Cluster (the connection opensearch-py uses)."""

    def __init__(self, cluster: Cluster) -> None:
        self.bytes = self.requests = 0
        conn = cluster._transport.client.transport.get_connection()
        real = conn.perform_request

        def counting(method, url, params=None, body=None, *a, **kw):  # noqa: ANN001, ANN202
            self.bytes += len(body or b"")
            self.requests += 1
            return real(method, url, params, body, *a, **kw)
        conn.perform_request = counting

    def measure(self, fn) -> tuple[int, int, float]:  # noqa: ANN001
        b, r, t = self.bytes, self.requests, time.perf_counter()
        fn()
        return self.bytes - b, self.requests - r, time.perf_counter() - t


def one_change(state: StackState, i: int) -> None:
    state.journal.append(JournalEntry(uuid.uuid4().hex, f'model["new"]["m{i}"]', "register_model", time.time()))
    r = state.resources[resource(i % len(state.resources)).address] if state.resources else None
    if r is not None:
        r.id = uuid.uuid4().hex[:20]


def bench(url: str, n: int, repeat: int, layout: int) -> dict:
    index = f"mlsync-state-bench-{uuid.uuid4().hex[:8]}"
    cluster = Cluster.connect(ConnectionOptions(url=url), state_index=index)
    meter = Meter(cluster)
    stack = f"bench-{n}"
    try:
        full = StackState(stack, resources={resource(i).address: resource(i) for i in range(n)})
        store = ClusterStateStore(cluster)
        if layout == 1:
            cluster.write_state(stack, full.to_json(), None, None)
            state = store.load(stack)
        else:
            state = store.lock(stack, "bench", 3600)
            state.resources = full.resources
            store.save(state)
        runs = []
        for k in range(repeat):
            one_change(state, k)
            runs.append(meter.measure(lambda: store.save(state)))
        load = meter.measure(lambda: ClusterStateStore(cluster).load(stack))
        return {"bytes": runs[0][0], "requests": runs[0][1], "time": statistics.median(r[2] for r in runs),
                "load_bytes": load[0], "load_requests": load[1], "load_time": load[2]}
    finally:
        cluster._transport.client.indices.delete(index=index, ignore_unavailable=True, expand_wildcards="all")
        cluster.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:9200")
    ap.add_argument("--sizes", default="10,100,1000")
    ap.add_argument("--repeat", type=int, default=5, help="saves timed per size (median)")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"{'resources':>9} | {'before: bytes/save':>18} {'req':>3} {'ms':>7} | {'after: bytes/save':>17} {'req':>3} "
          f"{'ms':>7} | {'load after: req':>15} {'ms':>7}")
    after_bytes = {}
    for n in sizes:
        b = bench(args.url, n, args.repeat, 1)
        a = bench(args.url, n, args.repeat, 2)
        after_bytes[n] = a["bytes"]
        print(f"{n:>9,} | {b['bytes']:>18,} {b['requests']:>3} {b['time'] * 1000:>7.1f} | {a['bytes']:>17,} "
              f"{a['requests']:>3} {a['time'] * 1000:>7.1f} | {a['load_requests']:>15} {a['load_time'] * 1000:>7.1f}")
    base = after_bytes[sizes[0]]
    worst = max(v / base for v in after_bytes.values())
    ok = worst <= 1.1
    print(f"target: bytes per save (after) within 1.1x of the smallest stack's at every size: {worst:.2f}x "
          f"{'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
