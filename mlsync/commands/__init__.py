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


def validate(paths: list[str], out: TextIO, err: Optional[TextIO] = None, label: str = "") -> int:
    """`mlsync validate`: schema and semantic checks, offline. Prints a one-line summary or the problems
    (the summary starts with `label: ` when one is given)."""
    from mlsync.input import load
    from mlsync.core.errors import ConfigError

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


# --- commands that read or change a cluster ------------------------------------------------------

def _render(plan, output: str, out: TextIO) -> str:
    from mlsync import render

    return render.render(plan, output, color=output == "text" and render.use_color(out))


def plan(paths: list[str], options, out: TextIO, *, output: str = "text", plan_file: Optional[str] = None,
         detailed_exitcode: bool = False, state_file: Optional[str] = None, destroy: bool = False) -> int:
    """`mlsync plan`: observe, diff and print; `-o` saves the plan; exit 2 on changes with --detailed-exitcode."""
    from mlsync.commands import common as workflow

    desired = workflow.load_desired(paths)
    cluster = workflow.connect(options)
    planned = workflow.plan_for(desired, cluster, workflow.state_store(cluster, state_file), destroy=destroy)
    out.write(_render(planned.plan, output, out))
    if plan_file:
        workflow.save_plan(planned.plan, plan_file)
        print(f"Saved the plan to {plan_file}; apply it with: mlsync apply {plan_file}", file=sys.stderr)
    return EXIT_CHANGES if detailed_exitcode and planned.plan.has_changes else EXIT_OK


def drift(paths: list[str], options, out: TextIO, *, output: str = "text", state_file: Optional[str] = None) -> int:
    """`mlsync drift`: report what changed on the cluster (drift) and in the file (pending) since the last
    apply; exit 2 when anything did, 0 when clean (docs/drift.md)."""
    from mlsync.core import drift as drift_report
    from mlsync import render
    from mlsync.commands import common as workflow
    from mlsync.render import drift as render_drift

    desired = workflow.load_desired(paths)
    cluster = workflow.connect(options)
    planned = workflow.plan_for(desired, cluster, workflow.state_store(cluster, state_file))
    report = drift_report.build(planned.plan, planned.state, planned.observed)
    out.write(render_drift.render(report, output, color=output == "text" and render.use_color(out)))
    return report.exit_code


def apply(paths: list[str], options, out: TextIO, *, plan_file: Optional[str] = None, auto_approve: bool = False,
          parallelism: int = 4, timeout: float = 600.0, state_file: Optional[str] = None, destroy: bool = False,
          confirm=None) -> int:
    """`mlsync apply` / `mlsync destroy`: plan (or check a saved plan), confirm, execute, summarise."""
    from mlsync.run import driver as executor
    from mlsync.run import progress
    from mlsync.commands import common as workflow

    if plan_file:
        saved = workflow.read_plan(plan_file)
        paths = list(saved.sources)
        destroy = destroy or saved.destroy
    desired = workflow.load_desired(paths)
    cluster = workflow.connect(options)
    store = workflow.state_store(cluster, state_file)
    planned = workflow.plan_for(desired, cluster, store, destroy=destroy)
    if plan_file:
        workflow.check_fresh(saved, planned)
    the_plan = planned.plan
    if not plan_file:
        out.write(_render(the_plan, "text", out))
    if not the_plan.has_changes:
        if plan_file:
            print("No changes. The cluster matches the file.", file=out)
        return EXIT_OK
    if not auto_approve and not plan_file:
        if confirm is None or not confirm():
            print("Apply cancelled (use --auto-approve to skip the question).", file=out)
            return EXIT_ERROR
    try:
        with progress.make_reporter(sys.stderr) as reporter:
            result = executor.apply(the_plan, cluster, store, credentials=workflow.credentials(desired),
                                    parallelism=parallelism, timeout=timeout, reporter=reporter)
    except executor.ApplyAborted as err:
        for line in progress.summary_lines(err.result):
            print(line, file=out)
        raise
    for line in progress.summary_lines(result):
        print(line, file=out)
    return EXIT_OK if result.ok else EXIT_ERROR


def state(action: str, args: list[str], options, out: TextIO, *, stack: str, state_file: Optional[str] = None) -> int:
    """`mlsync state list | show ADDRESS | rm ADDRESS...`."""
    from mlsync.edge import statestore
    from mlsync.commands import common as workflow

    cluster = None if state_file else workflow.connect(options)
    store = workflow.state_store(cluster, state_file)
    if action == "list":
        out.write(statestore.state_list_text(store, stack) + "\n")
    elif action == "show":
        out.write(statestore.state_show_text(store, stack, args[0]) + "\n")
    elif action == "rm":
        statestore.state_rm(store, stack, args)
        print(f"Removed {plural(len(args), 'address', 'addresses')} from the state of stack {stack!r} "
              "(the objects themselves are untouched).", file=out)
    return EXIT_OK


def unlock(options, out: TextIO, *, stack: str, force: bool = False, state_file: Optional[str] = None) -> int:
    """`mlsync unlock`: release the stack's apply lease (only an expired one unless --force)."""
    from mlsync.commands import common as workflow

    cluster = None if state_file else workflow.connect(options)
    lock = workflow.state_store(cluster, state_file).unlock(stack, force=force)
    print(f"Released the lock held by {lock.holder} on {lock.host}." if lock else f"Stack {stack!r} was not locked.",
          file=out)
    return EXIT_OK


