"""mlsync.edge.cluster without a cluster: connection failures, error translation, options, paging logic."""

from __future__ import annotations

import socket
import sys
import threading
import time

import pytest
from opensearchpy.exceptions import TransportError

from mlsync.edge.cluster import Cluster, ConnectionOptions
from mlsync.edge.transport import _RequestsConnection, _SecretRevealingSerializer, _translate
from mlsync.core.errors import ClusterError
from mlsync.core.secrets import Secret


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_refused_is_a_cluster_error_without_status():
    url = f"http://127.0.0.1:{_free_port()}"     # nothing listens there
    cluster = Cluster.connect(ConnectionOptions(url=url, timeout=2))
    with pytest.raises(ClusterError) as exc:
        cluster.get_model("abc")
    err = exc.value
    assert err.status is None and err.error_type == "connection_error" and err.ambiguous
    assert err.operation == "get model" and err.resource == "abc"
    assert f"cannot connect to {url}" in err.reason and "Connection refused" in err.reason
    assert "Traceback" not in str(err) and "HTTPConnection object" not in str(err)
    assert err.__cause__ is None and err.__context__ is None
    # reads are retried (2 retries = 3 attempts); every attempt is counted
    assert cluster.requests_made == 3
    # creates are never retried: the executor decides after re-observing
    with pytest.raises(ClusterError) as exc:
        cluster.create_group({"name": "g"})
    assert exc.value.status is None and cluster.requests_made == 4
    with pytest.raises(ClusterError):
        cluster.observe()


def test_timeout_is_ambiguous_and_not_retried_for_creates():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted = []
    stop = threading.Event()

    def accept_and_hang():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                accepted.append(conn)            # never answer
            except OSError:
                pass

    thread = threading.Thread(target=accept_and_hang, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        cluster = Cluster.connect(ConnectionOptions(url=url, timeout=0.3))
        start = time.monotonic()
        with pytest.raises(ClusterError) as exc:
            cluster.register_model({"name": "m", "function_name": "remote", "connector_id": "c"})
        assert time.monotonic() - start < 5
        err = exc.value
        assert err.status is None and err.error_type == "timeout" and err.ambiguous
        assert "timed out" in err.reason and "0.3s" in err.reason
        assert cluster.requests_made == 1
    finally:
        stop.set()
        thread.join(2)
        for conn in accepted:
            conn.close()
        listener.close()


def test_translate_prefers_root_cause_and_masks_echoed_secrets():
    exc = TransportError(400, "illegal_argument_exception", {
        "error": {"root_cause": [{"type": "illegal_argument_exception", "reason": "bad key hunter2 here"}],
                  "type": "x_content_parse_exception", "reason": "outer wrapper"},
        "status": 400})
    err = _translate(exc, "create connector", '"c"', "http://h:9200", 30, ["hunter2"])
    assert (err.status, err.error_type) == (400, "illegal_argument_exception")
    assert err.reason == "bad key (sensitive) here"
    assert str(err) == 'create connector "c": HTTP 400: bad key (sensitive) here'

    ml_style = TransportError(400, "IllegalArgumentException", {
        "error": {"reason": "Invalid Request", "details": "model name is null", "type": "IllegalArgumentException"},
        "status": 400})
    err = _translate(ml_style, "register model", "(unnamed)", "u", 30)
    assert err.reason == "Invalid Request: model name is null" and err.error_type == "IllegalArgumentException"

    no_handler = TransportError(400, "no handler found for uri [/x] and method [GET]",
                                {"error": "no handler found for uri [/x] and method [GET]", "status": 400})
    assert _translate(no_handler, "read", "x", "u", 30).reason.startswith("no handler found")

    text = TransportError(502, "Bad Gateway", "<html>Bad Gateway</html>")
    err = _translate(text, "read", "x", "u", 30)
    assert err.status == 502 and err.reason == "<html>Bad Gateway</html>" and err.ambiguous


def test_serializer_reveals_secrets_only_when_encoding():
    body = {"credential": {"api_key": Secret("k1")}, "list": [Secret("k2"), 1]}
    assert _SecretRevealingSerializer().dumps(body) == '{"credential":{"api_key":"k1"},"list":["k2",1]}'
    assert "k1" not in repr(body) and "k1" not in str(body)


def test_connection_options_defaults_from_environment(monkeypatch):
    monkeypatch.setenv("OPENSEARCH_URL", "https://search.example.com:9443")
    monkeypatch.setenv("OPENSEARCH_USERNAME", "admin")
    monkeypatch.setenv("OPENSEARCH_PASSWORD", "pw-123")
    opts = ConnectionOptions()
    assert opts.url == "https://search.example.com:9443" and opts.username == "admin"
    assert isinstance(opts.password, Secret) and opts.password.reveal() == "pw-123"
    assert "pw-123" not in repr(opts)
    assert opts.insecure is False
    for name in ("OPENSEARCH_URL", "OPENSEARCH_USERNAME", "OPENSEARCH_PASSWORD"):
        monkeypatch.delenv(name)
    opts = ConnectionOptions()
    assert (opts.url, opts.username, opts.password) == ("http://localhost:9200", None, None)
    with pytest.raises(ValueError):
        ConnectionOptions(aws_service="s3")


def test_tls_is_verified_unless_insecure():
    c = Cluster(ConnectionOptions(url="https://127.0.0.1:1", username="u", password="p"))
    conn = c._client.transport.connection_pool.connections[0]
    assert conn.use_ssl and conn.pool.cert_reqs == "CERT_REQUIRED"
    c = Cluster(ConnectionOptions(url="https://127.0.0.1:1", insecure=True))
    conn = c._client.transport.connection_pool.connections[0]
    assert conn.pool.cert_reqs == "CERT_NONE"


def test_aws_sigv4_uses_requests_signer(monkeypatch):
    pytest.importorskip("boto3")
    from opensearchpy import RequestsAWSV4SignerAuth

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-example")
    c = Cluster(ConnectionOptions(url="https://search-x.us-east-1.es.amazonaws.com", aws_region="us-east-1",
                                  aws_service="aoss"))
    conn = c._client.transport.connection_pool.connections[0]
    assert isinstance(conn, _RequestsConnection)
    assert isinstance(conn.session.auth, RequestsAWSV4SignerAuth) and conn.session.auth.service == "aoss"


def test_aws_without_boto3_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "boto3", None)     # import boto3 -> ImportError
    with pytest.raises(ClusterError) as exc:
        Cluster(ConnectionOptions(url="https://x.example.com", aws_region="eu-west-1"))
    assert "pip install mlsync[aws]" in str(exc.value) and exc.value.status is None


