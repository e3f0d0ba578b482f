"""On the real node: what a reader of `mlsync-state` can do with the fingerprints stored there
(issue 10, defect 10; docs/security.md, "Fingerprints").

- By default a stored credential fingerprint is scrypt salted per stack: the state's own key no
  longer confirms a guess with one HMAC (what the state of an older mlsync allowed).
- A state written by an older mlsync (`hmac-sha256:` fingerprints keyed by the stored key) plans as
  no change, and the next apply rewrites its fingerprints without re-sending the credential.
- With MLSYNC_FINGERPRINT_KEY the fingerprints are HMACs under that key, which the state never
  holds; a run without the key refuses to plan rather than take every credential as changed.
"""

from __future__ import annotations

import hashlib
import hmac
import io

import pytest

from mlsync import commands as app
from mlsync.core.errors import PlanError
from mlsync.core.state import PART_RESOURCE, part_id
from mlsync.edge.cluster import STATE_INDEX
from stack_helpers import destroy, remote_stack, replan, run_apply, stack_file

pytestmark = pytest.mark.cluster

CREDENTIAL = "zq-guessable-key-1"
DESC = "zq-env-desc-fp-5e1"
EXTERNAL_KEY = "k" * 16 + "0123456789abcdef0123456789abcdef"


def head_and_connector(os_client, stack: str) -> tuple[dict, str, dict]:
    """The state's head document, and the connector's resource part (id, source)."""
    os_client.indices.refresh(index=STATE_INDEX)
    head = os_client.get(index=STATE_INDEX, id=stack)["_source"]
    pid = part_id(stack, PART_RESOURCE, f'connector["{stack}-conn"]')
    return head, pid, os_client.get(index=STATE_INDEX, id=pid)["_source"]


def old_mlsync_fingerprint(key: str, material: bytes) -> str:
    """What mlsync before this change stored: HMAC-SHA256 keyed by the state's `fingerprint_key`."""
    return "hmac-sha256:" + hmac.new(key.encode(), material, hashlib.sha256).hexdigest()


def connector_updated_at(os_client, conn_id: str):
    return os_client.plugins.ml.get_connector(connector_id=conn_id).get("last_updated_time")


@pytest.fixture
def stack(tmp_path, opts, artifact_server, unique_name, monkeypatch):
    u = unique_name("fp")
    monkeypatch.setenv("MLSYNC_IT_FP_DESC", DESC)
    monkeypatch.delenv("MLSYNC_FINGERPRINT_KEY", raising=False)
    monkeypatch.delenv("MLSYNC_FINGERPRINT_KEY_PREVIOUS", raising=False)
    f = stack_file(tmp_path, "s", remote_stack(u, u, artifact_server.base_url, credential=CREDENTIAL,
                                               description="${env:MLSYNC_IT_FP_DESC}", deploy=False))
    code, text = run_apply([f], opts)      # every test starts from the stack applied without a key
    assert code == 0, text
    yield u, f
    destroy([f], opts)    # (a destroy compares no fingerprint: it needs no key)


def test_a_state_reader_cannot_confirm_a_guessed_credential_with_the_stored_key(stack, opts, os_client):
    u, f = stack
    head, _, conn = head_and_connector(os_client, u)
    stored = conn["credential_fingerprint"]
    assert stored.startswith("scrypt1:"), stored
    # the attack the old layout allowed: one HMAC per guess with the key stored next to the fingerprint
    assert stored != old_mlsync_fingerprint(head["fingerprint_key"], b"api_key\0" + CREDENTIAL.encode() + b"\0")
    assert f"(sensitive) scrypt1:" in str(conn["applied_form"]) and DESC not in str(conn)
    assert not replan([f], opts).plan.has_changes


def test_an_older_state_is_carried_over_without_resending_the_credential(stack, opts, os_client):
    u, f = stack
    head, pid, conn = head_and_connector(os_client, u)
    key = head["fingerprint_key"]
    # make the stored part what an older mlsync wrote for the same credential and description
    legacy_cred = old_mlsync_fingerprint(key, b"api_key\0" + CREDENTIAL.encode() + b"\0")
    legacy_desc = old_mlsync_fingerprint(key, b"value\0" + DESC.encode())
    new_desc = next(v for v in conn["applied_form"].values() if isinstance(v, str) and v.startswith("(sensitive)"))
    form = {k: (f"(sensitive) {legacy_desc}" if v == new_desc else v) for k, v in conn["applied_form"].items()}
    from mlsync.core.normalize import digest
    os_client.update(index=STATE_INDEX, id=pid, refresh=True,
                     body={"doc": {"credential_fingerprint": legacy_cred, "applied_form": form,
                                   "applied_fingerprint": digest(form)}})
    planned = replan([f], opts)
    assert not planned.plan.has_changes, [c.reason for c in planned.plan.pending]
    conn_id = next(c.server_id for c in planned.plan.changes if c.address.kind == "connector")
    before = connector_updated_at(os_client, conn_id)

    code, text = run_apply([f], opts)
    assert code == 0 and "No changes" in text, text
    _, _, conn = head_and_connector(os_client, u)
    assert conn["credential_fingerprint"].startswith("scrypt1:")
    assert "hmac-sha256" not in str(conn["applied_form"])
    assert connector_updated_at(os_client, conn_id) == before     # nothing was re-sent
    assert app.drift([str(f)], opts, io.StringIO()) == 0


def test_an_external_key_is_never_stored_and_is_required_once_used(stack, opts, os_client, monkeypatch):
    u, f = stack
    monkeypatch.setenv("MLSYNC_FINGERPRINT_KEY", EXTERNAL_KEY)
    assert not replan([f], opts).plan.has_changes          # scrypt ones verified, carried over on apply
    code, text = run_apply([f], opts)
    assert code == 0, text
    head, _, conn = head_and_connector(os_client, u)
    assert conn["credential_fingerprint"].startswith("hmac-sha256-ext:")
    assert EXTERNAL_KEY not in str(head) + str(conn)
    assert not replan([f], opts).plan.has_changes

    monkeypatch.delenv("MLSYNC_FINGERPRINT_KEY")
    with pytest.raises(PlanError) as err:
        app.plan([str(f)], opts, io.StringIO())
    kid = conn["credential_fingerprint"].split(":")[1]
    assert "MLSYNC_FINGERPRINT_KEY" in str(err.value) and kid in str(err.value)
