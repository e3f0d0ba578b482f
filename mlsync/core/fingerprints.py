"""Carrying a state's stored fingerprints over to this run's keying (`core.secrets.Keying`).

A state written by an older mlsync holds `hmac-sha256:` fingerprints keyed by its own
`fingerprint_key`; one written with MLSYNC_FINGERPRINT_KEY holds `hmac-sha256-ext:<kid>:` ones.
When the file's value still matches the stored fingerprint (checked in the stored scheme), the
fingerprint is rewritten in this run's scheme, so that a scheme change never looks like a changed
credential (which would re-send every credential). Pure: the caller decides whether to save.
"""

from __future__ import annotations

import dataclasses
from mlsync.core import normalize
from mlsync.core.desired import DesiredState
from mlsync.core.errors import PlanError
from mlsync.core.secrets import MASK, Keying, Secret
from mlsync.core.state import StackState


def carried_over(state: StackState, desired: DesiredState, keying: Keying) -> dict:
    """address -> ResourceState with its fingerprints in `keying`'s scheme, for each resource whose
    stored fingerprints are in another scheme and still match the file. Raises PlanError when
    fingerprints were made with an external key this run does not have (nothing could be compared)."""
    by_address = {str(r.address): r for r in desired.resources.values()}
    prefix = keying.prefix
    out = {}
    unknown_keys = set()
    for address, rs in state.resources.items():
        r = by_address.get(address)
        cred_fp = rs.credential_fingerprint
        masked = _masked_fingerprints(rs.applied_form)
        # moved from another stack (`state mv`): made with that stack's salt, so every one is stale
        moved = rs.fingerprint_salt is not None and rs.fingerprint_salt != keying.salt
        origin = keying.with_salt(rs.fingerprint_salt) if moved else keying
        stale = [fp for fp in ([cred_fp] if cred_fp else []) + masked if moved or not fp.startswith(prefix)]
        if not stale and rs.fingerprint_salt is None:
            continue
        unknown_keys |= {fp.split(":")[1] for fp in stale if not keying.knows(fp)}
        if r is None:
            continue   # planned for deletion: its fingerprints are never compared again
        new = dataclasses.replace(rs, fingerprint_salt=None)
        if cred_fp in stale and r.credential and origin.verifies(cred_fp, credential=r.credential):
            new = dataclasses.replace(new, credential_fingerprint=keying.credential(r.credential))
        if masked and rs.applied_form is not None:
            renamed = {}
            for value in _secret_values(r.form):
                for fp in masked:
                    if fp not in renamed and fp in stale and origin.verifies(fp, value=value):
                        renamed[fp] = keying.value(value)
            if renamed:
                form = _renamed(rs.applied_form, {f"{MASK} {a}": f"{MASK} {b}" for a, b in renamed.items()})
                same = rs.applied_fingerprint == normalize.digest(rs.applied_form)
                new = dataclasses.replace(new, applied_form=form,
                                          applied_fingerprint=normalize.digest(form) if same else rs.applied_fingerprint)
        if new != rs:
            out[address] = new
    if unknown_keys:
        raise PlanError([
            f"stack {state.stack!r}: its state's fingerprints were made with an MLSYNC_FINGERPRINT_KEY "
            f"(key id {', '.join(sorted(unknown_keys))}) that this run does not have "
            f"({'another key id: ' + keying.key_id if keying.key_id else 'the variable is not set'}); "
            f"set MLSYNC_FINGERPRINT_KEY to that key (to change keys, set the old one as "
            f"MLSYNC_FINGERPRINT_KEY_PREVIOUS for one apply)"])
    return out


def _masked_fingerprints(form) -> list:
    """The fingerprints inside an applied form's `(sensitive) <fp>` strings."""
    found: list = []

    def walk(v):
        if isinstance(v, str):
            if v.startswith(MASK + " "):
                found.append(v[len(MASK) + 1:])
        elif isinstance(v, dict):
            for k, x in v.items():
                walk(k)
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
    walk(form)
    return found


def _secret_values(form) -> list:
    out: list = []

    def walk(v):
        if isinstance(v, Secret):
            out.append(v.reveal())
        elif isinstance(v, dict):
            for k, x in v.items():
                walk(k)
                walk(x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)
    walk(form)
    return out


def _renamed(v, names: dict):
    if isinstance(v, str):
        return names.get(v, v)
    if isinstance(v, dict):
        return {_renamed(k, names): _renamed(x, names) for k, x in v.items()}
    if isinstance(v, list):
        return [_renamed(x, names) for x in v]
    return v

