"""`mlsync export`: the cluster's groups, connectors and models as a desired-state file."""

from __future__ import annotations

import os
import sys
from typing import Optional, TextIO

from mlsync.commands.output import EXIT_OK, paint, plural


def export_(options, out: TextIO, *, groups: Optional[list[str]] = None, stack: Optional[str] = None,
            output_file: Optional[str] = None, err: Optional[TextIO] = None, now=None) -> int:
    """`mlsync export`: write the cluster's groups, connectors and models as a desired-state file.

    Everything is read and rendered before anything is written, so a bad `--group` (or any error)
    leaves `--output FILE` untouched; the file itself is replaced atomically."""
    import datetime

    from mlsync import __version__
    from mlsync.commands import common
    from mlsync.core import export

    err = err if err is not None else sys.stderr
    cluster = common.connect(options)
    observed = cluster.observe()
    stack_name = stack or (groups[0] if groups and len(set(groups)) == 1 else export.DEFAULT_STACK)
    observed, skipped = _without_owned(observed, common.state_store(cluster, None).owners(stack_name), groups)
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
    for warning in skipped + list(result.warnings):
        print(paint("warning:", "33", err) + " " + warning, file=err)
    c = result.counts
    print(f"Exported {plural(c['connectors'], 'connector')}, {plural(c['model_groups'], 'model group')}, "
          f"{plural(c['models'], 'model')} ({plural(c['versions'], 'version')})"
          + "".join(f", {plural(c[key], what)}" for key, what in (
              ("ingest_pipelines", "ingest pipeline"), ("search_pipelines", "search pipeline"), ("agents", "agent"))
              if c.get(key))
          + f" as stack {result.stack!r}"
          + (f" to {output_file}" if output_file else "") + ".", file=err)
    if result.env_vars:
        print("Set the credential variables before planning: " + " ".join(result.env_vars), file=err)
    return EXIT_OK


def _without_owned(observed, owners: dict, groups: Optional[list[str]]):
    """`observed` without the objects other stacks manage (`owners`: id -> Owner), and a warning per
    object left out, so that the export never plans as an adoption of another stack's objects: its
    connectors, its groups and every model in them, its models, and the models that use its connectors
    (the file would have to declare the connector). A `--group` another stack manages is an error."""
    import dataclasses

    from mlsync.core.errors import MlsyncError

    def owned(kind: str, obj, extra: str = "") -> str:
        o = owners[obj.id]
        return (f"{kind} {obj.id} ({obj.source.get('name')!r}) left out{extra}: stack {o.stack!r} manages it as "
                f"{o.address}")

    named = {g.source.get("name"): g for g in observed.groups.values() if g.id in owners}
    taken = sorted(g for g in (groups or []) if g in named and not any(
        x.source.get("name") == g and x.id not in owners for x in observed.groups.values()))
    if taken:
        raise MlsyncError("; ".join(f"model group {g!r} (id {named[g].id}) is managed by stack "
                                    f"{owners[named[g].id].stack!r}: export it from that stack's file, or move it "
                                    f"first ({owners[named[g].id].how_to_release()})" for g in taken))
    chosen = None if not groups else {g.id for g in observed.groups.values() if g.source.get("name") in groups}
    warnings = []
    if chosen is None:   # with --group, only what the chosen groups hold is said
        warnings += [owned("connector", o) for o in observed.connectors.values() if o.id in owners]
        warnings += [owned("model group", o, " with its models") for o in observed.groups.values() if o.id in owners]
    models = {}
    for mid, o in observed.models.items():
        gid, cid = o.source.get("model_group_id"), o.source.get("connector_id")
        said = (chosen is None or gid in chosen) and not o.source.get("is_hidden")
        if gid in owners:
            continue       # said with its group
        if mid in owners or cid in owners:
            if said and mid in owners:
                warnings.append(owned("model", o))
            elif said:
                warnings.append(f"model {mid} ({o.source.get('name')!r}) left out: it uses connector {cid}, which "
                                f"stack {owners[cid].stack!r} manages as {owners[cid].address}")
            continue
        models[mid] = o
    kept = dataclasses.replace(
        observed, models=models,
        connectors={i: o for i, o in observed.connectors.items() if i not in owners},
        groups={i: o for i, o in observed.groups.items() if i not in owners})
    return kept, sorted(warnings)


def _public_url(url: str) -> str:
    """The cluster URL for a file header: no user:password, no query string."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", "")) or url


def _write_atomically(path: str, text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename it over `path` (mode as a new file's)."""
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
