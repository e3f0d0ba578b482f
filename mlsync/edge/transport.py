"""How mlsync reaches OpenSearch: connection options, the two opensearch-py clients and the one
place a request is made, so that counting, secret handling and error translation happen once.

- Every HTTP attempt (retries included) is counted by a connection subclass (`requests_made`).
- Request bodies may hold `Secret` values: they are revealed only by the JSON serializer while the
  request is being encoded, request bodies are never logged, and a server error message that
  echoes a secret is masked before it reaches a `ClusterError`.
- Transient failures are retried here, in `call`, and nowhere in opensearch-py (its own retries are
  off): 429, 502, 503, 504 and connection errors, with exponential back-off, full jitter, the
  server's `Retry-After` honoured (capped) and one overall deadline per call
  (`ConnectionOptions.retry_deadline`; the policy is `mlsync.core.polling.RetryPolicy`). Timeouts are
  not retried (the request may still be running; a slow node gets no extra load).
- Calls that create something go through `client_once`: a timeout, reset or 5xx surfaces as an
  ambiguous `ClusterError` and the executor re-observes (the journal) before it re-sends. Only a 429
  is re-sent on that client: a rejected request did nothing (see `_retryable`).
- The password of a URL with user-info (`http://admin:pw@host`) never appears in an error, a log
  line or a repr: `redact_url` replaces the user-info with `***`.
"""

from __future__ import annotations

import logging
import os
import random as _random
import re
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit, urlunsplit
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
from mlsync.core.polling import (DEFAULT_RETRY_DEADLINE, RetriesExhausted, RetryPolicy, parse_retry_after,
                                 retry_call, retryable_status)
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
    retry_deadline: float = DEFAULT_RETRY_DEADLINE   # seconds one call may spend retrying transient faults (0: never)

    def __repr__(self) -> str:   # never the URL's password (the dataclass repr would show it)
        return (f"ConnectionOptions(url={redact_url(self.url)!r}, username={self.username!r}, "
                f"password={self.password!r}, ca_certs={self.ca_certs!r}, insecure={self.insecure!r}, "
                f"aws_region={self.aws_region!r}, aws_service={self.aws_service!r}, timeout={self.timeout!r}, "
                f"retry_deadline={self.retry_deadline!r})")

    def __post_init__(self) -> None:
        if self.password is not None and not isinstance(self.password, Secret):
            self.password = Secret(self.password)
        if self.aws_service not in ("es", "aoss"):
            raise ValueError(f"aws_service must be 'es' or 'aoss', not {self.aws_service!r}")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError("timeout must be positive")
        if self.retry_deadline is None or self.retry_deadline < 0:
            raise ValueError("retry_deadline must be zero (no retries) or positive")


# --------------------------------------------------------------------------- user-info and warnings

REDACTED = "***"
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@'\"]+@")


def redact_url(url: str) -> str:
    """The URL with any user-info replaced by `***` (`http://admin:pw@h:9200/x` -> `http://***@h:9200/x`)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return _USERINFO.sub(lambda m: m.group(1) + REDACTED + "@", url)
    if "@" not in parts.netloc:
        return _USERINFO.sub(lambda m: m.group(1) + REDACTED + "@", url)
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{REDACTED}@{host}"))


def _redact_text(text: str) -> str:
    """Any URL's user-info in a message (a library may echo the URL it was given) -> `***`."""
    return _USERINFO.sub(lambda m: m.group(1) + REDACTED + "@", text)


