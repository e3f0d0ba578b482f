"""`Cluster`: the one object that implements `mlsync.core.observed.ClusterPort` over OpenSearch.

It is composed of the edge's four parts (facts behind them: docs/ml-commons-notes.md):

- `transport.py`: connection options, the two opensearch-py clients (retrying and once), secret
  handling, error translation and the request counter; every request goes through its `call`.
- `reads.py`: `observe()` with paged searches, the cluster probes, get_model, find_models, search_tasks.
- `ml.py`: connector, model group and model calls.
- `statedoc.py`: the stack's state document in a hidden index.

The reads, ML calls and state document are mixins over one `Transport`; this class owns it and
their settings.
"""

from __future__ import annotations

from typing import Any, Optional

from mlsync.edge.ml import MLCalls
from mlsync.edge.reads import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Reads
from mlsync.edge.statedoc import STATE_INDEX, StateDoc
from mlsync.edge.transport import ConnectionOptions, Transport


class Cluster(Reads, MLCalls, StateDoc):
    """`ClusterPort` over opensearch-py. Build one with `Cluster.connect(ConnectionOptions(...))`."""

    def __init__(self, options: Optional[ConnectionOptions] = None, *, page_size: int = DEFAULT_PAGE_SIZE,
                 state_index: str = STATE_INDEX, delete_group_retry_seconds: float = 15.0,
                 parallel_observe: bool = True, max_retries: int = 2,
                 deploy_settle_seconds: float = 10.0) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        self.options = options or ConnectionOptions()
        self.page_size = page_size
        self.parallel_observe = parallel_observe
        self.state_index = state_index
        self.delete_group_retry_seconds = delete_group_retry_seconds
        self.deploy_settle_seconds = deploy_settle_seconds
        self._transport = Transport(self.options, max_retries=max_retries)

    @classmethod
    def connect(cls, options: Optional[ConnectionOptions] = None, **kwargs: Any) -> "Cluster":
        """A Cluster for `options` (no request is made until the first call)."""
        return cls(options, **kwargs)

    @property
    def requests_made(self) -> int:
        """HTTP requests sent so far by this Cluster (every attempt, retries included)."""
        return self._transport.requests_made

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


__all__ = ["Cluster", "ConnectionOptions", "STATE_INDEX", "DEFAULT_PAGE_SIZE"]
