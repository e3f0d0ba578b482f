"""What mlsync reads from the cluster: one `observe()` snapshot in few requests, and the lookups an
apply needs (a model, models by name, tasks).

`observe()` reads every group, connector, model meta doc and agent with paged `_search` calls
(`search_after` on `created_time` + `_id`; `_seq_no` if the cluster refuses `_id` sorting) and every
ingest and search pipeline with one GET each, so its request count is `5 + pages` (a refresh first;
+1 when an access-control setting is on), never one GET per object.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional

from mlsync.core.errors import ClusterError, MalformedResponse
from mlsync.core.observed import Observed, ObservedObject
from mlsync.edge.responses import kind_of, mapping, search_hits
from mlsync.edge.transport import UsesTransport, is_index_missing

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 2000
MAX_PAGE_SIZE = 10_000            # index.max_result_window default: from + size must stay <= 10,000

_MODEL_SOURCE = {"excludes": ["model_content", "content"]}   # own _source drops the server's default exclusion
_NOT_A_CHUNK = {"exists": {"field": "chunk_number"}}


class Reads(UsesTransport):
    """observe(), get_model, find_models, search_tasks. Set by `Cluster`: `page_size`, `parallel_observe`."""

    page_size: int
    parallel_observe: bool
    _tiebreak = "_id"             # second sort key for search_after paging (see _search_all)

    def observe(self) -> Observed:
        """Every model group, connector and model meta doc (no chunk docs, no model_content), the
        every pipeline and agent, the cluster version and whether access control is effective: `5 + pages`
        requests (a refresh first; the agents' search is one of the pages) (+1 when an
        access-control setting is on, to see whether the security plugin is active)."""
        start = self._transport.requests_made
        self._refresh_ml_indices()
        jobs: dict[str, Callable[[], Any]] = {
            "version": self._cluster_version,
            "settings": self._access_control_settings,
            "groups": lambda: self._search_all("model_group", self._ml.search_model_group, {"match_all": {}}),
            "connectors": lambda: self._search_all("connector", self._ml.search_connectors, {"match_all": {}}),
            "models": lambda: self._search_all("model", self._ml.search_models,
                                               {"bool": {"must_not": [_NOT_A_CHUNK]}}, source=_MODEL_SOURCE),
            # consumers of models (docs/references.md): every pipeline in one GET each, agents paged
            "ingest_pipelines": lambda: self._pipelines("ingest_pipeline"),
            "search_pipelines": lambda: self._pipelines("search_pipeline"),
            "agents": lambda: self._search_all("agent", self._ml.search_agents, {"match_all": {}}),
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
            ingest_pipelines=results["ingest_pipelines"],
            search_pipelines=results["search_pipelines"],
            agents=self._objects("agent", results["agents"]),
            cluster_version=results["version"],
            model_access_control=bool(model_setting and security),
            connector_access_control=bool(connector_setting and security),
            requests=self._transport.requests_made - start,
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

    def _pipelines(self, kind: str) -> dict[str, ObservedObject]:
        """Every ingest or search pipeline: one GET, `{id: body}`. A cluster without any answers 404 `{}`
        (model-consumers.md, trap 2), which is no pipelines, not an error."""
        what = "ingest pipelines" if kind == "ingest_pipeline" else "search pipelines"
        get = self._client.ingest.get_pipeline if kind == "ingest_pipeline" else self._client.search_pipeline.get
        try:
            resp = self._call("read", what, lambda: get())
        except ClusterError as err:
            if err.status == 404:
                return {}
            raise
        out = {}
        for pid, body in mapping(resp, "read", what).items():
            if not isinstance(body, dict):
                raise MalformedResponse("read", what, pid, f"is {kind_of(body)}, not a JSON object")
            out[pid] = ObservedObject(kind=kind, id=pid, source=body)
        return out

    def _refresh_ml_indices(self) -> None:
        """Group, connector and model updates are written without a refresh, so a search right after an
        apply would read the old documents (docs/ml-commons-notes.md). One refresh makes the plan read
        what was just written. No ML Commons API refreshes (its searches read what the last refresh
        made visible, and GET, which is real-time, is one request per object), so this is mlsync's one
        direct access to the ML system indices. The node answers it with a "this request accesses system
        indices" Warning header, which the transport sends to the debug log, never to the terminal.
        Where the caller may not refresh system indices (a secured cluster: 403 for a user without
        `indices:admin/refresh` there, docs/permissions.md), plan on what is visible: at worst an
        update made in the last second reads as not yet applied."""
        try:
            self._call("refresh", "ML indices", lambda: self._client.indices.refresh(
                index=".plugins-ml-model,.plugins-ml-connector,.plugins-ml-model-group",
                ignore_unavailable=True, allow_no_indices=True))
        except ClusterError as err:
            if err.status not in (401, 403, 404):
                raise

    # ------------------------------------------------------------------ probes

    def _cluster_version(self) -> Optional[str]:
        info = mapping(self._call("read", "cluster info", lambda: self._client.info()), "read", "cluster info")
        version = mapping(info.get("version"), "read", "cluster info")
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
                node = mapping(resp, "read", "cluster settings").get(section) or {}
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

    # ------------------------------------------------------------------ paging

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
                if is_index_missing(err):
                    return hits_out
                if after is None and self._tiebreak == "_id" and self._id_sort_refused(err):
                    log.info("cluster refuses sorting on _id (%s); paging on _seq_no", err.reason)
                    self._tiebreak = "_seq_no"
                    continue
                raise
            hits = search_hits(resp, operation, "(all)")
            hits_out.extend(hits)
            if len(hits) < size or "sort" not in hits[-1]:
                return hits_out
            after = hits[-1]["sort"]

    @staticmethod
    def _id_sort_refused(err: ClusterError) -> bool:
        reason = (err.reason or "").lower()
        return err.status in (400, 500) and (
            "_id" in reason or "fielddata" in reason or reason.startswith("fail to search"))

    # ------------------------------------------------------------------ lookups

    def get_model(self, model_id: str) -> Optional[dict]:
        try:
            resp = self._call("get model", model_id, lambda: self._ml.get_model(model_id=model_id))
        except ClusterError as err:
            if err.status == 404:
                return None
            raise
        return mapping(resp, "get model", model_id)

    def get_models(self, model_ids: list[str]) -> dict[str, dict]:
        """model id -> model doc for many models: one refresh of the ML indices (so that, like GET, it
        reads what was just written), then one search per 10,000 ids. Ids that do not exist (or that a
        search cannot see yet, where the refresh is not allowed) are absent: callers fall back to GET."""
        ids = list(dict.fromkeys(m for m in model_ids if m))
        if not ids:
            return {}
        self._refresh_ml_indices()
        return self._by_ids("models", self._ml.search_models, ids)

    def find_models(self, name: str, group_id: Optional[str]) -> dict[str, dict]:
        """Model meta docs called exactly `name` (within `group_id` if given), by id — for crash recovery.
        Reads its own writes: the ML indices are refreshed first, so a model registered a moment ago
        (whose response was lost) is found rather than registered twice."""
        self._refresh_ml_indices()
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
        return self._by_ids("tasks", self._ml.search_tasks, list(dict.fromkeys(t for t in task_ids if t)))

    def _by_ids(self, what: str, search: Callable[..., Any], ids: list[str]) -> dict[str, dict]:
        """id -> _source of the documents with these ids, one `_search` per 10,000 (a missing index: none)."""
        out: dict[str, dict] = {}
        for i in range(0, len(ids), MAX_PAGE_SIZE):
            batch = ids[i:i + MAX_PAGE_SIZE]
            body = {"size": len(batch), "query": {"ids": {"values": batch}}, "track_total_hits": False}
            try:
                resp = self._call(f"search {what}", f"{len(batch)} {what}", lambda: search(body=body))
            except ClusterError as err:
                if is_index_missing(err):
                    continue
                raise
            for hit in search_hits(resp, f"search {what}", f"{len(batch)} {what}"):
                out[hit["_id"]] = hit.get("_source") or {}
        return out