class _FakeSearch:
    """A search endpoint over `docs` (dicts with _id, created_time, _seq_no) honouring sort/search_after."""

    def __init__(self, docs, refuse_id_sort=False):
        self.docs, self.refuse_id_sort, self.bodies = docs, refuse_id_sort, []

    def __call__(self, body):
        self.bodies.append(body)
        keys = [next(iter(s)) for s in body["sort"]]
        if self.refuse_id_sort and "_id" in keys:
            raise TransportError(500, "status_exception", {
                "error": {"root_cause": [{"type": "status_exception", "reason": "Fail to search"}]}, "status": 500})
        ordered = sorted(self.docs, key=lambda d: tuple(d[k] for k in keys))
        if "search_after" in body:
            ordered = [d for d in ordered if tuple(d[k] for k in keys) > tuple(body["search_after"])]
        page = ordered[: body["size"]]
        return {"hits": {"hits": [{"_id": d["_id"], "_seq_no": d["_seq_no"], "_primary_term": 1,
                                   "_source": {"n": d["_id"]}, "sort": [d[k] for k in keys]} for d in page]}}


@pytest.mark.parametrize("refuse", [False, True])
def test_search_all_pages_with_ties_and_falls_back_to_seq_no(refuse):
    # many docs share a created_time: the tiebreaker must keep the paging exact
    docs = [{"_id": f"id{i:03d}", "created_time": 1000 + i // 4, "_seq_no": 500 - i} for i in range(23)]
    fake = _FakeSearch(docs, refuse_id_sort=refuse)
    cluster = Cluster(ConnectionOptions(url="http://127.0.0.1:1"), page_size=5)
    hits = cluster._search_all("model", lambda body: fake(body), {"match_all": {}})
    assert sorted(h["_id"] for h in hits) == sorted(d["_id"] for d in docs)
    assert len(hits) == 23
    assert len(fake.bodies) == 5 + (1 if refuse else 0)    # 5,5,5,5,3 (+ the refused first try)
    assert cluster._tiebreak == ("_seq_no" if refuse else "_id")
    assert all(b["track_total_hits"] is False and b["seq_no_primary_term"] is True for b in fake.bodies)


class _RaisingML:
    """Stands in for `client.plugins.ml`: every call raises the given TransportError."""

    def __init__(self, exc):
        self.exc, self.calls = exc, 0

    def __getattr__(self, name):
        def call(**kwargs):
            self.calls += 1
            raise self.exc
        return call


def _err(status, etype, reason):
    return TransportError(status, etype, {"error": {"root_cause": [{"type": etype, "reason": reason}],
                                                    "type": etype, "reason": reason}, "status": status})


@pytest.mark.parametrize("exc, tolerated", [
    (_err(404, "status_exception", "Failed to find model"), True),
    (_err(500, "illegal_state_exception", "Model is not all cleaned up, please try again. Model ID: m1"), True),
    (_err(404, "index_not_found_exception", "no such index [.plugins-ml-model]"), True),
    (_err(400, "status_exception", "Model cannot be deleted in deploying or deployed state."), False),
    (_err(500, "m_l_exception", "something else"), False),
])
def test_delete_model_tolerates_only_already_gone(monkeypatch, exc, tolerated):
    cluster = Cluster(ConnectionOptions(url="http://127.0.0.1:1"))
    monkeypatch.setattr(Cluster, "_ml", property(lambda self: _RaisingML(exc)))
    if tolerated:
        cluster.delete_model("m1")
    else:
        with pytest.raises(ClusterError) as info:
            cluster.delete_model("m1")
        assert info.value.status == exc.status_code


def test_delete_group_retries_409_then_gives_up(monkeypatch):
    ml = _RaisingML(_err(409, "status_exception", "Cannot delete the model group when it has associated model versions"))
    cluster = Cluster(ConnectionOptions(url="http://127.0.0.1:1"), delete_group_retry_seconds=0.8)
    monkeypatch.setattr(Cluster, "_ml", property(lambda self: ml))
    start = time.monotonic()
    with pytest.raises(ClusterError) as info:
        cluster.delete_group("g1")
    assert info.value.status == 409 and "associated model versions" in info.value.reason
    assert ml.calls >= 3 and time.monotonic() - start < 2


def test_delete_group_waits_until_no_chunk_document_is_left_before_asking(monkeypatch):
    # Each refused group delete has ML Commons 2.19 fetch up to 10 of the group's docs with their whole
    # source: ten 10 MB chunks of a just-deleted upload ran the shared 1 GB-heap node out of memory.
    class ML:
        def __init__(self):
            self.log, self.counts = [], [3, 1, 0]

        def search_models(self, body):
            assert body["size"] == 0 and {"exists": {"field": "chunk_number"}} in body["query"]["bool"]["filter"]
            self.log.append("count")
            return {"hits": {"total": {"value": self.counts.pop(0)}, "hits": []}}

        def delete_model_group(self, model_group_id):
            self.log.append("delete")
            return {"result": "deleted"}
    ml = ML()
    cluster = Cluster(ConnectionOptions(url="http://127.0.0.1:1"), delete_group_retry_seconds=10)
    monkeypatch.setattr(Cluster, "_ml", property(lambda self: ml))
    cluster.delete_group("g1")
    assert ml.log == ["count", "count", "count", "delete"]


def test_missing_index_reads_as_empty(monkeypatch):
    ml = _RaisingML(_err(404, "index_not_found_exception", "no such index [.plugins-ml-task]"))
    cluster = Cluster(ConnectionOptions(url="http://127.0.0.1:1"))
    monkeypatch.setattr(Cluster, "_ml", property(lambda self: ml))
    monkeypatch.setattr(Cluster, "_refresh_ml_indices", lambda self: None)   # nothing listens at that port
    assert cluster.search_tasks(["t1"]) == {}
    assert cluster.find_models("m", None) == {}
    cluster.delete_connector("c1")


def test_the_connection_pool_keeps_a_connection_per_parallel_worker():
    # urllib3's default of 1 made every parallel request of an apply open a new connection.
    c = Cluster(ConnectionOptions(url="http://127.0.0.1:1"))
    conn = c._client.transport.connection_pool.connections[0]
    assert conn.pool.pool.maxsize >= 16      # the urllib3 pool's queue of idle connections
