"""Issue 10 defect 13: malformed server responses and state documents give clear errors naming the
document (or operation) and the field, never a KeyError/TypeError "internal error"."""

from __future__ import annotations

import pytest

from mlsync.core.errors import MalformedDocument, MalformedResponse, MlsyncError
from mlsync.core.state import StackState
from mlsync.edge.cluster import Cluster, ConnectionOptions


class _AnsweringML:
    """Stands in for `client.plugins.ml` (and the plain client): every call answers `resp`."""

    def __init__(self, resp):
        self.resp = resp

    def __getattr__(self, name):
        return lambda **kwargs: self.resp


def _cluster(monkeypatch, resp) -> Cluster:
    ml = _AnsweringML(resp)
    monkeypatch.setattr(Cluster, "_ml", property(lambda self: ml))
    monkeypatch.setattr(Cluster, "_ml_once", property(lambda self: ml))
    monkeypatch.setattr(Cluster, "_client", property(lambda self: ml))
    monkeypatch.setattr(Cluster, "_client_once", property(lambda self: ml))
    monkeypatch.setattr(Cluster, "_refresh_ml_indices", lambda self: None)
    return Cluster(ConnectionOptions(url="http://127.0.0.1:1"))


@pytest.mark.parametrize("call, resp, field", [
    (lambda c: c.create_connector({"name": "c"}), {"status": "ok"}, "connector_id"),
    (lambda c: c.create_connector({"name": "c"}), {"connector_id": 12}, "connector_id"),
    (lambda c: c.create_group({"name": "g"}), {}, "model_group_id"),
    (lambda c: c.register_model({"name": "m"}), {"status": "CREATED"}, "task_id"),
    (lambda c: c.register_model_meta({"name": "m"}), {"status": "CREATED"}, "model_id"),
    (lambda c: c.deploy_model("m1"), {"status": "CREATED"}, "task_id"),
    (lambda c: c.read_state("s"), {"found": True, "_source": {}, "_primary_term": 1}, "_seq_no"),
    (lambda c: c.read_state("s"), {"found": True, "_source": [], "_seq_no": 1, "_primary_term": 1}, "_source"),
    (lambda c: c.write_state("s", {"stack": "s"}, 3, 1), {"result": "updated", "_seq_no": 4}, "_primary_term"),
    (lambda c: c.search_tasks(["t1"]), {"hits": {"hits": [{"_source": {}}]}}, "_id"),
    (lambda c: c.find_models("m", None), {"hits": {"hits": [{"_source": {"name": "m"}}]}}, "_id"),
    (lambda c: c.get_model("m1"), "<html>bad gateway</html>", "(body)"),
])
def test_a_missing_or_wrong_field_names_the_operation_and_the_field(monkeypatch, call, resp, field):
    with pytest.raises(MalformedResponse) as info:
        call(_cluster(monkeypatch, resp))
    err = info.value
    assert err.field == field and repr(field) in str(err) and "malformed" in str(err)
    assert err.ambiguous     # a create whose answer lacks the id may have created it: look before re-sending


def test_well_formed_answers_still_parse(monkeypatch):
    assert _cluster(monkeypatch, {"connector_id": "c1"}).create_connector({"name": "c"}) == "c1"
    res = _cluster(monkeypatch, {"task_id": "t1", "status": "CREATED", "model_id": "m1"}).register_model({"name": "m"})
    assert (res.task_id, res.model_id) == ("t1", "m1")
    doc = _cluster(monkeypatch, {"found": True, "_source": {"stack": "s"}, "_seq_no": 0, "_primary_term": 1}
                   ).read_state("s")
    assert (doc.body, doc.seq_no, doc.primary_term) == ({"stack": "s"}, 0, 1)


def test_a_state_write_that_landed_without_seq_no_is_recognised_not_taken_for_a_takeover():
    """The write landed but its answer lacked `_seq_no`: the store reads the document back (an
    ambiguous error), so the next save does not fail as if another mlsync had taken over."""
    import os
    import sys
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from fakes import FakeCluster
    from mlsync.edge.statestore import ClusterStateStore

    fake = FakeCluster()
    store = ClusterStateStore(fake, clock=fake.clock.time)
    state = store.lock("s", "apply", 300)
    real = fake.write_state

    def lossy(stack, body, seq_no, primary_term):
        real(stack, body, seq_no, primary_term)
        raise MalformedResponse("write state", f"stack {stack!r}", "_seq_no")
    fake.write_state = lossy
    store.save(state)                   # recognised as landed
    fake.write_state = real
    store.save(state)                   # and the next save uses the right seq_no
    assert store.load("s").serial == state.serial == 3


def _state(**over) -> dict:
    body = StackState("s").to_json()
    body.update(over)
    return body


@pytest.mark.parametrize("body, field", [
    (_state(fingerprint_key=None), "fingerprint_key"),
    ({"format": 1, "fingerprint_key": "k"}, "stack"),
    (_state(serial="7"), "serial"),
    (_state(resources={'connector["c"]': {"kind": "connector"}}), 'resources.connector["c"].id'),
    (_state(resources=[]), "resources"),
    (_state(journal=[{"op_id": "1", "address": "a", "operation": "register_model"}]), "journal[0].started"),
    (_state(lock={"holder": "h", "host": "x", "started": 1, "expires": 2}), "lock.lock_id"),
    (_state(lock={"holder": "h", "host": "x", "started": 1, "expires": 2, "lock_id": "l", "pid": "12"}), "lock.pid"),
])
def test_a_malformed_state_document_names_the_field(body, field):
    with pytest.raises(MalformedDocument) as info:
        StackState.from_json(body)
    assert info.value.field == field and repr(field) in str(info.value)
    assert isinstance(info.value, MlsyncError)


def test_a_state_document_that_is_not_an_object_is_refused():
    with pytest.raises(MalformedDocument, match="not an object"):
        StackState.from_json(["not", "a", "state"])   # type: ignore[arg-type]


def test_unknown_fields_in_the_state_are_ignored_and_listed():
    body = _state(future_thing=1, resources={'connector["c"]': {"address": 'connector["c"]', "kind": "connector",
                                                                "id": "c1", "new_field": True}})
    body["lock"] = {"holder": "h", "host": "x", "started": 1, "expires": 2, "lock_id": "l", "owner_uid": 5}
    state = StackState.from_json(body)
    assert state.resources['connector["c"]'].id == "c1" and state.lock.lock_id == "l"
    assert sorted(state.ignored) == ['future_thing', 'lock.owner_uid', 'resources.connector["c"].new_field']
    assert "future_thing" not in state.to_json()
