"""The plan as data: what the planner produces and what the renderers and the executor consume.

Nothing here does I/O. A plan holds no secret: credentials appear only as a keyed fingerprint and
render as `(sensitive)`; `apply PLANFILE` re-reads the desired-state files for their values.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, asdict
from enum import Enum
from typing import Any, Optional

from mlsync.core.address import Address
from mlsync.core.secrets import MASK, Secret

FORMAT_VERSION = "1.3"   # 1.1: reason_codes; 1.2: digest; 1.3: consumer kinds, template (docs/plan-format.md)
DIGEST_PREFIX = "sha256:"
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


class Reason(str, Enum):
    """Why a change is planned, for machines (like Terraform's ActionReason); the text beside it is for people.

    A change may have several reasons: `ResourceChange.reason_codes` lists them in the order of the
    parts of `reason` (joined with "; "). Documented in docs/plan-format.md; adding one is a minor
    format_version bump."""

    NOT_ON_CLUSTER = "not_on_cluster"                    # create/register: no such object yet
    DELETED_OUTSIDE = "deleted_outside"                  # a managed object's id is gone: create/register again (drift)
    UNMANAGED_MATCH = "unmanaged_match"                  # an unmanaged object with the same identity: adopt it
    FIELDS_DIFFER = "fields_differ"                      # update in place
    FIELDS_FORCE_REPLACE = "fields_force_replace"        # replace: a field the server cannot update changed
    FUNCTION_NOT_UPDATABLE = "function_not_updatable"    # replace: Update Model refuses this function_name
    CONNECTOR_KIND_CHANGED = "connector_kind_changed"    # replace: standalone <-> inline connector
    INLINE_PARAMETERS_ADDED = "inline_parameters_added"  # replace: parameters for an inline connector stored without
    NOT_DEPLOYED = "not_deployed"                        # deploy: the file says deploy: true
    DEPLOYED_UNWANTED = "deployed_unwanted"              # undeploy: the file says deploy: false
    CREDENTIAL_CHANGED = "credential_changed"            # the credential differs from the one last applied
    CONNECTOR_UPDATE_REDEPLOY = "connector_update_redeploy"  # undeploy/redeploy around an update of its connector
    NOT_IN_FILE = "not_in_file"                          # delete: managed, no longer in the file
    DESTROY_REQUESTED = "destroy_requested"              # delete: `mlsync destroy` / `plan --destroy`
    ALREADY_GONE = "already_gone"                        # delete: gone from the cluster already; forget it
    UNMANAGED_VERSIONS = "unmanaged_versions"            # a managed group holds versions mlsync does not manage
    REFERENCE_MOVED = "reference_moved"                  # a consumer's reference now names another id (docs/references.md)
    NO_UPDATE_API = "no_update_api"                      # replace: the server has no update call for the kind (agents)
    UP_TO_DATE = "up_to_date"                            # no-op
    # Changes the apply driver makes up itself (never in a plan)
    RESUME = "resume"                                    # resume an interrupted apply
    SUPERSEDED = "superseded"                            # delete a version a replace superseded


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
    reason_codes: tuple[Reason, ...] = ()  # why, for machines: one code per "; "-separated part of `reason`
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
    template: Optional[dict] = None       # consumers: `after` with its `${model:...}` references unresolved

    @property
    def kind(self) -> str:
        return self.address.kind

    @property
    def is_noop(self) -> bool:
        return self.actions == (Action.NOOP,)

    def to_json(self, *, fingerprints: bool = True) -> dict:
        """Plain JSON data: a sensitive value (a Secret) is written as `Secret.stored()` (its keyed
        fingerprint; only the mask with `fingerprints=False`), never in clear."""
        return _plain({
            "address": str(self.address),
            "kind": self.address.kind,
            "name": self.address.name,
            "group": self.address.group,
            "version_label": self.address.version,
            "actions": [a.value for a in self.actions],
            "reason": self.reason,
            "reason_codes": [r.value for r in self.reason_codes],
            "server_id": self.server_id,
            "server_version": self.server_version,
            "before": self.before,
            "after": self.after,
            # FieldChange.to_json's fields, without its deep copy: _plain copies every container
            "field_changes": [{"path": f.path, "before": f.before, "after": f.after, "sensitive": f.sensitive,
                               "forces_replace": f.forces_replace} for f in self.field_changes],
            "depends_on": list(self.depends_on),
            "drift": self.drift,
            "deploy": self.deploy,
            "deployed": self.deployed,
            "artifact": self.artifact,
            "credential_fingerprint": self.credential_fingerprint,
            **({"template": self.template} if self.template is not None else {}),
        }, fingerprints)

    @classmethod
    def from_json(cls, d: dict) -> "ResourceChange":
        return cls(
            address=Address.parse(d["address"]),
            actions=tuple(Action(a) for a in d["actions"]),
            reason=d["reason"],
            reason_codes=tuple(Reason(r) for r in d.get("reason_codes", ())),   # none in a 1.0 plan
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
            template=d.get("template"),
        )

    def planned_values(self, *, credentials: bool = True) -> dict:
        """Everything this change would do, as plain data: what `Plan.digest` covers. Not the
        reason (words for people) nor `drift` (how it is explained), which do not change what is
        sent. `credentials=False` puts a marker where a credential's keyed fingerprint would be.
        (`_planned_from_json` gives the same from `to_json(fingerprints=credentials)`.)"""
        def cred(value: Any) -> Any:
            return value if credentials or value is None else MASK
        return _plain({
            "address": str(self.address),
            "actions": [a.value for a in self.actions],
            "server_id": self.server_id,
            "server_version": self.server_version,
            "before": self.before,
            "after": self.after,
            "field_changes": [{"path": f.path, "before": cred(f.before) if f.sensitive else f.before,
                               "after": cred(f.after) if f.sensitive else f.after,
                               "sensitive": f.sensitive, "forces_replace": f.forces_replace}
                              for f in self.field_changes],
            "depends_on": list(self.depends_on),
            "deploy": self.deploy,
            "deployed": self.deployed,
            "artifact": self.artifact,
            "credential_fingerprint": cred(self.credential_fingerprint),
            **({"template": self.template} if self.template is not None else {}),
        }, credentials)


_PLANNED = ("address", "actions", "server_id", "server_version", "before", "after", "field_changes", "depends_on",
            "deploy", "deployed", "artifact", "credential_fingerprint", "template")


def _planned_from_json(change: dict, credentials: bool) -> dict:
    """`ResourceChange.planned_values(credentials=c)` from its `to_json(fingerprints=c)`, which holds the
    same values made plain the same way: writing a plan walks each change once, not twice. (A value
    `_plain` gives is None only for None, so `cred` is decided on the plain value.)"""
    out = {k: change[k] for k in _PLANNED if k in change}
    if not credentials:
        out["field_changes"] = [
            {**f, "before": None if f["before"] is None else MASK, "after": None if f["after"] is None else MASK}
            if f["sensitive"] else f for f in change["field_changes"]]
        if out["credential_fingerprint"] is not None:
            out["credential_fingerprint"] = MASK
    return out


_STORED = MASK + " "
_ATOMS = frozenset({int, float, bool, type(None)})   # returned as they are


def _plain(value: Any, fingerprints: bool = True) -> Any:
    """`value` as plain JSON data. A Secret (a sensitive `${env:…}` value; never a credential) counts as
    `Secret.stored()` — `(sensitive) scrypt1:…`, the state's fingerprint of it, so that a digest
    changes with the value — or, with `fingerprints=False` (a key never stored), as its mask."""
    # the common types first, by exact type (a plan at 10,000 changes holds about a million values);
    # the isinstance chain below gives the same answer for each of them
    t = type(value)
    if t is str:
        return MASK if not fingerprints and value.startswith(_STORED) else value
    if t in _ATOMS:
        return value
    if t is dict:
        if fingerprints:
            return {(k if type(k) is str else _plain(k) if isinstance(k, (Secret, str)) else str(k)):
                    (v if type(v) is str or type(v) in _ATOMS else _plain(v)) for k, v in value.items()}
        return {((MASK if k.startswith(_STORED) else k) if type(k) is str else
                 _plain(k, False) if isinstance(k, (Secret, str)) else str(k)):
                ((MASK if v.startswith(_STORED) else v) if type(v) is str else
                 v if type(v) in _ATOMS else _plain(v, False)) for k, v in value.items()}
    if t is list:
        if fingerprints:
            return [v if type(v) is str or type(v) in _ATOMS else _plain(v) for v in value]
        return [(MASK if v.startswith(_STORED) else v) if type(v) is str else
                v if type(v) in _ATOMS else _plain(v, False) for v in value]
    if isinstance(value, Secret):
        return value.stored() if fingerprints else MASK
    if isinstance(value, str):
        return MASK if not fingerprints and value.startswith(MASK + " ") else value
    if isinstance(value, dict):
        return {(_plain(k, fingerprints) if isinstance(k, (Secret, str)) else str(k)): _plain(v, fingerprints)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, fingerprints) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((_plain(v, fingerprints) for v in value),
                      key=lambda v: json.dumps(v, sort_keys=True, default=str))
    return value


def _canonical(value: Any, *, plain: bool = False) -> bytes:
    """One byte string per JSON value: sorted keys, no spaces, UTF-8. `plain`: `value` is `_plain`'s
    output already (walking it again gives the same data)."""
    return json.dumps(value if plain else _plain(value), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, default=str).encode("utf-8")


def _sha256(value: Any, *, plain: bool = False) -> str:
    return DIGEST_PREFIX + hashlib.sha256(_canonical(value, plain=plain)).hexdigest()


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
    # The `digest` a plan file says it has (None: made by mlsync before plan format 1.2, or not read
    # from a file). `digest()` is what the plan's own values give; both are equal in a file mlsync wrote.
    recorded_digest: Optional[str] = field(default=None, compare=False)

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

    @property
    def digest_covers_credentials(self) -> bool:
        """Credential fingerprints are keyed with the key in the stack's state. A plan made before the
        stack had a state (serial 0) used a key that was never stored, so its fingerprints cannot be
        compared with any later plan's: its digest leaves them out (a marker stands where one is)."""
        return bool(self.state_serial)

    def change_digests(self) -> dict[str, str]:
        """address -> digest of the values of each pending change (no-ops are not part of it)."""
        creds = self.digest_covers_credentials
        return {str(c.address): _sha256(c.planned_values(credentials=creds), plain=True) for c in self.pending}

    def digest(self, _change_digests: Optional[dict[str, str]] = None) -> str:
        """`sha256:<64 hex>` over a canonical JSON of every planned value: per pending change, in apply
        order, its address, actions, server id and version, before/after forms, field changes, deploy
        flags, artifact (hash, size) and credential fingerprint; and the plan's stack and destroy flag.
        Pure: two plans with equal values have equal digests, whatever process made them.
        `_change_digests`: what `change_digests()` gives, when the caller has it already."""
        return _sha256({"stack": self.stack, "destroy": self.destroy,
                        "credentials": self.digest_covers_credentials,
                        "changes": list((self.change_digests() if _change_digests is None else _change_digests).items())})

    def to_json(self) -> dict:
        creds = self.digest_covers_credentials
        changes = [c.to_json(fingerprints=creds) for c in self.changes]
        # the digest from the changes' JSON (the same plain values): each change is walked once
        digests = {str(c.address): _sha256(_planned_from_json(j, creds), plain=True)
                   for c, j in zip(self.changes, changes) if not c.is_noop}
        return {
            "format_version": FORMAT_VERSION,
            "stack": self.stack,
            "cluster_version": self.cluster_version,
            "sources": list(self.sources),
            "resource_changes": changes,
            "summary": self.summary(),
            "has_changes": self.has_changes,
            "warnings": list(self.warnings),
            "destroy": self.destroy,
            "state_serial": self.state_serial,
            "observed_fingerprints": dict(self.observed_fingerprints),
            "digest": self.digest(digests),
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
            recorded_digest=d.get("digest"),     # none in a 1.0 or 1.1 plan
        )
