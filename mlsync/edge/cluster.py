"""The only code that talks to OpenSearch: `Cluster` implements `mlsync.core.observed.ClusterPort`.

Design notes (facts verified on OpenSearch 2.19.6 + ML Commons; see docs/ml-commons-notes.md):

- ML Commons calls go through opensearch-py's `client.plugins.ml` namespace. `ml.upload_chunk`
  passes a `bytes` body through untouched (the serializer leaves bytes alone) and the connection's
  default `Content-Type: application/json` is what the server needs, so no hand-built URL is needed.
- `observe()` reads every group, connector and model meta doc with paged `_search` calls
  (`search_after` on `created_time` + `_id`; `_seq_no` if the cluster refuses `_id` sorting), so its
  request count is `2 + pages` (+1 when an access-control setting is on), never one GET per object.
- Every HTTP attempt (retries included) is counted in `requests_made` by a connection subclass.
- Request bodies may hold `Secret` values: they are revealed only by the JSON serializer while the
  request is being encoded, request bodies are never logged, and a server error message that
  echoes a secret is masked before it reaches a `ClusterError`.
- Calls that create something (create connector/group, register, register_meta, state writes) go
  through a client with retries switched off: a timeout or reset surfaces as an ambiguous
  `ClusterError` (status None) and the executor re-observes before it re-sends.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
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

from mlsync.core.errors import ClusterError, StateConflict
from mlsync.core.observed import Observed, ObservedObject, RegisterResult, StateDocument
from mlsync.core.secrets import MASK, Secret

log = logging.getLogger("mlsync.edge.cluster")
_os_log = logging.getLogger("opensearch")            # opensearch-py's own request logger
_os_tracer = logging.getLogger("opensearchpy.trace")  # opensearch-py's curl tracer

STATE_INDEX = "mlsync-state"
POOL_MAXSIZE = 32                 # kept-alive connections per host; more than any --parallelism in practice
DEFAULT_PAGE_SIZE = 2000
MAX_PAGE_SIZE = 10_000            # index.max_result_window default: from + size must stay <= 10,000
DEFAULT_TIMEOUT = 30.0
DEFAULT_URL = "http://localhost:9200"

_MODEL_SOURCE = {"excludes": ["model_content", "content"]}   # own _source drops the server's default exclusion
_NOT_A_CHUNK = {"exists": {"field": "chunk_number"}}


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


# --------------------------------------------------------------------------- transport plumbing


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


# --------------------------------------------------------------------------- the adapter


def _is_index_missing(err: ClusterError) -> bool:
    """The ML index (or the state index) does not exist yet: nothing there. Usually a 404, but some
    ML handlers report it as a 500 (e.g. deleting a connector before any connector was created)."""
    return err.status is not None and (
        err.error_type == "index_not_found_exception" or "no such index" in (err.reason or ""))


class Cluster:
    """`ClusterPort` over opensearch-py. Build one with `Cluster.connect(ConnectionOptions(...))`."""

    def __init__(self, options: Optional[ConnectionOptions] = None, *, page_size: int = DEFAULT_PAGE_SIZE,
                 state_index: str = STATE_INDEX, delete_group_retry_seconds: float = 15.0,
                 parallel_observe: bool = True, max_retries: int = 2,
                 deploy_settle_seconds: float = 10.0) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        self.options = options or ConnectionOptions()
        self.page_size = page_size
        self.state_index = state_index
        self.delete_group_retry_seconds = delete_group_retry_seconds
        self.parallel_observe = parallel_observe
        self.deploy_settle_seconds = deploy_settle_seconds
        self._counter = _Counter()
        self._tiebreak = "_id"             # second sort key for search_after paging (see _search_all)
        self._state_index_ready = False
        kwargs = self._client_kwargs()
        # Idempotent calls (reads, updates, deletes, deploys, chunk uploads) may be retried by
        # opensearch-py on connection errors and 502/503/504; calls that create something never are.
        self._client = self._build(kwargs, max_retries=max_retries)
        self._client_once = self._build(kwargs, max_retries=0)

    @classmethod
    def connect(cls, options: Optional[ConnectionOptions] = None, **kwargs: Any) -> "Cluster":
        """A Cluster for `options` (no request is made until the first call)."""
        return cls(options, **kwargs)

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

    def close(self) -> None:
        for client in (self._client, self._client_once):
            try:
                client.close()
            except Exception:  # noqa: BLE001 — closing is best effort
                pass

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def requests_made(self) -> int:
        """HTTP requests sent so far by this Cluster (every attempt, retries included)."""
        return self._counter.value

    # -- the one place requests are made
    def _call(self, operation: str, resource: str, fn: Callable[[], Any], body: Any = None) -> Any:
        log.debug("%s %s", operation, resource)
        try:
            return fn()
        except (OpenSearchException, ImproperlyConfigured) as exc:
            # built here and raised below, outside the except block: no chained opensearch-py
            # traceback (whose frames hold the encoded request) travels with the error
            err = _translate(exc, operation, resource, self.options.url, self.options.timeout, _secrets_in(body))
        raise err

    @property
    def _ml(self) -> Any:
        return self._client.plugins.ml

    @property
    def _ml_once(self) -> Any:
        return self._client_once.plugins.ml

    # ------------------------------------------------------------------ read

    def observe(self) -> Observed:
        """Every model group, connector and model meta doc (no chunk docs, no model_content), the
        cluster version and whether access control is effective: `3 + pages` requests (a refresh first) (+1 when an
        access-control setting is on, to see whether the security plugin is active)."""
        start = self.requests_made
        self._refresh_ml_indices()
        jobs: dict[str, Callable[[], Any]] = {
            "version": self._cluster_version,
            "settings": self._access_control_settings,
            "groups": lambda: self._search_all("model_group", self._ml.search_model_group, {"match_all": {}}),
            "connectors": lambda: self._search_all("connector", self._ml.search_connectors, {"match_all": {}}),
            "models": lambda: self._search_all("model", self._ml.search_models,
                                               {"bool": {"must_not": [_NOT_A_CHUNK]}}, source=_MODEL_SOURCE),
        }
        if self.parallel_observe:
            with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="mlsync-observe") as pool:
                futures = {name: pool.submit(job) for name, job in jobs.items()}
                results = {name: fut.result() for name, fut in futures.items()}
        else:
            results = {name: job() for name, job in jobs.items()}
        model_setting, connector_setting = results["settings"]
        security = self._security_active() if (model_setting or connector_setting) else False
        return Observed(
            connectors=self._objects("connector", results["connectors"]),
            groups=self._objects("model_group", results["groups"]),
            models=self._objects("model", results["models"]),
            cluster_version=results["version"],
            model_access_control=bool(model_setting and security),
            connector_access_control=bool(connector_setting and security),
            requests=self.requests_made - start,
        )

    @staticmethod
    def _objects(kind: str, hits: list[dict]) -> dict[str, ObservedObject]:
        out: dict[str, ObservedObject] = {}
        for hit in hits:   # a doc seen twice (moved during paging) keeps its newest copy
            prev = out.get(hit["_id"])
            if prev is not None and (prev.seq_no or -1) > (hit.get("_seq_no") or -1):
                continue
            out[hit["_id"]] = ObservedObject(kind=kind, id=hit["_id"], source=hit.get("_source") or {},
                                             seq_no=hit.get("_seq_no"), primary_term=hit.get("_primary_term"))
        return out

    def _refresh_ml_indices(self) -> None:
        """Group, connector and model updates are written without a refresh, so a search right after an
        apply would read the old documents (docs/ml-commons-notes.md). One refresh makes the plan read
        what was just written. Where the caller may not refresh system indices, plan on what is visible."""
        try:
            self._call("refresh", "ML indices", lambda: self._client.indices.refresh(
                index=".plugins-ml-model,.plugins-ml-connector,.plugins-ml-model-group",
                ignore_unavailable=True, allow_no_indices=True))
        except ClusterError as err:
            if err.status not in (401, 403, 404):
                raise

    def _cluster_version(self) -> Optional[str]:
        info = self._call("read", "cluster info", lambda: self._client.info())
        version = (info or {}).get("version") or {}
        number = version.get("number")
        dist = version.get("distribution")
        if number and dist and dist != "opensearch":
            return f"{dist} {number}"
        return number

    def _access_control_settings(self) -> tuple[bool, bool]:
        """(model, connector) access-control settings: transient over persistent over node/default."""
        keys = ("model_access_control_enabled", "connector_access_control_enabled")
        try:
            resp = self._call("read", "cluster settings", lambda: self._client.cluster.get_settings(
                include_defaults=True, filter_path=",".join(f"**.{k}" for k in keys)))
        except ClusterError as err:
            if err.status in (401, 403, 404):   # not allowed to read settings: assume the default (off)
                log.warning("cannot read cluster settings (%s); assuming ML access control is off", err.reason)
                return False, False
            raise
        values = []
        for key in keys:
            value: Any = None
            for section in ("transient", "persistent", "defaults"):
                node = (resp or {}).get(section) or {}
                found = ((node.get("plugins") or {}).get("ml_commons") or {}).get(key)
                if found is None:
                    found = node.get(f"plugins.ml_commons.{key}")   # flat form, should a proxy flatten it
                if found is not None:
                    value = found
                    break
            values.append(str(value).lower() == "true")
        return values[0], values[1]

    def _security_active(self) -> bool:
        """Whether the security plugin is installed and enforcing (ML access control needs it)."""
        try:
            self._call("read", "security plugin health", lambda: self._client.security.health())
            return True
        except ClusterError as err:
            if err.status in (401, 403, 503):   # the plugin answered: it is there
                return True
            if err.status in (400, 404, 405):   # "no handler found for uri": not installed / disabled
                return False
            raise

    def _search_all(self, kind: str, search: Callable[..., Any], query: dict, *,
                    source: Any = None, page_size: Optional[int] = None) -> list[dict]:
        """Every hit of `query`, paged with search_after on (created_time, tiebreaker).

        `created_time` never changes; `_id` is unique and stable. If the cluster refuses `_id`
        sorting (`indices.id_field_data.enabled: false`), `_seq_no` is used instead: unique on the
        single-shard ML indices, and it only grows on update, so a doc updated mid-scan can only move
        later (it may be returned twice — the newest copy wins — but is never skipped).
        """
        size = page_size or self.page_size
        operation = f"search {kind}s"
        hits_out: list[dict] = []
        after: Optional[list] = None
        while True:
            body: dict[str, Any] = {
                "size": size,
                "query": query,
                "sort": [{"created_time": {"order": "asc"}}, {self._tiebreak: {"order": "asc"}}],
                "seq_no_primary_term": True,
                "track_total_hits": False,
            }
            if source is not None:
                body["_source"] = source
            if after is not None:
                body["search_after"] = after
            try:
                resp = self._call(operation, "(all)", lambda: search(body=body))
            except ClusterError as err:
                if _is_index_missing(err):
                    return hits_out
                if after is None and self._tiebreak == "_id" and self._id_sort_refused(err):
                    log.info("cluster refuses sorting on _id (%s); paging on _seq_no", err.reason)
                    self._tiebreak = "_seq_no"
                    continue
                raise
            hits = ((resp or {}).get("hits") or {}).get("hits") or []
            hits_out.extend(hits)
            if len(hits) < size or "sort" not in hits[-1]:
                return hits_out
            after = hits[-1]["sort"]

    @staticmethod
    def _id_sort_refused(err: ClusterError) -> bool:
        reason = (err.reason or "").lower()
        return err.status in (400, 500) and (
            "_id" in reason or "fielddata" in reason or reason.startswith("fail to search"))

    def get_model(self, model_id: str) -> Optional[dict]:
        try:
            return self._call("get model", model_id, lambda: self._ml.get_model(model_id=model_id))
        except ClusterError as err:
            if err.status == 404:
                return None
            raise

    def find_models(self, name: str, group_id: Optional[str]) -> dict[str, dict]:
        """Model meta docs called exactly `name` (within `group_id` if given), by id — for crash recovery."""
        filters: list[dict] = []
        if len(name) <= 256:   # name.keyword has ignore_above 256: longer names are not in the keyword field
            filters.append({"term": {"name.keyword": name}})
        else:
            filters.append({"match_phrase": {"name": name}})
        if group_id:
            filters.append({"term": {"model_group_id": group_id}})
        query = {"bool": {"filter": filters, "must_not": [_NOT_A_CHUNK]}}
        hits = self._search_all("model", self._ml.search_models, query, source=_MODEL_SOURCE,
                                page_size=min(self.page_size, 1000))
        return {h["_id"]: h.get("_source") or {} for h in hits if (h.get("_source") or {}).get("name") == name}

    def search_tasks(self, task_ids: list[str]) -> dict[str, dict]:
        """task id -> task doc, in one `_search` (per 10,000 ids). Ids the search cannot see yet
        (the task index refreshes about once a second) or that do not exist are simply absent."""
        ids = list(dict.fromkeys(t for t in task_ids if t))
        out: dict[str, dict] = {}
        for i in range(0, len(ids), MAX_PAGE_SIZE):
            batch = ids[i:i + MAX_PAGE_SIZE]
            body = {"size": len(batch), "query": {"ids": {"values": batch}}, "track_total_hits": False}
            try:
                resp = self._call("search tasks", f"{len(batch)} task(s)", lambda: self._ml.search_tasks(body=body))
            except ClusterError as err:
                if _is_index_missing(err):
                    continue
                raise
            for hit in ((resp or {}).get("hits") or {}).get("hits") or []:
                out[hit["_id"]] = hit.get("_source") or {}
        return out

    # ------------------------------------------------------------------ connectors

    def create_connector(self, body: dict) -> str:
        resp = self._call("create connector", _named(body), lambda: self._ml_once.create_connector(body=body), body)
        return resp["connector_id"]

    def update_connector(self, connector_id: str, body: dict) -> None:
        self._call("update connector", connector_id,
                   lambda: self._ml.update_connector(connector_id=connector_id, body=body), body)

    def delete_connector(self, connector_id: str) -> None:
        """A missing connector is not an error (the server answers 200 result:not_found, or an
        index-not-found error while no connector index exists)."""
        try:
            self._call("delete connector", connector_id, lambda: self._ml.delete_connector(connector_id=connector_id))
        except ClusterError as err:
            if err.status != 404 and not _is_index_missing(err):
                raise

    # ------------------------------------------------------------------ model groups

    def create_group(self, body: dict) -> str:
        resp = self._call("create model group", _named(body), lambda: self._ml_once.register_model_group(body=body),
                          body)
        return resp["model_group_id"]

    def update_group(self, group_id: str, body: dict) -> None:
        self._call("update model group", group_id,
                   lambda: self._ml.update_model_group(model_group_id=group_id, body=body), body)

    def delete_group(self, group_id: str) -> None:
        """Deletes a group; a missing one is fine (200 result:not_found). The 409 "has associated model
        versions" is retried for `delete_group_retry_seconds`: after a model delete its chunk docs are
        removed by a non-refreshing delete-by-query and keep the group busy for a moment."""
        deadline = time.monotonic() + self.delete_group_retry_seconds
        delay = 0.2
        while True:
            try:
                self._call("delete model group", group_id,
                           lambda: self._ml.delete_model_group(model_group_id=group_id))
                return
            except ClusterError as err:
                if err.status == 404:
                    return
                if err.status != 409 or time.monotonic() + delay > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)

    # ------------------------------------------------------------------ models

    def register_model(self, body: dict) -> RegisterResult:
        """URL models: a task id (the model id comes with the COMPLETED task); remote: both at once."""
        resp = self._call("register model", _named(body), lambda: self._ml_once.register_model(body=body), body)
        return RegisterResult(task_id=resp.get("task_id"), model_id=resp.get("model_id"))

    def register_model_meta(self, body: dict) -> str:
        resp = self._call("register model meta", _named(body),
                          lambda: self._ml_once.register_model_meta(body=body), body)
        return resp["model_id"]

    def upload_chunk(self, model_id: str, chunk_number: int, data: bytes) -> None:
        """The raw bytes of chunk `chunk_number` (0-based), sent with Content-Type application/json."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError("upload_chunk takes bytes")
        payload = bytes(data)
        self._call("upload chunk", f"{model_id} chunk {chunk_number}", lambda: self._ml.upload_chunk(
            model_id=model_id, chunk_number=chunk_number, body=payload,
            headers={"content-type": "application/json"}))

    def update_model(self, model_id: str, body: dict) -> None:
        self._call("update model", model_id, lambda: self._ml.update_model(model_id=model_id, body=body), body)

    def deploy_model(self, model_id: str) -> Optional[str]:
        """Local models: the deploy task id to poll. Remote models deploy synchronously: the server
        answers status COMPLETED (its task doc is COMPLETED too); this waits until the model doc
        says so as well and returns None."""
        resp = self._call("deploy model", model_id, lambda: self._ml.deploy_model(model_id=model_id)) or {}
        if str(resp.get("status", "")).upper() == "COMPLETED":
            self._settle_deploy(model_id)
            return None
        return resp.get("task_id")

    def _settle_deploy(self, model_id: str) -> None:
        """The server answers a remote deploy with COMPLETED a few ms before the model doc leaves
        DEPLOYING (and Update Model refuses a DEPLOYING model with 409): wait for the doc, briefly."""
        deadline = time.monotonic() + self.deploy_settle_seconds
        delay = 0.02
        while True:
            doc = self.get_model(model_id)
            if doc is None or doc.get("model_state") not in ("DEPLOYING", "LOADING"):
                return
            if time.monotonic() + delay > deadline:
                log.warning("model %s still DEPLOYING %.0fs after a completed deploy", model_id,
                            self.deploy_settle_seconds)
                return
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    def undeploy_model(self, model_id: str) -> None:
        """Undeploys (synchronously). A model that is gone (404) counts as undeployed."""
        try:
            self._call("undeploy model", model_id, lambda: self._ml.undeploy_model(model_id=model_id))
        except ClusterError as err:
            if err.status != 404:
                raise

    def delete_model(self, model_id: str) -> None:
        """A missing model (404) is not an error. Neither is the 500 "Model is not all cleaned up"
        that a repeated delete gets for about a second: the meta doc is already gone and the server
        is removing the chunk docs itself (delete_group waits for them)."""
        try:
            self._call("delete model", model_id, lambda: self._ml.delete_model(model_id=model_id))
        except ClusterError as err:
            if err.status == 404 or _is_index_missing(err):
                return
            if err.status == 500 and "not all cleaned up" in (err.reason or ""):
                log.debug("model %s: already deleted, chunk docs still being removed", model_id)
                return
            raise

    # ------------------------------------------------------------------ state document

    def read_state(self, stack: str) -> Optional[StateDocument]:
        try:
            resp = self._call("read state", f"stack {stack!r}",
                              lambda: self._client.get(index=self.state_index, id=stack))
        except ClusterError as err:
            if err.status == 404:   # no document, or no index yet
                return None
            raise
        if not resp.get("found", True):
            return None
        return StateDocument(body=resp.get("_source") or {}, seq_no=resp["_seq_no"], primary_term=resp["_primary_term"])

    def write_state(self, stack: str, body: dict, seq_no: Optional[int], primary_term: Optional[int]) -> StateDocument:
        """Writes the stack's state document. `seq_no` None: it must not exist yet (op_type=create);
        otherwise it must still be at (seq_no, primary_term). Anything else raises StateConflict.

        No `refresh`: the document is only ever read back by GET, which is real-time, and the write is
        durable (translog) when acknowledged; a forced refresh per save cost ~10 ms on every resource."""
        resource = f"stack {stack!r}"
        if seq_no is None:
            self._ensure_state_index()
            write = lambda: self._client_once.index(  # noqa: E731
                index=self.state_index, id=stack, body=body, op_type="create")
        else:
            if primary_term is None:
                raise ValueError("write_state: primary_term is required with seq_no")
            write = lambda: self._client_once.index(  # noqa: E731
                index=self.state_index, id=stack, body=body, if_seq_no=seq_no, if_primary_term=primary_term)
        try:
            resp = self._call("write state", resource, write, body)
        except ClusterError as err:
            if err.status == 409 or (seq_no is not None and _is_index_missing(err)):
                raise StateConflict(
                    f"the state of stack {stack!r} was changed by someone else since it was read "
                    f"({err.reason}); re-run to start from the current state") from None
            raise
        return StateDocument(body=body, seq_no=resp["_seq_no"], primary_term=resp["_primary_term"])

    def _ensure_state_index(self) -> None:
        if self._state_index_ready:
            return
        body = {
            "settings": {"index": {"hidden": True, "number_of_shards": 1, "number_of_replicas": 0}},
            # addresses (keys) contain dots and quotes: never map the document's fields dynamically
            "mappings": {"dynamic": False, "properties": {"stack": {"type": "keyword"}}},
        }
        try:
            self._call("create state index", self.state_index,
                       lambda: self._client_once.indices.create(index=self.state_index, body=body))
        except ClusterError as err:
            if not (err.status == 400 and err.error_type == "resource_already_exists_exception"):
                raise
        self._state_index_ready = True


def _named(body: Any) -> str:
    name = body.get("name") if isinstance(body, dict) else None
    return json.dumps(name) if isinstance(name, str) else "(unnamed)"


__all__ = ["Cluster", "ConnectionOptions", "STATE_INDEX", "DEFAULT_PAGE_SIZE"]
