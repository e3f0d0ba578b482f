"""Where a stack's state lives, with optimistic concurrency and a lease lock (SPEC §5).

Two backends implement `StateStore`:

- `ClusterStateStore(cluster)`: the cluster's `mlsync-state` index (through `ClusterPort.read_state` /
  `write_state`): a head document per stack written with `if_seq_no`/`if_primary_term` (the lease, the
  serial, the fingerprint key) and one document per resource and journal entry (layout 2,
  `mlsync.core.state.split`), of which a save sends only those that changed. A layout-1 document (the
  whole state in one) is read as it is and moved to layout 2 by the first `lock()`.
- `FileStateStore(path)`: a local JSON file (`--state-file`) holding every stack's state, replaced
  atomically (temp file + rename); writers are serialised by `fcntl.flock` on a sidecar `<path>.lock`
  and refused when the stack's `serial` moved since they read it.

Every successful `save` increments `StackState.serial` (in the object passed in too). A `save` of a
state that someone else wrote after it was read raises `StateConflict`.

The lock is a lease stored in the state document itself (`StackState.lock`: holder, host, start,
expiry, id). `lock()` refuses with `LockHeld` while another unexpired lease exists and takes over an
expired one; the holder renews it (`renew`) and releases it (`unlock`). Because the lease is part of
the document, a holder whose lease was taken over finds out at its next save (`StateConflict`).

The `state_*` functions at the bottom back `mlsync state list | show | rm`; they return data or text
and never print.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import logging
import os
import socket
import tempfile
import threading
import time
import uuid
import dataclasses
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Optional, Union

from mlsync.core.address import Address
from mlsync.core.errors import ClusterError, LockHeld, MlsyncError, StateConflict
from mlsync.core.state import (DEFAULT_LOCK_TTL, STATE_FORMAT, Lock, Owner, ResourceState, StackState,
                               StatePartsNotWritten, StateStore, diff_parts, head_of, is_split, iso_time, owners_of,
                               split)

if TYPE_CHECKING:  # pragma: no cover
    from mlsync.core.observed import ClusterPort, StateDocument

FILE_FORMAT = 1
log = logging.getLogger(__name__)


class LockStillValid(LockHeld):
    """`unlock` without `--force` of a lease that has not expired yet."""

    def __init__(self, stack: str, lock: Lock):
        MlsyncError.__init__(
            self, f"stack {stack!r} is locked by {lock.holder} on {lock.host} since {iso_time(lock.started)} and "
                  f"the lease is valid until {iso_time(lock.expires)}; if that apply is dead, use "
                  f"`mlsync unlock --force`")
        self.lock = lock


def _lock_held(stack: str, lock: Lock) -> LockHeld:
    err = LockHeld(stack, lock.holder, lock.host, iso_time(lock.started), iso_time(lock.expires))
    err.lock = lock  # type: ignore[attr-defined]
    return err


def boot_id() -> Optional[str]:
    """Identifies this machine's current boot (Linux); None elsewhere, which disables dead-holder checks."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip() or None
    except OSError:
        return None


def pid_namespace() -> Optional[str]:
    """This process's pid namespace, e.g. "pid:[4026531836]" (Linux); None when it cannot be read."""
    try:
        return os.readlink("/proc/self/ns/pid") or None
    except OSError:
        return None


def proc_stat(pid: int) -> Optional[tuple[str, int]]:
    """(state letter, start time in clock ticks after boot) of process `pid` in this pid namespace, from
    /proc/<pid>/stat (fields 3 and 22); None when there is no such process or it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()   # the command name (field 2) may hold anything
        return fields[0], int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def pid_exists(pid: int) -> Optional[bool]:
    """Whether `pid` names a process in this pid namespace; None when that cannot be told."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True          # it exists, owned by someone else
    except (OSError, ValueError, OverflowError):
        return None
    return True


def process_identity() -> dict:
    """What a lease records about the process holding it (see `holder_is_dead`)."""
    pid = os.getpid()
    stat = proc_stat(pid)
    return {"pid": pid, "boot_id": boot_id(), "pid_ns": pid_namespace(), "start_time": stat[1] if stat else None}


