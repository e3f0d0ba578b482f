"""Benchmark (issue 12, goal 2): registering a local model file (`path:`), against a minimal client.

    .venv/bin/python benchmarks/bench_upload.py --url http://127.0.0.1:9280             # 300 MB, 3 rounds
    .venv/bin/python benchmarks/bench_upload.py --size-mb 1024 --repeat 1 --rss-only    # peak RSS at 1 GB

One generated artifact (random bytes: `--size-mb`, in a temporary directory) is hashed and uploaded
side by side, medians of `--repeat` rounds:

  sha256sum     the coreutils tool on the same file (the disk / CPU limit for hashing)
  sha256_file   mlsync's hashing (mlsync/input/flatten.py)
  sequential    a minimal hand-written client: register_meta, upload_chunk 10 MB slices in order, GET the
                model until REGISTERED (no hashing: the hash is passed in)
  concurrent    the same with chunks 0..n-2 sent by `--workers` threads, then the last chunk (ML Commons
                2.19 registers the model when the chunk numbered total_chunks-1 is indexed, whatever
                arrived before it: MLModelChunkUploader; so only the last chunk must wait for the others)
  mlsync x1     `mlsync.commands.apply` of a stack with one `path:` version (deploy: false): load (hash),
                plan, apply (hash again, register_meta, chunks, wait, fix-up), timed from start to end,
                with `upload_concurrency=1` (chunks in order, one at a time)
  mlsync xN     the same with `upload_concurrency=--workers` (`mlsync apply --upload-concurrency N`)

Then `mlsync apply --upload-concurrency N` as a process on the same file, for its peak RSS
(`/usr/bin/time -f %M` when present, else the children's ru_maxrss). Targets: mlsync x1 <= 1.1x
sequential (and mlsync xN <= 1.1x concurrent xN); hashing >= 90 % of sha256sum's speed; peak RSS
<= 100 MB at 1 GB. Each round prints the 1-minute load average. Everything created is deleted
afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402
from opensearchpy import OpenSearch  # noqa: E402

from mlsync import commands as app  # noqa: E402
from mlsync.edge.cluster import ConnectionOptions  # noqa: E402
from mlsync.input.flatten import sha256_file  # noqa: E402

from _cleanup import delete_named  # noqa: E402

CHUNK = 10_000_000
UPLOAD_TARGET, HASH_TARGET, RSS_TARGET_MB = 1.1, 0.9, 100
MODEL = {"model_format": "TORCH_SCRIPT",
         "model_config": {"model_type": "bert", "embedding_dimension": 8, "framework_type": "sentence_transformers"}}


def make_artifact(path: str, size_mb: int) -> None:
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for i in range(size_mb):
            f.write(block[i % 251:] + block[:i % 251])   # distinct blocks, cheap to make


def minimal_upload(client: OpenSearch, path: str, name: str, group_id: str, sha: str, size: int,
                   workers: int) -> float:
    ml = client.plugins.ml
    total = math.ceil(size / CHUNK)
    start = time.perf_counter()
    model_id = ml.register_model_meta(body={"name": name, "model_group_id": group_id, **MODEL,
                                            "model_content_hash_value": sha, "model_content_size_in_bytes": size,
                                            "total_chunks": total})["model_id"]

    def send(number: int) -> None:
        with open(path, "rb") as f:
            f.seek(number * CHUNK)
            data = f.read(CHUNK)
        ml.upload_chunk(model_id=model_id, chunk_number=number, body=data, headers={"content-type": "application/json"})
    if workers <= 1:
        with open(path, "rb") as f:
            for number in range(total):
                ml.upload_chunk(model_id=model_id, chunk_number=number, body=f.read(CHUNK),
                                headers={"content-type": "application/json"})
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(send, range(total - 1)))
        send(total - 1)
    while ml.get_model(model_id=model_id).get("model_state") != "REGISTERED":
        time.sleep(0.05)
    return time.perf_counter() - start


def run_mlsync(url: str, path: str, name: str, workdir: str, concurrency: int) -> float:
    stack = os.path.join(workdir, f"{name}.yaml")
    with open(stack, "w", encoding="utf-8") as f:
        yaml.safe_dump({"version": 1, "stack": name, "models": [
            {"name": name, "description": "upload benchmark", **MODEL,
             "versions": [{"version": "1", "path": path, "deploy": False}]}]}, f, sort_keys=False)
    out = io.StringIO()
    with contextlib.redirect_stderr(io.StringIO()):
        start = time.perf_counter()
        code = app.apply([stack], ConnectionOptions(url=url, timeout=300), out, auto_approve=True,
                         upload_concurrency=concurrency)
        took = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(out.getvalue()[-2000:])
    return took


def peak_rss_mb(url: str, path: str, name: str, workdir: str, concurrency: int) -> float:
    stack = os.path.join(workdir, f"{name}.yaml")
    with open(stack, "w", encoding="utf-8") as f:
        yaml.safe_dump({"version": 1, "stack": name, "models": [
            {"name": name, **MODEL, "versions": [{"version": "1", "path": path, "deploy": False}]}]}, f)
    cmd = [str(ROOT / ".venv/bin/mlsync"), "apply", "-f", stack, "--auto-approve", "--url", url,
           "--upload-concurrency", str(concurrency)]
    if shutil.which("time") or os.path.exists("/usr/bin/time"):
        res = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(res.stdout[-2000:] + res.stderr[-2000:])
        return int(res.stderr.strip().splitlines()[-1]) / 1024
    subprocess.run(cmd, check=True, capture_output=True)
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default=os.environ.get("OPENSEARCH_URL") or "http://127.0.0.1:9200")
    ap.add_argument("--size-mb", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=4,
                    help="threads of the concurrent client and mlsync's --upload-concurrency (default 4)")
    ap.add_argument("--rss-only", action="store_true", help="only the peak RSS of `mlsync apply` as a process")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*system indices.*")
    client = OpenSearch(args.url, timeout=300, max_retries=0)
    prefix = f"benchu-{uuid.uuid4().hex[:8]}"
    workdir = tempfile.mkdtemp(prefix="mlsync-bench-upload-")
    path = os.path.join(workdir, "artifact.bin")
    stacks: list[str] = []
    try:
        make_artifact(path, args.size_mb)
        size = os.path.getsize(path)
        print(f"{args.url}: a {size / 1e6:.0f} MB artifact, {math.ceil(size / CHUNK)} chunks; prefix {prefix}; "
              f"load average {os.getloadavg()[0]:.2f}")
        if args.rss_only:
            stacks.append(f"{prefix}-rss")
            t0 = time.perf_counter()
            rss = peak_rss_mb(args.url, path, f"{prefix}-rss", workdir, args.workers)
            print(f"mlsync apply --upload-concurrency {args.workers} (process): peak RSS {rss:.0f} MB "
                  f"({'meets' if rss <= RSS_TARGET_MB else 'MISSES'} <= {RSS_TARGET_MB} MB); "
                  f"{time.perf_counter() - t0:.1f}s, load average {os.getloadavg()[0]:.2f}")
            return 0
        results: dict[str, list[float]] = {}
        for rnd in range(args.repeat):
            t0 = time.perf_counter()
            subprocess.run(["sha256sum", path], check=True, capture_output=True)
            results.setdefault("sha256sum", []).append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            sha, _ = sha256_file(path)
            results.setdefault("sha256_file", []).append(time.perf_counter() - t0)
            group_id = client.plugins.ml.register_model_group(body={"name": f"{prefix}-g{rnd}"})["model_group_id"]
            results.setdefault("sequential", []).append(
                minimal_upload(client, path, f"{prefix}-s{rnd}", group_id, sha, size, 1))
            results.setdefault(f"concurrent x{args.workers}", []).append(
                minimal_upload(client, path, f"{prefix}-c{rnd}", group_id, sha, size, args.workers))
            stacks.append(f"{prefix}-m{rnd}")
            results.setdefault("mlsync x1", []).append(run_mlsync(args.url, path, f"{prefix}-m{rnd}", workdir, 1))
            stacks.append(f"{prefix}-n{rnd}")
            results.setdefault(f"mlsync x{args.workers}", []).append(
                run_mlsync(args.url, path, f"{prefix}-n{rnd}", workdir, args.workers))
            print(f"  round {rnd + 1} (load average {os.getloadavg()[0]:.2f}): "
                  + "  ".join(f"{k} {v[-1]:.2f}s" for k, v in results.items()), flush=True)
            delete_named(client, prefix)
        med = {k: statistics.median(v) for k, v in results.items()}
        print(f"\nmedians over {args.repeat} round(s):")
        for k, v in med.items():
            print(f"  {k:16s} {v:7.2f}s  {size / v / 1e6:8.0f} MB/s")
        speed = med["sha256sum"] / med["sha256_file"]
        print(f"hashing: {speed:.0%} of sha256sum's speed ({'meets' if speed >= HASH_TARGET else 'MISSES'} "
              f">= {HASH_TARGET:.0%})")
        ratio = med["mlsync x1"] / med["sequential"]
        print(f"mlsync registration x1: {ratio:.2f}x the minimal sequential upload "
              f"({'meets' if ratio <= UPLOAD_TARGET else 'MISSES'} <= {UPLOAD_TARGET}x)")
        conc, mine = med[f"concurrent x{args.workers}"], med[f"mlsync x{args.workers}"]
        print(f"mlsync registration x{args.workers}: {mine / conc:.2f}x the minimal concurrent upload "
              f"({'meets' if mine / conc <= UPLOAD_TARGET else 'MISSES'} <= {UPLOAD_TARGET}x); gain of concurrent "
              f"chunks: {med['sequential'] / conc:.2f}x (minimal clients), {med['mlsync x1'] / mine:.2f}x (mlsync)")
    finally:
        print("clean-up: deleted " + delete_named(client, prefix, stacks))
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
