"""One function per command. Each takes plain arguments and output streams and returns an exit code
(0 success, 1 error, 2 changes present). No click here (cli.py is the only module that imports it);
heavy libraries are imported inside the functions so that `mlsync --help` stays fast.
"""

from __future__ import annotations

import os
import sys
from typing import Optional, TextIO

EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2


def use_color(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    if os.environ.get("NO_COLOR", "") != "":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def paint(text: str, code: str, stream: TextIO) -> str:
    return f"\033[{code}m{text}\033[0m" if use_color(stream) else text


def plural(n: int, word: str, words: Optional[str] = None) -> str:
    return f"{n} {word if n == 1 else (words or word + 's')}"


def print_problems(problems: list, err: TextIO) -> None:
    """One line per problem: `file:line:col: path: what is wrong (allowed: ...)`."""
    for problem in problems:
        text = str(problem)
        if use_color(err):
            where, sep, rest = text.partition(": ")
            text = paint(where, "1", err) + sep + paint(rest, "31", err) if sep else paint(text, "31", err)
        print(text, file=err)


def validate(paths: list[str], out: TextIO, err: Optional[TextIO] = None) -> int:
    """`mlsync validate`: schema and semantic checks, offline. Prints a one-line summary or the problems."""
    from mlsync.config import load
    from mlsync.errors import ConfigError

    err = err if err is not None else sys.stderr
    try:
        cfg = load(paths)
    except ConfigError as exc:
        print_problems(exc.problems, err)
        return EXIT_ERROR
    stack = cfg.stack
    versions = sum(1 if m.is_remote or not m.versions else len(m.versions) for m in stack.models)
    summary = (f"{plural(len(stack.connectors), 'connector')}, "
               f"{plural(len(stack.all_model_groups()), 'model group')}, "
               f"{plural(versions, 'model version')} in {plural(len(cfg.sources), 'file')} "
               f"(stack {stack.stack})")
    print(paint("valid:", "32", out) + " " + summary, file=out)
    return EXIT_OK


def schema_text() -> str:
    """`mlsync schema`: the JSON Schema of the desired-state file."""
    from mlsync.config.schema import schema_text as text

    return text()
