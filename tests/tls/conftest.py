"""The TLS proxy of `scripts/cluster up --tls` (nginx: TLS termination and basic auth) in front of the
test node, started once for these tests on a free loopback port with its own CA, certificate and
password (in a temporary folder), and stopped afterwards. The node itself is reused, never restarted."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CLUSTER = REPO_ROOT / "scripts" / "cluster"


@dataclass
class Proxy:
    url: str
    username: str
    password: str
    ca: str
    node_url: str
    started_output: str       # what `scripts/cluster up --tls` printed


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _missing(what: str) -> None:
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"{what} (CI is set, so this fails instead of skipping; .ci/run installs it)", pytrace=False)
    pytest.skip(what)


@pytest.fixture(scope="session")
def tls_proxy(os_client, tmp_path_factory) -> Iterator[Proxy]:
    for tool in ("nginx", "openssl", "curl"):
        if shutil.which(tool) is None:
            _missing(f"{tool} is not installed (apt-get install {tool})")
    node_url = os.environ.get("OPENSEARCH_URL", "http://127.0.0.1:9200")
    node_port = urlsplit(node_url).port or 9200
    # not under pytest's own 0700 temp root: nginx's workers run as `nobody` when the tests run as root
    tls_dir = Path(tempfile.mkdtemp(prefix="mlsync-tls-"))
    tls_dir.chmod(0o755)
    env = {**os.environ, "MLSYNC_OS_PORT": str(node_port), "MLSYNC_TLS_PORT": str(_free_port()),
           "MLSYNC_TLS_DIR": str(tls_dir)}
    try:
        up = subprocess.run([str(CLUSTER), "up", "--tls"], env=env, capture_output=True, text=True, timeout=120)
        if up.returncode != 0:
            pytest.fail(f"scripts/cluster up --tls exited {up.returncode}:\n{up.stderr}{up.stdout}", pytrace=False)
        shown = subprocess.run([str(CLUSTER), "env", "--tls"], env=env, capture_output=True, text=True,
                               check=True).stdout
        values = dict(item.split("=", 1) for item in shown.split())
        password = Path(values["MLSYNC_TLS_PASSWORD_FILE"]).read_text()
        yield Proxy(url=values["OPENSEARCH_URL"], username=values["OPENSEARCH_USERNAME"], password=password,
                    ca=values["MLSYNC_TLS_CA"], node_url=node_url, started_output=up.stdout + up.stderr + shown)
    finally:
        subprocess.run([str(CLUSTER), "down", "--tls"], env=env, capture_output=True, text=True, timeout=60)
        shutil.rmtree(tls_dir, ignore_errors=True)
