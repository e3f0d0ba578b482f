"""The stack's state on the cluster, in a hidden index: a head document per stack, written with
optimistic concurrency (seq_no / primary_term) so two applies cannot both win, and in layout 2
(mlsync.core.state.split) one document per managed resource and per journal entry, written after
the head in one `_bulk`. The lease lock and the file backend live in mlsync.edge.statestore, over
this port; the layout and why it is safe: docs/architecture.md, "State and secrets"."""

from __future__ import annotations

from typing import Optional

from mlsync.core.errors import ClusterError, MalformedResponse, StateConflict
from mlsync.core.observed import StateDocument
from mlsync.core.state import StatePartsNotWritten, head_of, is_split, join
from mlsync.edge.responses import field, mapping, search_hits
from mlsync.edge.transport import UsesTransport, is_index_missing

STATE_INDEX = "mlsync-state"
_STATES_PAGE = 10_000             # documents per page of a search of the state index (index.max_result_window)
_BULK_OPS = 2_000                 # part writes per `_bulk` request


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
        head = field(resp, "_source", "read state", resource, dict)
        seq_no = field(resp, "_seq_no", "read state", resource, int)
        primary_term = field(resp, "_primary_term", "read state", resource, int)
        if not is_split(head):
            return StateDocument(body=head, seq_no=seq_no, primary_term=primary_term)
        parts = self._read_parts(stack)
        return StateDocument(body=join(head, parts), seq_no=seq_no, primary_term=primary_term, parts=parts)

    def _read_parts(self, stack: str) -> dict[str, dict]:
        """The stack's part documents by id: a refresh of the state index (parts are written without
        one, and a search only sees refreshed documents: this is what makes every acknowledged write
        visible), then one search per 10,000 parts. Unlike `search_states`, a refused refresh is an
        error: a state read without it could miss the last save's parts."""
        resource = f"stack {stack!r}"
        try:
            self._call("refresh state", self.state_index, lambda: self._client.indices.refresh(
                index=self.state_index))
        except ClusterError as err:
            if is_index_missing(err):
                return {}
            raise
        out: dict[str, dict] = {}
        after: Optional[list] = None
        while True:
            body: dict = {
                "size": _STATES_PAGE, "track_total_hits": False, "sort": [{"_seq_no": {"order": "asc"}}],
                "query": {"bool": {"filter": [{"term": {"stack": stack}}], "must_not": [{"ids": {"values": [stack]}}]}},
            }
            if after is not None:
                body["search_after"] = after
            resp = self._call("read state parts", resource,
                              lambda: self._client.search(index=self.state_index, body=body))
            hits = search_hits(resp, "read state parts", resource)
            for hit in hits:
                out[hit["_id"]] = hit.get("_source") or {}
            if len(hits) < _STATES_PAGE or not hits[-1].get("sort"):
                return out
            after = hits[-1]["sort"]

    def write_state_parts(self, stack: str, parts: dict, replace: bool = False) -> None:
        """Writes part documents (id -> body; None deletes), new and changed ones before deletions, in
        `_bulk` requests of up to 2,000 (refresh: false; read_state refreshes). `replace`: every other
        part of the stack is deleted too (a migration that starts over). Any item that failed raises
        ClusterError; a deletion of a part that is not there is not a failure."""
        resource = f"stack {stack!r}"
        if replace:
            parts = {**parts, **{pid: None for pid in self._read_parts(stack) if pid not in parts}}
        ops: list[dict] = []
        for pid, body in parts.items():
            if body is not None:
                ops += [{"index": {"_id": pid}}, body]
        for pid, body in parts.items():
            if body is None:
                ops.append({"delete": {"_id": pid}})
        if not ops:
            return
        self._ensure_state_index()
        start = 0
        while start < len(ops):   # requests in order: a crash leaves a prefix (writes before deletions)
            end = start
            count = 0
            while end < len(ops) and count < _BULK_OPS:
                end += 2 if "index" in ops[end] else 1
                count += 1
            chunk = ops[start:end]
            resp = mapping(self._call("write state parts", resource, lambda: self._client.bulk(
                body=chunk, index=self.state_index, refresh="false")), "write state parts", resource)
            if resp.get("errors"):
                for item in resp.get("items") or []:
                    action, result = next(iter(item.items())) if isinstance(item, dict) and item else ("?", {})
                    result = result if isinstance(result, dict) else {}
                    error = result.get("error")
                    if error is None:
                        continue
                    reason = error.get("reason", str(error)) if isinstance(error, dict) else str(error)
                    kind = error.get("type") if isinstance(error, dict) else None
                    raise ClusterError("write state parts", f"{resource} ({action} {result.get('_id')})",
                                       result.get("status"), reason, kind)
                raise MalformedResponse("write state parts", resource, "items", "reports errors but names none")
            start = end

    def write_state(self, stack: str, body: dict, seq_no: Optional[int], primary_term: Optional[int],
                    parts: Optional[dict] = None) -> StateDocument:
        """Writes the stack's state (head) document. `seq_no` None: it must not exist yet (op_type=create);
        otherwise it must still be at (seq_no, primary_term). Anything else raises StateConflict.
        Then, only once the head has landed (so a writer whose lease was taken over never writes a
        part), `parts` go out through `write_state_parts`; if they fail, `StatePartsNotWritten`
        says so and carries the head's new (seq_no, primary_term).

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
                    return self._write_parts_after(stack, landed, parts)
            if err.status == 409 or (seq_no is not None and is_index_missing(err)):
                raise StateConflict(
                    f"the state of stack {stack!r} was changed by someone else since it was read "
                    f"({err.reason}); re-run to start from the current state") from None
            raise
        # A write that landed but whose answer lacks these is ambiguous (MalformedResponse): the store
        # reads the document back to tell, instead of keeping a stale seq_no that the next save would
        # fail on as if another mlsync had taken over.
        doc = StateDocument(body=body, seq_no=field(resp, "_seq_no", "write state", resource, int),
                            primary_term=field(resp, "_primary_term", "write state", resource, int))
        return self._write_parts_after(stack, doc, parts)

    def _write_parts_after(self, stack: str, head: StateDocument, parts: Optional[dict]) -> StateDocument:
        if parts:
            try:
                self.write_state_parts(stack, parts)
            except ClusterError as err:
                raise StatePartsNotWritten(stack, head.seq_no, head.primary_term, err) from err
        return head

    def search_states(self) -> dict[str, dict]:
        """Every stack's ownership, in one search over the state index (paged by 10,000 documents), not
        a GET per stack: stack -> `stack`, `resources` (address -> {id}) and `journal` (address,
        object_id), from layout-1 documents and from layout-2 heads with their parts alike (never the
        fingerprint key or the applied forms). The index is refreshed first, as state documents are
        written without a refresh and a stack that applied a moment ago must be seen; a caller that may
        not refresh it searches what is visible. No index yet: no stacks. Parts of a stack whose head
        is not layout 2 (a migration that did not finish) are left out: its head is what counts."""
        try:
            self._call("refresh", self.state_index, lambda: self._client.indices.refresh(
                index=self.state_index, ignore_unavailable=True, allow_no_indices=True))
        except ClusterError as err:
            if err.status not in (401, 403, 404):
                raise
        out: dict[str, dict] = {}
        heads: dict[str, dict] = {}
        parts: dict[str, dict[str, dict]] = {}
        after: Optional[list] = None
        while True:
            body: dict = {
                "size": _STATES_PAGE, "query": {"match_all": {}}, "track_total_hits": False,
                "sort": [{"stack": {"order": "asc"}}, {"_seq_no": {"order": "asc"}}],
                "_source": {"includes": ["stack", "layout", "gen", "part", "n", "address", "id", "object_id",
                                         "resources.*.id", "journal.address", "journal.object_id"],
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
            hits = search_hits(resp, "search states", self.state_index)
            for hit in hits:
                source = hit.get("_source") or {}
                stack = source.get("stack") if isinstance(source.get("stack"), str) else hit["_id"]
                if "part" in source:
                    parts.setdefault(stack, {})[hit["_id"]] = source
                else:
                    heads[stack] = source
            if len(hits) < _STATES_PAGE or not hits[-1].get("sort") or None in hits[-1]["sort"]:
                break
            after = hits[-1]["sort"]
        for stack, head in heads.items():
            if not is_split(head):
                out[stack] = {k: v for k, v in head.items() if k not in ("layout", "gen")}
                continue
            joined = join(head, parts.get(stack, {}))
            out[stack] = {"stack": stack}
            if joined["resources"]:
                out[stack]["resources"] = {a: {k: v for k, v in r.items() if k != "address"}
                                           for a, r in joined["resources"].items()}
            if joined["journal"]:
                out[stack]["journal"] = joined["journal"]
        return out

    def _own_write_landed(self, stack: str, body: dict) -> Optional[StateDocument]:
        """The stored document, if it is exactly `body` (an earlier attempt of this write landed)."""
        try:
            stored = self.read_state(stack)
        except ClusterError:
            return None
        return stored if stored is not None and head_of(stored.body) == body else None

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
