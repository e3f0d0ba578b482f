"""The planner: a pure function of (desired state, observed cluster, stack state) to a Plan.

No I/O, no clock, no randomness: the same inputs always give the same plan, which is what makes it
testable table by table and what lets a saved plan be checked for staleness.

Identity: the stack's state first (address -> server id), then the natural key (connector and group
by name; a model version by group, model name and content hash; a remote model by group and name).
A natural-key match of an object the state does not know is an adoption, never a duplicate
registration; two candidates are an error that says how to choose (`mlsync import`). An object
another stack manages (`PlanOptions.owners`) is never adopted, changed or deleted: the plan fails
naming the owner (docs/export-import.md, "One object, one stack").
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional

from mlsync.core import kinds, normalize, references
from mlsync.core.address import Address
from mlsync.core.desired import DesiredResource, DesiredState, of_kind
from mlsync.core.errors import PlanError
from mlsync.core.observed import Observed, ObservedObject
from mlsync.core.plan import Action, FieldChange, Plan, Reason, ResourceChange
from mlsync.core.secrets import MASK, Keying, Secret, fingerprint, has_secret, keyed, mask_like, stored
from mlsync.core.state import DELETE_REPLACED, Owner, StackState

ACCESS_KEYS = ("access_mode", "backend_roles")
# Fields the server cannot clear (blank is ignored, merges keep old keys): leaving them out of the
# file means "not managed", never a perpetual diff (docs/ml-commons-notes.md).
MODEL_UNSET_IS_UNMANAGED = ("description", "is_enabled", "rate_limiter", "interface", "guardrails",
                            "deploy_setting", "model_config")
GROUP_UNSET_IS_UNMANAGED = ("description",)
CONNECTOR_UNSET_IS_UNMANAGED = ("description", "client_config")
# The server never returns a credential: only its keyed fingerprint tells that it moved, and then
# mlsync cannot say whether the file or the environment it reads (`${env:...}`) changed.
CREDENTIAL_REASON = "credential differs from the one last applied (rotated in the file or its environment)"

# Why a change is planned, as (code, text) pairs in order: the change's `reason` joins the texts with
# "; ", its `reason_codes` lists the codes (see _because).
Why = list[tuple[Reason, str]]


@dataclass(frozen=True)
class PlanOptions:
    destroy: bool = False       # plan the deletion of everything the stack manages
    # plan undeploys and deletes of models, connectors and agents that pipelines or agents this stack
    # does not manage still name (`--allow-in-use`; docs/references.md): otherwise such a plan fails
    allow_in_use: bool = False
    # server id -> the other stack that manages it (`StateStore.owners`): never adopted, changed or
    # deleted by this plan, which fails naming the owner instead (one object, one stack)
    owners: Mapping[str, Owner] = field(default_factory=dict)


@dataclass
class _Ctx:
    desired: DesiredState
    observed: Observed
    state: StackState
    options: PlanOptions
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    claimed: set[str] = field(default_factory=set)       # observed ids already matched
    ids: dict[str, str] = field(default_factory=dict)    # address str -> server id (matched)
    # Built once per plan, so that planning stays linear in the number of objects (10,000 and more):
    natural_index: dict[str, dict] = field(default_factory=dict)   # kind -> natural key -> objects
    connector_names: Optional[dict[str, str]] = None               # connector id -> name (see _connector_names)
    planned: dict[str, ResourceChange] = field(default_factory=dict)  # address str -> change, as planned so far
    group_keys: dict[str, str] = field(default_factory=dict)       # group name -> its address str (models' lookups)
    sensitive: frozenset = frozenset()   # addresses whose desired form holds a sensitive value (a Secret)
    keying: Optional[Keying] = None      # how sensitive values are fingerprinted (the state's, this process's key)


def plan(desired: DesiredState, observed: Observed, state: StackState, options: PlanOptions = PlanOptions()) -> Plan:
    keying = state.keying()
    desired, sensitive = _keyed_desired(desired, keying)
    ctx = _Ctx(desired, observed, state, options, sensitive=sensitive, keying=keying)
    # the stack's objects, and the old versions its journal still has to retire (superseded by a replace)
    ctx.claimed |= {r.id for r in state.resources.values()}
    ctx.claimed |= {j.object_id for j in state.journal if j.operation == DELETE_REPLACED and j.object_id}
    _check_shared(ctx)
    wanted = {} if options.destroy else desired.resources

    planners = {"connector": _plan_connector, "model_group": _plan_group, "model": _plan_model,
                "ingest_pipeline": _plan_consumer, "search_pipeline": _plan_consumer, "agent": _plan_consumer}
    by_kind: dict[str, dict[str, ResourceChange]] = {}
    for k in kinds.APPLY_ORDER:
        # consumers resolve their references from what is planned before them (agents: innermost first)
        todo = of_kind(wanted, k.name)
        by_kind[k.name] = {}
        for r in (_innermost_first(todo) if k.name == "agent" else todo):
            by_kind[k.name][str(r.address)] = ctx.planned[str(r.address)] = planners[k.name](ctx, r)
    by_kind["model"] = _redeploy_for_connector_updates(ctx, by_kind["connector"], by_kind["model"])
    changes = [c for k in kinds.APPLY_ORDER for c in by_kind[k.name].values()]
    changes += _plan_deletes(ctx, wanted)
    changes = _check_unmanaged_versions(ctx, changes)
    _check_in_use(ctx, changes)

    if ctx.errors:
        raise PlanError(ctx.errors)
    return Plan(stack=desired.stack, changes=tuple(changes), observed_fingerprints=_read_fingerprints(ctx, changes),
                sources=desired.sources, cluster_version=observed.cluster_version, warnings=tuple(ctx.warnings),
                destroy=options.destroy, state_serial=state.serial)


def _keyed_desired(desired: DesiredState, key: Keying) -> tuple[DesiredState, frozenset]:
    """The desired state with each sensitive value (a Secret: `${env:…}` outside `credential:`) carrying
    its fingerprint (the state's keying): what the plan file, the digest and the state hold; and
    the addresses (str) of the resources that have one."""
    changed = {a: _replace(r, form=keyed(r.form, key)) for a, r in desired.resources.items() if has_secret(r.form)}
    if not changed:
        return desired, frozenset()
    return (_replace(desired, resources={**desired.resources, **changed}),
            frozenset(str(a) for a in changed))


def _masked(ctx: _Ctx, address: Address, observed_cmp: dict, desired_form: dict) -> dict:
    """The observed form with the values where the file has a sensitive one masked too (the server
    returns in clear what was sent): compared by value, shown and kept as the desired side is."""
    if str(address) not in ctx.sensitive:
        return observed_cmp
    return mask_like(observed_cmp, desired_form, ctx.keying)


def _because(why: Why) -> dict:
    """The `reason` and `reason_codes` of a change from its (code, text) pairs; none: up to date."""
    why = why or [(Reason.UP_TO_DATE, "up to date")]
    return {"reason": "; ".join(text for _, text in why), "reason_codes": tuple(code for code, _ in why)}


def _also_because(change: ResourceChange, code: Reason, text: str, **changes) -> ResourceChange:
    """`change` with one more reason (which replaces "up to date") and `changes` made."""
    if change.reason_codes == (Reason.UP_TO_DATE,):
        return _replace(change, reason=text, reason_codes=(code,), **changes)
    return _replace(change, reason=f"{change.reason}; {text}", reason_codes=(*change.reason_codes, code), **changes)


def _absent(note: Optional[str], text: str) -> Why:
    """Why an object is created or registered: `note` from _match when the state's id is gone."""
    return [(Reason.DELETED_OUTSIDE, note)] if note else [(Reason.NOT_ON_CLUSTER, text)]


def _read_fingerprints(ctx: _Ctx, changes: Iterable[ResourceChange]) -> dict[str, str]:
    """Fingerprints of every object the plan depends on (all matched objects plus each group's
    models), so `apply PLANFILE` can refuse a plan whose world moved."""
    all_fps = ctx.observed.fingerprints()
    ids = {(f"{c.kind}:{c.server_id}" if c.kind.endswith("_pipeline") else c.server_id)
           for c in changes if c.server_id}
    return {i: all_fps[i] for i in sorted(ids) if i in all_fps}


# --- identity ----------------------------------------------------------------------------------

def _natural_candidates(ctx: _Ctx, kind: str, key) -> list[ObservedObject]:
    """Observed objects of `kind` whose natural key is `key`, from an index built on first use."""
    index = ctx.natural_index.get(kind)
    if index is None:
        index = {}
        natural_key = kinds.kind(kind).natural_key
        for o in _observed_pool(ctx, kind).values():
            index.setdefault(natural_key(o.source), []).append(o)
        ctx.natural_index[kind] = index
    return index.get(key, [])


def _match(ctx: _Ctx, address: Address, kind: str, key,
           natural=None) -> tuple[Optional[ObservedObject], bool, Optional[str]]:
    """-> (observed object, managed?, note). Unmanaged candidates are the unclaimed objects whose natural
    key is `key` (None: there can be none) and, if given, for which `natural(obj)` is true."""
    rs = ctx.state.resources.get(str(address))
    if rs is not None:
        obj = _observed_pool(ctx, kind).get(rs.id)
        if obj is not None:
            return obj, True, None
        return None, True, f"deleted outside mlsync (id {rs.id} no longer exists)"
    found = _natural_candidates(ctx, kind, key) if key is not None else []
    candidates = [o for o in found if o.id not in ctx.claimed and (natural is None or natural(o))]
    owned = [o for o in candidates if o.id in ctx.options.owners]
    candidates = [o for o in candidates if o.id not in ctx.options.owners]
    if owned and not candidates:
        ctx.errors.append(_owned_error(ctx, address, owned[0]))
        return None, False, None
    if len(candidates) > 1:
        ids = ", ".join(sorted(o.id for o in candidates))
        ctx.errors.append(f"{address}: {len(candidates)} unmanaged objects match it ({ids}); choose one with "
                          f"`mlsync import '{address}' ID`")
        return None, False, None
    if candidates:
        ctx.claimed.add(candidates[0].id)
        return candidates[0], False, None
    return None, False, None


def _owned_error(ctx: _Ctx, address: Address, obj: ObservedObject) -> str:
    """A natural-key match that another stack manages: never adopted (SPEC §5: one object, one stack)."""
    owner = ctx.options.owners[obj.id]
    name = obj.source.get("name")
    return (f"{address}: the {address.kind.replace('_', ' ')} named {name!r} on the cluster (id {obj.id}) is managed by stack "
            f"{owner.stack!r} (as {owner.address}); a stack never takes over another stack's objects. Give it "
            f"another name in this file, or move it to this stack explicitly: {owner.how_to_release()}, then "
            f"`mlsync import --stack {_quote(ctx.state.stack)} {_quote(str(address))} {obj.id}`")


def _check_shared(ctx: _Ctx) -> None:
    """An object this stack's state manages that another stack manages too (states written before
    ownership was checked, or edited by hand): neither may change or delete it until one lets go."""
    for addr, rs in sorted(ctx.state.resources.items()):
        owner = ctx.options.owners.get(rs.id)
        if owner is not None:
            ctx.errors.append(
                f"{addr}: id {rs.id} is managed by this stack and by stack {owner.stack!r} (as {owner.address}); "
                f"an object must have one owner, so this plan neither changes nor deletes it. Let go of it in the "
                f"stack that should not manage it: `mlsync state rm --stack {_quote(ctx.state.stack)} "
                f"{_quote(addr)}` (here) or {owner.how_to_release()}")


def _quote(text: str) -> str:
    """`text` as one shell word."""
    import shlex
    return shlex.quote(text)


# --- field diffs -------------------------------------------------------------------------------

def _path(parts: list) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (("." if out else "") + str(p))
    return out


def diff_forms(before: dict, after: dict, *, replace_fields: tuple[str, ...] = ()) -> tuple[FieldChange, ...]:
    """Field-level changes from `before` to `after`, sorted by path: what DeepDiff reports (tree
    view: the path, the old and the new value of each added, removed or changed item).

    Compared key by key: an equal key costs a comparison, a differing scalar is one change, and a
    differing mapping or list is walked here (_walk) the way DeepDiff walks it. Only a differing list
    of plain values (strings, numbers, booleans, None), which DeepDiff aligns with difflib, goes
    through DeepDiff itself: it costs about a millisecond a call and importing it loads numpy
    (≈ 0.17 s), which a plan without such a change never pays."""
    if before == after:
        return ()
    out = []
    for key in dict.fromkeys([*before, *after]):
        b, a = before.get(key), after.get(key)
        if b == a and (key in before) == (key in after):
            continue
        forces = key in replace_fields
        if (isinstance(b, dict) and isinstance(a, dict)) or (isinstance(b, list) and isinstance(a, list)):
            found: list[tuple[list, object, object]] = []
            _walk(b, a, [key], found)
            out += [FieldChange(_path(parts), ib, ia, forces_replace=forces) for parts, ib, ia in found]
        else:
            out.append(FieldChange(_path([key]), b, a, forces_replace=forces))
    return tuple(sorted(out, key=lambda f: f.path))


_PLAIN = (str, bytes, int, float, complex, bool, type(None), Secret)   # what DeepDiff aligns with difflib
_DEEPER = 0.33   # DeepDiff's threshold_to_diff_deeper: below this share of common keys a mapping is one change


def _walk(b, a, parts: list, out: list) -> None:
    """DeepDiff's walk (no options, tree view) of `b` -> `a` at `parts`, into `out` as (parts, before,
    after); None for the missing side of an added or removed item. A Secret is one opaque value."""
    if b is a:
        return
    if type(b) is not type(a):
        out.append((parts, b, a))                        # type_changes
    elif isinstance(b, dict):
        union, common = len(b.keys() | a.keys()), len(b.keys() & a.keys())
        if union > 1 and common / union < _DEEPER:
            out.append((parts, b, a))                    # values_changed: too little in common to go deeper
            return
        for k in b:
            if k not in a:
                out.append(([*parts, k], b[k], None))    # dictionary_item_removed
        for k in a:
            if k not in b:
                out.append(([*parts, k], None, a[k]))    # dictionary_item_added
            else:
                _walk(b[k], a[k], [*parts, k], out)
    elif isinstance(b, list):
        if all(isinstance(v, _PLAIN) for v in b) and all(isinstance(v, _PLAIN) for v in a):
            _deepdiff(b, a, parts, out)                  # aligned by difflib: left to DeepDiff
            return
        # a list holding a mapping or list: DeepDiff pairs the items by index
        for i in range(max(len(b), len(a))):
            if i >= len(a):
                out.append(([*parts, i], b[i], None))    # iterable_item_removed
            elif i >= len(b):
                out.append(([*parts, i], None, a[i]))    # iterable_item_added
            else:
                _walk(b[i], a[i], [*parts, i], out)
    elif b != a:
        out.append((parts, b, a))                        # values_changed


def _deepdiff(b, a, parts: list, out: list) -> None:
    from deepdiff import DeepDiff   # here, not at the top: it imports numpy (docs/performance.md §4)

    # DeepDiff would look inside a Secret (its slots): each is compared as one opaque token
    tokens: dict[str, Secret] = {}
    b, a = _atomize(b, tokens), _atomize(a, tokens)
    for items in DeepDiff(b, a, view="tree", verbose_level=2).values():
        for item in items:
            ib = None if type(item.t1).__name__ == "NotPresent" else _restore(item.t1, tokens)
            ia = None if type(item.t2).__name__ == "NotPresent" else _restore(item.t2, tokens)
            out.append(([*parts, *item.path(output_format="list")], ib, ia))


_TOKEN = "\0mlsync-secret:"


def _atomize(value, tokens: dict):
    """`value` with each Secret replaced by a token string (equal values, equal tokens) kept in `tokens`."""
    if isinstance(value, Secret):
        for token, known in tokens.items():
            if known == value:
                return token
        token = _TOKEN + str(len(tokens))
        tokens[token] = value
        return token
    if isinstance(value, dict):
        return {k: _atomize(v, tokens) for k, v in value.items()}
    if isinstance(value, list):
        return [_atomize(v, tokens) for v in value]
    return value


def _restore(value, tokens: dict):
    if not tokens:
        return value
    if isinstance(value, str):
        return tokens.get(value, value)
    if isinstance(value, dict):
        return {k: _restore(v, tokens) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore(v, tokens) for v in value]
    return value


def _comparable(observed_form: dict, desired_form: dict, unset_unmanaged: tuple[str, ...]) -> dict:
    out = dict(observed_form)
    for key in unset_unmanaged:
        if key not in desired_form:
            out.pop(key, None)
    return out


def _strip_access(form: dict) -> dict:
    return {k: v for k, v in form.items() if k not in ACCESS_KEYS}


def _access_check(ctx: _Ctx, r: DesiredResource, enabled: bool, what: str) -> dict:
    """Access fields only mean something with access control on; otherwise the server refuses them."""
    form = r.form
    if enabled:
        return form
    asked = form.get("access_mode") not in (None, "public") or form.get("backend_roles")
    if asked:
        ctx.errors.append(f"{r.address}: access_mode/backend_roles need {what} access control, which this cluster "
                          f"does not have (security plugin with plugins.ml_commons.{what}_access_control_enabled)")
    return _strip_access(form)


def cluster_changed(rs, observed_cmp: dict, desired_form: dict) -> bool:
    """Did the live object change since the last apply? Compared with the form last applied when the
    state has it (only the fields the file still manages), else with its fingerprint."""
    if rs is None:
        return False
    if rs.applied_form is not None:
        # sensitive values are kept as keyed fingerprints (`Secret.stored`): compared in that form
        observed_kept = stored(observed_cmp) if has_secret(observed_cmp) else observed_cmp
        return applied_baseline(rs.applied_form, observed_kept, desired_form) != observed_kept
    return bool(rs.applied_fingerprint) and rs.applied_fingerprint != normalize.digest(observed_cmp)


def applied_baseline(applied_form: dict, observed_cmp: dict, desired_form: dict) -> dict:
    """The last applied form restricted to fields still compared: a field neither the cluster's
    comparable form nor the file has is no longer managed (see *_UNSET_IS_UNMANAGED)."""
    return {k: v for k, v in applied_form.items() if k in observed_cmp or k in desired_form}


def deploy_drifted(rs, deploy: bool) -> bool:
    """A deploy mismatch is drift unless the file's deploy flag changed since the last apply."""
    return rs is not None and (rs.applied_deploy is None or rs.applied_deploy == bool(deploy))


def _drift(ctx: _Ctx, address: Address, observed_cmp: dict, desired_form: dict) -> bool:
    return cluster_changed(ctx.state.resources.get(str(address)), observed_cmp, desired_form)


# --- connectors --------------------------------------------------------------------------------

def _plan_connector(ctx: _Ctx, r: DesiredResource) -> ResourceChange:
    after = _access_check(ctx, r, ctx.observed.connector_access_control, "connector")
    cred_fp = fingerprint(r.credential, ctx.keying) if r.credential else None
    obj, managed, note = _match(ctx, r.address, "connector", r.address.name)
    if obj is None:
        return ResourceChange(r.address, (Action.CREATE,), **_because(_absent(note, "not on the cluster")),
                              after=after, drift=bool(note), depends_on=r.depends_on, credential_fingerprint=cred_fp)
    ctx.ids[str(r.address)] = obj.id
    before = normalize.connector_form(obj.source, access_control=ctx.observed.connector_access_control)
    cmp = _comparable(before, after, CONNECTOR_UNSET_IS_UNMANAGED)
    # Update Connector merges parameters key by key: a key removed from the file stays on the server.
    extra = sorted(set((cmp.get("parameters") or {})) - set((after.get("parameters") or {})))
    if extra:
        ctx.warnings.append(f"{r.address}: parameters {', '.join(extra)} are on the server but not in the file; "
                            "the server cannot remove a parameter in place (recreate the connector to drop them)")
        cmp["parameters"] = {k: v for k, v in cmp["parameters"].items() if k not in extra} or None
        cmp = {k: v for k, v in cmp.items() if v is not None}
    cmp = _masked(ctx, r.address, cmp, after)
    fields = list(diff_forms(cmp, after))
    rs = ctx.state.resources.get(str(r.address))
    cred_drift = bool(managed and rs and rs.credential_fingerprint != cred_fp)
    edited = managed and bool(fields) and _drift(ctx, r.address, cmp, after)
    if cred_drift:
        fields.append(FieldChange("credential", MASK, MASK, sensitive=True))
    if not managed:
        # The server never returns credentials, so an adopted connector's cannot be checked; it is
        # recorded as the file's and pushed at the next change of the file's credential.
        ctx.warnings.append(f"{r.address}: adopted with a credential mlsync cannot read back; it is assumed to "
                            "match the file (a later change of the credential in the file is pushed)")
    actions = ([Action.ADOPT] if not managed else []) + ([Action.UPDATE] if fields else [])
    why: Why = []
    if not managed:
        why.append((Reason.UNMANAGED_MATCH, "unmanaged connector with the same name"))
    if any(not f.sensitive for f in fields):
        why.append((Reason.FIELDS_DIFFER, "fields differ: " + ", ".join(f.path for f in fields if not f.sensitive)))
    if cred_drift:
        why.append((Reason.CREDENTIAL_CHANGED, CREDENTIAL_REASON))
    return ResourceChange(r.address, tuple(actions) or (Action.NOOP,), **_because(why), server_id=obj.id,
                          before=cmp, after=after, field_changes=tuple(fields), drift=edited or cred_drift,
                          depends_on=r.depends_on, credential_fingerprint=cred_fp)


# --- model groups ------------------------------------------------------------------------------

def _plan_group(ctx: _Ctx, r: DesiredResource) -> ResourceChange:
    after = _access_check(ctx, r, ctx.observed.model_access_control, "model")
    obj, managed, note = _match(ctx, r.address, "model_group", r.address.name)
    if obj is None:
        return ResourceChange(r.address, (Action.CREATE,), **_because(_absent(note, "not on the cluster")),
                              after=after, drift=bool(note), depends_on=r.depends_on)
    if r.implicit and not managed:
        ctx.errors.append(
            f"{r.address}: a model without model_group gets an implicit group named after it, but an unmanaged "
            f"group {r.address.name!r} (id {obj.id}) already exists; declare it under model_groups and set "
            f"model_group, or adopt it with `mlsync import '{r.address}' {obj.id}`")
    ctx.ids[str(r.address)] = obj.id
    before = normalize.group_form(obj.source, access_control=ctx.observed.model_access_control)
    cmp = _masked(ctx, r.address, _comparable(before, after, GROUP_UNSET_IS_UNMANAGED), after)
    fields = diff_forms(cmp, after)
    actions = ([Action.ADOPT] if not managed else []) + ([Action.UPDATE] if fields else [])
    why: Why = []
    if not managed:
        why.append((Reason.UNMANAGED_MATCH, "unmanaged group with the same name"))
    if fields:
        why.append((Reason.FIELDS_DIFFER, "fields differ: " + ", ".join(f.path for f in fields)))
    edited = managed and bool(fields) and _drift(ctx, r.address, cmp, after)
    return ResourceChange(r.address, tuple(actions) or (Action.NOOP,), **_because(why), server_id=obj.id, before=cmp,
                          after=after, field_changes=fields, drift=edited, depends_on=r.depends_on)


# --- models ------------------------------------------------------------------------------------

def _connector_names(ctx: _Ctx) -> dict[str, str]:
    """connector id -> the name a model's form uses: the stack's address first, else the server's name."""
    names = {i: o.source.get("name") for i, o in ctx.observed.connectors.items()}
    for addr, rs in ctx.state.resources.items():
        if rs.kind == "connector":
            names[rs.id] = Address.parse(addr).name
    names.update({i: Address.parse(a).name for a, i in ctx.ids.items() if a.startswith("connector[")})
    return names


def observed_model_form(ctx_or_names, src: dict) -> dict:
    if isinstance(ctx_or_names, dict):
        names = ctx_or_names
    else:
        names = ctx_or_names.connector_names
        if names is None:
            names = ctx_or_names.connector_names = _connector_names(ctx_or_names)
    cid = src.get("connector_id")
    return normalize.model_form(src, connector_name=names.get(cid, cid) if cid else None)


def _plan_model(ctx: _Ctx, r: DesiredResource) -> ResourceChange:
    after = r.form
    group_key = ctx.group_keys.get(r.address.group)
    if group_key is None:
        group_key = ctx.group_keys[r.address.group] = str(Address("model_group", r.address.group))
    group_id = ctx.ids.get(group_key)
    want_hash = (r.artifact or {}).get("sha256")

    def same_artifact(o: ObservedObject) -> bool:
        if r.address.version is None:   # remote: one per (group, name)
            return True
        if after.get("function_name") == "REMOTE":   # a version of a remote family: the server's number
            return str(o.source.get("model_version")) == r.address.version    # is its label (export writes it)
        return bool(want_hash) and o.source.get("model_content_hash_value") == want_hash

    key = (group_id, r.address.name) if group_id is not None else None
    obj, managed, note = _match(ctx, r.address, "model", key, same_artifact)
    fp = fingerprint(r.credential, ctx.keying) if r.credential else None
    if obj is None:
        actions = (Action.REGISTER,) + ((Action.DEPLOY,) if r.deploy else ())
        return ResourceChange(r.address, actions, **_because(_absent(note, "not registered yet")), after=after,
                              drift=bool(note), depends_on=r.depends_on, deploy=r.deploy, deployed=False,
                              artifact=r.artifact, credential_fingerprint=fp)
    ctx.ids[str(r.address)] = obj.id
    src = obj.source
    before_full = observed_model_form(ctx, src)
    cmp = _comparable(before_full, after, MODEL_UNSET_IS_UNMANAGED)
    if "is_enabled" in after and "is_enabled" not in cmp and after["is_enabled"] is True:
        cmp["is_enabled"] = True   # an absent is_enabled on the server means enabled
    cmp = _masked(ctx, r.address, _inline_parameters_kept(ctx, r.address, cmp, after), after)
    fields = list(diff_forms(cmp, after, replace_fields=normalize.MODEL_REPLACE_FIELDS))
    rs = ctx.state.resources.get(str(r.address))
    edited = managed and bool(fields) and _drift(ctx, r.address, cmp, after)
    cred_drift = bool(fp and managed and rs and rs.credential_fingerprint != fp)
    if cred_drift:
        fields.append(FieldChange("connector.credential", MASK, MASK, sensitive=True))
    deployed = normalize.is_deployed(src)
    partial = normalize.partially_deployed(src) if deployed else None
    function = after.get("function_name")
    cannot_update: Optional[Reason] = None     # set: replace instead of updating in place
    if any(f.forces_replace for f in fields):
        cannot_update = Reason.FIELDS_FORCE_REPLACE
    elif fields and function not in normalize.MODEL_UPDATE_FUNCTIONS:
        cannot_update = Reason.FUNCTION_NOT_UPDATABLE   # Update Model answers 403 for other functions
        fields = [FieldChange(f.path, f.before, f.after, f.sensitive, True) for f in fields]
    elif fields and _connector_kind_changed(cmp, after):
        cannot_update = Reason.CONNECTOR_KIND_CHANGED
    elif fields and _inline_parameters_added(cmp, after):
        cannot_update = Reason.INLINE_PARAMETERS_ADDED
    why: Why = []
    if not managed:
        why.append((Reason.UNMANAGED_MATCH,
                    "unmanaged model matches by group, name" + (" and content hash" if r.address.version else "")))
        if r.credential:
            ctx.warnings.append(f"{r.address}: adopted with an inline connector credential mlsync cannot read back; "
                                "it is assumed to match the file (a later change of the credential in the file "
                                "is pushed)")
    actions: list[Action] = [Action.ADOPT] if not managed else []
    if cannot_update is not None:
        actions = [a for a in actions if a is not Action.ADOPT] + [Action.REPLACE] + ([Action.DEPLOY] if r.deploy else [])
        if deployed:
            actions.insert(0, Action.UNDEPLOY)
        forced = ", ".join(f.path for f in fields if f.forces_replace)
        why.append((cannot_update, f"cannot update in place: {forced}" if forced else "cannot update in place"))
    else:
        if fields:
            actions.append(Action.UPDATE)
        if any(not f.sensitive for f in fields):
            why.append((Reason.FIELDS_DIFFER,
                        "fields differ: " + ", ".join(f.path for f in fields if not f.sensitive)))
        if r.deploy and not deployed:
            actions.append(Action.DEPLOY)
            why.append((Reason.NOT_DEPLOYED,
                        "not deployed" + (f" (state {src.get('model_state')})" if src.get("model_state") else "")))
        elif r.deploy and partial:   # deploying again loads it on the nodes that lack it
            actions.append(Action.DEPLOY)
            why.append((Reason.NOT_DEPLOYED, f"partially deployed ({partial})"))
        elif not r.deploy and deployed:
            actions.append(Action.UNDEPLOY)
            why.append((Reason.DEPLOYED_UNWANTED,
                        f"deployed (state {src.get('model_state')}) but the file says deploy: false"))
    deploy_drift = (managed and cannot_update is None and (bool(r.deploy) != deployed or bool(r.deploy and partial))
                    and deploy_drifted(rs, bool(r.deploy)))
    if cred_drift:
        why.append((Reason.CREDENTIAL_CHANGED, CREDENTIAL_REASON))
    drift = bool(edited or cred_drift or deploy_drift)
    return ResourceChange(r.address, tuple(actions) or (Action.NOOP,), **_because(why), server_id=obj.id,
                          server_version=src.get("model_version"), before=cmp, after=after,
                          field_changes=tuple(fields), drift=drift, depends_on=r.depends_on, deploy=r.deploy,
                          deployed=deployed, artifact=r.artifact, credential_fingerprint=fp)


# Update Model changes an inline connector the way Update Connector changes a standalone one
# (HttpConnector.update): a field not sent is kept, so leaving it out of the file means "not managed".
INLINE_CONNECTOR_UNSET_IS_UNMANAGED = ("name", "description", "version", "client_config")


def _inline_parameters_kept(ctx: _Ctx, address: Address, cmp: dict, after: dict) -> dict:
    """The observed inline connector restricted to what the file manages. Its parameters merge key by
    key: a key the file dropped stays on the server, so warn and leave it out of the diff (otherwise
    every plan would show it and no apply could remove it)."""
    b, a = cmp.get("connector"), after.get("connector")
    if not (isinstance(b, dict) and isinstance(a, dict)):
        return cmp
    connector = {k: v for k, v in b.items() if k in a or k not in INLINE_CONNECTOR_UNSET_IS_UNMANAGED}
    extra = sorted(set(b.get("parameters") or {}) - set(a.get("parameters") or {}))
    if extra:
        ctx.warnings.append(f"{address}: inline connector parameters {', '.join(extra)} are on the server but not "
                            "in the file; the server cannot remove a parameter in place (replace the model to drop "
                            "them)")
        kept = {k: v for k, v in b["parameters"].items() if k not in extra}
        connector.pop("parameters")
        if kept:
            connector["parameters"] = kept
    return {**cmp, "connector": connector}


def _inline_parameters_added(before: dict, after: dict) -> bool:
    """An inline connector stored without parameters cannot get any through Update Model: the server
    answers 500 (NullPointerException in HttpConnector.update; docs/ml-commons-notes.md)."""
    b, a = before.get("connector"), after.get("connector")
    return isinstance(b, dict) and isinstance(a, dict) and not b.get("parameters") and bool(a.get("parameters"))


def _connector_kind_changed(before: dict, after: dict) -> bool:
    """Standalone <-> inline connector cannot be switched by Update Model."""
    b, a = before.get("connector"), after.get("connector")
    return b is not None and a is not None and isinstance(b, str) != isinstance(a, str)


def _redeploy_for_connector_updates(ctx: _Ctx, connectors: dict[str, ResourceChange],
                                    models: dict[str, ResourceChange]) -> dict[str, ResourceChange]:
    """The server refuses to update a connector while a model using it is loaded on a node: plan
    undeploy -> update -> redeploy for each model that is, or may be, loaded (DEPLOY_FAILED included:
    undeploying a model that is not loaded is harmless, a refused update is not)."""
    out = dict(models)
    updated = {cc.server_id: caddr for caddr, cc in connectors.items() if Action.UPDATE in cc.actions and cc.server_id}
    if not updated:
        return out
    by_model_id = {c.server_id: a for a, c in models.items() if c.server_id}
    # Versions this plan deletes are the stack's too: the executor undeploys them before it updates
    # connectors (a version moved to another group is deleted while the connector it used changes).
    # (An address the file declares is found by its text; only the others are parsed.)
    declared = {str(a) for a in ctx.desired.resources}
    leaving = {rs.id for a, rs in ctx.state.resources.items()
               if rs.kind == "model" and a not in declared and Address.parse(a) not in ctx.desired.resources}
    users: dict[str, list[ObservedObject]] = {}
    for mobj in ctx.observed.models.values():
        if mobj.source.get("connector_id") in updated:
            users.setdefault(mobj.source["connector_id"], []).append(mobj)
    for cid, caddr in updated.items():
        for mobj in users.get(cid, ()):
            mid = mobj.id
            if not normalize.may_be_loaded(mobj.source):
                continue
            maddr = by_model_id.get(mid)
            if maddr is None and (mid in leaving or ctx.options.destroy):
                continue
            if maddr is None and not normalize.is_deployed(mobj.source):
                ctx.warnings.append(f"{caddr}: model {mid} ({mobj.source.get('name')!r}), which this stack does not "
                                    f"manage, uses it and is {mobj.source.get('model_state')}; if a node still holds "
                                    "it, the server will refuse the connector update until it is undeployed")
                continue
            if maddr is None:
                ctx.errors.append(f"{caddr}: cannot update: model {mid} ({mobj.source.get('name')!r}), which this "
                                  "stack does not manage, uses it and is deployed; the server refuses connector "
                                  "updates while a model using it is deployed")
                continue
            mc = out[maddr]
            if Action.UNDEPLOY in mc.actions or Action.REPLACE in mc.actions:
                continue
            acts = [Action.UNDEPLOY] + [a for a in mc.actions if a not in (Action.NOOP, Action.DEPLOY)]
            if mc.deploy:
                acts.append(Action.DEPLOY)
            out[maddr] = _also_because(
                mc, Reason.CONNECTOR_UPDATE_REDEPLOY,
                f"{caddr} changes and the server refuses that while a model using it is loaded",
                actions=tuple(acts), depends_on=tuple(dict.fromkeys((*mc.depends_on, caddr))))
    return out


def _replace(change: ResourceChange, **kw) -> ResourceChange:
    from dataclasses import replace
    return replace(change, **kw)


# --- consumers of models: pipelines and agents (docs/references.md) ----------------------------

# A target whose change has one of these actions gets a new id in this apply.
_NEW_ID = (Action.REGISTER, Action.REPLACE, Action.CREATE)


def _innermost_first(resources: list[DesiredResource]) -> list[DesiredResource]:
    """Agents ordered so that an agent comes after the agents its `${agent:...}` references name
    (validation refuses cycles; a cycle left over is planned in file order)."""
    by_addr = {str(r.address): r for r in resources}
    out: list[DesiredResource] = []
    seen: set[str] = set()

    def visit(r: DesiredResource, trail: frozenset) -> None:
        a = str(r.address)
        if a in seen or a in trail:
            return
        for dep in r.depends_on:
            if dep in by_addr:
                visit(by_addr[dep], trail | {a})
        seen.add(a)
        out.append(r)
    for r in resources:
        visit(r, frozenset())
    return out


def _target_id(ctx: _Ctx, address: Address) -> Optional[str]:
    """The id a reference to `address` resolves to at plan time; None: known after apply."""
    ch = ctx.planned.get(str(address))
    if ch is None or any(a in ch.actions for a in _NEW_ID):
        return None
    return ch.server_id


def _label_of(ctx: _Ctx, object_id) -> str:
    """What an id is, for a moved reference: the stack's address, else the observed object's name."""
    if not isinstance(object_id, str):
        return "?"
    for addr, rs in ctx.state.resources.items():
        if rs.id == object_id:
            return addr
    for j in ctx.state.journal:
        if j.object_id == object_id:
            return f"{j.address}, superseded"
    for k in kinds.KINDS:
        obj = k.observed(ctx.observed).get(object_id)
        if obj is not None and k.name in ("model", "connector", "agent"):
            version = obj.source.get("model_version")
            return f"{k.name} {obj.source.get('name')!r}" + (f" version {version}" if version else "")
    return "not on the cluster" if object_id != references.KNOWN_AFTER_APPLY else "new"


def _moved(ctx: _Ctx, template: dict, before: Optional[dict], after: dict) -> list[str]:
    """`path: "old-id" (what it was) → "new-id" (address)` for each reference whose value changes."""
    out = []
    for path, kind, body in references.found(template):
        old, new = references.at(before, path) if before else None, references.at(after, path)
        if old == new or old is None:
            continue   # unchanged, or not there before (a field change, not a move)
        target = references.address_of(kind, body)
        out.append(f"{_path(list(path))}: {json.dumps(old)} ({_label_of(ctx, old)}) → {json.dumps(new)} ({target})")
    return list(dict.fromkeys(out))


def _resolve(ctx: _Ctx, r: DesiredResource) -> dict:
    """The consumer's form with its references resolved to ids (or "(known after apply)"); an unknown
    target (a file that skipped validation) is a plan error."""
    for target in references.targets(r.form):
        if target not in ctx.desired.resources:
            ctx.errors.append(f"{r.address}: names {target}, which the file does not declare")
        elif target.kind == "model" and not ctx.desired.resources[target].deploy:
            ctx.warnings.append(f"{r.address}: names {target}, which the file does not deploy; it cannot serve "
                                "until that version is deployed")
    return references.resolve(r.form, lambda a: _target_id(ctx, a))


def _plan_consumer(ctx: _Ctx, r: DesiredResource) -> ResourceChange:
    """An ingest or search pipeline (PUT by id: create or replace in place) or an agent (no update API in
    2.19: any change registers a new agent and deletes the old one)."""
    kind, agent = r.address.kind, r.address.kind == "agent"
    template = r.form
    after = _resolve(ctx, r)
    if agent:
        obj, managed, note = _match(ctx, r.address, kind, r.address.name)
    else:
        obj, managed, note = _match(ctx, r.address, kind, None)
        if obj is None and not managed:
            obj = _observed_pool(ctx, kind).get(r.address.name)
            owner = getattr(ctx.options, "owners", {}).get(r.address.name) if obj is not None else None
            if owner is not None:
                ctx.errors.append(f"{r.address}: the {kind} {r.address.name!r} is managed by stack {owner.stack!r} "
                                  f"(as {owner.address}); a stack never takes over another stack's objects")
                obj = None
    common = dict(after=after, template=template, depends_on=r.depends_on)
    if obj is None:
        return ResourceChange(r.address, (Action.CREATE,), **_because(_absent(note, "not on the cluster")),
                              drift=bool(note), **common)
    ctx.ids[str(r.address)] = obj.id
    ctx.claimed.add(obj.id)
    before = _masked(ctx, r.address, normalize.consumer_form(kind, obj.source), after)
    fields = diff_forms(before, after, replace_fields=tuple(before) + tuple(after) if agent else ())
    why: Why = []
    if not managed:
        why.append((Reason.UNMANAGED_MATCH, f"unmanaged {kind.replace('_', ' ')} with the same "
                                            f"{'name' if agent else 'id'}"))
    moved = _moved(ctx, template, before, after)
    if moved:
        why.append((Reason.REFERENCE_MOVED, "references move: " + ", ".join(moved)))
        if kind == "ingest_pipeline" and any(k == "model" for _, k, _ in references.found(template)):
            ctx.warnings.append(f"{r.address}: its embedding model changes ({'; '.join(moved)}); documents already "
                                "indexed keep the embeddings of the old model: reindex them (or re-run the pipeline "
                                "over them) so that old and new vectors are comparable")
    dangling = _dangling(ctx, template, before)
    if dangling:
        ctx.warnings.append(f"{r.address}: names {', '.join(dangling)}, which no longer exist(s) on the cluster; "
                            "it fails until this plan is applied")
    others = [f.path for f in fields if not any(f.path.startswith(m.split(":")[0]) for m in moved)]
    if others:
        why.append((Reason.FIELDS_DIFFER, "fields differ: " + ", ".join(others)))
    if fields and agent:
        why.append((Reason.NO_UPDATE_API, "agents cannot be updated in 2.19: registered again with a new id, "
                                          "the old one deleted after the apply"))
        actions: tuple[Action, ...] = (Action.REPLACE,)
    else:
        actions = tuple(([Action.ADOPT] if not managed else []) + ([Action.UPDATE] if fields else [])) or (Action.NOOP,)
    edited = managed and bool(fields) and (_drift(ctx, r.address, before, after) or bool(dangling))
    return ResourceChange(r.address, actions, **_because(why), server_id=obj.id, before=before,
                          field_changes=fields, drift=edited, **common)


def _dangling(ctx: _Ctx, template: dict, before: dict) -> list[str]:
    """The ids a consumer on the cluster names where its references are that no object has any more."""
    out = []
    for path, kind, _ in references.found(template):
        if not references.REFERENCE.fullmatch(references.at(template, path)):
            continue                           # an id inside a longer string (a prompt): not checked
        old = references.at(before, path)
        if isinstance(old, str) and old and old not in kinds.kind(kind).observed(ctx.observed):
            out.append(f"{kind} {old}")
    return list(dict.fromkeys(out))


def _check_in_use(ctx: _Ctx, changes: list[ResourceChange]) -> None:
    """Nothing in use is deleted: before a model version, connector or agent is undeployed or deleted
    (replaced ones included), every pipeline and agent on the cluster is searched for its id, under any
    key and inside strings. A consumer this plan re-points or deletes is fine; any other makes the plan
    fail (or, with `allow_in_use`, warn) with the list of consumers."""
    leaving: dict[str, str] = {}
    undeployed: set[str] = set()     # only undeployed: the file's own consumers may name it (a plan warning)
    for c in changes:
        if not c.server_id or c.kind not in ("model", "connector", "agent"):
            continue
        if Action.DELETE in c.actions or Action.REPLACE in c.actions:
            leaving[c.server_id] = f"{c.address} (id {c.server_id}, {'replaced' if Action.DELETE not in c.actions else 'deleted'})"
        elif Action.UNDEPLOY in c.actions and Action.DEPLOY not in c.actions:
            leaving[c.server_id] = f"{c.address} (id {c.server_id}, undeployed)"
            undeployed.add(c.server_id)
    if not leaving:
        return
    by_id = {(c.kind, c.server_id): c for c in changes if c.server_id and kinds.kind(c.kind).consumer}
    blocked: dict[str, list[str]] = {}
    for k in kinds.CONSUMERS:
        for oid, obj in sorted(k.observed(ctx.observed).items()):
            used = references.ids_used(obj.source, set(leaving))
            if not used:
                continue
            mine = by_id.get((k.name, oid))
            if mine is not None and Action.DELETE in mine.actions:
                continue                       # deleted by this plan, before what it names
            if mine is not None and Action.REPLACE not in mine.actions:
                used = references.ids_used(mine.after or {}, used - undeployed)   # what it still names after
            elif mine is not None:
                used = set()                   # an agent registered again with the new ids, the old one deleted
            label = f'{k.name}["{oid}"]' if k.name != "agent" else f"agent {obj.source.get('name')!r} (id {oid})"
            for i in used:
                blocked.setdefault(i, []).append(label + (" (managed by this stack)" if mine is not None else ""))
    for object_id, users in sorted(blocked.items()):
        text = (f"{leaving[object_id]} is still named by {len(users)} pipeline(s)/agent(s) that this plan does "
                f"not re-point: {', '.join(users)}")
        if ctx.options.allow_in_use:
            ctx.warnings.append(text + " (--allow-in-use: they will name an id that no longer serves)")
        else:
            ctx.errors.append(text + "; point them elsewhere (or manage them in this file with ${model:...} "
                                     "references), or pass --allow-in-use to proceed anyway")


# --- deletes -----------------------------------------------------------------------------------

def _observed_pool(ctx: _Ctx, kind: str) -> dict[str, ObservedObject]:
    return kinds.kind(kind).observed(ctx.observed)


def _plan_deletes(ctx: _Ctx, wanted: dict) -> list[ResourceChange]:
    wanted_keys = {str(a) for a in wanted}
    out = []
    for addr, rs in ctx.state.resources.items():
        if addr in wanted_keys:
            continue
        address = Address.parse(addr)
        desired = ctx.desired.resources.get(address)
        if desired is not None and desired.prevent_destroy:
            ctx.errors.append(f"{addr}: lifecycle.prevent_destroy is set, but this plan would delete it "
                              "(remove prevent_destroy first if you mean it)")
        obj = _observed_pool(ctx, address.kind).get(rs.id)
        if obj is None:
            out.append(ResourceChange(address, (Action.DELETE,),
                                      **_because([(Reason.ALREADY_GONE, "already gone from the cluster; forget it")]),
                                      server_id=rs.id, server_version=rs.server_version, drift=True))
            continue
        deployed = address.kind == "model" and normalize.is_deployed(obj.source)
        actions = ((Action.UNDEPLOY,) if deployed else ()) + (Action.DELETE,)
        why = ([(Reason.DESTROY_REQUESTED, "destroy requested")] if ctx.options.destroy else
               [(Reason.NOT_IN_FILE, "no longer in the file")])
        before = (observed_model_form(ctx, obj.source) if address.kind == "model" else
                  normalize.consumer_form(address.kind, obj.source) if kinds.kind(address.kind).consumer else
                  normalize.group_form(obj.source, access_control=ctx.observed.model_access_control)
                  if address.kind == "model_group" else
                  normalize.connector_form(obj.source, access_control=ctx.observed.connector_access_control))
        out.append(ResourceChange(address, actions, **_because(why), server_id=rs.id,
                                  server_version=obj.source.get("model_version") or rs.server_version,
                                  before=before, deployed=deployed))
    # Deletes run last, dependents first: model versions, then groups, then connectors.
    out.sort(key=lambda c: (-kinds.kind(c.address.kind).order, str(c.address)))
    deleted_groups = {c.server_id for c in out if c.address.kind == "model_group" and c.server_id}
    if not deleted_groups:
        return out
    deleted_ids = {c.server_id for c in out}
    kept_by_group: dict[str, list[ObservedObject]] = {}
    for o in ctx.observed.models.values():
        if o.source.get("model_group_id") in deleted_groups and o.id not in deleted_ids:
            kept_by_group.setdefault(o.source["model_group_id"], []).append(o)
    for c in out:
        if c.address.kind == "model_group" and c.server_id:
            others = kept_by_group.get(c.server_id, [])
            if others:
                ctx.errors.append(f"{c.address}: cannot delete: it holds {len(others)} model version(s) this stack "
                                  f"does not manage ({', '.join(sorted(o.id for o in others))})")
    return out


def unmanaged_versions(observed: Observed, group_ids: dict[str, str], known: set[str]) -> dict[str, list[ObservedObject]]:
    """group address -> the model versions in that group (`group_ids`: server id -> address) whose ids
    are not in `known` (the ids some address of the stack manages or matches), sorted by id."""
    out: dict[str, list[ObservedObject]] = {}
    for mid, o in sorted(observed.models.items()):
        gid = o.source.get("model_group_id")
        if gid in group_ids and mid not in known:
            out.setdefault(group_ids[gid], []).append(o)
    return out


def unmanaged_note(objs: list[ObservedObject]) -> str:
    items = ", ".join(f"{o.id} ({o.source.get('name')!r}, version {o.source.get('model_version')})" for o in objs)
    return f"holds {len(objs)} model version(s) mlsync does not manage: {items}"


def _check_unmanaged_versions(ctx: _Ctx, changes: list[ResourceChange]) -> list[ResourceChange]:
    """Versions inside a group that this stack does not manage are never touched. In a group the stack
    manages they appeared outside mlsync: drift on the group's change. In a group being adopted they
    were there before: a warning."""
    group_ids = {i: a for a, i in ctx.ids.items() if a.startswith("model_group[")}
    extra = unmanaged_versions(ctx.observed, group_ids, set(ctx.ids.values()) | ctx.claimed)
    out = []
    for ch in changes:
        objs = extra.get(str(ch.address))
        if objs and str(ch.address) in ctx.state.resources:
            note = unmanaged_note(objs) + " (left alone: delete them, or declare and import them)"
            ch = _also_because(ch, Reason.UNMANAGED_VERSIONS, note, drift=True)
        elif objs:
            ctx.warnings.append(f"{ch.address}: {unmanaged_note(objs)}")
        out.append(ch)
    return out
