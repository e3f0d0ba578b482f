"""The desired-state file: load, validate, and locate.

    from mlsync.input import load
    cfg = load(["base.yaml", "prod.yaml"])      # raises mlsync.core.errors.ConfigError with every problem
    cfg.stack                                     # StackFile (typed view; see mlsync.input.model)
    cfg.sources                                   # absolute paths of the files read, in merge order
    cfg.locate(("models", 0, "name"))             # (file, line, col) where that was written

Nothing here contacts a cluster.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Optional

from mlsync.core.errors import ConfigError, Problem

if TYPE_CHECKING:
    from mlsync.input.loader import SourceMap
    from mlsync.input.model import StackFile

__all__ = ["LoadedConfig", "load", "validate_tree"]


@dataclass(frozen=True)
class LoadedConfig:
    stack: "StackFile"
    sources: list[str]
    source_map: "SourceMap"

    def locate(self, path: tuple) -> tuple[str, int, int]:
        """Where `path` was written: (file as given on the command line, line, column), 1-based.

        A mapping entry points at its key, a list item at the item; a path that is not in the files
        (a default) points at its nearest written ancestor.
        """
        return self.source_map.locate(tuple(path))

    def __repr__(self) -> str:
        return f"LoadedConfig(stack={self.stack.stack!r}, sources={self.sources!r})"


def validate_tree(tree: object, source_map: "SourceMap") -> tuple[Optional["StackFile"], list[Problem]]:
    """Typed-model and semantic validation of a merged tree; returns the StackFile (if valid) and problems."""
    from mlsync.input import diagnostics, semantic, validator
    from mlsync.input.model import StackFile

    stack, errors = validator.validate(StackFile, tree)
    problems = diagnostics.validation_problems(errors, tree, source_map.locate)
    problems.extend(semantic.check(tree, source_map.locate, source_map.has))
    return (stack if not problems else None), problems


def load(paths: list[str], env: Optional[Mapping[str, str]] = None) -> LoadedConfig:
    """Load, merge (in order), interpolate and validate desired-state files.

    `paths` are files or directories (a directory means its *.yaml/*.yml files in name order).
    `env` replaces `os.environ` for `${env:…}` (tests). Raises ConfigError with all problems.
    """
    from mlsync.input.loader import load_tree

    # Loading allocates a node, a position and a value per scalar and makes no garbage cycles worth
    # collecting: with the cyclic collector on, its passes over the growing heap took 30-40 % of the
    # time of a 10,000-version YAML file (docs/performance.md, section 3).
    collecting = gc.isenabled()
    gc.disable()
    try:
        result = load_tree(list(paths), env=env)
        problems = list(result.problems)
        stack = None
        if not result.fatal:
            stack, more = validate_tree(result.tree, result.source_map)
            problems.extend(more)
    finally:
        if collecting:
            gc.enable()
    if problems:
        raise ConfigError(_dedupe(problems))
    return LoadedConfig(stack=stack, sources=[f.absolute for f in result.files], source_map=result.source_map)


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen = set()
    out = []
    for p in problems:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out
