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
