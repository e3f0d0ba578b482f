"""A loopback fault-injecting HTTP proxy in front of the real OpenSearch node (issue 10, the campaign).

``FaultProxy(upstream="http://127.0.0.1:9200", rate=0.10, seed=7).start()`` listens on 127.0.0.1
(a random port; ``proxy.url``) and forwards every request to the node, except that, with probability
``rate`` per request (a seeded ``random.Random``, so a seed replays the same decisions for the same
request sequence), it injects one fault of these kinds (``FAULTS``):

- ``500`` / ``502`` / ``503``: an OpenSearch-shaped error body, the request NOT forwarded;
- ``429``: ``es_rejected_execution_exception`` (OpenSearch's body) with ``Retry-After: 1``, not forwarded;
- ``reset``: the client's socket is reset (RST) before anything is forwarded;
- ``drop``: the request IS forwarded, the node does the work, its answer is read and thrown away,
  and the client's socket is closed without a response (the lost-answer case the journal resolves);
- ``latency``: the request is held 1-2 s, then forwarded normally.

``script`` forces a fault on chosen requests (deterministic tests). Faults are bounded: at most ``max_faults`` in all, only while ``active`` is true and before
``until`` (a ``time.monotonic()`` deadline, when given). Every request is counted (``requests``,
``log`` of ``(method, path, fault)``), every fault too (``faults``). ``on_request(method, path,
body, stage)`` is an optional hook called with ``stage="before"`` (before forwarding) and
``"after"`` (the node answered, before the client gets it): the SIGKILL campaign kills the
``mlsync apply`` process from it; a hook that returns ``"block"`` at ``"before"`` has the request
reset without forwarding it, one that returns a fault kind has that fault injected. Only loopback upstreams are accepted.

Runs on the standard library only (``http.server`` + ``http.client``); nothing here imports mlsync.
"""

from __future__ import annotations

import http.client
import http.server
import ipaddress
import json
import random
import re
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Optional
from urllib.parse import urlsplit

from helpers import serve_in_background, stop_server

FAULTS = ("500", "502", "503", "429", "reset", "drop", "latency")

#: Headers that belong to one hop and are not forwarded (RFC 9110 §7.6.1), plus the ones the proxy sets.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                        "transfer-encoding", "upgrade", "content-length", "host"})

#: OpenSearch-shaped error bodies (`{"error": {"root_cause": [...], "type", "reason"}, "status"}`).
ERROR_BODIES = {
    500: ("exception", "injected fault: internal server error"),
    502: ("bad_gateway", "injected fault: bad gateway"),
    503: ("cluster_block_exception", "injected fault: blocked by: [SERVICE_UNAVAILABLE/2/no cluster-manager];"),
    429: ("es_rejected_execution_exception",
          "injected fault: rejected execution of coordinating operation [shard_detail=[mlsync][0][P], "
          "shard_coordinating_and_primary_bytes=0, shard_operation_bytes=0, shard_max_coordinating_and_primary_bytes=0]"),
}


def error_body(status: int) -> bytes:
    kind, reason = ERROR_BODIES[status]
    cause = {"type": kind, "reason": reason}
    return json.dumps({"error": {"root_cause": [cause], **cause}, "status": status}).encode("utf-8")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass                                          # a reset or a client gone mid-answer is the point


