"""`mlsync` as a process, counting the HTTP requests it makes (for bench_scale.py).

    MLSYNC_BENCH_COUNT=/tmp/n .venv/bin/python benchmarks/_counted.py plan -f stack.yaml

Runs the real CLI (`mlsync.cli.main`); at exit writes the number of requests (every attempt, as
`Cluster.requests_made` counts them) of every cluster connection the command opened to the file
named by MLSYNC_BENCH_COUNT.
"""

from __future__ import annotations

import atexit
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlsync.commands import common  # noqa: E402

_clusters: list = []
_real_connect = common.connect


def _connect(*args, **kwargs):
    cluster = _real_connect(*args, **kwargs)
    _clusters.append(cluster)
    return cluster


def _write_count() -> None:
    target = os.environ.get("MLSYNC_BENCH_COUNT")
    if target:
        Path(target).write_text(str(sum(c.requests_made for c in _clusters)))


common.connect = _connect
atexit.register(_write_count)

if __name__ == "__main__":
    from mlsync.cli import main

    main(prog_name="mlsync")
