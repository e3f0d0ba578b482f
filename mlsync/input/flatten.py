"""Flatten a loaded desired-state file into one resource per address, in comparable form.

Model-level fields are defaults that each version may override; a model without `model_group`
gets an implicit group named after it; a local `path:` is hashed here (the only I/O besides
reading the files), so the planner itself stays pure.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from typing import Any, Optional

from mlsync.core import normalize
from mlsync.core.address import Address
from mlsync.core.desired import DesiredResource, DesiredState
from mlsync.core.secrets import Secret
from mlsync.input.model import Connector, Model, ModelGroup, StackFile, VersionFields

_VERSION_FIELDS = tuple(n for n in VersionFields.model_fields)


def sha256_file(path: str) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


def _dump(model: Any) -> Any:
    """A pydantic model as plain request-key data, Secrets left wrapped."""
    if hasattr(model, "model_dump"):
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
            hash_files: bool = True) -> DesiredState:
    """`locate(path_tuple) -> (file, line, col)` (from the loader) resolves relative `path:` values
    and records where each resource was declared."""
    where = locate or (lambda _p: None)
    out: dict[Address, DesiredResource] = {}

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
        for res in _model_versions(m, i, group, where, hash_files):
            out[res.address] = res
    return DesiredState(stack=stack.stack, resources=out, sources=tuple(sources))


def _connector(c: Connector, location) -> DesiredResource:
    raw, cred = _without_credential(_dump(c))
    form = normalize.connector_form(raw, access_control=True)
    return DesiredResource(Address("connector", c.name), form, credential=cred,
                           prevent_destroy=c.lifecycle.prevent_destroy, location=location)


def _group(g: ModelGroup, location) -> DesiredResource:
    return DesiredResource(Address("model_group", g.name), normalize.group_form(_dump(g), access_control=True),
                           prevent_destroy=g.lifecycle.prevent_destroy, location=location)


def _model_versions(m: Model, index: int, group: str, where, hash_files: bool) -> list[DesiredResource]:
    base = {k: getattr(m, k) for k in _VERSION_FIELDS}
    group_addr = str(Address("model_group", group))
    if m.is_remote or not m.versions:
        entries = [(None, base, ("models", index))]
    else:
        entries = []
        for j, v in enumerate(m.versions):
            # The config model already merged the model's defaults into each version.
            eff = {k: getattr(v, k) for k in _VERSION_FIELDS}
            entries.append((v.version, eff, ("models", index, "versions", j)))

    out = []
    for label, eff, loc_path in entries:
        raw = {k: _dump(v) for k, v in eff.items() if v is not None}
        raw["model_config"] = raw.pop("model_config_", raw.get("model_config"))
        raw["name"] = m.name
        raw["function_name"] = m.function_name
        deploy = bool(raw.pop("deploy", False))
        lifecycle = raw.pop("lifecycle", None) or {}
        url, path = raw.pop("url", None), raw.pop("path", None)
        depends = [group_addr]
        credential = None
        if m.connector is not None:
            if isinstance(m.connector, str):
                raw["connector"] = m.connector
                depends.append(str(Address("connector", m.connector)))
            else:
                raw["connector"], credential = _without_credential(_dump(m.connector))
        artifact = None
        if url:
            artifact = {"url": url, "sha256": raw.get("model_content_hash_value")}
        elif path:
            full = _resolve_path(path, where(loc_path + ("path",)) or where(loc_path))
            artifact = {"path": full, "sha256": raw.get("model_content_hash_value"), "size": None}
            if hash_files and os.path.isfile(full):
                digest, size = sha256_file(full)
                artifact.update(sha256=digest, size=size)
                raw["model_content_hash_value"] = digest
        form = normalize.model_form(raw)
        address = Address("model", m.name, group=group, version=label)
        out.append(DesiredResource(address, form, credential=credential, deploy=deploy,
                                   prevent_destroy=bool(lifecycle.get("prevent_destroy", False)),
                                   artifact=artifact, depends_on=tuple(depends), location=where(loc_path)))
    return out


def _resolve_path(path: str, location) -> str:
    if os.path.isabs(path):
        return path
    base = os.path.dirname(location[0]) if location else os.getcwd()
    return os.path.normpath(os.path.join(base, path))
