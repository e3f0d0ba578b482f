"""Cross-field checks that a schema cannot express (SPEC §1.1).

They run on the merged plain tree, whether or not the typed model accepted it, so that one run
reports every problem; each check skips values of the wrong type (the model reports those).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Callable, Iterable, Optional
from urllib.parse import urlsplit

from mlsync.input.diagnostics import did_you_mean, format_path
from mlsync.input.flatten import known_sha256_file
from mlsync.input.loader import file_kind
from mlsync.input.model import ACCESS_FIELDS, FUNCTION_NAMES, SPARSE_FUNCTIONS, ModelConfig
from mlsync.core import references
from mlsync.core.errors import Problem
from mlsync.core.normalize import MODEL_UPDATE_FUNCTIONS   # Update Model refuses the others (403)

URL_SCHEMES = ("http", "https", "ftp", "file")
REQUIRED_MODEL_CONFIG = ("model_type", "embedding_dimension", "framework_type")
_CREDENTIAL_REF = re.compile(r"\$\{credential\.([^}]+)\}")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_REGEX_KEYS = ("stop_words", "regex")
_MODEL_KEYS = ("model_id", "response_filter", "response_validation_regex")
_MODEL_CONFIG_KEYS = frozenset(ModelConfig.model_fields)

Locate = Callable[[tuple], tuple]


class Checker:
    def __init__(self, tree: dict, locate: Locate, has: Callable[[tuple], bool]):
        self.tree = tree
        self.locate = locate
        self.has = has
        self.problems: list[Problem] = []
        self._hashes: dict[str, Optional[str]] = {}

    def report(self, path: tuple, message: str) -> None:
        file, line, col = self.locate(path)
        self.problems.append(Problem(file, line, col, format_path(path), message))

    def where(self, path: tuple) -> str:
        file, line, _ = self.locate(path)
        return f"line {line}" if file == self.locate(())[0] else f"{file}:{line}"

    # -- entry
    def run(self) -> list[Problem]:
        connectors = _named(self.tree, "connectors")
        groups = _named(self.tree, "model_groups")
        self.unique_names("connectors", "connector", connectors)
        self.unique_names("model_groups", "model group", groups)
        for i, conn in _items(self.tree, "connectors"):
            self.connector(("connectors", i), conn)
        self.models(set(connectors), groups)
        self.consumers(set(connectors))
        return self.problems

    def unique_names(self, key: str, kind: str, names: dict[str, int]) -> None:
        seen: dict[str, int] = {}
        for i, item in _items(self.tree, key):
            name = _text(item.get("name"))
            if name is None:
                continue
            if name in seen:
                first = (key, seen[name], "name")
                self.report((key, i, "name"), f"duplicate {kind} name '{name}' (first at {self.where(first)}); "
                                              f"names must be unique")
            else:
                seen[name] = i

    # -- connectors
    def connector(self, path: tuple, conn: dict) -> None:
        credential = conn.get("credential")
        keys = set(credential) if isinstance(credential, dict) else None
        for a, action in _items(conn, "actions"):
            for field in ("url", "request_body"):
                self.credential_refs(path + ("actions", a, field), action.get(field), keys)
            headers = action.get("headers")
            if isinstance(headers, dict):
                for name, value in headers.items():
                    self.credential_refs(path + ("actions", a, "headers", name), value, keys)

    def credential_refs(self, path: tuple, value: Any, keys: Optional[set]) -> None:
        if keys is None or not isinstance(value, str):
            return
        for ref in _CREDENTIAL_REF.findall(value):
            if ref not in keys:
                hint = did_you_mean(ref, keys)
                text = f"refers to ${{credential.{ref}}}, but the connector's credential has no key '{ref}'"
                text += f"; did you mean '{hint}'?" if hint else ""
                self.report(path, text + f" (keys: {', '.join(sorted(keys))})")

    # -- models
    def models(self, connectors: set[str], groups: dict[str, int]) -> None:
        seen: dict[tuple[str, str], int] = {}
        for i, model in _items(self.tree, "models"):
            path = ("models", i)
            name = _text(model.get("name"))
            group = model.get("model_group")
            group_name = _text(group)
            if group_name is not None:
                if group_name not in groups:
                    self.report(path + ("model_group",), _unknown("model group", group_name, groups, "model_groups"))
                for field in ACCESS_FIELDS:
                    if field in model:
                        self.report(path + (field,),
                                    f"access fields shape only the implicit group of a model without model_group; "
                                    f"set {field} on model group '{group_name}' instead")
            elif name is not None and group is None and name in groups:
                first = ("model_groups", groups[name], "name")
                self.report(path + ("name",),
                            f"this model has no model_group, so it gets an implicit group named '{name}', but a "
                            f"model group of that name is declared (at {self.where(first)}); set model_group: {name} "
                            f"to put the model in it, or rename one of them")
            if name is not None and (group_name is not None or group is None):
                key = (group_name if group_name is not None else name, name)
                if key in seen:
                    first = ("models", seen[key], "name")
                    self.report(path + ("name",), f"duplicate model '{name}' in group '{key[0]}' "
                                                  f"(first at {self.where(first)}); model names must be unique "
                                                  f"within a group")
                else:
                    seen[key] = i
            function = model.get("function_name", "TEXT_EMBEDDING")
            if not isinstance(function, str) or function.upper() not in FUNCTION_NAMES:
                continue  # the typed model reports it; what follows depends on it
            function = function.upper()
            if function == "REMOTE":
                self.remote_model(path, model, connectors)
            else:
                self.local_model(path, model, function in SPARSE_FUNCTIONS)
            if function == "REMOTE" or function in SPARSE_FUNCTIONS:
                self.optional_model_config(path, model)
            if function not in MODEL_UPDATE_FUNCTIONS:
                self.kept_is_enabled(path, model, function)
            self.json_texts(path, model)
            self.guardrails(path + ("guardrails",), model.get("guardrails"))
            for j, version in _items(model, "versions"):
                self.json_texts(path + ("versions", j), version)
                self.guardrails(path + ("versions", j, "guardrails"), version.get("guardrails"))

    # -- consumers of models: pipelines and agents (docs/references.md)
    def consumers(self, connectors: set[str]) -> None:
        for key in ("ingest_pipelines", "search_pipelines"):
            seen: dict[str, int] = {}
            for i, item in _items(self.tree, key):
                pid = _text(item.get("id"))
                if pid is None:
                    continue
                if pid in seen:
                    self.report((key, i, "id"), f"duplicate pipeline id '{pid}' (first at "
                                                f"{self.where((key, seen[pid], 'id'))}); ids must be unique")
                else:
                    seen[pid] = i
        agents = _named(self.tree, "agents")
        self.unique_names("agents", "agent", agents)
        models = self.model_versions()
        uses: dict[str, set[str]] = {}     # agent -> agents it names (cycles cannot be applied)
        for key in ("ingest_pipelines", "search_pipelines", "agents"):
            for i, item in _items(self.tree, key):
                for path, kind, body in references.found(item):
                    where = (key, i) + path
                    if kind == "model":
                        self.model_reference(where, body, models)
                    elif kind == "connector" and body not in connectors:
                        self.report(where, "${connector:" + body + "}: " + _unknown(
                            "connector", body, connectors, "connectors"))
                    elif kind == "agent" and body not in agents:
                        self.report(where, "${agent:" + body + "}: " + _unknown("agent", body, agents, "agents"))
                    elif kind == "agent" and key == "agents":
                        uses.setdefault(_text(item.get("name")) or "", set()).add(body)
        for name in sorted(uses):
            if _reaches(uses, name, name):
                self.report(("agents", agents.get(name, 0), "name"),
                            f"agent '{name}' names itself through ${{agent:...}} references (directly or through "
                            "other agents); every agent's id must exist before the agents naming it are registered")

    def model_versions(self) -> dict[tuple[str, str], Optional[list[str]]]:
        """(group, model name) -> its version labels (None: a model without versions, one id)."""
        out: dict[tuple[str, str], Optional[list[str]]] = {}
        for _, model in _items(self.tree, "models"):
            name = _text(model.get("name"))
            if name is None:
                continue
            group = _text(model.get("model_group")) or name
            labels = [str(v.get("version")) for _, v in _items(model, "versions") if v.get("version") is not None]
            out[(group, name)] = labels or None
        return out

    def model_reference(self, where: tuple, body: str, models: dict) -> None:
        text = "${model:" + body + "}"
        try:
            group, name, label = references.parse("model", body)
        except ValueError as err:
            self.report(where, str(err))
            return
        if (group, name) not in models:
            declared = [f"{g}/{n}" for g, n in models]
            self.report(where, f"{text}: " + _unknown("model", f"{group}/{name}", declared, "models"))
            return
        labels = models[(group, name)]
        if label is not None and labels is None:
            self.report(where, f"{text}: model '{group}/{name}' has no versions; name it without @LABEL")
        elif label is not None and label not in labels:
            hint = did_you_mean(label, labels)
            self.report(where, f"{text}: model '{group}/{name}' has no version '{label}'"
                               + (f"; did you mean '{hint}'?" if hint else "") + f" (versions: {', '.join(labels)})")

    def optional_model_config(self, path: tuple, model: dict) -> None:
        """A model that may go without model_config still needs these three when it gives one: the
        server parses it as a text-embedding config and refuses it otherwise (400 "embedding
        dimension is null"; docs/ml-commons-notes.md, property tests)."""
        places = [(path, model)] + [(path + ("versions", j), v) for j, v in _items(model, "versions")]
        for where, entry in places:
            config = entry.get("model_config")
            if not isinstance(config, dict):
                continue
            effective = {**(model.get("model_config") or {}), **config} if where != path and isinstance(
                model.get("model_config"), dict) else config
            missing = [k for k in REQUIRED_MODEL_CONFIG if effective.get(k) is None]
            if missing:
                self.report(where + ("model_config",),
                            f"model_config needs {', '.join(missing)} when it is given (the server refuses a "
                            f"model_config without model_type, embedding_dimension and framework_type)")

    def kept_is_enabled(self, path: tuple, model: dict, function: str) -> None:
        """The server drops is_enabled at registration, and Update Model (which mlsync uses to set it
        again) refuses every function but TEXT_EMBEDDING and remote: false would never stick."""
        places = [(path, model)] + [(path + ("versions", j), v) for j, v in _items(model, "versions")]
        for where, entry in places:
            if entry.get("is_enabled") is False:
                self.report(where + ("is_enabled",),
                            f"is_enabled: false cannot be kept for function_name {function}: the server drops "
                            f"is_enabled at registration and cannot update a {function} model afterwards "
                            f"(only TEXT_EMBEDDING and remote models can be disabled)")

    def remote_model(self, path: tuple, model: dict, connectors: set[str]) -> None:
        """A remote model: one model, or (with `versions:`) a family of remote models in one group, each
        version its own registration with its own connector and fields (docs/references.md)."""
        entries = _items(model, "versions")
        if model.get("versions") == []:
            self.report(path + ("versions",), "an empty versions list: give at least one version, or leave versions "
                                              "out for a remote model with one version")
        if model.get("connector") is None and not entries:
            self.report(path, "a remote model needs a connector: a connectors[].name or an inline connector")
        self.unique_labels(path, entries)
        places = [(path, model)] + [(path + ("versions", j), v) for j, v in entries]
        for where, obj in places:
            if obj is not model and obj.get("connector") is None and model.get("connector") is None:
                self.report(where, "a remote model needs a connector: a connectors[].name or an inline connector, "
                                   "on the model or on this version")
            self.remote_connector(where, obj.get("connector"), connectors)
            for field in ("url", "path", "model_content_hash_value"):
                if field in obj:
                    self.report(where + (field,), f"a remote model takes no {field}: it is served through its "
                                                  "connector")

    def unique_labels(self, path: tuple, entries) -> None:
        labels: dict[str, int] = {}
        for j, version in entries:
            label = version.get("version")
            if isinstance(label, (str, int, float)) and not isinstance(label, bool):
                label = str(label)
                if label in labels:
                    first = path + ("versions", labels[label], "version")
                    self.report(path + ("versions", j, "version"), f"duplicate version label '{label}' (first at "
                                                                   f"{self.where(first)}); labels must be unique "
                                                                   "within a model")
                else:
                    labels[label] = j

    def remote_connector(self, path: tuple, connector: Any, connectors: set[str]) -> None:
        if connector is None:
            return
        if isinstance(connector, str) and connector.strip():
            if connector not in connectors:
                self.report(path + ("connector",), _unknown("connector", connector, connectors, "connectors"))
        elif isinstance(connector, dict):
            self.connector(path + ("connector",), connector)
            kinds = [a.get("action_type") for _, a in _items(connector, "actions")]
            if kinds and all(isinstance(k, str) for k in kinds) and "predict" not in {k.lower() for k in kinds}:
                self.report(path + ("connector", "actions"),
                            "an inline connector needs a predict action: the server refuses to register a remote "
                            "model whose internal connector has none (\"Connector endpoint is required when "
                            "creating a remote model without connector id!\")")

    def local_model(self, path: tuple, model: dict, sparse: bool) -> None:
        if "connector" in model:
            self.report(path + ("connector",), "only remote models (function_name: remote) take a connector")
        for j, version in _items(model, "versions"):
            if "connector" in version:
                self.report(path + ("versions", j, "connector"),
                            "only remote models (function_name: remote) take a connector")
        versions = model.get("versions")
        if versions is None or versions == []:
            self.report(path + ("versions",) if versions == [] else path,
                        "a local model needs a versions list with at least one version (a model served through a "
                        "connector takes function_name: remote instead)")
            return
        if not isinstance(versions, list):
            return
        labels: dict[str, int] = {}
        entries = [(j, v) for j, v in enumerate(versions) if isinstance(v, dict)]
        missing_everywhere: dict[str, list[int]] = {}
        for j, version in entries:
            vpath = path + ("versions", j)
            label = version.get("version")
            if isinstance(label, (str, int, float)) and not isinstance(label, bool):
                label = str(label)
                if label in labels:
                    first = path + ("versions", labels[label], "version")
                    self.report(vpath + ("version",), f"duplicate version label '{label}' (first at "
                                                      f"{self.where(first)}); labels must be unique within a model")
                else:
                    labels[label] = j
            for need in self.local_version(path, model, j, version, sparse):
                missing_everywhere.setdefault(need, []).append(j)
        for need, js in missing_everywhere.items():
            everywhere = len(js) == len(entries)
            targets = [None] if everywhere else js
            for j in targets:
                where = path if j is None else path + ("versions", j)
                if need == "model_format":
                    text = "a local model needs model_format (TORCH_SCRIPT or ONNX)"
                elif need == "model_config":
                    text = ("a local model needs model_config with model_type, embedding_dimension and "
                            "framework_type (only sparse models go without)")
                else:
                    text = f"model_config needs {need} (for every non-sparse local model)"
                    cfg = where + ("model_config",)
                    if self.has(cfg):
                        where = cfg
                    elif j is not None and self.has(path + ("model_config",)):
                        where = path + ("versions", j)
                if j is not None:
                    text += ", on the model or on this version"
                self.report(where, text)

    def local_version(self, path: tuple, model: dict, j: int, version: dict, sparse: bool) -> list[str]:
        """Check one effective version; return the required fields it lacks (reported by the caller)."""
        vpath = path + ("versions", j)

        def eff(field: str) -> tuple[Any, tuple]:
            if field in version:
                return version[field], vpath + (field,)
            return model.get(field), path + (field,)

        url, url_at = eff("url")
        file, file_at = eff("path")
        digest, digest_at = eff("model_content_hash_value")
        if url is None and file is None:
            self.report(vpath, "each version needs exactly one of url or path")
        elif url is not None and file is not None:
            self.report(vpath, f"url and path are both set (url at {self.where(url_at)}, path at "
                               f"{self.where(file_at)}); give exactly one")
        elif isinstance(url, str):
            scheme = urlsplit(url).scheme.lower() if "://" in url or url.startswith("file:") else ""
            if scheme not in URL_SCHEMES:
                self.report(url_at, f"not a model URL: {url!r} (allowed schemes: {', '.join(URL_SCHEMES)})")
            if digest is None:
                self.report(vpath, "a url version needs model_content_hash_value (the SHA-256 of the zip, "
                                   "64 hex characters), on the model or on this version")
        elif isinstance(file, str):
            if not os.path.isfile(file):
                if os.path.isdir(file):
                    reason = "is a directory, not a file"
                elif os.path.exists(file):
                    reason = f"is {file_kind(os.stat(file).st_mode)}, not a regular file (allowed: a regular file)"
                else:
                    reason = "does not exist"
                self.report(file_at, f"model file {file} {reason} (path: is relative to the file that says it)")
            elif isinstance(digest, str) and _HEX64.fullmatch(digest):
                actual = self.sha256(file)
                if actual is not None and actual != digest.lower():
                    self.report(digest_at, f"model_content_hash_value does not match the SHA-256 of {file} "
                                           f"({actual}); fix the value or leave it out (mlsync hashes local files)")
        missing = []
        if eff("model_format")[0] is None:
            missing.append("model_format")
        if not sparse:
            config = _merged_config(model.get("model_config"), version.get("model_config"), "model_config" in version)
            if config is None:
                missing.append("model_config")
            elif isinstance(config, dict):
                # a misspelt key (`embeding_dimension`) is reported as unknown; do not also call it missing
                unknown = [k for k in config if k not in _MODEL_CONFIG_KEYS]
                missing.extend(k for k in REQUIRED_MODEL_CONFIG
                               if config.get(k) is None and did_you_mean(k, unknown) is None)
        return missing

    def sha256(self, file: str) -> Optional[str]:
        if file not in self._hashes:
            try:
                self._hashes[file] = known_sha256_file(file)[0]
            except OSError:
                self._hashes[file] = None
        return self._hashes[file]

    def json_texts(self, path: tuple, obj: dict) -> None:
        config = obj.get("model_config")
        if isinstance(config, dict):
            self.json_text(path + ("model_config", "all_config"), config.get("all_config"))
        interface = obj.get("interface")
        if isinstance(interface, dict):
            for side in ("input", "output"):
                self.json_text(path + ("interface", side), interface.get(side))

    def json_text(self, path: tuple, value: Any) -> None:
        if isinstance(value, str):
            try:
                json.loads(value)
            except ValueError as exc:
                self.report(path, f"is not valid JSON ({exc.msg} at character {exc.pos}); give a mapping or "
                                  f"the JSON text")

    def guardrails(self, path: tuple, value: Any) -> None:
        if not isinstance(value, dict) or not isinstance(value.get("type"), str):
            return
        kind = value["type"].lower()
        wrong = _MODEL_KEYS if kind == "local_regex" else _REGEX_KEYS if kind == "model" else ()
        for side in ("input_guardrail", "output_guardrail"):
            guard = value.get(side)
            if isinstance(guard, dict):
                for key in wrong:
                    if key in guard:
                        self.report(path + (side, key), f"{key} does not apply to a guardrail of type {kind} "
                                                        f"(it takes {', '.join(_MODEL_KEYS if kind == 'model' else _REGEX_KEYS)})")


def _items(obj: Any, key: str) -> Iterable[tuple[int, dict]]:
    value = obj.get(key) if isinstance(obj, dict) else None
    if isinstance(value, list):
        return [(i, v) for i, v in enumerate(value) if isinstance(v, dict)]
    return []


def _text(value: Any) -> Optional[str]:
    return value if isinstance(value, str) and value.strip() else None


def _named(tree: dict, key: str) -> dict[str, int]:
    names: dict[str, int] = {}
    for i, item in _items(tree, key):
        name = _text(item.get("name"))
        if name is not None and name not in names:
            names[name] = i
    return names


def _unknown(kind: str, name: str, declared: Iterable[str], where: str) -> str:
    declared = sorted(declared)
    hint = did_you_mean(name, declared)
    text = f"{kind} '{name}' is not declared in {where}"
    if hint:
        text += f"; did you mean '{hint}'?"
    if declared:
        shown = declared if len(declared) <= 10 else declared[:10] + ["..."]
        return text + f" (declared: {', '.join(shown)})"
    return text + f" (no {where} are declared)"


def _reaches(uses: dict[str, set[str]], start: str, goal: str) -> bool:
    seen: set[str] = set()
    todo = list(uses.get(start, ()))
    while todo:
        name = todo.pop()
        if name == goal:
            return True
        if name not in seen:
            seen.add(name)
            todo.extend(uses.get(name, ()))
    return False


def _merged_config(model_cfg: Any, version_cfg: Any, version_sets: bool) -> Any:
    if not version_sets:
        return model_cfg
    if isinstance(model_cfg, dict) and isinstance(version_cfg, dict):
        return {**model_cfg, **version_cfg}
    return version_cfg


def check(tree: Any, locate: Locate, has: Callable[[tuple], bool]) -> list[Problem]:
    """Every cross-field problem in a merged desired-state tree."""
    if not isinstance(tree, dict):
        return []
    return Checker(tree, locate, has).run()
