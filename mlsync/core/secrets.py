"""A value that must never be shown: connector credentials and what `${env:...}` put inside them."""

from __future__ import annotations

import hashlib
import hmac

MASK = "(sensitive)"


class Secret:
    """Wraps a secret string. str/repr/format/JSON show `(sensitive)`; only `reveal()` gives the value.

    Only the adapter (when it builds a request body) and the fingerprinting below call `reveal()`.
    """

    __slots__ = ("_value", "fingerprint")

    def __init__(self, value: str, fingerprint: "str | None" = None) -> None:
        if isinstance(value, Secret):
            fingerprint = fingerprint or value.fingerprint
            value = value.reveal()
        self._value = str(value)
        # keyed fingerprint of the value (value_fingerprint), set by the planner with the state's key:
        # what a plan file, the state's applied form and a plan digest hold in place of the value
        self.fingerprint = fingerprint

    def reveal(self) -> str:
        return self._value

    def keyed(self, key: str) -> "Secret":
        """This value with its keyed fingerprint (see `stored`)."""
        return Secret(self._value, value_fingerprint(self._value, key))

    def stored(self) -> str:
        """What may be written instead of the value: `(sensitive) hmac-sha256:…` once keyed, else the mask."""
        return f"{MASK} {self.fingerprint}" if self.fingerprint else MASK

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        return f"Secret({MASK})"

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(("Secret", hashlib.sha256(self._value.encode()).hexdigest()))

    def __copy__(self) -> "Secret":
        return self  # immutable

    def __deepcopy__(self, memo) -> "Secret":
        return self

    def __reduce__(self):  # never pickle a secret into a plan file or a cache by accident
        raise TypeError("a Secret cannot be pickled")


def fingerprint(secrets: dict[str, Secret], key: str) -> str:
    """A keyed fingerprint (HMAC-SHA256) of a credential mapping, for change detection.

    The server never returns credentials, so the only way to notice that the file's credential
    changed is to compare this against the fingerprint recorded at the last apply. Keyed so that a
    state document alone does not let anyone test guesses of a short secret offline.
    """
    mac = hmac.new(key.encode(), digestmod=hashlib.sha256)
    for name in sorted(secrets):
        mac.update(name.encode() + b"\0" + secrets[name].reveal().encode() + b"\0")
    return "hmac-sha256:" + mac.hexdigest()


def value_fingerprint(value: str, key: str) -> str:
    """A keyed fingerprint (HMAC-SHA256) of one sensitive value (an `${env:...}` or `${file:...}`
    substitution outside `credential:`), domain-separated from credential fingerprints."""
    mac = hmac.new(key.encode(), b"value\0" + value.encode(), digestmod=hashlib.sha256)
    return "hmac-sha256:" + mac.hexdigest()


def stored(value):
    """`value` (JSON-like data) with every Secret replaced by `Secret.stored()`: what may be kept in a
    file or compared with what was kept (a state's applied form, a plan file)."""
    if isinstance(value, Secret):
        return value.stored()
    if isinstance(value, dict):
        return {(k.stored() if isinstance(k, Secret) else k): stored(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [stored(v) for v in value]
    return value


def has_secret(value) -> bool:
    """Does `value` (JSON-like data) hold a Secret? (Once per desired resource in a plan: kept cheap.)"""
    t = type(value)
    if t is str:
        return False
    if t is dict:
        for v in value.values():
            if type(v) is not str and has_secret(v):
                return True
        return False
    if t is list or t is tuple:
        for v in value:
            if type(v) is not str and has_secret(v):
                return True
        return False
    return isinstance(value, Secret)


def keyed(value, key: str):
    """`value` with every Secret carrying its keyed fingerprint (the planner, with the state's key)."""
    if isinstance(value, Secret):
        return value.keyed(key)
    if isinstance(value, dict):
        return {k: keyed(v, key) for k, v in value.items()}
    if isinstance(value, list):
        return [keyed(v, key) for v in value]
    return value


def mask_like(observed, desired, key: str):
    """`observed` with each string that sits where `desired` has a Secret wrapped as a (keyed) Secret:
    the server returns in clear what it stored, which is as sensitive as the file's value."""
    if isinstance(desired, Secret):
        return Secret(observed).keyed(key) if isinstance(observed, str) else observed
    if isinstance(desired, dict) and isinstance(observed, dict):
        return {k: (mask_like(v, desired[k], key) if k in desired else v) for k, v in observed.items()}
    if isinstance(desired, list) and isinstance(observed, list):
        return [mask_like(v, desired[i], key) if i < len(desired) else v for i, v in enumerate(observed)]
    return observed
