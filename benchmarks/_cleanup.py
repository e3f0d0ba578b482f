"""Clean-up shared by the benchmarks: delete every ML object (and mlsync state doc) a run named."""

from __future__ import annotations

import contextlib
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable

from opensearchpy import OpenSearch
from opensearchpy.exceptions import NotFoundError, TransportError

from mlsync.edge.cluster import STATE_INDEX


def search_ids(client: OpenSearch, index_search, query: dict) -> list[str]:
    resp = index_search(body={"size": 10_000, "query": query, "_source": False})
    return [h["_id"] for h in resp["hits"]["hits"]]


def delete_named(client: OpenSearch, prefix: str, stacks: Iterable[str] = (), workers: int = 4) -> str:
    """Delete every model, group and connector named `prefix...`, their tasks, and the stacks' state docs."""
    ml = client.plugins.ml
    with contextlib.suppress(TransportError):
        client.indices.refresh(index=".plugins-ml-*")
    named = {"prefix": {"name.keyword": prefix}}
    models = search_ids(client, ml.search_models, {"bool": {"filter": [named],
                                                             "must_not": [{"exists": {"field": "chunk_number"}}]}})
    groups = search_ids(client, ml.search_model_group, named)
    connectors = search_ids(client, ml.search_connectors, named)
    tasks = search_ids(client, ml.search_tasks, {"terms": {"model_id": models}}) if models else []
    stacks = [s for s in stacks if client.exists(index=STATE_INDEX, id=s)] \
        if client.indices.exists(index=STATE_INDEX) else []
    problems: list[str] = []

    def quietly(fn, retry_409: bool = False) -> None:
        deadline = time.monotonic() + 20
        while True:
            try:
                fn()
                return
            except NotFoundError:
                return
            except TransportError as exc:
                if retry_409 and exc.status_code in (409, 500) and time.monotonic() < deadline:
                    time.sleep(0.3)
                    continue
                problems.append(str(exc)[:200])
                return

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda m: quietly(lambda: ml.undeploy_model(model_id=m)), models))
        list(pool.map(lambda m: quietly(lambda: ml.delete_model(model_id=m), True), models))
        list(pool.map(lambda g: quietly(lambda: ml.delete_model_group(model_group_id=g), True), groups))
        list(pool.map(lambda c: quietly(lambda: ml.delete_connector(connector_id=c), True), connectors))
        list(pool.map(lambda t: quietly(lambda: ml.delete_task(task_id=t)), tasks))
        list(pool.map(lambda s: quietly(lambda: client.delete(index=STATE_INDEX, id=s)), stacks))
    for p in problems[:5]:
        print(f"  clean-up: {p}", file=sys.stderr)
    return (f"{len(models)} models, {len(groups)} groups, {len(connectors)} connectors, {len(tasks)} tasks, "
            f"{len(stacks)} state docs")
