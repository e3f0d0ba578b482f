"""The command line: the only module that imports click.

Each command parses its options and calls one function of `mlsync.app` through `run()`, which maps
errors to exit codes (1) and one line per problem on stderr; `--debug` shows tracebacks instead.
Import heavy libraries inside command functions only: `mlsync --help` must stay fast.

Adding a command:

    @main.command()
    @files_option
    @click.pass_context
    def plan(ctx, files):
        \"\"\"Show what apply would change.\"\"\"
        from mlsync import app
        run(ctx, app.plan, list(files) or ["."], sys.stdout)
"""

from __future__ import annotations

import sys
import traceback
from typing import Any, Callable

import click

from mlsync import __version__

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class Options:
    """Global options, available to every command as `ctx.obj`."""

    def __init__(self, debug: bool = False):
        self.debug = debug


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="mlsync", message="%(prog)s %(version)s")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Declarative, Terraform-style sync for OpenSearch ML Commons: connectors, model groups and models."""
    ctx.obj = Options(debug=debug)


def run(ctx: click.Context, fn: Callable[..., int], *args: Any, **kwargs: Any) -> None:
    """Call an app function and exit with its code; errors become one line each on stderr, exit 1."""
    from mlsync.errors import ConfigError, MlsyncError

    debug = bool(ctx.obj and ctx.obj.debug)
    try:
        code = fn(*args, **kwargs)
    except ConfigError as exc:
        from mlsync.app import print_problems

        print_problems(exc.problems, sys.stderr)
        code = 1
    except MlsyncError as exc:
        if debug:
            traceback.print_exc(file=sys.stderr)
        for line in str(exc).splitlines() or [type(exc).__name__]:
            click.echo(f"error: {line}", err=True)
        code = 1
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        code = 130
    except Exception as exc:  # a bug: say so, and show the traceback with --debug
        if debug:
            traceback.print_exc(file=sys.stderr)
        else:
            click.echo(f"internal error: {type(exc).__name__}: {exc} (run with --debug for a traceback)", err=True)
        code = 1
    ctx.exit(code)


def files_option(fn: Callable) -> Callable:
    """`-f/--file FILE|DIR`, repeatable; later files deep-merge over earlier ones. Default: the current directory."""
    return click.option(
        "-f", "--file", "files", multiple=True, metavar="FILE|DIR",
        help="Desired-state file or directory (its *.yaml/*.yml in name order); repeat to overlay "
             "(later files merge over earlier ones). Default: the current directory.",
    )(fn)


@main.command()
@files_option
@click.pass_context
def validate(ctx: click.Context, files: tuple[str, ...]) -> None:
    """Check the desired-state files offline: schema and cross-field rules. Contacts no cluster."""
    from mlsync import app

    run(ctx, app.validate, list(files) or ["."], sys.stdout, sys.stderr)


@main.command()
@click.pass_context
def schema(ctx: click.Context) -> None:
    """Print the JSON Schema (draft 2020-12) of the desired-state file."""
    from mlsync import app

    def emit() -> int:
        sys.stdout.write(app.schema_text())
        return 0

    run(ctx, emit)


if __name__ == "__main__":  # pragma: no cover
    main()
