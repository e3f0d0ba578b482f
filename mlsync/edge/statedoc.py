"""The stack's state document on the cluster: one document per stack in a hidden index, written
with optimistic concurrency (seq_no / primary_term), so two applies cannot both win. The lease
lock and the file backend live in mlsync.edge.statestore, over this port."""

from __future__ import annotations

from typing import Optional

from mlsync.core.errors import ClusterError, StateConflict
from mlsync.core.observed import StateDocument
from mlsync.edge.reads import _hits, field, mapping
from mlsync.edge.transport import UsesTransport, is_index_missing

STATE_INDEX = "mlsync-state"
_STATES_PAGE = 10_000             # stacks per page of `search_states` (index.max_result_window)


class StateDoc(UsesTransport):
    """read_state / write_state over the hidden index `state_index` (set by `Cluster`), created on
    the first write."""

    state_index: str
    _state_index_ready = False

    def read_state(self, stack: str) -> Optional[StateDocument]:
        try:
            resp = self._call("read state", f"stack {stack!r}",
                              lambda: self._client.get(index=self.state_index, id=stack))
        except ClusterError as err:
            if err.status == 404:   # no document, or no index yet
                return None
            raise
        resource = f"stack {stack!r}"
        resp = mapping(resp, "read state", resource)
        if not resp.get("found", True):
            return None
        return StateDocument(body=field(resp, "_source", "read state", resource, dict),
                             seq_no=field(resp, "_seq_no", "read state", resource, int),
                             primary_term=field(resp, "_primary_term", "read state", resource, int))

    def write_state(self, stack: str, body: dict, seq_no: Optional[int], primary_term: Optional[int]) -> StateDocument:
        """Writes the stack's state document. `seq_no` None: it must not exist yet (op_type=create);
        otherwise it must still be at (seq_no, primary_term). Anything else raises StateConflict.

        No `refresh`: the document is only ever read back by GET, which is real-time, and the write is
        durable (translog) when acknowledged; a forced refresh per save cost ~10 ms on every resource.

        The write is conditional, so the transport may re-send it on a transient failure (429, 502-504,
        a reset): at most one copy can land. When an earlier attempt's answer was lost (a reset, a 5xx
        from a proxy) and a re-send then meets a 409, that 409 may be our own write: the document is
        read back, and if it is exactly what we wrote, the write succeeded."""
        resource = f"stack {stack!r}"
        if seq_no is None:
            self._ensure_state_index()
            write = lambda: self._client.index(  # noqa: E731
                index=self.state_index, id=stack, body=body, op_type="create")
        else:
            if primary_term is None:
                raise ValueError("write_state: primary_term is required with seq_no")
            write = lambda: self._client.index(  # noqa: E731
                index=self.state_index, id=stack, body=body, if_seq_no=seq_no, if_primary_term=primary_term)
        failures: list[ClusterError] = []
        try:
            resp = self._transport.call("write state", resource, write, body, failures=failures)
        except ClusterError as err:
            if err.status == 409 and any(f.ambiguous for f in failures[:-1]):
                landed = self._own_write_landed(stack, body)
                if landed is not None:
                    return landed
            if err.status == 409 or (seq_no is not None and is_index_missing(err)):
                raise StateConflict(
                    f"the state of stack {stack!r} was changed by someone else since it was read "
                    f"({err.reason}); re-run to start from the current state") from None
            raise
        # A write that landed but whose answer lacks these is ambiguous (MalformedResponse): the store
        # reads the document back to tell, instead of keeping a stale seq_no that the next save would
        # fail on as if another mlsync had taken over.
        return StateDocument(body=body, seq_no=field(resp, "_seq_no", "write state", resource, int),
                             primary_term=field(resp, "_primary_term", "write state", resource, int))

    def search_states(self) -> dict[str, dict]:
        """Every stack's ownership, in one search over the state index (paged by 10,000 stacks), not a
        GET per stack: stack -> its document's `stack`, `resources.*.id` and journal `address` /
        `object_id` (never the fingerprint key or the applied forms). The index is refreshed first, as
        state documents are written without a refresh and a stack that applied a moment ago must be seen;
        a caller that may not refresh it searches what is visible. No index yet: no stacks."""
        try:
            self._call("refresh", self.state_index, lambda: self._client.indices.refresh(
                index=self.state_index, ignore_unavailable=True, allow_no_indices=True))
        except ClusterError as err:
            if err.status not in (401, 403, 404):
                raise
        out: dict[str, dict] = {}
        after: Optional[list] = None
        while True:
            body: dict = {
                "size": _STATES_PAGE, "query": {"match_all": {}}, "sort": [{"stack": {"order": "asc"}}],
                "track_total_hits": False,
                "_source": {"includes": ["stack", "resources.*.id", "journal.address", "journal.object_id"],
                            "excludes": ["resources.*.applied_form"]},
            }
            if after is not None:
                body["search_after"] = after
            try:
                resp = self._call("search states", self.state_index,
                                  lambda: self._client.search(index=self.state_index, body=body))
            except ClusterError as err:
                if is_index_missing(err):
                    return out
                raise
            hits = _hits(resp, "search states", self.state_index)
            for hit in hits:
                source = hit.get("_source") or {}
                stack = source.get("stack") if isinstance(source.get("stack"), str) else hit["_id"]
                out[stack] = source
            if len(hits) < _STATES_PAGE or not hits[-1].get("sort") or None in hits[-1]["sort"]:
                return out
            after = hits[-1]["sort"]

    def _own_write_landed(self, stack: str, body: dict) -> Optional[StateDocument]:
        """The stored document, if it is exactly `body` (an earlier attempt of this write landed)."""
        try:
            stored = self.read_state(stack)
        except ClusterError:
            return None
        return stored if stored is not None and stored.body == body else None

    def _ensure_state_index(self) -> None:
        if self._state_index_ready:
            return
        body = {
            "settings": {"index": {"hidden": True, "number_of_shards": 1, "number_of_replicas": 0}},
            # addresses (keys) contain dots and quotes: never map the document's fields dynamically
            "mappings": {"dynamic": False, "properties": {"stack": {"type": "keyword"}}},
        }
        try:
            self._call("create state index", self.state_index,   # retried: "already exists" is fine below
                       lambda: self._client.indices.create(index=self.state_index, body=body))
        except ClusterError as err:
            if not (err.status == 400 and err.error_type == "resource_already_exists_exception"):
                raise
        self._state_index_ready = True
