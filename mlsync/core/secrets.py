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

    def keyed(self, key: "str | Keying") -> "Secret":
        """This value with its fingerprint (see `stored`)."""
        return Secret(self._value, value_fingerprint(self._value, key))

    def stored(self) -> str:
        """What may be written instead of the value: `(sensitive) scrypt1:…` once keyed, else the mask."""
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


def _material(secrets: dict[str, Secret]) -> bytes:
    return b"".join(name.encode() + b"\0" + secrets[name].reveal().encode() + b"\0" for name in sorted(secrets))


# What a fingerprint costs, by scheme (docs/security.md, "Fingerprints"):
#   scrypt1:<hex>              the default: scrypt (N=2^14, r=8, p=1: 16 MiB and ~75 ms per value here) salted
#                              with the stack's random `fingerprint_key`; a state reader who guesses a
#                              credential pays that per guess, on hardware that cannot share the memory
#   hmac-sha256-ext:<kid>:<hex> with MLSYNC_FINGERPRINT_KEY: HMAC-SHA256 keyed by a secret kept outside the
#                              state; <kid> names the key (an HMAC of a constant), not the key
#   hmac-sha256:<hex>          states written before this scheme: HMAC keyed by the state's own key (a guess costs one
#                              HMAC); only read, to carry a stored fingerprint over without re-sending
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1
SCRYPT, EXTERNAL, LEGACY = "scrypt1:", "hmac-sha256-ext:", "hmac-sha256:"
EXTERNAL_KEY_MIN = 32      # characters: the external key must not itself be guessable
_cache: dict[tuple, str] = {}   # (scheme, key, domain, sha256 of the material) -> fingerprint; in-process only


class Keying:
    """How one stack's sensitive values are fingerprinted in this process: scrypt salted with the
    state's `fingerprint_key`, or HMAC with an external key (MLSYNC_FINGERPRINT_KEY) when one is given.
    Results are cached per value, so a value shared by many connectors costs one scrypt per process."""

    __slots__ = ("salt", "_external", "key_id", "previous")

    def __init__(self, salt: str, external: "str | Secret | None" = None,
                 previous: "str | Secret | None" = None) -> None:
        self.salt = salt
        # the external key being replaced (MLSYNC_FINGERPRINT_KEY_PREVIOUS): only to verify stored ones
        self.previous = Keying(salt, previous) if previous is not None else None
        ext = external.reveal() if isinstance(external, Secret) else external
        if ext is not None and len(ext) < EXTERNAL_KEY_MIN:
            raise ValueError(f"MLSYNC_FINGERPRINT_KEY must be at least {EXTERNAL_KEY_MIN} characters "
                             f"(random, e.g. `openssl rand -hex 32`); a short key can be guessed")
        self._external = ext
        self.key_id = (hmac.new(ext.encode(), b"mlsync-key-id", hashlib.sha256).hexdigest()[:12]
                       if ext is not None else None)

    def with_salt(self, salt: str) -> "Keying":
        """This keying for fingerprints made with another stack's salt (an object `state mv` moved)."""
        return Keying(salt, self._external, self.previous._external if self.previous else None)

    @property
    def prefix(self) -> str:
        """What this keying's fingerprints start with."""
        return f"{EXTERNAL}{self.key_id}:" if self._external is not None else SCRYPT

    def credential(self, secrets: dict[str, Secret]) -> str:
        """The fingerprint of a credential mapping (compared with the one recorded at the last apply:
        the server never returns credentials)."""
        return self._fingerprint(b"credential\0", _material(secrets))

    def value(self, value: str) -> str:
        """The fingerprint of one sensitive value (`${env:…}` / `${file:…}` outside `credential:`),
        domain-separated from credential fingerprints."""
        return self._fingerprint(b"value\0", value.encode())

    def _fingerprint(self, domain: bytes, material: bytes) -> str:
        ext = self._external
        memo = (self.prefix, ext if ext is not None else self.salt, domain, hashlib.sha256(material).digest())
        got = _cache.get(memo)
        if got is None:
            if ext is not None:
                digest = hmac.new(ext.encode(), domain + material, hashlib.sha256).hexdigest()
            else:
                digest = hashlib.scrypt(domain + material, salt=self.salt.encode(), n=SCRYPT_N, r=SCRYPT_R,
                                        p=SCRYPT_P, maxmem=64 * 1024 * 1024, dklen=32).hex()
            got = _cache[memo] = self.prefix + digest
        return got

    def knows(self, stored_fp: str) -> bool:
        """Can this keying check `stored_fp`? Not one made with an external key it does not have."""
        return not stored_fp.startswith(EXTERNAL) or stored_fp.startswith(self.prefix) or (
            self.previous is not None and stored_fp.startswith(self.previous.prefix))

    def verifies(self, stored_fp: str, *, credential: "dict[str, Secret] | None" = None,
                 value: "str | None" = None) -> bool:
        """Is `stored_fp` (this keying's, or a legacy `hmac-sha256:` one made with the salt as key) the
        fingerprint of `credential` / `value`? For carrying stored fingerprints over to this keying."""
        if stored_fp.startswith(LEGACY):
            if credential is not None:
                mac = hmac.new(self.salt.encode(), _material(credential), hashlib.sha256)
            else:
                mac = hmac.new(self.salt.encode(), b"value\0" + value.encode(), hashlib.sha256)
            return hmac.compare_digest(stored_fp, LEGACY + mac.hexdigest())
        if stored_fp.startswith(SCRYPT):
            other = Keying(self.salt) if self._external is not None else self
        elif stored_fp.startswith(self.prefix):
            other = self
        elif self.previous is not None and stored_fp.startswith(self.previous.prefix):
            other = self.previous
        else:
            return False
        want = other.credential(credential) if credential is not None else other.value(value)
        return hmac.compare_digest(stored_fp, want)


def keying(key: "str | Keying") -> Keying:
    """A Keying from a state's `fingerprint_key` (no external key) or the Keying itself."""
    return key if isinstance(key, Keying) else Keying(key)


def fingerprint(secrets: dict[str, Secret], key: "str | Keying") -> str:
    """The fingerprint of a credential mapping, for change detection (see `Keying`)."""
    return keying(key).credential(secrets)


def value_fingerprint(value: str, key: "str | Keying") -> str:
    """The fingerprint of one sensitive value (see `Keying.value`)."""
    return keying(key).value(value)


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


def keyed(value, key: "str | Keying"):
    """`value` with every Secret carrying its keyed fingerprint (the planner, with the state's key)."""
    if isinstance(value, Secret):
        return value.keyed(key)
    if isinstance(value, dict):
        return {k: keyed(v, key) for k, v in value.items()}
    if isinstance(value, list):
        return [keyed(v, key) for v in value]
    return value


def mask_like(observed, desired, key: "str | Keying"):
    """`observed` with each string that sits where `desired` has a Secret wrapped as a (keyed) Secret:
    the server returns in clear what it stored, which is as sensitive as the file's value."""
    if isinstance(desired, Secret):
        return Secret(observed).keyed(key) if isinstance(observed, str) else observed
    if isinstance(desired, dict) and isinstance(observed, dict):
        return {k: (mask_like(v, desired[k], key) if k in desired else v) for k, v in observed.items()}
    if isinstance(desired, list) and isinstance(observed, list):
        return [mask_like(v, desired[i], key) if i < len(desired) else v for i, v in enumerate(observed)]
    return observed
