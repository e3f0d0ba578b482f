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


def wait_chunks_gone(client: OpenSearch, groups: list[str], timeout: float = 120.0) -> None:
    """Wait until no chunk document of these groups is left (a deleted model's chunks go by a delete-by-query
    that takes a while for large models). Deleting a group before that is refused with a 409, and each refused
    delete has ML Commons 2.19 search the group's documents with their whole source (DeleteModelGroupTransportAction
    .checkForAssociatedModels: up to 10 hits): ten 10 MB chunks, base64 and stringified, took the shared
    1 GB-heap node down with an OutOfMemoryError. This count (size 0) carries no source."""
    if not groups:
        return
    query = {"size": 0, "track_total_hits": True, "query": {"bool": {"filter": [
        {"terms": {"model_group_id": groups}}, {"exists": {"field": "chunk_number"}}]}}}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(TransportError):
            client.indices.refresh(index=".plugins-ml-model")
        try:
            if client.plugins.ml.search_models(body=query)["hits"]["total"]["value"] == 0:
                return
        except TransportError:
            return
        time.sleep(1.0)
    print(f"  clean-up: chunk documents of {len(groups)} group(s) still there after {timeout:.0f}s", file=sys.stderr)


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
        wait_chunks_gone(client, groups)
        list(pool.map(lambda g: quietly(lambda: ml.delete_model_group(model_group_id=g), True), groups))
        list(pool.map(lambda c: quietly(lambda: ml.delete_connector(connector_id=c), True), connectors))
        list(pool.map(lambda t: quietly(lambda: ml.delete_task(task_id=t)), tasks))
        list(pool.map(lambda s: quietly(lambda: client.delete(index=STATE_INDEX, id=s)), stacks))
    if stacks:    # the per-resource state documents of layout 2 (docs/architecture.md, "State and secrets")
        quietly(lambda: client.delete_by_query(index=STATE_INDEX, body={"query": {"terms": {"stack": stacks}}},
                                               refresh=True, conflicts="proceed"))
    for p in problems[:5]:
        print(f"  clean-up: {p}", file=sys.stderr)
    return (f"{len(models)} models, {len(groups)} groups, {len(connectors)} connectors, {len(tasks)} tasks, "
            f"{len(stacks)} state docs")
