"""Renderers of a `Plan`: text (terminal / CI log), JSON (policy checks), Markdown (PR comments).

Each module exposes `render(plan, *, color=False, width=100) -> str`. Renderers only format what
the plan says; they never decide what changes, and none of them can print a secret.
`mlsync.render.drift` renders a `DriftReport` (mlsync/core/drift.py) in the same three formats.

    from mlsync.render import render, use_color
    print(render(plan, "text", color=use_color(sys.stdout)), end="")
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:   # importing the plan module costs every `validate` ≈ 10 ms for a type hint
    from mlsync.core.plan import Plan

FORMATS = ("text", "json", "markdown")


def use_color(stream: Any) -> bool:
    """Whether to colour output written to `stream`.

    Off when `NO_COLOR` is set to anything non-empty (https://no-color.org), when the stream is not
    a TTY, or when `TERM=dumb`; `FORCE_COLOR` (non-empty) turns it on regardless of the TTY.
    """
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    if os.environ.get("TERM") == "dumb":
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def plural(n: int, word: str, many: Optional[str] = None) -> str:
    """`1 model`, `2 models`, `1,000 models` (`many` for an irregular plural)."""
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def render(plan: "Plan", fmt: str = "text", *, color: bool = False, width: int = 100) -> str:
    """Render `plan` in one of `FORMATS`."""
    if fmt == "text":
        from mlsync.render import text as mod
    elif fmt == "json":
        from mlsync.render import json as mod  # type: ignore[no-redef]
    elif fmt == "markdown":
        from mlsync.render import markdown as mod  # type: ignore[no-redef]
    else:
        raise ValueError(f"unknown plan output format {fmt!r} (allowed: {', '.join(FORMATS)})")
    return mod.render(plan, color=color, width=width)


__all__ = ["FORMATS", "plural", "render", "use_color"]
