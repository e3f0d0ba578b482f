"""The stack's state: which server objects this stack manages, and what is in flight.

One document per stack (in the cluster's `mlsync-state` index, or a local `--state-file`). It holds
no secret: credentials only as fingerprints (scrypt, or HMAC with a key kept outside the state).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import re
import secrets as _secrets
from dataclasses import dataclass, field, asdict
from typing import Callable, Optional, Protocol

from mlsync.core import secrets as _secrets_mod
from mlsync.core.errors import MalformedDocument, MlsyncError

STATE_FORMAT = 2                  # the newest format this mlsync reads (a newer one is refused)
SINGLE_FORMAT = 1                 # the whole state as one document: `to_json`, --state-file, layout 1 on the cluster
SPLIT_FORMAT = 2                  # a head document plus one document per resource and per journal entry (`split`)
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
    # the salt its fingerprints were made with when not this stack's `fingerprint_key` (it was moved
    # here by `state mv`): the next plan verifies them with it and re-keys them (core/fingerprints)
    fingerprint_salt: Optional[str] = None


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
    # What identifies the holder's process beyond doubt, so that a re-run can see it died (and only
    # then take over an unexpired lease): the machine's boot, the pid namespace (containers on one
    # host share hostname and boot id, not pids) and the process's start time (a reused pid has
    # another). None in leases written before they existed, or where /proc is not readable.
    pid: Optional[int] = None
    boot_id: Optional[str] = None
    pid_ns: Optional[str] = None     # e.g. "pid:[4026531836]" (readlink /proc/self/ns/pid)
    start_time: Optional[int] = None  # clock ticks after boot (/proc/<pid>/stat field 22)


@dataclass
class StackState:
    stack: str
    serial: int = 0
    resources: dict[str, ResourceState] = field(default_factory=dict)   # by address string
    journal: list[JournalEntry] = field(default_factory=list)
    fingerprint_key: str = field(default_factory=lambda: _secrets.token_hex(32))
    lock: Optional[Lock] = None
    # fields of the stored document this mlsync did not know and ignored (paths), for a warning
    ignored: list[str] = field(default_factory=list, compare=False, repr=False)
    # MLSYNC_FINGERPRINT_KEY (and _PREVIOUS) as this process was given them (`commands.common`): never
    # stored; without one, fingerprints are scrypt salted with `fingerprint_key` (core/secrets.Keying)
    external_key: Optional[_secrets_mod.Secret] = field(default=None, compare=False, repr=False)
    previous_key: Optional[_secrets_mod.Secret] = field(default=None, compare=False, repr=False)
    # resources whose stored fingerprints were carried over to this run's keying (core/fingerprints):
    # the state differs from what is stored although nothing else changed, so an apply saves it
    carried_over: frozenset = field(default=frozenset(), compare=False, repr=False)

    def keying(self) -> _secrets_mod.Keying:
        """How this stack's sensitive values are fingerprinted in this process."""
        return _secrets_mod.Keying(self.fingerprint_key, self.external_key, self.previous_key)

    def by_id(self) -> dict[str, ResourceState]:
        return {r.id: r for r in self.resources.values()}

    def to_json(self) -> dict:
        return {
            "format": SINGLE_FORMAT,
            "stack": self.stack,
            "serial": self.serial,
            "fingerprint_key": self.fingerprint_key,
            "resources": {a: asdict(r) for a, r in sorted(self.resources.items())},
            "journal": [asdict(j) for j in self.journal],
            "lock": asdict(self.lock) if self.lock else None,
        }

    @classmethod
    def from_json(cls, d: dict, document: Optional[str] = None) -> "StackState":
        """The state as stored. Fields this mlsync does not know are ignored (and listed in `ignored`):
        a newer mlsync adds fields within a format only when older ones may drop them; anything else
        bumps STATE_FORMAT, which is refused before this. A missing required field or a value of the
        wrong type raises `MalformedDocument` naming the document (`document`, else the stack) and the
        field's path."""
        where = document or (f"state of stack {d.get('stack')!r}" if isinstance(d, dict)
                             and isinstance(d.get("stack"), str) else "state document")
        ignored: list[str] = []
        doc = _Fields(d, where, "", ignored)
        resources = {}
        for address, r in doc.mapping("resources").items():
            stored = _as_stored(r)
            if stored is not None:
                resources[address] = stored
                continue
            rf = doc.child(r, f"resources.{address}")
            resources[address] = ResourceState(
                address=rf.get("address", str, default=address), kind=rf.get("kind", str), id=rf.get("id", str),
                **{key: rf.get(key, read, None) for key, read, _ in _RESOURCE_OPTIONAL})
            if isinstance(resources[address].server_version, int):
                resources[address].server_version = str(resources[address].server_version)
            rf.done(_RESOURCE_FIELDS)
        journal = []
        for i, j in enumerate(doc.sequence("journal")):
            jf = doc.child(j, f"journal[{i}]")
            journal.append(JournalEntry(
                op_id=jf.get("op_id", str), address=jf.get("address", str), operation=jf.get("operation", str),
                started=jf.get("started", (int, float)), status=jf.get("status", str, "intent"),
                task_id=jf.get("task_id", str, None), object_id=jf.get("object_id", str, None),
                details=jf.get("details", dict, {})))
            jf.done(_JOURNAL_FIELDS)
        lock = None
        raw_lock = doc.get("lock", dict, None)
        if raw_lock is not None:
            lf = doc.child(raw_lock, "lock")
            lock = Lock(holder=lf.get("holder", str), host=lf.get("host", str),
                        started=lf.get("started", (int, float)), expires=lf.get("expires", (int, float)),
                        lock_id=lf.get("lock_id", str), pid=lf.get("pid", int, None),
                        boot_id=lf.get("boot_id", str, None), pid_ns=lf.get("pid_ns", str, None),
                        start_time=lf.get("start_time", int, None))
            lf.done(_LOCK_FIELDS)
        state = cls(stack=doc.get("stack", str), serial=doc.get("serial", int, 0), resources=resources,
                    journal=journal, fingerprint_key=doc.get("fingerprint_key", str), lock=lock)
        doc.done(_TOP_FIELDS)
        state.ignored = ignored
        return state