@dataclass
class FaultProxy:
    upstream: str = "http://127.0.0.1:9200"
    rate: float = 0.0
    seed: int = 0
    faults: tuple = FAULTS                      # the kinds to choose from (uniformly)
    max_faults: int = 1_000_000
    until: Optional[float] = None               # time.monotonic() after which nothing is injected
    latency: tuple = (1.0, 2.0)
    on_request: Optional[Callable[[str, str, bytes, str], None]] = None
    #: Faults forced on given requests, each used once: [(method regex, path regex, fault), ...];
    #: the ``n``-th match is chosen by listing a rule ``n`` times with fault ``None`` first.
    script: list = field(default_factory=list)
    upstream_timeout: float = 120.0
    active: bool = True
    port: int = 0
    # -- counters (read them under `lock` or after `stop`)
    requests: int = 0
    injected: Counter = field(default_factory=Counter)
    log: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        parts = urlsplit(self.upstream)
        if parts.scheme != "http" or not parts.hostname or not _is_loopback(parts.hostname):
            raise ValueError(f"the fault proxy forwards only to a loopback http:// address, not {self.upstream!r}")
        self._up_host, self._up_port = parts.hostname, parts.port or 80
        unknown = set(self.faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {FAULTS}")
        self._rng = random.Random(self.seed)
        self._httpd: Optional[_QuietServer] = None

    # -- lifecycle
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "FaultProxy":
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"           # keep-alive, as urllib3 expects

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _handle(self) -> None:
                proxy._serve(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _handle  # noqa: N815

        self._httpd, _ = serve_in_background(_QuietServer(("127.0.0.1", self.port), Handler), "fault-proxy")
        self.port = self._httpd.server_address[1]
        return self

    def stop(self) -> None:
        self._httpd = stop_server(self._httpd)

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- counters
    def reset_counts(self) -> None:
        with self.lock:
            self.requests = 0
            self.injected.clear()
            self.log.clear()

    def snapshot(self) -> dict:
        with self.lock:
            return {"requests": self.requests, "faults": dict(self.injected), "fault_total": sum(self.injected.values())}

    # -- one request
    def _decide(self, method: str = "", path: str = "") -> Optional[str]:
        with self.lock:
            self.requests += 1
            for i, (m, p, forced) in enumerate(self.script):
                if re.fullmatch(m, method) and re.search(p, path.split("?")[0]):
                    del self.script[i]
                    if forced is not None:
                        self.injected[forced] += 1
                    return forced
            roll = self._rng.random()
            kind = self._rng.choice(self.faults)      # drawn every time, so a seed's sequence is stable
            if not self.active or roll >= self.rate or sum(self.injected.values()) >= self.max_faults:
                return None
            if self.until is not None and time.monotonic() >= self.until:
                return None
            self.injected[kind] += 1
            return kind

    def _serve(self, h: http.server.BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        fault = self._decide(h.command, h.path)
        with self.lock:
            self.log.append((h.command, h.path, fault))
        if self.on_request is not None:
            asked = self.on_request(h.command, h.path, body, "before")
            if asked == "block":
                self._reset(h)                        # the hook asked that the node never sees it
                return
            if asked in FAULTS:
                fault = asked
                with self.lock:
                    self.injected[asked] += 1
        if fault in ("500", "502", "503", "429"):
            status = int(fault)
            payload = error_body(status)
            h.send_response(status)
            h.send_header("Content-Type", "application/json; charset=UTF-8")
            h.send_header("Content-Length", str(len(payload)))
            if status == 429:
                h.send_header("Retry-After", "1")
            h.end_headers()
            h.wfile.write(payload)
            return
        if fault == "reset":
            self._reset(h)
            return
        if fault == "latency":
            with self.lock:
                delay = self._rng.uniform(*self.latency)
            time.sleep(delay)
        status, reason, headers, data = self._forward(h, body)
        if self.on_request is not None:
            self.on_request(h.command, h.path, body, "after")
        if fault == "drop":
            self._reset(h)
            return
        h.send_response(status, reason)
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP:
                h.send_header(name, value)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)

    def _forward(self, h: http.server.BaseHTTPRequestHandler, body: bytes) -> tuple:
        conn = http.client.HTTPConnection(self._up_host, self._up_port, timeout=self.upstream_timeout)
        try:
            headers = {k: v for k, v in h.headers.items() if k.lower() not in HOP_BY_HOP}
            headers["Host"] = f"{self._up_host}:{self._up_port}"
            conn.request(h.command, h.path, body=body if body or h.command in ("POST", "PUT") else None,
                         headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, resp.reason, resp.getheaders(), data
        except OSError as exc:
            payload = json.dumps({"error": {"type": "proxy_upstream_error", "reason": str(exc)}, "status": 502})
            return 502, "Bad Gateway", [("Content-Type", "application/json")], payload.encode()
        finally:
            conn.close()

    @staticmethod
    def _reset(h: http.server.BaseHTTPRequestHandler) -> None:
        """Close the client's connection with a TCP reset and no answer."""
        h.close_connection = True
        try:
            h.wfile.flush()
        except OSError:
            pass
        try:
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.connection.close()
        except OSError:
            pass
