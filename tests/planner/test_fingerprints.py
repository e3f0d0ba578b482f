"""Fingerprints a state reader cannot cheaply test guesses against, and carrying older ones over
(issue 10, defect 10; mlsync/core/secrets.py `Keying`, mlsync/core/fingerprints.py)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from mlsync.core import secrets
from mlsync.core.address import Address
from mlsync.core.desired import DesiredResource, DesiredState
from mlsync.core.errors import PlanError
from mlsync.core.fingerprints import carried_over
from mlsync.core.normalize import digest
from mlsync.core.secrets import Keying, Secret
from mlsync.core.state import ResourceState, StackState

SALT = "s" * 64
EXT = "e" * 40
CRED = {"api_key": Secret("guessable-1")}
CONN = Address("connector", "c")


def legacy(key: str, material: bytes) -> str:
    return "hmac-sha256:" + hmac.new(key.encode(), material, hashlib.sha256).hexdigest()


LEGACY_CRED = legacy(SALT, b"api_key\0guessable-1\0")


def test_default_fingerprints_are_memory_hard_and_not_the_stored_key_hmac():
    fp = secrets.fingerprint(CRED, SALT)
    assert fp.startswith("scrypt1:") and fp != LEGACY_CRED
    # a guess costs one scrypt of at least 16 MiB (RFC 7914's interactive parameters), not one HMAC
    assert 128 * secrets.SCRYPT_N * secrets.SCRYPT_R >= 16 * 1024 * 1024
    digest_hex = fp.split(":", 1)[1]
    assert digest_hex == hashlib.scrypt(b"credential\0api_key\0guessable-1\0", salt=SALT.encode(),
                                        n=secrets.SCRYPT_N, r=secrets.SCRYPT_R, p=secrets.SCRYPT_P,
                                        maxmem=64 * 1024 * 1024, dklen=32).hex()
    assert secrets.fingerprint(CRED, "t" * 64) != fp                  # salted per stack


def test_an_external_key_gives_hmacs_the_state_cannot_reproduce():
    k = Keying(SALT, EXT)
    fp = k.credential(CRED)
    assert fp.startswith(f"hmac-sha256-ext:{k.key_id}:") and EXT not in fp
    assert fp != Keying(SALT).credential(CRED) and fp.split(":")[-1] != LEGACY_CRED.split(":")[-1]
    with pytest.raises(ValueError, match="at least 32"):
        Keying(SALT, "short")


def state_with(**rs) -> StackState:
    st = StackState("s", fingerprint_key=SALT)
    st.resources[str(CONN)] = ResourceState(str(CONN), "connector", "id1", **rs)
    return st


def desired(cred=CRED, form=None) -> DesiredState:
    r = DesiredResource(CONN, form=form or {"name": "c"}, credential=cred)
    return DesiredState("s", resources={CONN: r})


def test_a_legacy_credential_fingerprint_is_carried_over_when_it_still_matches():
    got = carried_over(state_with(credential_fingerprint=LEGACY_CRED), desired(), Keying(SALT))
    assert got[str(CONN)].credential_fingerprint == secrets.fingerprint(CRED, SALT)
    # a changed credential is not carried over: the planner then sees it changed and plans the update
    assert carried_over(state_with(credential_fingerprint=LEGACY_CRED),
                        desired({"api_key": Secret("other")}), Keying(SALT)) == {}


def test_a_legacy_masked_value_in_the_applied_form_is_renamed_and_its_digest_follows():
    old_form = {"name": "c", "description": "(sensitive) " + legacy(SALT, b"value\0zz-desc")}
    st = state_with(applied_form=old_form, applied_fingerprint=digest(old_form))
    got = carried_over(st, desired(None, {"name": "c", "description": Secret("zz-desc")}), Keying(SALT))
    new_form = got[str(CONN)].applied_form
    assert new_form["description"] == "(sensitive) " + Keying(SALT).value("zz-desc")
    assert got[str(CONN)].applied_fingerprint == digest(new_form)


def test_fingerprints_made_with_an_unknown_external_key_stop_the_plan_and_a_previous_key_rotates():
    ext_fp = Keying(SALT, EXT).credential(CRED)
    with pytest.raises(PlanError, match="MLSYNC_FINGERPRINT_KEY"):
        carried_over(state_with(credential_fingerprint=ext_fp), desired(), Keying(SALT))
    with pytest.raises(PlanError, match=Keying(SALT, EXT).key_id):
        carried_over(state_with(credential_fingerprint=ext_fp), desired(), Keying(SALT, "n" * 40))
    rotated = Keying(SALT, "n" * 40, previous=EXT)
    got = carried_over(state_with(credential_fingerprint=ext_fp), desired(), rotated)
    assert got[str(CONN)].credential_fingerprint == rotated.credential(CRED)