_REQUIRED = object()


class _Fields:
    """Typed access to one JSON object of the state document, for clear errors."""

    def __init__(self, obj: object, document: str, path: str, ignored: list[str]) -> None:
        if not isinstance(obj, dict):
            raise MalformedDocument(document, path or "(document)",
                                    f"is {_type_name(obj)}, not an object")
        self.obj, self.document, self.path, self.ignored = obj, document, path, ignored

    def _at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def child(self, obj: object, path: str) -> "_Fields":
        return _Fields(obj, self.document, path, self.ignored)

    def get(self, key: str, types: object, default: object = _REQUIRED):   # noqa: ANN201
        value = self.obj.get(key)
        if value is None:
            if default is _REQUIRED:
                raise MalformedDocument(self.document, self._at(key), "is missing")
            return default
        allowed = types if isinstance(types, tuple) else (types,)
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            names = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in allowed)
            raise MalformedDocument(self.document, self._at(key), f"is {_type_name(value)}, not {names}")
        return value

    def mapping(self, key: str) -> dict:
        return self.get(key, dict, {})

    def sequence(self, key: str) -> list:
        return self.get(key, list, [])

    def done(self, known: frozenset) -> None:
        self.ignored.extend(self._at(k) for k in self.obj if k not in known)


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true/false", dict: "an object",
               list: "a list"}


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    return _TYPE_NAMES.get(type(value), type(value).__name__)


_LOCK_FIELDS = frozenset(Lock.__dataclass_fields__)
_RESOURCE_FIELDS = frozenset(ResourceState.__dataclass_fields__)
# The optional fields of a resource: (key, the types read, the type mlsync writes). A server_version
# may be an int in older states; `from_json` makes it a string.
_RESOURCE_OPTIONAL = (("server_version", (str, int), str), ("applied_fingerprint", str, str),
                      ("credential_fingerprint", str, str), ("applied_form", dict, dict),
                      ("applied_deploy", bool, bool), ("fingerprint_salt", str, str))


def _as_stored(r: object) -> Optional[ResourceState]:
    """A resource exactly as this mlsync writes it, read without the field-by-field checks (11,200 of
    them at 10,000 versions); None for anything else, which `from_json` then checks (and words the
    error of, or lists the unknown fields of)."""
    if type(r) is not dict or not r.keys() <= _RESOURCE_FIELDS:
        return None
    address, kind, id_ = r.get("address"), r.get("kind"), r.get("id")
    if type(address) is not str or type(kind) is not str or type(id_) is not str:
        return None
    for key, _, written in _RESOURCE_OPTIONAL:
        value = r.get(key)
        if value is not None and type(value) is not written:
            return None
    return ResourceState(**r)
