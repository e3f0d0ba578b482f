"""What every command prints with: colour (only on a terminal, never with NO_COLOR), plurals and
one line per configuration problem. The rules themselves live in `mlsync.render`; this module only
applies them to a command's streams."""

from __future__ import annotations

from typing import TextIO

from mlsync.render import plural, use_color

__all__ = ["EXIT_OK", "EXIT_ERROR", "EXIT_CHANGES", "use_color", "paint", "plural", "print_problems", "render_plan"]

#: Every command returns one of these: success, an error, changes present (plan --detailed-exitcode, drift).
EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2


def paint(text: str, code: str, stream: TextIO) -> str:
    """`text` in the ANSI style `code` when `stream` takes colour, else `text` unchanged."""
    return f"\033[{code}m{text}\033[0m" if use_color(stream) else text


def print_problems(problems: list, err: TextIO) -> None:
    """One line per problem: `file:line:col: path: what is wrong (allowed: ...)`."""
    for problem in problems:
        text = str(problem)
        if use_color(err):
            where, sep, rest = text.partition(": ")
            text = paint(where, "1", err) + sep + paint(rest, "31", err) if sep else paint(text, "31", err)
        print(text, file=err)


def render_plan(plan, output: str, out: TextIO) -> str:
    """The plan in `output` format (text, json, markdown); text is coloured when `out` takes colour."""
    from mlsync import render

    return render.render(plan, output, color=output == "text" and use_color(out))
