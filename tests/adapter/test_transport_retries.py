"""Retries of transient faults in the transport (issue 10, defect 5) and user-info redaction and
connection warnings (defect 12), against a tiny loopback HTTP server: no cluster needed."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterator, Optional

import pytest
from click.testing import CliRunner

from mlsync.core.errors import ClusterError, StateConflict
from mlsync.edge.cluster import Cluster, ConnectionOptions

REJECTED = {"error": {"root_cause": [{"type": "es_rejected_execution_exception",
                                      "reason": "rejected execution of coordinating operation"}],
                      "type": "es_rejected_execution_exception",
                      "reason": "rejected execution of coordinating operation"}, "status": 429}

Reply = tuple[int, dict, object]          # status, headers, JSON body


class _Server:
    """127.0.0.1 only. `app(method, path, body) -> (status, headers, json)`; every request is logged."""

    def __init__(self, app: Callable[[str, str, Optional[dict]], Reply]) -> None:
        self.app, self.requests = app, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                outer.requests.append((self.command, self.path, body))
                status, headers, payload = outer.app(self.command, self.path, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "_Server":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _rejecting(times: int, ok: Reply, retry_after: Optional[str] = "0.2") -> Callable[..., Reply]:
    left = [times]

    def app(method: str, path: str, body: Optional[dict]) -> Reply:
        if left[0] > 0:
            left[0] -= 1
            return 429, ({"Retry-After": retry_after} if retry_after is not None else {}), REJECTED
        return ok
    return app


def _cluster(url: str, **options) -> tuple[Cluster, list[float]]:
    cluster = Cluster.connect(ConnectionOptions(url=url, timeout=5, **options))
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        time.sleep(seconds)
    cluster._transport._sleep = sleep
    return cluster, sleeps


MODEL = (200, {}, {"name": "m", "model_state": "REGISTERED", "algorithm": "TEXT_EMBEDDING"})


def test_a_read_rejected_twice_with_retry_after_succeeds_on_the_third_request():
    with _Server(_rejecting(2, MODEL, retry_after="0.2")) as server:
        cluster, sleeps = _cluster(server.url)
        assert cluster.get_model("abc")["name"] == "m"
        assert cluster.requests_made == 3 and len(server.requests) == 3
        assert len(sleeps) == 2 and all(s >= 0.2 for s in sleeps)     # Retry-After honoured


def test_a_read_rejected_every_time_fails_clearly_after_the_deadline():
    with _Server(_rejecting(10**6, MODEL, retry_after=None)) as server:
        cluster, _ = _cluster(server.url, retry_deadline=1.0)
        start = time.monotonic()
        with pytest.raises(ClusterError) as info:
            cluster.get_model("abc")
        took = time.monotonic() - start
    err = info.value
    assert err.status == 429 and err.error_type == "es_rejected_execution_exception"
    assert "rejected execution" in str(err) and "gave up after" in str(err)
    assert err.attempts >= 2 and err.attempts == len(server.requests)
    assert took < 3


def test_a_huge_retry_after_is_capped_by_the_deadline_not_slept():
    with _Server(_rejecting(10**6, MODEL, retry_after="3600")) as server:
        cluster, sleeps = _cluster(server.url, retry_deadline=2.0)
        with pytest.raises(ClusterError) as info:
            cluster.get_model("abc")
    assert info.value.status == 429 and sleeps == [] and len(server.requests) == 1


def test_a_create_rejected_with_429_is_sent_again_but_a_502_is_not():
    group = (200, {}, {"model_group_id": "g1", "status": "CREATED"})
    with _Server(_rejecting(1, group, retry_after="0")) as server:
        cluster, _ = _cluster(server.url)
        assert cluster.create_group({"name": "g"}) == "g1"
        assert len(server.requests) == 2                     # a 429 is a refusal: nothing was created

    def bad_gateway(method: str, path: str, body: Optional[dict]) -> Reply:
        return 502, {}, {"error": "bad gateway"}
    with _Server(bad_gateway) as server:
        cluster, _ = _cluster(server.url)
        with pytest.raises(ClusterError) as info:
            cluster.create_group({"name": "g"})
        assert info.value.status == 502 and info.value.ambiguous
        assert len(server.requests) == 1                     # may have landed: the journal decides


def test_opensearch_py_does_not_retry_on_its_own():
    def unavailable(method: str, path: str, body: Optional[dict]) -> Reply:
        return 503, {}, {"error": "unavailable"}
    with _Server(unavailable) as server:
        cluster, _ = _cluster(server.url, retry_deadline=0)
        with pytest.raises(ClusterError) as info:
            cluster.get_model("abc")
        assert info.value.status == 503 and len(server.requests) == 1
        assert "gave up" not in str(info.value)


class _StateIndex:
    """One state document; the first write lands but its answer is lost (502 from a proxy)."""

    def __init__(self) -> None:
        self.doc: dict = {"v": 0}
        self.seq_no, self.lose_next = 5, True

    def __call__(self, method: str, path: str, body: Optional[dict]) -> Reply:
        if method == "GET":
            return 200, {}, {"_index": "mlsync-state", "_id": "s", "found": True, "_seq_no": self.seq_no,
                             "_primary_term": 1, "_source": self.doc}
        if f"if_seq_no={self.seq_no}" not in path:
            return 409, {}, {"error": {"root_cause": [{"type": "version_conflict_engine_exception",
                                                       "reason": "[s]: version conflict"}],
                                       "type": "version_conflict_engine_exception",
                                       "reason": "[s]: version conflict"}, "status": 409}
        self.doc, self.seq_no = body, self.seq_no + 1
        if self.lose_next:
            self.lose_next = False
            return 502, {}, {"error": "bad gateway"}
        return 200, {}, {"_seq_no": self.seq_no, "_primary_term": 1, "result": "updated"}


def test_a_state_write_whose_answer_was_lost_is_not_a_false_conflict():
    index = _StateIndex()
    with _Server(index) as server:
        cluster, _ = _cluster(server.url)
        doc = cluster.write_state("s", {"v": 1}, 5, 1)
        assert doc.seq_no == 6 and doc.body == {"v": 1} and index.doc == {"v": 1}
        methods = [m for m, _, _ in server.requests]
        assert methods == ["PUT", "PUT", "GET"]             # lost answer, re-send meets 409, read back: ours
        # someone else's write is still a conflict
        index.doc, index.seq_no = {"v": "theirs"}, 9
        with pytest.raises(StateConflict):
            cluster.write_state("s", {"v": 2}, 6, 1)


def test_a_state_write_rejected_with_429_is_retried():
    index = _StateIndex()
    index.lose_next = False
    rejected = [2]

    def app(method: str, path: str, body: Optional[dict]) -> Reply:
        if method == "PUT" and rejected[0]:
            rejected[0] -= 1
            return 429, {"Retry-After": "0"}, REJECTED
        return index(method, path, body)
    with _Server(app) as server:
        cluster, _ = _cluster(server.url)
        assert cluster.write_state("s", {"v": 1}, 5, 1).seq_no == 6
        assert len(server.requests) == 3


# --------------------------------------------------------------------------- defect 12


def _refused_url(userinfo: str = "admin:s3cr3t-pw") -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://{userinfo}@127.0.0.1:{port}"


def test_the_password_of_a_url_never_appears_in_a_connection_error():
    url = _refused_url()
    cluster = Cluster.connect(ConnectionOptions(url=url, timeout=2))
    with pytest.raises(ClusterError) as info:
        cluster.get_model("abc")
    text = str(info.value)
    assert "s3cr3t-pw" not in text and "admin:" not in text
    assert "cannot connect to http://***@127.0.0.1:" in text
    assert "s3cr3t-pw" not in repr(cluster.options)


def test_redact_url():
    from mlsync.edge.transport import redact_url

    assert redact_url("https://admin:p%40ss@h.example:9200/x?y=1") == "https://***@h.example:9200/x?y=1"
    assert redact_url("http://user@h:9200") == "http://***@h:9200"
    assert redact_url("http://h:9200") == "http://h:9200"


def test_connection_warnings():
    from mlsync.edge.transport import connection_warnings

    assert connection_warnings(ConnectionOptions(url="https://h:9200", username="u", password="p")) == []
    insecure = connection_warnings(ConnectionOptions(url="https://h:9200", insecure=True, ca_certs="/ca.pem"))
    assert any("not verified" in w for w in insecure) and any("--ca-certs /ca.pem is ignored" in w for w in insecure)
    clear = connection_warnings(ConnectionOptions(url="http://h:9200", username="u", password="p"))
    assert clear == ["basic-auth credentials are sent unencrypted over http://; use an https:// URL"]
    assert connection_warnings(ConnectionOptions(url="http://u:p@h:9200", username=None, password=None)) == clear


def test_the_cli_warns_once_and_never_prints_the_password(tmp_path):
    from mlsync.cli import main

    ca = tmp_path / "ca.pem"
    ca.write_text("not really a CA\n")
    url = _refused_url("admin:s3cr3t-pw")
    result = CliRunner().invoke(main, ["unlock", "--stack", "s", "--url", url, "--ca-certs", str(ca),
                                       "--retry-deadline", "0"], env={"OPENSEARCH_USERNAME": "",
                                                                       "OPENSEARCH_PASSWORD": ""})
    out = result.stderr
    assert result.exit_code == 1
    assert "s3cr3t-pw" not in out
    assert out.count("basic-auth credentials are sent unencrypted") == 1
    assert out.count("--ca-certs") == 1 and "http://***@127.0.0.1" in out
