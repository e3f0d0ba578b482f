"""Flatten a loaded desired-state file into one resource per address, in comparable form.

Model-level fields are defaults that each version may override; a model without `model_group`
gets an implicit group named after it; a local `path:` is hashed here (the only I/O besides
reading the files), so the planner itself stays pure.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from dataclasses import replace
from functools import lru_cache
from typing import Any, BinaryIO, Mapping, Optional

from mlsync.core import normalize, references
from mlsync.core.address import Address
from mlsync.core.desired import DesiredResource, DesiredState
from mlsync.core.errors import ConfigError, Problem
from mlsync.core.secrets import Secret
from mlsync.input.declare import Record
from mlsync.input.model import Connector, Model, ModelGroup, StackFile, VersionFields

_VERSION_FIELDS = tuple(n for n in VersionFields.model_fields)


def open_regular(path: str) -> BinaryIO:
    """`path` opened for reading in binary if it is a regular file; OSError for anything else (a FIFO
    would hang a plain open, a device would never end): opened without blocking and checked with
    fstat before anything is read. What hashes a model file and what uploads it both open it here."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def sha256_file(path: str) -> tuple[str, int]:
    """(SHA-256 hex digest, size) of a regular file (`open_regular`), read in 1 MiB blocks."""
    with open_regular(path) as f:
        return _sha256_of(f)


def _sha256_of(f: BinaryIO) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
        size += len(block)
    return h.hexdigest(), size


_DIGESTS: dict[tuple, tuple[str, int]] = {}


