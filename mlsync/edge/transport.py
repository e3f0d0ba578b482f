"""How mlsync reaches OpenSearch: connection options, the two opensearch-py clients and the one
place a request is made, so that counting, secret handling and error translation happen once.

- Every HTTP attempt (retries included) is counted by a connection subclass (`requests_made`).
- Request bodies may hold `Secret` values: they are revealed only by the JSON serializer while the
  request is being encoded, request bodies are never logged, and a server error message that
  echoes a secret is masked before it reaches a `ClusterError`.
- Calls that create something go through `client_once`, with retries switched off: a timeout or
  reset surfaces as an ambiguous `ClusterError` (status None) and the executor re-observes before
  it re-sends. Everything else goes through `client`, which opensearch-py may retry.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

from opensearchpy import JSONSerializer, OpenSearch, RequestsHttpConnection, Urllib3HttpConnection
from opensearchpy.exceptions import (
    ConnectionError as OSConnectionError,
    ConnectionTimeout,
    ImproperlyConfigured,
    OpenSearchException,
    SerializationError,
    SSLError,
    TransportError,
)

from mlsync.core.errors import ClusterError
from mlsync.core.secrets import MASK, Secret

log = logging.getLogger(__name__)
_os_log = logging.getLogger("opensearch")            # opensearch-py's own request logger
_os_tracer = logging.getLogger("opensearchpy.trace")  # opensearch-py's curl tracer

POOL_MAXSIZE = 32                 # kept-alive connections per host; more than any --parallelism in practice
DEFAULT_TIMEOUT = 30.0
DEFAULT_URL = "http://localhost:9200"


# --------------------------------------------------------------------------- connection options


def _env(name: str) -> Optional[str]:
    value = os.environ.get(name)
    return value if value else None


@dataclass
class ConnectionOptions:
    """How to reach the cluster. Defaults come from OPENSEARCH_URL / OPENSEARCH_USERNAME / OPENSEARCH_PASSWORD."""

    url: str = field(default_factory=lambda: _env("OPENSEARCH_URL") or DEFAULT_URL)
    username: Optional[str] = field(default_factory=lambda: _env("OPENSEARCH_USERNAME"))
    password: Optional[Secret] = field(default_factory=lambda: (
        Secret(_env("OPENSEARCH_PASSWORD")) if _env("OPENSEARCH_PASSWORD") is not None else None))
    ca_certs: Optional[str] = None          # CA bundle for TLS verification
    insecure: bool = False                  # TLS is verified unless this is set
    aws_region: Optional[str] = None        # set: sign requests with AWS SigV4 (needs boto3: mlsync[aws])
    aws_service: str = "es"                 # "es" (managed domains) or "aoss" (serverless)
    timeout: float = DEFAULT_TIMEOUT        # per request, seconds

    def __post_init__(self) -> None:
        if self.password is not None and not isinstance(self.password, Secret):
            self.password = Secret(self.password)
        if self.aws_service not in ("es", "aoss"):
            raise ValueError(f"aws_service must be 'es' or 'aoss', not {self.aws_service!r}")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError("timeout must be positive")


# --------------------------------------------------------------------------- connections and serializer


class _Counter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def add(self) -> None:
        with self._lock:
            self.value += 1


class _SafeConnectionMixin:
    """Counts every HTTP attempt and never logs request bodies (they may hold revealed secrets)."""

    def __init__(self, *args: Any, mlsync_counter: Optional[_Counter] = None, **kwargs: Any) -> None:
        self._mlsync_counter = mlsync_counter
        super().__init__(*args, **kwargs)

    def perform_request(self, *args: Any, **kwargs: Any) -> Any:
        if self._mlsync_counter is not None:
            self._mlsync_counter.add()
        return super().perform_request(*args, **kwargs)  # type: ignore[misc]

    def _log_request_response(self, body: Any, response: Any) -> None:
        if _os_log.isEnabledFor(logging.DEBUG):
            _os_log.debug("> (request body not logged: %d bytes)", len(body) if body else 0)
            _os_log.debug("< (response body not logged: %d chars)", len(response) if response else 0)

    def _log_trace(self, method: str, path: str, body: Any, status_code: Any, response: Any,
                   duration: Any) -> None:
        if _os_tracer.isEnabledFor(logging.INFO) and _os_tracer.handlers:
            _os_tracer.info("%s %s [status:%s] (body not logged)", method, path, status_code)


class _Urllib3Connection(_SafeConnectionMixin, Urllib3HttpConnection):
    pass


class _RequestsConnection(_SafeConnectionMixin, RequestsHttpConnection):
    pass


class _SecretRevealingSerializer(JSONSerializer):
    """Encodes `Secret` values as their clear text: the only place a request reveals them."""

    def default(self, data: Any) -> Any:
        if isinstance(data, Secret):
            return data.reveal()
        return super().default(data)


def _secrets_in(body: Any) -> list[str]:
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, Secret):
            revealed = value.reveal()
            if revealed:
                found.append(revealed)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    walk(body)
    return sorted(set(found), key=len, reverse=True)


def _mask(text: str, secrets: Iterable[str]) -> str:
    for value in secrets:
        text = text.replace(value, MASK)
    return text


# --------------------------------------------------------------------------- error translation

_ERRNO = re.compile(r"\[Errno -?\d+\] [^'\")\]]+")


def _connection_detail(exc: OSConnectionError) -> str:
    """The useful part of a connection failure ("[Errno 111] Connection refused"), not a repr chain."""
    seen: set[int] = set()
    stack: list[Any] = [exc.info, exc]
    while stack:
        cur = stack.pop()
        if cur is None or id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.strerror:
            return f"[Errno {cur.errno}] {cur.strerror}" if cur.errno is not None else cur.strerror
        for attr in ("reason", "__cause__", "__context__"):
            stack.append(getattr(cur, attr, None))
    text = str(exc.error if isinstance(exc.error, str) else exc)
    match = _ERRNO.search(text)
    if match:
        return match.group(0).strip()
    return text[:300]


def _http_reason(exc: TransportError) -> tuple[str, Optional[str]]:
    """(reason, type) from an OpenSearch error body: the root cause first, ML Commons' own format too."""
    info = exc.info
    if isinstance(info, dict):
        err = info.get("error")
        if isinstance(err, dict):
            causes = err.get("root_cause")
            first = causes[0] if isinstance(causes, list) and causes and isinstance(causes[0], dict) else err
            reason = first.get("reason") or err.get("reason")
            etype = first.get("type") or err.get("type")
            details = err.get("details")  # ML Commons' ErrorMessage: {"reason": "Invalid Request", "details": ...}
            if details and details != reason:
                reason = f"{reason}: {details}" if reason else str(details)
            if reason:
                return str(reason), (str(etype) if etype else None)
        elif isinstance(err, str) and err:
            return err, None
        if info.get("message"):
            return str(info["message"]), None
        if info.get("result"):
            return f"result {info['result']}", None
    if isinstance(info, (str, bytes)) and info:
        text = info.decode("utf-8", "replace") if isinstance(info, bytes) else info
        return text.strip()[:500], None
    return str(exc.error or "unknown error"), None