def export_(options, out: TextIO, *, groups: Optional[list[str]] = None, stack: Optional[str] = None,
            output_file: Optional[str] = None, err: Optional[TextIO] = None, now=None) -> int:
    """`mlsync export`: write the cluster's groups, connectors and models as a desired-state file.

    Everything is read and rendered before anything is written, so a bad `--group` (or any error)
    leaves `--output FILE` untouched; the file itself is replaced atomically."""
    import datetime

    from mlsync import __version__

    from mlsync.core import export

    from mlsync.commands import common as workflow

    err = err if err is not None else sys.stderr
    cluster = workflow.connect(options)
    observed = cluster.observe()
    moment = now or datetime.datetime.now(datetime.timezone.utc)
    source = export.ExportSource(cluster=_public_url(getattr(options, "url", None) or ""),
                                 cluster_version=observed.cluster_version,
                                 exported_at=moment.strftime("%Y-%m-%dT%H:%M:%SZ"), tool_version=__version__)
    result = export.export_stack(observed, source=source, groups=groups, stack=stack)
    text = result.text()
    if output_file:
        _write_atomically(output_file, text)
    else:
        out.write(text)
    for warning in result.warnings:
        print(paint("warning:", "33", err) + " " + warning, file=err)
    c = result.counts
    print(f"Exported {plural(c['connectors'], 'connector')}, {plural(c['model_groups'], 'model group')}, "
          f"{plural(c['models'], 'model')} ({plural(c['versions'], 'version')}) as stack {result.stack!r}"
          + (f" to {output_file}" if output_file else "") + ".", file=err)
    if result.env_vars:
        print("Set the credential variables before planning: " + " ".join(result.env_vars), file=err)
    return EXIT_OK


def _public_url(url: str) -> str:
    """The cluster URL for a file header: no user:password, no query string."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", "")) or url


def _write_atomically(path: str, text: str) -> None:
    import tempfile

    from mlsync.core.errors import MlsyncError

    directory = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".mlsync-export-", dir=directory)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)   # mkstemp makes it 0600; give it a normal file's mode
        os.replace(tmp, path)
    except OSError as exc:
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)
        raise MlsyncError(f"{path}: cannot write the export ({exc.strerror or exc})") from None


def import_(address: str, object_id: str, options, out: TextIO, *, stack: str,
            state_file: Optional[str] = None) -> int:
    """`mlsync import ADDRESS ID`: adopt one existing object into the stack's state."""
    from mlsync.commands import common as workflow
    from mlsync.core.address import Address
    from mlsync.core.errors import MlsyncError
    from mlsync.core.state import ResourceState, StackState

    try:
        addr = Address.parse(address)
    except ValueError as err:
        raise MlsyncError(str(err)) from None
    cluster = workflow.connect(options)
    observed = cluster.observe()
    pool = {"connector": observed.connectors, "model_group": observed.groups, "model": observed.models}[addr.kind]
    obj = pool.get(object_id)
    if obj is None:
        kinds = [k for k, p in (("connector", observed.connectors), ("model_group", observed.groups),
                                ("model", observed.models)) if object_id in p]
        if kinds:
            raise MlsyncError(f"{address}: {object_id} is a {kinds[0]}, not a {addr.kind}; give the id of the "
                              f"{addr.kind} this address names")
        raise MlsyncError(f"{address}: no {addr.kind} with id {object_id} on the cluster")
    if obj.source.get("name") != addr.name:
        raise MlsyncError(f"{address}: {addr.kind} {object_id} is named {obj.source.get('name')!r}, not {addr.name!r}")
    if addr.kind == "model":
        group = observed.groups.get(obj.source.get("model_group_id"))
        if group is None or group.source.get("name") != addr.group:
            where = repr(group.source.get("name")) if group else "no existing group"
            raise MlsyncError(f"{address}: model {object_id} is not in group {addr.group!r} (it is in {where})")
        remote = (obj.source.get("algorithm") or obj.source.get("function_name") or "").upper() == "REMOTE"
        if remote and addr.version is not None:
            raise MlsyncError(f"{address}: model {object_id} is a remote model, whose address has no version label: "
                              f"{Address('model', addr.name, group=addr.group)}")
        if not remote and addr.version is None:
            raise MlsyncError(f"{address}: model {object_id} is a version of a local model (server version "
                              f"{obj.source.get('model_version')}); its address needs your version label, e.g. "
                              f"{Address('model', addr.name, group=addr.group, version=str(obj.source.get('model_version')))}")
    store = workflow.state_store(cluster, state_file)
    for _ in range(5):
        st = store.load(stack) or StackState(stack)
        if st.lock is not None:
            from mlsync.core.errors import LockHeld
            raise LockHeld(stack, st.lock.holder, st.lock.host, str(st.lock.started), str(st.lock.expires))
        claimed = {r.id: a for a, r in st.resources.items()}
        if object_id in claimed and claimed[object_id] != str(addr):
            raise MlsyncError(f"{object_id} is already managed as {claimed[object_id]}")
        current = st.resources.get(str(addr))
        if current is not None and current.id != object_id:
            raise MlsyncError(f"stack {stack!r} already manages {addr} as {current.id}; run "
                              f"`mlsync state rm '{addr}'` first if you mean to point it at {object_id}")
        st.resources[str(addr)] = ResourceState(str(addr), addr.kind, object_id,
                                                server_version=obj.source.get("model_version"))
        try:
            store.save(st)
            break
        except Exception as err:  # StateConflict: somebody wrote meanwhile; re-read and retry
            from mlsync.core.errors import StateConflict
            if not isinstance(err, StateConflict):
                raise
    print(f"Imported {object_id} as {addr}.", file=out)
    return EXIT_OK
