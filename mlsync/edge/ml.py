"""The ML Commons calls that change the cluster: connectors, model groups and models.

Each call knows which answers mean "already done" (a missing object on delete, a gone model on
undeploy), which are transient (a group still busy with chunk docs, a remote deploy not yet
settled) and whether it may be retried: calls that create something go through the client that
never retries (see mlsync.edge.transport). `upload_chunk` passes its `bytes` body through
opensearch-py untouched with the connection's default `Content-Type: application/json`, which is
what the server needs.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable, Optional

from mlsync.core.errors import ClusterError
from mlsync.core.observed import RegisterResult
from mlsync.core.polling import GROUP_DELETE, SETTLE, Timeout, poll_until
from mlsync.edge.responses import field, mapping
from mlsync.edge.transport import UsesTransport, is_index_missing

log = logging.getLogger(__name__)


def _named(body: Any) -> str:
    name = body.get("name") if isinstance(body, dict) else None
    return json.dumps(name) if isinstance(name, str) else "(unnamed)"


class MLCalls(UsesTransport):
    """Create/update/delete connectors and groups; register, upload, update, deploy, undeploy and
    delete models. Set by `Cluster`: `delete_group_retry_seconds`, `deploy_settle_seconds`."""

    delete_group_retry_seconds: float
    deploy_settle_seconds: float
    get_model: Callable[[str], Optional[dict]]     # from Reads

    # ------------------------------------------------------------------ connectors

    def create_connector(self, body: dict) -> str:
        resp = self._call("create connector", _named(body), lambda: self._ml_once.create_connector(body=body), body)
        return field(resp, "connector_id", "create connector", _named(body))

    def update_connector(self, connector_id: str, body: dict) -> None:
        self._call("update connector", connector_id,
                   lambda: self._ml.update_connector(connector_id=connector_id, body=body), body)

    def delete_connector(self, connector_id: str) -> None:
        """A missing connector is not an error (the server answers 200 result:not_found, or an
        index-not-found error while no connector index exists)."""
        try:
            self._call("delete connector", connector_id, lambda: self._ml.delete_connector(connector_id=connector_id))
        except ClusterError as err:
            if err.status != 404 and not is_index_missing(err):
                raise

    # ------------------------------------------------------------------ model groups

    def create_group(self, body: dict) -> str:
        resp = self._call("create model group", _named(body), lambda: self._ml_once.register_model_group(body=body),
                          body)
        return field(resp, "model_group_id", "create model group", _named(body))

    def update_group(self, group_id: str, body: dict) -> None:
        self._call("update model group", group_id,
                   lambda: self._ml.update_model_group(model_group_id=group_id, body=body), body)

    def delete_group(self, group_id: str) -> None:
        """Deletes a group; a missing one is fine (200 result:not_found). The 409 "has associated model
        versions" is retried for `delete_group_retry_seconds`: after a model delete its chunk docs are
        removed by a non-refreshing delete-by-query and keep the group busy for a moment.

        Each attempt waits first until a count of the group's chunk docs reads 0: the server answers a
        group delete by searching the group's documents with their whole source (ML Commons 2.19,
        `DeleteModelGroupTransportAction.checkForAssociatedModels`, up to 10 hits), and ten 10 MB
        chunks of a deleted upload, base64 and stringified, ran a 1 GB-heap node out of memory
        (docs/ml-commons-notes.md §4). The count (size 0) carries no source."""

        def attempt() -> Optional[ClusterError]:      # None: deleted (or already gone); else the 409
            if self._group_chunks(group_id):
                return ClusterError("delete model group", group_id, 409,
                                    "chunk documents of its deleted models are still being removed")
            try:
                self._call("delete model group", group_id,
                           lambda: self._ml.delete_model_group(model_group_id=group_id))
            except ClusterError as err:
                if err.status == 409:
                    return err
                if err.status != 404:
                    raise
            return None

        try:
            poll_until(attempt, lambda busy: busy is None, policy=GROUP_DELETE,
                       deadline=time.monotonic() + self.delete_group_retry_seconds,
                       clock=time.monotonic, sleep=time.sleep)
            return
        except Timeout as out:
            last = out.last
        raise last    # outside the except block: the 409 travels without the Timeout as its context

    def _group_chunks(self, group_id: str) -> int:
        """How many chunk docs (of `upload_chunk` models: URL models' chunks carry no group) the
        group has; 0 when they cannot be counted (no model index, no permission to search it): the
        count only protects the node, the delete itself decides."""
        body = {"size": 0, "track_total_hits": True, "query": {"bool": {"filter": [
            {"term": {"model_group_id": group_id}}, {"exists": {"field": "chunk_number"}}]}}}
        try:
            resp = self._call("count chunk documents", group_id, lambda: self._ml.search_models(body=body))
        except ClusterError as err:
            log.debug("group %s: chunk documents not counted: %s", group_id, err)
            return 0
        total = mapping(mapping(resp, "count chunk documents", group_id).get("hits"), "count chunk documents",
                        group_id).get("total")
        return int(total.get("value", 0)) if isinstance(total, dict) else int(total or 0)

    # ------------------------------------------------------------------ models

    def register_model(self, body: dict) -> RegisterResult:
        """URL models: a task id (the model id comes with the COMPLETED task); remote: both at once."""
        resp = mapping(self._call("register model", _named(body), lambda: self._ml_once.register_model(body=body),
                                  body), "register model", _named(body))
        if resp.get("model_id") is not None:      # remote: the model exists already
            return RegisterResult(task_id=resp.get("task_id") or None,
                                  model_id=field(resp, "model_id", "register model", _named(body)))
        return RegisterResult(task_id=field(resp, "task_id", "register model", _named(body)), model_id=None)

    def register_model_meta(self, body: dict) -> str:
        resp = self._call("register model meta", _named(body),
                          lambda: self._ml_once.register_model_meta(body=body), body)
        return field(resp, "model_id", "register model meta", _named(body))

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

    def deploy_model(self, model_id: str, settle: bool = True) -> Optional[str]:
        """Local models: the deploy task id to poll. Remote models deploy synchronously: the server
        answers status COMPLETED (its task doc is COMPLETED too); this waits until the model doc
        says so as well (unless `settle` is False: the caller waits for many at once, with
        `get_models`) and returns None."""
        resp = mapping(self._call("deploy model", model_id, lambda: self._ml.deploy_model(model_id=model_id)),
                       "deploy model", model_id)
        if str(resp.get("status", "")).upper() == "COMPLETED":
            if settle:
                self._settle_deploy(model_id)
            return None
        return field(resp, "task_id", "deploy model", model_id)

    def _settle_deploy(self, model_id: str) -> None:
        """The server answers a remote deploy with COMPLETED a few ms before the model doc leaves
        DEPLOYING (and Update Model refuses a DEPLOYING model with 409): wait for the doc, briefly."""
        try:
            poll_until(lambda: self.get_model(model_id),
                       lambda doc: doc is None or doc.get("model_state") not in ("DEPLOYING", "LOADING"),
                       policy=SETTLE, deadline=time.monotonic() + self.deploy_settle_seconds,
                       clock=time.monotonic, sleep=time.sleep)
        except Timeout:
            log.warning("model %s still DEPLOYING %.0fs after a completed deploy", model_id,
                        self.deploy_settle_seconds)

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
            if err.status == 404 or is_index_missing(err):
                return
            if err.status == 500 and "not all cleaned up" in (err.reason or ""):
                log.debug("model %s: already deleted, chunk docs still being removed", model_id)
                return
            raise

    # ------------------------------------------------------------------ consumers: pipelines and agents

    def put_pipeline(self, kind: str, pipeline_id: str, body: dict) -> None:
        """PUT the whole pipeline: create or replace, the same answer for both (idempotent)."""
        if kind == "ingest_pipeline":
            self._call("put ingest pipeline", pipeline_id,
                       lambda: self._client.ingest.put_pipeline(id=pipeline_id, body=body), body)
        else:
            self._call("put search pipeline", pipeline_id,
                       lambda: self._client.search_pipeline.put(id=pipeline_id, body=body), body)

    def delete_pipeline(self, kind: str, pipeline_id: str) -> None:
        """A missing pipeline (404 "pipeline [x] is missing") is not an error."""
        what = "ingest" if kind == "ingest_pipeline" else "search"
        call = (self._client.ingest.delete_pipeline if kind == "ingest_pipeline"
                else self._client.search_pipeline.delete)
        try:
            self._call(f"delete {what} pipeline", pipeline_id, lambda: call(id=pipeline_id))
        except ClusterError as err:
            if err.status != 404:
                raise

    def register_agent(self, body: dict) -> str:
        resp = self._call("register agent", _named(body), lambda: self._ml_once.register_agents(body=body), body)
        return field(resp, "agent_id", "register agent", _named(body))

    def delete_agent(self, agent_id: str) -> None:
        """A missing agent (404, or no agent index yet) is not an error."""
        try:
            self._call("delete agent", agent_id, lambda: self._ml.delete_agent(agent_id=agent_id))
        except ClusterError as err:
            if err.status != 404 and not is_index_missing(err):
                raise
