"""The command line: the only module that imports click.

Each command parses its options and calls one function of `mlsync.commands` through `run()`, which maps
errors to exit codes (1) and one line per problem on stderr; `--debug` shows tracebacks instead.
Import heavy libraries inside command functions only: `mlsync --help` must stay fast.

Adding a command:

    @main.command()
    @files_option
    @click.pass_context
    def plan(ctx, files):
        \"\"\"Show what apply would change.\"\"\"
        from mlsync import commands as app
        run(ctx, app.plan, list(files) or ["."], sys.stdout)
"""

from __future__ import annotations

import gc
import sys
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
    if not debug:
        _quiet_library_warnings()


# Libraries whose Python warnings never reach the terminal in a normal run (`--debug` shows them): what
# matters in them mlsync says itself, once (connection_warnings; the server's Warning headers go to
# mlsync's debug log, mlsync/edge/transport.py).
_LIBRARIES = r"(opensearchpy|urllib3|requests|botocore|boto3)(\..*)?$"


def _quiet_library_warnings() -> None:
    import warnings  # noqa: PLC0415 — stdlib, already loaded by Python itself

    warnings.filterwarnings("ignore", module=_LIBRARIES)


def run(ctx: click.Context, fn: Callable[..., int], *args: Any, **kwargs: Any) -> None:
    """Call an app function and exit with its code; errors become one line each on stderr, exit 1."""
    from mlsync.core.errors import ConfigError, MlsyncError

    debug = bool(ctx.obj and ctx.obj.debug)
    # A plan at 10,000 versions allocates millions of objects and makes almost no cycles: at the
    # default thresholds the collector's passes took ~15 % of its CPU (docs/performance.md §3).
    gc.set_threshold(100_000, 50, 100)
    try:
        code = fn(*args, **kwargs)
    except ConfigError as exc:
        from mlsync.commands import print_problems

        print_problems(exc.problems, sys.stderr)
        code = 1
    except MlsyncError as exc:
        if debug:
            import traceback  # noqa: PLC0415 - only with --debug (it costs --help ~5 ms)

            traceback.print_exc(file=sys.stderr)
        for line in str(exc).splitlines() or [type(exc).__name__]:
            click.echo(f"error: {line}", err=True)
        code = 1
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        code = 130
    except Exception as exc:  # a bug: say so, and show the traceback with --debug
        if debug:
            import traceback  # noqa: PLC0415 - only with --debug (it costs --help ~5 ms)

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
@click.argument("separate", nargs=-1, metavar="[FILE]...")
@click.pass_context
def validate(ctx: click.Context, files: tuple[str, ...], separate: tuple[str, ...]) -> None:
    """Check the desired-state files offline: schema and cross-field rules. Contacts no cluster.

    -f files are merged into one stack (overlays). FILE arguments are each checked as a stack of
    their own, which is how a pre-commit hook passes the changed files.
    """
    from mlsync import commands as app

    if separate and files:
        raise click.UsageError("give -f files (merged into one stack) or FILE arguments (each checked on its own), "
                               "not both")
    if separate:
        run(ctx, app.validate_each, list(separate), sys.stdout, sys.stderr)
    else:
        run(ctx, app.validate, list(files) or ["."], sys.stdout, sys.stderr)


@main.command()
@click.pass_context
def schema(ctx: click.Context) -> None:
    """Print the JSON Schema (draft 2020-12) of the desired-state file."""
    from mlsync import commands as app

    def emit() -> int:
        sys.stdout.write(app.schema_text())
        return 0

    run(ctx, emit)


def cluster_options(fn: Callable) -> Callable:
    """Connection options (SPEC §2) and --state-file. Built into `ConnectionOptions` by `_connection()`."""
    return _connection_options(fn, with_state_file=True)


def _connection_options(fn: Callable, *, with_state_file: bool = False) -> Callable:
    opts = [
        click.option("--url", envvar="OPENSEARCH_URL", default="http://localhost:9200", show_default=True,
                     help="Cluster URL (env OPENSEARCH_URL)."),
        click.option("--username", envvar="OPENSEARCH_USERNAME", help="Basic-auth user (env OPENSEARCH_USERNAME)."),
        click.option("--password", envvar="OPENSEARCH_PASSWORD", help="Basic-auth password (env OPENSEARCH_PASSWORD)."),
        click.option("--ca-certs", type=click.Path(exists=True, dir_okay=False), help="CA bundle for TLS."),
        click.option("--insecure", is_flag=True, help="Do not verify TLS certificates."),
        click.option("--aws-region", help="Sign requests with AWS SigV4 for this region (needs mlsync[aws])."),
        click.option("--aws-service", type=click.Choice(["es", "aoss"]), default="es", show_default=True,
                     help="AWS service: es (managed domains) or aoss (serverless)."),
        click.option("--retry-deadline", type=click.FloatRange(min=0), default=60.0, show_default=True,
                     metavar="SECONDS", envvar="MLSYNC_RETRY_DEADLINE",
                     help="How long one request may keep being retried on 429/502/503/504 and connection "
                          "errors (0: never retry; env MLSYNC_RETRY_DEADLINE)."),
    ]
    if with_state_file:
        opts.append(click.option("--state-file", type=click.Path(dir_okay=False),
                                 help="Keep the stack's state in this local JSON file instead of the cluster."))
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def _connection(kw: dict):
    """The ConnectionOptions of the command line; what is unsafe or ignored in them is said once, on stderr."""
    from mlsync.edge.cluster import ConnectionOptions
    from mlsync.edge.transport import connection_warnings

    options = ConnectionOptions(url=kw.pop("url"), username=kw.pop("username"), password=kw.pop("password"),
                                ca_certs=kw.pop("ca_certs"), insecure=kw.pop("insecure"),
                                aws_region=kw.pop("aws_region"), aws_service=kw.pop("aws_service"),
                                retry_deadline=kw.pop("retry_deadline"))
    for warning in connection_warnings(options):
        click.echo(f"warning: {warning}", err=True)
    return options


