"""ML tasks: GET shape, _search by ids (lags GET by about a refresh), delete, misses."""

from __future__ import annotations

import pytest
from opensearchpy.exceptions import NotFoundError

from helpers import error_info, register_url_model, url_model_body, wait_until


def test_task_search_by_ids_converges_to_get_and_delete_task(os_client, janitor, unique_name, make_model_zip):
    ml = os_client.plugins.ml
    art = make_model_zip("torch", seed="tasks")
    task = register_url_model(os_client, janitor, url_model_body(unique_name("ct-task-model"), art))
    janitor.group(ml.get_model(model_id=task["model_id"])["model_group_id"])
    tid = janitor.tasks[-1]
    assert task["state"] == "COMPLETED"

    # One _search can poll many tasks; it sees what GET sees once the index has refreshed.
    hits = wait_until(
        lambda: (lambda h: h if h and h[0]["_source"]["state"] == "COMPLETED" else None)(
            ml.search_tasks(body={"query": {"ids": {"values": [tid, unique_name("ct-missing")]}}})["hits"]["hits"]
        ),
        timeout=5, interval=0.1, message="task search to show COMPLETED",
    )
    assert [h["_id"] for h in hits] == [tid]  # unknown ids are simply absent
    assert hits[0]["_source"] == task

    deleted = ml.delete_task(task_id=tid)
    assert deleted["result"] == "deleted" and deleted["_id"] == tid
    with pytest.raises(NotFoundError) as exc:
        ml.get_task(task_id=tid)
    assert error_info(exc.value) == (404, "status_exception", "Failed to find task")
    # Unlike groups and connectors, deleting a missing task is a real 404.
    with pytest.raises(NotFoundError) as exc:
        ml.delete_task(task_id=tid)
    assert error_info(exc.value) == (404, "status_exception", "Failed to find task")
    # Deleting the task doc does not affect the model.
    assert ml.get_model(model_id=task["model_id"])["model_state"] == "REGISTERED"
