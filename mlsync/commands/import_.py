"""`mlsync import ADDRESS ID`: adopt one existing object into a stack's state."""

from __future__ import annotations

from typing import Optional, TextIO

from mlsync.commands.output import EXIT_OK

#: How often import re-reads and re-saves the state when somebody else wrote it meanwhile.
SAVE_ATTEMPTS = 5


def import_(address: str, object_id: str, options, out: TextIO, *, stack: str,
            state_file: Optional[str] = None) -> int:
    """`mlsync import ADDRESS ID`: adopt one existing object into the stack's state.

    The object must exist, be of the address's kind and carry its name (and, for a model, sit in the
    address's group); the state must not already manage the address or the object otherwise. Raises
    MlsyncError (exit 1) on any of those, when another stack manages the object (a move between
    stacks is explicit: `mlsync state rm` in that stack first), and when the state could not be saved."""
    from mlsync.commands import common
    from mlsync.core.address import Address
    from mlsync.core.errors import MlsyncError

    try:
        addr = Address.parse(address)
    except ValueError as err:
        raise MlsyncError(str(err)) from None
    cluster = common.connect(options)
    obj = _find(address, addr, object_id, cluster.observe())
    store = common.state_store(cluster, state_file)
    _not_owned(store, stack, addr, object_id)
    _record(store, stack, addr, object_id, obj)
    print(f"Imported {object_id} as {addr}.", file=out)
    return EXIT_OK


def _find(address: str, addr, object_id: str, observed):
    """The observed object `object_id`, checked against what `addr` (parsed from `address`) says about it."""
    from mlsync.core import kinds
    from mlsync.core.address import Address
    from mlsync.core.errors import MlsyncError

    obj = kinds.kind(addr.kind).observed(observed).get(object_id)
    if obj is None:
        other = kinds.observed_kind_of(observed, object_id)
        if other is not None:
            raise MlsyncError(f"{address}: {object_id} is a {other.name}, not a {addr.kind}; give the id of the "
                              f"{addr.kind} this address names")
        raise MlsyncError(f"{address}: no {addr.kind} with id {object_id} on the cluster")
    if addr.kind.endswith("_pipeline"):   # a pipeline's id is its name (docs/references.md)
        if object_id != addr.name:
            raise MlsyncError(f"{address}: a pipeline's address is its id: {Address(addr.kind, object_id)}")
        return obj
    if obj.source.get("name") != addr.name:
        raise MlsyncError(f"{address}: {addr.kind} {object_id} is named {obj.source.get('name')!r}, not {addr.name!r}")
    if addr.kind != "model":
        return obj
    group = observed.groups.get(obj.source.get("model_group_id"))
    if group is None or group.source.get("name") != addr.group:
        where = repr(group.source.get("name")) if group else "no existing group"
        raise MlsyncError(f"{address}: model {object_id} is not in group {addr.group!r} (it is in {where})")
    remote = (obj.source.get("algorithm") or obj.source.get("function_name") or "").upper() == "REMOTE"
    # a remote model is one model (no label) or a version of a remote family (any label; docs/references.md)
    if not remote and addr.version is None:
        example = Address("model", addr.name, group=addr.group, version=str(obj.source.get("model_version")))
        raise MlsyncError(f"{address}: model {object_id} is a version of a local model (server version "
                          f"{obj.source.get('model_version')}); its address needs your version label, e.g. {example}")
    return obj


def _not_owned(store, stack: str, addr, object_id: str) -> None:
    """Refuse an object another stack manages (its state or its journal): one object, one stack. Moving
    it is explicit: the other stack lets go first (`mlsync state rm`), then this import adopts it."""
    import shlex

    from mlsync.core.errors import MlsyncError

    owner = store.owners(stack).get(object_id)
    if owner is not None:
        raise MlsyncError(f"{addr}: {object_id} is managed by stack {owner.stack!r} (as {owner.address}); a stack "
                          f"never takes over another stack's objects. To move it to stack {stack!r}: "
                          f"{owner.how_to_release()}, then run `mlsync import --stack {shlex.quote(stack)} "
                          f"{shlex.quote(str(addr))} {object_id}` again")


def _record(store, stack: str, addr, object_id: str, obj) -> None:
    """Add `addr` -> `object_id` to the stack's state; re-read and retry when somebody else saved the
    state meanwhile, and fail after SAVE_ATTEMPTS conflicts."""
    from mlsync.core.errors import LockHeld, MlsyncError, StateConflict
    from mlsync.core.state import ResourceState, StackState

    conflict: Optional[StateConflict] = None
    for _ in range(SAVE_ATTEMPTS):
        st = store.load(stack) or StackState(stack)
        if st.lock is not None:
            raise LockHeld(stack, st.lock.holder, st.lock.host, str(st.lock.started), str(st.lock.expires))
        # the same id under another address of the same kind (pipeline ids are the user's: an ingest and a
        # search pipeline may share one)
        claimed = {r.id: a for a, r in st.resources.items() if r.kind == addr.kind}
        if object_id in claimed and claimed[object_id] != str(addr):
            raise MlsyncError(f"{object_id} is already managed as {claimed[object_id]}")
        current = st.resources.get(str(addr))
        if current is not None and current.id != object_id:
            raise MlsyncError(f"stack {stack!r} already manages {addr} as {current.id}; run "
                              f"`mlsync state rm '{addr}'` first if you mean to point it at {object_id}")
        st.resources[str(addr)] = ResourceState(str(addr), addr.kind, object_id,
                                                server_version=obj.source.get("model_version"))
        try:
            store.save(st)
            return
        except StateConflict as err:  # somebody wrote meanwhile: re-read and retry
            conflict = err
    raise MlsyncError(f"stack {stack!r}: {object_id} was not imported as {addr}: the state kept changing while "
                      f"it was saved ({SAVE_ATTEMPTS} attempts; last: {conflict}); run the import again") from conflict
