"""The stack's state: which server objects this stack manages, and what is in flight.

One document per stack (in the cluster's `mlsync-state` index, or a local `--state-file`). It holds
no secret: credentials only as keyed fingerprints.
"""

from __future__ import annotations

import datetime as _dt
import secrets as _secrets
from dataclasses import dataclass, field, asdict
from typing import Callable, Optional, Protocol

STATE_FORMAT = 1
DELETE_REPLACED = "delete_replaced"   # journal operation: an old version a replace superseded, still to retire
DEFAULT_LOCK_TTL = 300.0          # seconds an apply's lease lasts unless renewed


@dataclass
class ResourceState:
    address: str
    kind: str
    id: str
    server_version: Optional[str] = None          # model_version for model versions
    applied_fingerprint: Optional[str] = None     # hash of the comparable form last applied
    credential_fingerprint: Optional[str] = None  # keyed fingerprint of the credential last applied
    # The comparable form last applied (never a credential) and, for model versions, the deploy
    # state the file asked for then: with them `mlsync drift` tells "the cluster changed" from "the
    # file changed since the last apply". None in states written before they existed.
    applied_form: Optional[dict] = None
    applied_deploy: Optional[bool] = None


@dataclass
class JournalEntry:
    """Recorded before a non-idempotent call (intent) and updated after it (ids), so that a re-run
    after a crash finds what the interrupted call created instead of creating it twice."""

    op_id: str
    address: str
    operation: str                   # create_connector | create_group | register_model | register_model_meta
    started: float                   # epoch seconds
    status: str = "intent"           # intent | sent
    task_id: Optional[str] = None
    object_id: Optional[str] = None  # connector / group / model id once known
    details: dict = field(default_factory=dict)


@dataclass
class Lock:
    holder: str
    host: str
    started: float
    expires: float
    lock_id: str
    pid: Optional[int] = None        # with boot_id: lets a re-run on the same machine see the holder died
    boot_id: Optional[str] = None


@dataclass
class StackState:
    stack: str
    serial: int = 0
    resources: dict[str, ResourceState] = field(default_factory=dict)   # by address string
    journal: list[JournalEntry] = field(default_factory=list)
    fingerprint_key: str = field(default_factory=lambda: _secrets.token_hex(32))
    lock: Optional[Lock] = None

    def by_id(self) -> dict[str, ResourceState]:
        return {r.id: r for r in self.resources.values()}

    def to_json(self) -> dict:
        return {
            "format": STATE_FORMAT,
            "stack": self.stack,
            "serial": self.serial,
            "fingerprint_key": self.fingerprint_key,
            "resources": {a: asdict(r) for a, r in sorted(self.resources.items())},
            "journal": [asdict(j) for j in self.journal],
            "lock": asdict(self.lock) if self.lock else None,
        }

    @classmethod
    def from_json(cls, d: dict) -> "StackState":
        return cls(
            stack=d["stack"],
            serial=d.get("serial", 0),
            resources={a: ResourceState(**r) for a, r in d.get("resources", {}).items()},
            journal=[JournalEntry(**j) for j in d.get("journal", [])],
            fingerprint_key=d["fingerprint_key"],
            lock=Lock(**{k: v for k, v in d["lock"].items() if k in _LOCK_FIELDS}) if d.get("lock") else None,
        )


_LOCK_FIELDS = frozenset(Lock.__dataclass_fields__)


def iso_time(epoch: float) -> str:
    return _dt.datetime.fromtimestamp(epoch, tz=_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class StateStore(Protocol):
    """Where a stack's state lives (the port; backends in mlsync.edge.statestore)."""

    def load(self, stack: str) -> Optional[StackState]: ...
    def save(self, state: StackState) -> StackState: ...
    def lock(self, stack: str, holder: str, ttl_seconds: float = DEFAULT_LOCK_TTL, *,
             host: Optional[str] = None, on_takeover: Optional[Callable[[Lock], None]] = None) -> StackState: ...
    def renew(self, state: StackState, ttl_seconds: float = DEFAULT_LOCK_TTL) -> StackState: ...
    def unlock(self, stack: str, lock_id: Optional[str] = None, force: bool = False) -> Optional[Lock]: ...