def holder_is_dead(lock: Lock) -> bool:
    """True only when it is certain that the lease's process is gone: it was taken on this very host,
    boot and pid namespace (containers on one host may share hostname and boot id, never a pid
    namespace unless they share pids), and that pid now names no process, a zombie, or a process with
    another start time (the pid was reused). Anything uncertain (another host or container, a lease
    without these fields, /proc unreadable) counts as alive."""
    if lock.pid is None or lock.boot_id is None or lock.pid_ns is None:
        return False
    if lock.host != socket.gethostname() or lock.boot_id != boot_id() or lock.pid_ns != pid_namespace():
        return False
    exists = pid_exists(lock.pid)
    if exists is False:
        return True
    if exists is None:
        return False
    stat = proc_stat(lock.pid)
    if stat is None:                     # exited between the two looks, or /proc is not ours to read
        return pid_exists(lock.pid) is False
    state, started = stat
    if state == "Z":
        return True
    return lock.start_time is not None and started != lock.start_time


def _check_format(body: dict, where: str) -> None:
    fmt = body.get("format", STATE_FORMAT)
    if not isinstance(fmt, int) or fmt > STATE_FORMAT:
        raise MlsyncError(f"{where}: state format {fmt!r} was written by a newer mlsync (this one reads "
                          f"format {STATE_FORMAT}); upgrade mlsync")


#: Tries of one lease release (see `_LeaseMixin.unlock`).
UNLOCK_ATTEMPTS = 3


class _LeaseMixin:
    """Lease locking on top of load/save; shared by both backends."""

    clock: Callable[[], float]

    def load(self, stack: str) -> Optional[StackState]:  # pragma: no cover - implemented by backends
        raise NotImplementedError

    def save(self, state: StackState) -> StackState:  # pragma: no cover
        raise NotImplementedError

    def lock(self, stack: str, holder: str, ttl_seconds: float = DEFAULT_LOCK_TTL, *,
             host: Optional[str] = None, on_takeover: Optional[Callable[[Lock], None]] = None) -> StackState:
        """Take the stack's lease; returns the state (created empty if the stack has none yet).

        Raises `LockHeld` (naming holder, host and since when) while another unexpired lease exists.
        An expired lease is taken over, and so is an unexpired one whose holder was a process on this
        machine that no longer runs (a killed apply); `on_takeover(old_lock)` is then called after the save.
        """
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        for _ in range(5):
            state = self.load(stack) or StackState(stack=stack)
            now = self.clock()
            previous = state.lock
            if previous is not None and previous.expires > now and not holder_is_dead(previous):
                raise _lock_held(stack, previous)
            state.lock = Lock(holder=holder, host=host or socket.gethostname(), started=now,
                              expires=now + ttl_seconds, lock_id=uuid.uuid4().hex, **process_identity())
            try:
                self.save(state)
            except StateConflict:
                continue  # someone wrote in between: look again (they may have taken the lock)
            if previous is not None and on_takeover is not None:
                on_takeover(previous)
            return state
        raise StateConflict(f"could not lock stack {stack!r}: its state kept changing while trying")

    def renew(self, state: StackState, ttl_seconds: float = DEFAULT_LOCK_TTL) -> StackState:
        """Extend the lease held in `state` and save it. `StateConflict` means the lease was lost."""
        if state.lock is None:
            raise MlsyncError(f"stack {state.stack!r}: cannot renew a lock that is not held")
        state.lock.expires = self.clock() + ttl_seconds
        return self.save(state)

    def unlock(self, stack: str, lock_id: Optional[str] = None, force: bool = False) -> Optional[Lock]:
        """Release the stack's lease; returns the lock released (None when there was none).

        - `lock_id` given: release only that lease; another holder's lease raises `LockHeld`.
        - no `lock_id`, no `force`: release only an expired (stale) lease, else `LockStillValid`.
        - `force`: release whatever lease there is.

        A failed read or write (a 500, a lost answer) is tried again, UNLOCK_ATTEMPTS in all: releasing
        is idempotent (a fresh read, then only this lease is cleared), and a lease left behind refuses
        every apply from another host until it expires (found by the fault campaign, docs/reliability.md).
        """
        for attempt in range(1, UNLOCK_ATTEMPTS + 1):
            try:
                return self._unlock_once(stack, lock_id, force)
            except ClusterError:
                if attempt == UNLOCK_ATTEMPTS:
                    raise
                getattr(self, "sleep", time.sleep)(0.5 * attempt)
        raise AssertionError("unreachable")

    def _unlock_once(self, stack: str, lock_id: Optional[str], force: bool) -> Optional[Lock]:
        for _ in range(5):
            state = self.load(stack)
            if state is None or state.lock is None:
                return None
            current = state.lock
            if not force:
                if lock_id is not None and current.lock_id != lock_id:
                    raise _lock_held(stack, current)
                if lock_id is None and current.expires > self.clock():
                    raise LockStillValid(stack, current)
            state.lock = None
            try:
                self.save(state)
            except StateConflict:
                continue
            return current
        raise StateConflict(f"could not unlock stack {stack!r}: its state kept changing while trying")


