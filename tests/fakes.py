"""An in-memory ML Commons for executor tests: `FakeCluster` implements `mlsync.core.observed.ClusterPort`.

It behaves like the real API where the executor's correctness depends on it (reference
ml-commons-api.md):

- the server numbers versions: model_version = group latest_version + 1, as a string;
- URL registration returns a task that completes after `task_polls` polls (a poll = a
  `search_tasks` call naming the task, or a `get_model` of its model); remote registration is
  synchronous; register_model_meta + upload_chunk: the last chunk flips the model to REGISTERED
  and re-indexes it without description / is_enabled / rate_limiter / deploy_setting / interface /
  guardrails; 2.x URL and remote registration drop is_enabled;
- two registrations into one group at once conflict (remote: 409; URL: the later task FAILS);
- 409 deleting a group that has models or a connector that a model uses; 400 updating a connector
  while a model using it is deployed; 400 deleting a deployed model; 403 updating a model of an
  unsupported function; 200-style no-ops for deleting missing groups / connectors / models;
- the state document with seq_no / primary_term optimistic concurrency (layout 2: a head and its
  parts, `state_heads` / `state_parts`; `states` joins them for assertions).

Test hooks: `fail(method, ...)` injects errors before or after a call takes effect,
`fail_task(name)` / `fail_deploy(name)` make a model's register / deploy task FAIL,
`crash_after(method)` / `crash_before(method)` raise `SimulatedCrash` (a BaseException, like
SIGKILL: nothing catches it) and leave the fake "dead" (every later call raises it again) until
`revive()`. `log` records every call in order for ordering assertions.
"""

from __future__ import annotations

import copy
import decimal
import itertools
import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from mlsync.core.errors import ClusterError, StateConflict
from mlsync.core.normalize import CLIENT_CONFIG_DEFAULTS  # proved against the node by tests/contract/test_connectors.py
from mlsync.core.observed import Observed, ObservedObject, RegisterResult, StateDocument
from mlsync.core.secrets import Secret
from mlsync.core.state import is_split, join

MAX_CHUNK = 10_000_000
DROPPED_BY_LAST_CHUNK = ("description", "is_enabled", "rate_limiter", "deploy_setting", "interface", "guardrails")
DEPLOYED = frozenset({"DEPLOYED", "DEPLOYING", "PARTIALLY_DEPLOYED"})


# --- how the server stores what it is sent (docs/ml-commons-notes.md §9; proven on the node) -------

_GSON_HTML = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "=": "\\u003d", "'": "\\u0027"}


def java_double(value: float) -> str:
    """Java's Double.toString: plain in [1e-3, 1e7) with at least one decimal, else d.dddE<n>."""
    if value == 0 or 1e-3 <= abs(value) < 1e7:
        text = repr(float(value))
        return text if ("." in text or "e" in text) else text + ".0"
    sign, digits, exponent = decimal.Decimal(repr(float(value))).normalize().as_tuple()
    text = "".join(map(str, digits))   # the shortest digits that round-trip, as Java (JDK 19+) prints them
    head, tail = text[0], text[1:] or "0"
    power = exponent + len(digits) - 1
    sign = "-" if sign else ""
    return f"{sign}{head}.{tail}E{power}"