def known_sha256_file(path: str) -> tuple[str, int]:
    """`sha256_file`, read once per process while the file stays the same one (device, inode, size,
    modification time): the semantic checks and `hash_local_files` both need the digest of each
    `path:` file, and a 1 GB artifact took ~0.5 s per read. The upload hashes again, fresh."""
    with open_regular(path) as f:
        st = os.fstat(f.fileno())
        key = (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        known = _DIGESTS.get(key)
        if known is None:
            known = _DIGESTS[key] = _sha256_of(f)
    return known


_SCALARS = (str, int, float, bool, Secret)


def _dump(model: Any) -> Any:
    """A record (mlsync.input.declare) as plain request-key data, Secrets left wrapped."""
    if type(model) in _SCALARS:   # most values: no attribute probe (a miss raises inside hasattr)
        return model
    if isinstance(model, Record):
        out = {}
        for name, info in type(model).model_fields.items():
            value = getattr(model, name)
            if value is None:
                continue
            out[info.alias or name] = _dump(value)
        return out
    if isinstance(model, list):
        return [_dump(v) for v in model]
    if isinstance(model, dict):
        return {k: _dump(v) for k, v in model.items()}
    return model


def _without_credential(raw: dict) -> tuple[dict, Optional[dict[str, Secret]]]:
    raw = dict(raw)
    cred = raw.pop("credential", None)
    return raw, cred


def flatten(stack: StackFile, *, sources: tuple[str, ...] = (), locate=None,
            hash_files: bool = True, sensitive: Optional[set[str]] = None,
            hashes: Optional[Mapping[str, tuple[str, int]]] = None) -> DesiredState:
    """`locate(path_tuple) -> (file, line, col)` (from the loader) resolves relative `path:` values
    and records where each resource was declared. `sensitive` (the loader's `SourceMap.sensitive`):
    string values that came from `${env:…}`/`${file:…}`; each form value equal to one becomes a
    Secret (masked in every output, kept as a keyed fingerprint). `hashes`: what `hash_local_files`
    returned for this stack, so that the local files are not read again here."""
    where = locate or (lambda _p: None)
    out: dict[Address, DesiredResource] = {}
    state = _flatten(stack, where, hash_files, out, hashes or {})
    if sensitive:
        for address, res in out.items():
            form = _wrap_sensitive(res.form, sensitive, top=True)
            if form is not res.form:
                out[address] = replace(res, form=form)
    return DesiredState(stack=state, resources=out, sources=tuple(sources))


#: Form keys that name an object (identity, or a reference to a connector by name): never masked, a
#: masked name would make a plan unreadable. `${env:…}` there is public (docs/desired-state-file.md).
_PUBLIC_KEYS = ("name", "connector")
#: References mlsync resolves at apply time (docs/references.md) must stay readable text.
_REFERENCE_MARKS = ("${model:", "${connector:", "${agent:")


def _wrap_sensitive(value: Any, sensitive: set[str], top: bool = False) -> Any:
    """`value` with each string in `sensitive` as a Secret; the same object when nothing changed."""
    if isinstance(value, str):
        if value in sensitive and not any(m in value for m in _REFERENCE_MARKS):
            return Secret(value)
        return value
    if isinstance(value, dict):
        out = {k: (v if top and k in _PUBLIC_KEYS and isinstance(v, str) else _wrap_sensitive(v, sensitive))
               for k, v in value.items()}
        return value if all(out[k] is value[k] for k in value) else out
    if isinstance(value, list):
        items = [_wrap_sensitive(v, sensitive) for v in value]
        return value if all(a is b for a, b in zip(items, value)) else items
    return value


def _flatten(stack: StackFile, where, hash_files: bool, out: dict, hashes: Mapping[str, tuple[str, int]]) -> str:

    for i, c in enumerate(stack.connectors):
        out[Address("connector", c.name)] = _connector(c, where(("connectors", i)))

    for i, g in enumerate(stack.model_groups):
        out[Address("model_group", g.name)] = _group(g, where(("model_groups", i)))

    for i, m in enumerate(stack.models):
        group = m.model_group or m.name
        implicit = m.implicit_group()
        if implicit is not None:
            res = _group(implicit, where(("models", i)))
            out[res.address] = replace(res, implicit=True)
        for res in _model_versions(m, i, group, where, hash_files, hashes):
            out[res.address] = res

    current = current_versions(stack)
    for key, kind in (("ingest_pipelines", "ingest_pipeline"), ("search_pipelines", "search_pipeline"),
                      ("agents", "agent")):
        for i, item in enumerate(getattr(stack, key)):
            res = _consumer(kind, item, current, where((key, i)))
            out[res.address] = res
    return stack.stack


def _connector(c: Connector, location) -> DesiredResource:
    raw, cred = _without_credential(_dump(c))
    form = normalize.connector_form(raw, access_control=True)
    return DesiredResource(Address("connector", c.name), form, credential=cred,
                           prevent_destroy=c.lifecycle.prevent_destroy, location=location)


def _group(g: ModelGroup, location) -> DesiredResource:
    return DesiredResource(Address("model_group", g.name), normalize.group_form(_dump(g), access_control=True),
                           prevent_destroy=g.lifecycle.prevent_destroy, location=location)


def _version_entries(m: Model, index: int) -> list[tuple[Optional[str], Any, tuple, Any]]:
    """(label, what holds the version's fields, its path in the file, its connector) per version of
    `m`; a model without versions is one entry, the model itself, without a label."""
    if not m.versions:
        return [(None, m, ("models", index), m.connector)]
    # The config model already merged the model's defaults into each version; a remote version's
    # connector is its own, else the model's.
    return [(v.version, v, ("models", index, "versions", j), v.connector if v.connector is not None else m.connector)
            for j, v in enumerate(m.versions)]


def _local_path(path: str, loc_path: tuple, where) -> str:
    return _resolve_path(path, where(loc_path + ("path",)) or where(loc_path))


def hash_local_files(stack: StackFile, *, locate=None) -> dict[str, tuple[str, int]]:
    """resolved path -> (SHA-256, size) of every local model file (`path:`) the stack names: the one
    part of `flatten` that reads files, done on its own, so that a command can refuse a file it cannot
    read before it sends anything and then run the rest of `flatten` (pure) while it reads the
    cluster (`flatten(..., hashes=...)`). A file that cannot be read is a ConfigError located at its
    `path:`; a path that is not a regular file is left out (the semantic checks reported it)."""
    where = locate or (lambda _p: None)
    out: dict[str, tuple[str, int]] = {}
    problems: list[Problem] = []
    for i, m in enumerate(stack.models):
        for _, fields, loc_path, _ in _version_entries(m, i):
            if fields.url or not fields.path:
                continue
            full = _local_path(fields.path, loc_path, where)
            if full in out or not os.path.isfile(full):
                continue
            try:
                out[full] = known_sha256_file(full)
            except OSError as err:
                from mlsync.input.diagnostics import format_path

                file, line, col = where(loc_path + ("path",)) or where(loc_path) or (full, 1, 1)
                problems.append(Problem(file, line, col, format_path(loc_path + ("path",)),
                                        f"model file {full} cannot be read: {err.strerror or err}"))
    if problems:
        raise ConfigError(problems)
    return out


@lru_cache(maxsize=1 << 16)
def _address_text(kind: str, name: str) -> str:
    """`str(Address(kind, name))` of a group or connector: 10,000 models name 1,000 groups."""
    return str(Address(kind, name))


def _model_versions(m: Model, index: int, group: str, where, hash_files: bool,
                    hashes: Mapping[str, tuple[str, int]]) -> list[DesiredResource]:
    group_addr = _address_text("model_group", group)
    out = []
    for label, fields, loc_path, connector in _version_entries(m, index):
        values = fields.__dict__   # a record's fields (and nothing else but private attributes)
        raw = {k: _dump(values[k]) for k in _VERSION_FIELDS if values[k] is not None}
        raw["model_config"] = raw.pop("model_config_", raw.get("model_config"))
        raw["name"] = m.name
        raw["function_name"] = m.function_name
        deploy = bool(raw.pop("deploy", False))
        lifecycle = raw.pop("lifecycle", None) or {}
        url, path = raw.pop("url", None), raw.pop("path", None)
        depends = [group_addr]
        credential = None
        if connector is not None:
            if isinstance(connector, str):
                raw["connector"] = connector
                depends.append(_address_text("connector", connector))
            else:
                raw["connector"], credential = _without_credential(_dump(connector))
        artifact = None
        if url:
            artifact = {"url": url, "sha256": raw.get("model_content_hash_value")}
        elif path:
            full = _local_path(path, loc_path, where)
            artifact = {"path": full, "sha256": raw.get("model_content_hash_value"), "size": None}
            if hash_files and os.path.isfile(full):
                digest, size = hashes[full] if full in hashes else known_sha256_file(full)
                artifact.update(sha256=digest, size=size)
                raw["model_content_hash_value"] = digest
        form = normalize.model_form(raw)
        address = Address("model", m.name, group=group, version=label)
        out.append(DesiredResource(address, form, credential=credential, deploy=deploy,
                                   prevent_destroy=bool(lifecycle.get("prevent_destroy", False)),
                                   artifact=artifact, depends_on=tuple(depends), location=where(loc_path)))
    return out


def current_versions(stack: StackFile) -> dict[tuple[str, str], Optional[str]]:
    """(group, model name) -> the label `${model:GROUP/NAME}` names: the last version in the file that
    is deployed, else the last version; None for a model without versions (it has one id)."""
    out: dict[tuple[str, str], Optional[str]] = {}
    for m in stack.models:
        versions = list(m.versions or [])
        deployed = [v for v in versions if v.deploy]
        pick = (deployed or versions)[-1] if versions else None
        out[(m.model_group or m.name, m.name)] = pick.version if pick is not None else None
    return out


def canonical_references(value: Any, current: dict[tuple[str, str], Optional[str]]) -> Any:
    """`value` with each `${model:GROUP/NAME}` of a versioned model pinned to its current version's label
    (`${model:GROUP/NAME@LABEL}`), so that every reference names exactly one address."""
    def canon(kind: str, body: str) -> str:
        if kind == "model":
            try:
                group, name, label = references.parse(kind, body)
            except ValueError:
                return "${" + f"{kind}:{body}" + "}"
            if label is None and current.get((group, name)) is not None:
                label = current[(group, name)]
            return references.token(Address("model", name, group=group, version=label))
        return "${" + f"{kind}:{body}" + "}"
    return references.rewrite(value, canon)


def _consumer(kind: str, item: Any, current: dict, location) -> DesiredResource:
    raw = {k: v for k, v in _dump(item).items() if k not in ("lifecycle", "id")}
    form = normalize.consumer_form(kind, canonical_references(raw, current))
    name = item.id if kind != "agent" else item.name
    depends = tuple(str(a) for a in references.targets(form))
    return DesiredResource(Address(kind, name), form, prevent_destroy=item.lifecycle.prevent_destroy,
                           depends_on=depends, location=location)


def _resolve_path(path: str, location) -> str:
    if os.path.isabs(path):
        return path
    base = os.path.dirname(location[0]) if location else os.getcwd()
    return os.path.normpath(os.path.join(base, path))