_JOURNAL_FIELDS = frozenset(JournalEntry.__dataclass_fields__)
_TOP_FIELDS = frozenset({"format", "layout", "gen", "stack", "serial", "fingerprint_key", "resources", "journal", "lock"})


@dataclass(frozen=True)
class Owner:
    """The stack that manages a server object, and the address it manages it as (SPEC §5: one object,
    one stack). What `StateStore.owners` maps each id of the other stacks to."""

    stack: str
    address: str
    pending: bool = False     # only the stack's journal records it (an interrupted operation)

    def __str__(self) -> str:
        return self.stack

    def how_to_release(self) -> str:
        """What the owning stack runs to let go of the object (the first step of a move)."""
        import shlex
        if self.pending:
            return (f"stack {self.stack!r} has an interrupted operation on it ({self.address}): run that stack's "
                    f"apply to resolve it, then `mlsync state rm --stack {shlex.quote(self.stack)} "
                    f"{shlex.quote(self.address)}`")
        return f"`mlsync state rm --stack {shlex.quote(self.stack)} {shlex.quote(self.address)}`"


def owners_of(states: "dict[str, object]", exclude_stack: Optional[str] = None,
              document: Callable[[str], str] = lambda stack: f"state of stack {stack!r}") -> dict[str, Owner]:
    """server id -> `Owner`, over stored state documents (`states`: stack -> its document, or only its
    `stack`, `resources` and `journal` fields), leaving out `exclude_stack`'s. A stack owns every id its
    state manages and every object id its journal records (an interrupted create, a replaced version
    still to retire). An id two other stacks claim goes to the first by name. A document of the wrong
    shape raises `MalformedDocument` naming it (`document(stack)`) and the field: ownership that cannot
    be read is never taken as "nobody's"."""
    out: dict[str, Owner] = {}
    for stack in sorted(states):
        if stack == exclude_stack:
            continue
        doc = _Fields(states[stack], document(stack), "", [])
        found: list[tuple[str, Owner]] = []
        for address, r in doc.mapping("resources").items():
            rf = doc.child(r, f"resources.{address}")
            found.append((rf.get("id", str), Owner(stack, address)))
        for i, j in enumerate(doc.sequence("journal")):
            jf = doc.child(j, f"journal[{i}]")
            object_id = jf.get("object_id", str, None)
            if object_id:
                found.append((object_id, Owner(stack, jf.get("address", str), pending=True)))
        for object_id, owner in found:
            out.setdefault(object_id, owner)
    return out


# --------------------------------------------------------------------------- layout 2: split documents
#
# On the cluster a stack's state is a head document (id: the stack) holding the format, the layout,
# the serial, the fingerprint key and the lease, plus one document per managed resource
# (`<stack>/r/<sha256(address)[:32]>`) and one per journal entry (`<stack>/j/<op_id>`). A save writes
# the head (conditionally: the lease fences it) and then only the parts that changed, so its size
# follows the change, not the stack (docs/architecture.md, "State and secrets"). These functions
# convert between that layout and the one-document form `StackState.to_json` / `from_json` use.

LAYOUT_SPLIT = 2
PART_RESOURCE, PART_JOURNAL = "resource", "journal"
_PART_SUFFIX = re.compile(r"/[rj]/[0-9a-f]{32}\Z")


def is_split(body: dict) -> bool:
    """Whether a stored head document is layout 2 (its resources and journal live in parts)."""
    layout = body.get("layout")
    return isinstance(layout, int) and not isinstance(layout, bool) and layout >= LAYOUT_SPLIT


def part_id(stack: str, part: str, key: str) -> str:
    """The id of a resource part (key: its address) or a journal part (key: its op_id)."""
    if part == PART_RESOURCE:
        return f"{stack}/r/{hashlib.sha256(key.encode()).hexdigest()[:32]}"
    return f"{stack}/j/{hashlib.sha256(key.encode()).hexdigest()[:32]}"


def head_of(body: dict) -> dict:
    """The head document of a joined layout-2 body (what `write_state` wrote); a layout-1 body as it is."""
    if not is_split(body):
        return body
    return {k: v for k, v in body.items() if k not in ("resources", "journal")}