def gson_text(value: Any) -> str:
    """What `new Gson().toJson(v)` writes for a non-string parameter value: nulls in maps dropped,
    HTML characters escaped, Java number formatting, and map keys not in the order they were sent
    (the server parses them into a HashMap); we reverse them."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return java_double(value)
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        for ch, esc in _GSON_HTML.items():
            text = text.replace(ch, esc)
        return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    if isinstance(value, list):
        return "[" + ",".join(gson_text(v) for v in value) + "]"
    if isinstance(value, dict):
        items = [(k, v) for k, v in reversed(list(value.items())) if v is not None]
        return "{" + ",".join(gson_text(str(k)) + ":" + gson_text(v) for k, v in items) + "}"
    raise TypeError(type(value))


def server_parameters(params: Optional[dict]) -> dict:
    return {k: v if isinstance(v, str) else gson_text(v) for k, v in (params or {}).items()}


def server_agent(b: dict, now_ms: int) -> dict:
    """An agent as ML Commons 2.19 stores it (model-consumers.md §4.3): parameter values stringified with
    Gson, the tool flag written, empty maps and lists and unknown keys dropped, times and is_hidden added."""
    def params(p: Any) -> Optional[dict]:
        return server_parameters(p) if isinstance(p, dict) and p else None
    out: dict = {"name": b.get("name"), "type": b.get("type")}
    if b.get("description") is not None:
        out["description"] = b["description"]
    if isinstance(b.get("llm"), dict):
        out["llm"] = {k: v for k, v in {"model_id": b["llm"].get("model_id"),
                                         "parameters": params(b["llm"].get("parameters"))}.items() if v is not None}
    tools = []
    for t in b.get("tools") or []:
        tool = {k: t[k] for k in ("type", "name", "description") if t.get(k) is not None}
        if params(t.get("parameters")):
            tool["parameters"] = params(t.get("parameters"))
        tool["include_output_in_agent_response"] = bool(t.get("include_output_in_agent_response", False))
        if params(t.get("config")):
            tool["config"] = params(t.get("config"))
        tools.append(tool)
    if tools:
        out["tools"] = tools
    if params(b.get("parameters")):
        out["parameters"] = params(b.get("parameters"))
    if isinstance(b.get("memory"), dict):
        out["memory"] = dict(b["memory"])
    out.update(created_time=now_ms, last_updated_time=now_ms)
    if b.get("app_type") is not None:
        out["app_type"] = b["app_type"]
    out["is_hidden"] = False
    return out


def server_connector(b: dict) -> dict:
    """A connector (standalone or inline) as the server stores it."""
    out = dict(b)
    if "version" in out:
        out["version"] = str(out["version"])
    if "parameters" in out:
        out["parameters"] = server_parameters(out["parameters"])
    out["actions"] = [{**a, "action_type": str(a["action_type"]).upper()} for a in out.get("actions") or []]
    if "client_config" in out:
        cc = {**CLIENT_CONFIG_DEFAULTS, **{k: v for k, v in (out["client_config"] or {}).items() if v is not None}}
        cc["retry_backoff_policy"] = str(cc["retry_backoff_policy"]).lower()
        out["client_config"] = cc
    return out


def server_model_fields(b: dict) -> dict:
    """Model fields as the server stores them: model_config enums upper-cased and normalize_result false
    omitted; rate_limiter.limit a string; interface values strings; deploy_setting TTL -1 when not sent."""
    out = {}
    mc = b.get("model_config")
    if mc is not None:
        mc = dict(mc)
        for key in ("framework_type", "pooling_mode"):
            if mc.get(key) is not None:
                mc[key] = str(mc[key]).upper()
        if not mc.get("normalize_result"):
            mc.pop("normalize_result", None)
        if isinstance(mc.get("all_config"), dict):
            raise _err("register_model", b.get("name", "-"), 500, "Can't get text on a START_OBJECT",
                       "illegal_state_exception")
        out["model_config"] = mc
    if b.get("rate_limiter") is not None:
        rl = dict(b["rate_limiter"])
        if rl.get("limit") is not None:
            rl["limit"] = str(rl["limit"])
        out["rate_limiter"] = rl
    if b.get("interface") is not None:
        out["interface"] = {k: v if isinstance(v, str) else json.dumps(v) for k, v in b["interface"].items()
                            if v is not None}
    if b.get("deploy_setting") is not None:
        ds = dict(b["deploy_setting"])
        ds.setdefault("model_ttl_minutes", -1)
        out["deploy_setting"] = ds
    return out


def check_model_config(op: str, b: dict) -> None:
    """TextEmbeddingModelConfig: the server refuses a model_config without these (400)."""
    mc = b.get("model_config")
    if mc is None or str(b.get("function_name", "")).upper() == "QUESTION_ANSWERING":
        return
    for key, text in (("model_type", "model type is null"), ("embedding_dimension", "embedding dimension is null"),
                      ("framework_type", "framework type is null")):
        if mc.get(key) is None:
            raise _err(op, b.get("name", "-"), 400, text, "illegal_argument_exception")


class SimulatedCrash(BaseException):
    """The process died here (SIGKILL): raised by a crash hook and by every call until revive()."""


class FakeClock:
    """A clock whose sleep() returns at once and moves time forward. Thread-safe."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self.slept = 0.0

    def time(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self._now += max(0.0, seconds)
            self.slept += max(0.0, seconds)
        time.sleep(0)   # let other threads run

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


@dataclass
class Call:
    seq: int
    method: str
    key: Optional[str]          # the object's name (register/create: from the body; others: looked up by id)
    id: Optional[str] = None    # the id argument, if any
    args: tuple = ()
    thread: str = ""


@dataclass
class _Hook:
    method: str
    when: Optional[Callable[..., bool]]
    times: int
    error: Optional[BaseException] = None
    after: bool = False
    crash: bool = False
    nth: int = 1
    seen: int = 0


def _reveal(value: Any) -> Any:
    """What the adapter does while serialising: Secret -> its value; and the body must be JSON."""
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, dict):
        return {k: _reveal(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_reveal(v) for v in value]
    return value


def _fresh(error: BaseException) -> BaseException:
    """A new instance of an injected error (raising one instance twice piles up tracebacks)."""
    if isinstance(error, ClusterError):
        return ClusterError(error.operation, error.resource, error.status, error.reason, error.error_type)
    return copy.copy(error)


def connected(monkeypatch: Any, cluster: "FakeCluster") -> "FakeCluster":
    """`cluster`, made what the commands connect to (`mlsync.commands.common.connect`) for one test."""
    from mlsync.commands import common

    monkeypatch.setattr(common, "connect", lambda options: cluster)
    return cluster


def _err(op: str, resource: str, status: Optional[int], reason: str, etype: Optional[str] = None) -> ClusterError:
    return ClusterError(op, resource, status, reason, etype)


class FakeCluster:
    def __init__(self, clock: Optional[FakeClock] = None, *, task_polls: int = 2, deploy_polls: int = 2,
                 register_delay: float = 0.0, local_deploy_async: bool = True) -> None:
        self.clock = clock or FakeClock()
        self.task_polls, self.deploy_polls = task_polls, deploy_polls
        self.register_delay = register_delay          # real seconds a register spends "in flight"
        self.local_deploy_async = local_deploy_async
        # reads of a remote model's doc that still see DEPLOYING after its deploy answered COMPLETED (2.19
        # updates the doc a few ms after answering): 0 = the doc is DEPLOYED at once
        self.remote_settle_reads = 0
        self._settling: dict[str, int] = {}
        self.connectors: dict[str, dict] = {}
        self.groups: dict[str, dict] = {}
        self.models: dict[str, dict] = {}
        self.ingest_pipelines: dict[str, dict] = {}         # id -> body as PUT (the server stores the bytes)
        self.search_pipelines: dict[str, dict] = {}
        self.agents: dict[str, dict] = {}                   # id -> stored document (server_agent)
        self.tasks: dict[str, dict] = {}
        self.chunks: dict[str, dict[int, bytes]] = {}
        self.chunk_log: list[tuple[str, int, int]] = []     # (model id, chunk number, size) in arrival order
        self.credentials: dict[str, dict] = {}              # connector id / model id -> revealed credential
        self.bodies: list[tuple[str, dict]] = []            # (method, revealed body) of every write
        self.state_heads: dict[str, StateDocument] = {}     # stack -> its state (head) document
        self.state_parts: dict[str, dict] = {}              # part id -> body (layout 2: a resource, a journal entry)
        self.log: list[Call] = []
        self.requests_made = 0
        self.dead = False
        self.max_group_concurrency = 0
        self.max_concurrency = 0
        self._inflight: dict[str, int] = {}
        self._inflight_total = 0
        self._inflight_url: dict[str, str] = {}              # group id -> its running URL register task
        self._hooks: list[_Hook] = []
        self._failing_tasks: dict[str, str] = {}
        self._failing_deploys: dict[str, str] = {}
        self._ids = itertools.count(1)
        self._seq = itertools.count(1)
        self._lock = threading.RLock()
        self.on_call: Optional[Callable[[str], None]] = None   # e.g. write the state behind the executor's back

    # ------------------------------------------------------------------ hooks for tests

    def fail(self, method: str, error: Optional[BaseException] = None, *, times: int = 1, after: bool = False,
             when: Optional[Callable[..., bool]] = None) -> None:
        """The next `times` calls of `method` (matching `when(*args)`) raise `error` (default: HTTP 500);
        `after=True`: the call takes effect first and then raises (a lost response)."""
        self._hooks.append(_Hook(method, when, times,
                                 error or _err(method, "fake", 500, "injected failure", "exception"), after))

    def crash_after(self, method: str, nth: int = 1, when: Optional[Callable[..., bool]] = None) -> None:
        self._hooks.append(_Hook(method, when, 1, after=True, crash=True, nth=nth))

    def crash_before(self, method: str, nth: int = 1, when: Optional[Callable[..., bool]] = None) -> None:
        self._hooks.append(_Hook(method, when, 1, after=False, crash=True, nth=nth))

    def revive(self) -> None:
        self.dead = False

    def fail_task(self, model_name: str, error: str = "Model content hash can't match original hash value") -> None:
        self._failing_tasks[model_name] = error

    def fail_deploy(self, model_name: str, error: str = '{"node-1":"deploy failed"}') -> None:
        self._failing_deploys[model_name] = error

    def calls(self, method: Optional[str] = None) -> list[Call]:
        return [c for c in self.log if method is None or c.method == method]

    def index(self, method: str, key: Optional[str] = None) -> int:
        """Sequence position of the first call of `method` (for `key`); raises if there is none."""
        for c in self.log:
            if c.method == method and (key is None or c.key == key):
                return c.seq
        raise AssertionError(f"no {method} call for {key!r}; calls: {[(c.method, c.key) for c in self.log]}")

    def last_index(self, method: str, key: Optional[str] = None) -> int:
        seqs = [c.seq for c in self.log if c.method == method and (key is None or c.key == key)]
        if not seqs:
            raise AssertionError(f"no {method} call for {key!r}")
        return seqs[-1]

    def group_id(self, name: str) -> str:
        return next(i for i, g in self.groups.items() if g["name"] == name)

    def models_named(self, name: str) -> dict[str, dict]:
        return {i: m for i, m in self.models.items() if m["name"] == name}

    # ------------------------------------------------------------------ plumbing

    def _name_of(self, oid: Optional[str]) -> Optional[str]:
        for pool in (self.models, self.groups, self.connectors):
            if oid in pool:
                return pool[oid].get("name")
        return None

    def _hook_matches(self, h: _Hook, method: str, args: tuple, after: bool) -> bool:
        return (h.method == method and h.after == after and h.times > 0
                and (h.when is None or h.when(*args)))

    def _before(self, method: str, args: tuple, key: Optional[str], oid: Optional[str]) -> None:
        with self._lock:
            if self.dead:
                raise SimulatedCrash(f"{method} after the crash")
            self.requests_made += 1
            self.log.append(Call(next(self._seq), method, key if key is not None else self._name_of(oid), oid,
                                 args, threading.current_thread().name))
            self._fire_hooks(method, args, after=False)
        if self.on_call is not None:
            self.on_call(method)

    def _after(self, method: str, args: tuple) -> None:
        with self._lock:
            self._fire_hooks(method, args, after=True)

    def _fire_hooks(self, method: str, args: tuple, *, after: bool) -> None:
        """Raise the first armed hook's error (or crash) for this call; the caller holds the lock."""
        for h in self._hooks:
            if self._hook_matches(h, method, args, after=after):
                h.seen += 1
                if h.seen < h.nth:
                    continue
                h.times -= 1
                if h.crash:
                    self.dead = True
                    raise SimulatedCrash(f"crash {'after' if after else 'before'} {method}")
                raise _fresh(h.error)

    def _call(self, method: str, args: tuple, effect: Callable[[], Any], *, key: Optional[str] = None,
              oid: Optional[str] = None) -> Any:
        self._before(method, args, key, oid)
        result = effect()
        self._after(method, args)
        return result

    def _now_ms(self) -> int:
        return int(self.clock.time() * 1000)

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids)}"

    def _body(self, method: str, body: dict) -> dict:
        revealed = _reveal(body)
        json.dumps(revealed)   # a request body must be JSON
        self.bodies.append((method, revealed))
        return copy.deepcopy(revealed)

    # ------------------------------------------------------------------ read

    def observe(self) -> Observed:
        def run() -> Observed:
            with self._lock:
                return Observed(
                    connectors={i: ObservedObject("connector", i, copy.deepcopy(c)) for i, c in self.connectors.items()},
                    groups={i: ObservedObject("model_group", i, copy.deepcopy(g)) for i, g in self.groups.items()},
                    models={i: ObservedObject("model", i, copy.deepcopy(m)) for i, m in self.models.items()},
                    ingest_pipelines={i: ObservedObject("ingest_pipeline", i, copy.deepcopy(p))
                                      for i, p in self.ingest_pipelines.items()},
                    search_pipelines={i: ObservedObject("search_pipeline", i, copy.deepcopy(p))
                                      for i, p in self.search_pipelines.items()},
                    agents={i: ObservedObject("agent", i, copy.deepcopy(a)) for i, a in self.agents.items()},
                    cluster_version="2.19.6", requests=3)
        return self._call("observe", (), run)

    def get_model(self, model_id: str) -> Optional[dict]:
        def run() -> Optional[dict]:
            with self._lock:
                for tid, t in list(self.tasks.items()):
                    if t.get("model_id") == model_id or t.get("_model") == model_id:
                        self._tick(tid)
                self._settle_read(model_id)
                m = self.models.get(model_id)
                return copy.deepcopy(m) if m is not None else None
        return self._call("get_model", (model_id,), run, oid=model_id)

    def _settle_read(self, model_id: str) -> None:
        """One read of a remote model whose deploy answered: after `remote_settle_reads` it is DEPLOYED."""
        left = self._settling.get(model_id)
        if left is None:
            return
        if left <= 1:
            del self._settling[model_id]
            if model_id in self.models:
                self.models[model_id]["model_state"] = "DEPLOYED"
        else:
            self._settling[model_id] = left - 1

    def get_models(self, model_ids: list[str]) -> dict[str, dict]:
        def run() -> dict[str, dict]:
            with self._lock:
                for i in dict.fromkeys(model_ids):
                    self._settle_read(i)
                return {i: copy.deepcopy(self.models[i]) for i in dict.fromkeys(model_ids) if i in self.models}
        return self._call("get_models", (list(model_ids),), run, key=",".join(model_ids))

    def find_models(self, name: str, group_id: Optional[str]) -> dict[str, dict]:
        def run() -> dict[str, dict]:
            with self._lock:
                return {i: copy.deepcopy(m) for i, m in self.models.items()
                        if m["name"] == name and (group_id is None or m.get("model_group_id") == group_id)}
        return self._call("find_models", (name, group_id), run, key=name)

    def search_tasks(self, task_ids: list[str]) -> dict[str, dict]:
        def run() -> dict[str, dict]:
            with self._lock:
                out = {}
                for tid in task_ids:
                    if tid in self.tasks:
                        self._tick(tid)
                        out[tid] = {k: v for k, v in copy.deepcopy(self.tasks[tid]).items() if not k.startswith("_")}
                return out
        return self._call("search_tasks", (list(task_ids),), run, key=",".join(task_ids))

    def _tick(self, tid: str) -> None:
        """One poll of a task: after enough polls it reaches its end state."""
        t = self.tasks[tid]
        if t["state"] not in ("CREATED", "RUNNING"):
            return
        t["_polls"] -= 1
        if t["_polls"] > 0:
            t["state"] = "RUNNING" if t["task_type"] == "DEPLOY_MODEL" else "CREATED"
            return
        mid = t["_model"]
        model = self.models.get(mid)
        if t["task_type"] == "REGISTER_MODEL":
            group_id = t["_group"]
            if self._inflight_url.get(group_id) == tid:
                del self._inflight_url[group_id]
            if t.get("_fail"):
                t["state"], t["error"] = "FAILED", t["_fail"]
                if model is not None:
                    del self.models[mid]
                    g = self.groups.get(group_id)
                    if g is not None and g["latest_version"] == int(model["model_version"]):
                        g["latest_version"] -= 1
                return
            model["model_state"] = "REGISTERED"
            model["total_chunks"] = 1
            model.pop("is_enabled", None)      # 2.x drops it for URL registrations
            t["state"], t["model_id"] = "COMPLETED", mid
        else:  # DEPLOY_MODEL
            if t.get("_fail"):
                t["state"], t["error"] = "FAILED", t["_fail"]
                if model is not None:
                    model["model_state"] = "DEPLOY_FAILED"
                return
            if model is not None:
                model["model_state"] = "DEPLOYED"
            t["state"] = "COMPLETED"

    # ------------------------------------------------------------------ connectors

    def create_connector(self, body: dict) -> str:
        def run() -> str:
            b = self._body("create_connector", body)
            with self._lock:
                if not b.get("name"):
                    raise _err("create_connector", "-", 400, "connector name is null")
                if not b.get("credential"):
                    raise _err("create_connector", b["name"], 400, "credential is required")
                if not b.get("actions"):
                    raise _err("create_connector", b["name"], 400, "actions are required")
                cid = self._new_id("conn")
                cred = b.pop("credential")
                self.credentials[cid] = cred
                if b.get("version") is None:
                    raise _err("create_connector", b["name"], 400, "Connector version is null",
                               "illegal_argument_exception")
                b = server_connector(b)
                b["created_time"] = b["last_updated_time"] = self._now_ms()
                self.connectors[cid] = b
                return cid
        return self._call("create_connector", (body,), run, key=body.get("name"))

    def update_connector(self, connector_id: str, body: dict) -> None:
        def run() -> None:
            b = self._body("update_connector", body)
            with self._lock:
                c = self.connectors.get(connector_id)
                if c is None:
                    raise _err("update_connector", connector_id, 404, "Failed to find connector")
                users = sorted(i for i, m in self.models.items()
                               if m.get("connector_id") == connector_id and m["model_state"] in DEPLOYED)
                if users:
                    raise _err("update_connector", connector_id, 400,
                               f"{len(users)} models are still using this connector, please undeploy the models "
                               f"first: {users}", "illegal_argument_exception")
                if b.get("credential"):
                    self.credentials[connector_id] = b.pop("credential")
                params = b.pop("parameters", None) or {}
                b = server_connector(b)
                if params:   # merged key by key: a key can never be removed
                    c.setdefault("parameters", {}).update(server_parameters(params))
                if not b.get("actions"):
                    b.pop("actions", None)
                if not b.get("description"):
                    b.pop("description", None)
                c.update(b)
                c["last_updated_time"] = self._now_ms()
        self._call("update_connector", (connector_id, body), run, oid=connector_id)

    def delete_connector(self, connector_id: str) -> None:
        def run() -> None:
            with self._lock:
                users = sorted(i for i, m in self.models.items() if m.get("connector_id") == connector_id)
                if users:
                    raise _err("delete_connector", connector_id, 409,
                               f"{len(users)} models are still using this connector, please delete or update the "
                               f"models first: {users}", "status_exception")
                self.connectors.pop(connector_id, None)
        self._call("delete_connector", (connector_id,), run, oid=connector_id)

    # ------------------------------------------------------------------ consumers: pipelines and agents

    def _pipelines(self, kind: str) -> dict[str, dict]:
        return self.ingest_pipelines if kind == "ingest_pipeline" else self.search_pipelines

    def put_pipeline(self, kind: str, pipeline_id: str, body: dict) -> None:
        def run() -> None:
            b = self._body("put_pipeline", body)
            allowed = (("description", "version", "processors", "on_failure") if kind == "ingest_pipeline" else
                       ("description", "version", "request_processors", "response_processors",
                        "phase_results_processors"))
            extra = sorted(set(b) - set(allowed))
            if extra:
                raise _err("put_pipeline", pipeline_id, 400, f"pipeline [{pipeline_id}] doesn't support one or more "
                                                             f"provided configuration parameters {extra}",
                           "parse_exception")
            with self._lock:
                self._pipelines(kind)[pipeline_id] = b
        self._call("put_pipeline", (kind, pipeline_id, body), run, key=pipeline_id)

    def delete_pipeline(self, kind: str, pipeline_id: str) -> None:
        def run() -> None:
            with self._lock:
                self._pipelines(kind).pop(pipeline_id, None)
        self._call("delete_pipeline", (kind, pipeline_id), run, oid=pipeline_id)

    def register_agent(self, body: dict) -> str:
        def run() -> str:
            b = self._body("register_agent", body)
            with self._lock:
                aid = self._new_id("agent")
                self.agents[aid] = server_agent(b, self._now_ms())
                return aid
        return self._call("register_agent", (body,), run, key=body.get("name"))

    def delete_agent(self, agent_id: str) -> None:
        def run() -> None:
            with self._lock:
                self.agents.pop(agent_id, None)
        self._call("delete_agent", (agent_id,), run, oid=agent_id)

    # ------------------------------------------------------------------ groups

    def create_group(self, body: dict) -> str:
        def run() -> str:
            b = self._body("create_group", body)
            with self._lock:
                name = b.get("name")
                if not name:
                    raise _err("create_group", "-", 400, "model group name is null")
                if any(k in b for k in ("access_mode", "add_all_backend_roles")) or b.get("backend_roles"):
                    raise _err("create_group", name, 400, "You cannot specify model access control parameters "
                                                          "because the Security plugin or model access control is disabled")
                for gid, g in self.groups.items():
                    if g["name"] == name:
                        raise _err("create_group", name, 400, f"The name you provided is already being used by a "
                                                              f"model group with ID: {gid}.", "illegal_argument_exception")
                gid = self._new_id("group")
                now = self._now_ms()
                self.groups[gid] = {"name": name, "latest_version": 0, "access": "public", "created_time": now,
                                    "last_updated_time": now, **({"description": b["description"]}
                                                                 if b.get("description") else {})}
                return gid
        return self._call("create_group", (body,), run, key=body.get("name"))

    def update_group(self, group_id: str, body: dict) -> None:
        def run() -> None:
            b = self._body("update_group", body)
            with self._lock:
                g = self.groups.get(group_id)
                if g is None:
                    raise _err("update_group", group_id, 404, "Failed to find model group")
                if b.get("description"):
                    g["description"] = b["description"]
                if b.get("name") and b["name"] != g["name"]:
                    g["name"] = b["name"]
        self._call("update_group", (group_id, body), run, oid=group_id)

    def delete_group(self, group_id: str) -> None:
        def run() -> None:
            with self._lock:
                if any(m.get("model_group_id") == group_id for m in self.models.values()):
                    raise _err("delete_group", group_id, 409, "Cannot delete the model group when it has "
                                                              "associated model versions", "status_exception")
                self.groups.pop(group_id, None)
        self._call("delete_group", (group_id,), run, oid=group_id)

    # ------------------------------------------------------------------ models

    def _enter_register(self, op: str, group_id: str) -> None:
        with self._lock:
            self._inflight[group_id] = self._inflight.get(group_id, 0) + 1
            self._inflight_total += 1
            self.max_group_concurrency = max(self.max_group_concurrency, self._inflight[group_id])
            self.max_concurrency = max(self.max_concurrency, self._inflight_total)
            conflict = self._inflight[group_id] > 1
        if self.register_delay:
            time.sleep(self.register_delay)
        if conflict:
            self._leave_register(group_id)
            raise _err(op, group_id, 409, f"Document version conflict updating {group_id}", "status_exception")

    def _leave_register(self, group_id: str) -> None:
        with self._lock:
            self._inflight[group_id] -= 1
            self._inflight_total -= 1

    def _resolve_group(self, op: str, b: dict) -> str:
        gid = b.get("model_group_id") or None
        if gid is None:   # the server joins / creates a group named after the model
            for i, g in self.groups.items():
                if g["name"] == b["name"]:
                    return i
            gid = self._new_id("group")
            now = self._now_ms()
            self.groups[gid] = {"name": b["name"], "latest_version": 0, "access": "public", "created_time": now,
                                "last_updated_time": now}
            return gid
        if gid not in self.groups:
            raise _err(op, gid, 500, f"Failed to find model group with ID: {gid}", "m_l_resource_not_found_exception")
        return gid

    def _new_model(self, b: dict, gid: str, state: str) -> tuple[str, dict]:
        g = self.groups[gid]
        g["latest_version"] += 1
        g["last_updated_time"] = self._now_ms()
        mid = self._new_id("model")
        now = self._now_ms()
        model = {"name": b["name"], "algorithm": str(b.get("function_name", "TEXT_EMBEDDING")).upper(),
                 "model_version": str(g["latest_version"]), "model_group_id": gid, "model_state": state,
                 "created_time": now, "last_updated_time": now}
        for key in ("description", "model_format", "model_config", "model_content_hash_value", "is_enabled",
                    "rate_limiter", "deploy_setting", "interface", "guardrails", "connector_id",
                    "model_content_size_in_bytes", "total_chunks"):
            if b.get(key) is not None:
                model[key] = b[key]
        model.update(server_model_fields(b))
        if b.get("connector") is not None:
            inline = dict(b["connector"])
            if "credential" in inline:
                self.credentials[mid] = inline.pop("credential")
            model["connector"] = server_connector(inline)
        self.models[mid] = model
        return mid, model

    def register_model(self, body: dict) -> RegisterResult:
        def run() -> RegisterResult:
            b = self._body("register_model", body)
            if not b.get("name"):
                raise _err("register_model", "-", 400, "model name is null", "illegal_argument_exception")
            function = str(b.get("function_name", "TEXT_EMBEDDING")).upper()
            check_model_config("register_model", b)
            with self._lock:
                gid = self._resolve_group("register_model", b) if function == "REMOTE" else None
            if function == "REMOTE":
                with self._lock:
                    if b.get("connector_id") and b["connector_id"] not in self.connectors:
                        raise _err("register_model", b["name"], 404, "Failed to find connector")
                    if not b.get("connector_id") and not b.get("connector"):
                        raise _err("register_model", b["name"], 400, "connector is required for a remote model")
                    if b.get("connector") and not any(str(a.get("action_type")).upper() == "PREDICT"
                                                      for a in b["connector"].get("actions") or []):
                        raise _err("register_model", b["name"], 400, "Connector endpoint is required when creating "
                                   "a remote model without connector id!", "illegal_argument_exception")
                self._enter_register("register_model", gid)
                try:
                    with self._lock:
                        mid, model = self._new_model(b, gid, "REGISTERED")
                        model.pop("is_enabled", None)     # 2.x drops it for remote registrations
                        tid = self._new_id("task")
                        self.tasks[tid] = {"state": "COMPLETED", "task_type": "REGISTER_MODEL", "function_name":
                                           "REMOTE", "model_id": mid, "_model": mid, "_group": gid, "_polls": 0,
                                           "create_time": self._now_ms()}
                        return RegisterResult(task_id=tid, model_id=mid)
                finally:
                    self._leave_register(gid)
            # URL
            if not b.get("model_format"):
                raise _err("register_model", b["name"], 400, "model format is null", "illegal_argument_exception")
            if not b.get("url"):
                raise _err("register_model", b["name"], 400, "fake: pretrained models need the internet")
            with self._lock:
                tid = self._new_id("task")
                task = {"state": "CREATED", "task_type": "REGISTER_MODEL", "function_name": function,
                        "create_time": self._now_ms(), "_polls": self.task_polls, "_model": None, "_group": None}
                self.tasks[tid] = task
                gid = b.get("model_group_id")
                if gid and gid not in self.groups:
                    task.update(state="FAILED", error="Model group not found")
                    return RegisterResult(task_id=tid, model_id=None)
                gid = self._resolve_group("register_model", b)
                task["_group"] = gid
                if self._inflight_url.get(gid):   # a registration into this group is still running
                    task["_fail"] = f"Document version conflict updating {gid}"
                    self.max_group_concurrency = max(self.max_group_concurrency, 2)
                    return RegisterResult(task_id=tid, model_id=None)
                self._inflight_url[gid] = tid
                mid, model = self._new_model(b, gid, "REGISTERING")
                task["_model"] = mid
                if not b.get("model_content_hash_value"):
                    task["_fail"] = "model content hash value is required"
                elif b["name"] in self._failing_tasks:
                    task["_fail"] = self._failing_tasks[b["name"]]
                return RegisterResult(task_id=tid, model_id=None)
        return self._call("register_model", (body,), run, key=body.get("name"))

    def register_model_meta(self, body: dict) -> str:
        def run() -> str:
            b = self._body("register_model_meta", body)
            for key in ("name", "model_format", "model_content_hash_value", "total_chunks"):
                if not b.get(key):
                    raise _err("register_model_meta", b.get("name", "-"), 400, f"{key} is null")
            with self._lock:
                gid = self._resolve_group("register_model_meta", b)
            self._enter_register("register_model_meta", gid)
            try:
                with self._lock:
                    mid, _ = self._new_model(b, gid, "REGISTERING")
                    self.chunks[mid] = {}
                    return mid
            finally:
                self._leave_register(gid)
        return self._call("register_model_meta", (body,), run, key=body.get("name"))

    def upload_chunk(self, model_id: str, chunk_number: int, data: bytes) -> None:
        def run() -> None:
            with self._lock:
                m = self.models.get(model_id)
                if m is None:
                    raise _err("upload_chunk", model_id, 404, "Failed to find model")
                if chunk_number >= m["total_chunks"]:
                    raise _err("upload_chunk", model_id, 500, "Chunk number exceeds total chunks")
                if not 0 < len(data) <= MAX_CHUNK:
                    raise _err("upload_chunk", model_id, 500, "Chunk size exceeds 10MB" if data else "Empty chunk")
                self.chunks.setdefault(model_id, {})[chunk_number] = bytes(data)
                self.chunk_log.append((model_id, chunk_number, len(data)))
                if chunk_number == m["total_chunks"] - 1:   # re-indexed from scratch, REGISTERED
                    for key in DROPPED_BY_LAST_CHUNK:
                        m.pop(key, None)
                    m["model_state"] = "REGISTERED"
        self._call("upload_chunk", (model_id, chunk_number, data), run, oid=model_id)

    def update_model(self, model_id: str, body: dict) -> None:
        def run() -> None:
            b = self._body("update_model", body)
            with self._lock:
                m = self.models.get(model_id)
                if m is None:
                    raise _err("update_model", model_id, 404, "Failed to find model to update")
                if m["algorithm"] not in ("TEXT_EMBEDDING", "REMOTE"):
                    raise _err("update_model", model_id, 403, f"The function category {m['algorithm']} is not "
                                                              f"supported at this time.", "status_exception")
                if m["model_state"] == "DEPLOYING":
                    raise _err("update_model", model_id, 409, "Model is deploying", "status_exception")
                for key in ("function_name", "model_format", "model_content_hash_value", "version", "url",
                            "model_group_id", "total_chunks", "model_content_size_in_bytes"):
                    b.pop(key, None)
                if "rate_limiter" in b and isinstance(m.get("rate_limiter"), dict):
                    b["rate_limiter"] = {**m["rate_limiter"], **b["rate_limiter"]}
                if "model_config" in b:
                    check_model_config("update_model", {**b, "function_name": m["algorithm"]})
                b.update(server_model_fields(b))
                if isinstance(b.get("connector"), dict):
                    # HttpConnector.update: fields sent replace, parameters merge key by key (a 500
                    # NullPointerException when the stored connector has none), actions and
                    # client_config replace.
                    inline = dict(b["connector"])
                    if "credential" in inline:
                        self.credentials[model_id] = inline.pop("credential")
                    old = copy.deepcopy(m.get("connector") or {})
                    params = inline.pop("parameters", None)
                    if params:
                        if old.get("parameters") is None:
                            raise _err("update_model", model_id, 500, 'Cannot invoke "java.util.Map.putAll(java.util.'
                                       'Map)" because the return value of "org.opensearch.ml.common.connector.'
                                       'HttpConnector.getParameters()" is null', "null_pointer_exception")
                        old["parameters"].update(server_parameters(params))
                    inline = server_connector(inline)
                    if not inline.get("actions"):
                        inline.pop("actions", None)
                    b["connector"] = {**old, **{k: v for k, v in inline.items() if v is not None}}
                m.update(b)
                m["model_id"] = model_id
                m["last_updated_time"] = self._now_ms()
        self._call("update_model", (model_id, body), run, oid=model_id)

    def deploy_model(self, model_id: str, settle: bool = True) -> Optional[str]:
        def run() -> Optional[str]:
            with self._lock:
                m = self.models.get(model_id)
                if m is None:
                    raise _err("deploy_model", model_id, 404, "Failed to find model")
                if m["model_state"] == "REGISTERING":
                    raise _err("deploy_model", model_id, 400, "Model is not registered yet")
                fail = self._failing_deploys.get(m["name"])
                if m["algorithm"] == "REMOTE" or not self.local_deploy_async:
                    if fail:
                        raise _err("deploy_model", model_id, 500, fail)
                    m["model_state"] = "DEPLOYED"
                    if self.remote_settle_reads and m["algorithm"] == "REMOTE":
                        m["model_state"] = "DEPLOYING"
                        self._settling[model_id] = self.remote_settle_reads
                    return None
                m["model_state"] = "DEPLOYING"
                tid = self._new_id("task")
                self.tasks[tid] = {"state": "CREATED", "task_type": "DEPLOY_MODEL", "function_name": m["algorithm"],
                                   "model_id": model_id, "_model": model_id, "_group": m["model_group_id"],
                                   "_polls": self.deploy_polls, "_fail": fail, "create_time": self._now_ms()}
                return tid
        return self._call("deploy_model", (model_id,), run, oid=model_id)

    def undeploy_model(self, model_id: str) -> None:
        def run() -> None:
            with self._lock:
                m = self.models.get(model_id)
                if m is not None:
                    m["model_state"] = "UNDEPLOYED"
        self._call("undeploy_model", (model_id,), run, oid=model_id)

    def delete_model(self, model_id: str) -> None:
        def run() -> None:
            with self._lock:
                m = self.models.get(model_id)
                if m is None:
                    return
                if m["model_state"] in DEPLOYED:
                    raise _err("delete_model", model_id, 400, "Model cannot be deleted in deploying or deployed "
                                                              "state. Try undeploy model first then delete")
                del self.models[model_id]
                self.chunks.pop(model_id, None)
        self._call("delete_model", (model_id,), run, oid=model_id)

    # ------------------------------------------------------------------ state document

    @property
    def states(self) -> dict[str, StateDocument]:
        """stack -> its state as one document (a layout-2 head joined with its parts), for assertions."""
        with self._lock:
            return {stack: self._joined(stack) for stack in self.state_heads}

    def _joined(self, stack: str) -> StateDocument:
        doc = self.state_heads[stack]
        if not is_split(doc.body):
            return StateDocument(copy.deepcopy(doc.body), doc.seq_no, doc.primary_term)
        parts = {pid: copy.deepcopy(p) for pid, p in self.state_parts.items() if p.get("stack") == stack}
        return StateDocument(join(copy.deepcopy(doc.body), parts), doc.seq_no, doc.primary_term, parts)

    def read_state(self, stack: str) -> Optional[StateDocument]:
        def run() -> Optional[StateDocument]:
            with self._lock:
                return self._joined(stack) if stack in self.state_heads else None
        return self._call("read_state", (stack,), run, key=stack)

    def write_state(self, stack: str, body: dict, seq_no: Optional[int], primary_term: Optional[int],
                    parts: Optional[dict] = None) -> StateDocument:
        """The head, conditionally; then the parts (like the real edge: only once the head landed)."""
        def run() -> StateDocument:
            json.dumps(body)
            json.dumps(parts)
            with self._lock:
                cur = self.state_heads.get(stack)
                if seq_no is None and cur is not None:
                    raise StateConflict(f"state of {stack!r} already exists")
                if seq_no is not None and (cur is None or (cur.seq_no, cur.primary_term) != (seq_no, primary_term)):
                    raise StateConflict(f"state of {stack!r} changed (seq_no)")
                doc = StateDocument(copy.deepcopy(body), next(self._seq) + 1000, 1)
                self.state_heads[stack] = doc
                self._put_parts(parts or {})
                return StateDocument(copy.deepcopy(body), doc.seq_no, doc.primary_term)
        return self._call("write_state", (stack, body, seq_no, primary_term), run, key=stack)

    def write_state_parts(self, stack: str, parts: dict, replace: bool = False) -> None:
        def run() -> None:
            json.dumps(parts)
            with self._lock:
                if replace:
                    for pid in [pid for pid, p in self.state_parts.items() if p.get("stack") == stack]:
                        self.state_parts.pop(pid, None)
                self._put_parts(parts)
        return self._call("write_state_parts", (stack, parts, replace), run, key=stack)

    def _put_parts(self, parts: dict) -> None:
        for pid, p in parts.items():
            if p is None:
                self.state_parts.pop(pid, None)
            else:
                self.state_parts[pid] = copy.deepcopy(p)

    def search_states(self) -> dict[str, dict]:
        def run() -> dict[str, dict]:
            with self._lock:
                return {stack: self._joined(stack).body for stack in self.state_heads}
        return self._call("search_states", (), run)
