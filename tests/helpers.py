"""Reusable test helpers: unique names, task polling, model zips and a loopback HTTP server.

Imported by ``tests/conftest.py`` and by any test module as ``from helpers import ...``
(``tests/conftest.py`` puts ``tests/`` on ``sys.path``).
Nothing here imports ``mlsync``: these helpers describe the outside world (the cluster, model
artifacts, a remote inference endpoint), so they can test the adapter without depending on it.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import random
import shutil
import tempfile
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

# --------------------------------------------------------------------------- names and polling

#: Prefix of every object the tests create on the shared cluster (so strays are easy to find).
TEST_PREFIX = "ct"

#: Task states after which a task never changes again.
TERMINAL_TASK_STATES = frozenset({"COMPLETED", "FAILED", "COMPLETED_WITH_ERROR", "CANCELLED"})


def unique_name(prefix: str = TEST_PREFIX) -> str:
    """A name no other test run uses: ``<prefix>-<8 hex chars>``.

    The cluster is shared by several engineers and test runs at once, and model group names are
    globally unique on it, so every object a test creates must carry one of these.
    """
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_until(
    predicate: Callable[[], Any],
    *,
    timeout: float = 30.0,
    interval: float = 0.25,
    message: str = "condition",
) -> Any:
    """Call ``predicate`` until it returns something truthy; return that value.

    Raises ``TimeoutError`` (with the last value seen) after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {message}; last value: {last!r}")
        time.sleep(interval)


def wait_for_task(client: Any, task_id: str, *, timeout: float = 60.0, interval: float = 0.25) -> dict:
    """Poll ``GET /_plugins/_ml/tasks/<id>`` until the task is terminal; return the task document.

    Terminal states are COMPLETED, FAILED, COMPLETED_WITH_ERROR and CANCELLED; CREATED and RUNNING
    mean "still going". The caller asserts on ``state`` (a FAILED task is returned, not raised, so
    tests can assert on its ``error``).
    """
    def finished() -> dict | None:
        task = client.plugins.ml.get_task(task_id=task_id)
        return task if task.get("state") in TERMINAL_TASK_STATES else None

    return wait_until(finished, timeout=timeout, interval=interval, message=f"ML task {task_id} to finish")


def wait_for_model_state(
    client: Any, model_id: str, states: str | set[str] | frozenset[str], *, timeout: float = 30.0,
    interval: float = 0.25,
) -> dict:
    """Poll ``GET /_plugins/_ml/models/<id>`` until ``model_state`` is one of ``states``."""
    wanted = {states} if isinstance(states, str) else set(states)

    def reached() -> dict | None:
        model = client.plugins.ml.get_model(model_id=model_id)
        return model if model.get("model_state") in wanted else None

    return wait_until(reached, timeout=timeout, interval=interval,
                      message=f"model {model_id} to reach {sorted(wanted)}")


# --------------------------------------------------------------------------- model zips


@dataclass(frozen=True)
class ModelZip:
    """A generated model artifact: where it is served, its SHA-256 (lower-case hex) and size."""

    url: str
    sha256: str
    size: int
    path: str

    def __iter__(self) -> Iterator[Any]:  # allows ``url, sha, size, path = make_model_zip(...)``
        return iter((self.url, self.sha256, self.size, self.path))


_MODEL_FILE = {"torch": "model.pt", "onnx": "model.onnx"}
_MODEL_FORMAT = {"torch": "TORCH_SCRIPT", "onnx": "ONNX"}

#: A minimal, well-formed HuggingFace tokenizer file. ML Commons only checks that an entry named
#: exactly ``tokenizer.json`` exists when it registers a model; it never loads it.
_TOKENIZER_JSON = {
    "version": "1.0",
    "truncation": None,
    "padding": None,
    "added_tokens": [],
    "normalizer": None,
    "pre_tokenizer": {"type": "Whitespace"},
    "post_processor": None,
    "decoder": None,
    "model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "hello": 1, "world": 2}, "unk_token": "[UNK]"},
}


def model_format_for(kind: str) -> str:
    """``"torch"`` → ``"TORCH_SCRIPT"``, ``"onnx"`` → ``"ONNX"`` (the register API's model_format)."""
    return _MODEL_FORMAT[kind]


