"""`mlsync validate` and `mlsync schema`: offline checks of the desired-state files; no cluster."""

from __future__ import annotations

import sys
from typing import Optional, TextIO

from mlsync.commands.output import EXIT_ERROR, EXIT_OK, paint, plural, print_problems


def validate(paths: list[str], out: TextIO, err: Optional[TextIO] = None, label: str = "") -> int:
    """`mlsync validate`: schema and semantic checks, offline. Prints a one-line summary or the problems
    (the summary starts with `label: ` when one is given)."""
    from mlsync.core.errors import ConfigError
    from mlsync.input import load

    err = err if err is not None else sys.stderr
    try:
        cfg = load(paths)
    except ConfigError as exc:
        print_problems(exc.problems, err)
        return EXIT_ERROR
    stack = cfg.stack
    versions = sum(len(m.versions) if m.versions else 1 for m in stack.models)
    summary = (f"{plural(len(stack.connectors), 'connector')}, "
               f"{plural(len(stack.all_model_groups()), 'model group')}, "
               f"{plural(versions, 'model version')}"
               + "".join(f", {plural(n, what)}" for n, what in (
                   (len(stack.ingest_pipelines), "ingest pipeline"), (len(stack.search_pipelines), "search pipeline"),
                   (len(stack.agents), "agent")) if n)
               + f" in {plural(len(cfg.sources), 'file')} "
               f"(stack {stack.stack})")
    print((f"{label}: " if label else "") + paint("valid:", "32", out) + " " + summary, file=out)
    return EXIT_OK


def validate_each(paths: list[str], out: TextIO, err: Optional[TextIO] = None) -> int:
    """`mlsync validate FILE...`: every file as a stack of its own (what a pre-commit hook passes);
    exit 1 when any of them is invalid. Problems already name their file; summaries get it as a label."""
    codes = [validate([path], out, err, label=path) for path in paths]
    return max(codes, default=EXIT_OK)


def schema_text() -> str:
    """`mlsync schema`: the JSON Schema of the desired-state file."""
    from mlsync.input.schema import schema_text as text

    return text()
