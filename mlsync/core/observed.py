"""What mlsync read from the cluster, as plain data, and the port the adapter implements.

The adapter (`mlsync.edge.cluster.Cluster`) is the only code that talks to OpenSearch; the executor and the
CLI depend on the `ClusterPort` protocol below, so tests can plug in a fake (`tests/fakes.py`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol


@dataclass(frozen=True)
class ObservedObject:
    kind: str                      # "connector" | "model_group" | "model"
    id: str                        # the server's id (search hit _id)
    source: dict                   # the hit's _source as the server returned it (never credentials)
    seq_no: Optional[int] = None
    primary_term: Optional[int] = None

    @property
    def fingerprint(self) -> str:
        """Changes whenever the stored document changes; saved in plan files to refuse stale plans."""
        if self.seq_no is not None and self.primary_term is not None:
            return f"seq:{self.seq_no}:{self.primary_term}"
        blob = json.dumps(self.source, sort_keys=True, separators=(",", ":"), default=str)
        return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class Observed:
    connectors: dict[str, ObservedObject] = field(default_factory=dict)   # by id
    groups: dict[str, ObservedObject] = field(default_factory=dict)       # by id
    models: dict[str, ObservedObject] = field(default_factory=dict)       # by id; meta docs only, no chunks
    ingest_pipelines: dict[str, ObservedObject] = field(default_factory=dict)   # by pipeline id (every one)
    search_pipelines: dict[str, ObservedObject] = field(default_factory=dict)   # by pipeline id (every one)
    agents: dict[str, ObservedObject] = field(default_factory=dict)       # by agent id (every visible one)
    cluster_version: Optional[str] = None
    model_access_control: bool = False       # access fields on groups are only accepted when True
    connector_access_control: bool = False   # likewise for connectors
    requests: int = 0                        # HTTP requests the observation took

    def fingerprints(self) -> dict[str, str]:
        out = {}
        for objs in (self.connectors, self.groups, self.models, self.agents):
            out.update({i: o.fingerprint for i, o in objs.items()})
        # pipeline ids are the user's: an ingest and a search pipeline may share one
        for kind, objs in (("ingest_pipeline", self.ingest_pipelines), ("search_pipeline", self.search_pipelines)):
            out.update({f"{kind}:{i}": o.fingerprint for i, o in objs.items()})
        return out


@dataclass(frozen=True)
class RegisterResult:
    task_id: Optional[str]
    model_id: Optional[str]        # set at once for remote models; URL models: from the task when COMPLETED


@dataclass(frozen=True)
class StateDocument:
    body: dict                 # the stack's state in one-document form (a layout-2 head joined with its parts)
    seq_no: int                # of the head document
    primary_term: int
    parts: Optional[dict] = None   # layout 2: the part documents as stored, by id (what the next save diffs against)


class ClusterPort(Protocol):
    """Everything mlsync asks of a cluster. Request bodies may contain `Secret` values; the adapter
    reveals them only while serialising the request. Errors raise `mlsync.core.errors.ClusterError`."""

    requests_made: int

    # read
    def observe(self) -> Observed: ...
    def get_model(self, model_id: str) -> Optional[dict]: ...
    def get_models(self, model_ids: list[str]) -> dict[str, dict]: ...         # model id -> doc; unseen ids absent
    def search_tasks(self, task_ids: list[str]) -> dict[str, dict]: ...          # task id -> task doc
    def find_models(self, name: str, group_id: Optional[str]) -> dict[str, dict]: ...  # model meta docs by id

    # connectors
    def create_connector(self, body: dict) -> str: ...
    def update_connector(self, connector_id: str, body: dict) -> None: ...
    def delete_connector(self, connector_id: str) -> None: ...

    # model groups
    def create_group(self, body: dict) -> str: ...
    def update_group(self, group_id: str, body: dict) -> None: ...
    def delete_group(self, group_id: str) -> None: ...   # retries the transient 409 while chunk docs vanish

    # models
    def register_model(self, body: dict) -> RegisterResult: ...
    def register_model_meta(self, body: dict) -> str: ...                        # -> model_id
    def upload_chunk(self, model_id: str, chunk_number: int, data: bytes) -> None: ...
    def update_model(self, model_id: str, body: dict) -> None: ...
    def deploy_model(self, model_id: str, settle: bool = True) -> Optional[str]: ...  # task id (local) or None (remote,
                                                                                  # synchronous; settle: wait for its doc)
    def undeploy_model(self, model_id: str) -> None: ...
    def delete_model(self, model_id: str) -> None: ...                           # a missing model is not an error

    # consumers of models (docs/references.md): pipelines are PUT whole (create or replace) under
    # their own id; agents have no update in 2.19 (register a new one, delete the old one)
    def put_pipeline(self, kind: str, pipeline_id: str, body: dict) -> None: ...   # kind: ingest_pipeline | search_pipeline
    def delete_pipeline(self, kind: str, pipeline_id: str) -> None: ...           # a missing pipeline is not an error
    def register_agent(self, body: dict) -> str: ...                              # -> agent_id
    def delete_agent(self, agent_id: str) -> None: ...                            # a missing agent is not an error

    # the stack's state (index mlsync-state): a head document, and in layout 2 one document per resource
    # and journal entry (mlsync.core.state.split). read_state: the head, joined with its parts when it
    # is layout 2 (reading them sees every acknowledged write). write_state: the head, conditionally on
    # (seq_no, primary_term), then `parts` (id -> body, None deletes) in one bulk request.
    # write_state_parts: parts alone (migration: before the head switches to layout 2); `replace` also
    # deletes the stack's other parts.
    def read_state(self, stack: str) -> Optional[StateDocument]: ...
    def write_state(self, stack: str, body: dict, seq_no: Optional[int], primary_term: Optional[int],
                    parts: Optional[dict] = None) -> StateDocument: ...
    def write_state_parts(self, stack: str, parts: dict, replace: bool = False) -> None: ...
    # every stack's ownership, in one search: stack -> its document's `stack`, `resources` (ids) and `journal`
    def search_states(self) -> dict[str, dict]: ...
