"""The drift report: how the cluster and the file moved away from the last apply, as data.

Pure (no I/O, no clock): built from what `commands.common.plan_for` returns — the plan, the stack's
state and the observed cluster. What the planner found is read from each change's reason codes
(`plan.Reason`), never from its text. Renderers are in `mlsync/render/drift.py`; the JSON form is
documented in docs/drift-format.md.

Two categories, reported separately:

- **drift** — the cluster changed outside mlsync since the last apply: a managed object edited or
  deleted, a model version's deploy state changed (undeployed, DEPLOY_FAILED, or deployed although
  the file says `deploy: false`), versions mlsync does not manage inside a group it manages, and a
  credential that no longer matches the fingerprint of the one last applied (the server never returns
  credentials, so a rotated secret is only visible this way; mlsync cannot tell whether the file or
  the environment it reads changed, and the usual cause is a secret rotated outside mlsync).
- **pending** — the file changed since the last apply and nobody applied it yet: edited fields, a
  flipped `deploy`, resources added to or removed from the file.

An item is reported only where the plan does something about it, or where apply never will
(unmanaged versions), so that `mlsync apply` clears every report it can. Both categories make
`mlsync drift` exit 2: a scheduled check should alert on a file that was merged but not applied as
much as on a cluster edited by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

from mlsync.core import normalize
from mlsync.core.address import Address
from mlsync.core.observed import Observed, ObservedObject
from mlsync.core.plan import Action, FieldChange, Plan, Reason, ResourceChange
from mlsync.core.planner import applied_baseline, deploy_drifted, diff_forms, unmanaged_versions
from mlsync.core.secrets import MASK, stored
from mlsync.core.state import ResourceState, StackState

FORMAT_VERSION = "1.0"
DRIFT, PENDING = "drift", "pending"
EXIT_CLEAN, EXIT_DRIFT = 0, 2


class DriftType(str, Enum):
    """What moved since the last apply (the JSON's `kind`; docs/drift-format.md). Not a resource kind."""

    # the cluster changed (drift)
    EDITED = "edited"                        # fields of a managed object changed on the cluster
    DELETED = "deleted"                      # a managed object is gone from the cluster
    UNDEPLOYED = "undeployed"                # the file says deploy: true; the version is not deployed
    DEPLOY_FAILED = "deploy_failed"          # the file says deploy: true; the version reads DEPLOY_FAILED
    DEPLOYED = "deployed"                    # the file says deploy: false; the version is deployed
    UNMANAGED_VERSION = "unmanaged_version"  # a version mlsync does not manage, in a group it manages
    CREDENTIAL = "credential"                # the credential differs from the one last applied
    # the file changed since the last apply (pending)
    FILE_EDITED = "file_edited"              # fields the file changed (or never applied: imported objects)
    DEPLOY_FLAG = "deploy_flag"              # the file's deploy flag changed
    ADDED = "added"                          # in the file, not in the stack's state yet
    REMOVED = "removed"                      # in the stack's state, no longer in the file

    @property
    def category(self) -> str:
        return PENDING if self in _PENDING_TYPES else DRIFT


_PENDING_TYPES = frozenset({DriftType.FILE_EDITED, DriftType.DEPLOY_FLAG, DriftType.ADDED, DriftType.REMOVED})


@dataclass(frozen=True)
class FieldDrift:
    """One field that moved. `before` is what the item's `before_is` says: the value last applied; the
    file's when the state cannot tell (drift); the cluster's when nothing was applied yet (pending).
    `now` is the cluster's value (drift) or the file's (pending)."""

    path: str
    before: Any
    now: Any
    sensitive: bool = False      # a credential: both sides are "(sensitive)", never a value

    def to_json(self) -> dict:
        return {"path": self.path, "before": self.before, "now": self.now, "sensitive": self.sensitive}


@dataclass(frozen=True)
class DriftItem:
    address: str
    kind: DriftType                             # the JSON's "kind" (docs/drift-format.md)
    summary: str                                # one sentence a reader understands
    server_id: Optional[str] = None
    server_version: Optional[str] = None
    fields: tuple[FieldDrift, ...] = ()
    before_is: Optional[str] = None             # "last_applied" | "file" | "cluster": what FieldDrift.before is
    actions: tuple[str, ...] = ()               # what `mlsync apply` does about it (plan action values)
    details: dict = field(default_factory=dict)  # e.g. {"model_state": "DEPLOY_FAILED"}

    @property
    def category(self) -> str:
        return self.kind.category

    @property
    def fixed_by_apply(self) -> bool:
        return bool(self.actions)

    def to_json(self) -> dict:
        return {"address": self.address, "category": self.category, "kind": self.kind.value,
                "summary": self.summary, "server_id": self.server_id, "server_version": self.server_version,
                "fields": [f.to_json() for f in self.fields], "before_is": self.before_is,
                "apply_actions": list(self.actions), "fixed_by_apply": self.fixed_by_apply,
                "details": dict(self.details)}


@dataclass(frozen=True)
class DriftReport:
    stack: str
    items: tuple[DriftItem, ...]
    managed: int                                # resources the stack's state manages (checked)
    cluster_version: Optional[str] = None
    sources: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def drift(self) -> tuple[DriftItem, ...]:
        return tuple(i for i in self.items if i.category == DRIFT)

    @property
    def pending(self) -> tuple[DriftItem, ...]:
        return tuple(i for i in self.items if i.category == PENDING)

    @property
    def exit_code(self) -> int:
        """0 clean; 2 when anything drifted or is pending (see the module docstring for why both)."""
        return EXIT_DRIFT if self.items else EXIT_CLEAN

    def counts(self) -> dict[str, int]:
        out = {k.value: 0 for k in DriftType}
        for i in self.items:
            out[i.kind.value] += 1
        return out

    def to_json(self) -> dict:
        return {"format_version": FORMAT_VERSION, "stack": self.stack, "cluster_version": self.cluster_version,
                "sources": list(self.sources), "clean": not self.items, "exit_code": self.exit_code,
                "managed": self.managed, "drift": [i.to_json() for i in self.drift],
                "pending": [i.to_json() for i in self.pending], "counts": self.counts(),
                "warnings": list(self.warnings)}


# --------------------------------------------------------------------------- building


def build(plan: Plan, state: StackState, observed: Observed) -> DriftReport:
    """The report for a plan made (not for destroy) from `state` and `observed`."""
    known = {rs.id for rs in state.resources.values()} | {c.server_id for c in plan.changes if c.server_id}
    groups = {rs.id: a for a, rs in state.resources.items() if rs.kind == "model_group" and rs.id in observed.groups}
    extra = unmanaged_versions(observed, groups, known)
    items: list[DriftItem] = []
    for ch in plan.changes:
        items += _items(ch, state.resources.get(str(ch.address)), observed)
        items += [_unmanaged(plan.stack, str(ch.address), o) for o in extra.pop(str(ch.address), [])]
    for gaddr, objs in sorted(extra.items()):      # a managed group no longer in the file
        items += [_unmanaged(plan.stack, gaddr, o) for o in objs]
    return DriftReport(plan.stack, tuple(sorted(items, key=lambda i: i.category != DRIFT)), len(state.resources),
                       plan.cluster_version, plan.sources, plan.warnings)


def _acts(ch: ResourceChange) -> tuple[str, ...]:
    return tuple(a.value for a in ch.actions if a is not Action.NOOP)


def _items(ch: ResourceChange, rs: Optional[ResourceState], observed: Observed) -> list[DriftItem]:
    """The items of one change, read from its reason codes (the planner's findings) and the state."""
    addr, why = str(ch.address), set(ch.reason_codes)
    if rs is None:
        if ch.is_noop:
            return []
        what = ("an object with the same identity exists; apply adopts it" if Action.ADOPT in ch.actions
                else "not on the cluster")
        return [DriftItem(addr, DriftType.ADDED, f"in the file but not applied yet ({what})", ch.server_id,
                          ch.server_version, actions=_acts(ch))]
    if Reason.ALREADY_GONE in why:
        return [DriftItem(addr, DriftType.DELETED, f"deleted outside mlsync (id {rs.id} no longer exists); it is "
                          "no longer in the file either, so apply only forgets it", rs.id, rs.server_version,
                          actions=_acts(ch))]
    if why & {Reason.NOT_IN_FILE, Reason.DESTROY_REQUESTED}:
        return [DriftItem(addr, DriftType.REMOVED, "no longer in the file; apply deletes it", rs.id,
                          ch.server_version, actions=_acts(ch))]
    if Reason.DELETED_OUTSIDE in why:
        again = "registers it again (a new id and server version)" if ch.kind == "model" else "creates it again"
        return [DriftItem(addr, DriftType.DELETED, f"deleted outside mlsync (id {rs.id} no longer exists); apply "
                          f"{again}", rs.id, rs.server_version, actions=_acts(ch))]
    out: list[DriftItem] = []
    plain = [f for f in ch.field_changes if not f.sensitive]
    if plain:
        out += _field_items(ch, rs, plain)
    if Reason.CREDENTIAL_CHANGED in why:
        secret = [f for f in ch.field_changes if f.sensitive]
        out.append(DriftItem(addr, DriftType.CREDENTIAL, "the credential differs from the one last applied (rotated "
                             "in the file or in the environment it reads); the cluster still has the old one",
                             ch.server_id, ch.server_version,
                             tuple(FieldDrift(f.path, MASK, MASK, True) for f in secret), "last_applied", _acts(ch)))
    deploy_item = _deploy_item(ch, rs, observed)
    if deploy_item is not None:
        out.append(deploy_item)
    return out


def _field_items(ch: ResourceChange, rs: ResourceState, plain: list[FieldChange]) -> list[DriftItem]:
    addr, cluster, file = str(ch.address), ch.before or {}, ch.after or {}
    acts = _acts(ch)

    def item(kind: DriftType, summary: str, fields, before_is: str) -> DriftItem:
        return DriftItem(addr, kind, summary, ch.server_id, ch.server_version,
                         tuple(FieldDrift(p, MASK, MASK, True) if _masked(b) or _masked(n) else FieldDrift(p, b, n)
                               for p, b, n in fields), before_is, acts)

    edited = "edited outside mlsync"
    changed = "the file changed since the last apply"
    if rs.applied_form is not None:
        # sensitive values (`${env:…}`) are kept as keyed fingerprints: compared in that form
        cluster, file = stored(cluster), stored(file)
        base = applied_baseline(rs.applied_form, cluster, file)
        on_cluster = [(f.path, f.before, f.after) for f in diff_forms(base, cluster)]
        in_file = [(f.path, f.before, f.after) for f in diff_forms(base, file)]
        out = []
        if on_cluster:
            out.append(item(DriftType.EDITED, f"{edited}: " + ", ".join(p for p, _, _ in on_cluster), on_cluster,
                            "last_applied"))
        if in_file:
            out.append(item(DriftType.FILE_EDITED, f"{changed}: " + ", ".join(p for p, _, _ in in_file), in_file,
                            "last_applied"))
        return out
    paths = ", ".join(f.path for f in plain)
    if not rs.applied_fingerprint:   # imported, or state from an interrupted apply: nothing applied to it yet
        return [item(DriftType.FILE_EDITED, f"differs from the file, which was never applied to it: {paths}",
                     [(f.path, f.before, f.after) for f in plain], "cluster")]
    cluster_moved = normalize.digest(cluster) != rs.applied_fingerprint
    file_moved = normalize.digest(file) != rs.applied_fingerprint
    if cluster_moved and not file_moved:   # the last applied form is the file's
        return [item(DriftType.EDITED, f"{edited}: {paths}", [(f.path, f.after, f.before) for f in plain],
                     "last_applied")]
    if file_moved and not cluster_moved:   # the last applied form is the cluster's
        return [item(DriftType.FILE_EDITED, f"{changed}: {paths}", [(f.path, f.before, f.after) for f in plain],
                     "last_applied")]
    return [item(DriftType.EDITED, f"{edited}, and the file changed too (this state does not record the values last "
                 f"applied, so the file's are shown): {paths}", [(f.path, f.after, f.before) for f in plain], "file")]


def _masked(value: Any) -> bool:
    """A sensitive value (`${env:…}`), as a plan or the state keeps it: shown only as `(sensitive)`."""
    if isinstance(value, str):
        return value == MASK or value.startswith(MASK + " ")
    if isinstance(value, dict):
        return any(_masked(v) for v in value.values())
    if isinstance(value, list):
        return any(_masked(v) for v in value)
    return not isinstance(value, (int, float, bool, type(None)))   # a Secret


def _deploy_item(ch: ResourceChange, rs: ResourceState, observed: Observed) -> Optional[DriftItem]:
    if not {Reason.NOT_DEPLOYED, Reason.DEPLOYED_UNWANTED} & set(ch.reason_codes):
        return None
    obj = observed.models.get(ch.server_id or rs.id)
    state = str((obj.source.get("model_state") if obj else None) or "unknown")
    addr, acts, details = str(ch.address), _acts(ch), {"model_state": state, "deploy": bool(ch.deploy)}
    if not deploy_drifted(rs, bool(ch.deploy)):
        was = "true" if rs.applied_deploy else "false"
        return DriftItem(addr, DriftType.DEPLOY_FLAG, f"the file changed deploy from {was} to "
                         f"{str(bool(ch.deploy)).lower()} since the last apply (state {state})", ch.server_id,
                         ch.server_version, actions=acts, details=details)
    if ch.deploy and state in normalize.FAILED_STATES:
        return DriftItem(addr, DriftType.DEPLOY_FAILED, f"deploy failed outside mlsync (state {state}); the file says "
                         "deploy: true", ch.server_id, ch.server_version, actions=acts, details=details)
    partial = normalize.partially_deployed(obj.source) if obj else None
    if ch.deploy and partial:   # still serving, on fewer nodes than planned (a node left, or failed it)
        return DriftItem(addr, DriftType.UNDEPLOYED, f"partially deployed ({partial}): serving on fewer nodes "
                         "than planned; the file says deploy: true", ch.server_id, ch.server_version,
                         actions=acts, details=details)
    if ch.deploy:
        return DriftItem(addr, DriftType.UNDEPLOYED, f"undeployed outside mlsync (state {state}); the file says "
                         "deploy: true", ch.server_id, ch.server_version, actions=acts, details=details)
    return DriftItem(addr, DriftType.DEPLOYED, f"deployed outside mlsync (state {state}; a Predict call's "
                     "auto-deploy, or a deploy by hand); the file says deploy: false", ch.server_id,
                     ch.server_version, actions=acts, details=details)


def _unmanaged(stack: str, group_address: str, obj: ObservedObject) -> DriftItem:
    src = obj.source
    name, version, state = src.get("name"), src.get("model_version"), src.get("model_state")
    label = None if str(src.get("algorithm", "")).upper() == "REMOTE" else "LABEL"
    would_be = str(Address("model", str(name), Address.parse(group_address).name, label))
    return DriftItem(group_address, DriftType.UNMANAGED_VERSION,
                     f"holds model version {obj.id} ({name!r}, server version {version}, state {state}) that mlsync "
                     f"does not manage; apply leaves it alone (delete it, or declare it in the file and "
                     f"`mlsync import --stack {stack} '{would_be}' {obj.id}`)",
                     obj.id, version, details={"name": name, "model_state": state})
