"""The plan as data: what the planner produces and what the renderers and the executor consume.

Nothing here does I/O. A plan holds no secret: credentials appear only as a keyed fingerprint and
render as `(sensitive)`; `apply PLANFILE` re-reads the desired-state files for their values.
"""

from __future__ import annotations

from dataclasses import dataclass, field, asdict
from enum import Enum
from typing import Any, Optional

from mlsync.core.address import Address

FORMAT_VERSION = "1.0"
KNOWN_AFTER_APPLY = "(known after apply)"


class Action(str, Enum):
    """One thing the apply will do to a resource. A change may carry several (e.g. undeploy, update, deploy)."""

    NOOP = "no-op"
    CREATE = "create"            # a connector or group that does not exist yet
    REGISTER = "register"        # a model version that does not exist yet (the server numbers it)
    UPDATE = "update"            # update in place
    REPLACE = "replace"          # delete and register again: a field the server cannot update changed
    DELETE = "delete"            # only ever for objects the stack's state says it manages
    DEPLOY = "deploy"
    UNDEPLOY = "undeploy"
    ADOPT = "adopt"              # an unmanaged object matching by identity is taken into state

    @property
    def symbol(self) -> str:
        return _SYMBOLS[self]


_SYMBOLS = {
    Action.NOOP: " ", Action.CREATE: "+", Action.REGISTER: "+v", Action.UPDATE: "~",
    Action.REPLACE: "-/+", Action.DELETE: "-", Action.DEPLOY: ">", Action.UNDEPLOY: "<", Action.ADOPT: "<=",
}


@dataclass(frozen=True)
class FieldChange:
    path: str                    # dotted path in the comparable form, e.g. "model_config.pooling_mode"
    before: Any
    after: Any
    sensitive: bool = False      # render as (sensitive); before/after are fingerprints or None
    forces_replace: bool = False

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ResourceChange:
    address: Address
    actions: tuple[Action, ...]
    reason: str                           # why, in words a reviewer understands
    server_id: Optional[str] = None       # None: known after apply
    server_version: Optional[str] = None  # the server's model_version ("1", "2", ...) where known
    before: Optional[dict] = None         # comparable observed form, secrets masked
    after: Optional[dict] = None          # comparable desired form, secrets masked
    field_changes: tuple[FieldChange, ...] = ()
    depends_on: tuple[str, ...] = ()      # addresses (str) this change needs to exist first
    drift: bool = False                   # the live object was changed outside mlsync
    # What the executor needs beyond `after` (never secrets):
    deploy: Optional[bool] = None         # desired deploy state of a model version
    deployed: Optional[bool] = None       # observed deploy state
    artifact: Optional[dict] = None       # local upload: {"path", "sha256", "size"}
    credential_fingerprint: Optional[str] = None  # keyed fingerprint of the desired credential

    @property
    def kind(self) -> str:
        return self.address.kind

    @property
    def is_noop(self) -> bool:
        return self.actions == (Action.NOOP,)

    def to_json(self) -> dict:
        return {
            "address": str(self.address),
            "kind": self.address.kind,
            "name": self.address.name,
            "group": self.address.group,
            "version_label": self.address.version,
            "actions": [a.value for a in self.actions],
            "reason": self.reason,
            "server_id": self.server_id,
            "server_version": self.server_version,
            "before": self.before,
            "after": self.after,
            "field_changes": [f.to_json() for f in self.field_changes],
            "depends_on": list(self.depends_on),
            "drift": self.drift,
            "deploy": self.deploy,
            "deployed": self.deployed,
            "artifact": self.artifact,
            "credential_fingerprint": self.credential_fingerprint,
        }

    @classmethod
    def from_json(cls, d: dict) -> "ResourceChange":
        return cls(
            address=Address.parse(d["address"]),
            actions=tuple(Action(a) for a in d["actions"]),
            reason=d["reason"],
            server_id=d.get("server_id"),
            server_version=d.get("server_version"),
            before=d.get("before"),
            after=d.get("after"),
            field_changes=tuple(FieldChange(**f) for f in d.get("field_changes", ())),
            depends_on=tuple(d.get("depends_on", ())),
            drift=d.get("drift", False),
            deploy=d.get("deploy"),
            deployed=d.get("deployed"),
            artifact=d.get("artifact"),
            credential_fingerprint=d.get("credential_fingerprint"),
        )


@dataclass(frozen=True)
class Plan:
    stack: str
    changes: tuple[ResourceChange, ...]            # in apply order (dependencies first, deletes last)
    observed_fingerprints: dict[str, str] = field(default_factory=dict)  # server id -> fingerprint of what was read
    sources: tuple[str, ...] = ()                  # the -f files, so apply PLANFILE can re-read secrets
    cluster_version: Optional[str] = None
    warnings: tuple[str, ...] = ()
    destroy: bool = False                          # made by `mlsync destroy` / `plan --destroy`
    state_serial: Optional[int] = None             # the stack state's serial the plan was made from

    @property
    def pending(self) -> tuple[ResourceChange, ...]:
        return tuple(c for c in self.changes if not c.is_noop)

    @property
    def has_changes(self) -> bool:
        return bool(self.pending)

    def summary(self) -> dict[str, int]:
        counts = {a.value: 0 for a in Action}
        for c in self.changes:
            for a in c.actions:
                counts[a.value] += 1
        return counts

    def to_json(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "stack": self.stack,
            "cluster_version": self.cluster_version,
            "sources": list(self.sources),
            "resource_changes": [c.to_json() for c in self.changes],
            "summary": self.summary(),
            "has_changes": self.has_changes,
            "warnings": list(self.warnings),
            "destroy": self.destroy,
            "state_serial": self.state_serial,
            "observed_fingerprints": dict(self.observed_fingerprints),
        }

    @classmethod
    def from_json(cls, d: dict) -> "Plan":
        if str(d.get("format_version", "")).split(".")[0] != FORMAT_VERSION.split(".")[0]:
            raise ValueError(f"plan format_version {d.get('format_version')!r} is not supported (expected {FORMAT_VERSION})")
        return cls(
            stack=d["stack"],
            changes=tuple(ResourceChange.from_json(c) for c in d["resource_changes"]),
            observed_fingerprints=dict(d.get("observed_fingerprints", {})),
            sources=tuple(d.get("sources", ())),
            cluster_version=d.get("cluster_version"),
            warnings=tuple(d.get("warnings", ())),
            destroy=bool(d.get("destroy", False)),
            state_serial=d.get("state_serial"),
        )
