"""How long the pure planner takes over 10,000 resources, and how much memory it needs.

    .venv/bin/python benchmarks/bench_plan.py [--connectors 500] [--groups 1000] [--versions 8500]
                                              [--repeat 5] [--changed 0.05] [--profile]

Builds everything in memory (no cluster, no files): the desired state (a StackFile validated and
flattened as `mlsync plan` does), the observed cluster (server-form documents: `algorithm`,
`model_version`, upper-case enums, stringified parameters, filled client_config, ...) and the stack's
state (every object managed, with the applied fingerprints an apply records). A fraction `--changed`
of the resources differs: connector descriptions (whose deployed models then cycle undeploy ->
update -> redeploy), group descriptions, model descriptions, artifact hashes (replace), deploy flips,
plus new version labels (register) and versions gone from the file (delete). A second scenario plans
the same file with no state at all, so every object is adopted by natural key.

Reports the median of `--repeat` runs of `planner.plan` (seconds) and the peak memory that one run
allocates (tracemalloc, measured in a separate run because tracing slows Python down).
Goal (issue 4 / SPEC §8): under 1 s for 10,000 resources.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlsync.input.model import StackFile  # noqa: E402
from mlsync.input.flatten import flatten  # noqa: E402
from mlsync.core.normalize import CLIENT_CONFIG_DEFAULTS, digest  # noqa: E402
from mlsync.core.observed import Observed, ObservedObject  # noqa: E402
from mlsync.core.plan import Action  # noqa: E402
from mlsync.core.planner import plan  # noqa: E402
from mlsync.core.secrets import Secret, fingerprint  # noqa: E402
from mlsync.core.state import ResourceState, StackState  # noqa: E402

KEY = "bench-fingerprint-key"
CREDENTIAL = {"api_key": "bench-key"}
VERSIONS_PER_MODEL = 3
MODEL_CONFIG = {"model_type": "bert", "embedding_dimension": 384, "framework_type": "sentence_transformers",
                "pooling_mode": "mean", "normalize_result": True,
                "all_config": {"architectures": ["BertModel"], "hidden_size": 384}}


def _hash(i: int) -> str:
    return f"{i:064x}"


class World:
    """The file, the cluster and the state of one large stack, consistent with each other."""

    def __init__(self, connectors: int, groups: int, versions: int, changed: float) -> None:
        self.every = max(1, round(1 / changed)) if changed > 0 else 0
        remote = min(groups, versions // 10)          # a tenth of the versions are remote models
        local_models = -(-(versions - remote) // VERSIONS_PER_MODEL)
        self.file: dict = {"version": 1, "stack": "bench", "connectors": [], "model_groups": [], "models": []}
        self.connectors: dict[str, ObservedObject] = {}
        self.groups: dict[str, ObservedObject] = {}
        self.models: dict[str, ObservedObject] = {}
        self.state = StackState("bench", fingerprint_key=KEY)
        cred_fp = fingerprint({k: Secret(v) for k, v in CREDENTIAL.items()}, KEY)
        seq = iter(range(1, 10**9))

        for i in range(connectors):
            name = f"conn-{i}"
            self.file["connectors"].append({
                "name": name, "description": f"embeddings {i}" + self._edit(i, " (edited)"), "protocol": "http",
                "parameters": {"model": "text-embedding-3-small", "dimensions": 384},
                "credential": dict(CREDENTIAL),
                "actions": [{"action_type": "predict", "method": "POST", "url": f"http://127.0.0.1:8089/v1/{i}",
                             "headers": {"Authorization": "Bearer ${credential.api_key}"},
                             "request_body": '{"input": ${parameters.input}}'}],
                "client_config": {"max_connection": 20, "read_timeout": 30}})
            self._observe(self.connectors, "connector", f"C{i}", next(seq), {
                "name": name, "description": f"embeddings {i}", "version": "1", "protocol": "http",
                "parameters": {"model": "text-embedding-3-small", "dimensions": "384"},
                "actions": [{"action_type": "PREDICT", "method": "POST", "url": f"http://127.0.0.1:8089/v1/{i}",
                             "headers": {"Authorization": "Bearer ${credential.api_key}"},
                             "request_body": '{"input": ${parameters.input}}'}],
                "client_config": {**CLIENT_CONFIG_DEFAULTS, "max_connection": 20, "read_timeout": 30},
                "created_time": 1, "last_updated_time": 1})
            self._manage(f'connector["{name}"]', "connector", f"C{i}", credential_fingerprint=cred_fp)

        for g in range(groups):
            name = f"group-{g}"
            self.file["model_groups"].append({"name": name, "description": f"group {g}" + self._edit(g + 1, "!")})
            self._observe(self.groups, "model_group", f"G{g}", next(seq), {
                "name": name, "description": f"group {g}", "latest_version": 9, "access": "public",
                "created_time": 1, "last_updated_time": 1})
            self._manage(f'model_group["{name}"]', "model_group", f"G{g}")

        for r in range(remote):
            name, group, conn = f"remote-{r}", f"group-{r % groups}", r % connectors
            self.file["models"].append({
                "name": name, "model_group": group, "function_name": "remote", "connector": f"conn-{conn}",
                "description": "remote embeddings" + self._edit(r + 2, " v2"), "deploy": True,
                "rate_limiter": {"limit": 100, "unit": "MINUTES"}})
            self._observe(self.models, "model", f"R{r}", next(seq), {
                "name": name, "algorithm": "REMOTE", "model_group_id": f"G{r % groups}", "connector_id": f"C{conn}",
                "description": "remote embeddings", "model_state": "DEPLOYED", "model_version": "1",
                "rate_limiter": {"limit": "100", "unit": "MINUTES"}, "created_time": 1, "is_hidden": False})
            self._manage(f'model["{group}"]["{name}"]', "model", f"R{r}", server_version="1")

        left = versions - remote
        for m in range(local_models):
            name, gi = f"local-{m}", m % groups
            group = f"group-{gi}"
            labels = [f"1.{v}.0" for v in range(min(VERSIONS_PER_MODEL, left))]
            left -= len(labels)
            versions_out = []
            for v, label in enumerate(labels):
                n = m * VERSIONS_PER_MODEL + v
                deployed = v == len(labels) - 1
                gone = self._edit(n + 3, "x") and v == 0 and len(labels) > 1   # in state, not in the file: delete
                if not gone:
                    versions_out.append({
                        "version": label, "url": f"http://127.0.0.1:8089/models/{name}-{label}.zip",
                        "model_content_hash_value": _hash(n + (10**6 if self._edit(n + 4, "x") else 0)),
                        "deploy": deployed != bool(self._edit(n + 5, "x")),
                        "description": "sentence embeddings" + self._edit(n + 6, " (better)")})
                self._observe(self.models, "model", f"M{n}", next(seq), {
                    "name": name, "algorithm": "TEXT_EMBEDDING", "model_group_id": f"G{gi}",
                    "model_version": str(v + 2), "model_format": "TORCH_SCRIPT",
                    "model_state": "DEPLOYED" if deployed else "REGISTERED",
                    "model_content_hash_value": _hash(n), "description": "sentence embeddings",
                    "model_config": {"model_type": "bert", "embedding_dimension": 384,
                                     "framework_type": "SENTENCE_TRANSFORMERS", "pooling_mode": "MEAN",
                                     "normalize_result": True,
                                     "all_config": '{"architectures":["BertModel"],"hidden_size":384}'},
                    "total_chunks": 1, "created_time": 1, "is_hidden": False})
                self._manage(f'model["{group}"]["{name}"]["{label}"]', "model", f"M{n}", server_version=str(v + 2))
            if self._edit(m + 7, "x"):   # a version label the cluster does not have yet: register
                versions_out.append({"version": "9.9.9", "url": f"http://127.0.0.1:8089/models/{name}-new.zip",
                                     "model_content_hash_value": _hash(10**7 + m)})
            self.file["models"].append({
                "name": name, "model_group": group, "model_format": "TORCH_SCRIPT", "model_config": MODEL_CONFIG,
                "versions": versions_out})

    def _edit(self, i: int, suffix: str) -> str:
        """`suffix` for about one resource in `1 / changed`, else ''."""
        return suffix if self.every and i % self.every == 0 else ""

    @staticmethod
    def _observe(pool: dict, kind: str, oid: str, seq: int, source: dict) -> None:
        pool[oid] = ObservedObject(kind, oid, source, seq_no=seq, primary_term=1)

    def _manage(self, address: str, kind: str, oid: str, **fields) -> None:
        self.state.resources[address] = ResourceState(address, kind, oid, **fields)

    def observed(self) -> Observed:
        return Observed(connectors=self.connectors, groups=self.groups, models=self.models,
                        cluster_version="2.19.6")


def timed_runs(fn, repeat: int) -> list[float]:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return runs


def peak_memory(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connectors", type=int, default=500)
    ap.add_argument("--groups", type=int, default=1000)
    ap.add_argument("--versions", type=int, default=8500)
    ap.add_argument("--changed", type=float, default=0.05, help="fraction of resources that differ (default 0.05)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--profile", action="store_true", help="print the top of a cProfile of one managed run")
    args = ap.parse_args(argv)

    start = time.perf_counter()
    world = World(args.connectors, args.groups, args.versions, args.changed)
    desired = flatten(StackFile.model_validate(world.file), hash_files=False)
    observed = world.observed()
    # As after an apply: each managed object's applied fingerprint is that of what the cluster holds
    # (the planner hashes every observed form to look for drift, so this is part of the cost).
    for change in plan(desired, observed, world.state).changes:
        rs = world.state.resources.get(str(change.address))
        if rs is not None and change.before is not None:
            rs.applied_fingerprint = digest(change.before)
    setup = time.perf_counter() - start
    print(f"desired: {len(desired.resources):,} resources; observed: {len(observed.connectors):,} connectors, "
          f"{len(observed.groups):,} groups, {len(observed.models):,} models; state: "
          f"{len(world.state.resources):,} addresses (built in {setup:.1f}s, not timed)")

    scenarios = (("managed (state for every object)", lambda: plan(desired, observed, world.state)),
                 ("adopt (no state: natural keys)",
                  lambda: plan(desired, observed, StackState("bench", fingerprint_key=KEY))))
    for label, run in scenarios:
        result = run()   # warm-up, and the plan whose size is reported
        counts = {a.value: n for a, n in ((a, sum(a in c.actions for c in result.changes)) for a in Action) if n}
        runs = timed_runs(run, args.repeat)
        peak = peak_memory(run)
        print(f"\n{label}: {len(result.changes):,} changes, {len(result.pending):,} pending {counts}")
        print(f"  planner.plan: median {statistics.median(runs):.3f}s (min {min(runs):.3f}s, max {max(runs):.3f}s, "
              f"{len(runs)} runs); peak memory {peak / 2**20:.1f} MiB (tracemalloc)")
    if args.profile:
        prof = cProfile.Profile()
        prof.runcall(scenarios[0][1])
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