def _translate(exc: BaseException, operation: str, resource: str, url: str, timeout: Optional[float],
               secrets: Iterable[str] = ()) -> ClusterError:
    secrets = list(secrets)
    if isinstance(exc, ConnectionTimeout):
        after = f" after {timeout:g}s" if timeout else ""
        return ClusterError(operation, resource, None,
                            f"no response from {url}{after} (timed out; the request may or may not have taken effect)",
                            "timeout")
    if isinstance(exc, SSLError):
        return ClusterError(operation, resource, None, f"TLS error talking to {url}: {_connection_detail(exc)}",
                            "ssl_error")
    if isinstance(exc, OSConnectionError):
        return ClusterError(operation, resource, None, f"cannot connect to {url}: {_connection_detail(exc)}",
                            "connection_error")
    if isinstance(exc, TransportError):
        status = exc.status_code if isinstance(exc.status_code, int) else None
        reason, etype = _http_reason(exc)
        return ClusterError(operation, resource, status, _mask(reason, secrets), etype)
    if isinstance(exc, SerializationError):
        return ClusterError(operation, resource, None, _mask(f"could not encode or decode a message: {exc}", secrets),
                            "serialization_error")
    return ClusterError(operation, resource, None, _mask(str(exc), secrets), type(exc).__name__)


def is_index_missing(err: ClusterError) -> bool:
    """The ML index (or the state index) does not exist yet: nothing there. Usually a 404, but some
    ML handlers report it as a 500 (e.g. deleting a connector before any connector was created)."""
    return err.status is not None and (
        err.error_type == "index_not_found_exception" or "no such index" in (err.reason or ""))


# --------------------------------------------------------------------------- the transport


