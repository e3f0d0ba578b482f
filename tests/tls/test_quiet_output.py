"""Quiet output: the server's `Warning` headers (the node sends "this request accesses system indices ..."
on the refresh of the ML indices that every plan starts with) never reach the terminal as Python
warnings; they go to mlsync's debug log."""

from __future__ import annotations

import http.server
import json
import logging
import threading
import uuid
import warnings

import pytest

from mlsync.edge.transport import ConnectionOptions, Transport

SYSTEM_INDEX_WARNING = ('299 OpenSearch-2.19.6-97d3c13bf22a4a72ac11dc503fe44c97662b9161 "this request accesses '
                        'system indices: [.plugins-ml-model], but in a future major version, direct access to '
                        'system indices will be prevented by default"')


@pytest.fixture
def warning_server():
    """A loopback HTTP server answering every request with `{}`-ish JSON and the node's Warning header."""
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            body = json.dumps({"version": {"number": "2.19.6", "distribution": "opensearch"}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Warning", SYSTEM_INDEX_WARNING)
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET  # noqa: N815

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _call_recording(transport: Transport, fn):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        result = transport.call("read", "test", fn)
    return result, [str(w.message) for w in seen]


def test_a_server_warning_header_goes_to_the_debug_log_not_to_warnings(warning_server, caplog):
    transport = Transport(ConnectionOptions(url=warning_server))
    with caplog.at_level(logging.DEBUG, logger="mlsync.edge.transport"):
        result, seen = _call_recording(transport, lambda: transport.client.info())
    assert result["version"]["number"] == "2.19.6"
    assert seen == []
    assert any("accesses system indices" in r.getMessage() for r in caplog.records)


@pytest.mark.cluster
def test_the_real_nodes_system_index_warning_on_the_ml_refresh_stays_off_the_terminal(os_client, caplog):
    """The node sends the warning once per X-Opaque-Id (it deduplicates deprecation warnings), so a fresh
    id makes it send it again: the refresh mlsync's observe() starts with."""
    import os

    transport = Transport(ConnectionOptions(url=os.environ.get("OPENSEARCH_URL", "http://127.0.0.1:9200")))
    opaque = {"X-Opaque-Id": f"mlsync-test-{uuid.uuid4().hex}"}
    with caplog.at_level(logging.DEBUG, logger="mlsync.edge.transport"):
        _, seen = _call_recording(transport, lambda: transport.client.indices.refresh(
            index=".plugins-ml-model,.plugins-ml-connector,.plugins-ml-model-group", ignore_unavailable=True,
            allow_no_indices=True, headers=opaque))
    assert seen == []
    assert any("this request accesses system indices" in r.getMessage() for r in caplog.records)