def output_option(what: str) -> Callable:
    return click.option("--output", type=click.Choice(["text", "json", "markdown"]), default="text",
                        show_default=True, help=f"How to print the {what}.")


OUTPUT = output_option("plan")
ALLOW_IN_USE = click.option(
    "--allow-in-use", is_flag=True,
    help="Plan undeploys and deletes of models, connectors and agents that pipelines or agents this stack does "
         "not manage still name (they then name an id that no longer serves; docs/references.md).")


@main.command()
@files_option
@cluster_options
@OUTPUT
@click.option("-o", "--out", "plan_file", type=click.Path(dir_okay=False), help="Save the plan to this file.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when there are changes (0 none, 1 error).")
@click.option("--destroy", is_flag=True, help="Plan the deletion of everything the stack manages.")
@ALLOW_IN_USE
@click.pass_context
def plan(ctx: click.Context, files, output, plan_file, detailed_exitcode, destroy, allow_in_use, **kw) -> None:
    """Show what apply would change (reads the cluster, changes nothing)."""
    from mlsync import commands as app

    state_file = kw.pop("state_file")
    run(ctx, lambda: app.plan(list(files) or ["."], _connection(kw), sys.stdout, output=output, plan_file=plan_file,
                              detailed_exitcode=detailed_exitcode, state_file=state_file, destroy=destroy,
                              allow_in_use=allow_in_use))


def _confirm() -> bool:
    if not sys.stdin.isatty():
        click.echo("error: apply needs confirmation, but there is no terminal to ask; use --auto-approve", err=True)
        return False
    return click.prompt("Apply these changes? Only 'yes' is accepted", default="", show_default=False) == "yes"


def _apply_command(destroy: bool):
    @files_option
    @cluster_options
    @click.argument("planfile", required=False, type=click.Path(exists=True, dir_okay=False))
    @click.option("--auto-approve", is_flag=True, help="Do not ask for confirmation.")
    @click.option("--parallelism", type=click.IntRange(1, 10), default=4, show_default=True,
                  help="Model groups registered in parallel (versions of one group always go one at a time).")
    @click.option("--upload-concurrency", type=click.IntRange(1, 4), default=1, show_default=True,
                  help="Chunks of local model files (path:) in flight at once, 10 MB each in memory; "
                       "a file's last chunk goes after all its others.")
    @click.option("--timeout", default="10m", show_default=True, help="Per-operation timeout, e.g. 90s, 10m, 1h.")
    @ALLOW_IN_USE
    @click.pass_context
    def command(ctx: click.Context, files, planfile, auto_approve, parallelism, upload_concurrency, timeout, allow_in_use,
                **kw) -> None:
        from mlsync import commands as app

        state_file = kw.pop("state_file")
        seconds = _duration(timeout)
        run(ctx, lambda: app.apply(list(files) or ["."], _connection(kw), sys.stdout, plan_file=planfile,
                                   auto_approve=auto_approve, parallelism=parallelism, timeout=seconds,
                                   state_file=state_file, destroy=destroy, confirm=_confirm,
                                   allow_in_use=allow_in_use, upload_concurrency=upload_concurrency))
    return command