class ClusterStateStore(_LeaseMixin):
    """State in the cluster (`mlsync-state` index), optimistic concurrency via the head document's
    (seq_no, primary_term) as last read or written by this store. In layout 2 the store also keeps the
    parts as last read or written, and a save sends the head and the parts that differ from them."""

    def __init__(self, cluster: "ClusterPort", *, clock: Callable[[], float] = time.time) -> None:
        self.cluster = cluster
        self.clock = clock
        self._versions: dict[str, tuple[Optional[int], Optional[int]]] = {}
        # stack -> its parts as stored (layout 2), or None (layout 1: the whole state in one document)
        self._parts: dict[str, Optional[dict[str, dict]]] = {}
        self._mutex = threading.RLock()

    def _remember(self, stack: str, doc: Optional["StateDocument"]) -> None:
        if doc is None:   # a new stack starts in layout 2
            self._versions[stack], self._parts[stack] = (None, None), {}
        else:
            self._versions[stack] = (doc.seq_no, doc.primary_term)
            self._parts[stack] = dict(doc.parts or {}) if is_split(doc.body) else None

    def _forget(self, stack: str) -> None:
        self._versions.pop(stack, None)
        self._parts.pop(stack, None)

    def load(self, stack: str) -> Optional[StackState]:
        with self._mutex:
            doc = self.cluster.read_state(stack)
            if doc is not None:
                _check_format(doc.body, f"state of stack {stack!r}")
            self._remember(stack, doc)
            return StackState.from_json(doc.body) if doc is not None else None

    def lock(self, stack: str, holder: str, ttl_seconds: float = DEFAULT_LOCK_TTL, *,
             host: Optional[str] = None, on_takeover: Optional[Callable[[Lock], None]] = None) -> StackState:
        """`_LeaseMixin.lock`, then a layout-1 state moves to layout 2 under the lease just taken."""
        state = super().lock(stack, holder, ttl_seconds, host=host, on_takeover=on_takeover)
        with self._mutex:
            if stack in self._parts and self._parts[stack] is None:
                self._migrate(state)
        return state

    def _migrate(self, state: StackState) -> None:
        """Layout 1 -> 2: every part is written first (deleting any an earlier, unfinished migration
        left), then the head switches to layout 2, conditionally like every save. Until that switch the
        head is the layout-1 document, and readers ignore parts: a crash or a failure at any point
        leaves a readable state. A failed part write keeps layout 1 (a warning; the next lock tries
        again)."""
        stack = state.stack
        _, parts = split(state.to_json())
        try:
            self.cluster.write_state_parts(stack, parts, replace=True)
        except ClusterError as err:
            log.warning("stack %r: the state stays one document for now (moving it to one document per "
                        "resource failed: %s)", stack, err)
            return
        self._parts[stack] = parts
        self.save(state)

    def save(self, state: StackState) -> StackState:
        stack = state.stack
        with self._mutex:
            if stack not in self._versions or stack not in self._parts:  # not read through this store
                doc = self.cluster.read_state(stack)
                current = doc.body.get("serial", 0) if doc is not None else 0
                if current != state.serial:
                    raise StateConflict(
                        f"the state of stack {stack!r} is at serial {current}, not {state.serial}: someone else "
                        f"wrote it since it was read; re-run the command")
                self._remember(stack, doc)
            seq_no, primary_term = self._versions[stack]
            body = state.to_json()
            body["serial"] = state.serial + 1
            before = self._parts[stack]
            parts: Optional[dict[str, dict]] = None
            changes: dict = {}
            if before is not None:
                body, parts = split(body, before)
                changes = diff_parts(before, parts)
            try:
                # parts only when some changed: a head-only save is the same call as in layout 1
                doc = self.cluster.write_state(stack, body, seq_no, primary_term,
                                               **({"parts": changes} if changes else {}))
            except StatePartsNotWritten:
                # The head (and the lease in it) landed; some parts may not have. Re-read before the
                # next save, which then writes what is missing.
                state.serial += 1
                self._forget(stack)
                raise
            except StateConflict as err:
                self._forget(stack)
                raise StateConflict(
                    f"the state of stack {stack!r} was changed by someone else since it was read "
                    f"(serial {state.serial}); re-run the command") from err
            except ClusterError as err:
                self._forget(stack)
                if err.status == 409:
                    raise StateConflict(
                        f"the state of stack {stack!r} was changed by someone else since it was read "
                        f"(serial {state.serial}); re-run the command") from err
                if not err.ambiguous:
                    raise
                # no answer / 5xx: the write may have landed; if the stored head is ours, it did
                stored = self.cluster.read_state(stack)
                if stored is None or head_of(stored.body) != body:
                    raise
                if parts is not None:    # the head landed: send the parts it did not take along
                    missing = diff_parts(dict(stored.parts or {}), parts)
                    if missing:
                        try:
                            self.cluster.write_state_parts(stack, missing)
                        except ClusterError as perr:
                            state.serial += 1
                            raise MlsyncError(f"the state of stack {stack!r} was saved only in part: {perr}") from perr
                doc = stored
            state.serial += 1
            self._versions[stack] = (doc.seq_no, doc.primary_term)
            self._parts[stack] = parts
            return state

    def owners(self, exclude_stack: Optional[str] = None) -> dict[str, Owner]:
        """server id -> the other stack managing it, from one search over the state index
        (`ClusterPort.search_states`)."""
        return owners_of(self.cluster.search_states(), exclude_stack)


