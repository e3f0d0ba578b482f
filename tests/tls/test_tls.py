"""Real TLS and basic auth: mlsync against nginx (`scripts/cluster up --tls`) in front of the test node,
and against a server with a self-signed certificate.

Every mlsync run here is a real subprocess (what a user sees on the terminal, Python warnings included),
and every run's output is checked for the password: no credential is ever printed."""

from __future__ import annotations

import http.server
import os
import shutil
import ssl
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster

REPO_ROOT = Path(__file__).resolve().parents[2]


def _stack(tmp_path: Path) -> tuple[Path, str]:
    name = f"ct-tls-{uuid.uuid4().hex[:8]}"
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"version: 1\nstack: {name}\nmodel_groups:\n  - name: {name}\n    description: through the TLS proxy\n")
    return path, name


def mlsync(*args: str, url: str, username: str | None = None, password: str | None = None,
           secrets: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """`python -m mlsync.cli ARGS` with only these connection settings; asserts no secret is printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENSEARCH_")}
    env["OPENSEARCH_URL"] = url
    env.pop("PYTHONWARNINGS", None)
    if username is not None:
        env["OPENSEARCH_USERNAME"] = username
    if password is not None:
        env["OPENSEARCH_PASSWORD"] = password
    done = subprocess.run([sys.executable, "-m", "mlsync.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120, cwd=REPO_ROOT)
    for secret in (password, *secrets):
        if secret:
            assert secret not in done.stdout + done.stderr, "a credential was printed"
    return done


def _group_exists(os_client, name: str) -> bool:
    os_client.indices.refresh(index=".plugins-ml-model-group", ignore_unavailable=True)
    found = os_client.plugins.ml.search_model_group(body={"query": {"term": {"name.keyword": name}}})
    return bool(found["hits"]["hits"])


def _quiet(*runs: subprocess.CompletedProcess) -> None:
    """No warning of any kind (a library's or mlsync's) on stderr."""
    for run in runs:
        assert "warning" not in run.stderr.lower(), run.stderr


def test_the_proxy_is_real_tls_and_basic_auth(tls_proxy):
    """What the fixture started: https with a certificate from the CA made at start, and 401 without a password."""
    assert tls_proxy.url.startswith("https://127.0.0.1:")
    assert "BEGIN CERTIFICATE" in Path(tls_proxy.ca).read_text()
    assert len(tls_proxy.password) >= 16
    assert tls_proxy.password not in tls_proxy.started_output      # `up --tls` and `env --tls` print no password
    ok = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", tls_proxy.ca,
                         tls_proxy.url + "/"], capture_output=True, text=True)
    assert ok.stdout == "401"


def test_verification_is_on_by_default_and_the_unknown_ca_is_refused(tls_proxy, os_client, tmp_path):
    stack, name = _stack(tmp_path)
    done = mlsync("apply", "-f", str(stack), "--auto-approve", url=tls_proxy.url, username=tls_proxy.username,
                  password=tls_proxy.password)
    assert done.returncode == 1
    assert f"TLS error talking to {tls_proxy.url}: [Errno 1] [SSL: CERTIFICATE_VERIFY_FAILED]" in done.stderr
    assert "certificate verify failed: unable to get local issuer certificate" in done.stderr
    assert "Traceback" not in done.stderr
    assert not _group_exists(os_client, name)        # refused before anything was sent


def test_ca_certs_works_for_plan_apply_drift_and_destroy(tls_proxy, os_client, tmp_path):
    stack, name = _stack(tmp_path)
    conn = dict(url=tls_proxy.url, username=tls_proxy.username, password=tls_proxy.password)
    ca = ["--ca-certs", tls_proxy.ca]
    plan_file = tmp_path / "plan.json"
    try:
        planned = mlsync("plan", "-f", str(stack), *ca, "-o", str(plan_file), "--detailed-exitcode", **conn)
        assert planned.returncode == 2, planned.stderr
        assert tls_proxy.password not in plan_file.read_text()
        applied = mlsync("apply", str(plan_file), *ca, "--auto-approve", **conn)
        assert applied.returncode == 0, applied.stderr
        assert _group_exists(os_client, name)      # seen on the node itself, behind the proxy
        again = mlsync("plan", "-f", str(stack), *ca, "--detailed-exitcode", **conn)
        assert again.returncode == 0, again.stdout + again.stderr
        drift = mlsync("drift", "-f", str(stack), *ca, **conn)
        assert drift.returncode == 0, drift.stdout + drift.stderr
        _quiet(planned, applied, again, drift)
    finally:
        gone = mlsync("destroy", "-f", str(stack), *ca, "--auto-approve", **conn)
    assert gone.returncode == 0, gone.stderr
    assert not _group_exists(os_client, name)


def test_insecure_works_and_warns_once(tls_proxy, tmp_path):
    stack, _ = _stack(tmp_path)
    done = mlsync("plan", "-f", str(stack), "--insecure", url=tls_proxy.url, username=tls_proxy.username,
                  password=tls_proxy.password)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == ["warning: --insecure: the cluster's TLS certificate is not verified; anyone on the network "
                     "path can pose as the cluster and read the credentials sent to it"]   # and no urllib3 warning
    assert "1 to create" in done.stdout


@pytest.mark.parametrize("how", ["wrong password", "no password", "wrong password in the URL"])
def test_a_wrong_password_is_a_clear_401(tls_proxy, os_client, tmp_path, how):
    stack, name = _stack(tmp_path)
    wrong = "not-the-" + uuid.uuid4().hex
    url, username, password = tls_proxy.url, tls_proxy.username, wrong
    if how == "no password":
        password = None
    elif how == "wrong password in the URL":
        url, username, password = tls_proxy.url.replace("https://", f"https://{tls_proxy.username}:{wrong}@"), None, None
    done = mlsync("apply", "-f", str(stack), "--ca-certs", tls_proxy.ca, "--auto-approve", url=url,
                  username=username, password=password, secrets=(wrong, tls_proxy.password))
    assert done.returncode == 1
    assert done.stderr.strip().endswith("HTTP 401: Unauthorized"), done.stderr
    assert done.stderr.count("\n") == 1, done.stderr          # one line, no traceback
    assert not _group_exists(os_client, name)


# --------------------------------------------------------------------------- a self-signed server


@pytest.fixture
def self_signed_server(tmp_path):
    """An HTTPS server on loopback whose certificate signs itself (openssl), answering every GET with {}."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "self.crt", tmp_path / "self.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{httpd.server_address[1]}", str(cert)
    httpd.shutdown()
    httpd.server_close()


def test_a_self_signed_server_is_refused_with_a_clear_error(self_signed_server, tmp_path):
    url, _ = self_signed_server
    stack, _ = _stack(tmp_path)
    done = mlsync("plan", "-f", str(stack), url=url, username="admin", password="pw-" + uuid.uuid4().hex)
    assert done.returncode == 1
    assert f"TLS error talking to {url}: [Errno 1] [SSL: CERTIFICATE_VERIFY_FAILED]" in done.stderr, done.stderr
    assert "certificate verify failed: self-signed certificate" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr
