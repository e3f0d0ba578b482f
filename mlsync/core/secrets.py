"""A value that must never be shown: connector credentials and what `${env:...}` put inside them."""

from __future__ import annotations

import hashlib
import hmac

MASK = "(sensitive)"


class Secret:
    """Wraps a secret string. str/repr/format/JSON show `(sensitive)`; only `reveal()` gives the value.

    Only the adapter (when it builds a request body) and the fingerprinting below call `reveal()`.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if isinstance(value, Secret):
            value = value.reveal()
        self._value = str(value)

    def reveal(self) -> str:
        return self._value

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