def _duration(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for suffix in ("ms", "s", "m", "h"):
        if text.endswith(suffix) and text[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(text[: -len(suffix)]) * units[suffix]
    if text.replace(".", "", 1).isdigit():
        return float(text)
    raise click.BadParameter(f"{text!r} is not a duration (allowed: 90, 90s, 10m, 1h)", param_hint="--timeout")


main.command("apply", help="Make the cluster match the files (or carry out a saved PLANFILE).")(_apply_command(False))
main.command("destroy", help="Delete everything the stack manages, dependents first.")(_apply_command(True))


@main.command()
@files_option
@cluster_options
@output_option("report")
@click.pass_context
def drift(ctx: click.Context, files, output, **kw) -> None:
    """Report what changed on the cluster, and in the files, since the last apply.

    Exit 0 when nothing did, 2 when something did (drift or pending file changes), 1 on error."""
    from mlsync import commands as app

    state_file = kw.pop("state_file")
    run(ctx, lambda: app.drift(list(files) or ["."], _connection(kw), sys.stdout, output=output, state_file=state_file))


@main.command("state")
@click.argument("action", type=click.Choice(["list", "show", "rm", "mv"]))
@click.argument("addresses", nargs=-1)
@click.option("--stack", required=True, help="The stack whose state to read or edit.")
@click.option("--to-stack", help="mv: the stack that takes the addresses over.")
@cluster_options
@click.pass_context
def state_command(ctx: click.Context, action, addresses, stack, to_stack, **kw) -> None:
    """Inspect or edit the stack's state: list | show ADDRESS | rm ADDRESS... | mv --to-stack OTHER ADDRESS..."""
    from mlsync import commands as app

    if action in ("show", "rm", "mv") and not addresses:
        raise click.UsageError(f"state {action} needs an ADDRESS, e.g. 'model_group[\"embeddings\"]'")
    if (action == "mv") != bool(to_stack):
        raise click.UsageError("--to-stack goes with state mv, and state mv needs it")
    state_file = kw.pop("state_file")
    run(ctx, lambda: app.state(action, list(addresses), _connection(kw), sys.stdout, stack=stack,
                               state_file=state_file, to_stack=to_stack))


@main.command()
@click.option("--stack", required=True, help="The stack to unlock.")
@click.option("--force", is_flag=True, help="Release the lock even if its lease has not expired.")
@cluster_options
@click.pass_context
def unlock(ctx: click.Context, stack, force, **kw) -> None:
    """Release a stale apply lock."""
    from mlsync import commands as app

    state_file = kw.pop("state_file")
    run(ctx, lambda: app.unlock(_connection(kw), sys.stdout, stack=stack, force=force, state_file=state_file))


@main.command("export")
@click.option("--group", "groups", multiple=True, metavar="NAME",
              help="Export only this model group (and the connectors its models use); repeatable. Default: all.")
@click.option("--stack", help="Stack name in the file. Default: the group's name with one --group, else 'exported'.")
@click.option("--output", "output_file", type=click.Path(dir_okay=False),
              help="Write the file here (replaced atomically) instead of to stdout.")
@_connection_options
@click.pass_context
def export_command(ctx: click.Context, groups, stack, output_file, **kw) -> None:
    """Write the cluster's model groups, connectors and models as a desired-state file (credentials as
    ${env:...} placeholders: the server never returns them)."""
    from mlsync import commands as app

    run(ctx, lambda: app.export_(_connection(kw), sys.stdout, groups=list(groups), stack=stack,
                                 output_file=output_file))


@main.command("import")
@click.argument("address")
@click.argument("object_id", metavar="ID")
@click.option("--stack", required=True, help="The stack that will manage the object.")
@cluster_options
@click.pass_context
def import_command(ctx: click.Context, address, object_id, stack, **kw) -> None:
    """Adopt an existing object into the stack's state (ADDRESS like 'model_group[\"g\"]')."""
    from mlsync import commands as app

    state_file = kw.pop("state_file")
    run(ctx, lambda: app.import_(address, object_id, _connection(kw), sys.stdout, stack=stack, state_file=state_file))


@main.command("graph")
@files_option
@cluster_options
@click.argument("planfile", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot", "svg"]), default="mermaid", show_default=True,
              help="mermaid (GitHub renders it), dot (Graphviz), or svg (needs Graphviz's `dot` on PATH).")
@click.option("--all", "include_unchanged", is_flag=True, help="Draw unchanged resources too.")
@click.option("--destroy", is_flag=True, help="Draw the deletion of everything the stack manages.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when there are changes (0 none, 1 error).")
@click.pass_context
def graph_command(ctx: click.Context, files, planfile, fmt, include_unchanged, destroy, detailed_exitcode, **kw) -> None:
    """Draw the plan: what changes and in which order (dependencies first). Plans like `mlsync plan`,
    or draws a saved PLANFILE without reaching the cluster."""
    from mlsync import commands as app

    state_file = kw.pop("state_file")
    if planfile:
        run(ctx, lambda: app.graph([], None, sys.stdout, fmt=fmt, plan_file=planfile,
                                   include_unchanged=include_unchanged, detailed_exitcode=detailed_exitcode))
    else:
        run(ctx, lambda: app.graph(list(files) or ["."], _connection(kw), sys.stdout, fmt=fmt, state_file=state_file,
                                   destroy=destroy, include_unchanged=include_unchanged,
                                   detailed_exitcode=detailed_exitcode))


@main.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion_command(shell: str) -> None:
    """Print the shell completion script for SHELL (README.md, "Shell completion").

    \b
    bash:  eval "$(mlsync completion bash)"     (in ~/.bashrc)
    zsh:   eval "$(mlsync completion zsh)"      (in ~/.zshrc)
    fish:  mlsync completion fish > ~/.config/fish/completions/mlsync.fish
    """
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None      # click ships all three
    click.echo(cls(main, {}, "mlsync", "_MLSYNC_COMPLETE").source(), nl=False)


if __name__ == "__main__":  # pragma: no cover
    main()