def build_model_zip_bytes(kind: str = "torch", seed: int | str | None = None, payload_size: int = 256) -> bytes:
    """The bytes of a small model zip: ``model.pt``/``model.onnx`` (arbitrary bytes) + ``tokenizer.json``.

    The same ``(kind, seed, payload_size)`` always gives the same bytes (fixed zip timestamps), so
    the same seed means the same SHA-256 and a different seed a different one.
    """
    if kind not in _MODEL_FILE:
        raise ValueError(f"kind must be one of {sorted(_MODEL_FILE)}, not {kind!r}")
    rng = random.Random(f"{kind}:{seed}")
    payload = bytes(rng.getrandbits(8) for _ in range(payload_size))
    buf = io.BytesIO()
    stamp = (2024, 1, 1, 0, 0, 0)
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(zipfile.ZipInfo(_MODEL_FILE[kind], date_time=stamp), payload)
        zf.writestr(
            zipfile.ZipInfo("tokenizer.json", date_time=stamp),
            json.dumps(_TOKENIZER_JSON, sort_keys=True),
        )
    return buf.getvalue()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def split_chunks(data: bytes, chunk_size: int) -> list[bytes]:
    """Split ``data`` into consecutive slices of at most ``chunk_size`` bytes (at least one slice)."""
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    return [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)] or [b""]


# --------------------------------------------------------------------------- loopback HTTP server


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


def default_embedding_response(request_json: Any, dimension: int = 4) -> dict:
    """An OpenAI-style embeddings response with one vector per input string."""
    inputs = request_json.get("input", []) if isinstance(request_json, dict) else []
    if isinstance(inputs, str):
        inputs = [inputs]
    data = [
        {"object": "embedding", "index": i, "embedding": [round(0.1 * (i + 1) * (k + 1), 3) for k in range(dimension)]}
        for i in range(max(len(inputs), 1))
    ]
    return {
        "object": "list",
        "data": data,
        "model": request_json.get("model", "stub") if isinstance(request_json, dict) else "stub",
        "usage": {"prompt_tokens": 1, "total_tokens": 1},
    }


def serve_in_background(httpd: http.server.HTTPServer, name: str) -> tuple[http.server.HTTPServer, threading.Thread]:
    """Serve `httpd` (threads per request, daemon) from a daemon thread; -> (httpd, that thread)."""
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, name=name, daemon=True)
    thread.start()
    return httpd, thread


def stop_server(httpd: http.server.HTTPServer | None) -> None:  # noqa: RET501 - None to assign
    """Stop and close a server `serve_in_background` started (None: nothing to do); -> None."""
    if httpd is not None:
        httpd.shutdown()
        httpd.server_close()
    return None


def connector_yaml(name: str, url: str, *, description: str = "v1", key: str = "k") -> str:
    """One item of a desired-state file's `connectors:` list: an http connector with one predict
    action to `url` sending `{"input": ${parameters.input}}`, its api_key `key`."""
    return f"""  - name: {name}
    description: {description}
    protocol: http
    parameters: {{model: m}}
    credential: {{api_key: "{key}"}}
    actions:
      - action_type: predict
        method: POST
        url: {url}
        request_body: '{{"input": ${{parameters.input}}}}'
"""