def split(body: dict, previous: Optional[dict[str, dict]] = None) -> tuple[dict, dict[str, dict]]:
    """A one-document state (`StackState.to_json()`) -> (head, parts by id). Journal parts carry `n`,
    their place in the journal's order: kept from `previous` (the parts as stored) where that still
    keeps the order, so that a save rewrites only the entries that changed."""
    stack = body["stack"]
    if _PART_SUFFIX.search(stack):
        raise MlsyncError(f"stack {stack!r}: the name ends like the id of a state part (/r/ or /j/ and 32 hex "
                          f"digits), which the state index cannot tell from one; rename the stack")
    previous = previous or {}
    head = {k: v for k, v in body.items() if k not in ("resources", "journal")}
    # `gen` ties parts to this head: a stack whose head was deleted by hand and made anew (a new key)
    # never reads the parts the old one left behind (a save after a read that saw them deletes them)
    gen = hashlib.sha256(f"mlsync-state-gen:{body['fingerprint_key']}".encode()).hexdigest()[:16]
    head["format"], head["layout"], head["gen"] = SPLIT_FORMAT, LAYOUT_SPLIT, gen
    parts: dict[str, dict] = {}
    for address, r in body.get("resources", {}).items():
        parts[part_id(stack, PART_RESOURCE, address)] = {"stack": stack, "part": PART_RESOURCE, "gen": gen, **r,
                                                         "address": address}
    top = max((p["n"] for p in previous.values() if isinstance(p.get("n"), int)), default=-1)
    last = -1
    for j in body.get("journal", []):
        pid = part_id(stack, PART_JOURNAL, j["op_id"])
        n = previous.get(pid, {}).get("n")
        if not isinstance(n, int) or n <= last:
            top += 1
            n = top
        last = n
        parts[pid] = {"stack": stack, "part": PART_JOURNAL, "gen": gen, "n": n, **j}
    return head, parts


def join(head: dict, parts: dict[str, dict]) -> dict:
    """A layout-2 head and its parts -> the one-document form `StackState.from_json` reads. Parts of
    another generation than the head's are left out; a part of the wrong shape raises
    `MalformedDocument` naming it."""
    stack = head.get("stack")
    body = dict(head)
    resources: dict[str, dict] = {}
    journal: list[tuple[int, str, dict]] = []
    for pid, raw in parts.items():
        where = f"state of stack {stack!r}, document {pid!r}"
        if not isinstance(raw, dict):
            raise MalformedDocument(where, "(document)", f"is {_type_name(raw)}, not an object")
        if raw.get("gen") != head.get("gen"):
            continue
        p = dict(raw)
        kind = p.pop("part", None)
        p.pop("stack", None)
        p.pop("gen", None)
        if kind == PART_RESOURCE:
            address = p.get("address")
            if not isinstance(address, str):
                raise MalformedDocument(where, "address", "is missing" if address is None
                                        else f"is {_type_name(address)}, not a string")
            resources[address] = p
        elif kind == PART_JOURNAL:
            n = p.pop("n", None)
            if not isinstance(n, int) or isinstance(n, bool):
                raise MalformedDocument(where, "n", "is missing" if n is None else f"is {_type_name(n)}, not an integer")
            journal.append((n, pid, p))
        else:
            raise MalformedDocument(where, "part", f"is {kind!r}, not {PART_RESOURCE!r} or {PART_JOURNAL!r}")
    body["resources"] = {a: resources[a] for a in sorted(resources)}
    body["journal"] = [p for _, _, p in sorted(journal, key=lambda t: (t[0], t[1]))]
    return body


class StatePartsNotWritten(MlsyncError):
    """A save's head landed but its parts did not (all or some): the state holds less than the caller
    asked to save. `seq_no` / `primary_term` are the head's, as written."""

    def __init__(self, stack: str, seq_no: int, primary_term: int, cause: Exception) -> None:
        super().__init__(f"the state of stack {stack!r} was saved only in part: {cause}")
        self.seq_no, self.primary_term, self.cause = seq_no, primary_term, cause


def diff_parts(before: dict[str, dict], after: dict[str, dict]) -> dict[str, Optional[dict]]:
    """What a save sends: the parts that are new or changed, and None for each part that is gone."""
    out: dict[str, Optional[dict]] = {pid: p for pid, p in after.items() if before.get(pid) != p}
    out.update({pid: None for pid in before if pid not in after})
    return out


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
    def owners(self, exclude_stack: Optional[str] = None) -> dict[str, Owner]:
        """server id -> the other stack managing it (its state or its journal), over every stack the
        store holds but `exclude_stack`: what no plan or import of `exclude_stack` may take over."""
        ...