def _url_credentials(url: str) -> list[str]:
    """The password (and the user-info as written) of a URL, to mask wherever they might be echoed."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = []
    if parts.password:
        found += [parts.password, unquote(parts.password)]
    if "@" in parts.netloc:
        found.append(parts.netloc.rsplit("@", 1)[0])
    return [f for f in found if f]


def connection_warnings(options: ConnectionOptions) -> list[str]:
    """What is unsafe or ignored in these options, one sentence each, for the CLI to print on stderr
    once (mlsync replaces opensearch-py's per-request InsecureRequestWarning with this)."""
    out: list[str] = []
    try:
        parts = urlsplit(options.url)
        scheme, has_userinfo = parts.scheme.lower(), "@" in parts.netloc
    except ValueError:
        scheme, has_userinfo = "", False
    if options.insecure and scheme == "https":
        out.append("--insecure: the cluster's TLS certificate is not verified; anyone on the network path can "
                   "pose as the cluster and read the credentials sent to it")
    if options.insecure and options.ca_certs:
        out.append(f"--ca-certs {options.ca_certs} is ignored: --insecure turns certificate verification off")
    elif options.ca_certs and scheme == "http":
        out.append(f"--ca-certs {options.ca_certs} is ignored: the URL is http://, not https://")
    if options.insecure and scheme == "http":
        out.append("--insecure has no effect: the URL is http:// (no TLS at all)")
    if scheme == "http" and not options.aws_region and (options.username or has_userinfo):
        out.append("basic-auth credentials are sent unencrypted over http://; use an https:// URL")
    return out


# --------------------------------------------------------------------------- connections and serializer


class _Counter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def add(self) -> None:
        with self._lock:
            self.value += 1


class _SafeConnectionMixin:
    """Counts every HTTP attempt and never logs request bodies (they may hold revealed secrets).

    A failed attempt's exception is tagged for `Transport.call`: `mlsync_once` (sent by the client that
    must not re-send blindly), `mlsync_retry_after` (the response's Retry-After, seconds) and
    `mlsync_answered` (the server sent an HTTP response)."""

    def __init__(self, *args: Any, mlsync_counter: Optional[_Counter] = None, mlsync_once: bool = False,
                 **kwargs: Any) -> None:
        self._mlsync_counter = mlsync_counter
        self._mlsync_once = mlsync_once
        self._mlsync_local = threading.local()     # the failed response's headers, per thread
        super().__init__(*args, **kwargs)
        session = getattr(self, "session", None)   # requests (SigV4): its hook sees every response
        if session is not None and hasattr(session, "hooks"):
            session.hooks.setdefault("response", []).append(self._mlsync_keep_headers)

    def _mlsync_keep_headers(self, response: Any, *args: Any, **kwargs: Any) -> Any:
        self._mlsync_local.headers = {k.lower(): v for k, v in response.headers.items()}
        return response

    def get_response_headers(self, response: Any) -> Any:   # urllib3: called before raising for a status
        headers = super().get_response_headers(response)  # type: ignore[misc]
        self._mlsync_local.headers = headers
        return headers

    def perform_request(self, *args: Any, **kwargs: Any) -> Any:
        if self._mlsync_counter is not None:
            self._mlsync_counter.add()
        self._mlsync_local.headers = None
        try:
            return super().perform_request(*args, **kwargs)  # type: ignore[misc]
        except OpenSearchException as exc:
            headers = self._mlsync_local.headers or {}
            exc.mlsync_once = self._mlsync_once  # type: ignore[attr-defined]
            exc.mlsync_retry_after = parse_retry_after(headers.get("retry-after"))  # type: ignore[attr-defined]
            exc.mlsync_answered = isinstance(exc, TransportError) and isinstance(exc.status_code, int)  # type: ignore[attr-defined]
            raise

    def _raise_warnings(self, warning_headers: Any) -> None:
        """The server's `Warning` headers (e.g. "this request accesses system indices" on the ML
        indices' refresh) go to mlsync's debug log, not through Python's `warnings` onto the terminal:
        they are addressed to whoever maintains mlsync, not to its user, and would print on every plan."""
        for header in warning_headers or ():
            log.debug("server warning: %s", header)

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
    """The ClusterError for an opensearch-py failure: the URL's user-info and every secret masked."""
    secrets = sorted(set(secrets) | set(_url_credentials(url)), key=len, reverse=True)
    err = _translate_raw(exc, operation, resource, redact_url(url), timeout)
    reason = _mask(_redact_text(err.reason), secrets)
    return ClusterError(err.operation, err.resource, err.status, reason, err.error_type,
                        retry_after=getattr(exc, "mlsync_retry_after", None))


def _translate_raw(exc: BaseException, operation: str, resource: str, url: str,
                   timeout: Optional[float]) -> ClusterError:
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
        return ClusterError(operation, resource, status, reason, etype)
    if isinstance(exc, SerializationError):
        return ClusterError(operation, resource, None, f"could not encode or decode a message: {exc}",
                            "serialization_error")
    return ClusterError(operation, resource, None, str(exc), type(exc).__name__)


def is_index_missing(err: ClusterError) -> bool:
    """The ML index (or the state index) does not exist yet: nothing there. Usually a 404, but some
    ML handlers report it as a 500 (e.g. deleting a connector before any connector was created)."""
    return err.status is not None and (
        err.error_type == "index_not_found_exception" or "no such index" in (err.reason or ""))


# --------------------------------------------------------------------------- the transport


class Transport:
    """The two opensearch-py clients of one cluster and the one place requests are made (`call`).

    Idempotent calls (reads, updates, deletes, deploys, chunk uploads, the conditional state write) use
    `client`; calls that create something use `client_once`. Neither is retried by opensearch-py:
    `call` retries transient failures itself (see the module docstring and `_retryable`).

    `max_retries`: re-sends of a connection failure before the cluster has ever answered (a wrong URL,
    a node that is not up) — fail fast there instead of retrying for the whole deadline; 0 switches
    every retry off. `clock`, `sleep` and `random` are injectable for tests."""

    def __init__(self, options: ConnectionOptions, *, max_retries: int = 2,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 random: Callable[[], float] = _random.random) -> None:
        self.options = options
        self.max_retries = max_retries
        self.retry_policy = RetryPolicy(deadline=options.retry_deadline if max_retries else 0.0)
        self._clock, self._sleep, self._random = clock, sleep, random
        self._answered = False          # the cluster has sent at least one HTTP response
        self._counter = _Counter()
        kwargs = self._client_kwargs()
        self.client = self._build(kwargs, once=False)
        self.client_once = self._build(kwargs, once=True)

    @property
    def requests_made(self) -> int:
        """HTTP requests sent so far (every attempt, retries included)."""
        return self._counter.value

    def call(self, operation: str, resource: str, fn: Callable[[], Any], body: Any = None, *,
             failures: Optional[list[ClusterError]] = None) -> Any:
        """fn(), with any opensearch-py failure turned into a `ClusterError` naming `operation` and
        `resource`; secrets in `body` are masked out of the server's message. Transient failures are
        retried under the policy (`_retryable`); when the deadline comes first, the last failure is
        raised, saying how many attempts were made. `failures` (if given) receives every failed
        attempt's error, in order: a conditional write uses it to tell "someone else wrote" from "our
        own earlier attempt landed"."""
        log.debug("%s %s", operation, resource)
        secrets = _secrets_in(body)
        sent = 0

        def attempt() -> Any:
            nonlocal sent
            sent += 1
            try:
                result = fn()
            except (OpenSearchException, ImproperlyConfigured) as exc:
                # built here and raised below, outside the except block: no chained opensearch-py
                # traceback (whose frames hold the encoded request) travels with the error
                err = _translate(exc, operation, resource, self.options.url, self.options.timeout, secrets)
                if getattr(exc, "mlsync_answered", False):
                    self._answered = True
                # never answered yet (a wrong URL, a node not up): only `max_retries` re-sends
                err._mlsync_retry = self._retryable(exc) and (  # type: ignore[attr-defined]
                    self._answered or sent <= self.max_retries)
            else:
                self._answered = True
                return result
            if failures is not None:
                failures.append(err)
            raise err

        def on_retry(exc: Exception, attempts: int, delay: float) -> None:
            log.info("%s %s: %s; retrying in %.1fs (attempt %d)", operation, resource,
                     getattr(exc, "reason", exc), delay, attempts + 1)

        try:
            return retry_call(attempt, transient=_verdict, policy=self.retry_policy, clock=self._clock,
                              sleep=self._sleep, random=self._random, on_retry=on_retry)
        except RetriesExhausted as out:
            last = out.last
            assert isinstance(last, ClusterError)
            if out.attempts == 1:      # retries are off (retry_deadline 0): the failure as it is
                err = last
            else:
                err = ClusterError(last.operation, last.resource, last.status,
                                   f"{last.reason} (gave up after {out.attempts} attempts in {out.elapsed:.1f}s)",
                                   last.error_type, retry_after=last.retry_after, attempts=out.attempts)
        raise err

    def _retryable(self, exc: BaseException) -> bool:
        """Whether a failed attempt may be sent again.

        - A timeout: no (the request may still be running; another copy only adds load).
        - TLS and configuration errors: no (asking again will not change them).
        - A connection error (refused, reset): yes on `client` (idempotent calls).
        - 429 / 502 / 503 / 504: yes on `client`.
        - On `client_once` (create connector or group, register, register_meta) only a 429: OpenSearch
          answers 429 when it *rejects* a request (es_rejected_execution_exception: the thread pool's
          queue was full, so the action never ran; circuit_breaking_exception: the request was refused
          before it allocated what it needed; a proxy's or AWS's throttling: never forwarded). ML
          Commons' create/register handlers answer only after the object's document was indexed, and a
          rejection of that index request fails the call with nothing created (a register may have
          bumped the group's latest_version, which names nothing). So a 429 is a refusal, and sending
          it again cannot make a second object. A 5xx, a reset or a timeout may hide a success: those
          are never re-sent here, the journal resolves them (mlsync.run.recovery).
        """
        if isinstance(exc, (ConnectionTimeout, SSLError)):
            return False
        once = bool(getattr(exc, "mlsync_once", False))
        if isinstance(exc, OSConnectionError):
            return not once
        if isinstance(exc, TransportError) and isinstance(exc.status_code, int):
            return retryable_status(exc.status_code) and (not once or exc.status_code == 429)
        return False

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
                raise ClusterError("connect", redact_url(opts.url), None,
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
            raise ClusterError("connect", redact_url(opts.url), None,
                               "AWS SigV4 signing needs boto3, which is not installed: pip install mlsync[aws]",
                               "configuration_error") from None
        from opensearchpy import RequestsAWSV4SignerAuth  # noqa: PLC0415

        credentials = boto3.Session().get_credentials()
        if credentials is None:
            raise ClusterError("connect", redact_url(opts.url), None,
                               "no AWS credentials found in the standard chain (environment, profile, instance role)",
                               "configuration_error")
        return RequestsAWSV4SignerAuth(credentials, opts.aws_region, opts.aws_service)

    def _build(self, kwargs: dict[str, Any], *, once: bool) -> OpenSearch:
        # opensearch-py's own retries are off: `call` retries (429 too, with jitter and a deadline)
        try:
            return OpenSearch(max_retries=0, mlsync_once=once, **kwargs)
        except (ImproperlyConfigured, ValueError) as exc:
            err = ClusterError("connect", redact_url(self.options.url), None,
                               _mask(_redact_text(str(exc)), _url_credentials(self.options.url)),
                               "configuration_error")
        raise err


def _verdict(exc: Exception) -> tuple[bool, Optional[float]]:
    """retry_call's view of a failed attempt: (retry?, the server's Retry-After)."""
    if isinstance(exc, ClusterError):
        return bool(getattr(exc, "_mlsync_retry", False)), exc.retry_after
    return False, None


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
