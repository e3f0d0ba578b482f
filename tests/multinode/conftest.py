"""A two-node OpenSearch + ML Commons cluster of the tests' own (never the shared node).

Opt-in: the tests start two JVMs (1 GiB heap each; ~95 s to start on a 2-core machine, ~4 min in all),
so they run only when selected with ``-m multinode`` (``scripts/test-multinode`` does that, and stops
the cluster afterwards). Ports and directory: MLSYNC_MULTINODE_PORT (HTTP of node 1, default 9210;
node 2 gets the next), MLSYNC_MULTINODE_TPORT (default 9310), MLSYNC_MULTINODE_DIR (default
/tmp/multi-node). A cluster already running there is reused and left running; one the fixture
started is stopped at the end of the session.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# the stacks of the single-node tests (stack_helpers.remote_stack, test_local_models.onnx_stack)
if str(REPO_ROOT / "tests" / "integration") not in sys.path:
    sys.path.insert(0, str(REPO_ROOT / "tests" / "integration"))
CLUSTER = REPO_ROOT / "scripts" / "cluster"
#: Two 1 GiB heaps, their native memory and the ONNX Runtime natives of a local deploy.
MIN_AVAILABLE_MIB = 4096


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "multinode" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="opt-in two-node tests: run them with `-m multinode` or scripts/test-multinode")
    for item in items:
        if item.get_closest_marker("multinode") is not None:
            item.add_marker(skip)


class TwoNodes:
    def __init__(self) -> None:
        self.port = int(os.environ.get("MLSYNC_MULTINODE_PORT", "9210"))
        self.tport = int(os.environ.get("MLSYNC_MULTINODE_TPORT", "9310"))
        self.dir = os.environ.get("MLSYNC_MULTINODE_DIR", "/tmp/multi-node")
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "MLSYNC_OS_PORT": str(self.port), "MLSYNC_OS_TPORT": str(self.tport),
                    "MLSYNC_NODE_DIR": self.dir, "OPENSEARCH_URL": self.url}

    def script(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        return subprocess.run([str(CLUSTER), *args], cwd=REPO_ROOT, env=self.env, capture_output=True,
                              text=True, timeout=timeout)

    def check(self, *args: str, timeout: float = 900) -> str:
        done = self.script(*args, timeout=timeout)
        assert done.returncode == 0, f"scripts/cluster {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}"
        return done.stderr

    def stop_node(self, index: int, how: str = "--kill") -> None:
        self.check("stop-node", str(index), how, timeout=120)

    def start_node(self, index: int) -> None:
        self.check("start-node", str(index), timeout=400)


def _available_mib() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 1 << 30   # unknown: try


@pytest.fixture(scope="session")
def two_nodes() -> Iterator[TwoNodes]:
    avail = _available_mib()
    if avail < MIN_AVAILABLE_MIB:
        pytest.skip(f"a two-node cluster needs about {MIN_AVAILABLE_MIB} MiB of free memory; "
                    f"this machine has {avail} MiB available")
    nodes = TwoNodes()
    was_running = nodes.script("status", timeout=60).returncode == 0
    nodes.check("up", "--nodes", "2")
    out = nodes.script("env", timeout=60).stdout
    assert "MLSYNC_NODE_URLS=" in out and out.count("http://") == 3, f"not a two-node cluster: {out}"
    yield nodes
    if not was_running:
        nodes.check("down", timeout=300)
