"""Shared pytest setup for the whole suite.

- marker ``cluster``: the test needs the real OpenSearch + ML Commons node. Every test under
  ``tests/contract/`` gets it automatically. A ``cluster`` test always goes through ``os_client``,
  so it is skipped (locally) or failed (when ``CI`` is set) if the node cannot be reached.
- ``os_client`` (session): an opensearch-py client for ``OPENSEARCH_URL``, or for the node that
  ``scripts/cluster up`` starts (URL from ``scripts/cluster env``).
- ``artifact_server`` (session): a loopback HTTP server for model zips and a stub inference endpoint
  (see ``tests/helpers.py``); ``make_model_zip`` is its zip factory.
- ``janitor`` (function): records what a test creates on the cluster and deletes it afterwards.
- ``unique_name``: a factory for collision-free names (the cluster is shared).

Reusable code lives in ``tests/helpers.py``; import it as ``from helpers import ...`` (this file
puts ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
CONTRACT_DIR = TESTS_DIR / "contract"
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

import helpers  # noqa: E402  (needs the sys.path line above)

CLUSTER_SCRIPT = REPO_ROOT / "scripts" / "cluster"
CLUSTER_UP_TIMEOUT = float(os.environ.get("MLSYNC_UP_TIMEOUT", "180")) + 600  # first run downloads ~400 MB


# --------------------------------------------------------------------------- markers


def pytest_configure(config: pytest.Config) -> None:
    # Also declared in pyproject.toml; repeated here so the suite works from any ini file.
    config.addinivalue_line("markers", "cluster: needs the real OpenSearch + ML Commons node (scripts/cluster up)")
    config.addinivalue_line("markers", "multinode: starts its own two-node cluster (scripts/cluster up --nodes 2); "
                                       "opt-in: -m multinode or scripts/test-multinode")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(getattr(item, "path", item.fspath))).resolve()
        if CONTRACT_DIR in path.parents:
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(autouse=True)
def _cluster_gate(request: pytest.FixtureRequest) -> None:
    """Make every ``cluster`` test depend on ``os_client`` (and so skip/fail with a clear reason)."""
    if request.node.get_closest_marker("cluster") is not None:
        request.getfixturevalue("os_client")


# --------------------------------------------------------------------------- cluster connection


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _unavailable(reason: str) -> None:
    """No node: fail in CI (a cluster that does not start must fail CI), skip elsewhere."""
    if _in_ci():
        pytest.fail(f"OpenSearch test node unavailable (CI is set, so this fails instead of skipping): {reason}",
                    pytrace=False)
    pytest.skip(f"OpenSearch test node unavailable: {reason} "
                f"(start it with `scripts/cluster up` or set OPENSEARCH_URL)")


def _cluster_url() -> str:
    url = os.environ.get("OPENSEARCH_URL", "").strip()
    if url:
        return url
    if not CLUSTER_SCRIPT.exists():
        _unavailable(f"OPENSEARCH_URL is not set and {CLUSTER_SCRIPT} does not exist")
    try:
        up = subprocess.run([str(CLUSTER_SCRIPT), "up"], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=CLUSTER_UP_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        _unavailable(f"`scripts/cluster up` did not finish: {exc}")
    if up.returncode != 0:
        tail = "\n".join((up.stderr or up.stdout).strip().splitlines()[-15:])
        _unavailable(f"`scripts/cluster up` exited {up.returncode}:\n{tail}")
    env = subprocess.run([str(CLUSTER_SCRIPT), "env"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
    for line in env.stdout.splitlines():
        if line.startswith("OPENSEARCH_URL="):   # other variables may follow on the line (env --tls, two nodes)
            return line.split("=", 1)[1].split()[0]
    return "http://127.0.0.1:9200"


def make_client(url: str) -> Any:
    """An opensearch-py client for ``url`` (basic auth from OPENSEARCH_USERNAME/PASSWORD if set)."""
    from opensearchpy import OpenSearch

    kwargs: dict[str, Any] = {"timeout": 60, "max_retries": 0}
    user, password = os.environ.get("OPENSEARCH_USERNAME"), os.environ.get("OPENSEARCH_PASSWORD")
    if user:
        kwargs["http_auth"] = (user, password or "")
    return OpenSearch(url, **kwargs)


@pytest.fixture(scope="session")
def os_client() -> Iterator[Any]:
    """An opensearch-py client connected to a healthy node that has the ML Commons plugin."""
    url = _cluster_url()
    client = make_client(url)
    try:
        # request_timeout must be given: opensearch-py 3.2 otherwise takes the `timeout` query
        # parameter as its own socket timeout (and rejects "30s").
        client.cluster.health(wait_for_status="yellow", timeout="30s", request_timeout=40)
        plugins = client.cat.plugins(format="json")
    except Exception as exc:  # noqa: BLE001 — any failure here means "no usable node"
        _unavailable(f"cannot reach {url}: {exc}")
    if not any(p.get("component") == "opensearch-ml" for p in plugins):
        _unavailable(f"{url} is up but the ML Commons plugin (opensearch-ml) is not installed")
    yield client
    client.close()


@pytest.fixture(scope="session")
def cluster_version(os_client: Any) -> str:
    return os_client.info()["version"]["number"]


# --------------------------------------------------------------------------- helpers as fixtures


@pytest.fixture(scope="session")
def artifact_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[helpers.ArtifactServer]:
    """Loopback HTTP server: ``/models/*.zip`` (see ``make_model_zip``) and a stub ``POST /v1/...``."""
    server = helpers.start_artifact_server(str(tmp_path_factory.mktemp("artifacts")))
    yield server
    helpers.stop_artifact_server(server, remove_root=False)  # tmp_path_factory owns the directory


@pytest.fixture
def make_model_zip(artifact_server: helpers.ArtifactServer) -> Callable[..., helpers.ModelZip]:
    """``make_model_zip(kind="torch"|"onnx", seed=...) -> ModelZip(url, sha256, size, path)``."""
    return artifact_server.make_model_zip


@pytest.fixture(name="unique_name")
def unique_name_fixture() -> Callable[..., str]:
    """``unique_name(prefix="ct") -> "<prefix>-<8 hex>"``; see ``helpers.unique_name``."""
    return helpers.unique_name


@pytest.fixture
def janitor(os_client: Any) -> Iterator[helpers.Janitor]:
    """Register what a test creates (``janitor.model(id)`` …); it is all deleted after the test.

    A cleanup problem fails the test's teardown, so leaks on the shared cluster do not go unnoticed.
    """
    jan = helpers.Janitor(os_client)
    yield jan
    errors = jan.cleanup()
    if errors:
        pytest.fail("cleanup left objects on the cluster:\n" + "\n".join(errors), pytrace=False)


@pytest.fixture(scope="module")
def module_janitor(os_client: Any) -> Iterator[helpers.Janitor]:
    """Like ``janitor`` but for objects a module's shared fixtures create once for several tests."""
    jan = helpers.Janitor(os_client)
    yield jan
    errors = jan.cleanup()
    if errors:
        pytest.fail("cleanup left objects on the cluster:\n" + "\n".join(errors), pytrace=False)