class Transport:
    """The two opensearch-py clients of one cluster and the one place requests are made (`call`).

    Idempotent calls (reads, updates, deletes, deploys, chunk uploads) use `client`, which
    opensearch-py retries on connection errors and 502/503/504; calls that create something use
    `client_once`, never retried."""

    def __init__(self, options: ConnectionOptions, *, max_retries: int = 2) -> None:
        self.options = options
        self._counter = _Counter()
        kwargs = self._client_kwargs()
        self.client = self._build(kwargs, max_retries=max_retries)
        self.client_once = self._build(kwargs, max_retries=0)

    @property
    def requests_made(self) -> int:
        """HTTP requests sent so far (every attempt, retries included)."""
        return self._counter.value

    def call(self, operation: str, resource: str, fn: Callable[[], Any], body: Any = None) -> Any:
        """fn(), with any opensearch-py failure turned into a `ClusterError` naming `operation` and
        `resource`; secrets in `body` are masked out of the server's message."""
        log.debug("%s %s", operation, resource)
        try:
            return fn()
        except (OpenSearchException, ImproperlyConfigured) as exc:
            # built here and raised below, outside the except block: no chained opensearch-py
            # traceback (whose frames hold the encoded request) travels with the error
            err = _translate(exc, operation, resource, self.options.url, self.options.timeout, _secrets_in(body))
        raise err

    def close(self) -> None:
        for client in (self.client, self.client_once):
            try:
                client.close()
            except Exception:  # noqa: BLE001 — closing is best effort
                pass

    # -- construction
    def _client_kwargs(self) -> dict[str, Any]:
        opts = self.options
        kwargs: dict[str, Any] = {
            "hosts": [opts.url],
            "timeout": opts.timeout,
            "serializer": _SecretRevealingSerializer(),
            "mlsync_counter": self._counter,
            "connection_class": _Urllib3Connection,
            # urllib3 keeps 1 connection by default: an apply's parallel workers and its task poller
            # then reconnect on every request ("Connection pool is full, discarding connection").
            "pool_maxsize": POOL_MAXSIZE,
            "retry_on_timeout": False,
            "sniff_on_start": False,
            "sniff_on_connection_fail": False,
        }
        if opts.url.lower().startswith("https://"):
            kwargs["verify_certs"] = not opts.insecure
            kwargs["ssl_show_warn"] = not opts.insecure
            if opts.ca_certs and not opts.insecure:
                kwargs["ca_certs"] = opts.ca_certs
        if opts.aws_region:
            if opts.username:
                raise ClusterError("connect", opts.url, None,
                                   "give either a username/password or AWS SigV4 (--aws-region), not both",
                                   "configuration_error")
            kwargs["http_auth"] = self._aws_auth()
            kwargs["connection_class"] = _RequestsConnection
        elif opts.username:
            kwargs["http_auth"] = (opts.username, opts.password.reveal() if opts.password else "")
        return kwargs

    def _aws_auth(self) -> Any:
        opts = self.options
        try:
            import boto3  # noqa: PLC0415 — optional extra, imported only when SigV4 is asked for
        except ImportError:
            raise ClusterError("connect", opts.url, None,
                               "AWS SigV4 signing needs boto3, which is not installed: pip install mlsync[aws]",
                               "configuration_error") from None
        from opensearchpy import RequestsAWSV4SignerAuth  # noqa: PLC0415

        credentials = boto3.Session().get_credentials()
        if credentials is None:
            raise ClusterError("connect", opts.url, None,
                               "no AWS credentials found in the standard chain (environment, profile, instance role)",
                               "configuration_error")
        return RequestsAWSV4SignerAuth(credentials, opts.aws_region, opts.aws_service)

    def _build(self, kwargs: dict[str, Any], *, max_retries: int) -> OpenSearch:
        try:
            return OpenSearch(max_retries=max_retries, **kwargs)
        except (ImproperlyConfigured, ValueError) as exc:
            err = ClusterError("connect", self.options.url, None, str(exc), "configuration_error")
        raise err


class UsesTransport:
    """What the reads, the ML calls and the state document share: a `Transport` (`_transport`,
    set by `Cluster`), its two clients and its one `_call`."""

    _transport: Transport

    def _call(self, operation: str, resource: str, fn: Callable[[], Any], body: Any = None) -> Any:
        return self._transport.call(operation, resource, fn, body)

    @property
    def _client(self) -> OpenSearch:
        return self._transport.client

    @property
    def _client_once(self) -> OpenSearch:
        return self._transport.client_once

    @property
    def _ml(self) -> Any:
        return self._client.plugins.ml

    @property
    def _ml_once(self) -> Any:
        return self._client_once.plugins.ml
