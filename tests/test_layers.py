"""The import rules between mlsync's packages (docs/architecture.md draws the same table).

Every module under mlsync/ is parsed (never imported); every `import x` and `from x import y` counts,
also inside functions and under `if TYPE_CHECKING:`, and relative imports are resolved. A module's
layer is its package under mlsync/ (`mlsync/core/plan.py` -> core), `cli` for mlsync/cli.py and
`mlsync` for the root package (only `__version__`, importable by all).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "mlsync"

ALL = frozenset({"mlsync", "core", "input", "render", "run", "edge", "commands", "cli"})

#: The rules, one row per layer: the mlsync layers it may import (its own included), and the
#: libraries it may not import. opensearchpy belongs to edge alone, click to cli alone, and core
#: stays pure (no rich either).
RULES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    #  layer       may import (mlsync layers)                            may not import (libraries)
    "mlsync":   (frozenset({"mlsync"}),                                  frozenset({"click", "opensearchpy", "rich"})),
    "core":     (frozenset({"mlsync", "core"}),                          frozenset({"click", "opensearchpy", "rich"})),
    "input":    (frozenset({"mlsync", "core", "input"}),                 frozenset({"click", "opensearchpy"})),
    "render":   (frozenset({"mlsync", "core", "input", "render"}),       frozenset({"click", "opensearchpy"})),
    "run":      (frozenset({"mlsync", "core", "input", "run"}),          frozenset({"click", "opensearchpy"})),
    "edge":     (frozenset({"mlsync", "core", "input", "edge"}),         frozenset({"click"})),
    "commands": (ALL - {"cli"},                                          frozenset({"click", "opensearchpy"})),
    "cli":      (ALL,                                                    frozenset({"opensearchpy"})),
    # the executable's entry point: `mlsync --help` from kept text, anything else handed to cli
    "launch":   (frozenset({"mlsync", "cli"}),                           frozenset({"click", "opensearchpy", "rich"})),
}


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    layer: str
    target: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.layer} may not import {self.target}"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> Optional[str]:
    """The layer of an mlsync module (None for anything outside mlsync); a module directly under mlsync/
    other than the CLI is its own layer, which then has no row in RULES."""
    parts = module.split(".")
    if parts[0] != "mlsync":
        return None
    return parts[1] if len(parts) > 1 else "mlsync"


def target_layer(target: str) -> Optional[str]:
    """The layer an import reaches; `from mlsync import __version__` reaches the root package."""
    layer = layer_of(target)
    return layer if layer is None or layer in RULES else "mlsync"


def imports(module: str, source: str, *, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every import in `source`, relative ones resolved; `from a import b`
    yields `a.b` (b may be a submodule: `from mlsync import render`)."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            for alias in node.names:
                yield node.lineno, prefix if alias.name == "*" else f"{prefix}.{alias.name}"


def check_source(path: str, module: str, source: str, *, is_package: bool = False) -> list[Violation]:
    """The rule violations of one module's source."""
    layer = layer_of(module)
    if layer is None:
        return []
    if layer not in RULES:
        return [Violation(path, 1, layer, f"anything: {layer!r} has no row in RULES")]
    allowed, banned = RULES[layer]
    found = []
    for line, target in imports(module, source, is_package=is_package):
        top = target.split(".")[0]
        reached = target_layer(target)
        if reached is not None:
            if reached not in allowed:
                found.append(Violation(path, line, layer, f"{reached} ({target})"))
        elif top in banned:
            found.append(Violation(path, line, layer, top))
    return found


def check_tree(root: Path = PACKAGE) -> list[Violation]:
    found: list[Violation] = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        found += check_source(rel, module_name(path), path.read_text(encoding="utf-8"),
                              is_package=path.name == "__init__.py")
    return found


def _report(violations: Iterable[Violation]) -> str:
    return "\n".join(str(v) for v in violations)


def test_every_package_keeps_to_its_imports() -> None:
    violations = check_tree()
    print(_report(violations))
    assert not violations, f"{len(violations)} import rule violation(s) (rules: tests/test_layers.py RULES):\n" \
                           + _report(violations)


def test_every_layer_under_mlsync_has_a_row() -> None:
    layers = {layer_of(module_name(p)) for p in PACKAGE.rglob("*.py")}
    assert layers <= set(RULES), f"packages without import rules: {sorted(layers - set(RULES))}"


def test_the_checker_finds_violations() -> None:
    source = "\n".join([
        "import click",                                   # 1: only cli
        "from mlsync.edge import cluster",                # 2: core may not import edge
        "from ..render import text",                      # 3: relative: mlsync.render
        "from mlsync.core import plan",                   # 4: fine
        "def f():",
        "    import opensearchpy.helpers",                # 6: inside a function
        "    from mlsync import commands",                # 7: a package through `from mlsync import`
        "    from . import address",                      # 8: fine (mlsync.core.address)
        "    from mlsync import __version__",             # 9: fine
        "    import rich.console",                        # 10: core stays pure
    ])
    found = check_source("mlsync/core/fake.py", "mlsync.core.fake", source)
    assert [(v.line, v.target.split(" ")[0]) for v in found] == [
        (1, "click"), (2, "edge"), (3, "render"), (6, "opensearchpy"), (7, "commands"), (10, "rich")]
    assert str(found[1]) == "mlsync/core/fake.py:2: core may not import edge (mlsync.edge.cluster)"
    assert check_source("mlsync/cli.py", "mlsync.cli", "import click\nfrom mlsync.commands import plan\n") == []
    assert [v.line for v in check_source("mlsync/render/x.py", "mlsync.render.x",
                                         "from mlsync.render import text\nfrom mlsync.run import driver\n")] == [2]
    assert check_source("mlsync/edge/__init__.py", "mlsync.edge", "from .cluster import Cluster\nimport opensearchpy\n",
                        is_package=True) == []


def test_importing_the_commands_loads_no_heavy_library() -> None:
    """The command modules import heavy libraries inside their functions only."""
    code = ("import sys, mlsync.commands; heavy = [m for m in ('pydantic', 'ruamel.yaml', 'jsonschema', 'rich', "
            "'opensearchpy', 'deepdiff', 'click') if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == ""