@dataclass
class ArtifactServer:
    """A threaded HTTP server on 127.0.0.1 (random port) for tests that need the node to call out.

    - ``GET /models/<file>.zip`` serves zips made by :meth:`make_model_zip`.
    - ``POST /v1/<anything>`` is a stub remote-inference endpoint: it answers with an OpenAI-style
      embedding response and records the request. Give each test its own path
      (``/v1/<unique>/embeddings``) and read back with :meth:`requests_for`. :meth:`respond` sets a
      canned ``(status, payload)`` for one path; ``responder`` (a callable taking the request and
      returning ``(status, payload)``) overrides every path.

    Every request is recorded in :attr:`requests`.
    """

    root: str
    host: str = "127.0.0.1"
    port: int = 0
    requests: list[RecordedRequest] = field(default_factory=list)
    responder: Callable[[RecordedRequest], tuple[int, Any]] | None = None
    routes: dict[str, tuple[int, Any]] = field(default_factory=dict)
    _httpd: http.server.ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- lifecycle
    def start(self) -> "ArtifactServer":
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            def _record(self) -> RecordedRequest:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                rec = RecordedRequest(self.command, self.path, {k: v for k, v in self.headers.items()}, body)
                with server._lock:
                    server.requests.append(rec)
                return rec

            def _send(self, status: int, payload: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                self._record()
                name = self.path.split("?", 1)[0]
                if name.startswith("/models/"):
                    local = os.path.join(server.root, os.path.basename(name))
                    if os.path.isfile(local):
                        with open(local, "rb") as fh:
                            self._send(200, fh.read(), "application/zip")
                        return
                self._send(404, b'{"error":"not found"}', "application/json")

            def do_POST(self) -> None:  # noqa: N802
                rec = self._record()
                if not self.path.startswith("/v1/"):
                    self._send(404, b'{"error":"not found"}', "application/json")
                    return
                if server.responder is not None:
                    status, payload = server.responder(rec)
                elif rec.path in server.routes:
                    status, payload = server.routes[rec.path]
                else:
                    try:
                        req_json = rec.json()
                    except ValueError:
                        self._send(400, b'{"error":"body is not JSON"}', "application/json")
                        return
                    status, payload = 200, default_embedding_response(req_json)
                self._send(status, json.dumps(payload).encode("utf-8"), "application/json")

        self._httpd, self._thread = serve_in_background(
            http.server.ThreadingHTTPServer((self.host, self.port), Handler), "artifact-server")
        self.port = self._httpd.server_address[1]
        return self

    def stop(self) -> None:
        self._httpd = stop_server(self._httpd)

    # -- content
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def add_file(self, name: str, data: bytes) -> ModelZip:
        """Serve ``data`` at ``/models/<name>``."""
        local = os.path.join(self.root, os.path.basename(name))
        with open(local, "wb") as fh:
            fh.write(data)
        return ModelZip(self.url(f"/models/{os.path.basename(name)}"), sha256_hex(data), len(data), local)

    def make_model_zip(self, kind: str = "torch", seed: int | str | None = None, payload_size: int = 256) -> ModelZip:
        """Generate a model zip (see :func:`build_model_zip_bytes`), serve it, return where and what."""
        if seed is None:
            seed = uuid.uuid4().hex
        data = build_model_zip_bytes(kind, seed, payload_size)
        return self.add_file(f"{kind}-{seed}-{payload_size}.zip", data)

    def respond(self, path: str, status: int, payload: Any) -> None:
        """Answer ``POST <path>`` with ``status`` and JSON ``payload`` from now on."""
        self.routes[path] = (status, payload)

    def requests_for(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == path and (method is None or r.method == method)]


def start_artifact_server(root: str | None = None) -> ArtifactServer:
    """Start an :class:`ArtifactServer` serving from ``root`` (a new temp dir if omitted)."""
    return ArtifactServer(root=root or tempfile.mkdtemp(prefix="mlsync-artifacts-")).start()


def stop_artifact_server(server: ArtifactServer, remove_root: bool = True) -> None:
    server.stop()
    if remove_root:
        shutil.rmtree(server.root, ignore_errors=True)


# --------------------------------------------------------------------------- request bodies and errors

#: Model search filter that keeps model meta documents and drops the ``<model_id>_<n>`` chunk docs.
NOT_A_CHUNK = {"bool": {"must_not": [{"exists": {"field": "chunk_number"}}]}}


def error_info(exc: Any) -> tuple[int, str, str]:
    """``(status, type, reason)`` of an opensearch-py ``TransportError``.

    OpenSearch errors look like ``{"error": {"type": ..., "reason": ...}, "status": n}``; a few
    (406 from core) carry ``"error"`` as a plain string, which is returned as the reason.
    """
    status = getattr(exc, "status_code", None)
    info = getattr(exc, "info", None)
    if isinstance(info, dict):
        err = info.get("error")
        if isinstance(err, dict):
            return status, str(err.get("type", "")), str(err.get("reason", ""))
        if isinstance(err, str):
            return status, "", err
    return status, "", str(info)


def text_embedding_config(dimension: int = 4, **extra: Any) -> dict:
    """A minimal valid ``model_config`` for a TEXT_EMBEDDING model."""
    return {"model_type": "bert", "embedding_dimension": dimension, "framework_type": "sentence_transformers", **extra}


def url_model_body(name: str, artifact: ModelZip, kind: str = "torch", group_id: str | None = None, **fields: Any) -> dict:
    """A register-from-URL body for ``artifact`` (a :class:`ModelZip`); ``fields`` override/add keys."""
    body: dict[str, Any] = {
        "name": name,
        "version": "1.0.0",
        "model_format": model_format_for(kind),
        "model_content_hash_value": artifact.sha256,
        "url": artifact.url,
        "model_config": text_embedding_config(),
    }
    if group_id is not None:
        body["model_group_id"] = group_id
    body.update(fields)
    return body


def register_url_model(client: Any, janitor: "Janitor", body: dict, *, timeout: float = 60.0) -> dict:
    """Register a URL model, wait for its task, record task and model with ``janitor``; return the task."""
    resp = client.plugins.ml.register_model(body=body)
    janitor.task(resp["task_id"])
    task = wait_for_task(client, resp["task_id"], timeout=timeout)
    if task.get("model_id"):
        janitor.model(task["model_id"])
    return task


# --------------------------------------------------------------------------- connectors


def stub_connector_body(
    name: str,
    endpoint_url: str,
    *,
    parameters: dict | None = None,
    client_config: dict | None = None,
    description: str = "contract-test connector",
) -> dict:
    """A standalone-connector create body that points at the stub embeddings endpoint."""
    body = {
        "name": name,
        "description": description,
        "version": "1",
        "protocol": "http",
        "parameters": {"model": "stub-embedder"} if parameters is None else parameters,
        "credential": {"api_key": "not-a-real-key"},
        "actions": [
            {
                "action_type": "predict",
                "method": "POST",
                "url": endpoint_url,
                "headers": {"Authorization": "Bearer ${credential.api_key}", "Content-Type": "application/json"},
                "request_body": '{ "input": ${parameters.input}, "model": "${parameters.model}" }',
            }
        ],
    }
    if client_config is not None:
        body["client_config"] = client_config
    return body


# --------------------------------------------------------------------------- cleanup


class Janitor:
    """Records what a test created and removes it afterwards, in dependency order.

    Order: undeploy models, delete models, delete model groups, delete connectors, delete tasks.
    Missing objects are fine; a group delete that hits 409 (its models' chunk documents are
    removed by a non-refreshing delete-by-query) is retried for a few seconds. Errors are
    collected and returned, never raised mid-way, so one failure does not leak the rest.
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self.models: list[str] = []
        self.groups: list[str] = []
        self.connectors: list[str] = []
        self.tasks: list[str] = []

    def model(self, model_id: str) -> str:
        self.models.append(model_id)
        return model_id

    def group(self, group_id: str) -> str:
        self.groups.append(group_id)
        return group_id

    def connector(self, connector_id: str) -> str:
        self.connectors.append(connector_id)
        return connector_id

    def task(self, task_id: str) -> str:
        self.tasks.append(task_id)
        return task_id

    def cleanup(self) -> list[str]:
        from opensearchpy.exceptions import NotFoundError, TransportError

        ml = self.client.plugins.ml
        errors: list[str] = []

        def attempt(what: str, fn: Callable[[], Any], retry_on: tuple[int, ...] = (), timeout: float = 15.0) -> None:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fn()
                    return
                except NotFoundError:
                    return
                except TransportError as exc:
                    if exc.status_code in retry_on and time.monotonic() < deadline:
                        time.sleep(0.5)
                        continue
                    errors.append(f"{what}: {exc.status_code} {exc.info if hasattr(exc, 'info') else exc}")
                    return
                except Exception as exc:  # noqa: BLE001 — report, keep cleaning
                    errors.append(f"{what}: {exc!r}")
                    return

        for mid in reversed(self.models):
            attempt(f"undeploy model {mid}", lambda mid=mid: ml.undeploy_model(model_id=mid))
        for mid in reversed(self.models):
            # 400: a deploy is still settling; 500: the model was just deleted and its chunk
            # documents are not refreshed away yet ("Model is not all cleaned up"), then it is a 404.
            attempt(f"delete model {mid}", lambda mid=mid: ml.delete_model(model_id=mid), retry_on=(400, 409, 500))
        for gid in reversed(self.groups):
            attempt(f"delete group {gid}", lambda gid=gid: ml.delete_model_group(model_group_id=gid), retry_on=(409,))
        for cid in reversed(self.connectors):
            attempt(f"delete connector {cid}", lambda cid=cid: ml.delete_connector(connector_id=cid), retry_on=(409,))
        if self.models:
            # Tasks whose id the API never returned (e.g. the deploy behind ``?deploy=true``).
            try:
                hits = ml.search_tasks(
                    body={"size": 1000, "_source": False, "query": {"terms": {"model_id": self.models}}}
                )["hits"]["hits"]
                self.tasks.extend(h["_id"] for h in hits if h["_id"] not in self.tasks)
            except TransportError as exc:
                errors.append(f"search tasks of models: {exc.status_code}")
        for tid in reversed(self.tasks):
            attempt(f"delete task {tid}", lambda tid=tid: ml.delete_task(task_id=tid), retry_on=(500,))
        self.models.clear()
        self.groups.clear()
        self.connectors.clear()
        self.tasks.clear()
        return errors