class FileStateStore(_LeaseMixin):
    """State in a local JSON file: `{"mlsync_state_file": 1, "stacks": {stack: state}}`.

    Writes go to a temp file in the same directory, are fsynced and renamed over the file, so a
    reader never sees half a file. Writers hold an exclusive `flock` on `<path>.lock` while they
    re-read, compare the stack's serial with the one they loaded, and replace the file.
    """

    def __init__(self, path: Union[str, os.PathLike], *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.clock = clock
        self._parsed: Optional[tuple[tuple, dict]] = None   # (file identity, data) of the last read

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        try:
            import fcntl
        except ImportError as err:  # pragma: no cover - Windows
            raise MlsyncError("--state-file needs fcntl (a POSIX system); use the cluster state instead") from err
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _read_all(self, *, reuse: bool = False) -> dict:
        """The whole file, parsed. `reuse`: what the last read parsed, when the file is still the one it
        read (device, inode, size, modification time; a write replaces the file, so a new inode): the
        owners' read right after `load` would parse the same megabytes again."""
        try:
            with open(self.path, "rb") as fh:
                st = os.fstat(fh.fileno())
                key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
                if reuse and self._parsed is not None and self._parsed[0] == key:
                    return self._parsed[1]
                text = fh.read().decode("utf-8")
        except FileNotFoundError:
            return {"mlsync_state_file": FILE_FORMAT, "stacks": {}}
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise MlsyncError(f"{self.path}: not a valid mlsync state file: {err}") from err
        if not isinstance(data, dict) or not isinstance(data.get("stacks"), dict):
            raise MlsyncError(f"{self.path}: not an mlsync state file (no \"stacks\" mapping)")
        if data.get("mlsync_state_file", FILE_FORMAT) > FILE_FORMAT:
            raise MlsyncError(f"{self.path}: written by a newer mlsync (file format "
                              f"{data.get('mlsync_state_file')}); upgrade mlsync")
        self._parsed = (key, data)
        return data

    def _write_all(self, data: dict) -> None:
        fd, tmp = tempfile.mkstemp(dir=str(self.path.parent), prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=2, sort_keys=True)
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        with contextlib.suppress(OSError):  # make the rename durable (best effort)
            dir_fd = os.open(str(self.path.parent), os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def stacks(self) -> list[str]:
        return sorted(self._read_all()["stacks"])

    def load(self, stack: str) -> Optional[StackState]:
        body = self._read_all()["stacks"].get(stack)
        if body is None:
            return None
        _check_format(body, f"{self.path}: stack {stack!r}")
        return StackState.from_json(body)

    def owners(self, exclude_stack: Optional[str] = None) -> dict[str, Owner]:
        """server id -> the other stack managing it, over every stack this file holds (stacks whose
        state is elsewhere, e.g. on the cluster, are not seen)."""
        return owners_of(self._read_all(reuse=True)["stacks"], exclude_stack,
                         document=lambda stack: f"{self.path}: stack {stack!r}")

    def save(self, state: StackState) -> StackState:
        with self._exclusive():
            data = self._read_all()
            current = data["stacks"].get(state.stack)
            current_serial = current.get("serial", 0) if current is not None else 0
            if current_serial != state.serial:
                raise StateConflict(
                    f"{self.path}: the state of stack {state.stack!r} is at serial {current_serial}, not "
                    f"{state.serial}: someone else wrote it since it was read; re-run the command")
            body = state.to_json()
            body["serial"] = state.serial + 1
            data["stacks"][state.stack] = body
            data["mlsync_state_file"] = FILE_FORMAT
            self._write_all(data)
            state.serial += 1
            return state


# --------------------------------------------------------------------------- `mlsync state ...`


def canonical_address(text: str) -> str:
    """`model[ "g" ]...` spelled any valid way -> the canonical address string; MlsyncError if invalid."""
    try:
        return str(Address.parse(text.strip()))
    except ValueError as err:
        raise MlsyncError(str(err)) from err


def _unknown(stack: str, address: str, known: list[str]) -> MlsyncError:
    close = difflib.get_close_matches(address, known, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return MlsyncError(f"stack {stack!r} does not manage {address}{hint}")


def state_list(store: StateStore, stack: str) -> list[ResourceState]:
    """The resources the stack manages, sorted by address (empty when the stack has no state)."""
    state = store.load(stack)
    if state is None:
        return []
    return [state.resources[a] for a in sorted(state.resources)]


def state_list_text(store: StateStore, stack: str) -> str:
    state = store.load(stack)
    if state is None or (not state.resources and not state.journal and state.lock is None):
        return f"stack {stack!r} has no state"
    lines = []
    for address in sorted(state.resources):
        r = state.resources[address]
        version = f"  version {r.server_version}" if r.server_version else ""
        lines.append(f"{address}  {r.id}{version}")
    if state.journal:
        lines.append(f"{len(state.journal)} interrupted operation(s) in the journal "
                     f"(the next apply resolves them):")
        for j in state.journal:
            ids = ", ".join(f"{k} {v}" for k, v in (("task", j.task_id), ("id", j.object_id)) if v)
            lines.append(f"  {j.address}: {j.operation} ({j.status}{', ' + ids if ids else ''})")
    if state.lock is not None:
        lines.append(f"locked by {state.lock.holder} on {state.lock.host} since {iso_time(state.lock.started)}, "
                     f"lease until {iso_time(state.lock.expires)}")
    return "\n".join(lines)


def state_show(store: StateStore, stack: str, address: str) -> dict:
    """Everything the state holds about one address: the ResourceState fields plus its journal entries."""
    address = canonical_address(address)
    state = store.load(stack)
    resources = state.resources if state is not None else {}
    journal = [asdict(j) for j in (state.journal if state is not None else []) if j.address == address]
    if address not in resources:
        if journal:
            return {"address": address, "managed": False, "journal": journal}
        raise _unknown(stack, address, sorted(resources))
    return {**asdict(resources[address]), "managed": True, "journal": journal}


def state_mv(store: StateStore, stack: str, to_stack: str, addresses: list[str], *,
             holder: str = "mlsync state mv", ttl_seconds: float = 60.0) -> list[ResourceState]:
    """Move `addresses` from `stack`'s state to `to_stack`'s (the objects themselves are untouched): the
    explicit way an object changes owner (one object, one stack). All or nothing; both stacks' leases
    are held for the edit. The target is written first: a crash between the two writes leaves the
    object in both states, which every plan of either stack refuses (naming the other) until the
    command is run again; never in neither, where a plan could adopt it. Refused: an address not in
    `stack`, one `to_stack` already has for another object, one with an operation still in flight
    (finish it with `mlsync apply` first). Returns what was moved."""
    if stack == to_stack:
        raise MlsyncError(f"state mv: the source and the target are both stack {stack!r}")
    wanted = list(dict.fromkeys(canonical_address(a) for a in addresses))
    source = store.lock(stack, holder, ttl_seconds)
    try:
        for address in wanted:
            if address not in source.resources:
                raise _unknown(stack, address, sorted(source.resources))
            busy = [j.operation for j in source.journal if j.address == address]
            if busy:
                raise MlsyncError(f"state mv: {address} has an operation in flight in stack {stack!r} "
                                  f"({', '.join(busy)}); run `mlsync apply` on it first")
        target = store.lock(to_stack, holder, ttl_seconds)
        try:
            for address in wanted:
                rs, there = source.resources[address], target.resources.get(address)
                if there is not None and there.id != rs.id:
                    raise MlsyncError(f"state mv: stack {to_stack!r} already manages {address} as {there.kind} "
                                      f"{there.id}, not {rs.id}; remove it there first (`mlsync state rm`)")
            moved = [source.resources[a] for a in wanted]
            for rs in moved:
                salt = rs.fingerprint_salt or source.fingerprint_key
                target.resources[rs.address] = dataclasses.replace(
                    rs, fingerprint_salt=None if salt == target.fingerprint_key else salt)
            store.save(target)
            for a in wanted:
                del source.resources[a]
            store.save(source)
            return moved
        finally:
            store.unlock(to_stack, lock_id=target.lock.lock_id if target.lock else None)
    finally:
        store.unlock(stack, lock_id=source.lock.lock_id if source.lock else None)


def state_show_text(store: StateStore, stack: str, address: str) -> str:
    data = state_show(store, stack, address)
    lines = []
    for key in ("address", "kind", "id", "server_version", "applied_fingerprint", "credential_fingerprint",
                "applied_deploy", "fingerprint_salt"):
        if key in data:
            lines.append(f"{key}: {data[key] if data[key] is not None else '-'}")
    if not data.get("managed"):
        lines.append("managed: no (only an interrupted operation is recorded)")
    for j in data["journal"]:
        lines.append(f"in flight: {j['operation']} ({j['status']}) since {iso_time(j['started'])}"
                     + (f", task {j['task_id']}" if j.get("task_id") else "")
                     + (f", id {j['object_id']}" if j.get("object_id") else ""))
    return "\n".join(lines)


def state_rm(store: StateStore, stack: str, addresses: list[str], *, holder: str = "mlsync state rm",
             ttl_seconds: float = 60.0) -> list[ResourceState]:
    """Stop managing `addresses` (the server objects are left alone). All or nothing: an unknown address
    raises before anything is removed. Takes the stack's lock for the edit. Returns what was removed."""
    wanted = [canonical_address(a) for a in addresses]
    state = store.lock(stack, holder, ttl_seconds)
    lock_id = state.lock.lock_id if state.lock else None
    try:
        for address in wanted:
            if address not in state.resources:
                raise _unknown(stack, address, sorted(state.resources))
        removed = [state.resources.pop(a) for a in dict.fromkeys(wanted)]
        state.journal = [j for j in state.journal if j.address not in wanted]
        store.save(state)
        return removed
    finally:
        store.unlock(stack, lock_id=lock_id)
