"""`mlsync unlock`: release a stack's apply lease."""

from __future__ import annotations

from typing import Optional, TextIO

from mlsync.commands.output import EXIT_OK


def unlock(options, out: TextIO, *, stack: str, force: bool = False, state_file: Optional[str] = None) -> int:
    """`mlsync unlock`: release the stack's apply lease (only an expired one unless --force)."""
    from mlsync.commands import common

    cluster = None if state_file else common.connect(options)
    lock = common.state_store(cluster, state_file).unlock(stack, force=force)
    print(f"Released the lock held by {lock.holder} on {lock.host}." if lock else f"Stack {stack!r} was not locked.",
          file=out)
    return EXIT_OK
